/* SPDX-License-Identifier: Apache-2.0 */
/* Tensor plumbing: Flatten, Reshape and Identity (views of a row-major buffer, no copy when the input is
 * already row-major), Constant (folded at load), and Concat (oneDNN concat). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "engine/internal.h"
#include "onnx/onnx.h"
#include "onnx/pb.h"

VEIL_RESULT eng_noattr_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    (void)n;
    return VEIL_RESULT_OK;
}

/* ---- Dropout: the identity at inference ------------------------------------------------------------------ */

static int value_read(const struct eng_graph *g, int value)
{
    if (g->values[value].is_output)
        return 1;
    for (size_t i = 0; i < g->node_count; i++)
        for (uint32_t k = 0; k < g->nodes[i].input_count; k++)
            if (g->nodes[i].inputs[k] == value)
                return 1;
    return 0;
}

/* Refused: training mode (a training_mode input that is not the constant false) and a mask that something reads.
 * Otherwise the node becomes an Identity (ratio and seed change nothing at inference). */
VEIL_RESULT eng_dropout_parse(struct eng_graph *g, struct eng_node *n)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    (void)eng_attr_get(n, "ratio"); /* opset < 12 */
    (void)eng_attr_get(n, "seed");
    (void)eng_attr_get(n, "is_test"); /* opset < 7: onnxruntime, too, runs every Dropout as the identity */
    if (n->input_count > 2 && n->inputs[2] >= 0) {
        const struct eng_value *t = &g->values[n->inputs[2]];
        uint8_t on = 1;
        if (t->kind == VAL_CONST && t->dtype == VEIL_ONNX_BOOL && t->size == 1)
            on = t->data[0];
        VEIL_ENSURE(on == 0, VEIL_ERR_UNSUPPORTED, "%s: training_mode must be the constant false; the engine runs "
                    "inference only", label);
    }
    VEIL_ENSURE(n->output_count < 2 || n->outputs[1] < 0 || !value_read(g, n->outputs[1]), VEIL_ERR_UNSUPPORTED,
                "%s: its mask output is read; the engine computes no Dropout mask", label);
    n->op = OP_IDENTITY;
    n->input_count = 1;
    n->output_count = 1;
    return VEIL_RESULT_OK;
}

/* ---- Flatten --------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_flatten_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    return eng_attr_int(n, "axis", 1, &n->axis);
}

VEIL_RESULT eng_flatten_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    int64_t rank = x->shape.rank, axis = n->axis < 0 ? n->axis + rank : n->axis;
    char label[160];
    VEIL_ENSURE(axis >= 0 && axis <= rank, VEIL_ERR_ONNX, "%s: axis %" PRId64 " is out of range",
                eng_node_label(n, label, sizeof label), n->axis);
    struct eng_shape s = {.rank = 2, .dims = {1, 1}};
    for (int64_t i = 0; i < rank; i++)
        s.dims[i < axis ? 0 : 1] *= x->shape.dims[i]; /* bounded: the input's byte size was checked */
    g->values[n->outputs[0]].shape = s;
    return VEIL_RESULT_OK;
}

/* ---- Reshape --------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_reshape_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    int64_t allowzero = 0;
    VEIL_GUARD(eng_attr_int(n, "allowzero", 0, &allowzero));
    n->trans_a = allowzero != 0;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT reshape_dim(const struct eng_node *n, const struct eng_shape *x, int64_t want, uint32_t i,
                               int allowzero, int64_t *out, int *infer)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    if (want == 0 && !allowzero) {
        VEIL_ENSURE(i < x->rank, VEIL_ERR_ONNX, "%s: shape copies dim %" PRIu32 ", the input has %" PRIu32,
                    label, i, x->rank);
        want = x->dims[i];
    }
    if (want == -1) {
        VEIL_ENSURE(*infer < 0, VEIL_ERR_ONNX, "%s: shape has two -1 entries", label);
        *infer = (int)i;
        want = 1;
    }
    VEIL_ENSURE(want >= 0, VEIL_ERR_ONNX, "%s: shape holds %" PRId64, label, want);
    *out = want;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_reshape_target(const struct eng_node *n, const struct eng_shape *in, const struct eng_value *shape,
                               struct eng_shape *out)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(shape->kind == VAL_CONST && shape->dtype == VEIL_ONNX_INT64 && shape->shape.rank == 1,
                VEIL_ERR_UNSUPPORTED, "%s: the shape must be a constant 1-D INT64 tensor", label);
    size_t rank = shape->size / 8;
    VEIL_ENSURE(rank <= ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: rank %zu is more than %u", label, rank, ENG_RANK);
    struct eng_shape s = {.rank = (uint32_t)rank};
    int infer = -1;
    uint64_t known = 1, total = eng_shape_count(in);
    for (uint32_t i = 0; i < rank; i++) {
        int64_t want = 0;
        memcpy(&want, shape->data + 8 * i, 8);
        VEIL_GUARD(reshape_dim(n, in, want, i, n->trans_a, &s.dims[i], &infer));
        VEIL_ENSURE(veil_ok(veil_mul_u64(known, (uint64_t)s.dims[i], &known)), VEIL_ERR_ONNX, "%s: shape overflows",
                    label);
    }
    if (infer >= 0) {
        VEIL_ENSURE(known > 0 && total % known == 0, VEIL_ERR_ONNX, "%s: cannot infer the -1 dimension", label);
        s.dims[infer] = (int64_t)(total / known);
        known = total;
    }
    VEIL_ENSURE(known == total, VEIL_ERR_ONNX, "%s: %" PRIu64 " elements cannot become %" PRIu64, label, total, known);
    *out = s;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_reshape_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    return eng_reshape_target(n, &x->shape, &g->values[n->inputs[1]], &g->values[n->outputs[0]].shape);
}

/* Flatten, Reshape and Identity: the output views the input's bytes in row-major order. */
VEIL_RESULT eng_view_build(struct veil_engine *e, struct eng_node *n)
{
    dnnl_memory_desc_t plain, out;
    int x = -1;
    VEIL_GUARD(eng_md_plain(&plain, &e->g.values[n->inputs[0]].shape));
    VEIL_GUARD(eng_md_plain(&out, &e->g.values[n->out].shape));
    VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain, &x));
    e->g.values[n->out].alias = x;
    return eng_value_set_md(e, n->out, &out);
}

/* ---- Constant -------------------------------------------------------------------------------------------- */

static VEIL_RESULT constant_list(struct eng_node *n, struct eng_value *v, int is_float)
{
    int64_t ints[VEIL_ENGINE_MAX_ATTR_INTS];
    uint32_t count = 0;
    if (is_float) {
        /* value_floats: not needed by the supported models; refuse rather than guess its layout. */
        char label[160];
        VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "%s: value_floats is not supported", eng_node_label(n, label, sizeof label));
    }
    VEIL_GUARD(eng_attr_ints(n, "value_ints", ints, VEIL_ENGINE_MAX_ATTR_INTS, &count));
    v->owned = malloc(count * 8 + 8);
    VEIL_ENSURE(v->owned != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(v->owned, ints, count * 8);
    v->data = v->owned;
    v->size = count * 8;
    v->dtype = VEIL_ONNX_INT64;
    v->shape = (struct eng_shape){.rank = 1, .dims = {count}};
    return VEIL_RESULT_OK;
}

static VEIL_RESULT constant_scalar(struct eng_node *n, struct eng_value *v, int is_float)
{
    v->owned = malloc(8);
    VEIL_ENSURE(v->owned != NULL, VEIL_ERR_NOMEM, "out of memory");
    v->data = v->owned;
    v->shape = (struct eng_shape){.rank = 0};
    if (is_float) {
        float f = 0;
        VEIL_GUARD(eng_attr_float(n, "value_float", 0, &f));
        memcpy(v->owned, &f, 4);
        v->size = 4;
        v->dtype = VEIL_ONNX_FLOAT;
        return VEIL_RESULT_OK;
    }
    int64_t i = 0;
    VEIL_GUARD(eng_attr_int(n, "value_int", 0, &i));
    memcpy(v->owned, &i, 8);
    v->size = 8;
    v->dtype = VEIL_ONNX_INT64;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_constant_parse(struct eng_graph *g, struct eng_node *n)
{
    static const char *const names[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    struct eng_attr *found = NULL;
    int which = -1;
    char label[160];
    eng_node_label(n, label, sizeof label);
    for (int i = 0; i < 5; i++) {
        struct eng_attr *a = eng_attr_get(n, names[i]);
        VEIL_ENSURE(a == NULL || found == NULL, VEIL_ERR_ONNX, "%s: more than one value", label);
        if (a != NULL) {
            found = a;
            which = i;
        }
    }
    VEIL_ENSURE(found != NULL, n->attr_count ? VEIL_ERR_UNSUPPORTED : VEIL_ERR_ONNX, "%s: no supported value "
                "attribute (value, value_float, value_int, value_ints)", label);
    found->used = 0; /* the typed readers below mark it again */
    struct eng_value *v = &g->values[n->outputs[0]];
    v->kind = VAL_CONST;
    v->has_shape = 1;
    if (which == 0) {
        found->used = 1;
        struct veil_cursor c = found->body;
        struct veil_pb_field f;
        struct veil_cursor t = {0};
        while (veil_cursor_left(&c) > 0) {
            VEIL_GUARD(veil_pb_next(&c, "AttributeProto", &f));
            if (f.number == 5 && f.wire == VEIL_PB_LEN)
                t = f.payload;
        }
        VEIL_ENSURE(t.data != NULL, VEIL_ERR_ONNX, "%s: attribute 'value' holds no tensor", label);
        return eng_decode_tensor(t, label, v);
    }
    if (which == 1 || which == 3)
        return constant_scalar(n, v, which == 1);
    return constant_list(n, v, which == 2);
}

/* ---- Concat ---------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_concat_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    char label[160];
    VEIL_ENSURE(eng_attr_get(n, "axis") != NULL, VEIL_ERR_ONNX, "%s: attribute 'axis' is required",
                eng_node_label(n, label, sizeof label));
    return eng_attr_int(n, "axis", 0, &n->axis);
}

/* A computed input, or a constant: a float32 one (a class token) stored with the step; an INT64, INT32 or BOOL one
 * (a shape piece beside computed integers) copied into a value at build (eng_concat_build). */
static VEIL_RESULT concat_operand(struct eng_graph *g, const struct eng_node *n, uint32_t i,
                                  const struct eng_value **out)
{
    const struct eng_value *v = &g->values[n->inputs[i]];
    if (v->kind != VAL_CONST)
        return eng_input_act(g, n, i, out);
    char label[160];
    VEIL_ENSURE(v->dtype == VEIL_ONNX_FLOAT || v->dtype == VEIL_ONNX_INT64 || v->dtype == VEIL_ONNX_INT32 ||
                v->dtype == VEIL_ONNX_BOOL, VEIL_ERR_UNSUPPORTED, "%s: constant '%s' has data type %" PRId32
                " (FLOAT, INT64, INT32 and BOOL are supported)", eng_node_label(n, label, sizeof label), v->name,
                v->dtype);
    *out = v;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_concat_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(concat_operand(g, n, 0, &x));
    struct eng_shape s = x->shape;
    int64_t rank = s.rank, axis = n->axis < 0 ? n->axis + rank : n->axis;
    VEIL_ENSURE(rank >= 1 && axis >= 0 && axis < rank, VEIL_ERR_ONNX, "%s: axis %" PRId64 " is out of range", label,
                n->axis);
    n->axis = axis;
    for (uint32_t i = 1; i < n->input_count; i++) {
        const struct eng_value *y = NULL;
        VEIL_GUARD(concat_operand(g, n, i, &y));
        VEIL_ENSURE(y->shape.rank == s.rank, VEIL_ERR_ONNX, "%s: inputs differ in rank", label);
        for (int64_t d = 0; d < rank; d++)
            VEIL_ENSURE(d == axis || y->shape.dims[d] == s.dims[d], VEIL_ERR_ONNX, "%s: inputs differ off the axis",
                        label);
        VEIL_ENSURE(y->shape.dims[axis] <= INT64_MAX / 2 - s.dims[axis], VEIL_ERR_LIMIT, "%s: too large", label);
        s.dims[axis] += y->shape.dims[axis];
    }
    g->values[n->outputs[0]].shape = s;
    return VEIL_RESULT_OK;
}

/* All inputs in the first one's layout (or plain when plain is forced), concatenated into that layout. */
static VEIL_RESULT concat_try(struct veil_engine *e, struct eng_node *n, int plain, dnnl_primitive_desc_t *pd,
                              dnnl_memory_desc_t *mds, int *srcs)
{
    for (uint32_t i = 0; i < n->input_count; i++) {
        const struct eng_value *v = &e->g.values[n->inputs[i]];
        dnnl_memory_desc_t want = v->md;
        if (plain || v->kind == VAL_CONST)
            VEIL_GUARD(eng_md_plain(&want, &v->shape));
        srcs[i] = -1;
        if (v->kind != VAL_CONST)
            VEIL_GUARD(eng_input_as(e, n->inputs[i], &want, &srcs[i]));
        mds[i] = want;
    }
    dnnl_memory_desc_t dst;
    VEIL_GUARD(eng_md_plain(&dst, &e->g.values[n->out].shape));
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(n, NULL, 0, &attr));
    dnnl_status_t st = dnnl_concat_primitive_desc_create(pd, plain ? &dst : NULL, (int)n->input_count, (int)n->axis,
                                                         mds, attr, e->dnnl);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, n, "concat");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT concat_step(struct veil_engine *e, struct eng_node *n, const_dnnl_primitive_desc_t pd,
                               const int *srcs)
{
    struct eng_step *s = NULL;
    VEIL_GUARD(eng_step_new(e, n, pd, &s));
    size_t step = (size_t)(s - e->steps);
    for (uint32_t i = 0; i < n->input_count; i++) {
        if (srcs[i] >= 0) {
            VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_MULTIPLE_SRC + (int)i, srcs[i], 0));
            continue;
        }
        const float *data = NULL;
        size_t count = 0;
        VEIL_GUARD(eng_const_floats(&e->g, n, i, &data, &count));
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, (int)i);
        dnnl_memory_desc_t plain;
        VEIL_GUARD(eng_md_plain(&plain, &e->g.values[n->inputs[i]].shape));
        VEIL_GUARD(eng_step_const(e, &e->steps[step], DNNL_ARG_MULTIPLE_SRC + (int)i, md, &plain, data));
    }
    VEIL_GUARD(eng_value_set_md(e, n->out, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0)));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, n->out, 1);
}

VEIL_RESULT eng_concat_build(struct veil_engine *e, struct eng_node *n)
{
    dnnl_memory_desc_t *mds = calloc(n->input_count, sizeof *mds);
    int *srcs = calloc(n->input_count, sizeof *srcs);
    dnnl_primitive_desc_t pd = NULL;
    struct veil_result r = VEIL_RESULT_OK;
    if (mds == NULL || srcs == NULL)
        r = veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    for (uint32_t i = 0; veil_ok(r) && i < n->input_count; i++) { /* integer constants beside computed integers */
        int v = n->inputs[i];
        if (e->g.values[v].kind == VAL_CONST && e->g.values[v].dtype != VEIL_ONNX_FLOAT)
            r = eng_const_value(e, n, v, &n->inputs[i]); /* held as float32, as computed integers are */
    }
    int plain = 1;
    for (uint32_t i = 0; veil_ok(r) && i < n->input_count; i++)
        plain &= e->g.values[n->inputs[i]].kind == VAL_CONST || eng_md_is_plain(&e->g.values[n->inputs[i]].md);
    if (veil_ok(r))
        r = concat_try(e, n, plain, &pd, mds, srcs);
    if (!veil_ok(r) && !plain && r.status == VEIL_ERR_UNSUPPORTED) {
        veil_error_clear();
        r = concat_try(e, n, 1, &pd, mds, srcs);
    }
    if (veil_ok(r))
        r = concat_step(e, n, pd, srcs);
    dnnl_primitive_desc_destroy(pd);
    free(mds);
    free(srcs);
    return r;
}
