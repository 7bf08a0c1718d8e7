/* The runtime on a Cortex-M4F under QEMU: the example model.h and a few inputs compiled in;
 * prints the stack words used and every sample's struct output as hex bytes (semihosting). */
#include <stdio.h>
#include <string.h>

#include "gxnpu.h"
#include GX_MODEL_H
#include GX_INPUTS_H  /* const unsigned char gx_inputs[GX_SAMPLES][sizeof(struct input)] */

static struct in_out io;

int main(void)
{
    gx_task task;
    unsigned s, k;
    int status = GX_INIT_FROM_MODEL_H(&task, &io);
    if (status != GX_OK) { printf("status %d\n", status); return 2; }
    for (s = 0; s < GX_SAMPLES; s++) {
        memcpy(&io.input, gx_inputs[s], sizeof io.input);
        if ((status = gx_run(&task)) != GX_OK) { printf("status %d\n", status); return 2; }
        for (k = 0; k < sizeof io.output; k++) printf("%02x", ((const unsigned char *)&io.output)[k]);
        printf("\n");
    }
    printf("done\n");
    return 0;
}
