/* gx_fast.h: the host-speed kernels of gxnpu.c (included by gxnpu.c only, after its helpers;
 * not a public header). See docs/runtime.md, "Fast kernels".
 *
 * Compiled when gxnpu.c is not optimised for size (no __OPTIMIZE_SIZE__, i.e. not -Os/-Oz)
 * and GXNPU_NO_FAST is not defined; a firmware build at -Os keeps only the plain kernels.
 * Each kernel gives the bits of the plain one: every output value still has one fp32
 * accumulator from +0.0f, summed in the order of docs/numerics.md (fc: k ascending; conv: ci,
 * kh, kw), then bias, then one rounding. Only the order ACROSS outputs changes (blocks of
 * outputs share one pass over x and the weights), and weights and x are converted to fp32
 * once into fixed-size stack buffers instead of once per product.
 *
 * Padded conv taps read x = +0.0f instead of being skipped. That adds a product +-0 to the
 * accumulator, which leaves it unchanged (it is never -0: it starts at +0, and a sum is -0
 * only when both terms are), provided every weight is finite (0 * inf would be NaN): the
 * conv kernel checks its decoded weights and returns 0 (plain kernel) when one is not.
 */
#ifndef GX_FAST_H
#define GX_FAST_H

#define FW 16u        /* outputs per register block (4 SSE vectors) */
#define FPANEL 8192u  /* conv: decoded fp32 weights kept on the stack (32 KB) */
#define FBIAS 256u    /* conv: outputs per weight panel at most */
#define FTAPS (FPANEL / FW)  /* conv: most taps per output (cg * KH * KW) of the fast path */
#define FNB 4096u     /* fc: accumulators (16 KB) */
#define FKC 256u      /* fc [N, K]: x values converted at once */
#define FPLANE 4096u  /* depthwise: one channel's padded plane as fp32 (16 KB) */

/* conv: a panel of decoded weights [block][tap][FW] */
typedef struct { uint32_t T, o0, nblk, cg, og, wf, group; } cpanel_t;

/* conv: the T taps of output pixel (n, oh, ow) for the group starting at channel c0 (x is
 * fp16), +0 in padding. One body for the SSE2 kernel (patch, below) and the AVX2 one (patch8 in
 * gx_avx2_conv.h, F16C conversions): PATCH_FN(name, qualifiers, fp16 bits -> float) */
#define PATCH_FN(name, quals, cvt)                                                                      \
    quals void name(const view_t *x, const geo_t *g, uint32_t cg, uint32_t n, uint32_t c0, uint32_t oh, \
                    uint32_t ow, float *p)                                                              \
    {                                                                                                   \
        uint32_t xci = g->cl ? 1u : g->H * g->W, xh = g->cl ? g->W * g->C : g->W, xw = g->cl ? g->C : 1u; \
        uint32_t xb = at4(g, n, c0, 0, 0, g->C, g->H, g->W), ci, kh, kw, kh0, kh1, kw0, kw1;            \
        int32_t ih0 = (int32_t)(oh * g->sh) - g->ph, iw0 = (int32_t)(ow * g->sw) - g->pw;              \
        tap_range(ih0, g->dh, (int32_t)g->H, g->KH, &kh0, &kh1);                                        \
        tap_range(iw0, g->dw, (int32_t)g->W, g->KW, &kw0, &kw1);                                        \
        for (ci = 0; ci < cg; ci++)                                                                     \
            for (kh = 0; kh < g->KH; kh++, p += g->KW) {                                                \
                const uint8_t *row;                                                                     \
                if (kh < kh0 || kh >= kh1) { for (kw = 0; kw < g->KW; kw++) p[kw] = 0.0f; continue; }   \
                row = x->p + 2u * (xb + ci * xci + (uint32_t)(ih0 + (int32_t)(kh * g->dh)) * xh);       \
                for (kw = 0; kw < kw0; kw++) p[kw] = 0.0f;                                              \
                for (; kw < kw1; kw++)                                                                  \
                    p[kw] = cvt((uint16_t)rd16(row + 2u * ((uint32_t)(iw0 + (int32_t)(kw * g->dw)) * xw))); \
                for (; kw < g->KW; kw++) p[kw] = 0.0f;                                                  \
            }                                                                                           \
    }

#if GX_AVX2
#include "gx_avx2.h"
#endif

/* fp32 of fp16(lo + q*step), the exact decode of SPEC 5: lo + q*step in fp32 (q*step is
 * exact: 19 significant bits) is the exact sum when TwoSum's error term is 0, and then one
 * fp16 rounding of it is decode_code's; otherwise decode_code itself */
static float dec_fast(uint32_t lo_h, uint32_t step_h, float lo, float step, uint32_t q)
{
    float p = (float)q * step, s = lo + p, bb = s - lo, e = (lo - (s - bb)) + (p - bb);
    if (e != 0.0f) return gx_f16_to_f32(decode_code(lo_h, step_h, q));
    return gx_f16_to_f32(gx_f32_to_f16(s));
}

/* w's decode table for channel ch (0 for one range) */
static void fast_table(wcur_t *w, uint32_t ch)
{
    uint32_t lo = rd16(w->lo + 2u * ch), step = rd16(w->lo + 2u * (w->C + ch)), q;
    float lf, sf;
#if GX_AVX2
    if (w->avx) { wtable(w, ch); return; }  /* the same table, eight codes at a time */
#endif
    lf = gx_f16_to_f32((uint16_t)lo); sf = gx_f16_to_f32((uint16_t)step);
    w->zero = 256u;
    for (q = 0; q < 256u; q++) {
        w->table[q] = dec_fast(lo, step, lf, sf, q);
        if (w->zero == 256u && (bits_of(w->table[q]) & 0x7FFFFFFFu) == 0) w->zero = q;
    }
}

/* four fp32 lanes (GCC/Clang vector extension: SSE on x86-64, scalar code elsewhere); lane
 * arithmetic is the same IEEE binary32 + and * as scalar code, with -ffp-contract=off */
typedef float v4f __attribute__((vector_size(16)));
static v4f v4_ld(const float *p) { v4f v; memcpy(&v, p, sizeof v); return v; }
static void v4_st(float *p, v4f v) { memcpy(p, &v, sizeof v); }

/* ---- fc, [K, N] weights, one decode table (or fp16) ---------------------------------------
 * FNB accumulators (a fixed stack array, 16 KB) walk x one row k at a time, so the codes are
 * read in memory order (whole rows when N <= FNB), each 64-byte line prefetched `ahead`
 * bytes early (measured: twice as fast as the hardware prefetcher alone on the 25M MLP), never
 * past the weight's last code;
 * 16 lanes per step */
static void fc_row16(const float *P, const uint8_t *c, uint32_t nb, uint32_t ahead, uint32_t left, float *acc)
{
    uint32_t s;
    for (s = 0; s < nb; s += FW, c += FW, acc += FW) {
        if (!(s & 63u) && s + ahead < left) __builtin_prefetch((const void *)((uintptr_t)c + ahead));
        {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            uint64_t u, v;  /* 8 codes a load, c[0] in the low byte (measured ~15 % faster) */
            v4f w0, w1, w2, w3;
            memcpy(&u, c, 8); memcpy(&v, c + 8, 8);
            w0 = (v4f){P[u & 255u], P[(u >> 8) & 255u], P[(u >> 16) & 255u], P[(u >> 24) & 255u]};
            w1 = (v4f){P[(u >> 32) & 255u], P[(u >> 40) & 255u], P[(u >> 48) & 255u], P[u >> 56]};
            w2 = (v4f){P[v & 255u], P[(v >> 8) & 255u], P[(v >> 16) & 255u], P[(v >> 24) & 255u]};
            w3 = (v4f){P[(v >> 32) & 255u], P[(v >> 40) & 255u], P[(v >> 48) & 255u], P[v >> 56]};
#else
            v4f w0 = {P[c[0]], P[c[1]], P[c[2]], P[c[3]]}, w1 = {P[c[4]], P[c[5]], P[c[6]], P[c[7]]};
            v4f w2 = {P[c[8]], P[c[9]], P[c[10]], P[c[11]]}, w3 = {P[c[12]], P[c[13]], P[c[14]], P[c[15]]};
#endif
            v4_st(acc, v4_ld(acc) + w0); v4_st(acc + 4, v4_ld(acc + 4) + w1);
            v4_st(acc + 8, v4_ld(acc + 8) + w2); v4_st(acc + 12, v4_ld(acc + 12) + w3);
        }
    }
}

static void fc_fast(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w,
                    uint32_t K, uint32_t N, uint32_t rows)
{
    float acc[FNB], prod[256];
    uint32_t r, n, k, j;
    if (w->v.kind == V_CODES) fast_table(w, 0u);
    for (r = 0; r < rows; r++)
        for (n = 0; n < N; n += FNB) {
            uint32_t nb = N - n < FNB ? N - n : FNB, nv = w->v.kind == V_CODES ? nb / FW * FW : 0u;
            for (j = 0; j < nb; j++) acc[j] = 0.0f;
            for (k = 0; k < K; k++) {
                float xv = xat(&x->v, r * K + k);
                if (nv) {  /* x*w is exact in fp32 (two fp16 factors): one product per code */
                    for (j = 0; j < 256u; j += 4u) v4_st(prod + j, v4_ld(w->table + j) * xv);
                    fc_row16(prod, w->codes + k * N + n, nv, N <= FNB ? 4096u : N, K * N - (k * N + n), acc);
                }
                if (nv < nb) acc_block(acc + nv, nb - nv, xv, w, k * N + n + nv, 1u);
            }
            for (j = 0; j < nb; j++) st(&y->v, r * N + n + j, has_b ? acc[j] + ld(b, n + j) : acc[j]);
        }
}

/* ---- fc, [N, K] weights (transposed), one decode table (or fp16): 8 outputs walk their own
 * rows of codes side by side over a chunk of x converted once -------------------------------- */
#define FT 8u
static void fct_fast(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w,
                     uint32_t K, uint32_t N, uint32_t rows)
{
    float xf[FKC], acc[FT];
    uint32_t r, n, k0, k, j, kc;
    if (w->v.kind == V_CODES) fast_table(w, 0u);
    for (r = 0; r < rows; r++)
        for (n = 0; n < N; n += FT) {
            uint32_t nb = N - n < FT ? N - n : FT;
            for (j = 0; j < FT; j++) acc[j] = 0.0f;
            for (k0 = 0; k0 < K; k0 += kc) {
                kc = K - k0 < FKC ? K - k0 : FKC;
                for (k = 0; k < kc; k++) xf[k] = xat(&x->v, r * K + k0 + k);
                if (w->v.kind == V_CODES && nb == FT) {
                    const uint8_t *c = w->codes + n * K + k0;
                    const float *T = w->table;
                    for (k = 0; k < kc; k++, c++)
                        for (j = 0; j < FT; j++) acc[j] = acc[j] + xf[k] * T[c[j * K]];
                } else
                    for (k = 0; k < kc; k++) acc_block(acc, nb, xf[k], w, n * K + k0 + k, K);
            }
            for (j = 0; j < nb; j++) st(&y->v, r * N + n + j, has_b ? acc[j] + ld(b, n + j) : acc[j]);
        }
}

/* ---- conv: a panel of decoded weights, one x patch per output pixel ------------------------ */

/* decode outputs [o0, o0 + 16*nblk) of one group (columns past the group's end: +0);
 * 0 when a weight is not finite */
static int panel_fill(const geo_t *g, const cpanel_t *P, wcur_t *w, float *pan)
{
    uint32_t bl, j, t, ci, kh, kw, oend = (P->o0 / P->og + 1u) * P->og, bad = 0;
    int dense = w->v.kind == V_CODES && w->packing == P_DENSE;
    for (bl = 0; bl < P->nblk; bl++)
        for (j = 0; j < FW; j++) {
            uint32_t o = P->o0 + bl * FW + j;
            float *col = pan + bl * P->T * FW + j;
            if (o >= oend) { for (t = 0; t < P->T; t++) col[t * FW] = 0.0f; continue; }
            if (w->v.kind == V_CODES && w->C > 1u) fast_table(w, o);
            for (ci = 0, t = 0; ci < P->cg; ci++)
                for (kh = 0; kh < g->KH; kh++)
                    for (kw = 0; kw < g->KW; kw++, t++) {
                        uint32_t i = P->wf ? ((kh * g->KW + kw) * P->cg + ci) * g->O + o : o * P->T + t;
                        col[t * FW] = dense ? w->table[w->codes[i]] : wat(w, i);
                        bad |= (bits_of(col[t * FW]) & 0x7F800000u) == 0x7F800000u;
                    }
        }
    return !bad;
}

PATCH_FN(patch, static, gx_f16_to_f32)

static void dot_block(const float *p, const float *pan, uint32_t T, float *acc)
{
    v4f a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
    uint32_t t;
    for (t = 0; t < T; t++, pan += FW) {
        float xv = p[t];
        a0 = a0 + v4_ld(pan) * xv; a1 = a1 + v4_ld(pan + 4) * xv;
        a2 = a2 + v4_ld(pan + 8) * xv; a3 = a3 + v4_ld(pan + 12) * xv;
    }
    v4_st(acc, a0); v4_st(acc + 4, a1); v4_st(acc + 8, a2); v4_st(acc + 12, a3);
}

/* two blocks (32 outputs) at once: 8 independent add chains hide the add latency */
static void dot_block2(const float *p, const float *pa, const float *pb, uint32_t T, float *acc)
{
    v4f a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    uint32_t t;
    for (t = 0; t < T; t++, pa += FW, pb += FW) {
        float xv = p[t];
        a0 = a0 + v4_ld(pa) * xv; a1 = a1 + v4_ld(pa + 4) * xv;
        a2 = a2 + v4_ld(pa + 8) * xv; a3 = a3 + v4_ld(pa + 12) * xv;
        b0 = b0 + v4_ld(pb) * xv; b1 = b1 + v4_ld(pb + 4) * xv;
        b2 = b2 + v4_ld(pb + 8) * xv; b3 = b3 + v4_ld(pb + 12) * xv;
    }
    v4_st(acc, a0); v4_st(acc + 4, a1); v4_st(acc + 8, a2); v4_st(acc + 12, a3);
    v4_st(acc + 16, b0); v4_st(acc + 20, b1); v4_st(acc + 24, b2); v4_st(acc + 28, b3);
}

/* one output channel (depthwise): one accumulator, the taps in order */
static float dot1(const float *p, const float *pan, uint32_t T)
{
    float acc = 0.0f;
    uint32_t t;
    for (t = 0; t < T; t++) acc = acc + p[t] * pan[t * FW];
    return acc;
}

/* ---- depthwise conv (one input channel per group): the channel's plane converted once to
 * fp32 with its padding as +0, then 4 output columns per step (stride 1) ------------------- */
static int conv_dw(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w, const geo_t *g,
                   uint32_t wf, uint32_t og)
{
    float plane[FPLANE], wt[64];
    uint32_t Hp = (g->OH - 1u) * g->sh + (g->KH - 1u) * g->dh + 1u, Wp = (g->OW - 1u) * g->sw + (g->KW - 1u) * g->dw + 1u;
    uint32_t T = g->KH * g->KW, n, c, m, r, q, oh, ow, kh, kw;
    if ((uint64_t)Hp * Wp > FPLANE || T > 64u) return 0;
    if (w->v.kind == V_CODES && w->C == 1u) fast_table(w, 0u);
    for (n = 0; n < g->N; n++)
        for (c = 0; c < g->C; c++) {
            for (r = 0; r < Hp; r++)
                for (q = 0; q < Wp; q++) {
                    int32_t ih = (int32_t)r - g->ph, iw = (int32_t)q - g->pw;
                    plane[r * Wp + q] = ih < 0 || ih >= (int32_t)g->H || iw < 0 || iw >= (int32_t)g->W ? 0.0f
                                        : xat(&x->v, at4(g, n, c, (uint32_t)ih, (uint32_t)iw, g->C, g->H, g->W));
                }
            for (m = 0; m < og; m++) {
                uint32_t o = c * og + m, t;
                float bo = has_b ? ld(b, o) : 0.0f;
                if (w->v.kind == V_CODES && w->C > 1u) fast_table(w, o);
                for (t = 0; t < T; t++) {
                    wt[t] = wat(w, wf ? t * g->O + o : o * T + t);
                    if ((bits_of(wt[t]) & 0x7F800000u) == 0x7F800000u) return 0;
                }
                for (oh = 0; oh < g->OH; oh++) {
                    const float *row = plane + oh * g->sh * Wp;
                    for (ow = 0; ow < g->OW;) {
                        float acc[4];
                        uint32_t nb = g->sw == 1u && g->OW - ow >= 4u ? 4u : 1u, j;
                        if (nb == 4u) {
                            v4f a = {0, 0, 0, 0};
                            for (kh = 0, t = 0; kh < g->KH; kh++)
                                for (kw = 0; kw < g->KW; kw++, t++)
                                    a = a + v4_ld(row + kh * g->dh * Wp + ow + kw * g->dw) * wt[t];
                            v4_st(acc, a);
                        } else {
                            acc[0] = 0.0f;
                            for (kh = 0, t = 0; kh < g->KH; kh++)
                                for (kw = 0; kw < g->KW; kw++, t++)
                                    acc[0] = acc[0] + row[kh * g->dh * Wp + ow * g->sw + kw * g->dw] * wt[t];
                        }
                        for (j = 0; j < nb; j++, ow++)
                            st(&y->v, at4(g, n, o, oh, ow, g->O, g->OH, g->OW), has_b ? acc[j] + bo : acc[j]);
                    }
                }
            }
        }
    return 1;
}

/* 1 when done, 0 when the plain kernel must run (too many taps, a non-finite weight) */
static int conv_fast(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w,
                     const geo_t *g, uint32_t wf, uint32_t group)
{
    float pan[FPANEL], p[FTAPS], acc[2u * FW], bias[FBIAS];
    cpanel_t P;
    uint32_t n, oh, ow, bl, j, gi;
    P.cg = g->C / group; P.og = g->O / group; P.T = P.cg * g->KH * g->KW; P.wf = wf; P.group = group;
    if (x->v.kind != V_F16) return 0;
    if (P.cg == 1u && P.og <= 4u && conv_dw(x, y, b, has_b, w, g, wf, P.og)) return 1;
    if (P.T > FTAPS) return 0;
    if (w->v.kind == V_CODES && w->C == 1u) fast_table(w, 0u);
    for (gi = 0; gi < group; gi++)
        for (P.o0 = gi * P.og; P.o0 < (gi + 1u) * P.og; P.o0 += P.nblk * FW) {
            uint32_t left = (gi + 1u) * P.og - P.o0;
            P.nblk = (left + FW - 1u) / FW;
            if (P.nblk * P.T * FW > FPANEL) P.nblk = FPANEL / (P.T * FW);
            if (P.nblk * FW > FBIAS) P.nblk = FBIAS / FW;
            if (!panel_fill(g, &P, w, pan)) return 0;
            for (j = 0; j < P.nblk * FW; j++) bias[j] = has_b && j < left ? ld(b, P.o0 + j) : 0.0f;
#if GX_AVX2
            if (w->avx) { conv_px_avx2(&x->v, &y->v, g, &P, pan, bias, has_b, gi, left); continue; }
#endif
            for (n = 0; n < g->N; n++)
                for (oh = 0; oh < g->OH; oh++)
                    for (ow = 0; ow < g->OW; ow++) {
                        patch(&x->v, g, P.cg, n, gi * P.cg, oh, ow, p);
                        for (bl = 0; bl < P.nblk; bl += 2u) {
                            uint32_t o = P.o0 + bl * FW, lanes = (bl + 1u < P.nblk ? 2u : 1u) * FW;
                            uint32_t nb = left - bl * FW < lanes ? left - bl * FW : lanes;
                            const float *pa = pan + bl * P.T * FW;
                            if (nb == 1u) acc[0] = dot1(p, pa, P.T);
                            else if (lanes > FW) dot_block2(p, pa, pa + P.T * FW, P.T, acc);
                            else dot_block(p, pa, P.T, acc);
                            for (j = 0; j < nb; j++)
                                st(&y->v, at4(g, n, o + j, oh, ow, g->O, g->OH, g->OW),
                                   has_b ? acc[j] + bias[bl * FW + j] : acc[j]);
                        }
                    }
        }
    return 1;
}

/* ---- relu on fp16 bits: fmaxn(x, +0) of docs/numerics.md is x for x >= +0 (and +inf), +0 for
 * x < 0 and -0, and NaN (stored as 0x7E00) for NaN: no float round trip needed ------------- */
static int relu_fast(const view_t *x, const view_t *y, uint32_t fn, uint32_t n, uint32_t avx)
{
    uint32_t i;
    if (fn != A_RELU || x->kind != V_F16 || y->kind != V_F16) return 0;
#if GX_AVX2
    if (avx) { relu_avx2(x, y, n); return 1; }
#endif
    (void)avx;
    for (i = 0; i < n; i++) {
        uint32_t h = rd16(x->p + 2u * i);
        wr16(y->w + 2u * i, (h & 0x7FFFu) > 0x7C00u ? 0x7E00u : (h & 0x8000u) ? 0u : h);
    }
    return 1;
}

#endif /* GX_FAST_H */
