/* SPDX-License-Identifier: Apache-2.0 */
/* The operator table: one row per ONNX operator the engine knows, in the columns
 *
 *   name        the ONNX op_type (default domain)
 *   inputs      the least and most inputs a node may have
 *   parse       reads and checks the node's attributes at load             (op_*.c, fold.c)
 *   infer       the shape rule: output shapes from input shapes              (op_*.c, fold.c)
 *   build       makes the node's oneDNN primitive or kernel step; NULL: a view or a fold-only operator
 *   fold        the fold rule: evaluates the node when every input is a constant (fold.c); NULL: never folded
 *
 * Adding an operator is a row here, an OP_ value (internal.h) and its functions in one op_*.c file. */
#include <string.h>

#include "engine/internal.h"

static const struct eng_op_info op_table[OP_COUNT] = {
    [OP_CONV] = {"Conv", 2, 3, eng_conv_parse, eng_conv_infer, eng_conv_build, NULL},
    [OP_CONVTRANSPOSE] = {"ConvTranspose", 2, 3, eng_conv_parse, eng_conv_infer, eng_conv_build, NULL},
    [OP_BATCHNORM] = {"BatchNormalization", 5, 5, eng_bn_parse, eng_bn_infer, eng_bn_build, NULL},
    [OP_RELU] = {"Relu", 1, 1, eng_eltwise_parse, eng_same_shape_infer, eng_eltwise_build, eng_fold_activation},
    [OP_CLIP] = {"Clip", 1, 3, eng_eltwise_parse, eng_same_shape_infer, eng_eltwise_build, eng_fold_activation},
    [OP_SIGMOID] = {"Sigmoid", 1, 1, eng_eltwise_parse, eng_same_shape_infer, eng_eltwise_build, eng_fold_activation},
    [OP_HARDSIGMOID] = {"HardSigmoid", 1, 1, eng_eltwise_parse, eng_same_shape_infer, eng_eltwise_build,
        eng_fold_activation},
    [OP_HARDSWISH] = {"HardSwish", 1, 1, eng_eltwise_parse, eng_same_shape_infer, eng_eltwise_build,
        eng_fold_activation},
    [OP_ADD] = {"Add", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_MUL] = {"Mul", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_MAXPOOL] = {"MaxPool", 1, 1, eng_pool_parse, eng_pool_infer, eng_pool_build, NULL},
    [OP_AVGPOOL] = {"AveragePool", 1, 1, eng_pool_parse, eng_pool_infer, eng_pool_build, NULL},
    [OP_GLOBALAVGPOOL] = {"GlobalAveragePool", 1, 1, eng_pool_parse, eng_pool_infer, eng_pool_build, NULL},
    [OP_FLATTEN] = {"Flatten", 1, 1, eng_flatten_parse, eng_flatten_infer, eng_view_build, eng_fold_flatten},
    [OP_RESHAPE] = {"Reshape", 2, 2, eng_reshape_parse, eng_reshape_infer, eng_view_build, eng_fold_reshape},
    [OP_GEMM] = {"Gemm", 2, 3, eng_gemm_parse, eng_gemm_infer, eng_gemm_build, NULL},
    [OP_MATMUL] = {"MatMul", 2, 2, eng_matmul_parse, eng_matmul_infer, eng_matmul_build, eng_fold_matmul},
    [OP_CONCAT] = {"Concat", 1, VEIL_ENGINE_MAX_NODE_IO, eng_concat_parse, eng_concat_infer, eng_concat_build,
        eng_fold_concat},
    [OP_SOFTMAX] = {"Softmax", 1, 1, eng_softmax_parse, eng_same_shape_infer, eng_softmax_build, eng_fold_softmax},
    [OP_IDENTITY] = {"Identity", 1, 1, eng_noattr_parse, eng_same_shape_infer, eng_view_build, eng_fold_identity},
    [OP_CONSTANT] = {"Constant", 0, 0, eng_constant_parse, NULL, NULL, NULL},
    [OP_SHAPE] = {"Shape", 1, 1, eng_fold_parse, eng_fold_only_infer, NULL, eng_fold_shape_op},
    [OP_GATHER] = {"Gather", 2, 2, eng_fold_parse, eng_shape_op_infer, eng_gather_build, eng_fold_gather},
    [OP_UNSQUEEZE] = {"Unsqueeze", 1, 2, eng_fold_parse, eng_shape_op_infer, eng_cast_build, eng_fold_squeeze},
    [OP_SQUEEZE] = {"Squeeze", 1, 2, eng_fold_parse, eng_shape_op_infer, eng_cast_build, eng_fold_squeeze},
    [OP_CONSTANTOFSHAPE] = {"ConstantOfShape", 1, 1, eng_fold_parse, eng_fold_only_infer, NULL,
        eng_fold_constant_of_shape},
    [OP_SLICE] = {"Slice", 3, 5, eng_fold_parse, eng_shape_op_infer, eng_slice_build, eng_fold_slice},
    [OP_TRANSPOSE] = {"Transpose", 1, 1, eng_fold_parse, eng_shape_op_infer, eng_transpose_build, eng_fold_transpose},
    [OP_CAST] = {"Cast", 1, 1, eng_fold_parse, eng_shape_op_infer, eng_cast_build, eng_fold_cast},
    [OP_CASTLIKE] = {"CastLike", 2, 2, eng_fold_parse, eng_shape_op_infer, eng_cast_build, eng_fold_cast},
    [OP_PAD] = {"Pad", 1, 4, eng_pad_parse, eng_pad_infer, eng_pad_build, NULL},
    [OP_LAYERNORM] = {"LayerNormalization", 2, 3, eng_layernorm_parse, eng_layernorm_infer, eng_layernorm_build,
        eng_fold_layernorm},
    [OP_SUB] = {"Sub", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_DIV] = {"Div", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_POW] = {"Pow", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_MAX] = {"Max", 1, VEIL_ENGINE_MAX_NODE_IO, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_MIN] = {"Min", 1, VEIL_ENGINE_MAX_NODE_IO, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_EQUAL] = {"Equal", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_LESS] = {"Less", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_GREATER] = {"Greater", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_LESSEQ] = {"LessOrEqual", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_GREATEREQ] = {"GreaterOrEqual", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_AND] = {"And", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_OR] = {"Or", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_NOT] = {"Not", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_WHERE] = {"Where", 3, 3, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_MOD] = {"Mod", 2, 2, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_SQRT] = {"Sqrt", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_TANH] = {"Tanh", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_ERF] = {"Erf", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_EXP] = {"Exp", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_NEG] = {"Neg", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_ABS] = {"Abs", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, eng_fold_elementwise},
    [OP_ISNAN] = {"IsNaN", 1, 1, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build,
        eng_fold_elementwise},
    [OP_REDUCEMEAN] = {"ReduceMean", 1, 2, eng_reduce_parse, eng_reduce_infer, eng_reduce_build,
        eng_fold_reduce},
    [OP_EXPAND] = {"Expand", 2, 2, eng_fold_parse, eng_shape_op_infer, eng_expand_build, eng_fold_expand},
    [OP_RANGE] = {"Range", 3, 3, eng_fold_parse, eng_fold_only_infer, NULL, eng_fold_range},
    [OP_SPLIT] = {"Split", 1, 2, eng_split_parse, eng_shape_op_infer, eng_split_build, eng_fold_split},
    [OP_GELU] = {"Gelu", 1, 1, eng_gelu_parse, eng_elementwise_infer, eng_elementwise_build, NULL},
    [OP_GATHERELEMENTS] = {"GatherElements", 2, 2, eng_fold_parse, eng_gather_elements_infer,
        eng_gather_elements_build, eng_fold_gather_elements},
    [OP_SCATTERND] = {"ScatterND", 3, 3, eng_fold_parse, eng_fold_only_infer, NULL, eng_fold_scatter_nd},
    [OP_REDUCESUM] = {"ReduceSum", 1, 2, eng_reduce_parse, eng_reduce_infer, eng_reduce_build,
        eng_fold_reduce},
    [OP_REDUCEMAX] = {"ReduceMax", 1, 2, eng_reduce_parse, eng_reduce_infer, eng_reduce_build,
        eng_fold_reduce},
    [OP_REDUCEL2] = {"ReduceL2", 1, 2, eng_reduce_parse, eng_reduce_infer, eng_reduce_build,
        eng_fold_reduce},
    [OP_TRILU] = {"Trilu", 1, 2, eng_fold_parse, eng_fold_only_infer, NULL, eng_fold_trilu},
    [OP_EINSUM] = {"Einsum", 1, VEIL_ENGINE_MAX_NODE_IO, eng_einsum_parse, eng_einsum_infer, eng_einsum_build, NULL},
    [OP_QUANTIZE] = {"QuantizeLinear", 2, 3, eng_quant_parse, eng_quant_infer, eng_quant_build, eng_fold_quantize},
    [OP_DEQUANTIZE] = {"DequantizeLinear", 2, 3, eng_quant_parse, eng_quant_infer, eng_quant_build,
        eng_fold_dequantize},
#define ACTIVATION(NAME) {NAME, 1, 1, eng_eltwise_parse, eng_same_shape_infer, eng_eltwise_build, eng_fold_activation}
    [OP_LEAKYRELU] = ACTIVATION("LeakyRelu"),
    [OP_ELU] = ACTIVATION("Elu"),
    [OP_SELU] = ACTIVATION("Selu"),
    [OP_CELU] = ACTIVATION("Celu"),
    [OP_SOFTPLUS] = ACTIVATION("Softplus"),
    [OP_MISH] = ACTIVATION("Mish"),
    [OP_ROUND] = ACTIVATION("Round"),
#undef ACTIVATION
#define ELEMENTWISE(NAME, IN) {NAME, IN, IN, eng_elementwise_parse, eng_elementwise_infer, eng_elementwise_build, \
    eng_fold_elementwise}
    [OP_LOG] = ELEMENTWISE("Log", 1), /* oneDNN's log is 3e-6 off near 1: the kernel computes it in double */
    [OP_FLOOR] = ELEMENTWISE("Floor", 1),
    [OP_CEIL] = ELEMENTWISE("Ceil", 1),
    [OP_SIGN] = ELEMENTWISE("Sign", 1),
    [OP_SIN] = ELEMENTWISE("Sin", 1),
    [OP_COS] = ELEMENTWISE("Cos", 1),
    [OP_RECIPROCAL] = ELEMENTWISE("Reciprocal", 1),
    [OP_PRELU] = ELEMENTWISE("PRelu", 2),
#undef ELEMENTWISE
    [OP_CUMSUM] = {"CumSum", 2, 2, eng_cumsum_parse, eng_cumsum_infer, eng_cumsum_build, eng_fold_cumsum},
    [OP_GATHERND] = {"GatherND", 2, 2, eng_gather_nd_parse, eng_gather_nd_infer, eng_gather_nd_build,
        eng_fold_gather_nd},
    [OP_LOGSOFTMAX] = {"LogSoftmax", 1, 1, eng_softmax_parse, eng_same_shape_infer, eng_softmax_build,
        eng_fold_softmax},
    [OP_REDUCEMIN] = {"ReduceMin", 1, 2, eng_reduce_parse, eng_reduce_infer, eng_reduce_build,
        eng_fold_reduce},
    [OP_INSTANCENORM] = {"InstanceNormalization", 3, 3, eng_instnorm_parse, eng_instnorm_infer, eng_instnorm_build,
        NULL},
    [OP_RESIZE] = {"Resize", 1, 4, eng_resize_parse, eng_resize_infer, eng_resize_build, eng_fold_resize},
    /* strided copies (op_shape.c kernel_output; fold.c eng_fold_shape gives each its copy's strides) */
    [OP_TILE] = {"Tile", 2, 2, eng_fold_parse, eng_shape_op_infer, eng_expand_build, eng_fold_expand},
    [OP_DEPTHTOSPACE] = {"DepthToSpace", 1, 1, eng_fold_parse, eng_shape_op_infer, eng_expand_build, eng_fold_expand},
    [OP_SPACETODEPTH] = {"SpaceToDepth", 1, 1, eng_fold_parse, eng_shape_op_infer, eng_expand_build, eng_fold_expand},
    [OP_ARGMAX] = {"ArgMax", 1, 1, eng_select_parse, eng_select_infer, eng_select_build, NULL},
    [OP_ARGMIN] = {"ArgMin", 1, 1, eng_select_parse, eng_select_infer, eng_select_build, NULL},
    [OP_TOPK] = {"TopK", 2, 2, eng_select_parse, eng_select_infer, eng_select_build, NULL},
    [OP_LSTM] = {"LSTM", 3, 8, eng_rnn_parse, eng_rnn_infer, eng_rnn_build, NULL},
    [OP_GRU] = {"GRU", 3, 6, eng_rnn_parse, eng_rnn_infer, eng_rnn_build, NULL},
    [OP_DROPOUT] = {"Dropout", 1, 3, eng_dropout_parse, eng_same_shape_infer, eng_view_build, eng_fold_identity},
};

const struct eng_op_info *eng_op_info(enum eng_op op)
{
    return &op_table[op];
}

const char *eng_op_name(enum eng_op op)
{
    return op_table[op].name;
}

int eng_op_lookup(const uint8_t *name, size_t size)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (strlen(op_table[i].name) == size && memcmp(op_table[i].name, name, size) == 0)
            return i;
    return -1;
}
