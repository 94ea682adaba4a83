/* SPDX-License-Identifier: Apache-2.0 */
/* The engine's internal model: values (tensors), nodes (operators, later fused), steps (oneDNN primitives in
 * execution order) and the plan that ties them to memory.
 *
 *   graph.c    ONNX ModelProto -> values + nodes + attributes (bounded reader, every field checked)
 *   attr.c     typed attribute access for the operator files; unknown attributes refused by name
 *   plan.c     topological order (cycles refused), constants, shape inference, fusion, liveness, memory plan
 *   exec.c     oneDNN engine/stream, memory descriptors, steps, weights, arena, run
 *   op_*.c     one file per operator family: parameters, shape inference and primitive creation
 *   ops.c      the operator table: name, arity, attribute parser, shape rule, builder, fold rule
 *   engine.c   the public API (include/veil/engine.h) */
#ifndef VEIL_ENGINE_INTERNAL_H
#define VEIL_ENGINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <dnnl.h>

#include "core/cursor.h"
#include "core/limits.h"
#include "core/result.h"
#include "core/secret.h"
#include "veil/engine.h"
#include "veil/sealed.h"

#define ENG_RANK VEIL_ENGINE_MAX_RANK

enum eng_op {
    OP_CONV, OP_BATCHNORM, OP_RELU, OP_CLIP, OP_SIGMOID, OP_HARDSIGMOID, OP_HARDSWISH, OP_ADD, OP_MUL,
    OP_MAXPOOL, OP_AVGPOOL, OP_GLOBALAVGPOOL, OP_FLATTEN, OP_RESHAPE, OP_GEMM, OP_MATMUL, OP_CONCAT,
    OP_SOFTMAX, OP_IDENTITY, OP_CONSTANT,
    /* evaluated at load on constants and shapes only (fold.c); Pad only folded into a following Conv */
    OP_SHAPE, OP_GATHER, OP_UNSQUEEZE, OP_SQUEEZE, OP_CONSTANTOFSHAPE, OP_SLICE, OP_TRANSPOSE, OP_CAST, OP_PAD,
    /* transformers: run on oneDNN where it has a primitive, else on the engine's own kernels (op_kernel.c);
     * every one of them is also folded at load when its inputs are constants */
    OP_LAYERNORM, OP_SUB, OP_DIV, OP_POW, OP_MAX, OP_MIN, OP_EQUAL, OP_LESS, OP_GREATER, OP_LESSEQ, OP_GREATEREQ,
    OP_AND, OP_OR, OP_NOT, OP_WHERE, OP_MOD, OP_SQRT, OP_TANH, OP_ERF, OP_EXP, OP_NEG, OP_ABS, OP_ISNAN,
    OP_REDUCEMEAN, OP_EXPAND, OP_RANGE, OP_SPLIT, OP_GELU, OP_GATHERELEMENTS, OP_SCATTERND, OP_REDUCESUM,
    OP_REDUCEMAX, OP_REDUCEL2,
    OP_TRILU, OP_EINSUM, OP_QUANTIZE, OP_DEQUANTIZE,
    /* more activations (eltwise chains, fused into a Conv before them like Relu) and element-wise operators */
    OP_LEAKYRELU, OP_ELU, OP_SELU, OP_CELU, OP_SOFTPLUS, OP_MISH, OP_ROUND,
    OP_LOG, OP_FLOOR, OP_CEIL, OP_SIGN, OP_SIN, OP_COS, OP_RECIPROCAL, OP_PRELU, OP_DROPOUT, OP_CUMSUM, OP_GATHERND,
    OP_LOGSOFTMAX, OP_REDUCEMIN, OP_INSTANCENORM, OP_RESIZE,
    OP_CONVTRANSPOSE, OP_TILE, OP_DEPTHTOSPACE, OP_SPACETODEPTH, OP_ARGMAX, OP_ARGMIN, OP_TOPK,
    OP_LSTM, OP_GRU, OP_CASTLIKE,
    OP_COUNT
};

/* Elements of one tensor that load-time constant folding may compute (shape arithmetic, pads). */
#define ENG_MAX_FOLD_COUNT (UINT32_C(1) << 20)

enum eng_value_kind { VAL_NONE, VAL_INPUT, VAL_CONST, VAL_ACT };

struct eng_shape {
    uint32_t rank;
    int64_t dims[ENG_RANK];
};

struct eng_value {
    char *name;                     /* owned, NUL-terminated */
    enum eng_value_kind kind;
    int32_t dtype;                  /* ONNX data type; activations are FLOAT */
    struct eng_shape shape;
    int has_shape;
    const uint8_t *data;            /* VAL_CONST: into a tensor view or == owned; valid during load only */
    uint8_t *owned;
    int from_view;                  /* VAL_CONST: data is a caller's tensor view, unchanged (an initializer, or a
                                       fold's view of one); only such data may be lent to a primitive */
    size_t size;                    /* VAL_CONST: bytes of data */
    int dq_from;                    /* VAL_CONST folded from DequantizeLinear: that node's index + 1 (0: not) */
    int producer;                   /* node index, -1 for inputs and constants */
    int is_output;
    int batch_symbolic;             /* a graph input whose dim 0 the graph leaves symbolic (the batch) */
    uint32_t symbolic_mask;         /* a graph input or output: bit i set when the graph declares dim i symbolic */
    int32_t in_dtype;               /* a graph input: the caller's data type (FLOAT, INT64, INT32 or BOOL) */
    /* planning */
    int alias;                      /* the value whose buffer this one views (reshape, in-place sum), -1 */
    dnnl_memory_desc_t md;          /* layout in its buffer (activations and inputs) */
    int has_md;
    int64_t first, last;            /* step positions of the buffer root: written, last read */
    size_t buf_size;                /* root: bytes of its buffer */
    size_t offset;                  /* root: offset in the arena */
    int external;                   /* root: a graph input read in place from the caller's buffer, not placed */
};

/* An attribute, read lazily from the graph bytes (valid during load). */
struct eng_attr {
    const uint8_t *name;
    size_t name_size;
    uint64_t type;
    struct veil_cursor body;        /* the AttributeProto */
    int used;
};

struct eng_post {
    int sum;                        /* 1: sum post-op (in-place residual add) */
    dnnl_alg_kind_t alg;
    float alpha, beta;
};

#define ENG_MAX_POST 6
#define ENG_MAX_ELT 5

enum eng_auto_pad { PAD_NOTSET, PAD_VALID, PAD_SAME_UPPER, PAD_SAME_LOWER };
enum eng_pad_mode { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

/* Resize's parameters (op_resize.c): mode, coordinate transformation, nearest rounding, cubic coefficient,
 * exclude_outside, and the scale of H and W its coordinates use (given, or output / input). */
enum eng_resize_mode { RS_NEAREST, RS_LINEAR, RS_CUBIC };
enum eng_resize_ct { CT_HALF_PIXEL, CT_PYTORCH_HALF_PIXEL, CT_ASYMMETRIC, CT_ALIGN_CORNERS, CT_TF_HALF_PIXEL_FOR_NN,
                     CT_HALF_PIXEL_SYMMETRIC };
enum eng_resize_nm { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL };
struct eng_resize {
    enum eng_resize_mode mode;
    enum eng_resize_ct ct;
    enum eng_resize_nm nm;
    float cubic_a;
    int exclude_outside;
    double scale[2];
};

struct eng_conv_params {
    int64_t kernel[2], strides[2], pads[4], dilations[2], group;
    int one_d;                      /* a 1-D Conv run as a 2-D one over [N, C, 1, L] (graph.c expand_conv1d) */
    enum eng_auto_pad auto_pad;     /* not NOTSET: pads follow from the input's shape (eng_conv_infer) */
    int64_t out_pad[2];             /* ConvTranspose: output_padding */
    int64_t out_shape[2];           /* ConvTranspose: output_shape, 0 when not given */
};

struct eng_pool_params {
    int64_t kernel[2], strides[2], pads[4], dilations[2];
    int ceil_mode, count_include_pad;
    enum eng_auto_pad auto_pad;
    int one_d;                      /* 1-D attributes: the pool runs over an [N, C, L, 1] view of a 3-D input */
};

struct eng_node {
    char *name;                     /* owned; "" when the node has none */
    enum eng_op op;
    int *inputs;                    /* value indices; -1 for an omitted optional input */
    uint32_t input_count;
    int *outputs;
    uint32_t output_count;
    struct eng_attr *attrs;
    uint32_t attr_count;
    /* parameters, set by the operator's parse function */
    struct eng_conv_params conv;
    struct eng_pool_params pool;
    int64_t axis;
    float alpha, beta, epsilon;
    int trans_a, trans_b;
    int64_t ints[2 * ENG_RANK];     /* Transpose perm, Squeeze/Unsqueeze axes, Shape start/end, Pad pads */
    uint32_t int_count;
    int has_ints;                   /* the list came from an attribute */
    int32_t dtype;                  /* Cast: the target type; ConstantOfShape: the fill's type */
    int64_t fill_i;                 /* ConstantOfShape: the fill value */
    enum eng_pad_mode pad_mode;     /* Pad: constant (fill_f), reflect, edge or wrap */
    struct eng_resize resize;       /* Resize */
    double fill_f;
    struct eng_post elt[ENG_MAX_ELT]; /* the node's own eltwise chain (HardSigmoid two, QuantizeLinear three) */
    uint32_t elt_count;
    /* fusion */
    int dead;                       /* folded into another node, or evaluated at load (folded) */
    int folded;                     /* dead because it was evaluated at load: its inputs were read then */
    int bn;                         /* Conv: the folded BatchNormalization node, -1 */
    int sum;                        /* Conv: the value added by a sum post-op, -1 */
    struct eng_post post[ENG_MAX_POST];
    uint32_t post_count;
    int out;                        /* the value the (fused) node finally writes */
    int64_t order;                  /* position in topological order */
    /* int8: a QuantizeLinear (+ DequantizeLinear) read by int8 Convs writes its integers, instead of the dequantized
     * values when only such Convs read them (int8 = 1), or besides them into a hidden value (int8 = 2, int8_bytes:
     * its index + 1); such a Conv (int8 = 1, int8_q: the QuantizeLinear's index + 1) reads them with x_scale and
     * x_zp and runs on the int8 weights it dequantized */
    int int8, int8_bytes, int8_q;
    int q_out;                      /* int8 Conv: it writes the integers of this QuantizeLinear (index + 1) itself */
    float x_scale;
    int32_t x_zp;
    dnnl_data_type_t x_type;
};

/* One argument of a step: a value's buffer, an engine-owned constant, or the scratchpad. */
enum eng_arg_kind { ARG_VALUE, ARG_CONST, ARG_SCRATCH };

struct eng_arg {
    int arg;                        /* DNNL_ARG_* */
    enum eng_arg_kind kind;
    int value;                      /* ARG_VALUE */
    int writes;                     /* ARG_VALUE: the step writes it */
    dnnl_memory_desc_t md;
    void *ptr;                      /* ARG_CONST */
    int lent;                       /* ARG_CONST: ptr is the lending model's memory (eng_step_borrow) */
    dnnl_memory_t mem;
};

/* The engine's own CPU kernels, for what oneDNN has no primitive for (gather, select, strided copies, int/bool
 * arithmetic): each reads and writes plain row-major float32 buffers. Integer and boolean tensors computed at run
 * time are held as float32 (exact below 2^24: token ids, masks, positions). */
enum eng_kop {
    KOP_ADD, KOP_SUB, KOP_MUL, KOP_DIV, KOP_IDIV, KOP_POW, KOP_MAX, KOP_MIN, KOP_EQ, KOP_LT, KOP_GT, KOP_LE, KOP_GE,
    KOP_AND, KOP_OR, KOP_FMOD, KOP_IMOD, KOP_WHERE, KOP_COPY, KOP_NOT, KOP_ISNAN, KOP_ERF, KOP_TRUNC, KOP_BOOL,
    KOP_NEG, KOP_ABS, KOP_SQRT, KOP_TANH, KOP_EXP, KOP_FMODF, KOP_MODF, KOP_LOG, KOP_FLOOR, KOP_CEIL, KOP_SIGN, KOP_SIN,
    KOP_COS, KOP_RECIPROCAL, KOP_PRELU, KOP_MAX3, KOP_MIN3, KOP_CUMSUM, KOP_INSTNORM, KOP_GATHER, KOP_PAD, KOP_QUANT,
    KOP_ARGMAX, KOP_TOPK, KOP_GATHERELEMENTS, KOP_REDUCE_EXTREME, KOP_RESIZE,
    KOP_GATHERND
};

#define ENG_KERNEL_INPUTS 3u
#define ENG_MAX_SPLIT 256u /* outputs of one Split (a model splitting heads or frames one by one) */

struct eng_kernel {
    enum eng_kop op;
    uint32_t inputs;
    struct eng_shape out;
    int64_t strides[ENG_KERNEL_INPUTS][ENG_RANK]; /* per input, in elements, over out's dims (0: broadcast) */
    int64_t offset[ENG_KERNEL_INPUTS];
    int64_t outer, dim, inner, count;             /* KOP_GATHER: data [outer, dim, inner], count indices;
                                                     KOP_CUMSUM: the input as [outer, dim, inner] */
    int exclusive, reverse;                       /* KOP_CUMSUM's attributes */
    int select_min, select_last;                  /* KOP_ARGMAX, KOP_TOPK: the smallest; ties to the last index;
                                                     KOP_TOPK: count = K, into values and indices (two outputs) */
    float eps;                                    /* KOP_INSTNORM: x [outer = N x C, inner], C = dim */
    struct eng_shape in;                          /* KOP_PAD: the input's (plain) shape */
    int64_t pad[ENG_RANK];                        /* KOP_PAD: pad_value before each dim; the output holds the rest */
    float pad_value;
    enum eng_pad_mode pad_mode;                   /* KOP_PAD: outside the input, pad_value or a mirrored, clamped or
                                                     wrapped coordinate */
    struct eng_resize resize;                     /* KOP_RESIZE: in [N, C, H, W] -> out */
    float q_scale, q_zp, q_lo, q_hi;              /* KOP_QUANT: x -> clip(round(x / scale) + zp, lo, hi) */
    float dq_zp, dq_scale;                        /* then (q - dq_zp) * dq_scale (a DequantizeLinear), or 0, 1 */
    int q_bytes;                                  /* KOP_QUANT: 1 write the integers as u8/s8 (int8 Convs read
                                                     them), 2 write both: the dequantized values and the integers */
};

struct eng_step {
    dnnl_primitive_t prim;          /* NULL for a kernel step */
    struct eng_kernel *kernel;      /* owned; the args are its inputs in order, then its output */
    int node;                       /* for messages; -1 for inserted reorders */
    struct eng_arg *args;
    uint32_t arg_count, arg_cap;
    int reads_sum;                  /* the value read in place by a sum post-op, -1 */
    int int_check;                  /* value + 1 whose integers (of arithmetic) it writes: refuse a run where one
                                       reaches 2^24 (exec.c check_integers); 0: none */
    dnnl_exec_arg_t *exec;          /* bound arguments, built once */
};

struct eng_graph {
    struct eng_value *values;
    size_t value_count, value_cap;
    struct eng_node *nodes;
    size_t node_count, node_cap;
    int *inputs;                    /* graph inputs (not initializers) */
    size_t input_count;
    int *outputs;
    size_t output_count;
    int *order;                     /* node indices in topological order */
    int64_t opset;                  /* default-domain opset version */
    /* name lookup: open addressing over values */
    int *table;
    size_t table_size;
};

/* A graph input that no step writes and that is no graph output is read straight from the caller's buffer:
 * each run points the memory objects of the steps that read it at that buffer (no copy into the arena). */
struct eng_input_bind {
    int direct;
    dnnl_memory_t *mems;
    size_t count;
};

struct veil_engine {
    struct eng_graph g;
    struct veil_engine_options opts;
    dnnl_engine_t dnnl;
    dnnl_stream_t stream;
    struct eng_step *steps;
    size_t step_count, step_cap;
    struct veil_secure_mem *consts; /* weights and other constants in their final layout */
    size_t const_count, const_cap;
    struct veil_secure_mem arena;
    struct veil_secure_mem scratch;
    size_t scratch_size;
    int *out_values;                /* per graph output, the plain value to copy out */
    struct eng_input_bind *in_binds; /* per graph input: read in place from the caller's buffer, or copied */
    struct veil_engine_io *io_in, *io_out;
    int borrow;                     /* enum eng_borrow: may large constant weights be used in place, in the
                                       views' memory */
    size_t borrowed;                /* how many are */
    uint64_t borrowed_bytes;        /* and their bytes */
    uint64_t lender_bytes;          /* the bytes of all the views' tensors */
    veil_model *model;              /* the sealed model those views belong to, kept alive (a reference) */
    veil_model *releasing;          /* during a load that consumes the model (release.c), else NULL */
    struct eng_release *release;    /* its weights, in the order they are given back */
    size_t release_count, release_next;
};

/* How an opened model's weights may be lent to the engine's MatMul/Gemm (and float32 Gather tables, embeddings, which
 * the engine's own kernel reads in place), which then run on them instead of holding a second copy (the engine keeps
 * a reference to the model, and with it all of the model's plaintext):
 * - ENG_BORROW_FORCE: a model whose tensors total at least eng_borrow_min_model bytes; its large weights are read in
 *   their plain layout even where oneDNN would have packed them;
 * - ENG_BORROW_IF_PLAIN: a smaller model; a weight is lent only where the primitive oneDNN chose reads the plain
 *   layout anyway (nothing is slower), else copied as before. When what was lent is less than half of the model's
 *   bytes (a CNN: its convolution weights are packed), the lent ones are copied after all (exec.c settle_lending),
 *   so that the model is not kept for a few tensors;
 * - ENG_BORROW_NONE: every other load, and any load whose engine must lock its memory (lock_memory) from a model
 *   whose plaintext is not locked. A model that lent nothing is not kept. */
enum eng_borrow { ENG_BORROW_NONE, ENG_BORROW_IF_PLAIN, ENG_BORROW_FORCE };
#define ENG_BORROW_MIN_MODEL (UINT64_C(1) << 30)
#define ENG_BORROW_MIN_TENSOR (UINT64_C(1) << 20)
extern uint64_t eng_borrow_min_model; /* ENG_BORROW_MIN_MODEL; the unit tests lower it */
/* The number of weights an engine runs on in place (for the unit tests). */
size_t eng_borrowed_count(const veil_engine *e);

/* ---- release.c ------------------------------------------------------------------------------------------- */

/* Plans when each of the model's weights (views, the model's own table) is last read while the engine is built. */
VEIL_RESULT eng_release_plan(struct veil_engine *e, const struct veil_tensor_view *views, size_t count);
/* One more step reads the weight holding src in place: it stays. */
void eng_release_lent(struct veil_engine *e, const void *src);
/* Gives back every weight whose last reader was built at a position <= position (-1: those no node reads). */
void eng_release_after(struct veil_engine *e, int64_t position);
void eng_release_cleanup(struct veil_engine *e);

/* ---- graph.c --------------------------------------------------------------------------------------------- */

void eng_graph_cleanup(struct eng_graph *g);
/* Parses the ModelProto; tensors are the initializers (already checked against the graph's table). */
VEIL_RESULT eng_graph_parse(struct eng_graph *g, const uint8_t *model, size_t size,
                            const struct veil_tensor_view *tensors, size_t count);
/* Finds a value by name, -1 when absent. */
int eng_graph_find(const struct eng_graph *g, const char *name);
/* Adds an unnamed hidden value (a layout conversion); *index receives it. */
VEIL_RESULT eng_graph_add_hidden(struct eng_graph *g, int *index);
const char *eng_op_name(enum eng_op op);
/* Decodes a FLOAT or INT64 TensorProto held in an attribute into v (owned data). */
VEIL_RESULT eng_decode_tensor(struct veil_cursor body, const char *what, struct eng_value *v);

/* ---- attr.c ---------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_attr_int(struct eng_node *n, const char *name, int64_t def, int64_t *out);
VEIL_RESULT eng_attr_float(struct eng_node *n, const char *name, float def, float *out);
/* Reads an INTS attribute into out[max]; *count is 0 when absent. */
VEIL_RESULT eng_attr_ints(struct eng_node *n, const char *name, int64_t *out, uint32_t max, uint32_t *count);
/* Fails unless the STRING attribute is absent or equals one of the allowed values ("NOTSET"...). */
VEIL_RESULT eng_attr_string_is(struct eng_node *n, const char *name, const char *allowed);
/* A string attribute into out (NUL-terminated, at most size - 1 bytes; "" when absent). */
VEIL_RESULT eng_attr_string(struct eng_node *n, const char *name, char *out, size_t size);
/* The TENSOR attribute, or the body of a value_* attribute; *found 0 when absent. */
struct eng_attr *eng_attr_get(struct eng_node *n, const char *name);
/* auto_pad: NOTSET (also when absent), VALID, SAME_UPPER or SAME_LOWER; refused with explicit pads. */
VEIL_RESULT eng_attr_auto_pad(struct eng_node *n, enum eng_auto_pad *out);
/* Refuses the first attribute no parse function asked for, naming it. */
VEIL_RESULT eng_attr_check_used(const struct eng_node *n);

/* ---- operator families ----------------------------------------------------------------------------------- */

struct eng_op_info {
    const char *name;
    uint32_t min_inputs, max_inputs;
    VEIL_RESULT (*parse)(struct eng_graph *g, struct eng_node *n);
    VEIL_RESULT (*infer)(struct eng_graph *g, struct eng_node *n);
    VEIL_RESULT (*build)(struct veil_engine *e, struct eng_node *n);   /* NULL: no primitive (a view) */
    VEIL_RESULT (*fold)(struct eng_graph *g, struct eng_node *n, struct eng_value *out); /* NULL: never folded */
};

const struct eng_op_info *eng_op_info(enum eng_op op);
/* Maps an ONNX op_type to the engine's operator; -1 when unsupported. */
int eng_op_lookup(const uint8_t *name, size_t size);

/* op_conv.c */
VEIL_RESULT eng_conv_parse(struct eng_graph *g, struct eng_node *n);
void eng_auto_pads(enum eng_auto_pad mode, int64_t in, int64_t stride, int64_t extent, int64_t *begin, int64_t *end);
VEIL_RESULT eng_conv_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_conv_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_bn_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_bn_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_bn_build(struct veil_engine *e, struct eng_node *n);
/* op_pool.c */
VEIL_RESULT eng_pool_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_pool_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_pool_build(struct veil_engine *e, struct eng_node *n);
/* op_eltwise.c: Relu, Clip, Sigmoid, HardSigmoid, HardSwish, Softmax */
VEIL_RESULT eng_eltwise_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_same_shape_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_eltwise_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_softmax_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_softmax_build(struct veil_engine *e, struct eng_node *n);
/* op_binary.c: binary operations on oneDNN (Add, Sub, Mul, Div, Max, Min, comparisons) */
VEIL_RESULT eng_binary_build(struct veil_engine *e, struct eng_node *n);
/* op_gemm.c: Gemm, MatMul */
VEIL_RESULT eng_gemm_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_gemm_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_gemm_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_matmul_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_matmul_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_matmul_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_einsum_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_einsum_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_einsum_build(struct veil_engine *e, struct eng_node *n);
/* op_tensor.c: Flatten, Reshape, Identity, Constant, Concat */
VEIL_RESULT eng_flatten_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_flatten_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_reshape_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_reshape_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_view_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_dropout_parse(struct eng_graph *g, struct eng_node *n);
/* op_scan.c: CumSum and GatherND (their folds in fold.c share these rules) */
/* A shape as [outer, dims[axis], inner] around axis: the products of the dims before and after it. */
void eng_axis_split(const struct eng_shape *s, int64_t axis, int64_t *outer, int64_t *inner);
VEIL_RESULT eng_cumsum_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_cumsum_axis(const struct eng_graph *g, struct eng_node *n, uint32_t rank);
VEIL_RESULT eng_cumsum_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_cumsum_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_fold_cumsum(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_gather_nd_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_gather_nd_shape(const struct eng_node *n, const struct eng_shape *data, const struct eng_shape *idx,
                                struct eng_shape *out, uint32_t *depth);
VEIL_RESULT eng_gather_nd_positions(const struct eng_node *n, const struct eng_shape *data, const int64_t *idx,
                                    size_t tuples, uint32_t m, int64_t *pos);
VEIL_RESULT eng_gather_nd_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_gather_nd_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_fold_gather_nd(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_resize_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_resize_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_resize_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_fold_resize(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
/* ONNX's Resize of k->in into k->out over H and W (any mode the parser takes), each plane on its own. */
void eng_run_resize(const struct eng_kernel *k, const float *in, float *out);
VEIL_RESULT eng_instnorm_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_instnorm_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_instnorm_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_rnn_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_rnn_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_rnn_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_select_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_select_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_select_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_gather_elements_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_gather_elements_build(struct veil_engine *e, struct eng_node *n);
/* The kernels of ArgMax / ArgMin (out: the indices) and TopK (out: the values, then the indices). */
void eng_run_argmax(const struct eng_kernel *k, const float *in, float *out);
/* ReduceMax / ReduceMin (select_min) of k->in into k->out (the same rank, 1 along the reduced dims). */
void eng_run_reduce_extreme(const struct eng_kernel *k, const float *in, float *out);
VEIL_RESULT eng_run_topk(const struct eng_kernel *k, const float *in, float *values, float *indices);
/* GatherElements: out (the indices' shape) from data; fails on an index out of range. */
/* GatherND by computed indices: count tuples of dim coordinates into data (k->in), slices of inner values. */
VEIL_RESULT eng_run_gather_nd(const struct eng_kernel *k, const float *data, const float *idx, float *out,
                              const struct eng_node *n);
VEIL_RESULT eng_run_gather_elements(const struct eng_kernel *k, const float *data, const float *idx, float *out,
                                    const struct eng_node *n);
VEIL_RESULT eng_noattr_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_constant_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_concat_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_concat_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_concat_build(struct veil_engine *e, struct eng_node *n);

/* fold.c: parse functions of the fold-only operators, and the evaluator */
VEIL_RESULT eng_fold_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_pad_parse(struct eng_graph *g, struct eng_node *n);
/* Refuses a fold-only operator on a computed tensor. */
VEIL_RESULT eng_fold_only_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_pad_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_pad_build(struct veil_engine *e, struct eng_node *n);
/* Whether n can be evaluated now: every input constant, or a Shape of a tensor with a known shape. */
int eng_fold_ready(const struct eng_graph *g, const struct eng_node *n);
/* Evaluates n into constant outputs (views share data; computed tensors are owned), or refuses it. */
VEIL_RESULT eng_fold_eval(struct eng_graph *g, struct eng_node *n);
/* The fold rules of the operator table (ops.c): each computes out (the node's first output) from constants. */
VEIL_RESULT eng_fold_shape_op(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_gather(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_squeeze(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_constant_of_shape(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_slice(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_transpose(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_concat(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_cast(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_castlike_type(const struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_fold_elementwise(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_expand(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_flatten(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_split(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_identity(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_reshape(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_range(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_gather_elements(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_scatter_nd(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_trilu(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_matmul(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_activation(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_reduce(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_layernorm(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_softmax(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
/* A folded output's storage: shape s of dtype, at most cap elements (VEIL_ERR_LIMIT beyond). */
VEIL_RESULT eng_fold_alloc(const struct eng_node *n, struct eng_value *out, int32_t dtype, const struct eng_shape *s,
                           uint64_t cap);
VEIL_RESULT eng_fold_quantize(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
VEIL_RESULT eng_fold_dequantize(struct eng_graph *g, struct eng_node *n, struct eng_value *out);
/* op_eltwise.c: QuantizeLinear and DequantizeLinear on computed tensors */
VEIL_RESULT eng_quant_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_quant_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_quant_range(const struct eng_node *n, int32_t dtype, int64_t *lo, int64_t *hi);
/* engine.c: 1 when oneDNN runs AVX-512 (or AMX) kernels here; 0 on AVX2 and older. */
int eng_isa_avx512(void);
/* op_gemm_int8.c: a MatMul or Gemm reading a QuantizeLinear's integers (plan.c, mark_int8) on oneDNN's int8 kernels */
VEIL_RESULT eng_gemm_int8_build(struct veil_engine *e, struct eng_node *n);
/* op_kernel.c: a QuantizeLinear chain (with its DequantizeLinear, fused) as a kernel in the tensor's own layout */
VEIL_RESULT eng_quant_build(struct veil_engine *e, struct eng_node *n);
/* Reshape's target shape for an input of shape in (shared by the view and the folder). */
VEIL_RESULT eng_reshape_target(const struct eng_node *n, const struct eng_shape *in, const struct eng_value *shape,
                               struct eng_shape *out);

/* op_norm.c: LayerNormalization, ReduceMean, ReduceSum, ReduceMax, ReduceL2 */
VEIL_RESULT eng_layernorm_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_layernorm_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_layernorm_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_reduce_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_reduce_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_reduce_build(struct veil_engine *e, struct eng_node *n);
/* The input's shape with the reduced dims set to 1 (kept), and the output's (kept, or without them). */
VEIL_RESULT eng_reduce_shapes(const struct eng_graph *g, const struct eng_node *n, struct eng_shape *kept,
                              struct eng_shape *out);

/* op_kernel.c: the engine's own kernels, and the operators built on them or on reorders */
VEIL_RESULT eng_step_kernel(struct veil_engine *e, const struct eng_node *n, const struct eng_kernel *k,
                            const int *inputs, int output);
/* The same, for a kernel writing two outputs of the same shape (TopK). */
VEIL_RESULT eng_step_kernel2(struct veil_engine *e, const struct eng_node *n, const struct eng_kernel *k,
                             const int *inputs, int output, int second);
/* Runs a kernel step on its buffers; fails only on an out-of-range gather index or out of memory. */
/* An index read at run time (a float holding an integer) into [0, dim), negative ones counted from the end;
 * VEIL_ERR_ARG naming n when it is out of [-dim, dim) or not a whole number. */
VEIL_RESULT eng_kernel_index(const struct eng_node *n, float f, int64_t dim, int64_t *at);
VEIL_RESULT eng_kernel_run(const struct eng_step *s, const struct eng_node *n);
/* Per-input element strides of shape in broadcast (numpy rules) to out. */
void eng_broadcast_strides(const struct eng_shape *in, const struct eng_shape *out, int64_t *strides);
VEIL_RESULT eng_broadcast_shape(const struct eng_node *n, const struct eng_shape *a, const struct eng_shape *b,
                                struct eng_shape *out);
/* Evaluates one element-wise operation on doubles (shared by the kernels and the load-time folder). */
double eng_kop_eval(enum eng_kop op, double a, double b, double c);
enum eng_kop eng_node_kop(const struct eng_node *n);
VEIL_RESULT eng_elementwise_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_gelu_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_elementwise_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_elementwise_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_transpose_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_shape_op_infer(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_gather_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_slice_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_expand_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_split_parse(struct eng_graph *g, struct eng_node *n);
VEIL_RESULT eng_split_build(struct veil_engine *e, struct eng_node *n);
VEIL_RESULT eng_cast_build(struct veil_engine *e, struct eng_node *n);
/* fold.c: the output shape a fold-capable shape operator (Squeeze, Unsqueeze, Slice, Gather, Transpose, Expand,
 * Split, Cast) gives an input of known shape, shared by the folder and the run-time builders */
VEIL_RESULT eng_fold_shape(struct eng_graph *g, struct eng_node *n, uint32_t output, struct eng_shape *out,
                           struct eng_kernel *k);

/* ---- plan.c ---------------------------------------------------------------------------------------------- */

/* Topological order, constants, shapes and fusion, for a parsed graph. */
VEIL_RESULT eng_plan_graph(struct eng_graph *g, uint64_t batch, uint64_t symbolic_size,
                           const struct veil_engine_shape *shapes, size_t shape_count);
/* Liveness and offsets of every buffer, after the steps are built; *arena_size receives the total. */
VEIL_RESULT eng_plan_memory(struct veil_engine *e, size_t *arena_size);
/* Follows aliases to the value that owns the buffer. */
int eng_value_root(const struct eng_graph *g, int v);
/* Bytes of a shape of float32, checked against the activation limit. */
VEIL_RESULT eng_shape_bytes(const struct eng_shape *s, const char *what, size_t *out);
/* Number of elements of a constant value, checked. */
size_t eng_shape_count(const struct eng_shape *s);
/* A float32 constant input of n (its data and element count), or an error naming the node. */
VEIL_RESULT eng_const_floats(const struct eng_graph *g, const struct eng_node *n, uint32_t input,
                             const float **data, size_t *count);
/* The node's label for messages: "Conv node 'name'". */
const char *eng_node_label(const struct eng_node *n, char *buf, size_t size);
/* The value (input i of n) as an activation with a known shape, or an error. */
VEIL_RESULT eng_input_act(const struct eng_graph *g, const struct eng_node *n, uint32_t i,
                          const struct eng_value **out);

/* ---- exec.c ---------------------------------------------------------------------------------------------- */

#define ENG_GUARD_DNNL(call, node, what)                                                                       \
    do {                                                                                                       \
        dnnl_status_t eng_dnnl_s_ = (call);                                                                    \
        if (eng_dnnl_s_ != dnnl_success)                                                                       \
            return eng_dnnl_error(eng_dnnl_s_, (node), (what), __FILE__, __LINE__);                            \
    } while (0)

struct veil_result eng_dnnl_error(dnnl_status_t s, const struct eng_node *node, const char *what,
                                  const char *file, int line);
/* A dense row-major descriptor of shape s (rank 0 becomes {1}). */
VEIL_RESULT eng_md_plain(dnnl_memory_desc_t *md, const struct eng_shape *s);
int eng_md_is_plain(const dnnl_memory_desc_t *md);
/* The value's buffer as the node's input in layout want (NULL: whatever it is in): the value itself, or a
 * hidden value that a reorder step inserted now fills. *out receives the value to read. */
VEIL_RESULT eng_input_as(struct veil_engine *e, int value, const dnnl_memory_desc_t *want, int *out);
/* A constant as a computed value: a new plain value a kernel step fills from the engine's copy of it on every run
 * (a constant graph output; a constant operand where an operator reads only computed ones). */
VEIL_RESULT eng_const_value(struct veil_engine *e, const struct eng_node *n, int v, int *out);
/* A hidden value that views value's buffer with another descriptor (same bytes). */
VEIL_RESULT eng_view_value(struct veil_engine *e, int value, const dnnl_memory_desc_t *md, int *out);
/* Sets the layout of an activation value (written once, by its producer). */
VEIL_RESULT eng_value_set_md(struct veil_engine *e, int value, const dnnl_memory_desc_t *md);
/* Starts a step for a primitive created from pd; the step keeps the primitive. */
VEIL_RESULT eng_step_new(struct veil_engine *e, const struct eng_node *n, const_dnnl_primitive_desc_t pd,
                         struct eng_step **out);
VEIL_RESULT eng_step_value(struct veil_engine *e, struct eng_step *s, int arg, int value, int writes);
/* The same, with the value's bytes described by md (a descriptor of the same size, e.g. another shape). */
VEIL_RESULT eng_step_value_as(struct veil_engine *e, struct eng_step *s, int arg, int value, int writes,
                              const dnnl_memory_desc_t *md);
/* Starts a step that runs the engine's kernel k (copied). */
VEIL_RESULT eng_step_kernel_new(struct veil_engine *e, const struct eng_node *n, const struct eng_kernel *k,
                                struct eng_step **out);
/* A step for a primitive without post-ops, from its operation descriptor; *step is its index in e->steps (the
 * array may move as steps are added, so callers keep the index, not a pointer). */
VEIL_RESULT eng_step_plain(struct veil_engine *e, const struct eng_node *n, const void *desc, const char *what,
                           size_t *step);
/* Same, with eltwise post-ops (a chain after the primitive). */
VEIL_RESULT eng_step_posts(struct veil_engine *e, const struct eng_node *n, const void *desc, const char *what,
                           const struct eng_post *posts, uint32_t post_count, size_t *step);
/* Copies size bytes of plain data (layout src_md) into engine memory in layout dst_md (a reorder run once). */
VEIL_RESULT eng_step_const(struct veil_engine *e, struct eng_step *s, int arg, const dnnl_memory_desc_t *dst_md,
                           const dnnl_memory_desc_t *src_md, const void *src);
/* int8: a float32 bias as oneDNN 2.x reads it beside output scales (dst = scale * (sum + bias)): n values
 * (bias[0] for each when count is 1) times beta, each divided by scales[c], bound to step; the scaled copy is wiped. */
VEIL_RESULT eng_step_int8_bias(struct veil_engine *e, size_t step, const dnnl_memory_desc_t *md, const float *bias,
                               size_t count, size_t n, float beta, const float *scales);
/* int8: a run-time zero point (s32) for DNNL_ARG_SRC or DNNL_ARG_DST of step; nothing when *zp is 0. */
VEIL_RESULT eng_step_zero_point(struct veil_engine *e, size_t step, int arg, const int32_t *zp);
/* Engine memory for a constant in layout md, bound to arg of s; *out receives it for the caller to fill. */
VEIL_RESULT eng_step_const_new(struct veil_engine *e, struct eng_step *s, int arg, const dnnl_memory_desc_t *md,
                               void **out);
/* A primitive attribute with the user scratchpad and, when given, post-ops. */
VEIL_RESULT eng_attr_new(const struct eng_node *n, const struct eng_post *post, uint32_t count,
                         dnnl_primitive_attr_t *out);
/* Allocates secure memory owned by the engine. */
VEIL_RESULT eng_const_alloc(struct veil_engine *e, size_t size, void **out);
/* A constant argument used in place: src (64-byte aligned, in layout md) must outlive the engine. */
/* Whether a constant is a large tensor of the lending model's, unchanged and aligned: one a step may read in place
 * (enum eng_borrow; the caller also checks the layout the step reads). */
int eng_lendable(const struct veil_engine *e, const struct eng_value *v);
VEIL_RESULT eng_step_borrow(struct veil_engine *e, struct eng_step *s, int arg, const dnnl_memory_desc_t *md,
                            const void *src);
/* Builds every step; then plans memory and binds the buffers. */
VEIL_RESULT eng_exec_build(struct veil_engine *e);
VEIL_RESULT eng_exec_run(struct veil_engine *e, const float *const *inputs, float *const *outputs);
void eng_exec_cleanup(struct veil_engine *e);

#endif
