/* gxrun: host driver of the gxnpuc runtime (hosted C: stdio, stdlib; not for firmware).
 *
 *   gxrun MODEL.raw IO_SIZE IN_BYTES INPUTS.bin OUTPUTS.bin [DUMP.bin]
 *
 * Runs the model on every sample of INPUTS.bin (IN_BYTES each: struct input) and writes, per
 * sample, the rest of struct in_out (the outputs) to OUTPUTS.bin; with DUMP.bin also every
 * node's outputs after each op (bytes as stored: fp16, or fp32 for graph outputs).
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

int main(int argc, char **argv)
{
    size_t raw_n, in_n, s;
    unsigned char *raw, *inputs, *data, *tmp, *io;
    uint32_t data_size = 0, tmp_size = 0, io_size, in_bytes;
    FILE *out, *dump = NULL;
    gx_task task;
    int e;
    if (argc < 6) { fprintf(stderr, "usage: gxrun MODEL.raw IO_SIZE IN_BYTES INPUTS.bin OUTPUTS.bin [DUMP.bin]\n"); return 1; }
    raw = slurp(argv[1], &raw_n); inputs = slurp(argv[4], &in_n);
    io_size = (uint32_t)strtoul(argv[2], NULL, 10); in_bytes = (uint32_t)strtoul(argv[3], NULL, 10);
    if (!raw || !inputs || in_bytes > io_size || (in_bytes && in_n % in_bytes)) { fprintf(stderr, "gxrun: bad arguments\n"); return 1; }
    if ((e = gx_raw_sizes(raw, raw_n, &data_size, &tmp_size)) != GX_OK) { printf("status %d\n", e); return 2; }
    data = calloc(data_size + 1u, 1); tmp = calloc(tmp_size + 1u, 1); io = calloc(io_size + 1u, 1);
    if ((e = gx_init_raw(&task, raw, raw_n, data, data_size, tmp, tmp_size, io, io_size)) != GX_OK) {
        printf("status %d\n", e);
        return 2;
    }
    out = fopen(argv[5], "wb");
    if (argc > 6) { dump = fopen(argv[6], "wb"); task.hook = dump_node; task.hook_user = dump; }
    for (s = 0; in_bytes ? s < in_n / in_bytes : s < 1u; s++) {
        memcpy(io, inputs + s * in_bytes, in_bytes);
        if ((e = gx_run(&task)) != GX_OK) { printf("status %d\n", e); return 2; }
        fwrite(io + in_bytes, 1, io_size - in_bytes, out);
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
    free(raw); free(inputs); free(data); free(tmp); free(io);
    return 0;
}
