/* gx_ops.h: part of gxnpu.c, included by it once (not a public header, not compiled alone):
 * the other kernels (element-wise, softmax, pooling, reductions, moves) and the op switch. See gxnpu.c. */
#ifndef GX_OPS_H
#define GX_OPS_H

/* numpy maximum / minimum: a NaN operand wins (a first), equal values give b */
static float fmaxn(float a, float b) { return a != a ? a : b != b ? b : a > b ? a : b; }
static float fminn(float a, float b) { return a != a ? a : b != b ? b : a < b ? a : b; }

static float binop(uint32_t fn, float a, float b)
{
    float d;
    switch (fn) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_MAX: return fmaxn(a, b);
    case B_MIN: return fminn(a, b);
    case B_POW: return gx_powf(a, b);
    case B_DIVNN: return b == 0.0f ? 0.0f : a / b; /* div_no_nan: 0 where b == 0 */
    default: d = a - b; return d * d;
    }
}

static void k_binary(const gx_task *t, const node_t *nd, int prelu)
{
    ten_t a, b, y; uint32_t sa[MAXR], sb[MAXR], idx[MAXR] = {0}, ia = 0, ib = 0, j;
    ten(t, ref(nd, 0), &a); ten(t, ref(nd, 1), &b); ten(t, ref(nd, 2), &y);
    bstrides(&a.s, &y.s, sa); bstrides(&b.s, &y.s, sb);
    for (j = 0; j < y.s.n; j++) {
        float u = ld(&a.v, ia), v = ld(&b.v, ib);
        st(&y.v, j, prelu ? (u >= 0.0f ? u : u * v) : binop(nd->sub, u, v));
        step_idx(idx, &y.s, sa, &ia, sb, &ib);
    }
}

static float act(uint32_t fn, const node_t *nd, float x)
{
    float v;
    switch (fn) {
    case A_RELU: return fmaxn(x, 0.0f);
    case A_LEAKY: return x >= 0.0f ? x : x * fword(nd, 0);
    case A_CLIP: v = x < fword(nd, 0) ? fword(nd, 0) : x; return v > fword(nd, 1) ? fword(nd, 1) : v;
    case A_SIGMOID: return gx_sigmoidf(x);
    case A_TANH: return gx_tanhf(x);
    case A_HSIGMOID: return gx_hard_sigmoidf(x, fword(nd, 0), fword(nd, 1));
    case A_HSWISH: return gx_hard_swishf(x);
    case A_ELU: return gx_eluf(x, fword(nd, 0));
    case A_SELU: return gx_seluf(x, fword(nd, 0), fword(nd, 1));
    case A_ABS: return f32_of(bits_of(x) & 0x7FFFFFFFu);
    case A_NEG: return -x;
    case A_SQRT: return gx_sqrtf(x);
    case A_RSQRT: return gx_rsqrtf(x);
    case A_RECIP: return 1.0f / x;
    case A_EXP: return gx_expf(x);
    case A_LOG: return gx_logf(x);
    case A_SQUARE: return x * x;
    case A_POW: return gx_powf(x, fword(nd, 0));
    case A_ERF: return gx_erff(x);
    case A_ERFC: return gx_erfcf(x);
    case A_GELU: return word(nd, 0) ? gx_gelu_tanhf(x) : gx_geluf(x);
    case A_SILU: return gx_siluf(x, fword(nd, 0));
    case A_SOFTPLUS: return gx_softplusf(x);
    case A_SOFTSIGN: return gx_softsignf(x);
    default: return gx_mishf(x);
    }
}

static void k_act(const gx_task *t, const node_t *nd)
{
    ten_t x, y; uint32_t i;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, 1), &y);
#if GX_FAST
    if (relu_fast(&x.v, &y.v, nd->sub, y.s.n, t->cpu)) return;
#endif
    for (i = 0; i < y.s.n; i++) st(&y.v, i, act(nd->sub, nd, ld(&x.v, i)));
}

static void k_softmax(const gx_task *t, const node_t *nd)
{
    ten_t x, y; uint32_t axis = word(nd, 0), D, inner, outer, o, i, j;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, 1), &y);
    D = x.s.d[axis]; inner = prod(&x.s, axis + 1u, x.s.rank); outer = prod(&x.s, 0, axis);
    for (o = 0; o < outer; o++)
        for (i = 0; i < inner; i++) {
            uint32_t base = o * D * inner + i;
            float mx = f32_of(0xFF800000u), sum = 0.0f, ls;
            for (j = 0; j < D; j++) mx = fmaxn(ld(&x.v, base + j * inner), mx);
            for (j = 0; j < D; j++) sum = sum + gx_expf(ld(&x.v, base + j * inner) - mx);
            ls = nd->sub ? gx_logf(sum) : 0.0f;
            for (j = 0; j < D; j++) {
                float z = ld(&x.v, base + j * inner) - mx;
                st(&y.v, base + j * inner, nd->sub ? z - ls : gx_expf(z) / sum);
            }
        }
}

static int sub_is_max(const node_t *nd) { return nd->sub == 0u; }

static void pool_of(const node_t *nd, uint32_t r, pool_t *pp)
{
    pp->kH = 1; pp->sh = 1; pp->ph = 0; pp->peh = 0; pp->dh = 1;
    if (r == 2u) { pp->kH = word(nd, 1); pp->sh = word(nd, 2); pp->ph = iword(nd, 3); pp->peh = iword(nd, 4); pp->dh = word(nd, 5); }
    pp->kW = word(nd, 5u * r - 4u); pp->sw = word(nd, 5u * r - 3u); pp->pw = iword(nd, 5u * r - 2u);
    pp->pew = iword(nd, 5u * r - 1u); pp->dw = word(nd, 5u * r);
    pp->cip = word(nd, 0) & 2u; pp->max = (uint32_t)sub_is_max(nd);
}

static void k_pool(const gx_task *t, const node_t *nd)
{
    ten_t x, y; geo_t g; pool_t pp;
    uint32_t n, c, oh, ow, kh, kw, kh0, kh1, kw0, kw1, ch0, ch1, cw0, cw1;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, 1), &y);
    g.cl = word(nd, 0) & 1u; conv_geo(&x.s, &y.s, &g); pool_of(nd, x.s.rank - 2u, &pp);
#if GX_AVX2
    if (t->cpu && x.v.kind == V_F16) { pool_avx2(&x, &y, &g, &pp); return; }
#endif
    for (oh = 0; oh < g.OH; oh++) {
        int32_t ih0 = (int32_t)(oh * pp.sh) - pp.ph;
        pool_taps(&pp, ih0, pp.dh, (int32_t)g.H, pp.kH, pp.ph, pp.peh, &kh0, &kh1, &ch0, &ch1);
        for (ow = 0; ow < g.OW; ow++) {
            int32_t iw0 = (int32_t)(ow * pp.sw) - pp.pw;
            pool_taps(&pp, iw0, pp.dw, (int32_t)g.W, pp.kW, pp.pw, pp.pew, &kw0, &kw1, &cw0, &cw1);
            for (n = 0; n < g.N; n++)
                for (c = 0; c < g.C; c++) {
                    float acc = pp.max ? f32_of(0xFF800000u) : 0.0f;
                    for (kh = kh0; kh < kh1; kh++)
                        for (kw = kw0; kw < kw1; kw++) {
                            uint32_t ih = (uint32_t)(ih0 + (int32_t)(kh * pp.dh)), iw = (uint32_t)(iw0 + (int32_t)(kw * pp.dw));
                            float v = ld(&x.v, at4(&g, n, c, ih, iw, g.C, g.H, g.W));
                            acc = pp.max ? fmaxn(acc, v) : acc + v;
                        }
                    if (!pp.max) acc = acc / (float)((ch1 - ch0) * (cw1 - cw0));
                    st(&y.v, at4(&g, n, c, oh, ow, g.C, g.OH, g.OW), acc);
                }
        }
    }
}

static void k_reduce(const gx_task *t, const node_t *nd)
{
    ten_t x, y; shape_t ks, rs; uint32_t xs[MAXR], kst[MAXR], rst[MAXR], ki[MAXR] = {0};
    uint32_t mask = word(nd, 0), k, j, ko = 0, fn = nd->sub;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, 1), &y);
    strides_of(&x.s, xs); ks.rank = rs.rank = 0; ks.n = rs.n = 1;
    for (k = 0; k < x.s.rank; k++) {
        shape_t *s = (mask >> k) & 1u ? &rs : &ks;
        uint32_t *sst = (mask >> k) & 1u ? rst : kst;
        sst[s->rank] = xs[k]; s->d[s->rank++] = x.s.d[k]; s->n *= x.s.d[k];
    }
    for (j = 0; j < ks.n; j++) {
        uint32_t ri[MAXR] = {0}, ro = 0, m;
        float acc = fn == 2u ? f32_of(0xFF800000u) : fn == 3u ? f32_of(0x7F800000u) : 0.0f;
        for (m = 0; m < rs.n; m++) {
            float v = ld(&x.v, ko + ro);
            acc = fn == 2u ? fmaxn(acc, v) : fn == 3u ? fminn(acc, v) : acc + v;
            step_idx(ri, &rs, rst, &ro, 0, 0);
        }
        if (fn == 0u) acc = acc / (float)rs.n;
        st(&y.v, j, acc);
        step_idx(ki, &ks, kst, &ko, 0, 0);
    }
}

static void k_transpose(const gx_task *t, const node_t *nd)
{
    ten_t x, y; uint32_t xs[MAXR], ps[MAXR], idx[MAXR] = {0}, k, j, xo = 0;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, 1), &y);
    strides_of(&x.s, xs);
    for (k = 0; k < y.s.rank; k++) ps[k] = xs[word(nd, k)];
    for (j = 0; j < y.s.n; j++) {
        st(&y.v, j, ld(&x.v, xo));
        step_idx(idx, &y.s, ps, &xo, 0, 0);
    }
}

/* concat (join = 1) or split: parts along `axis` of the whole tensor */
static void k_join(const gx_task *t, const node_t *nd, int join)
{
    ten_t whole, part; uint32_t axis = word(nd, 0), outer, inner_w, off = 0, i, o;
    uint32_t n_parts = join ? nd->nin : nd->nout;
    ten(t, join ? ref(nd, nd->nin) : ref(nd, 0), &whole);
    outer = prod(&whole.s, 0, axis); inner_w = prod(&whole.s, axis, whole.s.rank);
    for (i = 0; i < n_parts; i++) {
        uint32_t inner_p;
        ten(t, join ? ref(nd, i) : ref(nd, 1u + i), &part);
        inner_p = prod(&part.s, axis, part.s.rank);
        for (o = 0; o < outer; o++) {
            if (join) copy_vals(&part.v, &whole.v, o * inner_p, o * inner_w + off, inner_p);
            else copy_vals(&whole.v, &part.v, o * inner_w + off, o * inner_p, inner_p);
        }
        off += inner_p;
    }
}

/* input index along one axis for output index j of slice / pad / upsample */
static uint32_t src_index(const node_t *nd, uint32_t k, uint32_t j, const shape_t *x,
                          const shape_t *y, int *outside)
{
    int32_t u, pb, pe, lo, len;
    if (nd->op == OP_SLICE) return (uint32_t)(iword(nd, 2u * k) + (int32_t)j * iword(nd, 2u * k + 1u));
    if (nd->op == OP_UPSAMPLE) return j / (y->d[k] / x->d[k]);
    pb = iword(nd, 1u + k); pe = (int32_t)y->d[k] - (int32_t)x->d[k] - pb;
    lo = pb < 0 ? -pb : 0; len = (int32_t)x->d[k] - lo - (pe < 0 ? -pe : 0);
    u = (int32_t)j - (pb > 0 ? pb : 0);
    if (u < 0 || u >= len) {
        if (nd->sub == 0u) { *outside = 1; return 0; }
        if (nd->sub == 1u) u = u < 0 ? -u : 2 * (len - 1) - u;  /* reflect */
        if (u < 0) u = 0;
        if (u >= len) u = len - 1;                              /* edge */
    }
    return (uint32_t)(u + lo);
}

static void k_gather(const gx_task *t, const node_t *nd)
{
    ten_t x, y; uint32_t xs[MAXR], idx[MAXR] = {0}, k, j, zero = 0;
    ten(t, ref(nd, 0), &x); ten(t, ref(nd, 1), &y);
    strides_of(&x.s, xs);
    for (j = 0; j < y.s.n; j++) {
        uint32_t xo = 0; int outside = 0;
        for (k = 0; k < y.s.rank; k++) xo += src_index(nd, k, idx[k], &x.s, &y.s, &outside) * xs[k];
        st(&y.v, j, outside ? fword(nd, 0) : ld(&x.v, xo));
        step_idx(idx, &y.s, xs, &zero, 0, 0);
    }
}

static void k_copy(const gx_task *t, const node_t *nd)
{
    view_t x, y;
    view_of(t, ref(nd, 0), &x); view_of(t, ref(nd, 1), &y);
    copy_vals(&x, &y, 0, 0, y.n);
}

static void run_node(const gx_task *t, const node_t *nd)
{
    switch (nd->op) {
    case OP_CONV: k_conv(t, nd); break;
    case OP_FC: k_fc(t, nd); break;
    case OP_MATMUL: k_matmul(t, nd); break;
    case OP_BATCHNORM: k_batchnorm(t, nd); break;
    case OP_BINARY: k_binary(t, nd, 0); break;
    case OP_PRELU: k_binary(t, nd, 1); break;
    case OP_ACT: k_act(t, nd); break;
    case OP_SOFTMAX: k_softmax(t, nd); break;
    case OP_POOL: k_pool(t, nd); break;
    case OP_REDUCE: k_reduce(t, nd); break;
    case OP_TRANSPOSE: k_transpose(t, nd); break;
    case OP_CONCAT: k_join(t, nd, 1); break;
    case OP_SPLIT: k_join(t, nd, 0); break;
    case OP_SLICE: case OP_PAD: case OP_UPSAMPLE: k_gather(t, nd); break;
    default: k_copy(t, nd); break;  /* reshape, cast, identity */
    }
}

#endif /* GX_OPS_H */
