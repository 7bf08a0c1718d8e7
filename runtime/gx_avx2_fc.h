/* gx_avx2_fc.h: the AVX2 pooling and fc kernels of gxnpu.c (included by gx_avx2.h only; not a
 * public header; the rules that keep their bits those of the plain kernels: gx_avx2.h and
 * docs/runtime.md, "Fast kernels").
 */
#ifndef GX_AVX2_FC_H
#define GX_AVX2_FC_H

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
    if (w->C == 1u) { wtable(w, 0u); R->exact = w->exact; }
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

#endif /* GX_AVX2_FC_H */
