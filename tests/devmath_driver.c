/* Test driver for runtime/gx_math.h (tests/test_devmath.py): reads a function name, then
 * float32 operands (one or two per value) on stdin; writes the float32 (or fp16) results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gx_math.h"

static float unary(const char *fn, float x) {
    if (!strcmp(fn, "exp")) return gx_expf(x);
    if (!strcmp(fn, "expm1")) return gx_expm1f(x);
    if (!strcmp(fn, "log")) return gx_logf(x);
    if (!strcmp(fn, "log1p")) return gx_log1pf(x);
    if (!strcmp(fn, "tanh")) return gx_tanhf(x);
    if (!strcmp(fn, "sigmoid")) return gx_sigmoidf(x);
    if (!strcmp(fn, "erf")) return gx_erff(x);
    if (!strcmp(fn, "erfc")) return gx_erfcf(x);
    if (!strcmp(fn, "sqrt")) return gx_sqrtf(x);
    if (!strcmp(fn, "rsqrt")) return gx_rsqrtf(x);
    if (!strcmp(fn, "gelu")) return gx_geluf(x);
    if (!strcmp(fn, "gelu_tanh")) return gx_gelu_tanhf(x);
    if (!strcmp(fn, "silu")) return gx_siluf(x, 1.0f);
    if (!strcmp(fn, "softplus")) return gx_softplusf(x);
    if (!strcmp(fn, "softsign")) return gx_softsignf(x);
    if (!strcmp(fn, "mish")) return gx_mishf(x);
    if (!strcmp(fn, "elu")) return gx_eluf(x, 0.7f);
    if (!strcmp(fn, "selu")) return gx_seluf(x, 1.6732632f, 1.0507010f);
    if (!strcmp(fn, "hard_sigmoid")) return gx_hard_sigmoidf(x, 0.2f, 0.5f);
    if (!strcmp(fn, "hard_swish")) return gx_hard_swishf(x);
    if (!strcmp(fn, "from_f16")) { gx__bits b; b.f = x; return gx_f16_to_f32((uint16_t)b.u); }
    if (!strcmp(fn, "to_f16")) { gx__bits b; b.u = gx_f32_to_f16(x); return b.f; }
    fprintf(stderr, "unknown function %s\n", fn);
    exit(2);
}

int main(int argc, char **argv) {
    float in[2];
    int binary;
    if (argc != 2) return 2;
    binary = !strcmp(argv[1], "pow");
    while (fread(in, sizeof(float), binary ? 2 : 1, stdin) == (size_t)(binary ? 2 : 1)) {
        float y = binary ? gx_powf(in[0], in[1]) : unary(argv[1], in[0]);
        fwrite(&y, sizeof y, 1, stdout);
    }
    return 0;
}
