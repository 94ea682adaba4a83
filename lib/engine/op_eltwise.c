/* SPDX-License-Identifier: Apache-2.0 */
/* Element-wise activations (Relu, Clip, Sigmoid, HardSigmoid, HardSwish) and Softmax.
 * Each activation is a chain of oneDNN eltwise algorithms (HardSigmoid = clip(alpha * x + beta, 0, 1)), which
 * a preceding Conv may take as post-ops (plan.c); otherwise they run as eltwise primitives, in place after the
 * first. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

/* Selu = gamma * elu_alpha(x); Celu = alpha * elu_1(x / alpha); Softplus = log(1 + e^x) (oneDNN's soft_relu). */
static VEIL_RESULT more_activations(struct eng_node *n)
{
    float alpha = 0, gamma = 0;
    char label[160];
    switch (n->op) {
    case OP_LEAKYRELU:
        VEIL_GUARD(eng_attr_float(n, "alpha", 0.01f, &alpha));
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_relu, .alpha = alpha};
        break;
    case OP_ELU:
        VEIL_GUARD(eng_attr_float(n, "alpha", 1.0f, &alpha));
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_elu, .alpha = alpha};
        break;
    case OP_SELU:
        VEIL_GUARD(eng_attr_float(n, "alpha", 1.67326319217681884765625f, &alpha));
        VEIL_GUARD(eng_attr_float(n, "gamma", 1.05070102214813232421875f, &gamma));
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_elu, .alpha = alpha};
        n->elt[1] = (struct eng_post){.alg = dnnl_eltwise_linear, .alpha = gamma};
        n->elt_count = 2;
        break;
    case OP_CELU:
        VEIL_GUARD(eng_attr_float(n, "alpha", 1.0f, &alpha));
        VEIL_ENSURE(alpha != 0 && isfinite(alpha), VEIL_ERR_ONNX, "%s: alpha must be finite and not 0",
                    eng_node_label(n, label, sizeof label));
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_linear, .alpha = 1.0f / alpha};
        n->elt[1] = (struct eng_post){.alg = dnnl_eltwise_elu, .alpha = 1.0f};
        n->elt[2] = (struct eng_post){.alg = dnnl_eltwise_linear, .alpha = alpha};
        n->elt_count = alpha == 1.0f ? 1 : 3;
        if (alpha == 1.0f)
            n->elt[0] = n->elt[1];
        break;
    case OP_SOFTPLUS: n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_soft_relu}; break;
    case OP_MISH: n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_mish}; break;
    case OP_ROUND: n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_round}; break;
    default: VEIL_BAIL(VEIL_ERR_INTERNAL, "not an eltwise operator");
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_eltwise_parse(struct eng_graph *g, struct eng_node *n)
{
    float alpha = 0, beta = 0;
    n->elt_count = 1;
    switch (n->op) {
    case OP_RELU: n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_relu}; break;
    case OP_SIGMOID: n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_logistic}; break;
    case OP_HARDSWISH: n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_hardswish}; break;
    case OP_HARDSIGMOID:
        VEIL_GUARD(eng_attr_float(n, "alpha", 0.2f, &alpha));
        VEIL_GUARD(eng_attr_float(n, "beta", 0.5f, &beta));
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_linear, .alpha = alpha, .beta = beta};
        n->elt[1] = (struct eng_post){.alg = dnnl_eltwise_clip, .alpha = 0, .beta = 1};
        n->elt_count = 2;
        break;
    case OP_CLIP:
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_clip, .alpha = -FLT_MAX, .beta = FLT_MAX};
        if (g->opset < 11) {
            VEIL_GUARD(eng_attr_float(n, "min", -FLT_MAX, &n->elt[0].alpha));
            VEIL_GUARD(eng_attr_float(n, "max", FLT_MAX, &n->elt[0].beta));
        }
        break;
    default: return more_activations(n);
    }
    return VEIL_RESULT_OK;
}

/* Clip (opset >= 11) takes min and max as optional scalar constant inputs. */
static VEIL_RESULT clip_bound(struct eng_graph *g, struct eng_node *n, uint32_t input, float *out)
{
    if (input >= n->input_count || n->inputs[input] < 0)
        return VEIL_RESULT_OK;
    const float *p = NULL;
    size_t count = 0;
    char label[160];
    const struct eng_value *v = &g->values[n->inputs[input]];
    if (v->kind == VAL_CONST && v->dtype == VEIL_ONNX_INT64 && v->size == 8) { /* an integer Clip's bound */
        int64_t b;
        memcpy(&b, v->data, 8);
        *out = (float)b;
        return VEIL_RESULT_OK;
    }
    if (v->kind == VAL_CONST && v->dtype == VEIL_ONNX_INT32 && v->size == 4) {
        int32_t b;
        memcpy(&b, v->data, 4);
        *out = (float)b;
        return VEIL_RESULT_OK;
    }
    VEIL_GUARD(eng_const_floats(g, n, input, &p, &count));
    VEIL_ENSURE(count == 1 && g->values[n->inputs[input]].shape.rank <= 1, VEIL_ERR_ONNX, "%s: min and max must "
                "be scalars", eng_node_label(n, label, sizeof label));
    VEIL_ENSURE(p[0] == p[0], VEIL_ERR_ONNX, "%s: min or max is NaN", eng_node_label(n, label, sizeof label));
    *out = p[0];
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_same_shape_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    char label[160];
    VEIL_ENSURE(n->op == OP_CLIP || n->input_count == 1, VEIL_ERR_ONNX, "%s takes one input",
                eng_node_label(n, label, sizeof label));
    if (n->op == OP_CLIP) {
        VEIL_ENSURE(g->opset >= 11 || n->input_count == 1, VEIL_ERR_ONNX, "%s: Clip before opset 11 takes one input",
                    eng_node_label(n, label, sizeof label));
        VEIL_GUARD(clip_bound(g, n, 1, &n->elt[0].alpha));
        VEIL_GUARD(clip_bound(g, n, 2, &n->elt[0].beta));
        if (n->elt[0].alpha > n->elt[0].beta) /* ONNX: min(max(x, min), max), which is max everywhere */
            n->elt[0].alpha = n->elt[0].beta;
    }
    g->values[n->outputs[0]].shape = x->shape;
    if (n->op == OP_CLIP || n->op == OP_RELU) /* defined on integers too: an integer stays one */
        g->values[n->outputs[0]].dtype = x->dtype;
    return VEIL_RESULT_OK;
}

/* Binds a one-input step's source and destination; the destination takes md unless it already has a layout. */
static VEIL_RESULT bind_src_dst(struct veil_engine *e, size_t step, int src, int dst, const dnnl_memory_desc_t *md)
{
    if (!e->g.values[dst].has_md)
        VEIL_GUARD(eng_value_set_md(e, dst, md));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC, src, 0));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, dst, 1);
}

/* A 1-D descriptor as the same bytes in one row: oneDNN 2.6 runs a 1-D eltwise with post-ops on its reference
 * kernel, which reports success and never writes the destination (the output was whatever the arena held). */
static VEIL_RESULT as_row(const struct eng_node *n, const dnnl_memory_desc_t *md, dnnl_memory_desc_t *row)
{
    const dnnl_dims_t dims = {1, md->dims[0]};
    const dnnl_dims_t strides = {md->format_desc.blocking.strides[0] * md->padded_dims[0],
                                 md->format_desc.blocking.strides[0]};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_strides(row, 2, dims, md->data_type, strides), n, "descriptor");
    row->offset0 = md->offset0;
    return VEIL_RESULT_OK;
}

/* ops[0] as an eltwise primitive, the rest of the chain as its post-ops: one pass over the tensor. */
static VEIL_RESULT eltwise_step(struct veil_engine *e, const struct eng_node *n, const struct eng_post *ops,
                                uint32_t count, int src, int dst)
{
    const dnnl_memory_desc_t md = e->g.values[src].md;
    int one_d = md.ndims == 1 && md.format_kind == dnnl_blocked && count > 1;
    dnnl_memory_desc_t run = md;
    if (one_d)
        VEIL_GUARD(as_row(n, &md, &run));
    dnnl_eltwise_desc_t desc;
    ENG_GUARD_DNNL(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_inference, ops[0].alg, &run, ops[0].alpha,
                                                  ops[0].beta), n, "eltwise setup");
    size_t step = 0;
    VEIL_GUARD(eng_step_posts(e, n, &desc, "eltwise", ops + 1, count - 1, &step));
    if (!one_d)
        return bind_src_dst(e, step, src, dst, &md);
    if (!e->g.values[dst].has_md)
        VEIL_GUARD(eng_value_set_md(e, dst, &md));
    VEIL_ENSURE(e->g.values[dst].md.ndims == 1, VEIL_ERR_INTERNAL, "a 1-D eltwise into a tensor of another rank");
    VEIL_GUARD(eng_step_value_as(e, &e->steps[step], DNNL_ARG_SRC, src, 0, &run));
    return eng_step_value_as(e, &e->steps[step], DNNL_ARG_DST, dst, 1, &run);
}

VEIL_RESULT eng_eltwise_build(struct veil_engine *e, struct eng_node *n)
{
    VEIL_GUARD(eltwise_step(e, n, n->elt, n->elt_count, n->inputs[0], n->out));
    return VEIL_RESULT_OK;
}

/* ---- QuantizeLinear, DequantizeLinear ---------------------------------------------------------------------- */

/* QDQ models (onnxruntime's quantize_static): weights and biases are DequantizeLinear of integer constants, folded
 * at load (fold.c); activations pass through QuantizeLinear then DequantizeLinear with one scale and zero point per
 * tensor. On a computed tensor both are eltwise chains, integers held as float32 (exact) like every integer tensor
 * the engine computes: Q = clip(round(x / s) + zp, qmin, qmax), round half to even; DQ = (x - zp) * s. So a Q and
 * its DQ fuse into the Conv before them as post-ops, like an activation, or run as one eltwise step. */

VEIL_RESULT eng_quant_range(const struct eng_node *n, int32_t dtype, int64_t *lo, int64_t *hi)
{
    switch (dtype) {
    case VEIL_ONNX_UINT8: *lo = 0, *hi = 255; return VEIL_RESULT_OK;
    case VEIL_ONNX_INT8: *lo = -128, *hi = 127; return VEIL_RESULT_OK;
    case VEIL_ONNX_UINT16: *lo = 0, *hi = 65535; return VEIL_RESULT_OK;
    case VEIL_ONNX_INT16: *lo = -32768, *hi = 32767; return VEIL_RESULT_OK;
    default: break;
    }
    char label[160];
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "%s: quantized type %" PRId32 " is not supported (UINT8, INT8, UINT16, INT16 "
              "are)", eng_node_label(n, label, sizeof label), dtype);
}

VEIL_RESULT eng_quant_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    int64_t saturate = 1, block = 0;
    VEIL_GUARD(eng_attr_int(n, "axis", 1, &n->axis));
    VEIL_GUARD(eng_attr_int(n, "block_size", 0, &block));
    if (n->op == OP_QUANTIZE)
        VEIL_GUARD(eng_attr_int(n, "saturate", 1, &saturate)); /* applies to float8 outputs only */
    char label[160];
    VEIL_ENSURE(block == 0, VEIL_ERR_UNSUPPORTED, "%s: blocked quantization (block_size) is not supported",
                eng_node_label(n, label, sizeof label));
    return VEIL_RESULT_OK;
}

/* A scalar float32 constant scale and an optional scalar constant zero point: (s, zp, zp's type). */
static VEIL_RESULT quant_scalars(struct eng_graph *g, struct eng_node *n, float *s, float *zp, int32_t *type)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    const struct eng_value *sv = &g->values[n->inputs[1]];
    VEIL_ENSURE(sv->kind == VAL_CONST && sv->dtype == VEIL_ONNX_FLOAT && eng_shape_count(&sv->shape) == 1,
                VEIL_ERR_UNSUPPORTED, "%s: a computed tensor is quantized with one float32 constant scale only (not "
                "per axis)", label);
    memcpy(s, sv->data, 4);
    /* an infinite scale dequantizes every value to NaN (0 x inf): a quantizer calibrated on a tensor that reaches
     * float32's limits (an attention mask's minimum) writes one; onnxruntime runs it, on garbage */
    VEIL_ENSURE(!isinf(*s), VEIL_ERR_ONNX, "%s: the scale is infinite, so every value would dequantize to NaN (a "
                "quantizer calibrated on a tensor reaching float32's limits, such as an attention mask, writes this: "
                "calibrate without padded masks, or leave that tensor unquantized)", label);
    VEIL_ENSURE(isfinite(*s) && *s > 0, VEIL_ERR_ONNX, "%s: the scale must be positive and finite", label);
    *zp = 0;
    *type = VEIL_ONNX_UINT8;
    if (n->input_count < 3 || n->inputs[2] < 0)
        return VEIL_RESULT_OK;
    const struct eng_value *z = &g->values[n->inputs[2]];
    VEIL_ENSURE(z->kind == VAL_CONST && eng_shape_count(&z->shape) == 1, VEIL_ERR_UNSUPPORTED,
                "%s: the zero point must be one constant", label);
    int64_t lo = 0, hi = 0;
    VEIL_GUARD(eng_quant_range(n, z->dtype, &lo, &hi));
    *type = z->dtype;
    switch (z->dtype) {
    case VEIL_ONNX_INT8: *zp = (float)(int8_t)z->data[0]; break;
    case VEIL_ONNX_UINT8: *zp = (float)z->data[0]; break;
    case VEIL_ONNX_INT16: { int16_t v; memcpy(&v, z->data, 2); *zp = v; break; }
    default: { uint16_t v; memcpy(&v, z->data, 2); *zp = v; break; }
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_quant_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    float s = 0, zp = 0;
    int32_t type = 0;
    VEIL_GUARD(quant_scalars(g, n, &s, &zp, &type));
    if (n->op == OP_QUANTIZE) {
        int64_t lo = 0, hi = 0;
        VEIL_GUARD(eng_quant_range(n, type, &lo, &hi));
        n->alpha = s; /* the exact scale, for the kernel's x / s (op_kernel.c) */
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_linear, .alpha = 1.0f / s, .beta = zp};
        n->elt[1] = (struct eng_post){.alg = dnnl_eltwise_round};
        n->elt[2] = (struct eng_post){.alg = dnnl_eltwise_clip, .alpha = (float)lo, .beta = (float)hi};
        n->elt_count = 3;
    } else {
        n->elt[0] = (struct eng_post){.alg = dnnl_eltwise_linear, .alpha = 1.0f, .beta = -zp}; /* exact */
        n->elt[1] = (struct eng_post){.alg = dnnl_eltwise_linear, .alpha = s, .beta = 0.0f};  /* one rounding */
        n->elt_count = 2;
    }
    g->values[n->outputs[0]].shape = x->shape;
    return VEIL_RESULT_OK;
}

/* ---- Softmax --------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_softmax_parse(struct eng_graph *g, struct eng_node *n)
{
    return eng_attr_int(n, "axis", g->opset < 13 ? 1 : -1, &n->axis);
}

/* Softmax or LogSoftmax of a constant (a DETR decoder's first self-attention over its constant queries), in double:
 * along axis, or (opset < 13) over everything from axis on. */
VEIL_RESULT eng_fold_softmax(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const float *in = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(g, n, 0, &in, &count));
    const struct eng_shape s = g->values[n->inputs[0]].shape;
    int64_t rank = s.rank, axis = n->axis < 0 ? n->axis + rank : n->axis, outer = 1, dim = 1, inner = 1;
    char label[160];
    VEIL_ENSURE(rank >= 1 && axis >= 0 && axis < rank, VEIL_ERR_ONNX, "%s: axis %" PRId64 " is out of range",
                eng_node_label(n, label, sizeof label), n->axis);
    if (g->opset < 13) {
        for (int64_t i = 0; i < rank; i++)
            *(i < axis ? &outer : &dim) *= s.dims[i];
    } else {
        eng_axis_split(&s, axis, &outer, &inner);
        dim = s.dims[axis];
    }
    VEIL_GUARD(eng_fold_alloc(n, out, VEIL_ONNX_FLOAT, &s, count));
    float *y = (float *)(void *)out->owned;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *x = in + o * dim * inner + i;
            double max = -INFINITY, sum = 0;
            for (int64_t j = 0; j < dim; j++)
                max = x[j * inner] > max ? x[j * inner] : max;
            for (int64_t j = 0; j < dim; j++)
                sum += exp((double)x[j * inner] - max);
            for (int64_t j = 0; j < dim; j++) {
                double v = (double)x[j * inner] - max;
                y[o * dim * inner + j * inner + i] = (float)(n->op == OP_LOGSOFTMAX ? v - log(sum) : exp(v) / sum);
            }
        }
    return VEIL_RESULT_OK;
}

/* Before opset 13, Softmax works on the input flattened to 2-D at axis; from 13, along axis alone. The first
 * form equals the second when axis is the last one; otherwise the input is viewed as 2-D (row-major). */
VEIL_RESULT eng_softmax_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_value *x = &e->g.values[n->inputs[0]];
    int64_t rank = x->shape.rank, axis = n->axis < 0 ? n->axis + rank : n->axis;
    char label[160];
    VEIL_ENSURE(rank >= 1 && axis >= 0 && axis < rank, VEIL_ERR_ONNX, "%s: axis %" PRId64 " is out of range",
                eng_node_label(n, label, sizeof label), n->axis);
    int src = n->inputs[0], dst = n->out;
    dnnl_memory_desc_t md = x->md;
    if (e->g.opset < 13 && axis != rank - 1) {
        struct eng_shape flat = {.rank = 2, .dims = {1, 1}};
        for (int64_t i = 0; i < rank; i++)
            flat.dims[i < axis ? 0 : 1] *= x->shape.dims[i];
        dnnl_memory_desc_t plain, out_plain;
        VEIL_GUARD(eng_md_plain(&plain, &x->shape));
        VEIL_GUARD(eng_md_plain(&md, &flat));
        VEIL_GUARD(eng_md_plain(&out_plain, &x->shape));
        VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain, &src));
        VEIL_GUARD(eng_view_value(e, src, &md, &src));
        VEIL_GUARD(eng_value_set_md(e, n->out, &out_plain));
        VEIL_GUARD(eng_view_value(e, n->out, &md, &dst));
        axis = 1;
    }
    dnnl_softmax_desc_t desc; /* dnnl_logsoftmax_desc_t is the same type */
    ENG_GUARD_DNNL(n->op == OP_LOGSOFTMAX ? dnnl_logsoftmax_forward_desc_init(&desc, dnnl_forward_inference, &md,
                                                                              (int)axis)
                                          : dnnl_softmax_forward_desc_init(&desc, dnnl_forward_inference, &md,
                                                                           (int)axis), n, "softmax setup");
    size_t step = 0;
    VEIL_GUARD(eng_step_plain(e, n, &desc, "softmax", &step));
    return bind_src_dst(e, step, src, dst, &md);
}
