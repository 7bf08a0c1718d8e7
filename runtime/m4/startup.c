/* Minimal Cortex-M4F start-up for QEMU mps2-an386: vector table, FPU on, .bss zeroed, main(),
 * then exit through semihosting (newlib's rdimon). Test harness only, not part of the runtime. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __bss_start__, __bss_end__, __stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);

void _init(void);
void _fini(void);
void reset_handler(void);
void _init(void) {}
void _fini(void) {}

void reset_handler(void)
{
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;  /* CPACR: CP10, CP11 full access (FPU) */
    __asm__ volatile("dsb\n isb");
    memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
    initialise_monitor_handles();
    exit(main());
}

static void fault_handler(void)
{
    exit(3);
}

__attribute__((section(".isr_vector"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))&__stack_top, reset_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};
