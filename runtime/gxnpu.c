/* gxnpu.c: the gxnpuc reference runtime. See gxnpu.h and docs/runtime.md.
 *
 * Layout of what it reads: docs/model-format.md (format 2). Numerics: docs/numerics.md.
 * Freestanding C99: string.h only, no heap, no static mutable state; the stack does not
 * grow with the model (fixed-size locals, no recursion).
 *
 * The one file a firmware compiles. Its parts, included once below: gx_weights.h (weight
 * decoding), gx_kernels.h (conv, fc, matmul, batchnorm), gx_ops.h (the other ops),
 * gx_check.h (validation); gx_fast.h and the gx_avx2*.h files hold the host-speed kernels.
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

#include "gx_weights.h"
#include "gx_kernels.h"
#include "gx_ops.h"
#include "gx_check.h"

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
