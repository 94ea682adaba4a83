/* SPDX-License-Identifier: Apache-2.0 */
/* CumSum and GatherND on computed tensors (fold.c evaluates both on constants), and InstanceNormalization.
 *
 * CumSum (position ids from an attention mask: mask.cumsum(-1)) runs on the engine's kernel KOP_CUMSUM over the
 * input as [outer, dim, inner], its axis a constant. GatherND (a boolean mask's indexing as the dynamo exporter
 * writes it) takes constant indices: they are turned at load into the flat positions of the slices they address,
 * a hidden constant, and the gather runs on KOP_GATHER over the data as [1, product of the indexed dims, slice]. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

/* ---- CumSum ---------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_cumsum_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    int64_t exclusive = 0, reverse = 0;
    VEIL_GUARD(eng_attr_int(n, "exclusive", 0, &exclusive));
    VEIL_GUARD(eng_attr_int(n, "reverse", 0, &reverse));
    n->trans_a = exclusive != 0;
    n->trans_b = reverse != 0;
    return VEIL_RESULT_OK;
}

/* The axis input: a constant scalar (or one-element) integer, within the rank; into n->axis, normalised. */
VEIL_RESULT eng_cumsum_axis(const struct eng_graph *g, struct eng_node *n, uint32_t rank)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    const struct eng_value *a = &g->values[n->inputs[1]];
    VEIL_ENSURE(a->kind == VAL_CONST && (a->dtype == VEIL_ONNX_INT64 || a->dtype == VEIL_ONNX_INT32) &&
                a->size == (a->dtype == VEIL_ONNX_INT64 ? 8u : 4u), VEIL_ERR_UNSUPPORTED, "%s: axis must be a "
                "constant integer scalar", label);
    int64_t axis = 0;
    if (a->dtype == VEIL_ONNX_INT64) {
        memcpy(&axis, a->data, 8);
    } else {
        int32_t v;
        memcpy(&v, a->data, 4);
        axis = v;
    }
    axis = axis < 0 ? axis + (int64_t)rank : axis;
    VEIL_ENSURE(axis >= 0 && axis < (int64_t)rank, VEIL_ERR_ONNX, "%s: axis out of range", label);
    n->axis = axis;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_cumsum_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    char label[160];
    VEIL_ENSURE(x->shape.rank >= 1, VEIL_ERR_ONNX, "%s: the input is a scalar", eng_node_label(n, label, sizeof label));
    VEIL_GUARD(eng_cumsum_axis(g, n, x->shape.rank));
    struct eng_value *out = &g->values[n->outputs[0]];
    out->shape = x->shape;
    out->dtype = x->dtype;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_cumsum_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape *s = &e->g.values[n->inputs[0]].shape;
    struct eng_kernel k = {.op = KOP_CUMSUM, .inputs = 1, .out = *s, .dim = s->dims[n->axis],
                           .exclusive = n->trans_a, .reverse = n->trans_b};
    eng_axis_split(s, n->axis, &k.outer, &k.inner);
    return eng_step_kernel(e, n, &k, n->inputs, n->out);
}

/* ---- GatherND -------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_gather_nd_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    int64_t batch = 0;
    VEIL_GUARD(eng_attr_int(n, "batch_dims", 0, &batch));
    char label[160];
    VEIL_ENSURE(batch == 0, VEIL_ERR_UNSUPPORTED, "%s: batch_dims %" PRId64 " is not supported (0 is)",
                eng_node_label(n, label, sizeof label), batch);
    n->fill_i = -1; /* the hidden constant of flat positions, made by the shape rule */
    return VEIL_RESULT_OK;
}

/* The output's shape, indices.shape[:-1] + data.shape[m:], and m, the index depth; shared with the fold. */
VEIL_RESULT eng_gather_nd_shape(const struct eng_node *n, const struct eng_shape *data, const struct eng_shape *idx,
                                struct eng_shape *out, uint32_t *depth)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(idx->rank >= 1 && data->rank >= 1, VEIL_ERR_ONNX, "%s: data and indices need a rank", label);
    int64_t m = idx->dims[idx->rank - 1];
    VEIL_ENSURE(m >= 1 && m <= (int64_t)data->rank, VEIL_ERR_ONNX, "%s: an index of %" PRId64 " coordinates into "
                "data of rank %" PRIu32, label, m, data->rank);
    VEIL_ENSURE(idx->rank - 1 + data->rank - (uint32_t)m <= ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: the output's rank "
                "exceeds %u", label, ENG_RANK);
    *out = (struct eng_shape){0};
    for (uint32_t i = 0; i + 1 < idx->rank; i++)
        out->dims[out->rank++] = idx->dims[i];
    for (uint32_t i = (uint32_t)m; i < data->rank; i++)
        out->dims[out->rank++] = data->dims[i];
    *depth = (uint32_t)m;
    return VEIL_RESULT_OK;
}

/* The flat position (over data's first m dims) of each index tuple, checked and made non-negative. */
VEIL_RESULT eng_gather_nd_positions(const struct eng_node *n, const struct eng_shape *data, const int64_t *idx,
                                    size_t tuples, uint32_t m, int64_t *pos)
{
    char label[160];
    for (size_t t = 0; t < tuples; t++) {
        int64_t at = 0;
        for (uint32_t j = 0; j < m; j++) {
            int64_t d = data->dims[j], c = idx[t * m + j];
            VEIL_ENSURE(c >= -d && c < d, VEIL_ERR_ONNX, "%s: index %" PRId64 " is out of range [-%" PRId64 ", %"
                        PRId64 ")", eng_node_label(n, label, sizeof label), c, d, d);
            at = at * d + (c < 0 ? c + d : c);
        }
        pos[t] = at;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT read_indices(const struct eng_node *n, const struct eng_value *v, int64_t *out, size_t count)
{
    char label[160];
    VEIL_ENSURE(v->dtype == VEIL_ONNX_INT64 || v->dtype == VEIL_ONNX_INT32, VEIL_ERR_ONNX, "%s: indices must be "
                "INT64 or INT32", eng_node_label(n, label, sizeof label));
    VEIL_ENSURE(v->size == count * (v->dtype == VEIL_ONNX_INT64 ? 8u : 4u), VEIL_ERR_INTERNAL, "%s: indices' size",
                eng_node_label(n, label, sizeof label));
    for (size_t i = 0; i < count; i++) {
        if (v->dtype == VEIL_ONNX_INT64) {
            memcpy(&out[i], v->data + 8 * i, 8);
        } else {
            int32_t x;
            memcpy(&x, v->data + 4 * i, 4);
            out[i] = x;
        }
    }
    return VEIL_RESULT_OK;
}

/* The flat positions as a hidden INT64 constant (index n->fill_i), made once. */
static VEIL_RESULT positions_value(struct eng_graph *g, struct eng_node *n, uint32_t m)
{
    if (n->fill_i >= 0)
        return VEIL_RESULT_OK;
    const struct eng_value *idx = &g->values[n->inputs[1]], *data = &g->values[n->inputs[0]];
    size_t count = eng_shape_count(&idx->shape), tuples = count / m;
    int64_t *raw = malloc((count ? count : 1) * sizeof *raw), *pos = malloc((tuples ? tuples : 1) * sizeof *pos);
    if (raw == NULL || pos == NULL) {
        free(raw);
        free(pos);
        VEIL_BAIL(VEIL_ERR_NOMEM, "out of memory");
    }
    struct veil_result r = read_indices(n, idx, raw, count);
    if (veil_ok(r))
        r = eng_gather_nd_positions(n, &data->shape, raw, tuples, m, pos);
    free(raw);
    int hidden = -1;
    if (veil_ok(r))
        r = eng_graph_add_hidden(g, &hidden);
    if (!veil_ok(r)) {
        free(pos);
        return r;
    }
    struct eng_value *v = &g->values[hidden];
    v->kind = VAL_CONST;
    v->dtype = VEIL_ONNX_INT64;
    v->shape = (struct eng_shape){.rank = 1, .dims = {(int64_t)tuples}};
    v->has_shape = 1;
    v->owned = (uint8_t *)pos;
    v->data = v->owned;
    v->size = tuples * sizeof *pos;
    n->fill_i = hidden;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_gather_nd_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    const struct eng_value *idx = &g->values[n->inputs[1]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    struct eng_shape s;
    uint32_t m = 0;
    VEIL_GUARD(eng_gather_nd_shape(n, &x->shape, &idx->shape, &s, &m));
    int64_t rows = 1;
    for (uint32_t i = 0; i < m; i++)
        rows *= x->shape.dims[i];
    VEIL_ENSURE(rows <= (INT64_C(1) << 24), VEIL_ERR_UNSUPPORTED, "%s: more than 2^24 indexed slices", label);
    if (idx->kind == VAL_CONST)
        VEIL_GUARD(positions_value(g, n, m));
    else
        VEIL_ENSURE(idx->dtype == VEIL_ONNX_INT64 || idx->dtype == VEIL_ONNX_INT32, VEIL_ERR_ONNX, "%s: indices must "
                    "be INT64 or INT32", label);
    struct eng_value *out = &g->values[n->outputs[0]];
    out->shape = s;
    out->dtype = g->values[n->inputs[0]].dtype;
    return VEIL_RESULT_OK;
}

/* Computed indices (CLIP's text pooling at the argmax of each row): a kernel reads each tuple at run time. */
static VEIL_RESULT gather_nd_computed(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape *x = &e->g.values[n->inputs[0]].shape, *idx = &e->g.values[n->inputs[1]].shape;
    struct eng_kernel k = {.op = KOP_GATHERND, .inputs = 2, .out = e->g.values[n->out].shape, .in = *x,
                           .dim = idx->dims[idx->rank - 1], .inner = 1};
    k.count = (int64_t)eng_shape_count(idx) / k.dim;
    for (uint32_t i = (uint32_t)k.dim; i < x->rank; i++)
        k.inner *= x->dims[i];
    return eng_step_kernel(e, n, &k, n->inputs, n->out);
}

VEIL_RESULT eng_run_gather_nd(const struct eng_kernel *k, const float *data, const float *idx, float *out,
                              const struct eng_node *n)
{
    for (int64_t t = 0; t < k->count; t++) {
        int64_t at = 0;
        for (int64_t j = 0; j < k->dim; j++) {
            int64_t c = 0;
            VEIL_GUARD(eng_kernel_index(n, idx[t * k->dim + j], k->in.dims[j], &c));
            at = at * k->in.dims[j] + c;
        }
        memcpy(out + t * k->inner, data + at * k->inner, (size_t)k->inner * sizeof *out);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_gather_nd_build(struct veil_engine *e, struct eng_node *n)
{
    if (n->fill_i < 0)
        return gather_nd_computed(e, n);
    const struct eng_shape *x = &e->g.values[n->inputs[0]].shape;
    const struct eng_value *pos = &e->g.values[n->fill_i];
    uint32_t m = (uint32_t)e->g.values[n->inputs[1]].shape.dims[e->g.values[n->inputs[1]].shape.rank - 1];
    struct eng_kernel k = {.op = KOP_GATHER, .out = e->g.values[n->out].shape, .outer = 1, .dim = 1, .inner = 1,
                           .count = pos->shape.dims[0]};
    for (uint32_t i = 0; i < x->rank; i++)
        *(i < m ? &k.dim : &k.inner) *= x->dims[i];
    int inputs[2] = {n->inputs[0], (int)n->fill_i};
    return eng_step_kernel(e, n, &k, inputs, n->out);
}

/* ---- InstanceNormalization ------------------------------------------------------------------------------ */

VEIL_RESULT eng_instnorm_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    VEIL_GUARD(eng_attr_float(n, "epsilon", 1e-5f, &n->epsilon));
    char label[160];
    VEIL_ENSURE(n->epsilon >= 0, VEIL_ERR_ONNX, "%s: negative epsilon", eng_node_label(n, label, sizeof label));
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_instnorm_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(x->shape.rank >= 3, VEIL_ERR_ONNX, "%s: the input needs a batch, channels and spatial dims", label);
    for (uint32_t i = 1; i < 3; i++) {
        const struct eng_value *v = &g->values[n->inputs[i]];
        VEIL_ENSURE(v->shape.rank == 1 && v->shape.dims[0] == x->shape.dims[1], VEIL_ERR_ONNX, "%s: scale and B "
                    "must hold one value per channel (%" PRId64 ")", label, x->shape.dims[1]);
    }
    g->values[n->outputs[0]].shape = x->shape;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_instnorm_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape *s = &e->g.values[n->inputs[0]].shape;
    struct eng_kernel k = {.op = KOP_INSTNORM, .inputs = 3, .out = *s, .outer = s->dims[0] * s->dims[1], .inner = 1,
                           .dim = s->dims[1], .eps = n->epsilon};
    for (uint32_t i = 2; i < s->rank; i++)
        k.inner *= s->dims[i];
    return eng_step_kernel(e, n, &k, n->inputs, n->out);
}
