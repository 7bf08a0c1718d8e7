/* gxrun: host driver of the gxnpuc runtime (hosted C: stdio, stdlib; not for firmware).
 *
 *   gxrun MODEL.raw IO_SIZE IN_BYTES INPUTS.bin OUTPUTS.bin [DUMP.bin]
 *
 * Runs the model on every sample of INPUTS.bin (IN_BYTES each: struct input) and writes, per
 * sample, the rest of struct in_out (the outputs) to OUTPUTS.bin; with DUMP.bin also every
 * node's outputs after each op (bytes as stored: fp16, or fp32 for graph outputs).
 *
 *   gxrun -s STEPS OUTPUT_OFFSET MODEL.raw IO_SIZE IN_BYTES INPUTS.bin OUTPUTS.bin [DUMP.bin]
 *
 * runs a streaming model (STATE_OPS) over sequences the way a firmware does (vendor layout):
 * two struct in_out buffers, step k reads buffer k % 2 and gx_run_step writes struct output at
 * the other buffer + OUTPUT_OFFSET, so the state outputs land on the next step's state inputs.
 * INPUTS.bin holds per sample the initial state (IN_BYTES - OUTPUT_OFFSET bytes: the state
 * inputs) and then STEPS times the per-step inputs (OUTPUT_OFFSET bytes each); OUTPUTS.bin
 * gets per sample and step struct output (IO_SIZE - OUTPUT_OFFSET bytes), DUMP.bin every
 * node's outputs per sample and step.
 * Exit status: 0, or 2 when the runtime refuses the model (its status code is printed).
 * With GXRUN_REPEAT=R in the environment, the last sample then runs R more times and the
 * best wall time of one gx_run is printed as "seconds_per_run S" (for benchmarks/).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../gxnpu.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long len;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END); len = ftell(f); fseek(f, 0, SEEK_SET);
    buf = malloc(len > 0 ? (size_t)len : 1u);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) { free(buf); buf = NULL; }
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void dump_node(void *user, const gx_task *task, unsigned node)
{
    const uint8_t *bytes; uint32_t count, k; int f32;
    for (k = 0; gx_node_output(task, node, k, &bytes, &count, &f32) == GX_OK; k++)
        fwrite(bytes, f32 ? 4u : 2u, count, (FILE *)user);
}

/* STEPS steps of one sample from `in` (initial state, then the per-step inputs), two buffers */
static int run_sequence(gx_task *task, uint8_t *buf[2], const unsigned char *in, uint32_t steps,
                        uint32_t at, uint32_t in_bytes, uint32_t io_size, FILE *out)
{
    uint32_t k;
    int e;
    memset(buf[0], 0, io_size); memset(buf[1], 0, io_size);
    memcpy(buf[0] + at, in, in_bytes - at);
    in += in_bytes - at;
    for (k = 0; k < steps; k++, in += at) {
        uint8_t *cur = buf[k % 2u], *next = buf[(k + 1u) % 2u];
        memcpy(cur, in, at);
        if ((e = gx_run_step(task, cur, next + at)) != GX_OK) return e;
        fwrite(next + at, 1, io_size - at, out);
    }
    return GX_OK;
}

int main(int argc, char **argv)
{
    size_t raw_n, in_n, s, per_sample;
    unsigned char *raw, *inputs, *data, *tmp, *io;
    uint8_t *buf[2] = {NULL, NULL};
    uint32_t data_size = 0, tmp_size = 0, io_size, in_bytes, steps = 0, at = 0;
    FILE *out, *dump = NULL;
    gx_task task;
    int e;
    if (argc > 3 && strcmp(argv[1], "-s") == 0) {
        steps = (uint32_t)strtoul(argv[2], NULL, 10); at = (uint32_t)strtoul(argv[3], NULL, 10);
        argv += 3; argc -= 3;
    }
    if (argc < 6) { fprintf(stderr, "usage: gxrun [-s STEPS OUTPUT_OFFSET] MODEL.raw IO_SIZE IN_BYTES INPUTS.bin OUTPUTS.bin [DUMP.bin]\n"); return 1; }
    raw = slurp(argv[1], &raw_n); inputs = slurp(argv[4], &in_n);
    io_size = (uint32_t)strtoul(argv[2], NULL, 10); in_bytes = (uint32_t)strtoul(argv[3], NULL, 10);
    per_sample = steps ? (size_t)in_bytes - at + (size_t)steps * at : in_bytes;
    if (!raw || !inputs || in_bytes > io_size || at > in_bytes || (per_sample && in_n % per_sample)) { fprintf(stderr, "gxrun: bad arguments\n"); return 1; }
    if ((e = gx_raw_sizes(raw, raw_n, &data_size, &tmp_size)) != GX_OK) { printf("status %d\n", e); return 2; }
    data = calloc(data_size + 1u, 1); tmp = calloc(tmp_size + 1u, 1); io = calloc(io_size + 1u, 1);
    if ((e = gx_init_raw(&task, raw, raw_n, data, data_size, tmp, tmp_size, io, io_size)) != GX_OK) {
        printf("status %d\n", e);
        return 2;
    }
    out = fopen(argv[5], "wb");
    if (argc > 6) { dump = fopen(argv[6], "wb"); task.hook = dump_node; task.hook_user = dump; }
    if (steps) { buf[0] = calloc(io_size + 1u, 1); buf[1] = calloc(io_size + 1u, 1); }
    for (s = 0; per_sample ? s < in_n / per_sample : s < 1u; s++) {
        if (steps) e = run_sequence(&task, buf, inputs + s * per_sample, steps, at, in_bytes, io_size, out);
        else {
            memcpy(io, inputs + s * in_bytes, in_bytes);
            if ((e = gx_run(&task)) == GX_OK) fwrite(io + in_bytes, 1, io_size - in_bytes, out);
        }
        if (e != GX_OK) { printf("status %d\n", e); return 2; }
    }
    fclose(out);
    if (dump) fclose(dump);
    if (getenv("GXRUN_REPEAT")) {
        long r, reps = strtol(getenv("GXRUN_REPEAT"), NULL, 10);
        double best = 1e30;
        task.hook = NULL;
        for (r = 0; r < reps; r++) {
            double t0 = now();
            gx_run(&task);
            if (now() - t0 < best) best = now() - t0;
        }
        printf("seconds_per_run %.9f\n", best);
    }
    free(raw); free(inputs); free(data); free(tmp); free(io); free(buf[0]); free(buf[1]);
    return 0;
}
