/* gx_weights.h: part of gxnpu.c, included by it once (not a public header, not compiled alone):
 * compressed weights: decoding, cursors and tables (SPEC 5). See gxnpu.c. */
#ifndef GX_WEIGHTS_H
#define GX_WEIGHTS_H

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

#endif /* GX_WEIGHTS_H */
