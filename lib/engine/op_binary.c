/* SPDX-License-Identifier: Apache-2.0 */
/* Binary operations with numpy broadcasting of one side (the other must already have the output's shape), on the
 * oneDNN binary primitive; op_kernel.c decides when this fits. A residual Add after a Conv usually becomes a sum
 * post-op instead (plan.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

static int same_shape(const struct eng_shape *a, const struct eng_shape *b)
{
    return a->rank == b->rank && memcmp(a->dims, b->dims, a->rank * sizeof a->dims[0]) == 0;
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
    dnnl_alg_kind_t alg = dnnl_binary_add;
    switch (n->op) {
    case OP_ADD: alg = dnnl_binary_add; break;
    case OP_SUB: alg = dnnl_binary_sub; break;
    case OP_MUL: alg = dnnl_binary_mul; break;
    case OP_DIV: alg = dnnl_binary_div; break;
    case OP_MAX: alg = dnnl_binary_max; break;
    case OP_MIN: alg = dnnl_binary_min; break;
    case OP_EQUAL: alg = dnnl_binary_eq; break;
    case OP_LESS: alg = dnnl_binary_lt; break;
    case OP_GREATER: alg = dnnl_binary_gt; break;
    case OP_LESSEQ: alg = dnnl_binary_le; break;
    case OP_GREATEREQ: alg = dnnl_binary_ge; break;
    default: VEIL_BAIL(VEIL_ERR_INTERNAL, "not a binary operator");
    }
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
        a = n->inputs[1]; /* only for operations that commute (op_kernel.c checks) */
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
