/* gxnpu.h: the gxnpuc reference runtime (C99, freestanding: no heap, no libm, no globals).
 *
 * Runs a model compiled by gxnpuc (model.h arrays or a raw file in memory) on the CPU with
 * the device numerics of docs/numerics.md: fp16 activations, fp32 arithmetic, one rounding
 * to fp16 per op output. The results are bit-identical to `gxnpuc`'s simulator (npu mode).
 * Compile with -ffp-contract=off (no fused multiply-add). API and example: docs/runtime.md.
 */
#ifndef GXNPU_H
#define GXNPU_H

#include <stddef.h>
#include <stdint.h>

#define GXNPU_FORMAT_VERSION 2u

/* Status codes: 0 is success, every failure is negative. */
enum gx_status {
    GX_OK = 0,
    GX_E_ARG = -1,       /* a NULL pointer or a task that was not initialised successfully */
    GX_E_MAGIC = -2,     /* not a gxnpuc model (raw magic, cmd magic) */
    GX_E_VERSION = -3,   /* a model format this runtime does not read */
    GX_E_BOUNDS = -4,    /* a section, record or offset lies outside its region */
    GX_E_TENSOR = -5,    /* a tensor record or shape is inconsistent */
    GX_E_WEIGHT = -6,    /* a weight encoding does not match its size, channels or bitmap */
    GX_E_OP = -7,        /* an unknown opcode, or a node whose shapes or attrs do not fit */
    GX_E_CHECKSUM = -8,  /* a raw file whose CRC-32 does not match */
    GX_E_MEMORY = -9     /* data / tmp / in_out buffers smaller than the model needs */
};

struct gx_task;
/* Called after each op (optional): node index; gx_node_output() reads what it wrote. */
typedef void (*gx_op_hook)(void *user, const struct gx_task *task, unsigned node);

/* One model instance: the sections it reads and the RAM it writes. Fill it with gx_init()
 * or gx_init_raw(); two tasks are fully independent (no shared state). */
typedef struct gx_task {
    const uint8_t *cmd, *weight, *ops;
    uint8_t *data, *tmp, *in_out;
    uint32_t cmd_size, weight_size, ops_size, data_size, tmp_size, io_size;
    /* filled by gx_init */
    uint32_t n_tensors, n_nodes, dims_at, nodes_at;
    int valid;
    uint32_t cpu;  /* 1: the host CPU runs the AVX2 kernels (x86-64 builds at -O1 and up) */
    /* set by gx_run_step: where struct output goes (NULL: in in_out), and its offset there */
    uint8_t *out;
    uint32_t out_at;
    gx_op_hook hook;
    void *hook_user;
} gx_task;

/* Check every section and record, then bind the task (nothing is written to data/tmp/in_out).
 * data, tmp and in_out must hold data_size, tmp_size and io_size bytes (tmp may be NULL when
 * tmp_size is 0). Returns GX_OK or a negative enum gx_status. */
int gx_init(gx_task *task, const void *cmd, uint32_t cmd_size, const void *weight,
            uint32_t weight_size, const void *ops, uint32_t ops_size, void *data,
            uint32_t data_size, void *tmp, uint32_t tmp_size, void *in_out, uint32_t io_size);

/* The same from a raw container (OUTPUT_TYPE: raw) held in memory: header, CRC-32 and
 * section table are checked first. */
int gx_init_raw(gx_task *task, const void *raw, size_t raw_size, void *data, uint32_t data_size,
                void *tmp, uint32_t tmp_size, void *in_out, uint32_t io_size);

/* Section sizes a raw container asks for (to size data/tmp/in_out before gx_init_raw). */
int gx_raw_sizes(const void *raw, size_t raw_size, uint32_t *data_size, uint32_t *tmp_size);

/* One inference on in_out (struct in_out of model.h: fp16 inputs, then the outputs). */
int gx_run(gx_task *task);

/* One step of a streaming model (STATE_OPS, the vendor layout of docs/model-format.md): read
 * struct input from in_out (io_size bytes; it becomes the task's in_out) and write struct
 * output at `output`, which is the next buffer + output_offset, so each state output lands on
 * its state input there and the other outputs on their places in that buffer. Of in_out and
 * output, only the io_size - output_offset bytes at output are written; they must not overlap
 * struct input. For a model without state pairs (struct output then starts at
 * sizeof(struct input)), gx_run_step(t, io, (char *)io + sizeof(struct input)) is gx_run(t)
 * on io; with state pairs that address is too far (the bytes written would end past io). */
int gx_run_step(gx_task *task, void *in_out, void *output);

/* Output k of node `node` (for hooks): where its bytes are, how many values, and whether
 * they are fp32 (graph outputs) rather than fp16. Returns GX_OK or GX_E_ARG. */
int gx_node_output(const gx_task *task, unsigned node, unsigned k, const uint8_t **bytes,
                   uint32_t *count, int *is_f32);

/* Bind a task to the arrays of a model.h included in the same file. */
#define GX_INIT_FROM_MODEL_H(task, io_ptr)                                                  \
    gx_init((task), cmd_content, cmd_size, weight_content, weight_size, ops_content, ops_size, \
            data_content, data_size, tmp_content, tmp_size, (io_ptr), io_size)

#endif /* GXNPU_H */
