/* gx_avx2.h: x86-64 kernels for CPUs with AVX2, FMA and F16C (included by gx_fast.h only; not
 * a public header). See docs/runtime.md, "Fast kernels".
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
 * 49 significant bits: multiples of 2^-24 below 2^25), rounded to float by rounding to odd (truncate, then set the last bit
 * when inexact), which a round to nearest fp16 then rounds as the exact sum (24 >= 11 + 2) */
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

/* ---- conv: one output pixel's taps (F16C) against a weight panel, 64 outputs a pass ------- */
GXA void patch8(const view_t *x, const geo_t *g, uint32_t cg, uint32_t n, uint32_t c0, uint32_t oh,
                uint32_t ow, float *p)
{
    uint32_t xci = g->cl ? 1u : g->H * g->W, xh = g->cl ? g->W * g->C : g->W, xw = g->cl ? g->C : 1u;
    uint32_t xb = at4(g, n, c0, 0, 0, g->C, g->H, g->W), ci, kh, kw, kh0, kh1, kw0, kw1;
    int32_t ih0 = (int32_t)(oh * g->sh) - g->ph, iw0 = (int32_t)(ow * g->sw) - g->pw;
    tap_range(ih0, g->dh, (int32_t)g->H, g->KH, &kh0, &kh1);
    tap_range(iw0, g->dw, (int32_t)g->W, g->KW, &kw0, &kw1);
    for (ci = 0; ci < cg; ci++)
        for (kh = 0; kh < g->KH; kh++, p += g->KW) {
            const uint8_t *row;
            if (kh < kh0 || kh >= kh1) { for (kw = 0; kw < g->KW; kw++) p[kw] = 0.0f; continue; }
            row = x->p + 2u * (xb + ci * xci + (uint32_t)(ih0 + (int32_t)(kh * g->dh)) * xh);
            for (kw = 0; kw < kw0; kw++) p[kw] = 0.0f;
            for (; kw < kw1; kw++) p[kw] = h2f(rd16(row + 2u * ((uint32_t)(iw0 + (int32_t)(kw * g->dw)) * xw)));
            for (; kw < g->KW; kw++) p[kw] = 0.0f;
        }
}

/* acc[0..2*nbl) = the T taps of p against nbl (1, 2 or 4) panel blocks of 16 outputs (writes acc[0..8)) */
GXA void dot8(const float *p, const float *pan, uint32_t T, uint32_t nbl, __m256 *acc)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const float *b0 = pan, *b1 = pan + T * FW, *b2 = b1 + T * FW, *b3 = b2 + T * FW;
    uint32_t t;
    if (nbl >= 4u)
        for (t = 0; t < T; t++) {
            __m256 xv = _mm256_broadcast_ss(p + t);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + t * FW), xv, a0); a1 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + t * FW + 8), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(b1 + t * FW), xv, a2); a3 = _mm256_fmadd_ps(_mm256_loadu_ps(b1 + t * FW + 8), xv, a3);
            a4 = _mm256_fmadd_ps(_mm256_loadu_ps(b2 + t * FW), xv, a4); a5 = _mm256_fmadd_ps(_mm256_loadu_ps(b2 + t * FW + 8), xv, a5);
            a6 = _mm256_fmadd_ps(_mm256_loadu_ps(b3 + t * FW), xv, a6); a7 = _mm256_fmadd_ps(_mm256_loadu_ps(b3 + t * FW + 8), xv, a7);
        }
    else if (nbl >= 2u)
        for (t = 0; t < T; t++) {
            __m256 xv = _mm256_broadcast_ss(p + t);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + t * FW), xv, a0); a1 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + t * FW + 8), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(b1 + t * FW), xv, a2); a3 = _mm256_fmadd_ps(_mm256_loadu_ps(b1 + t * FW + 8), xv, a3);
        }
    else
        for (t = 0; t < T; t++) {
            __m256 xv = _mm256_broadcast_ss(p + t);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + t * FW), xv, a0); a1 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + t * FW + 8), xv, a1);
        }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
}

/* every output pixel of the panel P (group gi; `left` outputs of the group from P->o0 on);
 * bias holds P->nblk * FW values (+0 past the group) */
GXA void conv_px_avx2(const view_t *x, const view_t *y, const geo_t *g, const cpanel_t *P, const float *pan,
                      const float *bias, int has_b, uint32_t gi, uint32_t left)
{
    float p[FTAPS];
    __m256 acc[12];  /* 3 blocks: 4 from the first dot8, 8 from the second (4 used) */
    uint32_t n, oh, ow, bl, j, ys = g->cl ? 1u : g->OH * g->OW;
    for (n = 0; n < g->N; n++)
        for (oh = 0; oh < g->OH; oh++)
            for (ow = 0; ow < g->OW; ow++) {
                patch8(x, g, P->cg, n, gi * P->cg, oh, ow, p);
                for (bl = 0; bl < P->nblk; bl += 4u) {
                    uint32_t nbl = P->nblk - bl < 4u ? P->nblk - bl : 4u;
                    dot8(p, pan + bl * P->T * FW, P->T, nbl >= 4u ? 4u : nbl >= 2u ? 2u : 1u, acc);
                    if (nbl == 3u) dot8(p, pan + (bl + 2u) * P->T * FW, P->T, 1u, acc + 4);
                    for (j = 0; j < 2u * nbl && bl * FW + 8u * j < left; j++) {
                        uint32_t o = bl * FW + 8u * j, nb = left - o < 8u ? left - o : 8u;
                        __m256 v = has_b ? _mm256_add_ps(acc[j], _mm256_loadu_ps(bias + o)) : acc[j];
                        st8(y, at4(g, n, P->o0 + o, oh, ow, g->O, g->OH, g->OW), ys, nb, v);
                    }
                }
            }
}

/* ---- conv, NCHW: each input channel's padded plane as fp32 (F16C), then every
 * output is computed on the "wide" grid OH x Wp walked flat (output (oh, q) is
 * sum over taps of plane[ci][oh + kh*dh][q + kw*dw] = planes[i + off(tap)], i = oh*Wp + q), 16
 * positions and 4 outputs a step; the columns q >= OW are dropped when the rows are copied out */
#define FXP 8192u   /* the group's padded planes, fp32 (32 KB) */
#define FXT 1024u   /* taps per output */
#define FXO 6u      /* outputs a pass (depthwise: 4 channels) */
#define FXW 2048u   /* wide positions per output (OH * Wp) */
#define FXV 16u     /* wide positions a step */

/* planes[ci][Hp][Wp] of input channels c0.. c0+cg-1 (zeros in the padding), then FXV zeros;
 * without padding the planes are x itself, converted 8 values a step */
GXA void planes8(const view_t *x, const geo_t *g, uint32_t n, uint32_t c0, uint32_t cg, uint32_t Hp, uint32_t Wp,
                 float *pl)
{
    uint32_t ci, r, q, rows, cols, at = at4(g, n, c0, 0, 0, g->C, g->H, g->W), total = cg * Hp * Wp;
    const uint8_t *src = x->p + 2u * at;
    if (Hp == g->H && Wp == g->W && g->ph == 0 && g->pw == 0) {
        for (q = 0; q + 8u <= total; q += 8u)
            _mm256_storeu_ps(pl + q, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + 2u * q))));
        for (; q < total + FXV; q++) pl[q] = q < total ? h2f(rd16(src + 2u * q)) : 0.0f;
        return;
    }
    /* the rows and columns of x the outputs reach (all of x for a model the compiler wrote,
     * where OH = H + pads - (KH - 1)*dh; a hand-made model may ask for fewer outputs) */
    memset(pl, 0, 4u * (total + FXV));
    rows = Hp > (uint32_t)g->ph ? Hp - (uint32_t)g->ph : 0u; rows = rows < g->H ? rows : g->H;
    cols = Wp > (uint32_t)g->pw ? Wp - (uint32_t)g->pw : 0u; cols = cols < g->W ? cols : g->W;
    for (ci = 0; ci < cg; ci++)
        for (r = 0; r < rows; r++) {
            float *row = pl + (ci * Hp + r + (uint32_t)g->ph) * Wp + (uint32_t)g->pw;
            const uint8_t *from = src + 2u * (ci * g->H + r) * g->W;
            for (q = 0; q < cols; q++) row[q] = h2f(rd16(from + 2u * q));
        }
}

/* strides above 1: the input cut into sh * sw phase planes per channel, plane (a, b) holding
 * padded x at rows r*sh + a and columns c*sw + b, so that every tap reads a phase plane at
 * stride 1: the conv is then the stride-1 flat conv over the phases (a space-to-depth) */
GXA void phases8(const view_t *x, const geo_t *g, uint32_t n, uint32_t c0, uint32_t cg, uint32_t Hq, uint32_t Wq,
                 float *pl)
{
    uint32_t ci, a, b, r, c;
    for (ci = 0; ci < cg; ci++)
        for (a = 0; a < g->sh; a++)
            for (b = 0; b < g->sw; b++)
                for (r = 0; r < Hq; r++) {
                    int32_t ih = (int32_t)(r * g->sh + a) - g->ph;
                    for (c = 0; c < Wq; c++, pl++) {
                        int32_t iw = (int32_t)(c * g->sw + b) - g->pw;
                        *pl = ih < 0 || ih >= (int32_t)g->H || iw < 0 || iw >= (int32_t)g->W ? 0.0f
                              : h2f(rd16(x->p + 2u * at4(g, n, c0 + ci, (uint32_t)ih, (uint32_t)iw, g->C, g->H, g->W)));
                    }
                }
    for (c = 0; c < FXV; c++) pl[c] = 0.0f;
}

/* wide[j][i] (stride ws) = fp16(bias_j + sum over taps of wq[j][t] * pl[j*sep + i + off[t]]),
 * j < nb <= 4: four outputs of one input (sep 0) or of four depthwise channels (sep: a plane).
 * FXV = 16 positions a step in eight named accumulators (an array would live in memory;
 * measured: twelve accumulators for 24 positions spill and run slower) */
#define FMA2(w, p, a, b) do { __m256 wv_ = _mm256_broadcast_ss(w); \
    a = _mm256_fmadd_ps(wv_, _mm256_loadu_ps(p), a); b = _mm256_fmadd_ps(wv_, _mm256_loadu_ps((p) + 8u), b); } while (0)
GXA void wide_st(uint16_t *wide, const float *bias, uint32_t j, __m256 a, __m256 b)
{
    if (bias) { a = _mm256_add_ps(a, _mm256_set1_ps(bias[j])); b = _mm256_add_ps(b, _mm256_set1_ps(bias[j])); }
    _mm_storeu_si128((__m128i *)(void *)wide, h8_of(a));
    _mm_storeu_si128((__m128i *)(void *)(wide + 8u), h8_of(b));
}

/* depthwise: four channels, each on its own plane */
GXA void flat_dw(const float *pl, uint32_t sep, const uint32_t *off, uint32_t T, const float *wq, uint32_t nb,
                 const float *bias, uint32_t npos, uint16_t *wide, uint32_t ws)
{
    uint32_t i, t, s1 = sep, s2 = 2u * sep, s3 = 3u * sep;
    for (i = 0; i < npos; i += FXV) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        const float *p = pl + i;
        for (t = 0; t < T; t++) {
            const float *q = p + off[t];
            FMA2(wq + t, q, a0, a1);
            FMA2(wq + FXT + t, q + s1, a2, a3);
            FMA2(wq + 2u * FXT + t, q + s2, a4, a5);
            FMA2(wq + 3u * FXT + t, q + s3, a6, a7);
        }
        wide_st(wide + i, bias, 0u, a0, a1);
        if (nb > 1u) wide_st(wide + ws + i, bias, 1u, a2, a3);
        if (nb > 2u) wide_st(wide + 2u * ws + i, bias, 2u, a4, a5);
        if (nb > 3u) wide_st(wide + 3u * ws + i, bias, 3u, a6, a7);
    }
}

/* FXO = 6 outputs of the same planes: two x loads and six broadcasts feed twelve FMAs */
GXA void flat6(const float *pl, const uint32_t *off, uint32_t T, const float *wq, uint32_t nb,
               const float *bias, uint32_t npos, uint16_t *wide, uint32_t ws)
{
    uint32_t i, t, j;
    for (i = 0; i < npos; i += FXV) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        __m256 a8 = a0, a9 = a0, a10 = a0, a11 = a0, r[12];
        const float *p = pl + i;
        for (t = 0; t < T; t++) {
            __m256 x0 = _mm256_loadu_ps(p + off[t]), x1 = _mm256_loadu_ps(p + off[t] + 8u), w;
            w = _mm256_broadcast_ss(wq + t); a0 = _mm256_fmadd_ps(w, x0, a0); a1 = _mm256_fmadd_ps(w, x1, a1);
            w = _mm256_broadcast_ss(wq + FXT + t); a2 = _mm256_fmadd_ps(w, x0, a2); a3 = _mm256_fmadd_ps(w, x1, a3);
            w = _mm256_broadcast_ss(wq + 2u * FXT + t); a4 = _mm256_fmadd_ps(w, x0, a4); a5 = _mm256_fmadd_ps(w, x1, a5);
            w = _mm256_broadcast_ss(wq + 3u * FXT + t); a6 = _mm256_fmadd_ps(w, x0, a6); a7 = _mm256_fmadd_ps(w, x1, a7);
            w = _mm256_broadcast_ss(wq + 4u * FXT + t); a8 = _mm256_fmadd_ps(w, x0, a8); a9 = _mm256_fmadd_ps(w, x1, a9);
            w = _mm256_broadcast_ss(wq + 5u * FXT + t); a10 = _mm256_fmadd_ps(w, x0, a10); a11 = _mm256_fmadd_ps(w, x1, a11);
        }
        r[0] = a0; r[1] = a1; r[2] = a2; r[3] = a3; r[4] = a4; r[5] = a5;
        r[6] = a6; r[7] = a7; r[8] = a8; r[9] = a9; r[10] = a10; r[11] = a11;
        for (j = 0; j < nb; j++) wide_st(wide + j * ws + i, bias, j, r[2u * j], r[2u * j + 1u]);
    }
}
#undef FMA2

/* n fp16 values (short rows: fixed-size copies the compiler inlines, no library call) */
GXA void copy_h(uint8_t *dst, const uint16_t *src, uint32_t n)
{
    uint32_t q = 0;
    for (; q + 8u <= n; q += 8u) memcpy(dst + 2u * q, src + q, 16);
    if (q + 4u <= n) { memcpy(dst + 2u * q, src + q, 8); q += 4u; }
    for (; q < n; q++) wr16(dst + 2u * q, src[q]);
}

/* the rows of output o from the wide grid */
GXA void rows_out(const view_t *y, const geo_t *g, uint32_t n, uint32_t o, const uint16_t *wide, uint32_t Wp)
{
    uint32_t oh, q, at;
    if (y->kind == V_F16 && Wp == g->OW) {  /* no padding columns: the wide grid is the plane */
        memcpy(y->w + 2u * at4(g, n, o, 0, 0, g->O, g->OH, g->OW), wide, 2u * g->OH * g->OW);
        return;
    }
    for (oh = 0; oh < g->OH; oh++) {
        at = at4(g, n, o, oh, 0, g->O, g->OH, g->OW);
        if (y->kind == V_F16 && g->OW <= 8u && at + 8u <= y->n) {
            /* 8 values a row: the ones past OW land on outputs written later (memory order) */
            memcpy(y->w + 2u * at, wide + oh * Wp, 16);
            continue;
        }
        if (y->kind == V_F16) { copy_h(y->w + 2u * at, wide + oh * Wp, g->OW); continue; }
        for (q = 0; q < g->OW; q++) wr32(y->w + 4u * (at + q), bits_of(h2f(wide[oh * Wp + q])));
    }
}

/* the T weights of output o in tap order (ci, kh, kw) as fp32; 0 when one is not finite (a
 * padded tap adds 0 * w, which must be +-0) */
GXA int weights_row(wcur_t *w, const geo_t *g, uint32_t wf, uint32_t cg, uint32_t T, uint32_t o, float *wq)
{
    uint32_t t = 0, ci, kh, kw, bad = 0;
    const __m256 inf = _mm256_set1_ps(f32_of(0x7F800000u)), mag = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    int codes = w->v.kind == V_CODES && w->packing == P_DENSE;
    if (!wf && (codes || w->v.kind == V_F16)) {
        /* eight a step, in registers: fp16 weights widen; codes decode (dec8c; one exact range:
         * fp16(fma(q, step, lo)) is the table entry, see table8) */
        uint32_t ch = w->C > 1u ? o : 0u, lo_h = codes ? rd16(w->lo + 2u * ch) : 0u;
        uint32_t step_h = codes ? rd16(w->lo + 2u * (w->C + ch)) : 0u;
        const uint8_t *c = codes ? w->codes + o * T : 0, *h = codes ? 0 : w->v.p + 2u * o * T;
        __m256 lo = _mm256_set1_ps(h2f(lo_h)), step = _mm256_set1_ps(h2f(step_h)), v;
        int fast = codes && w->C == 1u && w->exact;
        for (; t < T; t += 8u) {
            uint32_t m = T - t < 8u ? T - t : 8u, k;
            if (m < 8u) {  /* the last few: one at a time */
                for (k = 0; k < m; k++) {
                    wq[t + k] = codes ? dec1(lo_h, step_h, c[t + k]) : h2f(rd16(h + 2u * (t + k)));
                    bad |= (bits_of(wq[t + k]) & 0x7F800000u) == 0x7F800000u;
                }
                break;
            }
            if (fast)
                v = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                        _mm_loadl_epi64((const __m128i *)(const void *)(c + t)))), step, lo), 0));
            else if (codes) v = dec8c(c + t, w->lo + 2u * ch, w->lo + 2u * (w->C + ch));
            else v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(h + 2u * t)));
            bad |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, mag), inf, _CMP_NLT_UQ));
            _mm256_storeu_ps(wq + t, v);
        }
        return !bad;
    }
    if (w->v.kind == V_CODES && w->C > 1u) wtable(w, o);
    for (ci = 0; ci < cg; ci++)
        for (kh = 0; kh < g->KH; kh++)
            for (kw = 0; kw < g->KW; kw++, t++) {
                wq[t] = wval(w, wf ? ((kh * g->KW + kw) * cg + ci) * g->O + o : o * T + t);
                bad |= (bits_of(wq[t]) & 0x7F800000u) == 0x7F800000u;
            }
    return !bad;
}

/* 0 when it does not apply (layout, sizes) or a weight is not finite (see weights_row) */
GXA int conv_flat(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w, const geo_t *g,
                  uint32_t wf, uint32_t group)
{
    float pl[FXP + FXV], wq[FXO * FXT], bias[FXO];
    uint32_t off[FXT];
    uint16_t wide[FXO * FXW];
    uint32_t cg = g->C / group, og = g->O / group, dw = cg == 1u && og == 1u, gstep = dw ? 4u : 1u;
    uint64_t Hq_ = g->OH + (uint64_t)(g->KH - 1u) * g->dh / g->sh, Wq_ = g->OW + (uint64_t)(g->KW - 1u) * g->dw / g->sw;
    uint64_t T_ = (uint64_t)cg * g->KH * g->KW, plane_ = (uint64_t)g->sh * g->sw * Hq_ * Wq_;
    uint32_t T, S, Hq, Wq, npos, ws, plane, n, gi, m, j, t, ci, kh, kw;
    if (g->cl || x->v.kind != V_F16 || T_ > FXT || (uint64_t)g->OH * Wq_ > FXW - FXV || (dw ? 4u : cg) * plane_ > FXP)
        return 0;  /* (the sizes in 64 bits: no product wraps before the checks) */
    T = (uint32_t)T_; S = g->sh * g->sw; Hq = (uint32_t)Hq_; Wq = (uint32_t)Wq_; plane = (uint32_t)plane_;
    npos = g->OH * Wq; ws = (npos + FXV - 1u) / FXV * FXV;
    for (ci = 0, t = 0; ci < cg; ci++)
        for (kh = 0; kh < g->KH; kh++)
            for (kw = 0; kw < g->KW; kw++, t++)
                off[t] = ((ci * g->sh + kh * g->dh % g->sh) * g->sw + kw * g->dw % g->sw) * Hq * Wq +
                         kh * g->dh / g->sh * Wq + kw * g->dw / g->sw;
    if (w->v.kind == V_CODES && w->C == 1u) wtable(w, 0u);
    for (n = 0; n < g->N; n++)
        for (gi = 0; gi < group; gi += gstep) {
            uint32_t ng = group - gi < gstep ? group - gi : gstep;
            if (S == 1u) planes8(&x->v, g, n, gi * cg, dw ? ng : cg, Hq, Wq, pl);
            else phases8(&x->v, g, n, gi * cg, dw ? ng : cg, Hq, Wq, pl);
            for (m = 0; m < og; m += FXO) {
                uint32_t nb = dw ? ng : og - m < FXO ? og - m : FXO, o0 = gi * og + m;
                for (j = 0; j < FXO; j++) {
                    bias[j] = has_b && j < nb ? ldv(b, o0 + j) : 0.0f;
                    if (j >= nb) { memset(wq + j * FXT, 0, 4u * T); continue; }
                    if (!weights_row(w, g, wf, cg, T, o0 + j, wq + j * FXT)) return 0;
                }
                if (dw) flat_dw(pl, plane, off, T, wq, nb, has_b ? bias : 0, npos, wide, ws);
                else flat6(pl, off, T, wq, nb, has_b ? bias : 0, npos, wide, ws);
                for (j = 0; j < nb; j++) rows_out(&y->v, g, n, o0 + j, wide + j * ws, Wq);
            }
        }
    return 1;
}

/* ---- pooling: 8 channels a vector, each output's window in C order ------------------------ */
GXA __m256 max8(__m256 a, __m256 b)  /* fmaxn lane by lane: a NaN in a, then in b, wins */
{
    __m256 r = _mm256_blendv_ps(b, a, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
    r = _mm256_blendv_ps(r, b, _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
    return _mm256_blendv_ps(r, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

GXA void pool_avx2(const ten_t *x, const ten_t *y, const geo_t *g, const pool_t *pp)
{
    uint32_t xs = g->cl ? 1u : g->H * g->W, ys = g->cl ? 1u : g->OH * g->OW, oh, ow, n, c, kh, kw;
    uint32_t kh0, kh1, kw0, kw1, ch0, ch1, cw0, cw1;
    for (oh = 0; oh < g->OH; oh++) {
        int32_t ih0 = (int32_t)(oh * pp->sh) - pp->ph;
        pool_taps(pp, ih0, pp->dh, (int32_t)g->H, pp->kH, pp->ph, pp->peh, &kh0, &kh1, &ch0, &ch1);
        for (ow = 0; ow < g->OW; ow++) {
            int32_t iw0 = (int32_t)(ow * pp->sw) - pp->pw;
            pool_taps(pp, iw0, pp->dw, (int32_t)g->W, pp->kW, pp->pw, pp->pew, &kw0, &kw1, &cw0, &cw1);
            for (n = 0; n < g->N; n++)
                for (c = 0; c < g->C; c += 8u) {
                    uint32_t nc = g->C - c < 8u ? g->C - c : 8u;
                    __m256 acc = pp->max ? _mm256_set1_ps(f32_of(0xFF800000u)) : _mm256_setzero_ps();
                    for (kh = kh0; kh < kh1; kh++)
                        for (kw = kw0; kw < kw1; kw++) {
                            uint32_t ih = (uint32_t)(ih0 + (int32_t)(kh * pp->dh)), iw = (uint32_t)(iw0 + (int32_t)(kw * pp->dw));
                            __m256 v = ld8(&x->v, at4(g, n, c, ih, iw, g->C, g->H, g->W), xs, nc);
                            acc = pp->max ? max8(acc, v) : _mm256_add_ps(acc, v);
                        }
                    if (!pp->max) acc = _mm256_div_ps(acc, _mm256_set1_ps((float)((ch1 - ch0) * (cw1 - cw0))));
                    st8(&y->v, at4(g, n, c, oh, ow, g->C, g->OH, g->OW), ys, nc, acc);
                }
        }
    }
}

/* ---- fc: dense codes (one range, or one per output: the channel of output n is n) or fp16
 * weights. A code is decoded in registers: fp16(fma(q, step, lo)) when its range's table is
 * exact (table8), else dec8 (TwoSum picks the lanes dec1 must redo) ----------------------- */
typedef struct { const uint8_t *lo, *st; uint32_t ls, exact, fp16; } franges_t;

/* weights of outputs n..n+8 at row k of [K, N] (c: their 8 codes), or 8 values of any layout
 * gathered in v16 (fp16 bits, 16-bit lanes) / c (codes, 32-bit lanes as float) */
GXAI __m256 fdec(const franges_t *R, uint32_t n, __m256 q, const uint8_t *c, uint32_t cs)
{
    __m256 lf = lanes8(R->lo + n * R->ls, R->ls), sf = lanes8(R->st + n * R->ls, R->ls);
    if (R->exact) return _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_fmadd_ps(q, sf, lf), 0));
    return dec8(q, lf, sf, R->lo + n * R->ls, R->st + n * R->ls, R->ls, c, cs);
}

GXA float fdec1(const franges_t *R, uint32_t n, uint32_t q)
{
    return dec1(rd16(R->lo + n * R->ls), rd16(R->st + n * R->ls), q);
}

/* 0 when fc_avx2 / fct_avx2 do not apply (bitmap weights, a channel per something else) */
GXA int franges(wcur_t *w, uint32_t N, franges_t *R)
{
    R->fp16 = w->v.kind == V_F16; R->ls = 0; R->exact = 0; R->lo = R->st = w->v.p;
    if (R->fp16) return 1;
    if (w->v.kind != V_CODES || w->packing != P_DENSE || (w->C != 1u && w->C != N)) return 0;
    R->lo = w->lo; R->st = w->lo + 2u * w->C; R->ls = w->C > 1u ? 2u : 0u;
    if (w->C == 1u) R->exact = (uint32_t)table8(rd16(R->lo), rd16(R->st), w->table, &w->zero);
    return 1;
}

/* one weight row (outputs n0..n0+nv of [K, N]) into acc, 8 a step; the three kinds in their
 * own loops (a test per vector, or the ranges reloaded, cost 4x on the 25M MLP) */
#define FC_ROW(wv) do { uint32_t j_; for (j_ = 0; j_ < nv; j_ += 8u) { \
        if (!(j_ & 63u) && j_ + ahead < left) __builtin_prefetch((const void *)((uintptr_t)(wrow + es * j_) + es * ahead)); \
        _mm256_storeu_ps(acc + j_, _mm256_fmadd_ps((wv), xv, _mm256_loadu_ps(acc + j_))); } } while (0)
GXA void fc_row8(const franges_t *R, const uint8_t *wrow, uint32_t n0, uint32_t nv, __m256 xv, float *acc,
                 uint32_t ahead, uint32_t left)
{
    uint32_t es = R->fp16 ? 2u : 1u;
    if (R->fp16) FC_ROW(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(wrow + 2u * j_))));
    else if (R->exact) {
        __m256 lf = _mm256_set1_ps(h2f(rd16(R->lo))), sf = _mm256_set1_ps(h2f(rd16(R->st)));
        FC_ROW(_mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_fmadd_ps(codes8(wrow + j_), sf, lf), 0)));
    } else FC_ROW(fdec(R, n0 + j_, codes8(wrow + j_), wrow + j_, 1u));
}
#undef FC_ROW

/* the outputs of acc[0..nb) (bias added) to y[at..] */
GXA void fc_out(const view_t *y, uint32_t at, const view_t *b, int has_b, uint32_t n, const float *acc, uint32_t nb)
{
    uint32_t j, q;
    for (j = 0; j < nb; j += 8u) {
        uint32_t m = nb - j < 8u ? nb - j : 8u;
        float bv[8] = {0, 0, 0, 0, 0, 0, 0, 0}, av[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (q = 0; q < m; q++) { av[q] = acc[j + q]; bv[q] = has_b ? ldv(b, n + j + q) : 0.0f; }
        st8(y, at + j, 1u, m, has_b ? _mm256_add_ps(_mm256_loadu_ps(av), _mm256_loadu_ps(bv)) : _mm256_loadu_ps(av));
    }
}

/* [K, N]: FNB accumulators walk the weight rows in memory order */
GXA int fc_avx2(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w, uint32_t K, uint32_t N,
                uint32_t rows)
{
    float acc[FNB];
    franges_t R;
    uint32_t r, n, k, j, es;
    if (!franges(w, N, &R)) return 0;
    es = R.fp16 ? 2u : 1u;
    for (r = 0; r < rows; r++)
        for (n = 0; n < N; n += FNB) {
            uint32_t nb = N - n < FNB ? N - n : FNB, nv = nb / 8u * 8u;
            for (j = 0; j < nb; j++) acc[j] = 0.0f;
            for (k = 0; k < K; k++) {
                float xf = ldv(&x->v, r * K + k);
                const uint8_t *wrow = (R.fp16 ? w->v.p : w->codes) + es * (k * N + n);
                fc_row8(&R, wrow, n, nv, _mm256_set1_ps(xf), acc, N <= FNB ? 4096u : N, K * N - (k * N + n));
                for (j = nv; j < nb; j++)
                    acc[j] = acc[j] + xf * (R.fp16 ? h2f(rd16(wrow + 2u * j)) : fdec1(&R, n + j, wrow[j]));
            }
            fc_out(&y->v, r * N + n, b, has_b, n, acc, nb);
        }
    return 1;
}

/* [N, K]: 8 outputs (lanes) walk their rows side by side, 8 values of each row a step,
 * transposed in registers (16-bit lanes: fp16 bits, or codes widened) */
GXA void tr8(__m128i *r)
{
    __m128i t0 = _mm_unpacklo_epi16(r[0], r[1]), t1 = _mm_unpackhi_epi16(r[0], r[1]);
    __m128i t2 = _mm_unpacklo_epi16(r[2], r[3]), t3 = _mm_unpackhi_epi16(r[2], r[3]);
    __m128i t4 = _mm_unpacklo_epi16(r[4], r[5]), t5 = _mm_unpackhi_epi16(r[4], r[5]);
    __m128i t6 = _mm_unpacklo_epi16(r[6], r[7]), t7 = _mm_unpackhi_epi16(r[6], r[7]);
    __m128i u0 = _mm_unpacklo_epi32(t0, t2), u1 = _mm_unpackhi_epi32(t0, t2);
    __m128i u2 = _mm_unpacklo_epi32(t1, t3), u3 = _mm_unpackhi_epi32(t1, t3);
    __m128i u4 = _mm_unpacklo_epi32(t4, t6), u5 = _mm_unpackhi_epi32(t4, t6);
    __m128i u6 = _mm_unpacklo_epi32(t5, t7), u7 = _mm_unpackhi_epi32(t5, t7);
    r[0] = _mm_unpacklo_epi64(u0, u4); r[1] = _mm_unpackhi_epi64(u0, u4);
    r[2] = _mm_unpacklo_epi64(u1, u5); r[3] = _mm_unpackhi_epi64(u1, u5);
    r[4] = _mm_unpacklo_epi64(u2, u6); r[5] = _mm_unpackhi_epi64(u2, u6);
    r[6] = _mm_unpacklo_epi64(u3, u7); r[7] = _mm_unpackhi_epi64(u3, u7);
}

GXA int fct_avx2(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w, uint32_t K, uint32_t N,
                 uint32_t rows)
{
    float xf[FKC], acc[8];
    franges_t R;
    uint32_t r, n, k0, k, j, kc, es;
    if (!franges(w, N, &R)) return 0;
    es = R.fp16 ? 2u : 1u;
    for (r = 0; r < rows; r++)
        for (n = 0; n < N; n += 8u) {
            uint32_t nb = N - n < 8u ? N - n : 8u;
            const uint8_t *wp = (R.fp16 ? w->v.p : w->codes) + es * n * K;
            __m256 a = _mm256_setzero_ps();
            for (k0 = 0; k0 < K; k0 += kc) {
                kc = K - k0 < FKC ? K - k0 : FKC;
                for (k = 0; k < kc; k++) xf[k] = ldv(&x->v, r * K + k0 + k);
                for (k = 0; nb == 8u && k + 8u <= kc; k += 8u) {
                    __m128i v[8];
                    uint8_t cc[64];
                    for (j = 0; j < 8u; j++) {
                        const uint8_t *src = wp + es * (j * K + k0 + k);
                        v[j] = R.fp16 ? _mm_loadu_si128((const __m128i *)(const void *)src)
                                      : _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)src));
                    }
                    tr8(v);
                    for (j = 0; j < 8u; j++) {
                        __m256 wv;
                        if (R.fp16) wv = _mm256_cvtph_ps(v[j]);
                        else {
                            _mm_storel_epi64((__m128i *)(void *)(cc + 8u * j), _mm_packus_epi16(v[j], v[j]));
                            wv = fdec(&R, n, _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(v[j])), cc + 8u * j, 1u);
                        }
                        a = _mm256_fmadd_ps(wv, _mm256_set1_ps(xf[k + j]), a);
                    }
                }
                if (k < kc) {  /* the rest of the chunk (or a block of fewer than 8 outputs): lane by lane */
                    _mm256_storeu_ps(acc, a);
                    for (j = 0; j < nb; j++) {
                        uint32_t kk;
                        for (kk = k; kk < kc; kk++) {
                            const uint8_t *src = wp + es * (j * K + k0 + kk);
                            acc[j] = acc[j] + xf[kk] * (R.fp16 ? h2f(rd16(src)) : fdec1(&R, n + j, src[0]));
                        }
                    }
                    a = _mm256_loadu_ps(acc);
                }
            }
            _mm256_storeu_ps(acc, a);
            fc_out(&y->v, r * N + n, b, has_b, n, acc, nb);
        }
    return 1;
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

#endif /* GX_AVX2_H */
