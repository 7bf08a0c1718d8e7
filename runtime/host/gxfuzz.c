/* gxfuzz: feed many (mutated) models to the runtime; for the fuzz test under sanitizers.
 *
 *   gxfuzz MODELS.bin IO_SIZE
 *
 * MODELS.bin: records of u32 little-endian length + that many bytes (a raw container each).
 * For each: fill data/tmp/in_out with a pattern, gx_init_raw, and gx_run if it was accepted.
 * Prints one line per model: its status, and "touched" if a refused model changed in_out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gxnpu.h"

#define ARENA (1u << 20)

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
        else if (gx_run(&task) != GX_E_ARG) e = 99;  /* a refused task must not run */
        printf("%d%s\n", e, e != GX_OK && memcmp(io, ref, io_size) ? " touched" : "");
        free(model);
    }
    fclose(f);
    return 0;
}
