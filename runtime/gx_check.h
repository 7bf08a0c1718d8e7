/* gx_check.h: part of gxnpu.c, included by it once (not a public header, not compiled alone):
 * validation: everything a kernel relies on, checked once by gx_init. See gxnpu.c. */
#ifndef GX_CHECK_H
#define GX_CHECK_H

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
        if (k >= nd->nin && (r[4] == R_WEIGHT || (r[7] & F_INPUT) || (r[4] == R_IO && !(r[7] & F_OUTPUT))))
            return GX_E_TENSOR;  /* in io only graph outputs are written: gx_run_step never writes in_out */
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

#endif /* GX_CHECK_H */
