/* fuzz_runtime: a libFuzzer harness for the runtime's model reader (gxnpu.c).
 *
 *   clang -std=c99 -g -O1 -ffp-contract=off -fsanitize=fuzzer,address,undefined \
 *         -fno-sanitize-recover=all runtime/host/fuzz_runtime.c runtime/gxnpu.c -o fuzz_runtime
 *   ./fuzz_runtime CORPUS_DIR -max_total_time=600
 *
 * Input: u32 little-endian `io` word, then a raw container (OUTPUT_TYPE: raw). Bits 0..13 of
 * the word, times 2, are the in_out size (the runtime gets exactly that many bytes); bit 30
 * puts special values (inf, NaN, -0, subnormals) among the inputs; bit 31
 * keeps the container's CRC-32 as given, otherwise the harness rewrites it so that mutations
 * reach the checks behind it. Every buffer is its own exact-size allocation, so ASan sees any
 * access one byte outside it. For each input:
 *   1. gx_raw_sizes, then gx_init_raw with one byte less data than asked (must be refused);
 *   2. gx_init_raw on patterned data/tmp/in_out, and gx_run when accepted; a hook checks that
 *      every op output gx_node_output reports lies inside data or in_out;
 *   3. the same model as split arrays (cmd, weight, ops each copied to its own allocation,
 *      as from model.h) through gx_init: the same status, and the same in_out bytes after run;
 *   4. gx_run_step (the streaming entry point) on the accepted model: first in place,
 *      gx_run_step(t, io, io + output_offset) on a copy of the in_out gx_run started from must
 *      give gx_run's in_out and data bytes; then STEPS steps of the firmware loop of
 *      docs/runtime.md: two exact-size in_out buffers, step k reads buffer k % 2 (its first
 *      output_offset bytes refilled, the rest as the step before left it) and writes struct
 *      output at the other buffer + output_offset. Each step leaves its input buffer and the
 *      other buffer's first output_offset bytes untouched, and run again on copies of the
 *      same buffers, data and tmp at other addresses (the stack scribbled differently) gives
 *      the same bytes. output_offset is the lowest io offset of a graph output (flags:
 *      output, not input), where struct output starts in the vendor layout.
 * A refused model must leave data, tmp and in_out untouched and the task unusable (gx_run and
 * gx_run_step refuse it); every status must be one of enum gx_status. Any violation aborts
 * (libFuzzer reports a crash). With FUZZ_RUNTIME_VERBOSE set, prints "status S ran R" per
 * input (R: 1 when gx_run ran), and "steps N" when gx_run_step ran N steps after it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gxnpu.h"

#define MAX_RAM (64u * 1024u) /* data / tmp sizes beyond this are skipped (not run) */
#define STEPS 2u              /* gx_run_step steps of the two-buffer loop per accepted model */

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_runtime: invariant failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

/* the RAM of one task; out / os: where gx_run_step writes struct output (NULL: in io) */
typedef struct { uint8_t *data, *tmp, *io, *out; uint32_t ds, ts, is, os; int special; } ram_t;

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc32_zlib(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1u);
    CHECK(q != NULL);
    if (n) memcpy(q, p, n);
    return q;
}

/* exact-size buffers (NULL for size 0, as a firmware may pass) with a fixed pattern: in_out
 * holds finite fp16 values |x| < 2 (special: every 4th value inf, NaN, -0, a subnormal or
 * +-65504), data and tmp a byte pattern */
static const uint16_t SPECIAL[8] = {0x7C00u, 0xFC00u, 0x7E00u, 0x8000u, 0x0001u, 0x7BFFu, 0xFBFFu, 0x83FFu};
static void fill_io(uint8_t *io, uint32_t from, uint32_t to, int special, uint32_t s)
{
    uint32_t i;
    for (i = from; i < to; i++) {
        s = s * 1103515245u + 12345u;
        io[i] = (uint8_t)(i & 1u ? ((s >> 16) & 0xBBu) : (s >> 16));  /* high byte: exponent <= 14 */
        if (special && (i & 7u) >= 6u) io[i] = (uint8_t)(SPECIAL[(i >> 3) & 7u] >> (8u * (i & 1u)));
    }
}

static void ram_alloc(ram_t *r, uint32_t ds, uint32_t ts, uint32_t is, int special)
{
    r->ds = ds; r->ts = ts; r->is = is; r->special = special; r->out = NULL; r->os = 0;
    r->data = ds ? malloc(ds) : NULL; r->tmp = ts ? malloc(ts) : NULL; r->io = is ? malloc(is) : NULL;
    CHECK((!ds || r->data) && (!ts || r->tmp) && (!is || r->io));
    if (ds) memset(r->data, 0x5A, ds);
    if (ts) memset(r->tmp, 0x3C, ts);
    fill_io(r->io, 0, is, special, 12345u);
}

static void ram_free(ram_t *r) { free(r->data); free(r->tmp); free(r->io); }

static int same(const uint8_t *a, const uint8_t *b, uint32_t n) { return n == 0 || memcmp(a, b, n) == 0; }

static int is_status(int e) { return e <= GX_OK && e >= GX_E_MEMORY; }

static int inside(const uint8_t *b, size_t len, const uint8_t *p, uint32_t n)
{
    return p && b >= p && len <= n && (size_t)(b - p) <= n - len;
}

/* every op output lies inside data, in_out or (gx_run_step) struct output, and there are no
 * more outputs than it says */
static void hook(void *user, const gx_task *task, unsigned node)
{
    const ram_t *r = (const ram_t *)user;
    unsigned k;
    for (k = 0;; k++) {
        const uint8_t *b; uint32_t count; int f32, e = gx_node_output(task, node, k, &b, &count, &f32);
        size_t len;
        CHECK(e == GX_OK || e == GX_E_ARG);
        if (e != GX_OK) break;
        CHECK(k < 65536u);
        len = (size_t)count * (f32 ? 4u : 2u);
        CHECK(inside(b, len, r->data, r->ds) || inside(b, len, r->io, r->is) || inside(b, len, r->out, r->os));
    }
}

/* a refused task: RAM untouched, gx_run refuses, no node outputs */
static void check_refused(gx_task *task, const ram_t *r, const ram_t *ref)
{
    const uint8_t *b; uint32_t count; int f32;
    CHECK(same(r->io, ref->io, r->is) && same(r->data, ref->data, r->ds) && same(r->tmp, ref->tmp, r->ts));
    CHECK(gx_run(task) == GX_E_ARG);
    if (r->is) {  /* the in_out buffer as both step buffers: nothing written */
        CHECK(gx_run_step(task, r->io, r->io) == GX_E_ARG);
        CHECK(same(r->io, ref->io, r->is));
    }
    CHECK(gx_node_output(task, 0, 0, &b, &count, &f32) == GX_E_ARG);
}

/* step 3: cmd / weight / ops as their own arrays, through gx_init */
static void run_split(const uint8_t *raw, size_t n, const ram_t *first, int status_raw, const ram_t *ref)
{
    const uint8_t *e = raw + 32;
    uint32_t off[3], size[3], k;
    uint8_t *sec[3];
    ram_t r;
    gx_task task;
    int st;
    for (k = 0; k < 3u; k++) {
        off[k] = rd32(e + 16u * k + 4u); size[k] = rd32(e + 16u * k + 8u);
        if ((uint64_t)off[k] + size[k] > n) return;  /* gx_init_raw refused it (checked there) */
    }
    for (k = 0; k < 3u; k++) sec[k] = dup_bytes(raw + off[k], size[k]);
    ram_alloc(&r, first->ds, first->ts, first->is, first->special);
    CHECK(gx_init(NULL, sec[0], size[0], sec[1], size[1], sec[2], size[2], r.data, r.ds, r.tmp, r.ts,
                  r.io, r.is) == GX_E_ARG);
    CHECK(gx_init(&task, sec[0], size[0], sec[1], size[1], NULL, size[2], r.data, r.ds, r.tmp, r.ts,
                  r.io, r.is) == GX_E_ARG);
    if (r.ds) CHECK(gx_init(&task, sec[0], size[0], sec[1], size[1], sec[2], size[2], NULL, r.ds, r.tmp,
                            r.ts, r.io, r.is) == GX_E_ARG);
    task.hook = NULL;
    st = gx_init(&task, sec[0], size[0], size[1] ? sec[1] : NULL, size[1], sec[2], size[2],
                 r.data, r.ds, r.tmp, r.ts, r.io, r.is);
    CHECK(st == status_raw);
    if (st == GX_OK) {
        task.hook = hook; task.hook_user = &r;
        CHECK(gx_run(&task) == GX_OK);
        CHECK(same(r.io, first->io, r.is));  /* the same outputs as from the container */
    } else {
        check_refused(&task, &r, ref);
    }
    ram_free(&r);
    for (k = 0; k < 3u; k++) free(sec[k]);
}

/* ---- step 4: gx_run_step --------------------------------------------------------------------- */
/* where struct output starts in struct in_out: the lowest io offset of a graph output (flags:
 * output, not input; a state output has its state input's offset), io_size when there is none */
static uint32_t output_offset(const gx_task *t)
{
    uint32_t k, at = t->io_size;
    for (k = 0; k < t->n_tensors; k++) {
        const uint8_t *rec = t->ops + 32u * k;
        if (rec[4] == 1u && (rec[7] & 4u) && !(rec[7] & 2u) && rd32(rec + 8) < at) at = rd32(rec + 8);
    }
    return at;
}

/* fill the stack below the caller with v, so that a read of an uninitialised stack byte in
 * the runtime gives different results from two runs */
static __attribute__((noinline)) void scribble(uint8_t v)
{
    uint8_t junk[96u * 1024u];
    static uint8_t *volatile escape;
    memset(junk, v, sizeof junk);
    escape = junk;
    (void)escape;
}

typedef struct { uint8_t *cur, *nxt, *data, *tmp; } snap_t;

static void snap_take(snap_t *s, const ram_t *r, const uint8_t *cur, const uint8_t *nxt)
{
    s->cur = dup_bytes(cur, r->is); s->nxt = dup_bytes(nxt, r->is);
    s->data = dup_bytes(r->data, r->ds); s->tmp = dup_bytes(r->tmp, r->ts);
}

static void snap_free(snap_t *s) { free(s->cur); free(s->nxt); free(s->data); free(s->tmp); }

/* gx_run_step(task, cur, out) on r's data/tmp; the hook checks every op output lies inside
 * data, cur or the io_size - at bytes of struct output at out */
static void step(gx_task *task, const ram_t *r, uint8_t *cur, uint8_t *out, uint32_t at, uint8_t stack)
{
    ram_t view = *r;
    view.io = cur; view.out = out; view.os = r->is - at;
    task->hook = hook; task->hook_user = &view;
    scribble(stack);
    CHECK(gx_run_step(task, cur, out) == GX_OK);
    task->hook = NULL;
}

/* one step of the two-buffer loop, then the same step again on copies of cur, nxt, data and
 * tmp at other addresses: the input buffer and nxt's first `at` bytes untouched, same bytes */
static void loop_step(gx_task *task, ram_t *r, uint8_t *cur, uint8_t *nxt, uint32_t at, uint32_t k)
{
    snap_t before, after;
    uint8_t *cur2, *nxt2;
    snap_take(&before, r, cur, nxt);
    step(task, r, cur, nxt + at, at, (uint8_t)(0x20u + k));
    CHECK(same(cur, before.cur, r->is));  /* struct input is only read */
    CHECK(same(nxt, before.nxt, at));     /* struct output starts at output_offset */
    snap_take(&after, r, cur, nxt);
    cur2 = dup_bytes(before.cur, r->is); nxt2 = dup_bytes(before.nxt, r->is);
    if (r->ds) memcpy(r->data, before.data, r->ds);
    if (r->ts) memcpy(r->tmp, before.tmp, r->ts);
    step(task, r, cur2, nxt2 + at, at, (uint8_t)(0xE0u - k));
    CHECK(same(cur2, after.cur, r->is) && same(nxt2, after.nxt, r->is));
    CHECK(same(r->data, after.data, r->ds) && same(r->tmp, after.tmp, r->ts));
    free(cur2); free(nxt2); snap_free(&before); snap_free(&after);
}

/* step 4, on a task gx_run just ran on r (which started as ref): gx_run_step in place on a copy
 * of ref's in_out gives gx_run's bytes; then STEPS steps of the firmware loop. Leaves the
 * task's in_out pointing at freed memory: the task is not used again. */
static void run_steps(gx_task *task, ram_t *r, const ram_t *ref)
{
    uint32_t is = r->is, at = output_offset(task), k;
    uint8_t *io = dup_bytes(ref->io, is), *run_io = dup_bytes(r->io, is), *run_data = dup_bytes(r->data, r->ds);
    uint8_t *buf[2];
    CHECK(at <= is);
    CHECK(gx_run_step(task, NULL, io + at) == GX_E_ARG && gx_run_step(task, io, NULL) == GX_E_ARG);
    if (r->ds) memcpy(r->data, ref->data, r->ds);
    if (r->ts) memcpy(r->tmp, ref->tmp, r->ts);
    step(task, r, io, io + at, at, 0x11u);
    CHECK(same(io, run_io, is) && same(r->data, run_data, r->ds));  /* = gx_run on a copy */
    buf[0] = dup_bytes(ref->io, is); buf[1] = dup_bytes(ref->io, is);
    fill_io(buf[1], 0, is, r->special, 777u);
    for (k = 0; k < STEPS; k++) {
        fill_io(buf[k & 1u], 0, at, r->special, 1000u + k);  /* this step's own inputs */
        loop_step(task, r, buf[k & 1u], buf[(k + 1u) & 1u], at, k);
    }
    free(io); free(run_io); free(run_data); free(buf[0]); free(buf[1]);
}

static int verbose = -1;

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    uint32_t word, ds = 0, ts = 0;
    uint8_t *raw;
    size_t n;
    ram_t r, ref;
    gx_task task;
    int e;
    if (verbose < 0) verbose = getenv("FUZZ_RUNTIME_VERBOSE") != NULL;
    if (size < 4u) return 0;
    word = rd32(in); n = size - 4u;
    raw = dup_bytes(in + 4, n);
    if (!(word >> 31) && n >= 20u) {
        uint32_t c, k;
        memset(raw + 16, 0, 4);
        c = crc32_zlib(raw, n);
        for (k = 0; k < 4u; k++) raw[16 + k] = (uint8_t)(c >> (8u * k));
    }
    e = gx_raw_sizes(raw, n, &ds, &ts);
    CHECK(is_status(e) && e != GX_E_MEMORY);
    if (e != GX_OK || ds > MAX_RAM || ts > MAX_RAM) {
        ram_alloc(&r, 64u, 64u, 64u, 0);
        ram_alloc(&ref, 64u, 64u, 64u, 0);
        /* refused as it stands, or (too large to run here) refused for lack of RAM */
        CHECK(gx_init_raw(&task, raw, n, r.data, r.ds, r.tmp, r.ts, r.io, r.is) == (e ? e : GX_E_MEMORY));
        check_refused(&task, &r, &ref);
        if (verbose) fprintf(stderr, e != GX_OK ? "status %d ran 0\n" : "too large\n", e);
        ram_free(&r); ram_free(&ref); free(raw);
        return 0;
    }
    ram_alloc(&r, ds, ts, (word & 0x3FFFu) * 2u, (word >> 30) & 1u);
    ram_alloc(&ref, ds, ts, (word & 0x3FFFu) * 2u, (word >> 30) & 1u);
    if (ds) {  /* one byte less data than the file asks for */
        CHECK(gx_init_raw(&task, raw, n, r.data, ds - 1u, r.tmp, ts, r.io, r.is) == GX_E_MEMORY);
        check_refused(&task, &r, &ref);
    }
    task.hook = NULL;
    e = gx_init_raw(&task, raw, n, r.data, ds, r.tmp, ts, r.io, r.is);
    CHECK(is_status(e) && e != GX_E_MEMORY);
    if (e == GX_OK) {
        task.hook = hook; task.hook_user = &r;
        CHECK(gx_run(&task) == GX_OK);
        if (verbose) fprintf(stderr, "status %d ran 1\n", e);
        run_steps(&task, &r, &ref);
        if (verbose) fprintf(stderr, "steps %u\n", STEPS);
    } else {
        if (verbose) fprintf(stderr, "status %d ran 0\n", e);
        check_refused(&task, &r, &ref);
    }
    run_split(raw, n, &r, e, &ref);
    ram_free(&r); ram_free(&ref); free(raw);
    return 0;
}
