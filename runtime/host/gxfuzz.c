/* gxfuzz: feed many (mutated) models to the runtime; for the fuzz test under sanitizers.
 *
 *   gxfuzz MODELS.bin IO_SIZE
 *
 * MODELS.bin: records of u32 little-endian length + that many bytes (a raw container each).
 * For each: fill data/tmp/in_out with a pattern, gx_init_raw, and gx_run if it was accepted;
 * then gx_run_step on exact-size buffers: in place (in_out + output_offset, the lowest io
 * offset of a graph output) from the same start, and two steps of the two-buffer loop.
 * Prints one line per model: its status, "touched" if a refused model changed in_out,
 * "step-differs" if the in-place step did not give gx_run's bytes, "input-touched" if a step
 * wrote its input buffer or the other buffer before output_offset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gxnpu.h"

#define ARENA (1u << 20)

static uint32_t output_offset(const gx_task *t)
{
    uint32_t k, at = t->io_size;
    for (k = 0; k < t->n_tensors; k++) {
        const unsigned char *r = t->ops + 32u * k;
        uint32_t off = (uint32_t)r[8] | (uint32_t)r[9] << 8 | (uint32_t)r[10] << 16 | (uint32_t)r[11] << 24;
        if (r[4] == 1u && (r[7] & 4u) && !(r[7] & 2u) && off < at) at = off;
    }
    return at;
}

/* gx_run_step after gx_run wrote `ran` (from `start`, data 0x5A, tmp 0x3C): the flags above */
static const char *steps(gx_task *task, const unsigned char *start, const unsigned char *ran,
                         unsigned char *data, unsigned char *tmp, uint32_t io_size)
{
    uint32_t at = output_offset(task), k;
    unsigned char *b[3], *seen = malloc(io_size + 1u), *head = malloc(at + 1u);
    const char *flag = "";
    for (k = 0; k < 3u; k++) {  /* exact size: ASan sees a write past struct in_out */
        b[k] = malloc(io_size + !io_size);
        memcpy(b[k], start, io_size);
        if (k) memset(b[k], 0x31 + (int)k, at);  /* other per-step inputs */
    }
    memset(data, 0x5A, ARENA); memset(tmp, 0x3C, ARENA);
    if (gx_run_step(task, b[0], b[0] + at) != GX_OK || memcmp(b[0], ran, io_size)) flag = " step-differs";
    for (k = 0; k < 2u; k++) {  /* step k reads b[1 + k], writes struct output at the other + at */
        unsigned char *cur = b[1u + k], *next = b[2u - k];
        memcpy(seen, cur, io_size); memcpy(head, next, at);
        if (gx_run_step(task, cur, next + at) != GX_OK) flag = " step-differs";
        if (memcmp(cur, seen, io_size) || memcmp(next, head, at)) flag = " input-touched";
    }
    for (k = 0; k < 3u; k++) free(b[k]);
    free(seen); free(head);
    return flag;
}

int main(int argc, char **argv)
{
    FILE *f;
    static unsigned char buf[1u << 22], data[ARENA], tmp[ARENA], io[ARENA], ref[ARENA];
    unsigned char len4[4];
    uint32_t io_size, n;
    if (argc < 3 || !(f = fopen(argv[1], "rb"))) return 1;
    io_size = (uint32_t)strtoul(argv[2], NULL, 10);
    if (io_size > ARENA) return 1;
    while (fread(len4, 1, 4, f) == 4) {
        gx_task task;
        uint32_t ds = 0, ts = 0;
        unsigned char *model;
        int e;
        memset(&task, 0, sizeof task);
        n = (uint32_t)len4[0] | (uint32_t)len4[1] << 8 | (uint32_t)len4[2] << 16 | (uint32_t)len4[3] << 24;
        if (n > sizeof buf || fread(buf, 1, n, f) != n) return 1;
        model = malloc(n ? n : 1u);  /* exact size: ASan sees any read past the end */
        memcpy(model, buf, n);
        memset(io, 0xA5, io_size); memcpy(ref, io, io_size);
        memset(data, 0x5A, ARENA); memset(tmp, 0x3C, ARENA);
        e = gx_raw_sizes(model, n, &ds, &ts);
        if (e == GX_OK && (ds > ARENA || ts > ARENA)) e = GX_E_MEMORY;
        if (e == GX_OK) e = gx_init_raw(&task, model, n, data, ds, tmp, ts, io, io_size);
        if (e == GX_OK) e = gx_run(&task);
        else if (gx_run(&task) != GX_E_ARG || gx_run_step(&task, io, io) != GX_E_ARG) e = 99;  /* refused: no run */
        printf("%d%s%s\n", e, e != GX_OK && memcmp(io, ref, io_size) ? " touched" : "",
               e == GX_OK ? steps(&task, ref, io, data, tmp, io_size) : "");
        free(model);
    }
    fclose(f);
    return 0;
}
