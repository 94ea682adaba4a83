/* SPDX-License-Identifier: Apache-2.0 */
/* Shape operators on computed tensors (they are folded at load when their input is a constant, fold.c):
 * Squeeze and Unsqueeze are views; Transpose is a oneDNN reorder from a permuted-strides view; Slice, Expand,
 * Split and Gather are strided copies or gathers on the engine's kernels (op_kernel.c); Cast keeps the float32
 * representation and applies the target type's rounding (truncation to integers, != 0 for booleans). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

VEIL_RESULT eng_shape_op_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    if (n->op != OP_GATHER || x->kind != VAL_CONST) /* Gather: a constant table (embeddings), computed indices */
        VEIL_GUARD(eng_input_act(g, n, 0, &x));
    for (uint32_t i = 0; i < n->output_count; i++) {
        struct eng_kernel k;
        struct eng_value *out = &g->values[n->outputs[i]];
        VEIL_GUARD(eng_fold_shape(g, n, i, &out->shape, &k));
        out->dtype = n->op == OP_CAST || n->op == OP_CASTLIKE ? n->dtype : x->dtype;
        if (i > 0) {
            size_t size = 0;
            VEIL_GUARD(eng_shape_bytes(&out->shape, out->name, &size));
            out->has_shape = 1;
        }
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_transpose_build(struct veil_engine *e, struct eng_node *n)
{
    /* copies: the input's reorder and view add values, which may move the array */
    const struct eng_shape xshape = e->g.values[n->inputs[0]].shape, oshape = e->g.values[n->out].shape;
    const struct eng_shape *out = &oshape;
    uint32_t r = xshape.rank;
    dnnl_memory_desc_t plain, view, dst;
    int src = -1;
    VEIL_GUARD(eng_md_plain(&plain, &xshape));
    VEIL_GUARD(eng_md_plain(&dst, out));
    VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain, &src));
    dnnl_dims_t dims = {1}, strides = {1};
    int64_t xs[ENG_RANK], k = 1;
    for (uint32_t i = r; i-- > 0;) {
        xs[i] = k;
        k *= xshape.dims[i];
    }
    for (uint32_t i = 0; i < r; i++) {
        int64_t p = n->int_count ? n->ints[i] : (int64_t)(r - 1 - i);
        dims[i] = out->dims[i];
        strides[i] = xs[p];
    }
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_strides(&view, r ? (int)r : 1, dims, dnnl_f32, strides), n, "descriptor");
    VEIL_GUARD(eng_view_value(e, src, &view, &src));
    int tmp = -1;
    VEIL_GUARD(eng_input_as(e, src, &dst, &tmp)); /* a reorder step into a new plain value */
    e->g.values[n->out].alias = tmp;
    return eng_value_set_md(e, n->out, &dst);
}

static VEIL_RESULT kernel_output(struct veil_engine *e, struct eng_node *n, uint32_t output)
{
    struct eng_shape s;
    struct eng_kernel k;
    VEIL_GUARD(eng_fold_shape(&e->g, n, output, &s, &k));
    int inputs[2] = {n->inputs[0], n->input_count > 1 ? n->inputs[1] : -1};
    return eng_step_kernel(e, n, &k, inputs, n->outputs[output]);
}

VEIL_RESULT eng_gather_build(struct veil_engine *e, struct eng_node *n)
{
    return kernel_output(e, n, 0);
}

VEIL_RESULT eng_slice_build(struct veil_engine *e, struct eng_node *n)
{
    return kernel_output(e, n, 0);
}

VEIL_RESULT eng_expand_build(struct veil_engine *e, struct eng_node *n)
{
    return kernel_output(e, n, 0);
}

VEIL_RESULT eng_split_parse(struct eng_graph *g, struct eng_node *n)
{
    VEIL_GUARD(eng_attr_int(n, "axis", 0, &n->axis));
    int64_t parts = 0;
    VEIL_GUARD(eng_attr_int(n, "num_outputs", 0, &parts));
    if (g->opset >= 13)
        return VEIL_RESULT_OK;
    int64_t v[VEIL_ENGINE_MAX_ATTR_INTS];
    uint32_t count = 0;
    VEIL_GUARD(eng_attr_ints(n, "split", v, VEIL_ENGINE_MAX_ATTR_INTS, &count));
    char label[160];
    VEIL_ENSURE(count <= 2 * ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: more than %u parts",
                eng_node_label(n, label, sizeof label), 2 * ENG_RANK);
    memcpy(n->ints, v, count * sizeof v[0]);
    n->int_count = count;
    n->has_ints = count > 0;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_split_build(struct veil_engine *e, struct eng_node *n)
{
    for (uint32_t i = 0; i < n->output_count; i++)
        VEIL_GUARD(kernel_output(e, n, i));
    return VEIL_RESULT_OK;
}

/* Squeeze, Unsqueeze and a Cast to FLOAT or of a tensor already integral: a view. */
VEIL_RESULT eng_cast_build(struct veil_engine *e, struct eng_node *n)
{
    int32_t from = e->g.values[n->inputs[0]].dtype, to = n->dtype;
    int same = (n->op != OP_CAST && n->op != OP_CASTLIKE) || to == VEIL_ONNX_FLOAT || from == to ||
               ((to == VEIL_ONNX_INT64 || to == VEIL_ONNX_INT32) && from != VEIL_ONNX_FLOAT);
    if (same)
        return eng_view_build(e, n);
    struct eng_kernel k = {.op = to == VEIL_ONNX_BOOL ? KOP_BOOL : KOP_TRUNC, .inputs = 1,
                           .out = e->g.values[n->out].shape};
    eng_broadcast_strides(&k.out, &k.out, k.strides[0]);
    return eng_step_kernel(e, n, &k, n->inputs, n->out);
}
