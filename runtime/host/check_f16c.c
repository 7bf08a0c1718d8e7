/* check_f16c: the F16C conversions of runtime/gx_avx2.h against the software ones of
 * runtime/gx_math.h, which define the device numerics (docs/numerics.md).
 *
 *   check_f16c STRIDE
 *
 * compares fp32 -> fp16 (h8_of: eight at a time, and f2h) on every STRIDE-th fp32 bit pattern
 * (1: all 2^32), on every pattern at and next to an fp16 rounding tie, and fp16 -> fp32 (h2f)
 * on every fp16 value. Exit 0 when identical, 1 on a mismatch (printed), 77 when the CPU or
 * the build has no AVX2/FMA/F16C kernels. Built by tests/test_runtime.py (hosted C).
 */
#include "../gxnpu.c"

#include <stdio.h>
#include <stdlib.h>

#if GX_AVX2
static unsigned long bad;

GXA void check8(const uint32_t *b)
{
    uint16_t h[8];
    float f[8];
    uint32_t j;
    memcpy(f, b, sizeof f);
    _mm_storeu_si128((__m128i *)(void *)h, h8_of(_mm256_loadu_ps(f)));
    for (j = 0; j < 8u; j++)
        if (h[j] != gx_f32_to_f16(f[j]) || f2h(f[j]) != gx_f32_to_f16(f[j])) {
            if (bad++ < 10) printf("fp32 %08x: f16c %04x, gx_math %04x\n", (unsigned)b[j], h[j], gx_f32_to_f16(f[j]));
        }
}

GXA void run(uint64_t stride)
{
    uint32_t b[8], n = 0, k, h;
    uint64_t u;
    for (u = 0; u < ((uint64_t)1 << 32); u += stride) {
        b[n++] = (uint32_t)u;
        if (n == 8u) { check8(b); n = 0; }
    }
    for (u = 0; u < ((uint64_t)1 << 19); u++)  /* ties (low 13 bits 0x1000) and their neighbours */
        for (k = 0; k < 3u; k++) {
            b[n++] = (uint32_t)(u << 13) | (0x0FFFu + k);
            if (n == 8u) { check8(b); n = 0; }
        }
    for (h = 0; h < 65536u; h++) {
        float a = h2f(h), c = gx_f16_to_f32((uint16_t)h);
        int nan = (h & 0x7FFFu) > 0x7C00u;  /* NaN payloads never reach memory: stored as 0x7E00 */
        if (nan ? a == a : bits_of(a) != bits_of(c)) {
            if (bad++ < 10) printf("fp16 %04x: f16c %08x, gx_math %08x\n", (unsigned)h, (unsigned)bits_of(a), (unsigned)bits_of(c));
        }
    }
}
#endif

int main(int argc, char **argv)
{
#if GX_AVX2
    uint64_t stride = argc > 1 ? strtoull(argv[1], NULL, 10) : 1u;
    if (!gx_cpu_avx2() || stride == 0) return 77;
    run(stride);
    printf("%lu mismatches\n", bad);
    return bad ? 1 : 0;
#else
    (void)argc; (void)argv;
    return 77;
#endif
}
