/* SPDX-License-Identifier: Apache-2.0 */
/* Gemm (Y = alpha * A * B' + beta * C, A computed, B and C constant) and MatMul (numpy batch broadcasting), on
 * the oneDNN matmul primitive. Constant weights are reordered once into the layout the primitive prefers. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

VEIL_RESULT eng_gemm_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    int64_t ta = 0, tb = 0;
    VEIL_GUARD(eng_attr_float(n, "alpha", 1.0f, &n->alpha));
    VEIL_GUARD(eng_attr_float(n, "beta", 1.0f, &n->beta));
    VEIL_GUARD(eng_attr_int(n, "transA", 0, &ta));
    VEIL_GUARD(eng_attr_int(n, "transB", 0, &tb));
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(ta == 0, VEIL_ERR_UNSUPPORTED, "%s: transA=1 is not supported", label);
    VEIL_ENSURE(tb == 0 || tb == 1, VEIL_ERR_ONNX, "%s: transB must be 0 or 1", label);
    VEIL_ENSURE(isfinite(n->alpha) && isfinite(n->beta), VEIL_ERR_ONNX, "%s: alpha and beta must be finite", label);
    n->trans_b = (int)tb;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_gemm_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *a = NULL;
    const float *data = NULL;
    size_t count = 0;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(eng_input_act(g, n, 0, &a));
    VEIL_GUARD(eng_const_floats(g, n, 1, &data, &count));
    const struct eng_value *b = &g->values[n->inputs[1]];
    VEIL_ENSURE(a->shape.rank == 2 && b->shape.rank == 2, VEIL_ERR_ONNX, "%s: A and B must be 2-D", label);
    int64_t k = b->shape.dims[n->trans_b ? 1 : 0], nn = b->shape.dims[n->trans_b ? 0 : 1];
    VEIL_ENSURE(a->shape.dims[1] == k, VEIL_ERR_ONNX, "%s: A is %" PRId64 "x%" PRId64 ", B' has %" PRId64 " rows",
                label, a->shape.dims[0], a->shape.dims[1], k);
    if (n->input_count > 2 && n->inputs[2] >= 0) {
        VEIL_GUARD(eng_const_floats(g, n, 2, &data, &count));
        const struct eng_value *c = &g->values[n->inputs[2]];
        int row = c->shape.rank == 0 || (c->shape.rank == 1) || (c->shape.rank == 2 && c->shape.dims[0] == 1);
        VEIL_ENSURE(row && (count == (size_t)nn || count == 1), VEIL_ERR_UNSUPPORTED, "%s: C must be a scalar or "
                    "a row of %" PRId64 " values", label, nn);
    }
    g->values[n->outputs[0]].shape = (struct eng_shape){.rank = 2, .dims = {a->shape.dims[0], nn}};
    return VEIL_RESULT_OK;
}

/* ---- MatMul ---------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_matmul_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    n->alpha = 1.0f;
    return VEIL_RESULT_OK;
}

static void pad_shape(const struct eng_shape *s, uint32_t rank, struct eng_shape *out)
{
    out->rank = rank;
    for (uint32_t i = 0; i < rank; i++)
        out->dims[i] = i < rank - s->rank ? 1 : s->dims[i - (rank - s->rank)];
}

VEIL_RESULT eng_matmul_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *a = &g->values[n->inputs[0]], *b = &g->values[n->inputs[1]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    if (a->kind == VAL_CONST) /* a constant A (B computed: both constant is folded) becomes a value (build) */
        VEIL_ENSURE(a->dtype == VEIL_ONNX_FLOAT, VEIL_ERR_UNSUPPORTED, "%s: a constant A must be float32", label);
    else
        VEIL_GUARD(eng_input_act(g, n, 0, &a));
    VEIL_ENSURE(b->kind != VAL_CONST || b->dtype == VEIL_ONNX_FLOAT, VEIL_ERR_UNSUPPORTED, "%s: B is not float32",
                label);
    VEIL_ENSURE(a->shape.rank >= 2 && b->shape.rank >= 2, VEIL_ERR_UNSUPPORTED, "%s: 1-D operands are not supported",
                label);
    uint32_t rank = a->shape.rank > b->shape.rank ? a->shape.rank : b->shape.rank;
    struct eng_shape pa, pb, out = {.rank = rank};
    pad_shape(&a->shape, rank, &pa);
    pad_shape(&b->shape, rank, &pb);
    VEIL_ENSURE(pa.dims[rank - 1] == pb.dims[rank - 2], VEIL_ERR_ONNX, "%s: inner dimensions differ (%" PRId64
                " vs %" PRId64 ")", label, pa.dims[rank - 1], pb.dims[rank - 2]);
    for (uint32_t i = 0; i + 2 < rank; i++) {
        VEIL_ENSURE(pa.dims[i] == pb.dims[i] || pa.dims[i] == 1 || pb.dims[i] == 1, VEIL_ERR_ONNX,
                    "%s: batch dimensions do not broadcast", label);
        out.dims[i] = pa.dims[i] == 1 ? pb.dims[i] : pa.dims[i];
    }
    out.dims[rank - 2] = pa.dims[rank - 2];
    out.dims[rank - 1] = pb.dims[rank - 1];
    g->values[n->outputs[0]].shape = out;
    return VEIL_RESULT_OK;
}

/* ---- Einsum: the batched matrix products of attention ----------------------------------------------------- */

#define EINSUM_MAX 64u

/* "bhik,bhkj->bhij" (spaces allowed): two operands of the output's rank r >= 2 with the same r - 2 leading batch
 * letters, in the output's order, each holding one output letter and the contraction letter in its last two
 * positions, in either order (trans_a, trans_b). Anything else (broadcasts, sums over batch letters, ellipses, more
 * operands) is refused by name. */
static int einsum_terms(const char *eq, char terms[3][EINSUM_MAX])
{
    size_t t = 0, len = 0;
    for (const char *p = eq; *p != '\0'; p++) {
        if (*p == ' ')
            continue;
        if (*p == ',' || (*p == '-' && p[1] == '>')) {
            if (t >= 2 || (*p == ',' && t != 0) || (*p == '-' && t != 1))
                return 0;
            terms[t++][len] = '\0';
            len = 0;
            p += *p == '-';
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) || len + 1 >= EINSUM_MAX)
            return 0;
        terms[t][len++] = *p;
    }
    terms[t][len] = '\0';
    return t == 2;
}

VEIL_RESULT eng_einsum_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    char eq[3 * EINSUM_MAX], t[3][EINSUM_MAX], label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(eng_attr_string(n, "equation", eq, sizeof eq));
    VEIL_ENSURE(n->input_count == 2, VEIL_ERR_UNSUPPORTED, "%s: an Einsum of %" PRIu32 " operands is not supported "
                "(two, as a batched matrix product, are)", label, n->input_count);
    VEIL_ENSURE(einsum_terms(eq, t), VEIL_ERR_UNSUPPORTED, "%s: equation '%.64s' is not 'A,B->C' of letters", label,
                eq);
    size_t r = strlen(t[2]);
    int ok = r >= 2 && r <= ENG_RANK && strlen(t[0]) == r && strlen(t[1]) == r &&
             memcmp(t[0], t[2], r - 2) == 0 && memcmp(t[1], t[2], r - 2) == 0;
    char i = ok ? t[2][r - 2] : 0, j = ok ? t[2][r - 1] : 0, a0 = t[0][r - 2], a1 = t[0][r - 1], b0 = t[1][r - 2],
         b1 = t[1][r - 1];
    char k = ok ? (a0 == i ? a1 : a0) : 0;
    ok = ok && i != j && k != i && k != j && ((a0 == i && a1 == k) || (a0 == k && a1 == i)) &&
         ((b0 == k && b1 == j) || (b0 == j && b1 == k));
    for (size_t q = 0; ok && q + 2 < r; q++)
        ok = t[2][q] != i && t[2][q] != j && t[2][q] != k && memchr(t[2], t[2][q], q) == NULL;
    VEIL_ENSURE(ok, VEIL_ERR_UNSUPPORTED, "%s: equation '%.64s' is not a batched matrix product (bik,bkj->bij, "
                "either operand transposed); other Einsum forms are not supported", label, eq);
    n->trans_a = a0 == k;
    n->trans_b = b1 == k;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_einsum_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *a = NULL, *b = NULL;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(eng_input_act(g, n, 0, &a));
    VEIL_GUARD(eng_input_act(g, n, 1, &b));
    uint32_t r = a->shape.rank;
    VEIL_ENSURE(r >= 2 && b->shape.rank == r, VEIL_ERR_ONNX, "%s: operands of rank %" PRIu32 " and %" PRIu32
                " do not fit the equation", label, r, b->shape.rank);
    struct eng_shape out = a->shape;
    for (uint32_t q = 0; q + 2 < r; q++)
        VEIL_ENSURE(a->shape.dims[q] == b->shape.dims[q], VEIL_ERR_ONNX, "%s: batch dimensions differ", label);
    int64_t ka = a->shape.dims[n->trans_a ? r - 2 : r - 1], kb = b->shape.dims[n->trans_b ? r - 1 : r - 2];
    VEIL_ENSURE(ka == kb, VEIL_ERR_ONNX, "%s: contracted dimensions differ (%" PRId64 " vs %" PRId64 ")", label, ka,
                kb);
    out.dims[r - 2] = a->shape.dims[n->trans_a ? r - 1 : r - 2];
    out.dims[r - 1] = b->shape.dims[n->trans_b ? r - 2 : r - 1];
    g->values[n->outputs[0]].shape = out;
    return VEIL_RESULT_OK;
}

/* ---- building -------------------------------------------------------------------------------------------- */

struct mm_build {
    struct eng_node *n;
    uint32_t rank;
    dnnl_memory_desc_t src, wgt, bias, dst, w_user;
    int has_bias, w_const;
    int flat;                   /* the product runs 2-D on views of the node's rank-N input and output */
};

static VEIL_RESULT mm_pd(struct veil_engine *e, struct mm_build *b, dnnl_primitive_desc_t *pd)
{
    dnnl_matmul_desc_t desc;
    ENG_GUARD_DNNL(dnnl_matmul_desc_init(&desc, &b->src, &b->wgt, b->has_bias ? &b->bias : NULL, &b->dst), b->n,
                   "matmul setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(b->n, b->n->post, b->n->post_count, &attr));
    dnnl_status_t st = dnnl_primitive_desc_create(pd, &desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, b->n, "matmul");
    return VEIL_RESULT_OK;
}

/* A (computed) in plain layout, viewed with the output's rank. */
static VEIL_RESULT mm_operand(struct veil_engine *e, int v, uint32_t rank, dnnl_memory_desc_t *md, int *out)
{
    struct eng_shape padded;
    dnnl_memory_desc_t plain;
    int x = -1;
    pad_shape(&e->g.values[v].shape, rank, &padded);
    VEIL_GUARD(eng_md_plain(&plain, &e->g.values[v].shape));
    VEIL_GUARD(eng_md_plain(md, &padded));
    VEIL_GUARD(eng_input_as(e, v, &plain, &x));
    return eng_view_value(e, x, md, out);
}

/* beta * C broadcast to a row of n values, into engine memory, described by md (n values). */
static VEIL_RESULT gemm_bias_as(struct veil_engine *e, struct mm_build *b, struct eng_step *s, int64_t n,
                                const dnnl_memory_desc_t *md)
{
    const float *c = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(&e->g, b->n, 2, &c, &count));
    VEIL_DEFER(veil_secure_free) struct veil_secure_mem tmp = {0};
    VEIL_GUARD(veil_secure_alloc(&tmp, (size_t)n * sizeof(float), 0));
    float *row = (float *)(void *)tmp.data;
    for (int64_t i = 0; i < n; i++)
        row[i] = b->n->beta * c[count == 1 ? 0 : i];
    return eng_step_const(e, s, DNNL_ARG_BIAS, md, md, row);
}

static VEIL_RESULT gemm_bias(struct veil_engine *e, struct mm_build *b, struct eng_step *s, int64_t n)
{
    return gemm_bias_as(e, b, s, n, &b->bias);
}

/* Constant weights, scaled by Gemm's alpha when it is not 1, reordered once. */
static VEIL_RESULT mm_weights(struct veil_engine *e, const struct mm_build *b, struct eng_step *s,
                              const dnnl_memory_desc_t *wmd, const float *data, size_t count)
{
    if (b->n->alpha == 1.0f)
        return eng_step_const(e, s, DNNL_ARG_WEIGHTS, wmd, &b->w_user, data);
    VEIL_DEFER(veil_secure_free) struct veil_secure_mem tmp = {0};
    VEIL_GUARD(veil_secure_alloc(&tmp, count * sizeof(float), 0));
    float *w = (float *)(void *)tmp.data;
    for (size_t i = 0; i < count; i++)
        w[i] = b->n->alpha * data[i];
    return eng_step_const(e, s, DNNL_ARG_WEIGHTS, wmd, &b->w_user, w);
}

/* Whether the constant weights are a large tensor of the caller's that the product can read in place, in their
 * plain layout (enum eng_borrow). */
static int mm_borrowable(const struct veil_engine *e, const struct mm_build *b)
{
    if (e->borrow == ENG_BORROW_NONE || !b->w_const || b->n->alpha != 1.0f)
        return 0;
    return eng_lendable(e, &e->g.values[b->n->inputs[1]]);
}

static VEIL_RESULT mm_step(struct veil_engine *e, struct mm_build *b, int a, int w, const_dnnl_primitive_desc_t pd)
{
    struct eng_step *s = NULL;
    VEIL_GUARD(eng_step_new(e, b->n, pd, &s));
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_value(e, s, DNNL_ARG_SRC, a, 0));
    if (b->w_const) {
        const float *data = NULL;
        size_t count = 0;
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        VEIL_GUARD(eng_const_floats(&e->g, b->n, 1, &data, &count));
        if (mm_borrowable(e, b) && dnnl_memory_desc_equal(wmd, &b->w_user))
            VEIL_GUARD(eng_step_borrow(e, &e->steps[step], DNNL_ARG_WEIGHTS, wmd, data));
        else
            VEIL_GUARD(mm_weights(e, b, &e->steps[step], wmd, data, count));
    } else {
        VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_WEIGHTS, w, 0));
    }
    if (b->has_bias)
        VEIL_GUARD(gemm_bias(e, b, &e->steps[step], b->bias.dims[1]));
    int dst = b->n->out;
    if (b->flat) { /* the output keeps its own shape (plain); the product writes a 2-D view of it */
        dnnl_memory_desc_t md;
        VEIL_GUARD(eng_md_plain(&md, &e->g.values[b->n->out].shape));
        VEIL_GUARD(eng_value_set_md(e, b->n->out, &md));
        VEIL_GUARD(eng_view_value(e, b->n->out, &b->dst, &dst));
    } else {
        VEIL_GUARD(eng_value_set_md(e, b->n->out, &b->dst));
    }
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, dst, 1);
}

/* Under bf16 precision the operands are bf16 (computed ones converted as they enter, in the same layout), when
 * oneDNN has a kernel for it; else float32. */
static VEIL_RESULT mm_bf16(struct veil_engine *e, struct mm_build *b, int *a, int *w, dnnl_primitive_desc_t *pd)
{
    struct mm_build t = *b;
    t.src.data_type = dnnl_bf16;
    t.wgt.data_type = dnnl_bf16;
    if (!veil_ok(mm_pd(e, &t, pd))) {
        veil_error_clear();
        *pd = NULL;
        return VEIL_RESULT_OK;
    }
    b->src = t.src, b->wgt = t.wgt;
    struct veil_result r = eng_input_as(e, *a, &b->src, a);
    if (veil_ok(r) && *w >= 0)
        r = eng_input_as(e, *w, &b->wgt, w);
    if (!veil_ok(r)) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
    }
    return r;
}

/* ---- a Linear layer as a 1x1 convolution ------------------------------------------------------------------- */

/* A 2-D product [M, K] x [K, N] with constant weights is a 1x1 convolution over M pixels of K channels, channels
 * last: the source and destination bytes are the plain [M, K] and [M, N] matrices unchanged, and the weights are
 * reordered once into the convolution's blocked layout. On AVX2 oneDNN 2.6 runs it on its jit 1x1 kernel, about 1.5x
 * faster than its matmul (gemm:jit, which packs the plain weights on every call) on BERT-base at sequence 128
 * (bench/onednn_versions.c, bert vs bert_1x1). On AVX-512 and AMX the matmul packs its weights at load and is kept.
 * Only float32; only where oneDNN's choice is a 1x1 kernel, else the matmul as before; not for weights a model past
 * 1 GiB lends in place (ENG_BORROW_FORCE), where one copy of the weights matters more. */
struct mm_conv {
    dnnl_memory_desc_t src, wgt, w_user, bias, dst;
    int64_t m, k, n;
};

static VEIL_RESULT conv1x1_mds(const struct mm_build *b, struct mm_conv *c)
{
    c->m = b->src.dims[0], c->k = b->src.dims[1], c->n = b->dst.dims[1];
    dnnl_dims_t sd = {1, c->k, c->m, 1}, wd = {c->n, c->k, 1, 1}, dd = {1, c->n, c->m, 1}, bd = {c->n};
    /* B [K, N] row-major: (o, i) at i * N + o; transB's [N, K]: o * K + i */
    int tb = b->n->op == OP_GEMM && b->n->trans_b;
    dnnl_dims_t ws = {tb ? c->k : 1, tb ? 1 : c->n, c->n * c->k, c->n * c->k};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&c->src, 4, sd, dnnl_f32, dnnl_acdb), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&c->dst, 4, dd, dnnl_f32, dnnl_acdb), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&c->wgt, 4, wd, dnnl_f32, dnnl_format_tag_any), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_strides(&c->w_user, 4, wd, dnnl_f32, ws), b->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&c->bias, 1, bd, dnnl_f32, dnnl_a), b->n, "descriptor");
    return VEIL_RESULT_OK;
}

/* The convolution's descriptor when oneDNN runs it on a 1x1 kernel; *pd NULL otherwise. */
static VEIL_RESULT conv1x1_pd(struct veil_engine *e, const struct mm_build *b, struct mm_conv *c,
                              dnnl_primitive_desc_t *pd)
{
    *pd = NULL;
    dnnl_convolution_desc_t desc;
    dnnl_dims_t ones = {1, 1}, zeros = {0, 0};
    ENG_GUARD_DNNL(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                      &c->src, &c->wgt, b->has_bias ? &c->bias : NULL, &c->dst,
                                                      ones, zeros, zeros), b->n, "convolution setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(b->n, b->n->post, b->n->post_count, &attr));
    dnnl_primitive_desc_t made = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&made, &desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    const char *impl = NULL;
    int one_by_one = st == dnnl_success && dnnl_primitive_desc_query(made, dnnl_query_impl_info_str, 0, &impl) ==
                     dnnl_success && impl != NULL && strstr(impl, "1x1") != NULL;
    if (one_by_one)
        *pd = made;
    else if (st == dnnl_success)
        dnnl_primitive_desc_destroy(made);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT conv1x1_step(struct veil_engine *e, struct mm_build *b, struct mm_conv *c, int a,
                                const_dnnl_primitive_desc_t pd)
{
    struct eng_step *s = NULL;
    int src = -1, dst = -1;
    VEIL_GUARD(eng_view_value(e, a, &c->src, &src));
    VEIL_GUARD(eng_step_new(e, b->n, pd, &s));
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_value(e, s, DNNL_ARG_SRC, src, 0));
    const float *data = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(&e->g, b->n, 1, &data, &count));
    struct mm_build wb = *b;
    wb.w_user = c->w_user;
    VEIL_GUARD(mm_weights(e, &wb, &e->steps[step], dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), data,
                          count));
    if (b->has_bias)
        VEIL_GUARD(gemm_bias_as(e, b, &e->steps[step], c->n, &c->bias));
    dnnl_memory_desc_t plain;
    VEIL_GUARD(eng_md_plain(&plain, &e->g.values[b->n->out].shape));
    VEIL_GUARD(eng_value_set_md(e, b->n->out, &plain));
    VEIL_GUARD(eng_view_value(e, b->n->out, &c->dst, &dst));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, dst, 1);
}

/* Builds the product as a 1x1 convolution when that applies (*done 1), else leaves it to the matmul. */
static VEIL_RESULT mm_as_conv1x1(struct veil_engine *e, struct mm_build *b, int a, int *done)
{
    *done = 0;
    if (eng_isa_avx512() || !b->w_const || b->rank != 2 || b->src.ndims != 2 || b->dst.ndims != 2 ||
        (e->borrow == ENG_BORROW_FORCE && mm_borrowable(e, b))) /* a model past 1 GiB: one copy of its weights */
        return VEIL_RESULT_OK;
    struct mm_conv c;
    dnnl_primitive_desc_t pd = NULL;
    VEIL_GUARD(conv1x1_mds(b, &c));
    VEIL_GUARD(conv1x1_pd(e, b, &c, &pd));
    if (pd == NULL)
        return VEIL_RESULT_OK;
    struct veil_result r = conv1x1_step(e, b, &c, a, pd);
    dnnl_primitive_desc_destroy(pd);
    *done = veil_ok(r);
    return r;
}

static VEIL_RESULT mm_finish(struct veil_engine *e, struct mm_build *b, int a, int w)
{
    dnnl_primitive_desc_t pd = NULL;
    int head = e->g.values[b->n->out].is_output; /* the classifier: its logits are the answer, kept float32 */
    if (e->opts.precision == VEIL_ENGINE_BF16 && !head)
        VEIL_GUARD(mm_bf16(e, b, &a, &w, &pd));
    if (pd == NULL) {
        int done = 0;
        VEIL_GUARD(mm_as_conv1x1(e, b, a, &done));
        if (done)
            return VEIL_RESULT_OK;
    }
    if (pd == NULL && e->borrow == ENG_BORROW_FORCE && mm_borrowable(e, b))
        b->wgt = b->w_user;
    if (pd == NULL)
        VEIL_GUARD(mm_pd(e, b, &pd));
    struct veil_result r = mm_step(e, b, a, w, pd);
    dnnl_primitive_desc_destroy(pd);
    return r;
}

VEIL_RESULT eng_gemm_build(struct veil_engine *e, struct eng_node *n)
{
    if (n->int8)
        return eng_gemm_int8_build(e, n);
    struct mm_build b = {.n = n, .rank = 2, .w_const = 1};
    const struct eng_value *bv = &e->g.values[n->inputs[1]];
    int64_t k = bv->shape.dims[n->trans_b ? 1 : 0], nn = bv->shape.dims[n->trans_b ? 0 : 1];
    dnnl_dims_t wd = {k, nn}, bd = {1, nn};
    int a = -1;
    VEIL_GUARD(mm_operand(e, n->inputs[0], 2, &b.src, &a));
    VEIL_GUARD(eng_md_plain(&b.dst, &e->g.values[n->out].shape));
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b.wgt, 2, wd, dnnl_f32, dnnl_format_tag_any), n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b.w_user, 2, wd, dnnl_f32, n->trans_b ? dnnl_ba : dnnl_ab), n,
                   "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b.bias, 2, bd, dnnl_f32, dnnl_ab), n, "descriptor");
    b.has_bias = n->input_count > 2 && n->inputs[2] >= 0 && n->beta != 0.0f;
    return mm_finish(e, &b, a, -1);
}

/* A constant 2-D B under an A of rank 3 or more (a transformer's Linear layers, [batch, sequence, K] x [K, N]): one
 * 2-D product [M, K] x [K, N], M the product of A's leading dims, on views of the plain input and output. oneDNN
 * packs the weights of a 2-D product (format any) but keeps them plain in a batched one, which is about 1.5x slower
 * on BERT's layers. */
static VEIL_RESULT matmul_flat(struct veil_engine *e, struct eng_node *n)
{
    /* copies: the input's reorder and view add values, which may move the array */
    const struct eng_shape as = e->g.values[n->inputs[0]].shape, bs = e->g.values[n->inputs[1]].shape;
    int64_t k = bs.dims[0], nn = bs.dims[1], m = 1;
    for (uint32_t i = 0; i + 1 < as.rank; i++)
        m *= as.dims[i];
    struct eng_shape a2 = {.rank = 2, .dims = {m, k}}, o2 = {.rank = 2, .dims = {m, nn}};
    struct mm_build b = {.n = n, .rank = 2, .w_const = 1, .flat = 1};
    dnnl_memory_desc_t plain;
    int x = -1, a = -1;
    VEIL_GUARD(eng_md_plain(&plain, &as));
    VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain, &x));
    VEIL_GUARD(eng_md_plain(&b.src, &a2));
    VEIL_GUARD(eng_view_value(e, x, &b.src, &a));
    VEIL_GUARD(eng_md_plain(&b.dst, &o2));
    VEIL_GUARD(eng_md_plain(&b.w_user, &bs));
    dnnl_dims_t wd = {k, nn}, bd = {1, nn};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b.wgt, 2, wd, dnnl_f32, dnnl_format_tag_any), n, "descriptor");
    b.has_bias = n->input_count > 2 && n->inputs[2] >= 0; /* a following Add of a bias, fused (plan.c) */
    if (b.has_bias)
        ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b.bias, 2, bd, dnnl_f32, dnnl_ab), n, "descriptor");
    return mm_finish(e, &b, a, -1);
}

/* An Einsum operand in plain layout, or, transposed, a view of it with its last two dims and strides swapped. */
static VEIL_RESULT einsum_operand(struct veil_engine *e, int v, int trans, dnnl_memory_desc_t *md, int *out)
{
    const struct eng_shape copy = e->g.values[v].shape, *s = &copy; /* the reorder below may move the values */
    dnnl_memory_desc_t plain;
    int x = -1;
    VEIL_GUARD(eng_md_plain(&plain, s));
    VEIL_GUARD(eng_input_as(e, v, &plain, &x));
    if (!trans) {
        *md = plain;
        *out = x;
        return VEIL_RESULT_OK;
    }
    uint32_t r = s->rank;
    dnnl_dims_t dims = {0}, strides = {0};
    int64_t m = 1;
    for (uint32_t i = r; i-- > 0;) {
        strides[i] = m;
        dims[i] = s->dims[i];
        m *= s->dims[i];
    }
    int64_t d = dims[r - 1], st = strides[r - 1];
    dims[r - 1] = dims[r - 2], strides[r - 1] = strides[r - 2];
    dims[r - 2] = d, strides[r - 2] = st;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_strides(md, (int)r, dims, dnnl_f32, strides), NULL, "descriptor");
    return eng_view_value(e, x, md, out);
}

VEIL_RESULT eng_einsum_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape out = e->g.values[n->out].shape; /* a copy: the operands' views add values */
    struct mm_build b = {.n = n, .rank = out.rank};
    int a = -1, w = -1;
    VEIL_GUARD(einsum_operand(e, n->inputs[0], n->trans_a, &b.src, &a));
    VEIL_GUARD(einsum_operand(e, n->inputs[1], n->trans_b, &b.wgt, &w));
    VEIL_GUARD(eng_md_plain(&b.dst, &out));
    n->alpha = 1.0f;
    return mm_finish(e, &b, a, w);
}

VEIL_RESULT eng_matmul_build(struct veil_engine *e, struct eng_node *n)
{
    if (n->int8)
        return eng_gemm_int8_build(e, n);
    if (e->g.values[n->inputs[0]].kind == VAL_CONST) { /* W @ x: W copied into a value of its own, then as usual */
        int a = -1;
        VEIL_GUARD(eng_const_value(e, n, n->inputs[0], &a));
        n->inputs[0] = a;
    }
    if (e->g.values[n->inputs[1]].kind == VAL_CONST && e->g.values[n->inputs[1]].shape.rank == 2 &&
        e->g.values[n->inputs[0]].shape.rank >= 3)
        return matmul_flat(e, n);
    /* copies: the operands' reorders and views add values, which may move the array */
    const struct eng_shape out = e->g.values[n->out].shape, bshape = e->g.values[n->inputs[1]].shape;
    int b_const = e->g.values[n->inputs[1]].kind == VAL_CONST;
    struct mm_build b = {.n = n, .rank = out.rank};
    int a = -1, w = -1;
    VEIL_GUARD(mm_operand(e, n->inputs[0], out.rank, &b.src, &a));
    VEIL_GUARD(eng_md_plain(&b.dst, &out));
    if (!b_const) {
        VEIL_GUARD(mm_operand(e, n->inputs[1], out.rank, &b.wgt, &w));
        return mm_finish(e, &b, a, w);
    }
    struct eng_shape padded;
    pad_shape(&bshape, out.rank, &padded);
    VEIL_GUARD(eng_md_plain(&b.w_user, &padded));
    dnnl_dims_t wd = {0};
    for (uint32_t i = 0; i < padded.rank; i++)
        wd[i] = padded.dims[i];
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&b.wgt, (int)padded.rank, wd, dnnl_f32, dnnl_format_tag_any), n,
                   "descriptor");
    b.w_const = 1;
    return mm_finish(e, &b, a, -1);
}
