/* gxnpu.c: the gxnpuc reference runtime. See gxnpu.h and docs/runtime.md.
 *
 * Layout of what it reads: docs/model-format.md (format 2). Numerics: docs/numerics.md.
 * Freestanding C99: string.h only, no heap, no static mutable state; the stack does not
 * grow with the model (fixed-size locals, no recursion).
 */
#include "gxnpu.h"

#include <string.h>

#include "gx_math.h"

/* host-speed kernels (same bits) in runtime/gx_fast.h, left out of size-optimised builds */
#if !defined(__OPTIMIZE_SIZE__) && !defined(GXNPU_NO_FAST)
#define GX_FAST 1
#else
#define GX_FAST 0
#endif
/* x86-64 kernels for CPUs with AVX2/FMA/F16C (runtime/gx_avx2.h), chosen at gx_init */
#if GX_FAST && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(GXNPU_NO_AVX2)
#define GX_AVX2 1
#else
#define GX_AVX2 0
#endif

#define MAXR 8u                 /* highest tensor rank */
#define REC 32u                 /* bytes of one ops record */
#define F_INPUT 2u
#define F_OUTPUT 4u
#define F_FP16_OUT 8u
enum { R_NONE, R_IO, R_DATA, R_WEIGHT };
enum { P_NONE, P_FP16, P_DENSE, P_BITMAP, P_INT32 };
enum { V_F16, V_F32, V_I32, V_CODES };
enum { OP_CONV = 1, OP_FC, OP_MATMUL, OP_BATCHNORM, OP_BINARY, OP_PRELU, OP_ACT, OP_SOFTMAX,
       OP_POOL, OP_REDUCE, OP_RESHAPE, OP_TRANSPOSE, OP_CONCAT, OP_SPLIT, OP_SLICE, OP_PAD,
       OP_CAST, OP_UPSAMPLE, OP_IDENTITY, OP_LAST = OP_IDENTITY };
enum { A_RELU, A_LEAKY, A_CLIP, A_SIGMOID, A_TANH, A_HSIGMOID, A_HSWISH, A_ELU, A_SELU, A_ABS,
       A_NEG, A_SQRT, A_RSQRT, A_RECIP, A_EXP, A_LOG, A_SQUARE, A_POW, A_ERF, A_ERFC, A_GELU,
       A_SILU, A_SOFTPLUS, A_SOFTSIGN, A_MISH, A_LAST = A_MISH };
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_POW, B_SQDIFF, B_DIVNN, B_LAST = B_DIVNN };

/* ---- bytes -------------------------------------------------------------------------------- */
static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ---- views: one tensor's values as fp32 -------------------------------------------------- */
typedef struct { uint32_t rank, n, d[MAXR]; } shape_t;
typedef struct { const uint8_t *p; uint8_t *w; uint32_t n; int kind; } view_t;

static float ld(const view_t *v, uint32_t i)
{
    if (v->kind == V_F16) return gx_f16_to_f32((uint16_t)rd16(v->p + 2u * i));
    if (v->kind == V_F32) return f32_of(rd32(v->p + 4u * i));
    return (float)(int32_t)rd32(v->p + 4u * i);  /* V_I32 */
}
/* every op output value is rounded once to fp16; graph outputs are then stored widened */
static void st(const view_t *v, uint32_t i, float x)
{
    uint16_t h = gx_f32_to_f16(x);
    if (v->kind == V_F32) wr32(v->w + 4u * i, bits_of(gx_f16_to_f32(h)));
    else wr16(v->w + 2u * i, h);
}

/* ---- model records ------------------------------------------------------------------------ */
typedef struct { uint32_t op, sub, nw, nin, nout, size; const uint8_t *refs, *words; } node_t;

static const uint8_t *rec(const gx_task *t, uint32_t ti) { return t->ops + REC * ti; }
static uint32_t ref(const node_t *nd, uint32_t k) { return rd16(nd->refs + 2u * k); }
static uint32_t word(const node_t *nd, uint32_t k) { return rd32(nd->words + 4u * k); }
static int32_t iword(const node_t *nd, uint32_t k) { return (int32_t)word(nd, k); }
static float fword(const node_t *nd, uint32_t k) { return f32_of(word(nd, k)); }

/* the node record at byte `at` of cmd; 0 when it does not fit */
static int parse_node(const gx_task *t, uint32_t at, node_t *nd)
{
    const uint8_t *p = t->cmd + at;
    uint32_t nref, size;
    if (at > t->cmd_size || t->cmd_size - at < 8u) return 0;
    nd->op = p[0]; nd->sub = p[1]; nd->nw = p[2];
    nd->nin = rd16(p + 4); nd->nout = rd16(p + 6);
    nref = nd->nin + nd->nout;
    size = 8u + 2u * nref + 2u * (nref & 1u) + 4u * nd->nw;
    if (t->cmd_size - at < size) return 0;
    nd->refs = p + 8; nd->words = p + 8 + 2u * nref + 2u * (nref & 1u); nd->size = size;
    return 1;
}

static void shape_of(const gx_task *t, uint32_t ti, shape_t *s)
{
    const uint8_t *nd = t->cmd + 16;
    uint32_t at = t->dims_at, k;
    for (k = 0; k < ti; k++) at += 4u * nd[k];
    s->rank = nd[ti]; s->n = 1;
    for (k = 0; k < s->rank; k++) { s->d[k] = rd32(t->cmd + at + 4u * k); s->n *= s->d[k]; }
}

static void view_of(const gx_task *t, uint32_t ti, view_t *v)
{
    const uint8_t *r = rec(t, ti);
    uint32_t off = rd32(r + 8), flags = r[7];
    v->n = rd32(r + 28); v->w = 0;
    if (r[4] == R_IO) {  /* outputs go to struct output, wherever gx_run_step put it */
        v->w = t->out && (flags & F_OUTPUT) && !(flags & F_INPUT) ? t->out + (off - t->out_at) : t->in_out + off;
        v->p = v->w;
        v->kind = (flags & F_OUTPUT) && !(flags & (F_INPUT | F_FP16_OUT)) ? V_F32 : V_F16;
    } else if (r[4] == R_DATA) {
        v->w = t->data + off; v->p = v->w; v->kind = V_F16;
    } else {
        v->p = t->weight + off;
        v->kind = r[6] == P_FP16 ? V_F16 : r[6] == P_INT32 ? V_I32 : V_CODES;
    }
}

/* ---- compressed weights: fp16(lo16 + q*step16), exact, then rounded once (SPEC 5) ---------- */
static int64_t h_units(uint32_t h)  /* a finite fp16 as a multiple of 2^-24 */
{
    uint32_t e = (h >> 10) & 31u, m = h & 1023u;
    int64_t v = e ? (int64_t)(1024u + m) << (e - 1u) : (int64_t)m;
    return (h & 0x8000u) ? -v : v;
}

static uint16_t units_to_h(int64_t v, int neg_zero)
{
    uint32_t sign = v < 0 ? 0x8000u : 0u, s = 0, e;
    uint64_t a = (uint64_t)(v < 0 ? -v : v), q, rem, half;
    if (v == 0) return (uint16_t)(neg_zero ? 0x8000u : 0u);
    if (a < 2048u) return (uint16_t)(sign | (uint32_t)a);
    while ((a >> s) >= 32768u) s += 4u;
    while ((a >> s) >= 2048u) s++;
    q = a >> s; rem = a & (((uint64_t)1 << s) - 1u); half = (uint64_t)1 << (s - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    if (q == 2048u) { q = 1024u; s++; }
    e = s + 1u;
    if (e >= 31u) return (uint16_t)(sign | 0x7C00u);
    return (uint16_t)(sign | e << 10 | (uint32_t)(q - 1024u));
}

static uint16_t decode_code(uint32_t lo, uint32_t step, uint32_t q)
{
    int64_t pl = h_units(lo), ps = (int64_t)q * h_units(step);
    int neg = pl == 0 && ps == 0 && (lo & 0x8000u) && (step & 0x8000u);
    return units_to_h(pl + ps, neg);
}

/* a weight read in kernel order: per output channel a 256-entry table of decoded codes;
 * bitmap ranks from anchors kept in tmp (one per `spacing` values) and a forward cursor */
typedef struct {
    view_t v;
    const uint8_t *lo, *codes, *bits;
    uint32_t C, packing, chan, spacing, cur_i, cur_r, zero, avx, exact;
    uint8_t *anchors;
    float table[256];
} wcur_t;

static uint32_t popcount8(uint32_t b)
{
    b = b - ((b >> 1) & 0x55u); b = (b & 0x33u) + ((b >> 2) & 0x33u); return (b + (b >> 4)) & 0x0Fu;
}

static uint32_t count_bits(const uint8_t *bits, uint32_t from, uint32_t to)
{
    uint32_t r = 0;
    while (from < to && (from & 7u)) { r += (bits[from >> 3] >> (from & 7u)) & 1u; from++; }
    while (to - from >= 8u && from < to) { r += popcount8(bits[from >> 3]); from += 8u; }
    while (from < to) { r += (bits[from >> 3] >> (from & 7u)) & 1u; from++; }
    return r;
}

static uint32_t prod(const shape_t *s, uint32_t from, uint32_t to)
{
    uint32_t p = 1;
    for (; from < to; from++) p *= s->d[from];
    return p;
}

#if GX_AVX2
static __attribute__((target("avx2,fma,f16c"))) void codes_to_h(const uint8_t *lo_p, const uint8_t *st_p, uint32_t ls,
                                                                 const uint8_t *c, uint32_t n, uint8_t *out);
#endif

/* the whole weight decoded to fp16 in tmp, in C order (what the NPU's decompressor stages);
 * a value whose bitmap bit is 0 takes its channel's zero code: +0, or code 0 when lo is +-0 */
static void decode_to_tmp(const gx_task *t, const uint8_t *r, wcur_t *c)
{
    uint32_t C = c->C, n = c->v.n, axis = rd32(r + 16), pre = 1, post, p, ch, j, i = 0, rank = 0;
    shape_t s;
    if (C > 1u) { shape_of(t, rd32(r), &s); pre = prod(&s, 0, axis); }
    post = n / pre / C;
    for (p = 0; p < pre; p++)
        for (ch = 0; ch < C; ch++) {
#if GX_AVX2
            if (c->avx && c->packing == P_DENSE && post == 1u) {  /* the channels side by side */
                codes_to_h(c->lo, c->lo + 2u * C, 2u, c->codes + i, C, t->tmp + 2u * i);
                i += C;
                break;
            }
#endif
            uint32_t lo = rd16(c->lo + 2u * ch), step = rd16(c->lo + 2u * (C + ch));
            uint16_t zero = (lo & 0x7FFFu) == 0 ? decode_code(lo, step, 0) : 0;
#if GX_AVX2
            if (c->avx && c->packing == P_DENSE) {  /* gx_avx2.h */
                codes_to_h(c->lo + 2u * ch, c->lo + 2u * (C + ch), 0u, c->codes + i, post, t->tmp + 2u * i);
                i += post;
                continue;
            }
#endif
            for (j = 0; j < post; j++, i++) {
                uint16_t h = zero;
                if (c->packing == P_DENSE) h = decode_code(lo, step, c->codes[i]);
                else if ((c->bits[i >> 3] >> (i & 7u)) & 1u) h = decode_code(lo, step, c->codes[rank++]);
                wr16(t->tmp + 2u * i, h);
            }
        }
    c->v.p = t->tmp; c->v.kind = V_F16;
}

static void wcur_init(const gx_task *t, uint32_t ti, wcur_t *c)
{
    const uint8_t *r = rec(t, ti);
    uint32_t k, nb;
    view_of(t, ti, &c->v);
    c->packing = r[6]; c->C = rd32(r + 20); c->chan = 0xFFFFFFFFu; c->anchors = 0;
    c->cur_i = 0; c->cur_r = 0; c->spacing = 0; c->zero = 0; c->avx = t->cpu; c->exact = 0;
    if (c->v.kind != V_CODES) return;
    c->lo = c->v.p; c->codes = c->v.p + 4u * c->C; c->bits = 0;
    if (c->packing == P_BITMAP) { c->bits = c->codes; c->codes = c->bits + (c->v.n + 7u) / 8u; }
    if ((uint64_t)c->v.n * 2u <= t->tmp_size && !(GX_FAST && c->packing == P_DENSE && c->C == 1u)) {
        decode_to_tmp(t, r, c);  /* the fast kernels read dense codes through tables */
        return;
    }
    if (c->packing != P_BITMAP) return;
    (void)nb;
    for (c->spacing = 256u; c->spacing < 0x80000000u; c->spacing *= 2u)
        if ((uint64_t)(c->v.n / c->spacing + 1u) * 4u <= t->tmp_size) break;
    if ((uint64_t)(c->v.n / c->spacing + 1u) * 4u > t->tmp_size) return;  /* no room: scans */
    c->anchors = t->tmp;
    for (k = 0; k <= c->v.n / c->spacing; k++) {
        uint32_t at = k * c->spacing;
        wr32(c->anchors + 4u * k, k ? rd32(c->anchors + 4u * (k - 1u)) +
             count_bits(c->bits, at - c->spacing, at) : 0u);
    }
}

/* select output channel `ch` (ignored for per-tensor ranges): builds the decode table,
 * lo + q*step stepped exactly in units of 2^-24 (decode_code's arithmetic, q ascending) */
static void wcur_chan(wcur_t *c, uint32_t ch)
{
    uint32_t q, lo, step;
    int64_t pl, ps, v;
    if (c->v.kind != V_CODES) return;
    if (c->C == 1u) ch = 0;
    if (ch == c->chan) return;
    c->chan = ch; lo = rd16(c->lo + 2u * ch); step = rd16(c->lo + 2u * (c->C + ch));
    c->zero = 256u;
    pl = h_units(lo); ps = h_units(step); v = pl;
    for (q = 0; q < 256u; q++, v += ps) {
        uint16_t h = q == 0u || ps == 0 ? decode_code(lo, step, q) : units_to_h(v, 0);
        c->table[q] = gx_f16_to_f32(h);
        if (c->zero == 256u && (h & 0x7FFFu) == 0) c->zero = q;
    }
}

static uint32_t rank_of(wcur_t *c, uint32_t i)
{
    uint32_t from = 0, r = 0;
    if (i >= c->cur_i && (!c->anchors || i - c->cur_i < c->spacing)) { from = c->cur_i; r = c->cur_r; }
    else if (c->anchors) { from = i / c->spacing * c->spacing; r = rd32(c->anchors + 4u * (i / c->spacing)); }
    r += count_bits(c->bits, from, i);
    c->cur_i = i; c->cur_r = r;
    return r;
}

static float wat(wcur_t *c, uint32_t i)
{
    if (c->v.kind != V_CODES) return ld(&c->v, i);
    if (c->packing == P_DENSE) return c->table[c->codes[i]];
    if ((c->bits[i >> 3] >> (i & 7u)) & 1u) return c->table[c->codes[rank_of(c, i)]];
    return c->table[c->zero];
}

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

/* ---- validation: everything a kernel relies on, checked once by gx_init ------------------- */
#define LIM (1u << 30)
static const uint8_t ACT_WORDS[A_LAST + 1] = {0, 1, 2, 0, 0, 2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0,
                                              1, 0, 0, 1, 1, 0, 0, 0};

static int same_shape(const shape_t *a, const shape_t *b)
{
    uint32_t k;
    if (a->rank != b->rank) return 0;
    for (k = 0; k < a->rank; k++) if (a->d[k] != b->d[k]) return 0;
    return 1;
}

/* the weight's channel of value i is the op's output channel (or one range for all) */
static int chan_ok(const gx_task *t, uint32_t wi, uint32_t O, int first)
{
    const uint8_t *r = rec(t, wi);
    shape_t s; uint32_t C = rd32(r + 20), pre;
    int32_t axis = (int32_t)rd32(r + 16);
    if (r[6] != P_DENSE && r[6] != P_BITMAP) return 1;
    if (C == 1u) return 1;
    shape_of(t, wi, &s);
    if (C != O || axis < 0 || (uint32_t)axis >= s.rank) return 0;
    pre = prod(&s, 0, (uint32_t)axis);
    return first ? axis == 0 : s.n / pre == C;  /* HWIO / [K, N]: the channel is innermost */
}

static int window_ok(uint32_t in, uint32_t out, uint32_t k, uint32_t s, uint32_t d, int32_t p)
{
    return k >= 1u && s >= 1u && d >= 1u && p >= 0 && (uint32_t)p < LIM && k < LIM && s < LIM &&
           d < LIM && in >= 1u && out >= 1u &&
           (uint64_t)(out - 1u) * s + (uint64_t)(k - 1u) * d < LIM;
}

static int check_conv(const gx_task *t, const node_t *nd, const shape_t *x, const shape_t *y)
{
    shape_t w; geo_t g; uint32_t r = x->rank - 2u, cg;
    uint32_t wf = nd->nw >= 2u ? (word(nd, 0) >> 4) & 15u : 0u, group = nd->nw >= 2u ? word(nd, 1) : 0u;
    if ((x->rank != 3u && x->rank != 4u) || y->rank != x->rank || nd->nw != 2u + 3u * r || wf > 2u ||
        nd->nin < 2u || nd->nin > 3u || nd->nout != 1u || ref(nd, 1) == 0xFFFFu)
        return 0;
    shape_of(t, ref(nd, 1), &w);
    if (w.rank != x->rank) return 0;
    g.cl = word(nd, 0) & 1u; conv_geo(x, y, &g);
    if (group < 1u || g.C % group || g.O % group || g.N != y->d[0]) return 0;
    cg = g.C / group;
    g.KH = r == 2u ? w.d[wf ? 0 : 2] : 1u; g.KW = w.d[wf ? r - 1u : r + 1u];
    if (wf == 0u && (w.d[0] != g.O || w.d[1] != cg)) return 0;
    if (wf == 1u && (w.d[r] != cg || w.d[r + 1u] != g.O)) return 0;
    if (wf == 2u && (cg != 1u || w.d[r] != g.C || (uint64_t)w.d[r] * w.d[r + 1u] != g.O)) return 0;
    if (r == 2u && !window_ok(g.H, g.OH, g.KH, word(nd, 2), word(nd, 3), iword(nd, 4))) return 0;
    if (!window_ok(g.W, g.OW, g.KW, word(nd, 3u * r - 1u), word(nd, 3u * r), iword(nd, 3u * r + 1u))) return 0;
    if (nd->nin == 3u && ref(nd, 2) != 0xFFFFu) {
        shape_t b; shape_of(t, ref(nd, 2), &b);
        if (b.n != g.O) return 0;
    }
    return chan_ok(t, ref(nd, 1), g.O, wf == 0u);
}

static int check_fc(const gx_task *t, const node_t *nd, const shape_t *x, const shape_t *y)
{
    shape_t w; uint32_t K, N, k;
    if (nd->nin < 2u || nd->nin > 3u || nd->nout != 1u || nd->sub > 1u || nd->nw || ref(nd, 1) == 0xFFFFu)
        return 0;
    shape_of(t, ref(nd, 1), &w);
    if (w.rank != 2u || x->rank < 1u || y->rank != x->rank) return 0;
    K = nd->sub ? w.d[1] : w.d[0]; N = nd->sub ? w.d[0] : w.d[1];
    if (x->d[x->rank - 1u] != K || y->d[y->rank - 1u] != N) return 0;
    for (k = 0; k + 1u < x->rank; k++) if (x->d[k] != y->d[k]) return 0;
    if (nd->nin == 3u && ref(nd, 2) != 0xFFFFu) {
        shape_t b; shape_of(t, ref(nd, 2), &b);
        if (b.n != N) return 0;
    }
    return chan_ok(t, ref(nd, 1), N, nd->sub != 0u);
}

/* numpy broadcasting of a (and b) to y; matmul passes the batch dims only */
static int bcast_ok(const shape_t *a, const shape_t *y)
{
    uint32_t k, off;
    if (a->rank > y->rank) return 0;
    off = y->rank - a->rank;
    for (k = 0; k < a->rank; k++) if (a->d[k] != 1u && a->d[k] != y->d[k + off]) return 0;
    return 1;
}

static int check_matmul(const shape_t *a, const shape_t *b, const shape_t *y)
{
    shape_t ab, bb, yb; uint32_t M, K, N, k, want;
    if (a->rank < 1u || b->rank < 1u) return 0;
    mm_dims(a, b, &M, &K, &N);
    if ((b->rank >= 2u ? b->d[b->rank - 2u] : b->d[0]) != K) return 0;
    batch_shape(a, 0, &ab); batch_shape(b, 0, &bb);
    yb.rank = ab.rank > bb.rank ? ab.rank : bb.rank;
    want = yb.rank + (a->rank >= 2u) + (b->rank >= 2u);
    if (y->rank != want) return 0;
    for (k = 0; k < yb.rank; k++) yb.d[k] = y->d[k];
    for (k = 0; k < yb.rank; k++) {  /* y's batch dims are the broadcast of both */
        uint32_t da = k + ab.rank >= yb.rank ? ab.d[k + ab.rank - yb.rank] : 1u;
        uint32_t db = k + bb.rank >= yb.rank ? bb.d[k + bb.rank - yb.rank] : 1u;
        if (yb.d[k] != (da > db ? da : db)) return 0;
    }
    if (!bcast_ok(&ab, &yb) || !bcast_ok(&bb, &yb)) return 0;
    if (a->rank >= 2u && y->d[yb.rank] != M) return 0;
    return b->rank < 2u || y->d[y->rank - 1u] == N;
}

static int check_pool(const node_t *nd, const shape_t *x, const shape_t *y)
{
    geo_t g; uint32_t r = x->rank - 2u, i;
    if ((x->rank != 3u && x->rank != 4u) || y->rank != x->rank || nd->nw != 1u + 5u * r || nd->sub > 1u)
        return 0;
    g.cl = word(nd, 0) & 1u; conv_geo(x, y, &g);
    if (g.N != y->d[0] || g.C != g.O) return 0;
    for (i = 0; i < r; i++) {
        uint32_t in = r == 2u && i == 0u ? g.H : g.W, out = r == 2u && i == 0u ? g.OH : g.OW;
        int32_t pe = iword(nd, 5u * i + 4u);
        if (!window_ok(in, out, word(nd, 5u * i + 1u), word(nd, 5u * i + 2u), word(nd, 5u * i + 5u),
                       iword(nd, 5u * i + 3u)) || pe < 0 || (uint32_t)pe >= LIM)
            return 0;
    }
    return 1;
}

static int check_reduce(const node_t *nd, const shape_t *x, const shape_t *y)
{
    uint32_t k, kept = 1, mask = nd->nw ? word(nd, 0) : 0u;
    if (nd->nw != 1u || nd->sub > 3u || (x->rank < 32u && (mask >> x->rank))) return 0;
    for (k = 0; k < x->rank; k++) if (!((mask >> k) & 1u)) kept *= x->d[k];
    return y->n == kept;
}

static int check_join(const gx_task *t, const node_t *nd, int join)
{
    shape_t whole, part; uint32_t axis = nd->nw ? word(nd, 0) : 0u, n = join ? nd->nin : nd->nout, i, k, sum = 0;
    if (nd->nw != 1u || n < 1u || (join ? nd->nout : nd->nin) != 1u) return 0;
    shape_of(t, join ? ref(nd, nd->nin) : ref(nd, 0), &whole);
    if (axis >= whole.rank) return 0;
    for (i = 0; i < n; i++) {
        uint32_t ti = join ? ref(nd, i) : ref(nd, 1u + i);
        if (ti == 0xFFFFu) return 0;
        shape_of(t, ti, &part);
        if (part.rank != whole.rank) return 0;
        for (k = 0; k < whole.rank; k++) if (k != axis && part.d[k] != whole.d[k]) return 0;
        sum += part.d[axis];
        if (sum > whole.d[axis]) return 0;
    }
    return sum == whole.d[axis];
}

static int check_gather(const node_t *nd, const shape_t *x, const shape_t *y)
{
    uint32_t k;
    if (x->rank != y->rank) return 0;
    if (nd->op == OP_SLICE && nd->nw != 2u * x->rank) return 0;
    if (nd->op == OP_PAD && (nd->nw != 1u + x->rank || nd->sub > 2u)) return 0;
    if (nd->op == OP_UPSAMPLE && nd->nw) return 0;
    for (k = 0; k < x->rank; k++) {
        if (nd->op == OP_SLICE) {
            int64_t a = iword(nd, 2u * k), s = iword(nd, 2u * k + 1u), e = a + ((int64_t)y->d[k] - 1) * s;
            if (s == 0 || a < 0 || a >= (int64_t)x->d[k] || e < 0 || e >= (int64_t)x->d[k]) return 0;
        } else if (nd->op == OP_UPSAMPLE) {
            if (y->d[k] % x->d[k]) return 0;
        } else {
            int64_t pb = iword(nd, 1u + k), pe = (int64_t)y->d[k] - x->d[k] - pb;
            int64_t len = (int64_t)x->d[k] - (pb < 0 ? -pb : 0) - (pe < 0 ? -pe : 0);
            if (pb <= -(int64_t)LIM || pb >= (int64_t)LIM || len < 1) return 0;
        }
    }
    return 1;
}

static int check_shapes(const gx_task *t, const node_t *nd)
{
    shape_t x, y, b; uint32_t k, seen = 0;
    if (nd->op == OP_CONCAT) return check_join(t, nd, 1);
    if (nd->op == OP_SPLIT) return check_join(t, nd, 0);
    if (nd->nout != 1u || nd->nin < 1u || ref(nd, 0) == 0xFFFFu) return 0;
    shape_of(t, ref(nd, 0), &x); shape_of(t, ref(nd, nd->nin), &y);
    switch (nd->op) {
    case OP_CONV: return check_conv(t, nd, &x, &y);
    case OP_FC: return check_fc(t, nd, &x, &y);
    case OP_POOL: return nd->nin == 1u && check_pool(nd, &x, &y);
    case OP_REDUCE: return nd->nin == 1u && check_reduce(nd, &x, &y);
    case OP_SLICE: case OP_PAD: case OP_UPSAMPLE: return nd->nin == 1u && check_gather(nd, &x, &y);
    case OP_ACT: return nd->nin == 1u && nd->sub <= A_LAST && nd->nw == ACT_WORDS[nd->sub] && x.n == y.n;
    case OP_SOFTMAX: return nd->nin == 1u && nd->nw == 1u && word(nd, 0) < x.rank && same_shape(&x, &y);
    case OP_RESHAPE: case OP_CAST: case OP_IDENTITY: return nd->nin == 1u && !nd->nw && x.n == y.n;
    case OP_TRANSPOSE:
        if (nd->nin != 1u || nd->nw != x.rank || y.rank != x.rank) return 0;
        for (k = 0; k < x.rank; k++) {
            uint32_t p = word(nd, k);
            if (p >= x.rank || (seen >> p) & 1u || y.d[k] != x.d[p]) return 0;
            seen |= 1u << p;
        }
        return 1;
    case OP_BATCHNORM:
        if (nd->nin != 5u || nd->nw != 2u || word(nd, 0) >= x.rank || !same_shape(&x, &y)) return 0;
        for (k = 1; k < 5u; k++) {
            if (ref(nd, k) == 0xFFFFu) return 0;
            shape_of(t, ref(nd, k), &b);
            if (b.n != x.d[word(nd, 0)]) return 0;
        }
        return 1;
    default: break;  /* matmul, binary, prelu: two operands */
    }
    if (nd->nin != 2u || nd->nw || ref(nd, 1) == 0xFFFFu) return 0;
    shape_of(t, ref(nd, 1), &b);
    if (nd->op == OP_MATMUL) return check_matmul(&x, &b, &y);
    if (nd->op == OP_PRELU) return same_shape(&x, &y) && bcast_ok(&b, &y);
    if (nd->sub > B_LAST || !bcast_ok(&x, &y) || !bcast_ok(&b, &y)) return 0;
    for (k = 0; k < y.rank; k++) {  /* every output dim comes from an operand */
        uint32_t ka = k + x.rank >= y.rank ? x.d[k + x.rank - y.rank] : 1u;
        uint32_t kb = k + b.rank >= y.rank ? b.d[k + b.rank - y.rank] : 1u;
        if (y.d[k] != (ka > kb ? ka : kb)) return 0;
    }
    return 1;
}

/* tensor references of one node: readable inputs, writable outputs, codes only as weights */
static int check_refs(const gx_task *t, const node_t *nd)
{
    uint32_t k;
    if (nd->op < OP_CONV || nd->op > OP_LAST) return GX_E_OP;
    for (k = 0; k < nd->nin + nd->nout; k++) {
        uint32_t ti = ref(nd, k);
        const uint8_t *r;
        if (ti == 0xFFFFu && k == 2u && k < nd->nin && (nd->op == OP_CONV || nd->op == OP_FC)) continue;
        if (ti >= t->n_tensors) return GX_E_BOUNDS;
        r = rec(t, ti);
        if (r[4] == R_NONE) return GX_E_TENSOR;
        if (k >= nd->nin && (r[4] == R_WEIGHT || (r[7] & F_INPUT))) return GX_E_TENSOR;
        if ((r[6] == P_DENSE || r[6] == P_BITMAP) &&
            (k != 1u || (nd->op != OP_CONV && nd->op != OP_FC)))
            return GX_E_WEIGHT;
    }
    return check_shapes(t, nd) ? GX_OK : GX_E_OP;
}

static int check_codes(const uint8_t *r, const uint8_t *p, uint32_t n, uint32_t size)
{
    uint32_t C = rd32(r + 20), nnz = rd32(r + 24), c, q;
    shape_t dummy;
    (void)dummy;
    if (C < 1u || C > n || (uint64_t)C * 4u > size) return 0;
    for (c = 0; c < 2u * C; c++) if (((rd16(p + 2u * c) >> 10) & 31u) == 31u) return 0;  /* inf/NaN */
    if (r[6] == P_DENSE) return (uint64_t)4u * C + n == size;
    if ((uint64_t)4u * C + (n + 7u) / 8u + nnz != size || nnz > n) return 0;
    if (count_bits(p + 4u * C, 0, n) != nnz) return 0;
    for (c = 0; c < C; c++) {  /* every channel needs a code that decodes to zero */
        for (q = 0; q < 256u; q++)
            if ((decode_code(rd16(p + 2u * c), rd16(p + 2u * (C + c)), q) & 0x7FFFu) == 0) break;
        if (q == 256u) return 0;
    }
    return 1;
}

static int check_tensor(const gx_task *t, uint32_t ti, const shape_t *s)
{
    const uint8_t *r = rec(t, ti);
    uint32_t off = rd32(r + 8), size = rd32(r + 12), n = rd32(r + 28), flags = r[7];
    uint64_t end = (uint64_t)off + size;
    int32_t axis = (int32_t)rd32(r + 16);
    if (rd32(r) != ti || r[4] > R_WEIGHT || r[5] > 4u || r[6] > P_INT32) return GX_E_TENSOR;
    if (n != s->n) return GX_E_TENSOR;
    if (r[4] == R_NONE) return GX_OK;
    if (r[4] != R_WEIGHT && r[6] != P_NONE) return GX_E_TENSOR;
    if (r[4] == R_IO) {
        int f32 = (flags & F_OUTPUT) && !(flags & (F_INPUT | F_FP16_OUT));
        if ((uint64_t)n * (f32 ? 4u : 2u) != size) return GX_E_TENSOR;
        return end <= t->io_size ? GX_OK : GX_E_BOUNDS;
    }
    if (r[4] == R_DATA) {
        if ((uint64_t)n * 2u != size) return GX_E_TENSOR;
        return end <= t->data_size ? GX_OK : GX_E_BOUNDS;
    }
    if (end > t->weight_size) return GX_E_BOUNDS;
    if (r[6] == P_FP16) return (uint64_t)n * 2u == size ? GX_OK : GX_E_WEIGHT;
    if (r[6] == P_INT32) return (uint64_t)n * 4u == size ? GX_OK : GX_E_WEIGHT;
    if (r[6] == P_NONE) return GX_E_WEIGHT;
    if (rd32(r + 20) > 1u) {  /* per channel: the weight is [pre, C, post] */
        uint32_t pre;
        if (axis < 0 || (uint32_t)axis >= s->rank) return GX_E_WEIGHT;
        pre = prod(s, 0, (uint32_t)axis);
        if ((uint64_t)pre * rd32(r + 20) > n || n % (pre * rd32(r + 20))) return GX_E_WEIGHT;
    }
    return check_codes(r, t->weight + off, n, size) ? GX_OK : GX_E_WEIGHT;
}

/* cmd header, shape table (every dim >= 1, sizes < 2^31) and tensor records */
static int check_tensors(gx_task *t)
{
    const uint8_t *c = t->cmd;
    uint32_t nt, k, j, at, total = 0;
    int e;
    if (t->cmd_size < 16u || memcmp(c, "GXCM", 4) != 0) return GX_E_MAGIC;
    if (rd16(c + 4) != GXNPU_FORMAT_VERSION) return GX_E_VERSION;
    if (rd32(c + 12) != t->cmd_size) return GX_E_BOUNDS;
    nt = t->n_tensors = rd16(c + 6); t->n_nodes = rd16(c + 8);
    t->dims_at = 16u + ((nt + 3u) & ~3u);
    if (t->dims_at > t->cmd_size) return GX_E_BOUNDS;
    for (k = 0; k < nt; k++) {
        if (c[16 + k] > MAXR) return GX_E_TENSOR;
        total += c[16 + k];
    }
    if ((uint64_t)t->dims_at + 4u * (uint64_t)total > t->cmd_size) return GX_E_BOUNDS;
    t->nodes_at = t->dims_at + 4u * total;
    if ((uint64_t)t->ops_size != (uint64_t)REC * nt) return GX_E_BOUNDS;
    for (k = 0, at = t->dims_at; k < nt; k++) {
        shape_t s; uint64_t n = 1;
        s.rank = c[16 + k];
        for (j = 0; j < s.rank; j++, at += 4u) {
            s.d[j] = rd32(c + at); n *= s.d[j];
            if (s.d[j] < 1u || n >= 0x80000000u) return GX_E_TENSOR;
        }
        s.n = (uint32_t)n;
        if ((e = check_tensor(t, k, &s)) != GX_OK) return e;
    }
    return GX_OK;
}

static int check_nodes(gx_task *t)
{
    uint32_t k, at = t->nodes_at;
    node_t nd;
    int e;
    for (k = 0; k < t->n_nodes; k++, at += nd.size) {
        if (!parse_node(t, at, &nd)) return GX_E_BOUNDS;
        if ((e = check_refs(t, &nd)) != GX_OK) return e;
    }
    return at == t->cmd_size ? GX_OK : GX_E_BOUNDS;
}

int gx_init(gx_task *task, const void *cmd, uint32_t cmd_size, const void *weight,
            uint32_t weight_size, const void *ops, uint32_t ops_size, void *data,
            uint32_t data_size, void *tmp, uint32_t tmp_size, void *in_out, uint32_t io_size)
{
    int e;
    if (!task) return GX_E_ARG;
    memset(task, 0, sizeof *task);
    if (!cmd || !ops || (!weight && weight_size) || (!data && data_size) || (!tmp && tmp_size) ||
        (!in_out && io_size))
        return GX_E_ARG;
    task->cmd = (const uint8_t *)cmd; task->cmd_size = cmd_size;
    task->weight = (const uint8_t *)weight; task->weight_size = weight_size;
    task->ops = (const uint8_t *)ops; task->ops_size = ops_size;
    task->data = (uint8_t *)data; task->data_size = data_size;
    task->tmp = (uint8_t *)tmp; task->tmp_size = tmp_size;
    task->in_out = (uint8_t *)in_out; task->io_size = io_size;
#if GX_AVX2
    task->cpu = gx_cpu_avx2();
#endif
    if ((e = check_tensors(task)) != GX_OK || (e = check_nodes(task)) != GX_OK) {
        memset(task, 0, sizeof *task);
        return e;
    }
    task->valid = 1;
    return GX_OK;
}

static int run_nodes(gx_task *task)
{
    uint32_t k, at;
    node_t nd;
    for (k = 0, at = task->nodes_at; k < task->n_nodes; k++, at += nd.size) {
        parse_node(task, at, &nd);
        run_node(task, &nd);
        if (task->hook) task->hook(task->hook_user, task, k);
    }
    return GX_OK;
}

int gx_run(gx_task *task)
{
    if (!task || task->valid != 1) return GX_E_ARG;
    task->out = NULL;
    return run_nodes(task);
}

/* offset of struct output in struct in_out: the lowest io offset of a graph output */
static uint32_t output_at(const gx_task *t)
{
    uint32_t k, at = t->io_size;
    for (k = 0; k < t->n_tensors; k++) {
        const uint8_t *r = rec(t, k);
        if (r[4] == R_IO && (r[7] & F_OUTPUT) && !(r[7] & F_INPUT) && rd32(r + 8) < at) at = rd32(r + 8);
    }
    return at;
}

int gx_run_step(gx_task *task, void *in_out, void *output)
{
    if (!task || task->valid != 1 || !in_out || !output) return GX_E_ARG;
    task->in_out = (uint8_t *)in_out;
    task->out = (uint8_t *)output;
    task->out_at = output_at(task);
    return run_nodes(task);
}

int gx_node_output(const gx_task *task, unsigned node, unsigned k, const uint8_t **bytes,
                   uint32_t *count, int *is_f32)
{
    uint32_t i, at;
    node_t nd;
    view_t v;
    if (!task || task->valid != 1 || node >= task->n_nodes || !bytes || !count || !is_f32) return GX_E_ARG;
    for (i = 0, at = task->nodes_at; i <= node; i++, at += nd.size) parse_node(task, at, &nd);
    if (k >= nd.nout) return GX_E_ARG;
    view_of(task, ref(&nd, nd.nin + k), &v);
    *bytes = v.p; *count = v.n; *is_f32 = v.kind == V_F32;
    return GX_OK;
}

/* ---- raw container (docs/model-format.md) --------------------------------------------------- */
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc;
}

/* the six section entries: CMD, WGHT, OPS, DATA, TMP, DBG (offset, size) */
static int raw_table(const uint8_t *p, size_t n, uint32_t off[6], uint32_t size[6])
{
    static const char tags[6][5] = {"CMD", "WGHT", "OPS", "DATA", "TMP", "DBG"};
    uint32_t k, crc;
    const uint8_t zero[4] = {0, 0, 0, 0};
    if (!p || n < 32u + 6u * 16u) return GX_E_ARG;
    if (memcmp(p, "GXNPUMDL", 8) != 0) return GX_E_MAGIC;
    if (rd32(p + 8) != GXNPU_FORMAT_VERSION) return GX_E_VERSION;
    if (rd32(p + 20) != 6u) return GX_E_BOUNDS;
    crc = crc32_update(0xFFFFFFFFu, p, 16);
    crc = crc32_update(crc, zero, 4);
    crc = crc32_update(crc, p + 20, n - 20u) ^ 0xFFFFFFFFu;
    if (crc != rd32(p + 16)) return GX_E_CHECKSUM;
    for (k = 0; k < 6u; k++) {
        const uint8_t *e = p + 32u + 16u * k;
        if (memcmp(e, tags[k], 4) != 0) return GX_E_MAGIC;
        off[k] = rd32(e + 4); size[k] = rd32(e + 8);
        if ((k < 3u || (rd32(e + 12) & 1u)) && (uint64_t)off[k] + size[k] > n) return GX_E_BOUNDS;
    }
    return GX_OK;
}

int gx_raw_sizes(const void *raw, size_t raw_size, uint32_t *data_size, uint32_t *tmp_size)
{
    uint32_t off[6], size[6];
    int e = raw_table((const uint8_t *)raw, raw_size, off, size);
    if (e != GX_OK) return e;
    if (data_size) *data_size = size[3];
    if (tmp_size) *tmp_size = size[4];
    return GX_OK;
}

int gx_init_raw(gx_task *task, const void *raw, size_t raw_size, void *data, uint32_t data_size,
                void *tmp, uint32_t tmp_size, void *in_out, uint32_t io_size)
{
    const uint8_t *p = (const uint8_t *)raw;
    uint32_t off[6], size[6];
    int e = raw_table(p, raw_size, off, size);
    if (!task) return GX_E_ARG;
    if (e != GX_OK) { memset(task, 0, sizeof *task); return e; }
    if (data_size < size[3] || tmp_size < size[4]) { memset(task, 0, sizeof *task); return GX_E_MEMORY; }
    return gx_init(task, p + off[0], size[0], p + off[1], size[1], p + off[2], size[2], data,
                   size[3], tmp, size[4], in_out, io_size);
}
