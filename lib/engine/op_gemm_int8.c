/* SPDX-License-Identifier: Apache-2.0 */
/* A MatMul or Gemm on oneDNN's int8 kernels (plan.c, mark_int8): A [..., K], the u8 (or s8) integers its
 * QuantizeLinear writes, times B [K, N] (a Gemm's transposed B: [N, K]), the int8 constant the weights were
 * dequantized from. It runs as a 1x1 convolution over M pixels of K channels, channels last, so the integers and
 * the float32 result are the plain [M, K] and [M, N] matrices: oneDNN 2.6 has int8 1x1 convolution kernels on every
 * ISA it has int8 for (AVX2 up to AMX). Output scales x_scale * w_scale[n], the source zero point at run time, the
 * float32 bias divided by those scales (oneDNN 2.x scales the bias with the sums; a Gemm's is beta * C), eltwise
 * post-ops as plan.c fused them; it writes float32. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

struct mm_int8 {
    struct eng_node *n;
    const struct eng_node *dq;     /* the DequantizeLinear of the weights */
    int64_t m, k, nn;
    int trans_b;                   /* a Gemm's transB: B is [N, K] */
    float *scales;                 /* x_scale * w_scale[c], nn of them (the model's: wiped when freed) */
    dnnl_memory_desc_t src, wgt, w_user, bias, dst;
};

static VEIL_RESULT mm_int8_scales(const struct eng_graph *g, struct mm_int8 *b)
{
    const struct eng_value *s = &g->values[b->dq->inputs[1]];
    size_t count = eng_shape_count(&s->shape);
    VEIL_ENSURE(count == 1 || count == (size_t)b->nn, VEIL_ERR_INTERNAL, "int8 product: %zu weight scales", count);
    b->scales = calloc((size_t)b->nn, sizeof *b->scales);
    VEIL_ENSURE(b->scales != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (int64_t c = 0; c < b->nn; c++) {
        float ws;
        memcpy(&ws, s->data + 4 * (count == 1 ? 0 : (size_t)c), 4);
        b->scales[c] = b->n->x_scale * ws;
    }
    return VEIL_RESULT_OK;
}

/* The 1x1 convolution's descriptors: src [1, K, M, 1] acdb (plain [M, K]) of the integers' type, weights
 * [N, K, 1, 1] read from B's row-major bytes ([K, N]: (o, i) at i * N + o; [N, K]: at o * K + i), dst [1, N, M, 1]
 * acdb (plain [M, N]) float32. */
static VEIL_RESULT mm_int8_mds(struct mm_int8 *b, int has_bias)
{
    dnnl_dims_t sd = {1, b->k, b->m, 1}, wd = {b->nn, b->k, 1, 1}, dd = {1, b->nn, b->m, 1}, bd = {b->nn};
    dnnl_dims_t ws = {b->trans_b ? b->k : 1, b->trans_b ? 1 : b->nn, b->nn * b->k, b->nn * b->k};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b->src, 4, sd, b->n->x_type, dnnl_acdb), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b->dst, 4, dd, dnnl_f32, dnnl_acdb), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b->wgt, 4, wd, dnnl_s8, dnnl_format_tag_any), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_strides(&b->w_user, 4, wd, dnnl_s8, ws), b->n, "descriptor");
    if (has_bias)
        ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b->bias, 1, bd, dnnl_f32, dnnl_a), b->n, "descriptor");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT mm_int8_pd(struct veil_engine *e, struct mm_int8 *b, int has_bias, dnnl_primitive_desc_t *pd)
{
    static const int32_t runtime = DNNL_RUNTIME_S32_VAL;
    dnnl_convolution_desc_t desc;
    dnnl_dims_t ones = {1, 1}, zeros = {0, 0};
    ENG_GUARD_DNNL(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                      &b->src, &b->wgt, has_bias ? &b->bias : NULL, &b->dst, ones,
                                                      zeros, zeros), b->n, "convolution setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(b->n, b->n->post, b->n->post_count, &attr));
    dnnl_status_t st = dnnl_primitive_attr_set_output_scales(attr, b->nn, 1 << 1, b->scales);
    if (st == dnnl_success && b->n->x_zp != 0)
        st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &runtime);
    if (st == dnnl_success)
        st = dnnl_primitive_desc_create(pd, &desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, b->n, "int8 matrix product");
    return VEIL_RESULT_OK;
}

/* The weights (B's int8 bytes, reordered once), the bias divided by the output scales, the source zero point. */
static VEIL_RESULT mm_int8_consts(struct veil_engine *e, const struct mm_int8 *b, size_t step, int has_bias,
                                  const_dnnl_primitive_desc_t pd)
{
    const struct eng_value *q = &e->g.values[b->dq->inputs[0]];
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    VEIL_GUARD(eng_step_const(e, &e->steps[step], DNNL_ARG_WEIGHTS, wmd, &b->w_user, q->data));
    if (has_bias) {
        const float *bias = NULL;
        size_t count = 0;
        VEIL_GUARD(eng_const_floats(&e->g, b->n, 2, &bias, &count));
        VEIL_ENSURE(count == (size_t)b->nn || (b->n->op == OP_GEMM && count == 1), VEIL_ERR_INTERNAL,
                    "int8 product: a bias of %zu values, not %" PRId64, count, b->nn);
        float beta = b->n->op == OP_GEMM ? b->n->beta : 1.0f;
        VEIL_GUARD(eng_step_int8_bias(e, step, &b->bias, bias, count, (size_t)b->nn, beta, b->scales));
    }
    return eng_step_zero_point(e, step, DNNL_ARG_SRC, &b->n->x_zp);
}

static VEIL_RESULT mm_int8_step(struct veil_engine *e, struct mm_int8 *b, int src, int has_bias,
                                const_dnnl_primitive_desc_t pd)
{
    const struct eng_shape *as = &e->g.values[b->n->inputs[0]].shape;
    dnnl_memory_desc_t plain;
    int x = -1, a = -1, dst = -1;
    VEIL_GUARD(eng_md_plain(&plain, as));
    plain.data_type = b->n->x_type; /* the integers, plain */
    VEIL_GUARD(eng_input_as(e, src, &plain, &x));
    VEIL_GUARD(eng_view_value(e, x, &b->src, &a));
    struct eng_step *s = NULL;
    VEIL_GUARD(eng_step_new(e, b->n, pd, &s));
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_value(e, s, DNNL_ARG_SRC, a, 0));
    VEIL_GUARD(mm_int8_consts(e, b, step, has_bias, pd));
    VEIL_GUARD(eng_md_plain(&plain, &e->g.values[b->n->out].shape));
    VEIL_GUARD(eng_value_set_md(e, b->n->out, &plain));
    VEIL_GUARD(eng_view_value(e, b->n->out, &b->dst, &dst));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, dst, 1);
}

VEIL_RESULT eng_gemm_int8_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_node *q = &e->g.nodes[n->int8_q - 1];
    VEIL_ENSURE(q->int8 == 1 || q->int8_bytes > 0, VEIL_ERR_INTERNAL, "int8 product before its QuantizeLinear");
    int src = q->int8 == 2 ? q->int8_bytes - 1 : n->inputs[0];
    const struct eng_shape *as = &e->g.values[n->inputs[0]].shape;
    const struct eng_value *w = &e->g.values[n->inputs[1]];
    int tb = n->op == OP_GEMM && n->trans_b;
    struct mm_int8 b = {.n = n, .dq = &e->g.nodes[w->dq_from - 1], .m = 1, .k = w->shape.dims[tb ? 1 : 0],
                        .nn = w->shape.dims[tb ? 0 : 1], .trans_b = tb};
    for (uint32_t i = 0; i + 1 < as->rank; i++)
        b.m *= as->dims[i];
    /* a MatMul's following Add of a bias, fused (plan.c); a Gemm's beta * C */
    int has_bias = n->input_count > 2 && n->inputs[2] >= 0 && (n->op != OP_GEMM || n->beta != 0.0f);
    dnnl_primitive_desc_t pd = NULL;
    struct veil_result r = mm_int8_scales(&e->g, &b);
    if (veil_ok(r))
        r = mm_int8_mds(&b, has_bias);
    if (veil_ok(r))
        r = mm_int8_pd(e, &b, has_bias, &pd);
    if (veil_ok(r))
        r = mm_int8_step(e, &b, src, has_bias, pd);
    dnnl_primitive_desc_destroy(pd);
    if (b.scales != NULL)
        veil_wipe(b.scales, (size_t)b.nn * sizeof *b.scales);
    free(b.scales);
    return r;
}
