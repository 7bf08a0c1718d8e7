/* gx_avx2.h: x86-64 kernels for CPUs with AVX2, FMA and F16C (included by gx_fast.h only; not
 * a public header): the CPU check, conversions, weight decoding and relu here, conv in
 * gx_avx2_conv.h, pooling and fc in gx_avx2_fc.h. See docs/runtime.md, "Fast kernels".
 *
 * gx_init asks the CPU once (cpuid, xgetbv: no library call, no global) and keeps the answer in
 * the task, so a plain `gcc -O2` build runs these kernels where the CPU has the instructions
 * and the SSE2 kernels of gx_fast.h elsewhere; -DGXNPU_NO_AVX2 leaves them out. Same bits as
 * the plain kernels, because:
 *  - F16C conversions are IEEE: fp16 -> fp32 exact; fp32 -> fp16 (imm 0) round to nearest
 *    even, overflow to +-inf, fp32 subnormals rounded like any value (MXCSR.DAZ is off); the
 *    NaNs it keeps are then made the one NaN 0x7E00 as gx_f32_to_f16 does;
 *  - an FMA of two fp16 values and an accumulator is the plain multiply then add: the product
 *    of two fp16 values is exact in fp32 (11 x 11 significant bits, exponent within fp32's
 *    normal range), so fma(x, w, acc) = fl(acc + x*w) = fl(acc + fl(x*w));
 *  - every output still has its own accumulator from +0.0f, summed in docs/numerics.md order;
 *    vectors run across outputs (channels, pixels), never across one output's terms.
 */
#ifndef GX_AVX2_H
#define GX_AVX2_H

#include <cpuid.h>
#include <immintrin.h>

#define GXA static __attribute__((target("avx2,fma,f16c")))
#define GXAI static inline __attribute__((target("avx2,fma,f16c"), always_inline))  /* small helpers: vectors in registers */

/* 1 when the CPU and the OS support AVX2, FMA and F16C (YMM state enabled) */
static uint32_t gx_cpu_avx2(void)
{
    unsigned a, b, c, d, lo, hi;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 27) & 1u) || !((c >> 28) & 1u) || !((c >> 12) & 1u) || !((c >> 29) & 1u)) return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 6u) != 6u || __get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1u;
}

GXAI float h2f(uint32_t h) { return _cvtsh_ss((unsigned short)h); }
GXAI uint32_t f2h(float x)  /* docs/numerics.md: NaN -> 0x7E00 */
{
    uint32_t h = (uint16_t)_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return (h & 0x7FFFu) > 0x7C00u ? 0x7E00u : h;
}

/* eight fp32 -> eight fp16 of docs/numerics.md (NaN -> 0x7E00) */
GXAI __m128i h8_of(__m256 v)
{
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m128i nan = _mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7FFF)), _mm_set1_epi16(0x7C00));
    return _mm_blendv_epi8(h, _mm_set1_epi16(0x7E00), nan);
}

/* n <= 8 fp16 values at x[i], x[i + s], ... (lanes past n: +0) */
GXAI __m256 ld8(const view_t *x, uint32_t i, uint32_t s, uint32_t n)
{
    const uint8_t *p = x->p + 2u * i;
    __m128i h = _mm_setzero_si128();
    if (s == 1u && n == 8u) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
    switch (n) {  /* lane by lane into a register (a store then a wide load would stall) */
    default: h = _mm_insert_epi16(h, (int)rd16(p + 14u * s), 7); /* fall through */
    case 7: h = _mm_insert_epi16(h, (int)rd16(p + 12u * s), 6); /* fall through */
    case 6: h = _mm_insert_epi16(h, (int)rd16(p + 10u * s), 5); /* fall through */
    case 5: h = _mm_insert_epi16(h, (int)rd16(p + 8u * s), 4); /* fall through */
    case 4: h = _mm_insert_epi16(h, (int)rd16(p + 6u * s), 3); /* fall through */
    case 3: h = _mm_insert_epi16(h, (int)rd16(p + 4u * s), 2); /* fall through */
    case 2: h = _mm_insert_epi16(h, (int)rd16(p + 2u * s), 1); /* fall through */
    case 1: h = _mm_insert_epi16(h, (int)rd16(p), 0);
    }
    return _mm256_cvtph_ps(h);
}

/* lanes 0..n-1 of v, rounded once to fp16, to y[i], y[i + s], ... (graph outputs widened) */
GXA void st8(const view_t *y, uint32_t i, uint32_t s, uint32_t n, __m256 v)
{
    uint16_t h[8];
    uint32_t j;
    __m128i hv = h8_of(v);
    if (y->kind == V_F16 && s == 1u && n == 8u) { _mm_storeu_si128((__m128i *)(void *)(y->w + 2u * i), hv); return; }
    _mm_storeu_si128((__m128i *)(void *)h, hv);
    for (j = 0; j < n; j++) {
        if (y->kind == V_F32) wr32(y->w + 4u * (i + j * s), bits_of(h2f(h[j])));
        else wr16(y->w + 2u * (i + j * s), h[j]);
    }
}

/* Calls from these kernels into the SSE code of gxnpu.c are kept out of loops: SSE code run
 * while the upper halves of the ymm registers are in use is slow on some CPUs (measured here:
 * ~300 cycles per call); the rare cases go through gx_sse(), which clears them first */
#define gx_sse(call) (_mm256_zeroupper(), (call))

/* value i of an fp16 view (bias, activations) or, rarely, of another kind */
GXAI float ldv(const view_t *v, uint32_t i) { return v->kind == V_F16 ? h2f(rd16(v->p + 2u * i)) : gx_sse(ld(v, i)); }

/* weight i in kernel order: dense codes through the current table, fp16, or wat (bitmaps) */
GXAI float wval(wcur_t *w, uint32_t i)
{
    if (w->v.kind == V_CODES && w->packing == P_DENSE) return w->table[w->codes[i]];
    if (w->v.kind == V_F16) return h2f(rd16(w->v.p + 2u * i));
    return gx_sse(wat(w, i));
}

/* fp16(lo + q*step) rounded once, for finite lo and step: the sum is exact in double (at most
 * 49 significant bits: multiples of 2^-24 below 2^25), rounded to float by rounding to odd
 * (truncate, then set the last bit when inexact), which a round to nearest fp16 then rounds
 * as the exact sum (24 >= 11 + 2 bits) */
GXA float dec_odd(float lo, float step, uint32_t q)
{
    double d = (double)lo + (double)q * (double)step, ad = d < 0.0 ? -d : d;
    float f = (float)d;
    if ((double)f != d) {
        uint32_t b = bits_of(f);
        double af = (double)f < 0.0 ? -(double)f : (double)f;
        if (af > ad) b -= 1u;  /* rounded away from zero: one step back in magnitude */
        f = f32_of(b | 1u);
    }
    return h2f(f2h(f));
}

/* the 256-entry table of dec_fast, eight codes at a time; returns 1 when every entry came from
 * the fp32 sum (then fp16(fma(q, step, lo)) is the entry for every q: see fc_avx2) */
GXA int table8(uint32_t lo, uint32_t step, float *table, uint32_t *zero)
{
    __m256 lf = _mm256_set1_ps(h2f(lo)), sf = _mm256_set1_ps(h2f(step)), z = _mm256_setzero_ps();
    __m256 q8 = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    uint32_t q, j, fin = (lo & 0x7C00u) != 0x7C00u && (step & 0x7C00u) != 0x7C00u;
    int exact = 1;
    for (q = 0; q < 256u; q += 8u) {
        __m256 p = _mm256_mul_ps(_mm256_add_ps(q8, _mm256_set1_ps((float)q)), sf), s = _mm256_add_ps(lf, p);
        __m256 bb = _mm256_sub_ps(s, lf), e = _mm256_add_ps(_mm256_sub_ps(lf, _mm256_sub_ps(s, bb)), _mm256_sub_ps(p, bb));
        int bad = _mm256_movemask_ps(_mm256_cmp_ps(e, z, _CMP_NEQ_UQ));  /* NaN counts as inexact */
        _mm256_storeu_ps(table + q, _mm256_cvtph_ps(h8_of(s)));
        for (j = 0; bad && j < 8u; j++)
            if ((bad >> j) & 1)
                table[q + j] = fin ? dec_odd(h2f(lo), h2f(step), q + j) : gx_sse(gx_f16_to_f32(decode_code(lo, step, q + j)));
        exact &= !bad;
    }
    for (*zero = 256u, q = 0; q < 256u && *zero == 256u; q++)
        if ((bits_of(table[q]) & 0x7FFFFFFFu) == 0) *zero = q;
    return exact;
}

/* one weight: fp16(lo + q*step) as fp32 (decode_code's value) */
GXA float dec1(uint32_t lo, uint32_t step, uint32_t q)
{
    if ((lo & 0x7C00u) != 0x7C00u && (step & 0x7C00u) != 0x7C00u) return dec_odd(h2f(lo), h2f(step), q);
    return gx_sse(gx_f16_to_f32(decode_code(lo, step, q)));
}

/* eight weights at once, lane j with its own range (lf, sf; its fp16 bits at lo_p + j*ls and
 * st_p + j*ls, for the rare lane whose fp32 sum is inexact, found by TwoSum, or whose range is
 * not finite: dec1 of code c[j*cs]) */
GXA __m256 dec8(__m256 q, __m256 lf, __m256 sf, const uint8_t *lo_p, const uint8_t *st_p, uint32_t ls,
                const uint8_t *c, uint32_t cs)
{
    __m256 p = _mm256_mul_ps(q, sf), s = _mm256_add_ps(lf, p), bb = _mm256_sub_ps(s, lf);
    __m256 e = _mm256_add_ps(_mm256_sub_ps(lf, _mm256_sub_ps(s, bb)), _mm256_sub_ps(p, bb));
    int bad = _mm256_movemask_ps(_mm256_cmp_ps(e, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    __m256 v = _mm256_cvtph_ps(h8_of(s));
    if (bad) {
        float t[8];
        uint32_t j;
        _mm256_storeu_ps(t, v);
        for (j = 0; j < 8u; j++)
            if ((bad >> j) & 1) t[j] = dec1(rd16(lo_p + j * ls), rd16(st_p + j * ls), c[j * cs]);
        v = _mm256_loadu_ps(t);
    }
    return v;
}

/* eight codes c[0..8) of one range (fp16 bits at lo_p, st_p) */
GXA __m256 dec8c(const uint8_t *c, const uint8_t *lo_p, const uint8_t *st_p)
{
    __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)c)));
    return dec8(q, _mm256_set1_ps(h2f(rd16(lo_p))), _mm256_set1_ps(h2f(rd16(st_p))), lo_p, st_p, 0u, c, 1u);
}


/* ranges at lo_p, st_p (fp16 bits): one for all (ls 0) or one per lane (ls 2, lanes j..j+8) */
GXAI __m256 lanes8(const uint8_t *p, uint32_t ls)
{
    return ls ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p)) : _mm256_set1_ps(h2f(rd16(p)));
}

GXAI __m256 codes8(const uint8_t *c)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)c)));
}

/* n codes decoded to fp16 bits at out (decode_to_tmp of gxnpu.c, dense weights): code j has
 * the range at lo_p + j*ls, st_p + j*ls (ls 0: one range; 2: one per value, a channel axis last) */
GXA void codes_to_h(const uint8_t *lo_p, const uint8_t *st_p, uint32_t ls, const uint8_t *c, uint32_t n, uint8_t *out)
{
    uint32_t j = 0;
    for (; j + 8u <= n; j += 8u)
        _mm_storeu_si128((__m128i *)(void *)(out + 2u * j),
                         h8_of(dec8(codes8(c + j), lanes8(lo_p + j * ls, ls), lanes8(st_p + j * ls, ls),
                                    lo_p + j * ls, st_p + j * ls, ls, c + j, 1u)));
    for (; j < n; j++) wr16(out + 2u * j, f2h(dec1(rd16(lo_p + j * ls), rd16(st_p + j * ls), c[j])));
}

/* w's decode table for channel ch (fast_table of gx_fast.h, from AVX code) */
GXA void wtable(wcur_t *w, uint32_t ch)
{
    w->exact = (uint32_t)table8(rd16(w->lo + 2u * ch), rd16(w->lo + 2u * (w->C + ch)), w->table, &w->zero);
}

/* ---- relu on fp16 bits (see relu_fast), 8 a step ----------------------------------------- */
GXA void relu_avx2(const view_t *x, const view_t *y, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8u <= n; i += 8u) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(x->p + 2u * i));
        __m128i nan = _mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7FFF)), _mm_set1_epi16(0x7C00));
        __m128i r = _mm_andnot_si128(_mm_srai_epi16(h, 15), h);
        _mm_storeu_si128((__m128i *)(void *)(y->w + 2u * i), _mm_blendv_epi8(r, _mm_set1_epi16(0x7E00), nan));
    }
    for (; i < n; i++) {
        uint32_t h = rd16(x->p + 2u * i);
        wr16(y->w + 2u * i, (h & 0x7FFFu) > 0x7C00u ? 0x7E00u : (h & 0x8000u) ? 0u : h);
    }
}

#include "gx_avx2_conv.h"
#include "gx_avx2_fc.h"

#endif /* GX_AVX2_H */
