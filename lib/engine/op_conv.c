/* SPDX-License-Identifier: Apache-2.0 */
/* Conv and ConvTranspose (2-D, and 1-D through graph.c: groups incl. depthwise, strides, pads or auto_pad,
 * dilations; output_padding and output_shape) with a folded BatchNormalization and post-ops, and
 * BatchNormalization on its own (inference: running statistics). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

/* ---- parameters ------------------------------------------------------------------------------------------ */

/* want values of a 2-D window (2, or 4 pads); a 1-D Conv's (n->conv.one_d) half as many, as the W dim's, H's
 * taking h (kernel, strides, dilations: 1; pads, output_padding: 0). */
static VEIL_RESULT window_ints(struct eng_node *n, const char *name, int64_t *out, uint32_t want, int64_t def,
                               int64_t min, int64_t h)
{
    int64_t v[VEIL_ENGINE_MAX_ATTR_INTS];
    uint32_t count = 0, dims = n->conv.one_d ? 1 : 2;
    char label[160];
    VEIL_GUARD(eng_attr_ints(n, name, v, VEIL_ENGINE_MAX_ATTR_INTS, &count));
    VEIL_ENSURE(count == 0 || count == want / 2 * dims, VEIL_ERR_UNSUPPORTED, "%s: attribute '%s' has %" PRIu32
                " values; this %s has %" PRIu32 " spatial dims, so %" PRIu32 " values (only 1-D and 2-D windows are "
                "supported)", eng_node_label(n, label, sizeof label), name, count, eng_op_name(n->op), dims,
                want / 2 * dims);
    if (n->conv.one_d && count > 0) { /* [w] -> [h, w]; pads [w0, w1] -> [h0, w0, h1, w1] */
        int64_t e[4] = {h, v[0], h, want == 4 ? v[1] : 0};
        memcpy(v, e, sizeof e);
        count = want;
    }
    for (uint32_t i = 0; i < want; i++) {
        out[i] = count ? v[i] : def;
        VEIL_ENSURE(out[i] >= min && out[i] <= VEIL_ENGINE_MAX_WINDOW, VEIL_ERR_ONNX, "%s: attribute '%s' holds %"
                    PRId64 ", outside [%" PRId64 ", %u]", eng_node_label(n, label, sizeof label), name, out[i], min,
                    VEIL_ENGINE_MAX_WINDOW);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_conv_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    struct eng_conv_params *p = &n->conv;
    VEIL_GUARD(eng_attr_auto_pad(n, &p->auto_pad));
    VEIL_GUARD(window_ints(n, "kernel_shape", p->kernel, 2, 0, 0, 1)); /* 0: from the weights */
    VEIL_GUARD(window_ints(n, "strides", p->strides, 2, 1, 1, 1));
    VEIL_GUARD(window_ints(n, "dilations", p->dilations, 2, 1, 1, 1));
    VEIL_GUARD(window_ints(n, "pads", p->pads, 4, 0, 0, 0));
    memset(p->out_pad, 0, sizeof p->out_pad);
    memset(p->out_shape, 0, sizeof p->out_shape);
    if (n->op == OP_CONVTRANSPOSE) {
        VEIL_GUARD(window_ints(n, "output_padding", p->out_pad, 2, 0, 0, 0));
        VEIL_GUARD(window_ints(n, "output_shape", p->out_shape, 2, 0, 0, 1));
    }
    VEIL_GUARD(eng_attr_int(n, "group", 1, &p->group));
    char label[160];
    VEIL_ENSURE(p->group >= 1 && p->group <= INT32_MAX, VEIL_ERR_ONNX, "%s: group %" PRId64 " is invalid",
                eng_node_label(n, label, sizeof label), p->group);
    return VEIL_RESULT_OK;
}

/* out = (in + pad_begin + pad_end - ((k - 1) * d + 1)) / s + 1, floor or ceil; all terms are bounded. */
static VEIL_RESULT window_out(const struct eng_node *n, int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb,
                              int64_t pe, int ceil_mode, int64_t *out)
{
    int64_t span = in + pb + pe - ((k - 1) * d + 1);
    char label[160];
    VEIL_ENSURE(span >= 0, VEIL_ERR_ONNX, "%s: the window (%" PRId64 ") is larger than the padded input (%" PRId64 ")",
                eng_node_label(n, label, sizeof label), (k - 1) * d + 1, in + pb + pe);
    *out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (*out - 1) * s >= in + pb)
        (*out)--; /* the last window must start inside the input or its left padding */
    return VEIL_RESULT_OK;
}

/* The output channels: a Conv's weights are [M, C / group, kH, kW], a ConvTranspose's [C, M / group, kH, kW]. */
static int64_t conv_out_channels(const struct eng_node *n, const struct eng_shape *w)
{
    return n->op == OP_CONVTRANSPOSE ? w->dims[1] * n->conv.group : w->dims[0];
}

static VEIL_RESULT conv_weights(const struct eng_graph *g, const struct eng_node *n, const struct eng_value *x,
                                const struct eng_value **w)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    const struct eng_value *v = &g->values[n->inputs[1]];
    VEIL_ENSURE(v->kind == VAL_CONST && v->dtype == VEIL_ONNX_FLOAT, VEIL_ERR_UNSUPPORTED,
                "%s: the weights '%s' must be a float32 initializer", label, v->name);
    VEIL_ENSURE(x->shape.rank == 4 && v->shape.rank == 4, VEIL_ERR_UNSUPPORTED,
                "%s: only 1-D and 2-D convolutions (3-D or 4-D input and weights) are supported", label);
    VEIL_ENSURE(v->shape.dims[0] > 0 && v->shape.dims[1] > 0 && v->shape.dims[2] > 0 && v->shape.dims[3] > 0,
                VEIL_ERR_ONNX, "%s: the weights '%s' are empty", label, v->name);
    int64_t group = n->conv.group, c = x->shape.dims[1], m = conv_out_channels(n, &v->shape);
    int64_t per_group = n->op == OP_CONVTRANSPOSE ? v->shape.dims[0] : v->shape.dims[1] * group;
    VEIL_ENSURE(c % group == 0 && m % group == 0 && per_group == c, VEIL_ERR_ONNX, "%s: weights %" PRId64 "x%"
                PRId64 " do not fit %" PRId64 " input channels in %" PRId64 " groups", label, v->shape.dims[0],
                v->shape.dims[1], c, group);
    for (int i = 0; i < 2; i++)
        VEIL_ENSURE(n->conv.kernel[i] == 0 || n->conv.kernel[i] == v->shape.dims[2 + i], VEIL_ERR_ONNX,
                    "%s: kernel_shape does not match the weights", label);
    *w = v;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_vector(const struct eng_graph *g, const struct eng_node *n, uint32_t input, int64_t count)
{
    const float *data = NULL;
    size_t have = 0;
    char label[160];
    VEIL_GUARD(eng_const_floats(g, n, input, &data, &have));
    const struct eng_value *v = &g->values[n->inputs[input]];
    VEIL_ENSURE(v->shape.rank == 1 && have == (size_t)count, VEIL_ERR_ONNX, "%s: '%s' must hold %" PRId64
                " values", eng_node_label(n, label, sizeof label), v->name, count);
    return VEIL_RESULT_OK;
}

/* auto_pad SAME_*: the output is ceil(in / stride), the padding that takes split in halves, the odd one at the end
 * (UPPER) or the start (LOWER); VALID: none. Conv and the pools. */
void eng_auto_pads(enum eng_auto_pad mode, int64_t in, int64_t stride, int64_t extent, int64_t *begin, int64_t *end)
{
    if (mode == PAD_NOTSET)
        return;
    int64_t out = (in + stride - 1) / stride, total = (out - 1) * stride + extent - in;
    total = mode == PAD_VALID || total < 0 ? 0 : total;
    *begin = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
    *end = total - *begin;
}

/* A ConvTranspose's output, out = stride * (in - 1) + output_padding + extent - pad_begin - pad_end; with
 * output_shape or auto_pad SAME_* the pads follow from the output (ONNX's rule: SAME_UPPER puts the odd one at the
 * end, anything else at the start). */
static VEIL_RESULT deconv_dim(struct eng_node *n, int i, int64_t in, int64_t extent, int64_t *out)
{
    struct eng_conv_params *p = &n->conv;
    int64_t s = p->strides[i], full = s * (in - 1) + p->out_pad[i] + extent;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(p->out_pad[i] < s, VEIL_ERR_UNSUPPORTED, "%s: output_padding %" PRId64 " is not below the stride %"
                PRId64 " (not supported)", label, p->out_pad[i], s);
    int64_t want = p->out_shape[i] > 0 ? p->out_shape[i] : p->auto_pad >= PAD_SAME_UPPER ? in * s : 0;
    if (want > 0 && p->auto_pad != PAD_VALID) {
        int64_t total = full - want;
        VEIL_ENSURE(total >= 0, VEIL_ERR_UNSUPPORTED, "%s: an output of %" PRId64 " is larger than the transposed "
                    "convolution gives (%" PRId64 "); not supported", label, want, full);
        p->pads[i] = p->auto_pad == PAD_SAME_UPPER ? total / 2 : total - total / 2;
        p->pads[2 + i] = total - p->pads[i];
    }
    *out = full - p->pads[i] - p->pads[2 + i];
    VEIL_ENSURE(*out >= 1, VEIL_ERR_ONNX, "%s: the pads (%" PRId64 " and %" PRId64 ") leave no output", label,
                p->pads[i], p->pads[2 + i]);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_conv_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL, *w = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    if (n->conv.one_d) { /* x is the [N, C, 1, L] view graph.c made: of a 3-D tensor, as 3-D weights need */
        const struct eng_node *view = &g->nodes[x->producer];
        char label[160];
        VEIL_ENSURE(g->values[view->inputs[0]].shape.rank == 3, VEIL_ERR_ONNX, "%s: 3-D weights for a %" PRIu32
                    "-D input", eng_node_label(n, label, sizeof label), g->values[view->inputs[0]].shape.rank);
    }
    VEIL_GUARD(conv_weights(g, n, x, &w));
    int64_t m = conv_out_channels(n, &w->shape);
    if (n->input_count > 2 && n->inputs[2] >= 0)
        VEIL_GUARD(check_vector(g, n, 2, m));
    struct eng_conv_params *p = &n->conv;
    struct eng_shape s = {.rank = 4, .dims = {x->shape.dims[0], m}};
    for (int i = 0; i < 2; i++) {
        int64_t in = x->shape.dims[2 + i], k = w->shape.dims[2 + i], extent = (k - 1) * p->dilations[i] + 1;
        VEIL_ENSURE(k <= VEIL_ENGINE_MAX_WINDOW, VEIL_ERR_LIMIT, "kernel too large");
        if (n->op == OP_CONVTRANSPOSE) {
            VEIL_GUARD(deconv_dim(n, i, in, extent, &s.dims[2 + i]));
            continue;
        }
        eng_auto_pads(p->auto_pad, in, p->strides[i], extent, &p->pads[i], &p->pads[2 + i]);
        VEIL_GUARD(window_out(n, in, k, p->strides[i], p->dilations[i], p->pads[i], p->pads[2 + i], 0,
                              &s.dims[2 + i]));
    }
    g->values[n->outputs[0]].shape = s;
    return VEIL_RESULT_OK;
}

/* ---- BatchNormalization ---------------------------------------------------------------------------------- */

VEIL_RESULT eng_bn_parse(struct eng_graph *g, struct eng_node *n)
{
    int64_t training = 0, spatial = 1;
    float momentum = 0;
    VEIL_GUARD(eng_attr_float(n, "epsilon", 1e-5f, &n->epsilon));
    VEIL_GUARD(eng_attr_float(n, "momentum", 0.9f, &momentum)); /* training only */
    VEIL_GUARD(eng_attr_int(n, "training_mode", 0, &training));
    if (g->opset < 9)
        VEIL_GUARD(eng_attr_int(n, "spatial", 1, &spatial));
    char label[160];
    VEIL_ENSURE(training == 0, VEIL_ERR_UNSUPPORTED, "%s: training_mode=1 is not supported (inference only)",
                eng_node_label(n, label, sizeof label));
    VEIL_ENSURE(spatial == 1, VEIL_ERR_UNSUPPORTED, "%s: spatial=0 is not supported",
                eng_node_label(n, label, sizeof label));
    VEIL_ENSURE(n->epsilon >= 0, VEIL_ERR_ONNX, "%s: negative epsilon", eng_node_label(n, label, sizeof label));
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_bn_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    char label[160];
    VEIL_ENSURE(x->shape.rank >= 2 && x->shape.rank <= 5, VEIL_ERR_UNSUPPORTED, "%s: input rank %" PRIu32
                " is not supported", eng_node_label(n, label, sizeof label), x->shape.rank);
    for (uint32_t i = 1; i < 5; i++)
        VEIL_GUARD(check_vector(g, n, i, x->shape.dims[1]));
    const float *var = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(g, n, 4, &var, &count));
    for (size_t i = 0; i < count; i++)
        VEIL_ENSURE((double)var[i] + (double)n->epsilon > 0, VEIL_ERR_ONNX, "%s: variance + epsilon is not positive "
                    "in channel %zu", eng_node_label(n, label, sizeof label), i);
    g->values[n->outputs[0]].shape = x->shape;
    return VEIL_RESULT_OK;
}

/* scale[c] = gamma / sqrt(var + eps), shift[c] = beta - mean * scale, in double. */
static VEIL_RESULT bn_affine(const struct eng_graph *g, const struct eng_node *bn, size_t c, double *scale,
                             double *shift)
{
    const float *p[4];
    size_t count = 0;
    for (uint32_t i = 0; i < 4; i++) {
        VEIL_GUARD(eng_const_floats(g, bn, i + 1, &p[i], &count));
        VEIL_ENSURE(count == c, VEIL_ERR_ONNX, "BatchNormalization: parameter size mismatch");
    }
    for (size_t i = 0; i < c; i++) {
        scale[i] = (double)p[0][i] / sqrt((double)p[3][i] + (double)bn->epsilon);
        shift[i] = (double)p[1][i] - (double)p[2][i] * scale[i];
    }
    return VEIL_RESULT_OK;
}

/* ---- building a convolution ------------------------------------------------------------------------------ */

struct conv_build {
    struct eng_node *n;
    struct eng_shape xs, ws;      /* copies of the input's and weights' shapes (steps add values, moving them) */
    int x_is_input;               /* the input is a graph input */
    int64_t m, per_out;           /* output channels; weight elements per output channel */
    int has_bias;
    dnnl_memory_desc_t w_user, b_user;
    const float *out_scales;      /* int8: x_scale * w_scale[c], m of them; NULL for float */
    int src;                      /* the value read: the input, or (int8) the QuantizeLinear's integers */
    const float *bias_scales;     /* int8: what the float32 bias is divided by (oneDNN 2.x scales it with the sums) */
    int dq;                       /* int8: the DequantizeLinear node of the weights */
    dnnl_data_type_t dst_type;    /* f32, or (int8 writing a QuantizeLinear's integers) u8 / s8 */
    int32_t dst_zp;
};

/* int8: per output channel scales, and the src zero point (given at run time). */
static VEIL_RESULT conv_int8_attr(const struct conv_build *b, dnnl_primitive_attr_t attr)
{
    static const int32_t runtime = DNNL_RUNTIME_S32_VAL;
    ENG_GUARD_DNNL(dnnl_primitive_attr_set_output_scales(attr, b->m, 1 << 1, b->out_scales), b->n, "int8 scales");
    if (b->n->x_zp != 0)
        ENG_GUARD_DNNL(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &runtime), b->n,
                       "int8 zero point");
    if (b->dst_zp != 0)
        ENG_GUARD_DNNL(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &runtime), b->n,
                       "int8 zero point");
    return VEIL_RESULT_OK;
}

/* The convolution's primitive, its src and weights of type dt (f32, or bf16 under bf16 precision; int8: src u8 or
 * s8, weights s8). */
static VEIL_RESULT conv_descs(struct veil_engine *e, struct conv_build *b, dnnl_data_type_t dt,
                              dnnl_primitive_desc_t *pd)
{
    const struct eng_conv_params *p = &b->n->conv;
    const struct eng_shape *ws = &b->ws, *xs = &b->xs, *ys = &e->g.values[b->n->out].shape;
    int64_t g = p->group;
    dnnl_dims_t xd = {xs->dims[0], xs->dims[1], xs->dims[2], xs->dims[3]};
    dnnl_dims_t yd = {ys->dims[0], ys->dims[1], ys->dims[2], ys->dims[3]};
    dnnl_dims_t wd = {g, b->m / g, ws->dims[1], ws->dims[2], ws->dims[3]}, bd = {b->m};
    dnnl_dims_t strides = {p->strides[0], p->strides[1]}, dil = {p->dilations[0] - 1, p->dilations[1] - 1};
    dnnl_dims_t pl = {p->pads[0], p->pads[1]}, pr = {p->pads[2], p->pads[3]};
    int wn = g > 1 ? 5 : 4, transposed = b->n->op == OP_CONVTRANSPOSE;
    if (transposed) /* oneDNN's deconvolution weights are [G,] O, I, kH, kW too; ONNX stores them [G,] I, O, kH, kW */
        wd[2] = xs->dims[1] / g;
    dnnl_dims_t wdims = {0};
    memcpy(wdims, g > 1 ? wd : wd + 1, (size_t)wn * sizeof wd[0]);
    dnnl_format_tag_t user = transposed ? (g > 1 ? dnnl_giohw : dnnl_iohw) : (g > 1 ? dnnl_goihw : dnnl_oihw);
    dnnl_memory_desc_t src, wgt, dst, bias;
    dnnl_data_type_t wt = b->out_scales != NULL ? dnnl_s8 : dt, ut = b->out_scales != NULL ? dnnl_s8 : dnnl_f32;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&src, 4, xd, dt, dnnl_format_tag_any), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&wgt, wn, wdims, wt, dnnl_format_tag_any), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b->w_user, wn, wdims, ut, user), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_a), b->n, "descriptor");
    b->b_user = bias;
    if (b->n->sum >= 0)
        dst = e->g.values[b->n->sum].md;
    else
        ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&dst, 4, yd, b->dst_type, dnnl_format_tag_any), b->n,
                       "descriptor");
    dnnl_convolution_desc_t desc;
    dnnl_deconvolution_desc_t tdesc;
    if (transposed)
        ENG_GUARD_DNNL(dnnl_dilated_deconvolution_forward_desc_init(&tdesc, dnnl_forward_inference,
                       dnnl_deconvolution_direct, &src, &wgt, b->has_bias ? &bias : NULL, &dst, strides, dil, pl, pr),
                       b->n, "transposed convolution setup");
    else
        ENG_GUARD_DNNL(dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference,
                       dnnl_convolution_direct, &src, &wgt, b->has_bias ? &bias : NULL, &dst, strides, dil, pl, pr),
                       b->n, "convolution setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(b->n, b->n->post, b->n->post_count, &attr));
    struct veil_result r = b->out_scales != NULL ? conv_int8_attr(b, attr) : VEIL_RESULT_OK;
    const void *d = transposed ? (const void *)&tdesc : (const void *)&desc;
    dnnl_status_t st = veil_ok(r) ? dnnl_primitive_desc_create(pd, d, attr, e->dnnl, NULL) : dnnl_success;
    dnnl_primitive_attr_destroy(attr);
    VEIL_GUARD(r);
    ENG_GUARD_DNNL(st, b->n, "convolution");
    return VEIL_RESULT_OK;
}

/* The weights and bias in plain layout, with a folded BatchNormalization applied; tmp is wiped by the caller. */
static VEIL_RESULT conv_fold(struct veil_engine *e, const struct conv_build *b, float *w, float *bias)
{
    const float *w0 = NULL, *b0 = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(&e->g, b->n, 1, &w0, &count));
    if (b->n->input_count > 2 && b->n->inputs[2] >= 0)
        VEIL_GUARD(eng_const_floats(&e->g, b->n, 2, &b0, &count));
    size_t m = (size_t)b->m, k = (size_t)b->per_out;
    double *scale = calloc(2 * m, sizeof *scale);
    VEIL_ENSURE(scale != NULL, VEIL_ERR_NOMEM, "out of memory");
    double *shift = scale + m;
    for (size_t c = 0; c < m; c++)
        scale[c] = 1;
    struct veil_result r = VEIL_RESULT_OK;
    if (b->n->bn >= 0)
        r = bn_affine(&e->g, &e->g.nodes[b->n->bn], m, scale, shift);
    /* the output channel of weight i: a Conv's are [M, k]; a ConvTranspose's [G, C / G, M / G, kernel] */
    size_t kernel = (size_t)(b->ws.dims[2] * b->ws.dims[3]), per_group = m / (size_t)b->n->conv.group;
    size_t group_size = (size_t)b->ws.dims[0] / (size_t)b->n->conv.group * per_group * kernel;
    for (size_t i = 0; veil_ok(r) && i < m * k; i++) {
        size_t c = b->n->op == OP_CONVTRANSPOSE ? i / group_size * per_group + i / kernel % per_group : i / k;
        w[i] = (float)((double)w0[i] * scale[c]);
    }
    for (size_t c = 0; veil_ok(r) && c < m; c++)
        bias[c] = (float)((b0 != NULL ? (double)b0[c] : 0.0) * scale[c] + shift[c]);
    free(scale);
    return r;
}

/* int8: the int8 constant the weights were dequantized from, the float32 bias, and the src zero point. */
static VEIL_RESULT conv_int8_weights_step(struct veil_engine *e, const struct conv_build *b, struct eng_step *s,
                                          const_dnnl_primitive_desc_t pd)
{
    const struct eng_node *dq = &e->g.nodes[b->dq];
    const struct eng_value *q = &e->g.values[dq->inputs[0]];
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_const(e, s, DNNL_ARG_WEIGHTS, wmd, &b->w_user, q->data));
    if (b->has_bias) { /* oneDNN 2.x scales the bias with the sums: dst = scale * (sum + bias) */
        const float *bias = NULL;
        size_t count = 0;
        VEIL_GUARD(eng_const_floats(&e->g, b->n, 2, &bias, &count));
        VEIL_ENSURE(count == (size_t)b->m, VEIL_ERR_ONNX, "Conv: the bias has %zu values, not %" PRId64, count, b->m);
        VEIL_GUARD(eng_step_int8_bias(e, step, &b->b_user, bias, count, count, 1.0f, b->bias_scales));
    }
    VEIL_GUARD(eng_step_zero_point(e, step, DNNL_ARG_SRC, &b->n->x_zp));
    return eng_step_zero_point(e, step, DNNL_ARG_DST, &b->dst_zp);
}

/* No BatchNormalization to fold: the weights and bias are reordered straight from the model's constants, with no
 * plaintext copy between (a copy is fresh pages to fault, fill, wipe and unmap for every layer). */
static VEIL_RESULT conv_plain_weights_step(struct veil_engine *e, const struct conv_build *b, struct eng_step *s,
                                           const_dnnl_primitive_desc_t pd)
{
    const float *w = NULL, *bias = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(&e->g, b->n, 1, &w, &count));
    VEIL_ENSURE(count == (size_t)b->m * (size_t)b->per_out, VEIL_ERR_INTERNAL, "Conv: weights of %zu values", count);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    VEIL_GUARD(eng_step_const(e, s, DNNL_ARG_WEIGHTS, wmd, &b->w_user, w));
    if (!b->has_bias)
        return VEIL_RESULT_OK;
    VEIL_GUARD(eng_const_floats(&e->g, b->n, 2, &bias, &count));
    VEIL_ENSURE(count == (size_t)b->m, VEIL_ERR_INTERNAL, "Conv: a bias of %zu values", count);
    return eng_step_const(e, s, DNNL_ARG_BIAS, &b->b_user, &b->b_user, bias);
}

static VEIL_RESULT conv_weights_step(struct veil_engine *e, const struct conv_build *b, struct eng_step *s,
                                     const_dnnl_primitive_desc_t pd)
{
    if (b->out_scales != NULL)
        return conv_int8_weights_step(e, b, s, pd);
    if (b->n->bn < 0)
        return conv_plain_weights_step(e, b, s, pd);
    size_t m = (size_t)b->m, k = (size_t)b->per_out;
    VEIL_DEFER(veil_secure_free) struct veil_secure_mem tmp = {0};
    VEIL_GUARD(veil_secure_alloc(&tmp, (m * k + m) * sizeof(float), 0));
    float *w = (float *)(void *)tmp.data, *bias = w + m * k;
    VEIL_GUARD(conv_fold(e, b, w, bias));
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    VEIL_GUARD(eng_step_const(e, s, DNNL_ARG_WEIGHTS, wmd, &b->w_user, w));
    if (b->has_bias)
        VEIL_GUARD(eng_step_const(e, s, DNNL_ARG_BIAS, &b->b_user, &b->b_user, bias));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT conv_step(struct veil_engine *e, struct conv_build *b, const_dnnl_primitive_desc_t pd)
{
    int x = -1, out = b->n->out;
    const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    VEIL_GUARD(eng_input_as(e, b->src, src, &x));
    struct eng_step *s = NULL;
    VEIL_GUARD(eng_step_new(e, b->n, pd, &s));
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_value(e, s, DNNL_ARG_SRC, x, 0));
    VEIL_GUARD(conv_weights_step(e, b, &e->steps[step], pd));
    s = &e->steps[step];
    if (b->n->sum >= 0) {
        e->g.values[out].alias = b->n->sum;
        s->reads_sum = b->n->sum;
    }
    VEIL_GUARD(eng_value_set_md(e, out, dst));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, out, 1);
}

/* Under bf16 precision, which convolutions run on bf16: not the one reading a graph input (a 3-channel image: little
 * work, and every later layer inherits its rounding), nor depthwise ones (memory-bound: bf16 saves no time, only
 * precision). Measured on the pretrained EfficientNet-Lite0 (tests/python/test_precision.py): top-1 agreement with
 * float32 98.0 % with every convolution in bf16, 98.25 % with these two kinds and the classifier in float32. */
static int bf16_conv(const struct veil_engine *e, const struct conv_build *b)
{
    int depthwise = b->n->conv.group > 1 && b->n->conv.group == b->xs.dims[1];
    return e->opts.precision == VEIL_ENGINE_BF16 && !depthwise && !b->x_is_input;
}

/* x_scale * w_scale[c] for each output channel (one weight scale, or one per channel). */
static VEIL_RESULT int8_scales(const struct eng_graph *g, const struct conv_build *b, float *out)
{
    const struct eng_node *dq = &g->nodes[b->dq];
    const struct eng_value *s = &g->values[dq->inputs[1]];
    size_t count = eng_shape_count(&s->shape);
    VEIL_ENSURE(count == 1 || count == (size_t)b->m, VEIL_ERR_INTERNAL, "int8 Conv: %zu weight scales", count);
    for (int64_t c = 0; c < b->m; c++) {
        float ws;
        memcpy(&ws, s->data + 4 * (count == 1 ? 0 : (size_t)c), 4);
        out[c] = b->n->x_scale * ws;
    }
    return VEIL_RESULT_OK;
}

/* A Conv reading a QuantizeLinear's integers (plan.c, mark_int8): oneDNN's int8 kernels (VNNI, AMX). */
static VEIL_RESULT conv_build_int8(struct veil_engine *e, struct conv_build *b)
{
    const struct eng_node *q = &e->g.nodes[b->n->int8_q - 1];
    VEIL_ENSURE(q->int8 == 1 || q->int8_bytes > 0, VEIL_ERR_INTERNAL, "int8 Conv before its QuantizeLinear");
    if (q->int8 == 2)
        b->src = q->int8_bytes - 1;
    float *scales = calloc(2 * (size_t)b->m, sizeof *scales);
    VEIL_ENSURE(scales != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = int8_scales(&e->g, b, scales);
    b->out_scales = scales;
    b->bias_scales = scales + b->m;
    memcpy(scales + b->m, scales, (size_t)b->m * sizeof *scales);
    if (b->n->q_out > 0) { /* it writes the QuantizeLinear's integers: round(y / s_y) + zp_y */
        const struct eng_node *yq = &e->g.nodes[b->n->q_out - 1];
        for (int64_t c = 0; c < b->m; c++)
            scales[c] /= yq->alpha;
        b->dst_type = yq->x_type;
        b->dst_zp = (int32_t)yq->elt[0].beta;
    }
    dnnl_primitive_desc_t pd = NULL;
    if (veil_ok(r))
        r = conv_descs(e, b, b->n->x_type, &pd);
    if (veil_ok(r))
        r = conv_step(e, b, pd);
    dnnl_primitive_desc_destroy(pd);
    veil_wipe(scales, 2 * (size_t)b->m * sizeof *scales); /* the model's weight scales */
    free(scales);
    return r;
}

VEIL_RESULT eng_conv_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_value *x = &e->g.values[n->inputs[0]], *w = &e->g.values[n->inputs[1]];
    struct conv_build b = {.n = n, .xs = x->shape, .ws = w->shape, .x_is_input = x->kind == VAL_INPUT,
                           .src = n->inputs[0], .dst_type = dnnl_f32, .dq = w->dq_from - 1};
    b.m = conv_out_channels(n, &b.ws);
    b.per_out = (int64_t)eng_shape_count(&b.ws) / b.m;
    b.has_bias = n->bn >= 0 || (n->input_count > 2 && n->inputs[2] >= 0);
    if (n->int8) {
        return conv_build_int8(e, &b);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (!bf16_conv(e, &b) || !veil_ok(conv_descs(e, &b, dnnl_bf16, &pd))) {
        veil_error_clear(); /* no bf16 kernel for this one: float32 */
        VEIL_GUARD(conv_descs(e, &b, dnnl_f32, &pd));
    }
    struct veil_result r = conv_step(e, &b, pd);
    dnnl_primitive_desc_destroy(pd);
    return r;
}

/* ---- a BatchNormalization on its own --------------------------------------------------------------------- */

static VEIL_RESULT bn_params(struct veil_engine *e, const struct eng_node *n, struct eng_step *s)
{
    int64_t c = e->g.values[n->inputs[0]].shape.dims[1];
    dnnl_dims_t d = {c};
    dnnl_memory_desc_t md;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&md, 1, d, dnnl_f32, dnnl_a), n, "descriptor");
    static const int args[4] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
    size_t step = (size_t)(s - e->steps);
    for (uint32_t i = 0; i < 4; i++) {
        const float *p = NULL;
        size_t count = 0;
        VEIL_GUARD(eng_const_floats(&e->g, n, i + 1, &p, &count));
        VEIL_GUARD(eng_step_const(e, &e->steps[step], args[i], &md, &md, p));
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_bn_build(struct veil_engine *e, struct eng_node *n)
{
    int x = n->inputs[0];
    dnnl_memory_desc_t src = e->g.values[x].md;
    dnnl_batch_normalization_desc_t desc;
    unsigned flags = dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift;
    ENG_GUARD_DNNL(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_inference, &src, n->epsilon,
                   flags), n, "batch normalization setup");
    size_t step = 0;
    VEIL_GUARD(eng_step_plain(e, n, &desc, "batch normalization", &step));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC, x, 0));
    VEIL_GUARD(bn_params(e, n, &e->steps[step]));
    VEIL_GUARD(eng_value_set_md(e, n->out, &src));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, n->out, 1);
}
