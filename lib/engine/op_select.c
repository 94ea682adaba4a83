/* SPDX-License-Identifier: Apache-2.0 */
/* ArgMax, ArgMin and TopK: selections along one axis, on the engine's kernels over the input as [outer, dim, inner]
 * (a classifier's predicted class, a detector's or sampler's best K); and GatherElements on computed tensors
 * (torch.gather), and ReduceMax / ReduceMin (oneDNN's reduction starts from -FLT_MAX: a row of -inf, an attention
 * row masked whole, came out -3.4e38 and then NaN downstream).
 *
 * Indices are held as float32, like every integer the engine computes (exact below 2^24). Ties go to the lower
 * index (ArgMax's select_last_index to the higher one); TopK always returns its K sorted, largest first (smallest
 * first with largest = 0), which ONNX allows for sorted = 0 as well. A NaN counts as larger than any number. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

/* n->axis: the axis; ArgMax / ArgMin: n->trans_a keepdims, n->trans_b select_last_index; TopK: n->trans_a
 * largest (sorted is read and always honoured). */
VEIL_RESULT eng_select_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    int64_t a = 0, b = 0;
    int topk = n->op == OP_TOPK;
    VEIL_GUARD(eng_attr_int(n, "axis", topk ? -1 : 0, &n->axis));
    VEIL_GUARD(eng_attr_int(n, topk ? "largest" : "keepdims", 1, &a));
    VEIL_GUARD(eng_attr_int(n, topk ? "sorted" : "select_last_index", topk, &b));
    char label[160];
    VEIL_ENSURE((a == 0 || a == 1) && (b == 0 || b == 1), VEIL_ERR_ONNX, "%s: %s must be 0 or 1",
                eng_node_label(n, label, sizeof label), topk ? "largest and sorted" : "keepdims and select_last_index");
    n->trans_a = (int)a;
    n->trans_b = topk ? 0 : (int)b;
    return VEIL_RESULT_OK;
}

/* TopK's K: a constant one-element INT64 within [1, dim]. */
static VEIL_RESULT topk_count(const struct eng_graph *g, const struct eng_node *n, int64_t dim, int64_t *k)
{
    const struct eng_value *v = &g->values[n->inputs[1]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(v->kind == VAL_CONST && v->dtype == VEIL_ONNX_INT64 && v->size == 8, VEIL_ERR_UNSUPPORTED,
                "%s: K must be a constant one-element INT64 (a K computed at run time is not supported)", label);
    memcpy(k, v->data, 8);
    VEIL_ENSURE(*k >= 1 && *k <= dim, VEIL_ERR_ONNX, "%s: K = %" PRId64 " is outside [1, %" PRId64 "] (the axis)",
                label, *k, dim);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_select_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank, axis = n->axis < 0 ? n->axis + r : n->axis;
    VEIL_ENSURE(r >= 1 && axis >= 0 && axis < r, VEIL_ERR_ONNX, "%s: axis %" PRId64 " is outside a %" PRId64
                "-D input", label, n->axis, r);
    n->axis = axis;
    struct eng_shape s = x->shape;
    if (n->op == OP_TOPK) {
        VEIL_ENSURE(n->output_count == 2, VEIL_ERR_ONNX, "%s: TopK has two outputs, values and indices", label);
        VEIL_GUARD(topk_count(g, n, s.dims[axis], &s.dims[axis]));
        struct eng_value *idx = &g->values[n->outputs[1]];
        idx->shape = s;
        idx->dtype = VEIL_ONNX_INT64;
        size_t size = 0;
        VEIL_GUARD(eng_shape_bytes(&s, idx->name, &size));
        idx->has_shape = 1;
        g->values[n->outputs[0]].shape = s;
        return VEIL_RESULT_OK;
    }
    s.dims[axis] = 1;
    if (!n->trans_a) {
        memmove(&s.dims[axis], &s.dims[axis + 1], (size_t)(r - axis - 1) * sizeof s.dims[0]);
        s.rank--;
    }
    g->values[n->outputs[0]].shape = s;
    g->values[n->outputs[0]].dtype = VEIL_ONNX_INT64;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_select_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape *s = &e->g.values[n->inputs[0]].shape;
    struct eng_kernel k = {.op = n->op == OP_TOPK ? KOP_TOPK : KOP_ARGMAX, .inputs = 1,
                           .out = e->g.values[n->outputs[0]].shape, .dim = s->dims[n->axis],
                           .select_min = n->op == OP_ARGMIN || (n->op == OP_TOPK && !n->trans_a),
                           .select_last = n->trans_b};
    eng_axis_split(s, n->axis, &k.outer, &k.inner);
    if (n->op != OP_TOPK)
        return eng_step_kernel(e, n, &k, n->inputs, n->outputs[0]);
    k.count = k.out.dims[n->axis];
    return eng_step_kernel2(e, n, &k, n->inputs, n->outputs[0], n->outputs[1]);
}

/* GatherElements: the indices' shape, each of its dims but the axis within the data's. */
VEIL_RESULT eng_gather_elements_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = &g->values[n->inputs[0]], *idx = &g->values[n->inputs[1]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(x->has_shape || x->kind == VAL_CONST, VEIL_ERR_INTERNAL, "%s: data without a shape", label);
    VEIL_ENSURE(idx->has_shape || idx->kind == VAL_CONST, VEIL_ERR_INTERNAL, "%s: indices without a shape", label);
    VEIL_ENSURE(idx->dtype == VEIL_ONNX_INT64 || idx->dtype == VEIL_ONNX_INT32, VEIL_ERR_ONNX, "%s: the indices must "
                "be INT64 or INT32", label);
    int64_t r = x->shape.rank, axis = n->axis < 0 ? n->axis + r : n->axis;
    VEIL_ENSURE(r >= 1 && axis >= 0 && axis < r && idx->shape.rank == x->shape.rank, VEIL_ERR_ONNX, "%s: axis %"
                PRId64 " or the indices' rank (%" PRIu32 ") does not fit the %" PRId64 "-D data", label, n->axis,
                idx->shape.rank, r);
    for (int64_t d = 0; d < r; d++)
        VEIL_ENSURE(d == axis || idx->shape.dims[d] <= x->shape.dims[d], VEIL_ERR_ONNX, "%s: the indices are larger "
                    "than the data along axis %" PRId64, label, d);
    n->axis = axis;
    g->values[n->outputs[0]].shape = idx->shape;
    g->values[n->outputs[0]].dtype = x->dtype;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_gather_elements_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape *x = &e->g.values[n->inputs[0]].shape;
    struct eng_kernel k = {.op = KOP_GATHERELEMENTS, .inputs = 2, .out = e->g.values[n->inputs[1]].shape,
                           .dim = x->dims[n->axis]};
    int64_t m = 1;
    for (uint32_t d = x->rank; d-- > 0;) {
        k.strides[0][d] = d == n->axis ? 0 : m;
        k.inner = d == n->axis ? m : k.inner;
        m *= x->dims[d];
    }
    return eng_step_kernel(e, n, &k, n->inputs, n->out);
}

/* ---- kernels --------------------------------------------------------------------------------------------- */

/* Whether a ranks before b: the larger (smaller with select_min) value, NaN above every number; ties by index. */
static int ranks_before(const struct eng_kernel *k, float a, int64_t ia, float b, int64_t ib)
{
    int na = isnan(a), nb = isnan(b);
    if (na != nb)
        return k->select_min ? nb : na;
    if (!na && a != b)
        return k->select_min ? a < b : a > b;
    return k->select_last ? ia > ib : ia < ib;
}

void eng_run_argmax(const struct eng_kernel *k, const float *in, float *out)
{
#pragma omp parallel for schedule(static) if (k->outer * k->inner >= 64)
    for (int64_t q = 0; q < k->outer * k->inner; q++) {
        const float *x = in + q / k->inner * k->dim * k->inner + q % k->inner;
        int64_t best = 0;
        for (int64_t j = 1; j < k->dim; j++)
            if (ranks_before(k, x[j * k->inner], j, x[best * k->inner], best))
                best = j;
        out[q] = (float)best;
    }
}

/* One slice's K best: an insertion into a sorted list of K, each candidate compared from the worst end (K is
 * small against the axis in practice: a top-5 of 1,000 classes). */
static void topk_slice(const struct eng_kernel *k, const float *x, int64_t *best, float *values, float *indices,
                       int64_t stride)
{
    int64_t have = 0;
    for (int64_t j = 0; j < k->dim; j++) {
        float v = x[j * k->inner];
        if (have == k->count && !ranks_before(k, v, j, x[best[have - 1] * k->inner], best[have - 1]))
            continue;
        int64_t at = have < k->count ? have++ : have - 1;
        while (at > 0 && ranks_before(k, v, j, x[best[at - 1] * k->inner], best[at - 1])) {
            best[at] = best[at - 1];
            at--;
        }
        best[at] = j;
    }
    for (int64_t i = 0; i < k->count; i++) {
        values[i * stride] = x[best[i] * k->inner];
        indices[i * stride] = (float)best[i];
    }
}

VEIL_RESULT eng_run_topk(const struct eng_kernel *k, const float *in, float *values, float *indices)
{
    int failed = 0;
#pragma omp parallel if (k->outer * k->inner >= 64) reduction(| : failed)
    {
        int64_t *best = malloc((size_t)k->count * sizeof *best);
        failed |= best == NULL;
#pragma omp for schedule(static)
        for (int64_t q = 0; q < k->outer * k->inner; q++) {
            int64_t o = q / k->inner, i = q % k->inner, at = o * k->count * k->inner + i;
            if (best != NULL)
                topk_slice(k, in + o * k->dim * k->inner + i, best, values + at, indices + at, k->inner);
        }
        free(best);
    }
    VEIL_ENSURE(!failed, VEIL_ERR_NOMEM, "TopK: out of memory");
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_run_gather_elements(const struct eng_kernel *k, const float *data, const float *idx, float *out,
                                    const struct eng_node *n)
{
    size_t total = eng_shape_count(&k->out);
    uint32_t r = k->out.rank;
    int64_t c[ENG_RANK] = {0};
    for (size_t i = 0; i < total; i++) {
        int64_t at = 0;
        VEIL_GUARD(eng_kernel_index(n, idx[i], k->dim, &at));
        at *= k->inner;
        for (uint32_t d = 0; d < r; d++)
            at += c[d] * k->strides[0][d];
        out[i] = data[at];
        for (uint32_t d = r; d-- > 0;) { /* the next coordinate, row-major */
            if (++c[d] < k->out.dims[d])
                break;
            c[d] = 0;
        }
    }
    return VEIL_RESULT_OK;
}

/* One pass over the input in row-major order, each element folded into its output: the larger (smaller) one, a NaN
 * sticking. An output's first element (its reduced coordinates all 0) comes before the rest of its group: it starts
 * the fold. */
void eng_run_reduce_extreme(const struct eng_kernel *k, const float *in, float *out)
{
    uint32_t r = k->in.rank;
    int64_t c[ENG_RANK] = {0}, ostride[ENG_RANK], m = 1, at = 0, moved = 0; /* moved: reduced coordinates not 0 */
    for (uint32_t d = r; d-- > 0;) {
        ostride[d] = k->out.dims[d] == 1 ? 0 : m;
        m *= k->out.dims[d];
    }
    size_t total = eng_shape_count(&k->in);
    for (size_t i = 0; i < total; i++) {
        float x = in[i], *o = &out[at];
        if (moved == 0 || (!isnan(*o) && (isnan(x) || (k->select_min ? x < *o : x > *o))))
            *o = x;
        for (uint32_t d = r; d-- > 0;) { /* the next coordinate, and the output it folds into */
            int reduced = k->out.dims[d] == 1 && k->in.dims[d] > 1;
            at += ostride[d];
            moved += reduced && c[d] == 0;
            if (++c[d] < k->in.dims[d])
                break;
            at -= ostride[d] * c[d];
            moved -= reduced;
            c[d] = 0;
        }
    }
}
