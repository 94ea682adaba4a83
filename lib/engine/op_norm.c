/* SPDX-License-Identifier: Apache-2.0 */
/* LayerNormalization (oneDNN layer normalization over the input viewed as [rows, normalized size]) and ReduceMean,
 * ReduceSum, ReduceMax, ReduceL2 (oneDNN reduction). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

/* ---- LayerNormalization ---------------------------------------------------------------------------------- */

VEIL_RESULT eng_layernorm_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    int64_t stash = 1;
    VEIL_GUARD(eng_attr_int(n, "axis", -1, &n->axis));
    VEIL_GUARD(eng_attr_float(n, "epsilon", 1e-5f, &n->epsilon));
    VEIL_GUARD(eng_attr_int(n, "stash_type", 1, &stash));
    char label[160];
    VEIL_ENSURE(stash == 1, VEIL_ERR_UNSUPPORTED, "%s: stash_type %" PRId64 " is not supported (1: float32)",
                eng_node_label(n, label, sizeof label), stash);
    VEIL_ENSURE(n->epsilon >= 0 && isfinite(n->epsilon), VEIL_ERR_ONNX, "%s: epsilon must be finite and >= 0", label);
    return VEIL_RESULT_OK;
}

/* The input as [rows, cols]: cols are the dims from axis on. */
static VEIL_RESULT ln_split(const struct eng_node *n, const struct eng_shape *x, int64_t *rows, int64_t *cols)
{
    int64_t r = x->rank, axis = n->axis < 0 ? n->axis + r : n->axis;
    char label[160];
    VEIL_ENSURE(r >= 1 && axis >= 0 && axis < r, VEIL_ERR_ONNX, "%s: axis %" PRId64 " is out of range",
                eng_node_label(n, label, sizeof label), n->axis);
    *rows = 1;
    *cols = 1;
    for (int64_t i = 0; i < r; i++)
        *(i < axis ? rows : cols) *= x->dims[i];
    return VEIL_RESULT_OK;
}

/* Scale or bias: a float32 constant of cols elements (any shape that broadcasts to the normalized dims as a whole). */
static VEIL_RESULT ln_param(const struct eng_graph *g, const struct eng_node *n, uint32_t i, int64_t cols)
{
    const float *p = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(g, n, i, &p, &count));
    char label[160];
    VEIL_ENSURE(count == (size_t)cols, VEIL_ERR_UNSUPPORTED, "%s: %s has %zu values; the engine needs one per "
                "normalized element (%" PRId64 ")", eng_node_label(n, label, sizeof label), i == 1 ? "Scale" : "B",
                count, cols);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_layernorm_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    int64_t rows = 0, cols = 0;
    VEIL_GUARD(ln_split(n, &x->shape, &rows, &cols));
    VEIL_GUARD(ln_param(g, n, 1, cols));
    if (n->input_count > 2 && n->inputs[2] >= 0)
        VEIL_GUARD(ln_param(g, n, 2, cols));
    g->values[n->outputs[0]].shape = x->shape;
    return VEIL_RESULT_OK;
}

/* LayerNormalization of a constant (DETR's query embeddings, normalised once), in double. */
VEIL_RESULT eng_fold_layernorm(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    const float *in = NULL, *scale = NULL, *bias = NULL;
    size_t count = 0;
    int64_t rows = 0, cols = 0;
    VEIL_GUARD(eng_const_floats(g, n, 0, &in, &count));
    VEIL_GUARD(ln_split(n, &x->shape, &rows, &cols));
    VEIL_GUARD(ln_param(g, n, 1, cols));
    VEIL_GUARD(eng_const_floats(g, n, 1, &scale, &count));
    if (n->input_count > 2 && n->inputs[2] >= 0) {
        VEIL_GUARD(ln_param(g, n, 2, cols));
        VEIL_GUARD(eng_const_floats(g, n, 2, &bias, &count));
    }
    const struct eng_shape shape = x->shape; /* out may be x's neighbour in the values array: copy first */
    VEIL_GUARD(eng_fold_alloc(n, out, VEIL_ONNX_FLOAT, &shape, eng_shape_count(&shape)));
    float *y = (float *)(void *)out->owned;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = in + r * cols;
        double mean = 0, var = 0;
        for (int64_t c = 0; c < cols; c++)
            mean += row[c];
        mean /= (double)cols;
        for (int64_t c = 0; c < cols; c++)
            var += (row[c] - mean) * (row[c] - mean);
        double inv = 1.0 / sqrt(var / (double)cols + (double)n->epsilon);
        for (int64_t c = 0; c < cols; c++)
            y[r * cols + c] = (float)((row[c] - mean) * inv * scale[c] + (bias != NULL ? bias[c] : 0.0));
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_layernorm_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_value *x = &e->g.values[n->inputs[0]];
    int64_t rows = 0, cols = 0;
    VEIL_GUARD(ln_split(n, &x->shape, &rows, &cols));
    struct eng_shape flat = {.rank = 2, .dims = {rows, cols}}, vec = {.rank = 1, .dims = {cols}};
    dnnl_memory_desc_t plain, md, pmd;
    int src = -1, dst = -1;
    VEIL_GUARD(eng_md_plain(&plain, &x->shape));
    VEIL_GUARD(eng_md_plain(&md, &flat));
    VEIL_GUARD(eng_md_plain(&pmd, &vec));
    VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain, &src));
    VEIL_GUARD(eng_view_value(e, src, &md, &src));
    VEIL_GUARD(eng_value_set_md(e, n->out, &plain));
    VEIL_GUARD(eng_view_value(e, n->out, &md, &dst));
    int has_bias = n->input_count > 2 && n->inputs[2] >= 0;
    unsigned flags = dnnl_use_scale | (has_bias ? dnnl_use_shift : 0u);
    dnnl_layer_normalization_desc_t desc;
    ENG_GUARD_DNNL(dnnl_layer_normalization_forward_desc_init(&desc, dnnl_forward_inference, &md, NULL, n->epsilon,
                                                              flags), n, "layer normalization setup");
    size_t step = 0;
    VEIL_GUARD(eng_step_plain(e, n, &desc, "layer normalization", &step));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC, src, 0));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_DST, dst, 1));
    const float *p = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(&e->g, n, 1, &p, &count));
    VEIL_GUARD(eng_step_const(e, &e->steps[step], DNNL_ARG_SCALE, &pmd, &pmd, p));
    if (!has_bias)
        return VEIL_RESULT_OK;
    VEIL_GUARD(eng_const_floats(&e->g, n, 2, &p, &count));
    return eng_step_const(e, &e->steps[step], DNNL_ARG_SHIFT, &pmd, &pmd, p);
}

/* ---- ReduceMean ------------------------------------------------------------------------------------------ */

VEIL_RESULT eng_reduce_parse(struct eng_graph *g, struct eng_node *n)
{
    int64_t keep = 1, noop = 0;
    VEIL_GUARD(eng_attr_int(n, "keepdims", 1, &keep));
    n->trans_a = keep != 0;
    if (n->op == OP_REDUCESUM ? g->opset < 13 : g->opset < 18) { /* axes: an attribute until then, then an input */
        int64_t v[VEIL_ENGINE_MAX_ATTR_INTS];
        uint32_t count = 0;
        VEIL_GUARD(eng_attr_ints(n, "axes", v, VEIL_ENGINE_MAX_ATTR_INTS, &count));
        char label[160];
        VEIL_ENSURE(count <= ENG_RANK, VEIL_ERR_ONNX, "%s: too many axes", eng_node_label(n, label, sizeof label));
        memcpy(n->ints, v, count * sizeof v[0]);
        n->int_count = count;
        n->has_ints = 1;
        return VEIL_RESULT_OK;
    }
    VEIL_GUARD(eng_attr_int(n, "noop_with_empty_axes", 0, &noop));
    n->trans_b = noop != 0;
    return VEIL_RESULT_OK;
}

/* The reduced dims (mark[i]) from the attribute or the constant axes input; none given: all (or none, with
 * noop_with_empty_axes). */
static VEIL_RESULT reduce_axes(const struct eng_graph *g, const struct eng_node *n, uint32_t rank, int *mark)
{
    int64_t axes[ENG_RANK];
    uint32_t count = n->int_count;
    char label[160];
    eng_node_label(n, label, sizeof label);
    memcpy(axes, n->ints, sizeof axes);
    if (!n->has_ints && n->input_count > 1 && n->inputs[1] >= 0) {
        const struct eng_value *v = &g->values[n->inputs[1]];
        VEIL_ENSURE(v->kind == VAL_CONST && v->dtype == VEIL_ONNX_INT64 && v->shape.rank <= 1 &&
                    v->size / 8 <= ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: axes must be a short constant INT64 list",
                    label);
        count = (uint32_t)(v->size / 8);
        memcpy(axes, v->data, v->size);
    }
    for (uint32_t i = 0; i < rank; i++)
        mark[i] = count == 0 && !n->trans_b;
    for (uint32_t i = 0; i < count; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
        VEIL_ENSURE(a >= 0 && a < (int64_t)rank, VEIL_ERR_ONNX, "%s: axis %" PRId64 " is out of range", label, axes[i]);
        mark[a] = 1;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_reduce_shapes(const struct eng_graph *g, const struct eng_node *n, struct eng_shape *kept,
                              struct eng_shape *out)
{
    const struct eng_shape *x = &g->values[n->inputs[0]].shape;
    int mark[ENG_RANK] = {0};
    VEIL_GUARD(reduce_axes(g, n, x->rank, mark));
    *kept = *x;
    *out = (struct eng_shape){0};
    for (uint32_t i = 0; i < x->rank; i++) {
        kept->dims[i] = mark[i] ? 1 : x->dims[i];
        if (!mark[i] || n->trans_a)
            out->dims[out->rank++] = kept->dims[i];
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_reduce_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    struct eng_shape kept;
    return eng_reduce_shapes(g, n, &kept, &g->values[n->outputs[0]].shape);
}

VEIL_RESULT eng_reduce_build(struct veil_engine *e, struct eng_node *n)
{
    struct eng_shape kept, out;
    VEIL_GUARD(eng_reduce_shapes(&e->g, n, &kept, &out));
    const struct eng_shape xs = e->g.values[n->inputs[0]].shape; /* a copy: the views below add values */
    if (n->op == OP_REDUCEMAX || n->op == OP_REDUCEMIN) { /* the engine's kernel: -inf stays -inf (op_select.c) */
        struct eng_kernel k = {.op = KOP_REDUCE_EXTREME, .inputs = 1, .in = xs, .out = kept,
                               .select_min = n->op == OP_REDUCEMIN};
        return eng_step_kernel(e, n, &k, n->inputs, n->out);
    }
    dnnl_memory_desc_t plain, kmd, omd;
    int src = -1, dst = -1;
    VEIL_GUARD(eng_md_plain(&plain, &xs));
    VEIL_GUARD(eng_md_plain(&kmd, &kept));
    VEIL_GUARD(eng_md_plain(&omd, &out));
    VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain, &src));
    VEIL_GUARD(eng_value_set_md(e, n->out, &omd));
    VEIL_GUARD(eng_view_value(e, n->out, &kmd, &dst));
    size_t step = 0;
    if (xs.rank == kept.rank && memcmp(xs.dims, kept.dims, kept.rank * sizeof kept.dims[0]) == 0) {
        /* nothing to reduce (axes of size 1, or none with noop_with_empty_axes), which oneDNN refuses: a copy, or
         * |x| for ReduceL2 */
        dnnl_eltwise_desc_t copy;
        ENG_GUARD_DNNL(dnnl_eltwise_forward_desc_init(&copy, dnnl_forward_inference, n->op == OP_REDUCEL2 ?
                       dnnl_eltwise_abs : dnnl_eltwise_linear, &plain, 1.0f, 0.0f), n, "reduction setup");
        VEIL_GUARD(eng_step_plain(e, n, &copy, "reduction", &step));
        VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC, src, 0));
        return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, dst, 1);
    }
    dnnl_reduction_desc_t desc;
    dnnl_alg_kind_t alg = n->op == OP_REDUCESUM   ? dnnl_reduction_sum
                          : n->op == OP_REDUCEMAX ? dnnl_reduction_max
                          : n->op == OP_REDUCEMIN ? dnnl_reduction_min
                          : n->op == OP_REDUCEL2  ? dnnl_reduction_norm_lp_sum
                                                  : dnnl_reduction_mean;
    ENG_GUARD_DNNL(dnnl_reduction_desc_init(&desc, alg, &plain, &kmd, n->op == OP_REDUCEL2 ? 2.0f : 0.0f, 0), n,
                   "reduction setup");
    VEIL_GUARD(eng_step_plain(e, n, &desc, "reduction", &step));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC, src, 0));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, dst, 1);
}
