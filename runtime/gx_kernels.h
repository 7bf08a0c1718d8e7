/* gx_kernels.h: part of gxnpu.c, included by it once (not a public header, not compiled alone):
 * index helpers and the weighted kernels: conv, fc, matmul, batchnorm. See gxnpu.c. */
#ifndef GX_KERNELS_H
#define GX_KERNELS_H

/* ---- index helpers ------------------------------------------------------------------------ */
static void strides_of(const shape_t *s, uint32_t *st_)
{
    uint32_t k = s->rank, acc = 1;
    while (k--) { st_[k] = acc; acc *= s->d[k]; }
}

/* strides of `in` broadcast against out (right-aligned, 0 on broadcast dims) */
static void bstrides(const shape_t *in, const shape_t *out, uint32_t *bs)
{
    uint32_t st_[MAXR], k, off = out->rank - in->rank;
    strides_of(in, st_);
    for (k = 0; k < out->rank; k++)
        bs[k] = k < off || in->d[k - off] == 1u ? 0u : st_[k - off];
}

/* advance an odometer over dims d; offsets a/b move by strides sa/sb */
static void step_idx(uint32_t *idx, const shape_t *s, const uint32_t *sa, uint32_t *a,
                     const uint32_t *sb, uint32_t *b)
{
    uint32_t k = s->rank;
    while (k--) {
        idx[k]++; *a += sa[k]; if (sb) *b += sb[k];
        if (idx[k] < s->d[k]) return;
        *a -= sa[k] * s->d[k]; if (sb) *b -= sb[k] * s->d[k]; idx[k] = 0;
    }
}

/* ---- kernels: NUMERICS (docs/numerics.md) -------------------------------------------------- */
typedef struct { view_t v; shape_t s; } ten_t;

static void ten(const gx_task *t, uint32_t ti, ten_t *x) { view_of(t, ti, &x->v); shape_of(t, ti, &x->s); }
static void copy_vals(const view_t *x, const view_t *y, uint32_t xi, uint32_t yi, uint32_t n)
{
    uint32_t k;
    if (x->kind == V_F16 && y->kind == V_F16) { memmove(y->w + 2u * yi, x->p + 2u * xi, 2u * n); return; }
    for (k = 0; k < n; k++) st(y, yi + k, ld(x, xi + k));
}

/* conv/pool geometry, 1-D as 2-D with H = 1 */
typedef struct { uint32_t N, C, H, W, O, OH, OW, KH, KW, sh, sw, dh, dw, cl; int32_t ph, pw; } geo_t;

static void conv_geo(const shape_t *x, const shape_t *y, geo_t *g)
{
    uint32_t r = x->rank - 2u;
    g->N = x->d[0];
    if (!g->cl) {
        g->C = x->d[1]; g->O = y->d[1];
        g->H = r == 2u ? x->d[2] : 1u; g->OH = r == 2u ? y->d[2] : 1u;
        g->W = x->d[r + 1u]; g->OW = y->d[r + 1u];
    } else {
        g->C = x->d[r + 1u]; g->O = y->d[r + 1u];
        g->H = r == 2u ? x->d[1] : 1u; g->OH = r == 2u ? y->d[1] : 1u;
        g->W = x->d[r]; g->OW = y->d[r];
    }
}

static uint32_t at4(const geo_t *g, uint32_t n, uint32_t c, uint32_t h, uint32_t w, uint32_t C,
                    uint32_t H, uint32_t W)
{
    return g->cl ? ((n * H + h) * W + w) * C + c : ((n * C + c) * H + h) * W + w;
}

/* fast reads of the two common cases: fp16 activations, fp16 or dense-coded weights */
static float xat(const view_t *x, uint32_t i)
{
    return x->kind == V_F16 ? gx_f16_to_f32((uint16_t)rd16(x->p + 2u * i)) : ld(x, i);
}
static float wfast(wcur_t *c, uint32_t i)
{
    if (c->v.kind == V_CODES && c->packing == P_DENSE) return c->table[c->codes[i]];
    if (c->v.kind == V_F16) return gx_f16_to_f32((uint16_t)rd16(c->v.p + 2u * i));
    return wat(c, i);
}

/* the first k in [0, K) with lo <= base + k*d, and the end of those with base + k*d < hi */
static void tap_range(int32_t base, uint32_t d, int32_t hi, uint32_t K, uint32_t *k0, uint32_t *k1)
{
    int32_t a = 0, e = (int32_t)K;
    if (base < 0) a = (int32_t)((uint32_t)(-base) + d - 1u) / (int32_t)d;
    if (base + (e - 1) * (int32_t)d >= hi) e = hi - base <= 0 ? 0 : (hi - base + (int32_t)d - 1) / (int32_t)d;
    if (a > e) a = e;
    *k0 = (uint32_t)a; *k1 = (uint32_t)e;
}

/* BLK outputs at a time share one x read ([K, N] fc, group-1 conv) when one decode table
 * serves all of them (fp16 weights, or one range): each output still accumulates in its own
 * order, so the bits are those of the plain loops */
#define BLK 16u
static int shared_table(const wcur_t *w)
{
    return w->v.kind == V_F16 || (w->v.kind == V_CODES && w->packing == P_DENSE && w->C == 1u);
}

static void acc_block(float *acc, uint32_t nb, float xv, wcur_t *w, uint32_t wi, uint32_t ws)
{
    uint32_t j;
    if (w->v.kind == V_F16)
        for (j = 0; j < nb; j++) acc[j] = acc[j] + xv * gx_f16_to_f32((uint16_t)rd16(w->v.p + 2u * (wi + j * ws)));
    else
        for (j = 0; j < nb; j++) acc[j] = acc[j] + xv * w->table[w->codes[wi + j * ws]];
}

/* pooling geometry (words of the record); the window's taps inside x come from tap_range, so
 * the work is the taps that read x (a window wider than x costs no more than x); avg divides
 * by the taps inside x, or also those in the padding when count_include_pad (bit 1 of word 0):
 * the count is arithmetic */
typedef struct { uint32_t kH, kW, sh, sw, dh, dw, cip, max; int32_t ph, pw, peh, pew; } pool_t;

/* along one axis: the taps [k0, k1) inside x, and [c0, c1) the taps avg counts */
static void pool_taps(const pool_t *pp, int32_t base, uint32_t d, int32_t hi, uint32_t K, int32_t p, int32_t pe,
                      uint32_t *k0, uint32_t *k1, uint32_t *c0, uint32_t *c1)
{
    tap_range(base, d, hi, K, k0, k1);
    tap_range(pp->cip ? base + p : base, d, pp->cip ? hi + p + pe : hi, K, c0, c1);
}

#if GX_FAST
#include "gx_fast.h"
#endif

static void conv_blocked(const ten_t *x, const ten_t *y, const view_t *b, int has_b, wcur_t *w,
                         const geo_t *g, uint32_t wf)
{
    uint32_t ws = wf ? 1u : g->C * g->KH * g->KW;  /* from output o to o + 1 in the weight */
    uint32_t n, oh, ow, o0, ci, kh, kw, kh0, kh1, kw0, kw1, j;
    uint32_t xci = g->cl ? 1u : g->H * g->W, xh = g->cl ? g->W * g->C : g->W, xw = g->cl ? g->C : 1u;
    float acc[BLK];
    wcur_chan(w, 0);
    for (n = 0; n < g->N; n++)
        for (oh = 0; oh < g->OH; oh++) {
            int32_t ih0 = (int32_t)(oh * g->sh) - g->ph;
            tap_range(ih0, g->dh, (int32_t)g->H, g->KH, &kh0, &kh1);
            for (ow = 0; ow < g->OW; ow++) {
                int32_t iw0 = (int32_t)(ow * g->sw) - g->pw;
                uint32_t xb = at4(g, n, 0, 0, 0, g->C, g->H, g->W);
                tap_range(iw0, g->dw, (int32_t)g->W, g->KW, &kw0, &kw1);
                for (o0 = 0; o0 < g->O; o0 += BLK) {
                    uint32_t nb = g->O - o0 < BLK ? g->O - o0 : BLK;
                    for (j = 0; j < nb; j++) acc[j] = 0.0f;
                    for (ci = 0; ci < g->C; ci++)
                        for (kh = kh0; kh < kh1; kh++) {
                            uint32_t xr = xb + ci * xci + (uint32_t)(ih0 + (int32_t)(kh * g->dh)) * xh;
                            for (kw = kw0; kw < kw1; kw++)
                                acc_block(acc, nb, xat(&x->v, xr + (uint32_t)(iw0 + (int32_t)(kw * g->dw)) * xw), w,
                                          wf ? ((kh * g->KW + kw) * g->C + ci) * g->O + o0
                                             : ((o0 * g->C + ci) * g->KH + kh) * g->KW + kw, ws);
                        }
                    for (j = 0; j < nb; j++)
                        st(&y->v, at4(g, n, o0 + j, oh, ow, g->O, g->OH, g->OW), has_b ? acc[j] + ld(b, o0 + j) : acc[j]);
                }
            }
        }
}

static void k_conv(const gx_task *t, const node_t *nd)
{
    ten_t x, y; shape_t ws; view_t b; wcur_t w; geo_t g;
    uint32_t wf = (word(nd, 0) >> 4) & 15u, group = word(nd, 1), r, cg, og, o, n, oh, ow, ci, kh, kw;
    uint32_t wci, wkh, wkw, xci, xh, xw, kh0, kh1, kw0, kw1;
    int has_b = nd->nin > 2 && ref(nd, 2) != 0xFFFFu;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, nd->nin), &y); shape_of(t, ref(nd, 1), &ws);
    wcur_init(t, ref(nd, 1), &w);
    if (has_b) view_of(t, ref(nd, 2), &b);
    r = x.s.rank - 2u; g.cl = word(nd, 0) & 1u; conv_geo(&x.s, &y.s, &g);
    g.KH = r == 2u ? ws.d[wf ? 0 : 2] : 1u; g.KW = ws.d[wf ? r - 1u : r + 1u];
    g.sh = r == 2u ? word(nd, 2) : 1u; g.dh = r == 2u ? word(nd, 3) : 1u; g.ph = r == 2u ? iword(nd, 4) : 0;
    g.sw = word(nd, 3u * r - 1u); g.dw = word(nd, 3u * r); g.pw = iword(nd, 3u * r + 1u);
    cg = g.C / group; og = g.O / group;
    /* strides of ci, kh, kw in the weight and in x */
    wci = wf ? g.O : g.KH * g.KW; wkh = wf ? g.KW * cg * g.O : g.KW; wkw = wf ? cg * g.O : 1u;
    xci = g.cl ? 1u : g.H * g.W; xh = g.cl ? g.W * g.C : g.W; xw = g.cl ? g.C : 1u;
#if GX_AVX2
    if (w.avx && conv_flat(&x, &y, &b, has_b, &w, &g, wf, group)) return;  /* not nested in conv_fast: stack */
#endif
#if GX_FAST
    if (conv_fast(&x, &y, &b, has_b, &w, &g, wf, group)) return;
#endif
    if (wf != 2u && group == 1u && shared_table(&w)) { conv_blocked(&x, &y, &b, has_b, &w, &g, wf); return; }
    for (o = 0; o < g.O; o++) {
        uint32_t c0 = o / og * cg, wbase = wf ? o : o * cg * g.KH * g.KW;
        wcur_chan(&w, o);
        for (n = 0; n < g.N; n++)
            for (oh = 0; oh < g.OH; oh++) {
                int32_t ih0 = (int32_t)(oh * g.sh) - g.ph;
                tap_range(ih0, g.dh, (int32_t)g.H, g.KH, &kh0, &kh1);
                for (ow = 0; ow < g.OW; ow++) {
                    int32_t iw0 = (int32_t)(ow * g.sw) - g.pw;
                    uint32_t xb;
                    float acc = 0.0f;
                    tap_range(iw0, g.dw, (int32_t)g.W, g.KW, &kw0, &kw1);
                    /* x index of (c0, ih0 + kh0*dh, iw0 + kw0*dw), as unsigned offsets */
                    xb = at4(&g, n, c0, 0, 0, g.C, g.H, g.W);
                    for (ci = 0; ci < cg; ci++)
                        for (kh = kh0; kh < kh1; kh++) {
                            uint32_t xr = xb + ci * xci + (uint32_t)(ih0 + (int32_t)(kh * g.dh)) * xh;
                            uint32_t wr = wbase + ci * wci + kh * wkh;
                            for (kw = kw0; kw < kw1; kw++)
                                acc = acc + xat(&x.v, xr + (uint32_t)(iw0 + (int32_t)(kw * g.dw)) * xw)
                                          * wfast(&w, wr + kw * wkw);
                        }
                    if (has_b) acc = acc + ld(&b, o);
                    st(&y.v, at4(&g, n, o, oh, ow, g.O, g.OH, g.OW), acc);
                }
            }
    }
}

static void k_fc(const gx_task *t, const node_t *nd)
{
    ten_t x, y; view_t b; wcur_t w;
    uint32_t K, N, rows, n, r, k, tw = nd->sub, wk;
    int has_b = nd->nin > 2 && ref(nd, 2) != 0xFFFFu;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, nd->nin), &y); wcur_init(t, ref(nd, 1), &w);
    if (has_b) view_of(t, ref(nd, 2), &b);
    K = x.s.d[x.s.rank - 1u]; N = y.s.d[y.s.rank - 1u]; rows = x.s.n / K;
    wk = tw ? 1u : N;
#if GX_AVX2
    if (w.avx && (tw ? fct_avx2(&x, &y, &b, has_b, &w, K, N, rows) : fc_avx2(&x, &y, &b, has_b, &w, K, N, rows))) return;
#endif
#if GX_FAST
    if (shared_table(&w)) {
        if (tw) fct_fast(&x, &y, &b, has_b, &w, K, N, rows);
        else fc_fast(&x, &y, &b, has_b, &w, K, N, rows);
        return;
    }
#endif
    if (!tw && shared_table(&w)) {  /* [K, N]: BLK outputs per pass over x */
        float acc[BLK];
        wcur_chan(&w, 0);
        for (r = 0; r < rows; r++)
            for (n = 0; n < N; n += BLK) {
                uint32_t nb = N - n < BLK ? N - n : BLK, j;
                for (j = 0; j < nb; j++) acc[j] = 0.0f;
                for (k = 0; k < K; k++) acc_block(acc, nb, xat(&x.v, r * K + k), &w, k * N + n, 1u);
                for (j = 0; j < nb; j++) st(&y.v, r * N + n + j, has_b ? acc[j] + ld(&b, n + j) : acc[j]);
            }
        return;
    }
    for (n = 0; n < N; n++) {
        uint32_t wb = tw ? n * K : n;
        wcur_chan(&w, n);
        for (r = 0; r < rows; r++) {
            float acc = 0.0f;
            for (k = 0; k < K; k++)
                acc = acc + xat(&x.v, r * K + k) * wfast(&w, wb + k * wk);
            if (has_b) acc = acc + ld(&b, n);
            st(&y.v, r * N + n, acc);
        }
    }
}

/* numpy matmul: 1-D operands promoted, batch dims broadcast */
static void mm_dims(const shape_t *a, const shape_t *b, uint32_t *M, uint32_t *K, uint32_t *N)
{
    *M = a->rank >= 2u ? a->d[a->rank - 2u] : 1u; *K = a->d[a->rank - 1u];
    *N = b->rank >= 2u ? b->d[b->rank - 1u] : 1u;
}
static void batch_shape(const shape_t *s, uint32_t mats, shape_t *bs)
{
    uint32_t k;
    bs->rank = s->rank > 2u ? s->rank - 2u : 0u; bs->n = 1;
    for (k = 0; k < bs->rank; k++) { bs->d[k] = s->d[k]; bs->n *= s->d[k]; }
    (void)mats;
}

static void k_matmul(const gx_task *t, const node_t *nd)
{
    ten_t a, b, y; shape_t ab, bb, yb; uint32_t sa[MAXR], sb[MAXR], idx[MAXR] = {0};
    uint32_t M, K, N, m, n, k, j, ao = 0, bo = 0, yo = 0;
    ten(t, ref(nd, 0), &a); ten(t, ref(nd, 1), &b); ten(t, ref(nd, 2), &y);
    mm_dims(&a.s, &b.s, &M, &K, &N);
    batch_shape(&a.s, M * K, &ab); batch_shape(&b.s, K * N, &bb);
    yb.rank = ab.rank > bb.rank ? ab.rank : bb.rank; yb.n = y.s.n / (M * N);
    for (k = 0; k < yb.rank; k++) yb.d[k] = y.s.d[k];
    bstrides(&ab, &yb, sa); bstrides(&bb, &yb, sb);
    for (k = 0; k < yb.rank; k++) { sa[k] *= M * K; sb[k] *= K * N; }
    for (j = 0; j < yb.n; j++) {
        for (m = 0; m < M; m++)
            for (n = 0; n < N; n++) {
                float acc = 0.0f;
                for (k = 0; k < K; k++)
                    acc = acc + ld(&a.v, ao + m * K + k) * ld(&b.v, bo + k * N + n);
                st(&y.v, yo + m * N + n, acc);
            }
        yo += M * N;
        step_idx(idx, &yb, sa, &ao, sb, &bo);
    }
}

static void k_batchnorm(const gx_task *t, const node_t *nd)
{
    ten_t x, y; view_t p[4];
    uint32_t axis = word(nd, 0), C, inner, outer, c, o, i, q;
    float eps = fword(nd, 1);
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, 5), &y);
    for (q = 0; q < 4u; q++) view_of(t, ref(nd, 1u + q), &p[q]);
    C = x.s.d[axis]; inner = prod(&x.s, axis + 1u, x.s.rank); outer = prod(&x.s, 0, axis);
    for (c = 0; c < C; c++) {
        float mul = ld(&p[0], c) / gx_sqrtf(ld(&p[3], c) + eps);
        float add = ld(&p[1], c) - ld(&p[2], c) * mul;
        for (o = 0; o < outer; o++)
            for (i = 0; i < inner; i++) {
                uint32_t at = (o * C + c) * inner + i;
                st(&y.v, at, ld(&x.v, at) * mul + add);
            }
    }
}

#endif /* GX_KERNELS_H */
