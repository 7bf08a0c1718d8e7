/* check_f16c: the F16C conversions and the weight decoding of runtime/gx_avx2.h against the
 * software ones of runtime/gx_math.h and gxnpu.c, which define the device numerics
 * (docs/numerics.md, SPEC 5).
 *
 *   check_f16c STRIDE [PAIRS]
 *
 * compares fp32 -> fp16 (h8_of: eight at a time, and f2h) on every STRIDE-th fp32 bit pattern
 * (1: all 2^32), on every pattern at and next to an fp16 rounding tie, and fp16 -> fp32 (h2f)
 * on every fp16 value; then, for PAIRS (lo, step) pairs (default 20000: seeded, half of them
 * with a step far below lo's last bit, where lo + q*step is not exact in fp32) and every code
 * q, table8 and codes_to_h (TwoSum, rounding to odd) against decode_code. Exit 0 when
 * identical, 1 on a mismatch (printed), 77 when the CPU or the build has no AVX2/FMA/F16C
 * kernels. Built by tests/test_runtime.py (hosted C).
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

/* decoding: every code of `pairs` ranges (fp16 bits, from a fixed LCG; every other pair with a
 * step 2^-11 to 2^-22 of lo's size) */
GXA void run_decode(uint32_t pairs)
{
    uint32_t seed = 12345u, p, q, zero;
    uint8_t codes[256], lo_st[4], out[512];
    float table[256];
    for (q = 0; q < 256u; q++) codes[q] = (uint8_t)q;
    for (p = 0; p < pairs; p++) {
        uint32_t lo, step;
        seed = seed * 1103515245u + 12345u; lo = (seed >> 8) & 0xFFFFu;
        seed = seed * 1103515245u + 12345u; step = (seed >> 8) & 0xFFFFu;
        if (p & 1u) {  /* step far below lo's last bit: an inexact fp32 sum for most q */
            uint32_t e = (lo >> 10) & 31u, drop = 11u + (seed >> 28) % 12u;
            step = (step & 0x83FFu) | ((e > drop ? e - drop : 0u) << 10);
        }
        lo_st[0] = (uint8_t)lo; lo_st[1] = (uint8_t)(lo >> 8); lo_st[2] = (uint8_t)step; lo_st[3] = (uint8_t)(step >> 8);
        (void)table8(lo, step, table, &zero);
        codes_to_h(lo_st, lo_st + 2, 0u, codes, 256u, out);
        for (q = 0; q < 256u; q++) {
            uint16_t want = decode_code(lo, step, q);
            uint32_t got = rd16(out + 2u * q);
            int nan = (want & 0x7FFFu) > 0x7C00u;
            if (got != want || (!nan && bits_of(table[q]) != bits_of(gx_f16_to_f32(want)))) {
                if (bad++ < 10) printf("lo %04x step %04x q %u: decode_code %04x, codes_to_h %04x, table8 %08x\n",
                                       (unsigned)lo, (unsigned)step, (unsigned)q, want, (unsigned)got, (unsigned)bits_of(table[q]));
            }
        }
    }
}
#endif

int main(int argc, char **argv)
{
#if GX_AVX2
    uint64_t stride = argc > 1 ? strtoull(argv[1], NULL, 10) : 1u;
    uint32_t pairs = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 20000u;
    if (!gx_cpu_avx2() || stride == 0) return 77;
    run(stride);
    run_decode(pairs);
    printf("%lu mismatches\n", bad);
    return bad ? 1 : 0;
#else
    (void)argc; (void)argv;
    return 77;
#endif
}
