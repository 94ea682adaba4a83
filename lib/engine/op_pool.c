/* SPDX-License-Identifier: Apache-2.0 */
/* MaxPool, AveragePool (2-D, ceil_mode, count_include_pad) and GlobalAveragePool, on oneDNN pooling v2. A 1-D pool
 * (a 3-D input [N, C, L]: audio, Swin's token pooling) runs as the 2-D one over an [N, C, L, 1] view: its 1-D
 * attributes are read as the H half of 2-D ones (kernel [k] -> [k, 1], pads [b, e] -> [b, 0, e, 0]). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"

static VEIL_RESULT pool_ints(struct eng_node *n, const char *name, int64_t *out, uint32_t want, int64_t def,
                             int64_t min, int required)
{
    int64_t v[VEIL_ENGINE_MAX_ATTR_INTS];
    uint32_t count = 0;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(eng_attr_ints(n, name, v, VEIL_ENGINE_MAX_ATTR_INTS, &count));
    VEIL_ENSURE(count > 0 || !required, VEIL_ERR_ONNX, "%s: attribute '%s' is required", label, name);
    VEIL_ENSURE(count == 0 || count == want || count == want / 2, VEIL_ERR_UNSUPPORTED, "%s: attribute '%s' has %"
                PRIu32 " values; only 1-D and 2-D pooling is supported", label, name, count);
    if (count > 0 && count == want / 2) { /* 1-D: [h] -> [h, 1 (or 0 for pads)], pads [b, e] -> [b, 0, e, 0] */
        int64_t w = want == 4 ? 0 : 1, e[4] = {v[0], w, want == 4 ? v[1] : 0, 0};
        memcpy(v, e, sizeof e);
        n->pool.one_d = 1;
        count = want;
    }
    for (uint32_t i = 0; i < want; i++) {
        out[i] = count ? v[i] : def;
        VEIL_ENSURE(out[i] >= min && out[i] <= VEIL_ENGINE_MAX_WINDOW, VEIL_ERR_ONNX, "%s: attribute '%s' holds %"
                    PRId64 ", outside [%" PRId64 ", %u]", label, name, out[i], min, VEIL_ENGINE_MAX_WINDOW);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_pool_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    struct eng_pool_params *p = &n->pool;
    char label[160];
    eng_node_label(n, label, sizeof label);
    p->one_d = 0;
    if (n->op == OP_GLOBALAVGPOOL)
        return VEIL_RESULT_OK;
    int64_t ceil_mode = 0, include = 0, storage = 0;
    VEIL_GUARD(eng_attr_auto_pad(n, &p->auto_pad));
    VEIL_GUARD(pool_ints(n, "kernel_shape", p->kernel, 2, 1, 1, 1));
    VEIL_GUARD(pool_ints(n, "strides", p->strides, 2, 1, 1, 0));
    VEIL_GUARD(pool_ints(n, "pads", p->pads, 4, 0, 0, 0));
    VEIL_GUARD(pool_ints(n, "dilations", p->dilations, 2, 1, 1, 0));
    VEIL_GUARD(eng_attr_int(n, "ceil_mode", 0, &ceil_mode));
    if (n->op == OP_MAXPOOL)
        VEIL_GUARD(eng_attr_int(n, "storage_order", 0, &storage));
    else
        VEIL_GUARD(eng_attr_int(n, "count_include_pad", 0, &include));
    VEIL_ENSURE(storage == 0, VEIL_ERR_UNSUPPORTED, "%s: storage_order=1 is not supported", label);
    VEIL_ENSURE(n->op == OP_MAXPOOL || (p->dilations[0] == 1 && p->dilations[1] == 1), VEIL_ERR_UNSUPPORTED,
                "%s: dilations are not supported for average pooling", label);
    VEIL_ENSURE((ceil_mode == 0 || ceil_mode == 1) && (include == 0 || include == 1), VEIL_ERR_ONNX,
                "%s: ceil_mode and count_include_pad must be 0 or 1", label);
    p->ceil_mode = (int)ceil_mode;
    p->count_include_pad = (int)include;
    return VEIL_RESULT_OK;
}

/* out per the ONNX/PyTorch rule; *pad_end receives the end padding oneDNN needs to produce exactly out. */
static VEIL_RESULT pool_dim(const struct eng_node *n, int64_t in, int i, int64_t *out, int64_t *pad_end)
{
    const struct eng_pool_params *p = &n->pool;
    int64_t k = p->kernel[i], s = p->strides[i], d = p->dilations[i], pb = p->pads[i], pe = p->pads[2 + i];
    int64_t extent = (k - 1) * d + 1, span = in + pb + pe - extent;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(span >= 0, VEIL_ERR_ONNX, "%s: the window (%" PRId64 ") is larger than the padded input (%" PRId64
                ")", label, extent, in + pb + pe);
    VEIL_ENSURE(pb < extent && pe < extent, VEIL_ERR_UNSUPPORTED, "%s: pads at least as large as the window are not "
                "supported", label);
    *out = (p->ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (p->ceil_mode && (*out - 1) * s >= in + pb)
        (*out)--;
    *pad_end = (*out - 1) * s + extent - in - pb;
    VEIL_ENSURE(!(n->op == OP_AVGPOOL && p->count_include_pad && *pad_end > pe), VEIL_ERR_UNSUPPORTED,
                "%s: ceil_mode=1 with count_include_pad=1 where the last window overhangs is not supported", label);
    return VEIL_RESULT_OK;
}

/* The pool's 4-D view of a shape: [N, C, L] as [N, C, L, 1]. */
static struct eng_shape pool_view(const struct eng_shape *s)
{
    struct eng_shape v = *s;
    if (v.rank == 3)
        v.dims[v.rank++] = 1;
    return v;
}

VEIL_RESULT eng_pool_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    char label[160];
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    int global = n->op == OP_GLOBALAVGPOOL, fits = x->shape.rank == 4 ? !n->pool.one_d
                                                    : x->shape.rank == 3 && (global || n->pool.one_d);
    VEIL_ENSURE(fits, VEIL_ERR_UNSUPPORTED, "%s: a %" PRIu32 "-D input with %s windows; only 3-D inputs with 1-D "
                "windows and 4-D (NCHW) inputs with 2-D windows are supported", eng_node_label(n, label, sizeof label),
                x->shape.rank, n->pool.one_d ? "1-D" : "2-D");
    struct eng_shape s = pool_view(&x->shape);
    if (n->op == OP_GLOBALAVGPOOL) {
        struct eng_pool_params *p = &n->pool;
        *p = (struct eng_pool_params){.kernel = {s.dims[2], s.dims[3]}, .strides = {1, 1}, .dilations = {1, 1}};
        VEIL_ENSURE(s.dims[2] > 0 && s.dims[3] > 0, VEIL_ERR_ONNX, "%s: empty input", label);
    }
    int64_t pad_end = 0;
    for (int i = 0; i < 2; i++) {
        struct eng_pool_params *p = &n->pool;
        int64_t extent = (p->kernel[i] - 1) * p->dilations[i] + 1;
        if (n->op != OP_GLOBALAVGPOOL)
            eng_auto_pads(p->auto_pad, s.dims[2 + i], p->strides[i], extent, &p->pads[i], &p->pads[2 + i]);
        VEIL_GUARD(pool_dim(n, s.dims[2 + i], i, &s.dims[2 + i], &pad_end));
    }
    s.rank = x->shape.rank; /* [N, C, L', 1] -> [N, C, L'] */
    g->values[n->outputs[0]].shape = s;
    return VEIL_RESULT_OK;
}

static dnnl_alg_kind_t pool_alg(const struct eng_node *n)
{
    if (n->op == OP_MAXPOOL)
        return dnnl_pooling_max;
    return n->pool.count_include_pad ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding;
}

static VEIL_RESULT pool_desc(struct veil_engine *e, const struct eng_node *n, const dnnl_memory_desc_t *src,
                             dnnl_primitive_desc_t *pd)
{
    const struct eng_pool_params *p = &n->pool;
    const struct eng_shape xs = pool_view(&e->g.values[n->inputs[0]].shape), ys = pool_view(&e->g.values[n->out].shape);
    int64_t out = 0, pe[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        VEIL_GUARD(pool_dim(n, xs.dims[2 + i], i, &out, &pe[i]));
    dnnl_dims_t yd = {ys.dims[0], ys.dims[1], ys.dims[2], ys.dims[3]};
    dnnl_dims_t strides = {p->strides[0], p->strides[1]}, kernel = {p->kernel[0], p->kernel[1]};
    dnnl_dims_t dil = {p->dilations[0] - 1, p->dilations[1] - 1}, pl = {p->pads[0], p->pads[1]};
    dnnl_dims_t pr = {pe[0], pe[1]};
    dnnl_memory_desc_t dst; /* a 1-D pool writes plain bytes, the 3-D output's */
    dnnl_format_tag_t tag = e->g.values[n->out].shape.rank == 3 ? dnnl_nchw : dnnl_format_tag_any;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&dst, 4, yd, dnnl_f32, tag), n, "descriptor");
    dnnl_pooling_v2_desc_t desc;
    ENG_GUARD_DNNL(dnnl_pooling_v2_forward_desc_init(&desc, dnnl_forward_inference, pool_alg(n), src, &dst, strides,
                   kernel, dil, pl, pr), n, "pooling setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(n, NULL, 0, &attr));
    dnnl_status_t st = dnnl_primitive_desc_create(pd, &desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, n, "pooling");
    return VEIL_RESULT_OK;
}

/* A 1-D pool's input: its plain [N, C, L] bytes viewed as [N, C, L, 1]. */
static VEIL_RESULT pool_input_1d(struct veil_engine *e, const struct eng_node *n, int *x, dnnl_memory_desc_t *src)
{
    const struct eng_shape xs = e->g.values[n->inputs[0]].shape, view = pool_view(&xs);
    dnnl_memory_desc_t plain;
    VEIL_GUARD(eng_md_plain(&plain, &xs));
    VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain, x));
    VEIL_GUARD(eng_md_plain(src, &view));
    return eng_view_value(e, *x, src, x);
}

VEIL_RESULT eng_pool_build(struct veil_engine *e, struct eng_node *n)
{
    int x = n->inputs[0], one_d = e->g.values[x].shape.rank == 3;
    dnnl_memory_desc_t src = e->g.values[x].md;
    if (one_d)
        VEIL_GUARD(pool_input_1d(e, n, &x, &src));
    dnnl_primitive_desc_t pd = NULL;
    VEIL_GUARD(pool_desc(e, n, &src, &pd));
    struct eng_step *s = NULL;
    struct veil_result r = eng_step_new(e, n, pd, &s);
    dnnl_memory_desc_t dst = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), plain;
    dnnl_primitive_desc_destroy(pd);
    VEIL_GUARD(r);
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_md_plain(&plain, &e->g.values[n->out].shape));
    VEIL_GUARD(eng_value_set_md(e, n->out, one_d ? &plain : &dst));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC, x, 0));
    return eng_step_value_as(e, &e->steps[step], DNNL_ARG_DST, n->out, 1, &dst);
}
