/* demo: the firmware usage of the runtime, on a PC (make demo builds it with the system gcc).
 *
 *   gcc -std=c99 -O2 -ffp-contract=off -I runtime -I examples/build \
 *       -DGX_MODEL_H='"kws_model.h"' runtime/host/demo.c runtime/gxnpu.c -o kws_demo
 *   ./kws_demo INPUTS.bin OUTPUTS.bin      (INPUTS.bin: struct input after struct input)
 *
 * Prints the first sample's output values; writes every sample's struct output to OUTPUTS.bin.
 */
#include <stdio.h>
#include <string.h>

#include "gxnpu.h"
#include GX_MODEL_H

static struct in_out io;  /* the application's buffer, as on the device */

int main(int argc, char **argv)
{
    FILE *in, *out;
    gx_task task;
    unsigned long samples = 0;
    int status;
    if (argc < 3 || !(in = fopen(argv[1], "rb")) || !(out = fopen(argv[2], "wb"))) {
        fprintf(stderr, "usage: %s INPUTS.bin OUTPUTS.bin\n", argv[0]);
        return 1;
    }
    status = GX_INIT_FROM_MODEL_H(&task, &io);
    if (status != GX_OK) {
        fprintf(stderr, "gx_init: status %d\n", status);
        return 2;
    }
    while (fread(&io.input, sizeof io.input, 1, in) == 1) {
        if ((status = gx_run(&task)) != GX_OK) {
            fprintf(stderr, "gx_run: status %d\n", status);
            return 2;
        }
        fwrite(&io.output, sizeof io.output, 1, out);
        if (samples++ == 0) {  /* graph outputs as fp32 words (FP16_OUT_OPS ones as fp16 bits) */
            const unsigned char *p = (const unsigned char *)&io.output;
            size_t k;
            printf("sample 0, struct output (%u bytes) as fp32:", (unsigned)sizeof io.output);
            for (k = 0; k + 4 <= sizeof io.output; k += 4) {
                float v;
                memcpy(&v, p + k, 4);
                printf("%s%.6g", k % 32 ? " " : "\n  ", (double)v);
            }
            printf("\n");
        }
    }
    printf("%lu samples run by the C runtime (%s, %u B of model in cmd+weight+ops)\n", samples,
           model_info, cmd_size + weight_size + ops_size);
    fclose(in);
    fclose(out);
    return 0;
}
