/* gx_avx2_conv.h: the AVX2 conv kernels of gxnpu.c (included by gx_avx2.h only; not a public
 * header; the rules that keep their bits those of the plain kernels: gx_avx2.h and
 * docs/runtime.md, "Fast kernels"): the panel kernel's pixel loop with 8-lane FMA, and the
 * flat conv on padded (or phase) planes for NCHW.
 */
#ifndef GX_AVX2_CONV_H
#define GX_AVX2_CONV_H

/* ---- conv: one output pixel's taps (F16C) against a weight panel, 64 outputs a pass ------- */
PATCH_FN(patch8, GXA, h2f)  /* gx_fast.h */

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

#endif /* GX_AVX2_CONV_H */
