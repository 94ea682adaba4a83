/* SPDX-License-Identifier: Apache-2.0 */
/* Add and Mul with numpy broadcasting of one side (the other must already have the output's shape), on the
 * oneDNN binary primitive. A residual Add after a Conv usually becomes a sum post-op instead (plan.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

VEIL_RESULT eng_binary_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    (void)n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT operand(const struct eng_graph *g, const struct eng_node *n, uint32_t i,
                           const struct eng_value **out)
{
    const struct eng_value *v = &g->values[n->inputs[i]];
    char label[160];
    VEIL_ENSURE(v->has_shape, VEIL_ERR_INTERNAL, "%s: operand without a shape", eng_node_label(n, label, sizeof label));
    VEIL_ENSURE(v->kind != VAL_CONST || v->dtype == VEIL_ONNX_FLOAT, VEIL_ERR_UNSUPPORTED, "%s: constant '%s' is "
                "not float32", eng_node_label(n, label, sizeof label), v->name);
    *out = v;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT broadcast(const struct eng_node *n, const struct eng_shape *a, const struct eng_shape *b,
                             struct eng_shape *out)
{
    out->rank = a->rank > b->rank ? a->rank : b->rank;
    for (uint32_t i = 0; i < out->rank; i++) {
        int64_t x = i < out->rank - a->rank ? 1 : a->dims[i - (out->rank - a->rank)];
        int64_t y = i < out->rank - b->rank ? 1 : b->dims[i - (out->rank - b->rank)];
        char label[160];
        VEIL_ENSURE(x == y || x == 1 || y == 1, VEIL_ERR_ONNX, "%s: shapes do not broadcast (%" PRId64 " vs %" PRId64
                    " at axis %" PRIu32 ")", eng_node_label(n, label, sizeof label), x, y, i);
        out->dims[i] = x == 1 ? y : x;
    }
    return VEIL_RESULT_OK;
}

static int same_shape(const struct eng_shape *a, const struct eng_shape *b)
{
    return a->rank == b->rank && memcmp(a->dims, b->dims, a->rank * sizeof a->dims[0]) == 0;
}

VEIL_RESULT eng_binary_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *a = NULL, *b = NULL;
    VEIL_GUARD(operand(g, n, 0, &a));
    VEIL_GUARD(operand(g, n, 1, &b));
    struct eng_shape s;
    VEIL_GUARD(broadcast(n, &a->shape, &b->shape, &s));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int a_full = a->kind != VAL_CONST && same_shape(&a->shape, &s);
    int b_full = b->kind != VAL_CONST && same_shape(&b->shape, &s);
    VEIL_ENSURE(a_full || b_full, VEIL_ERR_UNSUPPORTED, "%s: one operand must be a computed tensor of the output's "
                "shape (two-sided broadcasting and constant-only operands are not supported)", label);
    g->values[n->outputs[0]].shape = s;
    return VEIL_RESULT_OK;
}

/* The second operand, viewed or stored with the output's rank (leading 1s) in plain layout. */
static VEIL_RESULT second_operand(struct veil_engine *e, int v, const struct eng_shape *out,
                                  const dnnl_memory_desc_t *first, int *view, dnnl_memory_desc_t *md)
{
    const struct eng_value *b = &e->g.values[v];
    if (b->kind != VAL_CONST && same_shape(&b->shape, out)) {
        VEIL_GUARD(eng_input_as(e, v, first, view));
        *md = *first;
        return VEIL_RESULT_OK;
    }
    struct eng_shape padded = {.rank = out->rank};
    for (uint32_t i = 0; i < out->rank; i++)
        padded.dims[i] = i < out->rank - b->shape.rank ? 1 : b->shape.dims[i - (out->rank - b->shape.rank)];
    VEIL_GUARD(eng_md_plain(md, &padded));
    *view = -1;
    if (b->kind == VAL_CONST)
        return VEIL_RESULT_OK;
    dnnl_memory_desc_t plain;
    int x = -1;
    VEIL_GUARD(eng_md_plain(&plain, &b->shape));
    VEIL_GUARD(eng_input_as(e, v, &plain, &x));
    return eng_view_value(e, x, md, view);
}

static VEIL_RESULT binary_pd(struct veil_engine *e, const struct eng_node *n, const dnnl_memory_desc_t *s0,
                             const dnnl_memory_desc_t *s1, dnnl_primitive_desc_t *pd)
{
    dnnl_binary_desc_t desc;
    dnnl_alg_kind_t alg = n->op == OP_ADD ? dnnl_binary_add : dnnl_binary_mul;
    ENG_GUARD_DNNL(dnnl_binary_desc_init(&desc, alg, s0, s1, s0), n, "binary setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(n, NULL, 0, &attr));
    dnnl_status_t st = dnnl_primitive_desc_create(pd, &desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, n, "binary");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT binary_step(struct veil_engine *e, const struct eng_node *n, int a, int b_value,
                               const dnnl_memory_desc_t *s0)
{
    const struct eng_shape *out = &e->g.values[n->out].shape;
    int b = -1;
    dnnl_memory_desc_t s1;
    VEIL_GUARD(second_operand(e, b_value, out, s0, &b, &s1));
    dnnl_primitive_desc_t pd = NULL;
    VEIL_GUARD(binary_pd(e, n, s0, &s1, &pd));
    struct eng_step *s = NULL;
    struct veil_result r = eng_step_new(e, n, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    VEIL_GUARD(r);
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_value(e, s, DNNL_ARG_SRC_0, a, 0));
    if (b >= 0) {
        VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC_1, b, 0));
    } else {
        const float *data = NULL;
        size_t count = 0;
        uint32_t i = n->inputs[0] == b_value ? 0 : 1;
        VEIL_GUARD(eng_const_floats(&e->g, n, i, &data, &count));
        VEIL_GUARD(eng_step_const(e, &e->steps[step], DNNL_ARG_SRC_1, &s1, &s1, data));
    }
    VEIL_GUARD(eng_value_set_md(e, n->out, s0));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, n->out, 1);
}

VEIL_RESULT eng_binary_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape *out = &e->g.values[n->out].shape;
    int a = n->inputs[0], b = n->inputs[1];
    if (e->g.values[a].kind == VAL_CONST || !same_shape(&e->g.values[a].shape, out)) {
        a = n->inputs[1]; /* Add and Mul commute */
        b = n->inputs[0];
    }
    dnnl_memory_desc_t s0 = e->g.values[a].md;
    if (!eng_md_is_plain(&s0)) {
        /* oneDNN may not broadcast a plain operand over a blocked one: try, then fall back to plain. */
        dnnl_memory_desc_t plain;
        VEIL_GUARD(eng_md_plain(&plain, &e->g.values[a].shape));
        const struct eng_value *bv = &e->g.values[b];
        if (bv->kind == VAL_CONST || !same_shape(&bv->shape, out)) {
            dnnl_memory_desc_t s1;
            struct eng_shape padded = {.rank = out->rank};
            for (uint32_t i = 0; i < out->rank; i++)
                padded.dims[i] = i < out->rank - bv->shape.rank ? 1 : bv->shape.dims[i - (out->rank - bv->shape.rank)];
            VEIL_GUARD(eng_md_plain(&s1, &padded));
            dnnl_primitive_desc_t pd = NULL;
            if (!veil_ok(binary_pd(e, n, &s0, &s1, &pd))) {
                veil_error_clear();
                VEIL_GUARD(eng_input_as(e, a, &plain, &a));
                s0 = plain;
            }
            dnnl_primitive_desc_destroy(pd);
        }
    }
    return binary_step(e, n, a, b, &s0);
}
