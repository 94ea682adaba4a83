/* SPDX-License-Identifier: Apache-2.0 */
/* Load-time constant folding: the shape arithmetic exporters leave in graphs (x.view(x.size(0), -1), the pads
 * of TensorFlow-style "same" padding) is evaluated once, here, on constants and on the planned shapes.
 *
 * Shape, Gather, Unsqueeze, Squeeze, ConstantOfShape, Slice, Transpose and Cast run only here: on a computed
 * tensor they are refused. Identity and Reshape of a constant become views of its data. Every tensor this file
 * computes is capped at ENG_MAX_FOLD_COUNT elements; element types are FLOAT, INT32 and INT64.
 * Pad (mode constant, value 0) is parsed and shaped here and is folded into the padding of the Conv that
 * reads it (plan.c); a Pad without such a Conv is refused when the steps are built, unless it pads nothing. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "engine/internal.h"
#include "onnx/onnx.h"
#include "onnx/pb.h"

/* ---- elements -------------------------------------------------------------------------------------------- */

static size_t dtype_width(int32_t t)
{
    return t == VEIL_ONNX_INT64 ? 8 : t == VEIL_ONNX_FLOAT || t == VEIL_ONNX_INT32 ? 4 : t == VEIL_ONNX_BOOL ? 1 : 0;
}

static int64_t get_i(const struct eng_value *v, size_t i)
{
    if (v->dtype == VEIL_ONNX_INT64) {
        int64_t x;
        memcpy(&x, v->data + 8 * i, 8);
        return x;
    }
    if (v->dtype == VEIL_ONNX_BOOL)
        return v->data[i] != 0;
    int32_t x;
    memcpy(&x, v->data + 4 * i, 4);
    return x;
}

static double get_f(const struct eng_value *v, size_t i)
{
    if (v->dtype != VEIL_ONNX_FLOAT)
        return (double)get_i(v, i);
    float x;
    memcpy(&x, v->data + 4 * i, 4);
    return (double)x;
}

static VEIL_RESULT put(uint8_t *out, int32_t dtype, size_t i, int64_t iv, double fv, int is_float, const char *label)
{
    if (dtype == VEIL_ONNX_FLOAT) {
        float f = is_float ? (float)fv : (float)iv;
        memcpy(out + 4 * i, &f, 4);
        return VEIL_RESULT_OK;
    }
    if (is_float) {
        if (dtype == VEIL_ONNX_BOOL) {
            out[i] = fv != 0; /* NaN and the infinities are true */
            return VEIL_RESULT_OK;
        }
        /* ONNX Cast truncates toward zero; NaN and what does not fit (a -inf masked by a later Where, as exporters
         * write) become the integer type's minimum, as x86 and so numpy and onnxruntime make them */
        int fits = isfinite(fv) && fabs(fv) < 9.2e18 && (dtype != VEIL_ONNX_INT32 || fabs(fv) < 2147483648.0);
        iv = fits ? (int64_t)fv : dtype == VEIL_ONNX_INT32 ? INT32_MIN : INT64_MIN;
    }
    if (dtype == VEIL_ONNX_INT64) {
        memcpy(out + 8 * i, &iv, 8);
        return VEIL_RESULT_OK;
    }
    if (dtype == VEIL_ONNX_BOOL) {
        out[i] = (is_float ? fv != 0 : iv != 0) ? 1 : 0;
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(iv >= INT32_MIN && iv <= INT32_MAX, VEIL_ERR_UNSUPPORTED, "%s: %" PRId64 " does not fit INT32",
                label, iv);
    int32_t x = (int32_t)iv;
    memcpy(out + 4 * i, &x, 4);
    return VEIL_RESULT_OK;
}

/* ---- parameters ------------------------------------------------------------------------------------------ */

static VEIL_RESULT attr_list(struct eng_node *n, const char *name)
{
    int64_t v[VEIL_ENGINE_MAX_ATTR_INTS];
    uint32_t count = 0;
    VEIL_GUARD(eng_attr_ints(n, name, v, VEIL_ENGINE_MAX_ATTR_INTS, &count));
    char label[160];
    VEIL_ENSURE(count <= 2 * ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: attribute '%s' has %" PRIu32 " values", 
                eng_node_label(n, label, sizeof label), name, count);
    memcpy(n->ints, v, count * sizeof v[0]);
    n->int_count = count;
    n->has_ints = count > 0 || eng_attr_get(n, name) != NULL;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT fill_parse(struct eng_node *n)
{
    n->dtype = VEIL_ONNX_FLOAT;
    struct eng_attr *a = eng_attr_get(n, "value");
    if (a == NULL)
        return VEIL_RESULT_OK;
    char label[160];
    eng_node_label(n, label, sizeof label);
    struct veil_cursor c = a->body, t = {0};
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "AttributeProto", &f));
        if (f.number == 5 && f.wire == VEIL_PB_LEN)
            t = f.payload;
    }
    VEIL_ENSURE(t.data != NULL, VEIL_ERR_ONNX, "%s: attribute 'value' holds no tensor", label);
    struct eng_value v = {0};
    VEIL_GUARD(eng_decode_tensor(t, label, &v));
    struct veil_result r = VEIL_RESULT_OK;
    if (v.size != dtype_width(v.dtype))
        r = veil_error_raise(VEIL_ERR_ONNX, __FILE__, __LINE__, "%s: 'value' must hold one element", label);
    if (veil_ok(r)) {
        n->dtype = v.dtype;
        n->fill_i = v.dtype == VEIL_ONNX_FLOAT ? 0 : get_i(&v, 0);
        n->fill_f = get_f(&v, 0);
    }
    free(v.owned);
    return r;
}

/* DepthToSpace and SpaceToDepth: blocksize into n->axis; DepthToSpace's mode CRD into n->trans_a (DCR: 0). */
static VEIL_RESULT block_parse(struct eng_node *n)
{
    char mode[8], label[160];
    VEIL_GUARD(eng_attr_int(n, "blocksize", 0, &n->axis));
    VEIL_ENSURE(n->axis >= 1 && n->axis <= VEIL_ENGINE_MAX_WINDOW, VEIL_ERR_ONNX, "%s: blocksize %" PRId64 " is "
                "missing or outside [1, %u]", eng_node_label(n, label, sizeof label), n->axis, VEIL_ENGINE_MAX_WINDOW);
    if (n->op == OP_SPACETODEPTH)
        return VEIL_RESULT_OK;
    VEIL_GUARD(eng_attr_string(n, "mode", mode, sizeof mode));
    VEIL_ENSURE(mode[0] == '\0' || strcmp(mode, "DCR") == 0 || strcmp(mode, "CRD") == 0, VEIL_ERR_ONNX, "%s: mode '%s' "
                "is neither DCR nor CRD", label, mode);
    n->trans_a = strcmp(mode, "CRD") == 0;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_parse(struct eng_graph *g, struct eng_node *n)
{
    int64_t v = 0;
    switch (n->op) {
    case OP_SHAPE:
        VEIL_GUARD(eng_attr_int(n, "start", 0, &n->ints[0]));
        VEIL_GUARD(eng_attr_int(n, "end", INT64_MAX, &n->ints[1]));
        return VEIL_RESULT_OK;
    case OP_GATHER: return eng_attr_int(n, "axis", 0, &n->axis);
    case OP_UNSQUEEZE:
    case OP_SQUEEZE: return g->opset < 13 ? attr_list(n, "axes") : VEIL_RESULT_OK;
    case OP_TRANSPOSE: return attr_list(n, "perm");
    case OP_CONSTANTOFSHAPE: return fill_parse(n);
    case OP_SLICE: return VEIL_RESULT_OK; /* opset >= 10: everything is an input; older attributes are refused */
    case OP_CASTLIKE: return eng_attr_int(n, "saturate", 1, &n->fill_i); /* the type: eng_castlike_type */
    case OP_CAST:
        VEIL_GUARD(eng_attr_int(n, "to", 0, &v));
        VEIL_GUARD(eng_attr_int(n, "saturate", 1, &n->fill_i)); /* read, and ignored: it only affects float8 */
        n->dtype = (int32_t)(v >= 0 && v <= INT32_MAX ? v : 0);
        char label[160];
        VEIL_ENSURE(dtype_width(n->dtype) > 0, VEIL_ERR_UNSUPPORTED, "%s: casting to data type %" PRId64 " is not "
                    "supported (FLOAT, INT32, INT64 and BOOL are)", eng_node_label(n, label, sizeof label), v);
        return VEIL_RESULT_OK;
    case OP_EXPAND:
    case OP_RANGE:
    case OP_GATHERELEMENTS: return n->op == OP_GATHERELEMENTS ? eng_attr_int(n, "axis", 0, &n->axis) : VEIL_RESULT_OK;
    case OP_SCATTERND: return eng_attr_string_is(n, "reduction", "none");
    case OP_TRILU: return eng_attr_int(n, "upper", 1, &n->axis); /* axis holds "upper" */
    case OP_TILE: return VEIL_RESULT_OK;
    case OP_DEPTHTOSPACE:
    case OP_SPACETODEPTH: return block_parse(n);
    default: VEIL_BAIL(VEIL_ERR_INTERNAL, "not a folded operator");
    }
}

VEIL_RESULT eng_fold_only_infer(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    char label[160];
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "%s: the engine evaluates %s only on constants and shapes, at load; here it "
              "reads a computed tensor", eng_node_label(n, label, sizeof label), eng_op_name(n->op));
}

/* ---- outputs --------------------------------------------------------------------------------------------- */

static VEIL_RESULT out_alloc_width(const struct eng_node *n, struct eng_value *out, int32_t dtype,
                                   const struct eng_shape *s, size_t width, uint64_t cap);

static VEIL_RESULT out_alloc(const struct eng_node *n, struct eng_value *out, int32_t dtype,
                             const struct eng_shape *s)
{
    return out_alloc_width(n, out, dtype, s, dtype_width(dtype), ENG_MAX_FOLD_COUNT);
}

/* cap: ENG_MAX_FOLD_COUNT for computed arithmetic; a (de)quantized constant has as many elements as the model's
 * own constant, so it is capped only by what a tensor may hold. */
static VEIL_RESULT out_alloc_width(const struct eng_node *n, struct eng_value *out, int32_t dtype,
                                   const struct eng_shape *s, size_t width, uint64_t cap)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    uint64_t count = 1;
    for (uint32_t i = 0; i < s->rank; i++)
        VEIL_ENSURE(s->dims[i] >= 0 && veil_ok(veil_mul_u64(count, (uint64_t)s->dims[i], &count)) &&
                    count <= cap, VEIL_ERR_LIMIT, "%s: a constant of more than %" PRIu64 " elements "
                    "would be computed at load", label, cap);
    size_t size = (size_t)count * width;
    out->owned = calloc(size ? size : 1, 1);
    VEIL_ENSURE(out->owned != NULL, VEIL_ERR_NOMEM, "out of memory");
    out->data = out->owned;
    out->from_view = 0;
    out->dq_from = 0;
    out->size = size;
    out->dtype = dtype;
    out->shape = *s;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_alloc(const struct eng_node *n, struct eng_value *out, int32_t dtype, const struct eng_shape *s,
                           uint64_t cap)
{
    return out_alloc_width(n, out, dtype, s, dtype_width(dtype), cap);
}

/* The output shares the input's data under another shape. */
static void out_view(struct eng_value *out, const struct eng_value *in, const struct eng_shape *s)
{
    out->data = in->data;
    out->from_view = in->from_view;
    out->size = in->size;
    out->dtype = in->dtype;
    out->shape = *s;
}

static void strides_of(const struct eng_shape *s, size_t *st)
{
    size_t k = 1;
    for (uint32_t i = s->rank; i-- > 0;) {
        st[i] = k;
        k *= (size_t)s->dims[i];
    }
}

/* Coordinates of element k of shape s. */
static void unravel(const struct eng_shape *s, size_t k, int64_t *c)
{
    for (uint32_t i = s->rank; i-- > 0;) {
        c[i] = s->dims[i] ? (int64_t)(k % (size_t)s->dims[i]) : 0;
        k = s->dims[i] ? k / (size_t)s->dims[i] : 0;
    }
}

static int64_t norm_axis(int64_t axis, int64_t rank)
{
    return axis < 0 ? axis + rank : axis;
}

static VEIL_RESULT const_in(const struct eng_graph *g, const struct eng_node *n, uint32_t i,
                            const struct eng_value **out)
{
    char label[160];
    VEIL_ENSURE(i < n->input_count && n->inputs[i] >= 0, VEIL_ERR_ONNX, "%s: input %" PRIu32 " is missing",
                eng_node_label(n, label, sizeof label), i);
    const struct eng_value *v = &g->values[n->inputs[i]];
    VEIL_ENSURE(v->kind == VAL_CONST, VEIL_ERR_UNSUPPORTED, "%s: input '%s' must be a constant (an initializer, or "
                "computed from constants and shapes); the engine does not take it from a graph input or a computed "
                "tensor", eng_node_label(n, label, sizeof label), v->name);
    VEIL_ENSURE(dtype_width(v->dtype) > 0 && v->size == eng_shape_count(&v->shape) * dtype_width(v->dtype),
                VEIL_ERR_UNSUPPORTED, "%s: constant '%s' has data type %" PRId32 " (FLOAT, INT32, INT64 and BOOL are "
                "supported)", eng_node_label(n, label, sizeof label), v->name, v->dtype);
    *out = v;
    return VEIL_RESULT_OK;
}

/* An optional 1-D integer input (axes, steps ...) into list[]; *count 0 when absent. */
static VEIL_RESULT int_list_of(const struct eng_graph *g, const struct eng_node *n, uint32_t i, int64_t *list,
                               size_t cap, uint32_t *count)
{
    *count = 0;
    if (i >= n->input_count || n->inputs[i] < 0)
        return VEIL_RESULT_OK;
    const struct eng_value *v = NULL;
    VEIL_GUARD(const_in(g, n, i, &v));
    char label[160];
    size_t k = eng_shape_count(&v->shape);
    VEIL_ENSURE(v->dtype != VEIL_ONNX_FLOAT && v->shape.rank <= 1 && k <= cap, VEIL_ERR_ONNX,
                "%s: input '%s' must be a 1-D integer list of at most %zu values",
                eng_node_label(n, label, sizeof label), v->name, cap);
    for (size_t j = 0; j < k; j++)
        list[j] = get_i(v, j);
    *count = (uint32_t)k;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT int_list(const struct eng_graph *g, const struct eng_node *n, uint32_t i, int64_t *list,
                            uint32_t *count)
{
    return int_list_of(g, n, i, list, 2 * ENG_RANK, count);
}

/* ---- operators ------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_fold_shape_op(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    int64_t r = x->shape.rank, start = norm_axis(n->ints[0], r), end = norm_axis(n->ints[1], r);
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < start ? start : end > r ? r : end;
    struct eng_shape s = {.rank = 1, .dims = {end - start}};
    VEIL_GUARD(out_alloc(n, out, VEIL_ONNX_INT64, &s));
    for (int64_t i = start; i < end; i++)
        memcpy(out->owned + 8 * (size_t)(i - start), &x->shape.dims[i], 8);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_gather(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL, *idx = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    VEIL_GUARD(const_in(g, n, 1, &idx));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank, q = idx->shape.rank, axis = norm_axis(n->axis, r);
    VEIL_ENSURE(idx->dtype != VEIL_ONNX_FLOAT, VEIL_ERR_ONNX, "%s: indices must be integers", label);
    VEIL_ENSURE(axis >= 0 && axis < r && r + q - 1 <= (int64_t)ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: axis or rank out "
                "of range", label);
    struct eng_shape s = {.rank = (uint32_t)(r + q - 1)};
    for (int64_t i = 0; i < s.rank; i++)
        s.dims[i] = i < axis ? x->shape.dims[i] : i < axis + q ? idx->shape.dims[i - axis] : x->shape.dims[i - q + 1];
    VEIL_GUARD(out_alloc(n, out, x->dtype, &s));
    size_t xs[ENG_RANK], is[ENG_RANK], w = dtype_width(x->dtype), count = eng_shape_count(&s);
    strides_of(&x->shape, xs);
    strides_of(&idx->shape, is);
    for (size_t k = 0; k < count; k++) {
        int64_t c[ENG_RANK];
        unravel(&s, k, c);
        size_t ii = 0, src = 0;
        for (int64_t j = 0; j < q; j++)
            ii += (size_t)c[axis + j] * is[j];
        int64_t at = get_i(idx, ii);
        at = at < 0 ? at + x->shape.dims[axis] : at;
        VEIL_ENSURE(at >= 0 && at < x->shape.dims[axis], VEIL_ERR_ONNX, "%s: index out of range", label);
        for (int64_t j = 0; j < r; j++)
            src += (size_t)(j < axis ? c[j] : j == axis ? at : c[j + q - 1]) * xs[j];
        memcpy(out->owned + k * w, x->data + src * w, w);
    }
    return VEIL_RESULT_OK;
}

/* Unsqueeze and Squeeze: the axes from the attribute (opset < 13) or input 1. */
VEIL_RESULT eng_fold_squeeze(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    int64_t axes[2 * ENG_RANK];
    uint32_t count = n->int_count;
    memcpy(axes, n->ints, sizeof axes);
    if (!n->has_ints)
        VEIL_GUARD(int_list(g, n, 1, axes, &count));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int unsq = n->op == OP_UNSQUEEZE;
    int64_t rank = unsq ? (int64_t)x->shape.rank + count : x->shape.rank;
    VEIL_ENSURE(rank <= (int64_t)ENG_RANK && (count > 0 || !unsq), VEIL_ERR_UNSUPPORTED, "%s: bad axes or rank",
                label);
    int mark[2 * ENG_RANK] = {0};
    for (uint32_t i = 0; i < count; i++) {
        int64_t a = norm_axis(axes[i], rank);
        VEIL_ENSURE(a >= 0 && a < rank && !mark[a], VEIL_ERR_ONNX, "%s: axis %" PRId64 " is invalid", label, axes[i]);
        VEIL_ENSURE(unsq || x->shape.dims[a] == 1, VEIL_ERR_ONNX, "%s: squeezing a dim that is not 1", label);
        mark[a] = 1;
    }
    struct eng_shape s = {0};
    for (int64_t i = 0, k = 0; i < rank; i++) {
        if (unsq)
            s.dims[s.rank++] = mark[i] ? 1 : x->shape.dims[k++];
        else if (!(count > 0 ? mark[i] : x->shape.dims[i] == 1))
            s.dims[s.rank++] = x->shape.dims[i];
    }
    out_view(out, x, &s);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_constant_of_shape(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    size_t rank = eng_shape_count(&x->shape);
    VEIL_ENSURE(x->dtype == VEIL_ONNX_INT64 && x->shape.rank == 1 && rank <= ENG_RANK, VEIL_ERR_UNSUPPORTED,
                "%s: the shape must be a short 1-D INT64 tensor", label);
    struct eng_shape s = {.rank = (uint32_t)rank};
    for (size_t i = 0; i < rank; i++)
        s.dims[i] = get_i(x, i);
    VEIL_GUARD(out_alloc(n, out, n->dtype, &s));
    size_t count = eng_shape_count(&s);
    for (size_t k = 0; k < count; k++)
        VEIL_GUARD(put(out->owned, n->dtype, k, n->fill_i, n->fill_f, n->dtype == VEIL_ONNX_FLOAT, label));
    return VEIL_RESULT_OK;
}

struct slice_axis {
    int64_t start, step;
};

/* ONNX Slice's clamping of one axis; *len receives the output extent. */
static void slice_clamp(int64_t d, int64_t start, int64_t end, int64_t step, struct slice_axis *a, int64_t *len)
{
    /* A step longer than the axis takes at most the first element; bounding it keeps the arithmetic exact. */
    int64_t far = d > 0 ? d : 1;
    step = step > far ? far : step < -far ? -far : step;
    start = start < 0 ? (start < -d ? 0 : start + d) : start;
    end = end < 0 ? (end < -d ? -1 : end + d) : end;
    if (step > 0) {
        start = start > d ? d : start;
        end = end < 0 ? 0 : end > d ? d : end;
        *len = end > start ? (end - start + step - 1) / step : 0;
    } else {
        start = start > d - 1 ? d - 1 : start;
        end = end > d - 1 ? d - 1 : end;
        *len = start > end ? (start - end + (-step) - 1) / (-step) : 0;
    }
    a->start = start;
    a->step = step;
}

VEIL_RESULT eng_fold_slice(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    int64_t starts[2 * ENG_RANK], ends[2 * ENG_RANK], axes[2 * ENG_RANK], steps[2 * ENG_RANK];
    uint32_t ns = 0, ne = 0, na = 0, nst = 0;
    VEIL_GUARD(int_list(g, n, 1, starts, &ns));
    VEIL_GUARD(int_list(g, n, 2, ends, &ne));
    VEIL_GUARD(int_list(g, n, 3, axes, &na));
    VEIL_GUARD(int_list(g, n, 4, steps, &nst));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank;
    VEIL_ENSURE(ns == ne && (na == 0 || na == ns) && (nst == 0 || nst == ns) && ns <= r, VEIL_ERR_ONNX,
                "%s: starts, ends, axes and steps disagree", label);
    struct slice_axis sa[ENG_RANK];
    struct eng_shape s = x->shape;
    for (int64_t i = 0; i < r; i++)
        sa[i] = (struct slice_axis){0, 1};
    int seen[ENG_RANK] = {0};
    for (uint32_t i = 0; i < ns; i++) {
        int64_t a = na ? norm_axis(axes[i], r) : (int64_t)i, step = nst ? steps[i] : 1;
        VEIL_ENSURE(a >= 0 && a < r && !seen[a] && step != 0, VEIL_ERR_ONNX, "%s: bad axis or step", label);
        seen[a] = 1;
        slice_clamp(x->shape.dims[a], starts[i], ends[i], step, &sa[a], &s.dims[a]);
    }
    VEIL_GUARD(out_alloc(n, out, x->dtype, &s));
    size_t xs[ENG_RANK], w = dtype_width(x->dtype), count = eng_shape_count(&s);
    strides_of(&x->shape, xs);
    for (size_t k = 0; k < count; k++) {
        int64_t c[ENG_RANK];
        unravel(&s, k, c);
        size_t src = 0;
        for (int64_t j = 0; j < r; j++)
            src += (size_t)(sa[j].start + c[j] * sa[j].step) * xs[j];
        memcpy(out->owned + k * w, x->data + src * w, w);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_transpose(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank, perm[ENG_RANK];
    VEIL_ENSURE(n->int_count == 0 || n->int_count == (uint32_t)r, VEIL_ERR_ONNX, "%s: perm has the wrong length",
                label);
    int seen[ENG_RANK] = {0};
    struct eng_shape s = {.rank = x->shape.rank};
    for (int64_t i = 0; i < r; i++) {
        perm[i] = n->int_count ? n->ints[i] : r - 1 - i;
        VEIL_ENSURE(perm[i] >= 0 && perm[i] < r && !seen[perm[i]], VEIL_ERR_ONNX, "%s: perm is not a permutation",
                    label);
        seen[perm[i]] = 1;
        s.dims[i] = x->shape.dims[perm[i]];
    }
    VEIL_GUARD(out_alloc(n, out, x->dtype, &s));
    size_t xs[ENG_RANK], w = dtype_width(x->dtype), count = eng_shape_count(&s);
    strides_of(&x->shape, xs);
    for (size_t k = 0; k < count; k++) {
        int64_t c[ENG_RANK];
        unravel(&s, k, c);
        size_t src = 0;
        for (int64_t j = 0; j < r; j++)
            src += (size_t)c[j] * xs[perm[j]];
        memcpy(out->owned + k * w, x->data + src * w, w);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_concat(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank, axis = norm_axis(n->axis, r);
    VEIL_ENSURE(r >= 1 && axis >= 0 && axis < r, VEIL_ERR_ONNX, "%s: axis out of range", label);
    struct eng_shape s = x->shape;
    s.dims[axis] = 0;
    for (uint32_t i = 0; i < n->input_count; i++) {
        const struct eng_value *y = NULL;
        VEIL_GUARD(const_in(g, n, i, &y));
        VEIL_ENSURE(y->dtype == x->dtype && y->shape.rank == x->shape.rank, VEIL_ERR_ONNX, "%s: inputs differ in "
                    "type or rank", label);
        for (int64_t d = 0; d < r; d++)
            VEIL_ENSURE(d == axis || y->shape.dims[d] == x->shape.dims[d], VEIL_ERR_ONNX, "%s: inputs differ off the "
                        "axis", label);
        VEIL_ENSURE(y->shape.dims[axis] <= (int64_t)ENG_MAX_FOLD_COUNT, VEIL_ERR_LIMIT, "%s: too large", label);
        s.dims[axis] += y->shape.dims[axis];
    }
    VEIL_GUARD(out_alloc(n, out, x->dtype, &s));
    size_t w = dtype_width(x->dtype), count = eng_shape_count(&s);
    for (size_t k = 0; k < count; k++) {
        int64_t c[ENG_RANK];
        unravel(&s, k, c);
        uint32_t i = 0;
        while (c[axis] >= g->values[n->inputs[i]].shape.dims[axis])
            c[axis] -= g->values[n->inputs[i++]].shape.dims[axis];
        const struct eng_value *y = &g->values[n->inputs[i]];
        size_t ys[ENG_RANK], src = 0;
        strides_of(&y->shape, ys);
        for (int64_t j = 0; j < r; j++)
            src += (size_t)c[j] * ys[j];
        memcpy(out->owned + k * w, y->data + src * w, w);
    }
    return VEIL_RESULT_OK;
}

/* CastLike: Cast to the second input's data type, known once its producer's shape rule ran. */
VEIL_RESULT eng_castlike_type(const struct eng_graph *g, struct eng_node *n)
{
    n->dtype = g->values[n->inputs[1]].dtype;
    char label[160];
    VEIL_ENSURE(dtype_width(n->dtype) > 0, VEIL_ERR_UNSUPPORTED, "%s: casting to data type %" PRId32 " is not "
                "supported (FLOAT, INT32, INT64 and BOOL are)", eng_node_label(n, label, sizeof label), n->dtype);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_cast(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    if (n->op == OP_CASTLIKE)
        VEIL_GUARD(eng_castlike_type(g, n));
    if (x->dtype == n->dtype) {
        out_view(out, x, &x->shape);
        return VEIL_RESULT_OK;
    }
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(out_alloc(n, out, n->dtype, &x->shape));
    size_t count = eng_shape_count(&x->shape);
    int is_float = x->dtype == VEIL_ONNX_FLOAT;
    for (size_t k = 0; k < count; k++)
        VEIL_GUARD(put(out->owned, n->dtype, k, is_float ? 0 : get_i(x, k), get_f(x, k), is_float, label));
    return VEIL_RESULT_OK;
}

int eng_fold_ready(const struct eng_graph *g, const struct eng_node *n)
{
    if (n->op == OP_SHAPE)
        return n->input_count == 1 && g->values[n->inputs[0]].has_shape;
    if (n->op == OP_CASTLIKE) /* the second input gives only its type */
        return g->values[n->inputs[0]].kind == VAL_CONST;
    int constant = n->input_count > 0;
    for (uint32_t k = 0; k < n->input_count; k++)
        constant &= n->inputs[k] < 0 || g->values[n->inputs[k]].kind == VAL_CONST;
    return constant;
}

static VEIL_RESULT fold_strided(struct eng_graph *g, struct eng_node *n, uint32_t output, struct eng_value *out);

/* The fold rules of views and of several outputs; the others are with their operators' arithmetic below. */
VEIL_RESULT eng_fold_expand(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    return fold_strided(g, n, 0, out);
}

VEIL_RESULT eng_fold_flatten(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    int64_t r = x->shape.rank, axis = norm_axis(n->axis, r);
    char label[160];
    VEIL_ENSURE(axis >= 0 && axis <= r, VEIL_ERR_ONNX, "%s: axis out of range", eng_node_label(n, label, sizeof label));
    struct eng_shape s = {.rank = 2, .dims = {1, 1}};
    for (int64_t i = 0; i < r; i++)
        s.dims[i < axis ? 0 : 1] *= x->shape.dims[i];
    out_view(out, x, &s);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_split(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    for (uint32_t i = 1; i < n->output_count; i++) {
        struct eng_value *o = &g->values[n->outputs[i]];
        VEIL_GUARD(fold_strided(g, n, i, o));
        o->kind = VAL_CONST;
        o->has_shape = 1;
    }
    return fold_strided(g, n, 0, out);
}

VEIL_RESULT eng_fold_identity(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    out_view(out, x, &x->shape);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_reshape(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    struct eng_shape s;
    VEIL_GUARD(eng_reshape_target(n, &x->shape, &g->values[n->inputs[1]], &s));
    out_view(out, x, &s);
    return VEIL_RESULT_OK;
}

/* Every operator's fold rule is in the operator table (ops.c); an operator without one cannot run on constants. */
static VEIL_RESULT fold_dispatch(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_op_info *info = eng_op_info(n->op);
    if (info->fold != NULL)
        return info->fold(g, n, out);
    char label[160];
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "%s computes from constants only, and the engine has no load-time rule for "
              "%s (docs/internals/engine.md lists those it evaluates; export with constant folding)",
              eng_node_label(n, label, sizeof label), eng_op_name(n->op));
}

VEIL_RESULT eng_fold_eval(struct eng_graph *g, struct eng_node *n)
{
    char label[160];
    VEIL_ENSURE(n->output_count == 1 || n->op == OP_SPLIT, VEIL_ERR_UNSUPPORTED, "%s: only one output is supported",
                eng_node_label(n, label, sizeof label));
    struct eng_value *out = &g->values[n->outputs[0]];
    VEIL_GUARD(fold_dispatch(g, n, out));
    out->kind = VAL_CONST;
    out->has_shape = 1;
    n->dead = 1;
    n->folded = 1;
    return VEIL_RESULT_OK;
}

/* ---- Pad ------------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_pad_parse(struct eng_graph *g, struct eng_node *n)
{
    static const char *const modes[] = {"constant", "reflect", "edge", "wrap"};
    char mode[16], label[160];
    VEIL_GUARD(eng_attr_string(n, "mode", mode, sizeof mode));
    n->pad_mode = PAD_CONSTANT;
    for (int i = 1; i < 4; i++)
        if (strcmp(mode, modes[i]) == 0)
            n->pad_mode = (enum eng_pad_mode)i;
    VEIL_ENSURE(mode[0] == '\0' || strcmp(mode, modes[n->pad_mode]) == 0, VEIL_ERR_ONNX, "%s: mode '%s' is not one "
                "of constant, reflect, edge, wrap", eng_node_label(n, label, sizeof label), mode);
    if (g->opset >= 11)
        return VEIL_RESULT_OK;
    float value = 0;
    VEIL_GUARD(attr_list(n, "pads"));
    VEIL_GUARD(eng_attr_float(n, "value", 0, &value));
    n->fill_f = value;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_pad_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    if (g->opset >= 11) {
        VEIL_ENSURE(n->input_count < 4 || n->inputs[3] < 0, VEIL_ERR_UNSUPPORTED, "%s: the axes input is not "
                    "supported", label);
        VEIL_ENSURE(n->input_count >= 2 && n->inputs[1] >= 0 && g->values[n->inputs[1]].kind == VAL_CONST,
                    VEIL_ERR_UNSUPPORTED, "%s: the pads must be a constant", label);
        VEIL_GUARD(int_list(g, n, 1, n->ints, &n->int_count));
        if (n->input_count > 2 && n->inputs[2] >= 0) {
            const struct eng_value *v = NULL;
            VEIL_GUARD(const_in(g, n, 2, &v));
            VEIL_ENSURE(eng_shape_count(&v->shape) == 1, VEIL_ERR_ONNX, "%s: constant_value must be a scalar",
                        label);
            n->fill_f = get_f(v, 0);
        }
    }
    uint32_t r = x->shape.rank;
    VEIL_ENSURE(n->int_count == 2 * r, VEIL_ERR_ONNX, "%s: %" PRIu32 " pads for rank %" PRIu32, label, n->int_count,
                r);
    struct eng_shape s = x->shape;
    for (uint32_t i = 0; i < r; i++) {
        int64_t b = n->ints[i], e = n->ints[r + i];
        VEIL_ENSURE(b >= 0 && e >= 0 && b <= VEIL_ENGINE_MAX_WINDOW && e <= VEIL_ENGINE_MAX_WINDOW,
                    VEIL_ERR_UNSUPPORTED, "%s: negative or huge pads are not supported", label);
        VEIL_ENSURE(n->pad_mode != PAD_REFLECT || (b < s.dims[i] && e < s.dims[i]), VEIL_ERR_ONNX, "%s: reflect pads "
                    "of %" PRId64 " and %" PRId64 " on an axis of %" PRId64 " (they must be smaller)", label, b, e,
                    s.dims[i]);
        VEIL_ENSURE(n->pad_mode != PAD_WRAP || (b <= s.dims[i] && e <= s.dims[i]), VEIL_ERR_UNSUPPORTED, "%s: wrap "
                    "pads larger than their axis are not supported", label);
        s.dims[i] += b + e;
    }
    g->values[n->outputs[0]].shape = s;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_pad_build(struct veil_engine *e, struct eng_node *n)
{
    int zero = 1;
    for (uint32_t i = 0; i < n->int_count; i++)
        zero &= n->ints[i] == 0;
    /* Any other Pad of a computed tensor (Swin V2's windows; a constant value; reflection padding of image
     * generators): the engine's kernel, into a plain output. */
    if (zero) /* Swin pads its windows by (H mod 7): nothing at 224x224 */
        return eng_view_build(e, n);
    const struct eng_value *x = &e->g.values[n->inputs[0]];
    struct eng_kernel k = {.op = KOP_PAD, .inputs = 1, .out = e->g.values[n->out].shape, .in = x->shape,
                           .pad_value = (float)n->fill_f, .pad_mode = n->pad_mode};
    for (uint32_t i = 0; i < x->shape.rank; i++)
        k.pad[i] = n->ints[i];
    int inputs[1] = {n->inputs[0]};
    return eng_step_kernel(e, n, &k, inputs, n->out);
}

/* ---- shape operators on computed tensors ----------------------------------------------------------------- */

static VEIL_RESULT squeeze_shape(struct eng_graph *g, struct eng_node *n, struct eng_shape *out)
{
    struct eng_value tmp = {0};
    VEIL_GUARD(eng_fold_squeeze(g, n, &tmp));
    *out = tmp.shape;
    return VEIL_RESULT_OK;
}

static void copy_kernel(struct eng_kernel *k, const struct eng_shape *out)
{
    *k = (struct eng_kernel){.op = KOP_COPY, .inputs = 1, .out = *out};
}

static VEIL_RESULT slice_shape(struct eng_graph *g, struct eng_node *n, struct eng_shape *out, struct eng_kernel *k)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    int64_t starts[2 * ENG_RANK], ends[2 * ENG_RANK], axes[2 * ENG_RANK], steps[2 * ENG_RANK];
    uint32_t ns = 0, ne = 0, na = 0, nst = 0;
    VEIL_GUARD(int_list(g, n, 1, starts, &ns));
    VEIL_GUARD(int_list(g, n, 2, ends, &ne));
    VEIL_GUARD(int_list(g, n, 3, axes, &na));
    VEIL_GUARD(int_list(g, n, 4, steps, &nst));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank;
    VEIL_ENSURE(ns == ne && (na == 0 || na == ns) && (nst == 0 || nst == ns) && ns <= r, VEIL_ERR_ONNX,
                "%s: starts, ends, axes and steps disagree", label);
    struct slice_axis sa[ENG_RANK];
    struct eng_shape s = x->shape;
    for (int64_t i = 0; i < r; i++)
        sa[i] = (struct slice_axis){0, 1};
    int seen[ENG_RANK] = {0};
    for (uint32_t i = 0; i < ns; i++) {
        int64_t a = na ? norm_axis(axes[i], r) : (int64_t)i, step = nst ? steps[i] : 1;
        VEIL_ENSURE(a >= 0 && a < r && !seen[a] && step != 0, VEIL_ERR_ONNX, "%s: bad axis or step", label);
        seen[a] = 1;
        slice_clamp(x->shape.dims[a], starts[i], ends[i], step, &sa[a], &s.dims[a]);
    }
    size_t xs[ENG_RANK];
    strides_of(&x->shape, xs);
    copy_kernel(k, &s);
    for (int64_t j = 0; j < r; j++) {
        k->strides[0][j] = sa[j].step * (int64_t)xs[j];
        k->offset[0] += sa[j].start * (int64_t)xs[j];
    }
    *out = s;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT expand_shape(struct eng_graph *g, struct eng_node *n, struct eng_shape *out, struct eng_kernel *k)
{
    const struct eng_value *x = &g->values[n->inputs[0]], *sv = NULL;
    VEIL_GUARD(const_in(g, n, 1, &sv));
    char label[160];
    eng_node_label(n, label, sizeof label);
    size_t rank = eng_shape_count(&sv->shape);
    VEIL_ENSURE(sv->dtype == VEIL_ONNX_INT64 && sv->shape.rank == 1 && rank <= ENG_RANK, VEIL_ERR_UNSUPPORTED,
                "%s: the shape must be a short 1-D INT64 tensor", label);
    struct eng_shape want = {.rank = (uint32_t)rank};
    for (size_t i = 0; i < rank; i++) {
        want.dims[i] = get_i(sv, i);
        VEIL_ENSURE(want.dims[i] >= 0, VEIL_ERR_ONNX, "%s: a negative dim", label);
    }
    VEIL_GUARD(eng_broadcast_shape(n, &x->shape, &want, out));
    copy_kernel(k, out);
    eng_broadcast_strides(&x->shape, out, k->strides[0]);
    return VEIL_RESULT_OK;
}

/* Output `output` of Split: its extent along the axis and where it starts. */
static VEIL_RESULT split_shape(struct eng_graph *g, struct eng_node *n, uint32_t output, struct eng_shape *out,
                               struct eng_kernel *k)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank, axis = norm_axis(n->axis, r), sizes[ENG_MAX_SPLIT];
    uint32_t count = 0;
    VEIL_ENSURE(axis >= 0 && axis < r, VEIL_ERR_ONNX, "%s: axis out of range", label);
    if (n->has_ints) {
        count = n->int_count;
        memcpy(sizes, n->ints, count * sizeof n->ints[0]);
    } else {
        VEIL_GUARD(int_list_of(g, n, 1, sizes, ENG_MAX_SPLIT, &count));
    }
    int64_t d = x->shape.dims[axis], total = 0, start = 0, parts = n->output_count;
    if (count == 0) {
        int64_t each = (d + parts - 1) / parts;
        for (int64_t i = 0; i < parts && i < (int64_t)ENG_MAX_SPLIT; i++)
            sizes[i] = d - i * each < each ? (d - i * each > 0 ? d - i * each : 0) : each;
        count = (uint32_t)parts;
    }
    VEIL_ENSURE(count == n->output_count, VEIL_ERR_ONNX, "%s: %" PRIu32 " sizes for %" PRIu32 " outputs", label, count,
                n->output_count);
    for (uint32_t i = 0; i < count; i++) {
        VEIL_ENSURE(sizes[i] >= 0, VEIL_ERR_ONNX, "%s: a negative split", label);
        if (i < output)
            start += sizes[i];
        total += sizes[i];
    }
    VEIL_ENSURE(total == d, VEIL_ERR_ONNX, "%s: the splits add up to %" PRId64 ", the axis is %" PRId64, label, total,
                d);
    struct eng_shape s = x->shape;
    s.dims[axis] = sizes[output];
    size_t xs[ENG_RANK];
    strides_of(&x->shape, xs);
    copy_kernel(k, &s);
    for (int64_t j = 0; j < r; j++)
        k->strides[0][j] = (int64_t)xs[j];
    k->offset[0] = start * (int64_t)xs[axis];
    *out = s;
    return VEIL_RESULT_OK;
}

void eng_axis_split(const struct eng_shape *s, int64_t axis, int64_t *outer, int64_t *inner)
{
    *outer = *inner = 1;
    for (int64_t i = 0; i < (int64_t)s->rank; i++) {
        if (i < axis)
            *outer *= s->dims[i];
        if (i > axis)
            *inner *= s->dims[i];
    }
}

static VEIL_RESULT gather_shape(struct eng_graph *g, struct eng_node *n, struct eng_shape *out, struct eng_kernel *k)
{
    const struct eng_value *x = &g->values[n->inputs[0]], *idx = &g->values[n->inputs[1]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank, q = idx->shape.rank, axis = norm_axis(n->axis, r);
    VEIL_ENSURE(axis >= 0 && axis < r && r + q - 1 <= (int64_t)ENG_RANK && r + q >= 1, VEIL_ERR_UNSUPPORTED,
                "%s: axis or rank out of range", label);
    VEIL_ENSURE(idx->dtype != VEIL_ONNX_FLOAT, VEIL_ERR_ONNX, "%s: indices must be integers", label);
    struct eng_shape s = {.rank = (uint32_t)(r + q - 1)};
    for (int64_t i = 0; i < s.rank; i++)
        s.dims[i] = i < axis ? x->shape.dims[i] : i < axis + q ? idx->shape.dims[i - axis] : x->shape.dims[i - q + 1];
    *k = (struct eng_kernel){.op = KOP_GATHER, .out = s, .dim = x->shape.dims[axis],
                             .count = (int64_t)eng_shape_count(&idx->shape)};
    eng_axis_split(&x->shape, axis, &k->outer, &k->inner);
    *out = s;
    return VEIL_RESULT_OK;
}

/* Tile: the copy runs over [r0, d0, r1, d1, ...], reading the input with stride 0 along each repeat:
 * out[rep * d + j] = x[j]. A repeat of 1 adds no dim, a repeated axis of size 1 only its repeat, and an axis
 * contiguous with the one before merges into it, so a 4-D Tile fits the kernel's 6 dims in the common cases. */
static VEIL_RESULT tile_shape(struct eng_graph *g, struct eng_node *n, struct eng_shape *out, struct eng_kernel *k)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    int64_t reps[2 * ENG_RANK], st[ENG_RANK];
    uint32_t count = 0;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(int_list(g, n, 1, reps, &count));
    VEIL_ENSURE(count == x->shape.rank, VEIL_ERR_ONNX, "%s: %" PRIu32 " repeats for a %" PRIu32 "-D input", label,
                count, x->shape.rank);
    size_t xs[ENG_RANK];
    strides_of(&x->shape, xs);
    struct eng_shape it = {.rank = 0};
    *out = x->shape;
    for (uint32_t i = 0; i < count; i++) {
        int64_t d = x->shape.dims[i], r = reps[i], stride = (int64_t)xs[i];
        VEIL_ENSURE(r >= 0 && (d == 0 || r <= INT32_MAX / d), VEIL_ERR_ONNX, "%s: repeat %" PRId64 " is negative or "
                    "too large", label, r);
        out->dims[i] = d * r;
        uint32_t need = (uint32_t)(r != 1) + (uint32_t)!(d == 1 && r != 1);
        int merge = r == 1 && it.rank > 0 && st[it.rank - 1] != 0 && st[it.rank - 1] == stride * d;
        VEIL_ENSURE(merge || it.rank + need <= ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: this %" PRIu32 "-D Tile needs "
                    "more than %u dims to copy (an axis and its repeat count as two)", label, count, ENG_RANK);
        if (r != 1) {
            it.dims[it.rank] = r;
            st[it.rank++] = 0;
        }
        if (merge) {
            it.dims[it.rank - 1] *= d;
            st[it.rank - 1] = stride;
        } else if (!(d == 1 && r != 1)) {
            it.dims[it.rank] = d;
            st[it.rank++] = stride;
        }
    }
    copy_kernel(k, &it);
    memcpy(k->strides[0], st, it.rank * sizeof st[0]);
    return VEIL_RESULT_OK;
}

/* DepthToSpace and SpaceToDepth of [N, C, H, W] with block b: a copy over 6 dims in the output's order, reading the
 * input with the strides the block layout gives (ONNX's reshape-transpose-reshape definitions). */
static VEIL_RESULT block_shape(struct eng_graph *g, struct eng_node *n, struct eng_shape *out, struct eng_kernel *k)
{
    const struct eng_shape *x = &g->values[n->inputs[0]].shape;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(x->rank == 4, VEIL_ERR_ONNX, "%s: the input must be 4-D (N, C, H, W), not %" PRIu32 "-D", label,
                x->rank);
    int64_t b = n->axis, N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3], hw = H * W;
    if (n->op == OP_DEPTHTOSPACE) {
        VEIL_ENSURE(C % (b * b) == 0, VEIL_ERR_ONNX, "%s: %" PRId64 " channels do not divide into blocks of %" PRId64,
                    label, C, b * b);
        int64_t c = C / (b * b);
        *out = (struct eng_shape){.rank = 4, .dims = {N, c, H * b, W * b}};
        copy_kernel(k, &(struct eng_shape){.rank = 6, .dims = {N, c, H, b, W, b}});
        int64_t dcr[6] = {C * hw, hw, W, b * c * hw, 1, c * hw}, crd[6] = {C * hw, b * b * hw, W, b * hw, 1, hw};
        memcpy(k->strides[0], n->trans_a ? crd : dcr, sizeof dcr);
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(H % b == 0 && W % b == 0, VEIL_ERR_ONNX, "%s: %" PRId64 "x%" PRId64 " does not divide into blocks of %"
                PRId64, label, H, W, b);
    *out = (struct eng_shape){.rank = 4, .dims = {N, C * b * b, H / b, W / b}};
    copy_kernel(k, &(struct eng_shape){.rank = 6, .dims = {N, b, b, C, H / b, W / b}});
    int64_t st[6] = {C * hw, W, 1, hw, b * W, b};
    memcpy(k->strides[0], st, sizeof st);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_shape(struct eng_graph *g, struct eng_node *n, uint32_t output, struct eng_shape *out,
                           struct eng_kernel *k)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    copy_kernel(k, &x->shape);
    switch (n->op) {
    case OP_SQUEEZE:
    case OP_UNSQUEEZE: return squeeze_shape(g, n, out);
    case OP_SLICE: return slice_shape(g, n, out, k);
    case OP_EXPAND: return expand_shape(g, n, out, k);
    case OP_SPLIT: return split_shape(g, n, output, out, k);
    case OP_GATHER: return gather_shape(g, n, out, k);
    case OP_TILE: return tile_shape(g, n, out, k);
    case OP_DEPTHTOSPACE:
    case OP_SPACETODEPTH: return block_shape(g, n, out, k);
    case OP_CASTLIKE: VEIL_GUARD(eng_castlike_type(g, n)); break;
    case OP_CAST:
    case OP_TRANSPOSE: break;
    default: VEIL_BAIL(VEIL_ERR_INTERNAL, "not a shape operator");
    }
    *out = x->shape;
    if (n->op == OP_TRANSPOSE) {
        char label[160];
        eng_node_label(n, label, sizeof label);
        VEIL_ENSURE(n->int_count == 0 || n->int_count == x->shape.rank, VEIL_ERR_ONNX, "%s: perm has the wrong length",
                    label);
        int seen[ENG_RANK] = {0};
        for (uint32_t i = 0; i < x->shape.rank; i++) {
            int64_t p = n->int_count ? n->ints[i] : (int64_t)(x->shape.rank - 1 - i);
            VEIL_ENSURE(p >= 0 && p < (int64_t)x->shape.rank && !seen[p], VEIL_ERR_ONNX, "%s: perm is not a "
                        "permutation", label);
            seen[p] = 1;
            out->dims[i] = x->shape.dims[p];
        }
    }
    return VEIL_RESULT_OK;
}

/* ---- arithmetic on constants ----------------------------------------------------------------------------- */

static int int_type(int32_t t)
{
    return t == VEIL_ONNX_INT64 || t == VEIL_ONNX_INT32 || t == VEIL_ONNX_BOOL;
}

/* Integer arithmetic stays exact in int64 (INT64_MAX as a Slice end must survive a Where). */
static int64_t eval_int(enum eng_kop op, int64_t a, int64_t b, int64_t c, int *ok)
{
    switch (op) {
    case KOP_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case KOP_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case KOP_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case KOP_DIV:
    case KOP_IDIV: return b != 0 && !(a == INT64_MIN && b == -1) ? a / b : (*ok = 0);
    case KOP_IMOD: {
        if (b == 0 || (a == INT64_MIN && b == -1))
            return *ok = 0;
        int64_t r = a % b;
        return r != 0 && ((r < 0) != (b < 0)) ? r + b : r;
    }
    case KOP_FMOD: return b != 0 && !(a == INT64_MIN && b == -1) ? a % b : (*ok = 0);
    case KOP_MAX: return a > b ? a : b;
    case KOP_MIN: return a < b ? a : b;
    case KOP_MAX3: return a > b ? (a > c ? a : c) : (b > c ? b : c);
    case KOP_MIN3: return a < b ? (a < c ? a : c) : (b < c ? b : c);
    case KOP_EQ: return a == b;
    case KOP_LT: return a < b;
    case KOP_GT: return a > b;
    case KOP_LE: return a <= b;
    case KOP_GE: return a >= b;
    case KOP_AND: return a && b;
    case KOP_OR: return a || b;
    case KOP_NOT: return !a;
    case KOP_WHERE: return a ? b : c;
    case KOP_NEG: return (int64_t)(0 - (uint64_t)a);
    case KOP_ABS: return a < 0 ? (int64_t)(0 - (uint64_t)a) : a;
    case KOP_ISNAN: return 0;
    case KOP_COPY: return a;
    case KOP_SIGN: return (a > 0) - (a < 0);
    case KOP_PRELU: return a < 0 ? (int64_t)((uint64_t)a * (uint64_t)b) : a;
    case KOP_POW: {
        if (b < 0)
            return *ok = 0;
        uint64_t r = 1, x = (uint64_t)a; /* wraps like the other integer operations */
        for (; b > 0; b >>= 1, x *= x)
            if (b & 1)
                r *= x;
        return (int64_t)r;
    }
    default: *ok = 0; return 0;
    }
}

static const char *int_failure(enum eng_kop op)
{
    switch (op) {
    case KOP_POW: return "integer Pow with a negative exponent";
    case KOP_DIV: case KOP_IDIV: case KOP_IMOD: case KOP_FMOD:
        return "integer division or Mod by zero (or of INT64_MIN by -1)";
    default: return "this operator is not evaluated on integers";
    }
}

VEIL_RESULT eng_fold_elementwise(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *in[ENG_KERNEL_INPUTS] = {0};
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(n->input_count <= ENG_KERNEL_INPUTS, VEIL_ERR_ONNX, "%s: too many inputs", label);
    struct eng_shape s = {0};
    for (uint32_t i = 0; i < n->input_count; i++) {
        VEIL_GUARD(const_in(g, n, i, &in[i]));
        VEIL_GUARD(i == 0 ? (s = in[0]->shape, VEIL_RESULT_OK) : eng_broadcast_shape(n, &s, &in[i]->shape, &s));
    }
    VEIL_GUARD(eng_elementwise_infer(g, n));
    int32_t dtype = out->dtype;
    /* Integer operands: exact int64 arithmetic; Where selects between its value inputs' type. */
    const struct eng_value *lead = n->op == OP_WHERE ? in[1] : in[0];
    int ints = int_type(lead->dtype) && (n->input_count < 2 || int_type(in[n->input_count - 1]->dtype));
    enum eng_kop op = eng_node_kop(n);
    /* as large as the largest operand (a weight's normalisation: weight_norm, weight standardisation); only
     * broadcasting beyond every operand is capped */
    uint64_t cap = ENG_MAX_FOLD_COUNT;
    for (uint32_t i = 0; i < n->input_count; i++)
        cap = eng_shape_count(&in[i]->shape) > cap ? eng_shape_count(&in[i]->shape) : cap;
    VEIL_GUARD(out_alloc_width(n, out, dtype, &s, dtype_width(dtype), cap));
    int64_t st[ENG_KERNEL_INPUTS][ENG_RANK];
    for (uint32_t i = 0; i < n->input_count; i++)
        eng_broadcast_strides(&in[i]->shape, &s, st[i]);
    size_t count = eng_shape_count(&s);
    for (size_t k = 0; k < count; k++) {
        int64_t c[ENG_RANK], iv[ENG_KERNEL_INPUTS] = {0};
        double fv[ENG_KERNEL_INPUTS] = {0};
        unravel(&s, k, c);
        for (uint32_t i = 0; i < n->input_count; i++) {
            size_t at = 0;
            for (uint32_t d = 0; d < s.rank; d++)
                at += (size_t)(c[d] * st[i][d]);
            iv[i] = in[i]->dtype == VEIL_ONNX_FLOAT ? 0 : get_i(in[i], at);
            fv[i] = get_f(in[i], at);
        }
        int ok = 1;
        if (ints) {
            int64_t r = eval_int(op, iv[0], iv[1], iv[2], &ok);
            VEIL_ENSURE(ok, VEIL_ERR_UNSUPPORTED, "%s: %s", label, int_failure(op));
            VEIL_GUARD(put(out->owned, dtype, k, r, 0, 0, label));
        } else {
            double r = eng_kop_eval(op == KOP_IDIV ? KOP_DIV : op, fv[0], fv[1], fv[2]);
            VEIL_GUARD(put(out->owned, dtype, k, 0, r, 1, label));
        }
    }
    return VEIL_RESULT_OK;
}

/* A reduction of a constant (a weight's norm, for weight_norm), in double (int64 for integer Sum, Max and Min): over
 * an empty set, Sum 0, Mean NaN, Max -inf, Min +inf. */
VEIL_RESULT eng_fold_reduce(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int ints = int_type(x->dtype) && x->dtype != VEIL_ONNX_BOOL;
    VEIL_ENSURE(x->dtype == VEIL_ONNX_FLOAT || (ints && (n->op == OP_REDUCESUM || n->op == OP_REDUCEMAX ||
                n->op == OP_REDUCEMIN)), VEIL_ERR_UNSUPPORTED, "%s: a constant of data type %" PRId32 " is not "
                "reduced at load (FLOAT, and INT32 or INT64 for Sum, Max and Min, are)", label, x->dtype);
    struct eng_shape kept, s;
    VEIL_GUARD(eng_reduce_shapes(g, n, &kept, &s));
    VEIL_GUARD(out_alloc_width(n, out, x->dtype, &s, dtype_width(x->dtype), eng_shape_count(&x->shape)));
    size_t count = eng_shape_count(&kept), total = eng_shape_count(&x->shape), ks[ENG_RANK];
    strides_of(&kept, ks);
    double *acc = calloc(count ? count : 1, sizeof *acc);
    int64_t *iacc = calloc(count ? count : 1, sizeof *iacc);
    int64_t *seen = calloc(count ? count : 1, sizeof *seen);
    struct veil_result r = VEIL_RESULT_OK;
    if (acc == NULL || iacc == NULL || seen == NULL)
        r = veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    for (size_t i = 0; veil_ok(r) && i < total; i++) {
        int64_t c[ENG_RANK];
        unravel(&x->shape, i, c);
        size_t at = 0;
        for (uint32_t d = 0; d < kept.rank; d++)
            at += kept.dims[d] == 1 ? 0 : (size_t)c[d] * ks[d];
        double v = get_f(x, i);
        int64_t iv = ints ? get_i(x, i) : 0, first = seen[at]++ == 0;
        if (n->op == OP_REDUCEMAX || n->op == OP_REDUCEMIN) { /* a NaN wins, as in numpy */
            int max = n->op == OP_REDUCEMAX;
            if (first || (!isnan(acc[at]) && (isnan(v) || (max ? v > acc[at] : v < acc[at]))))
                acc[at] = v;
            if (first || (max ? iv > iacc[at] : iv < iacc[at]))
                iacc[at] = iv;
        } else {
            acc[at] += n->op == OP_REDUCEL2 ? v * v : v;
            iacc[at] = (int64_t)((uint64_t)iacc[at] + (uint64_t)iv);
        }
    }
    for (size_t i = 0; veil_ok(r) && i < count; i++) {
        double v = acc[i], empty = n->op == OP_REDUCEMAX ? -INFINITY : n->op == OP_REDUCEMIN ? INFINITY : 0.0;
        v = seen[i] == 0 ? empty : n->op == OP_REDUCEMEAN ? v / (double)seen[i] : n->op == OP_REDUCEL2 ? sqrt(v) : v;
        if (n->op == OP_REDUCEMEAN && seen[i] == 0)
            v = NAN;
        r = put(out->owned, x->dtype, i, iacc[i], v, !ints, label);
    }
    free(acc);
    free(iacc);
    free(seen);
    return r;
}

/* Expand and Split of a constant: the strided copy the run-time kernel would do, on the constant's bytes. */
static VEIL_RESULT fold_strided(struct eng_graph *g, struct eng_node *n, uint32_t output, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    struct eng_shape s;
    struct eng_kernel k;
    VEIL_GUARD(eng_fold_shape(g, n, output, &s, &k));
    VEIL_GUARD(out_alloc(n, out, x->dtype, &s));
    size_t w = dtype_width(x->dtype), count = eng_shape_count(&s);
    VEIL_ENSURE(eng_shape_count(&k.out) == count, VEIL_ERR_INTERNAL, "a copy of the wrong size");
    for (size_t i = 0; i < count; i++) { /* over the copy's dims (Tile's: more than the output's), row-major */
        int64_t c[ENG_RANK], at = k.offset[0];
        unravel(&k.out, i, c);
        for (uint32_t d = 0; d < k.out.rank; d++)
            at += c[d] * k.strides[0][d];
        memcpy(out->owned + i * w, x->data + (size_t)at * w, w);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_range(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *v[3] = {0};
    char label[160];
    eng_node_label(n, label, sizeof label);
    for (uint32_t i = 0; i < 3; i++) {
        VEIL_GUARD(const_in(g, n, i, &v[i]));
        VEIL_ENSURE(eng_shape_count(&v[i]->shape) == 1, VEIL_ERR_ONNX, "%s: start, limit and delta are scalars", label);
    }
    double start = get_f(v[0], 0), limit = get_f(v[1], 0), delta = get_f(v[2], 0);
    VEIL_ENSURE(delta != 0 && isfinite(start) && isfinite(limit) && isfinite(delta), VEIL_ERR_ONNX, "%s: bad delta",
                label);
    double len = ceil((limit - start) / delta);
    VEIL_ENSURE(len <= (double)ENG_MAX_FOLD_COUNT, VEIL_ERR_LIMIT, "%s: too many elements", label);
    struct eng_shape s = {.rank = 1, .dims = {len > 0 ? (int64_t)len : 0}};
    VEIL_GUARD(out_alloc(n, out, v[0]->dtype, &s));
    int ints = int_type(v[0]->dtype);
    for (int64_t i = 0; i < s.dims[0]; i++) {
        if (ints)
            VEIL_GUARD(put(out->owned, v[0]->dtype, (size_t)i,
                           (int64_t)((uint64_t)get_i(v[0], 0) + (uint64_t)i * (uint64_t)get_i(v[2], 0)), 0, 0, label));
        else
            VEIL_GUARD(put(out->owned, v[0]->dtype, (size_t)i, 0, start + (double)i * delta, 1, label));
    }
    return VEIL_RESULT_OK;
}

/* Trilu of a constant (GPT-2's causal mask under a dynamic batch): the last two dims' upper (upper = 1: j - i >= k)
 * or lower (j - i <= k) triangle kept, the rest zeroed; k from the optional scalar second input. */
VEIL_RESULT eng_fold_trilu(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL, *kv = NULL;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(const_in(g, n, 0, &x));
    int64_t k = 0;
    if (n->input_count > 1 && n->inputs[1] >= 0) {
        VEIL_GUARD(const_in(g, n, 1, &kv));
        VEIL_ENSURE(eng_shape_count(&kv->shape) == 1 && kv->dtype != VEIL_ONNX_FLOAT, VEIL_ERR_ONNX,
                    "%s: k must be an integer scalar", label);
        k = get_i(kv, 0);
    }
    VEIL_ENSURE(x->shape.rank >= 2, VEIL_ERR_ONNX, "%s: the input has fewer than 2 dims", label);
    VEIL_ENSURE(n->axis == 0 || n->axis == 1, VEIL_ERR_ONNX, "%s: upper must be 0 or 1", label);
    VEIL_GUARD(out_alloc(n, out, x->dtype, &x->shape));
    size_t w = dtype_width(x->dtype), count = eng_shape_count(&x->shape);
    int64_t rows = x->shape.dims[x->shape.rank - 2], cols = x->shape.dims[x->shape.rank - 1];
    for (size_t e = 0; e < count; e++) {
        int64_t j = (int64_t)(e % (size_t)cols), i = (int64_t)((e / (size_t)cols) % (size_t)rows);
        int keep = n->axis ? j - i >= k : j - i <= k;
        if (keep)
            memcpy(out->owned + e * w, x->data + e * w, w);
        else
            memset(out->owned + e * w, 0, w);
    }
    return VEIL_RESULT_OK;
}

/* MatMul of float32 constants (Swin V2's continuous position bias: a small MLP over a constant coordinate table):
 * A [..., M, K] x B [K, N], or B [..., K, N] with A's leading dims, in double; at most FOLD_MATMUL_MACS products. */
#define FOLD_MATMUL_MACS (UINT64_C(1) << 28)

VEIL_RESULT eng_fold_matmul(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *a = NULL, *b = NULL;
    VEIL_GUARD(const_in(g, n, 0, &a));
    VEIL_GUARD(const_in(g, n, 1, &b));
    char label[160];
    eng_node_label(n, label, sizeof label);
    uint32_t ra = a->shape.rank, rb = b->shape.rank;
    VEIL_ENSURE(a->dtype == VEIL_ONNX_FLOAT && b->dtype == VEIL_ONNX_FLOAT && ra >= 2 && rb >= 2 &&
                    (rb == 2 || rb == ra),
                VEIL_ERR_UNSUPPORTED, "%s: folding a MatMul of constants needs float32, rank >= 2, and B 2-D or of "
                "A's rank", label);
    int64_t m = a->shape.dims[ra - 2], k = a->shape.dims[ra - 1], nn = b->shape.dims[rb - 1];
    VEIL_ENSURE(b->shape.dims[rb - 2] == k, VEIL_ERR_ONNX, "%s: inner dimensions differ", label);
    size_t batches = eng_shape_count(&a->shape) / (size_t)(m * k > 0 ? m * k : 1);
    for (uint32_t i = 0; rb == ra && i + 2 < ra; i++)
        VEIL_ENSURE(b->shape.dims[i] == a->shape.dims[i], VEIL_ERR_UNSUPPORTED, "%s: batch broadcasting is not folded",
                    label);
    VEIL_ENSURE((uint64_t)batches * (uint64_t)m * (uint64_t)k * (uint64_t)nn <= FOLD_MATMUL_MACS, VEIL_ERR_LIMIT,
                "%s: too large a product to compute at load", label);
    struct eng_shape s = a->shape;
    s.dims[ra - 1] = nn;
    VEIL_GUARD(out_alloc(n, out, VEIL_ONNX_FLOAT, &s));
    float *y = (float *)(void *)out->owned;
    for (size_t t = 0; t < batches; t++) {
        size_t a0 = t * (size_t)(m * k), b0 = rb == 2 ? 0 : t * (size_t)(k * nn), y0 = t * (size_t)(m * nn);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < nn; j++) {
                double acc = 0;
                for (int64_t q = 0; q < k; q++)
                    acc += get_f(a, a0 + (size_t)(i * k + q)) * get_f(b, b0 + (size_t)(q * nn + j));
                y[y0 + (size_t)(i * nn + j)] = (float)acc;
            }
    }
    return VEIL_RESULT_OK;
}

static double activation(const struct eng_post *op, double x)
{
    switch (op->alg) {
    case dnnl_eltwise_relu: return x > 0 ? x : x * op->alpha;
    case dnnl_eltwise_logistic: return 1.0 / (1.0 + exp(-x));
    case dnnl_eltwise_clip: x = x < op->alpha ? op->alpha : x; return x > op->beta ? op->beta : x; /* min > max: max */
    case dnnl_eltwise_linear: return op->alpha * x + op->beta;
    case dnnl_eltwise_hardswish: return x * fmin(1.0, fmax(0.0, x / 6.0 + 0.5));
    case dnnl_eltwise_elu: return x > 0 ? x : op->alpha * expm1(x);
    case dnnl_eltwise_soft_relu: return fmax(x, 0.0) + log1p(exp(-fabs(x)));
    case dnnl_eltwise_mish: return x * tanh(fmax(x, 0.0) + log1p(exp(-fabs(x))));
    case dnnl_eltwise_round: return nearbyint(x); /* half to even */
    default: return NAN; /* not reached: eng_eltwise_parse makes only these */
    }
}

/* An activation (Relu ... Round: eng_eltwise_parse) of a float32 constant (Swin V2 clamps its constant logit
 * scale). */
VEIL_RESULT eng_fold_activation(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int ints = (n->op == OP_CLIP || n->op == OP_RELU) && (x->dtype == VEIL_ONNX_INT64 || x->dtype == VEIL_ONNX_INT32);
    VEIL_ENSURE(x->dtype == VEIL_ONNX_FLOAT || ints, VEIL_ERR_UNSUPPORTED, "%s: only float32 constants (and integer "
                "ones for Clip and Relu) are folded", label);
    struct eng_post ops[ENG_MAX_ELT];
    memcpy(ops, n->elt, sizeof ops);
    int64_t lo = INT64_MIN, hi = INT64_MAX; /* an integer Clip's bounds: attributes (floats), or exact inputs */
    if (ints && n->op == OP_CLIP) {
        lo = ops[0].alpha > -9.2e18f ? (int64_t)ceilf(ops[0].alpha) : INT64_MIN;
        hi = ops[0].beta < 9.2e18f ? (int64_t)floorf(ops[0].beta) : INT64_MAX;
    }
    for (uint32_t i = 1; n->op == OP_CLIP && i < n->input_count && i < 3; i++) /* opset >= 11: bounds as inputs */
        if (n->inputs[i] >= 0) {
            const struct eng_value *bound = NULL;
            VEIL_GUARD(const_in(g, n, i, &bound));
            VEIL_ENSURE(eng_shape_count(&bound->shape) == 1, VEIL_ERR_ONNX, "%s: min and max must be scalars", label);
            *(i == 1 ? &ops[0].alpha : &ops[0].beta) = (float)get_f(bound, 0);
            if (ints) /* exact integer bounds (a float32 one may be rounded) */
                *(i == 1 ? &lo : &hi) = get_i(bound, 0);
        }
    VEIL_GUARD(out_alloc(n, out, ints ? x->dtype : VEIL_ONNX_FLOAT, &x->shape));
    for (size_t i = 0; i < eng_shape_count(&x->shape); i++) {
        if (ints) { /* min(max(x, lo), hi): hi where lo > hi, as ONNX says */
            int64_t v = get_i(x, i);
            v = n->op == OP_RELU ? (v > 0 ? v : 0) : v < lo ? lo : v;
            VEIL_GUARD(put(out->owned, x->dtype, i, v > hi ? hi : v, 0, 0, label));
            continue;
        }
        double v = get_f(x, i);
        for (uint32_t k = 0; k < n->elt_count && k < ENG_MAX_ELT; k++)
            v = activation(&ops[k], v);
        ((float *)(void *)out->owned)[i] = (float)v;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_gather_elements(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL, *idx = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    VEIL_GUARD(const_in(g, n, 1, &idx));
    char label[160];
    eng_node_label(n, label, sizeof label);
    int64_t r = x->shape.rank, axis = norm_axis(n->axis, r);
    VEIL_ENSURE(axis >= 0 && axis < r && idx->shape.rank == x->shape.rank && idx->dtype != VEIL_ONNX_FLOAT,
                VEIL_ERR_ONNX, "%s: bad axis, rank or index type", label);
    VEIL_GUARD(out_alloc(n, out, x->dtype, &idx->shape));
    size_t xs[ENG_RANK], w = dtype_width(x->dtype), count = eng_shape_count(&idx->shape);
    strides_of(&x->shape, xs);
    for (size_t k = 0; k < count; k++) {
        int64_t c[ENG_RANK];
        unravel(&idx->shape, k, c);
        int64_t at = get_i(idx, k);
        at = at < 0 ? at + x->shape.dims[axis] : at;
        VEIL_ENSURE(at >= 0 && at < x->shape.dims[axis], VEIL_ERR_ONNX, "%s: index out of range", label);
        c[axis] = at;
        size_t src = 0;
        for (int64_t j = 0; j < r; j++) {
            VEIL_ENSURE(c[j] < x->shape.dims[j], VEIL_ERR_ONNX, "%s: indices exceed the data", label);
            src += (size_t)c[j] * xs[j];
        }
        memcpy(out->owned + k * w, x->data + src * w, w);
    }
    return VEIL_RESULT_OK;
}

/* ScatterND (reduction none) of constants: Swin's shifted-window masks. indices [..., k] address slices of data's
 * trailing rank - k dims, which updates [..., data.dims[k:]] overwrite in order. */
VEIL_RESULT eng_fold_scatter_nd(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL, *idx = NULL, *up = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    VEIL_GUARD(const_in(g, n, 1, &idx));
    VEIL_GUARD(const_in(g, n, 2, &up));
    char label[160];
    eng_node_label(n, label, sizeof label);
    uint32_t q = idx->shape.rank, r = x->shape.rank;
    int64_t k = q ? idx->shape.dims[q - 1] : 0;
    VEIL_ENSURE(q >= 1 && k >= 1 && k <= (int64_t)r && idx->dtype != VEIL_ONNX_FLOAT && up->dtype == x->dtype &&
                up->shape.rank == q - 1 + r - (uint32_t)k, VEIL_ERR_ONNX, "%s: indices, updates and data disagree",
                label);
    for (uint32_t i = 0; i + 1 < q; i++)
        VEIL_ENSURE(up->shape.dims[i] == idx->shape.dims[i], VEIL_ERR_ONNX, "%s: updates do not match indices", label);
    for (uint32_t i = (uint32_t)k; i < r; i++)
        VEIL_ENSURE(up->shape.dims[q - 1 + i - (uint32_t)k] == x->shape.dims[i], VEIL_ERR_ONNX, "%s: updates do not "
                    "match data", label);
    VEIL_GUARD(out_alloc(n, out, x->dtype, &x->shape));
    memcpy(out->owned, x->data, x->size);
    size_t xs[ENG_RANK], w = dtype_width(x->dtype), slice = 1, tuples = eng_shape_count(&idx->shape) / (size_t)k;
    strides_of(&x->shape, xs);
    for (uint32_t i = (uint32_t)k; i < r; i++)
        slice *= (size_t)x->shape.dims[i];
    for (size_t t = 0; t < tuples; t++) {
        size_t at = 0;
        for (int64_t j = 0; j < k; j++) {
            int64_t v = get_i(idx, t * (size_t)k + (size_t)j), d = x->shape.dims[j];
            v = v < 0 ? v + d : v;
            VEIL_ENSURE(v >= 0 && v < d, VEIL_ERR_ONNX, "%s: index out of range", label);
            at += (size_t)v * xs[j];
        }
        memcpy(out->owned + at * w, up->data + t * slice * w, slice * w);
    }
    return VEIL_RESULT_OK;
}

/* ---- QuantizeLinear, DequantizeLinear (constants: weights and biases of QDQ models) ------------------------ */

/* Element i of an integer tensor of the quantized types (INT8, UINT8, INT16, UINT16, INT32). */
static int64_t get_q(const struct eng_value *v, size_t i)
{
    switch (v->dtype) {
    case VEIL_ONNX_INT8: return (int8_t)v->data[i];
    case VEIL_ONNX_UINT8: return v->data[i];
    case VEIL_ONNX_INT16: { int16_t x; memcpy(&x, v->data + 2 * i, 2); return x; }
    case VEIL_ONNX_UINT16: { uint16_t x; memcpy(&x, v->data + 2 * i, 2); return x; }
    default: { int32_t x; memcpy(&x, v->data + 4 * i, 4); return x; }
    }
}

/* The scale (float32) and zero point (x's or the zero point's type) of a Q/DQ node: one per tensor, or one per
 * index of axis. *per is 1 or the axis' size; *stride the elements between two indices of axis. */
struct qparams {
    const struct eng_value *scale, *zp;
    size_t per, stride;
};

static VEIL_RESULT qparams_of(const struct eng_graph *g, struct eng_node *n, const struct eng_value *x,
                              struct qparams *q)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    q->scale = &g->values[n->inputs[1]];
    q->zp = n->input_count > 2 && n->inputs[2] >= 0 ? &g->values[n->inputs[2]] : NULL;
    size_t count = eng_shape_count(&q->scale->shape);
    VEIL_ENSURE(q->scale->dtype == VEIL_ONNX_FLOAT && q->scale->kind == VAL_CONST && q->scale->shape.rank <= 1,
                VEIL_ERR_UNSUPPORTED, "%s: the scale must be a float32 constant, a scalar or 1-D", label);
    VEIL_ENSURE(q->zp == NULL || (q->zp->kind == VAL_CONST && eng_shape_count(&q->zp->shape) == count),
                VEIL_ERR_ONNX, "%s: the zero point must be a constant of the scale's shape", label);
    q->per = count, q->stride = 1;
    if (count == 1) /* a scalar, or a 1-D scale of one: per tensor, as onnxruntime takes it */
        return VEIL_RESULT_OK;
    int64_t axis = norm_axis(n->axis, x->shape.rank);
    VEIL_ENSURE(axis >= 0 && axis < x->shape.rank && x->shape.dims[axis] == (int64_t)count, VEIL_ERR_ONNX,
                "%s: a 1-D scale must have the size of the input's axis %" PRId64, label, n->axis);
    for (int64_t i = axis + 1; i < x->shape.rank; i++)
        q->stride *= (size_t)x->shape.dims[i];
    return VEIL_RESULT_OK;
}

static size_t q_index(const struct qparams *q, size_t i)
{
    return q->per == 1 ? 0 : (i / q->stride) % q->per;
}

static float scale_at(const struct qparams *q, size_t k)
{
    float s;
    memcpy(&s, q->scale->data + 4 * k, 4);
    return s;
}

VEIL_RESULT eng_fold_dequantize(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = &g->values[n->inputs[0]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(x->dtype == VEIL_ONNX_INT8 || x->dtype == VEIL_ONNX_UINT8 || x->dtype == VEIL_ONNX_INT16 ||
                x->dtype == VEIL_ONNX_UINT16 || x->dtype == VEIL_ONNX_INT32, VEIL_ERR_UNSUPPORTED,
                "%s: dequantizes data type %" PRId32 "; INT8, UINT8, INT16, UINT16 and INT32 are supported", label,
                x->dtype);
    struct qparams q;
    VEIL_GUARD(qparams_of(g, n, x, &q));
    VEIL_ENSURE(q.zp == NULL || q.zp->dtype == x->dtype, VEIL_ERR_ONNX, "%s: the zero point's type is not the "
                "input's", label);
    VEIL_GUARD(out_alloc_width(n, out, VEIL_ONNX_FLOAT, &x->shape, 4, VEIL_SEALED_MAX_SECTION_SIZE / 4));
    out->dq_from = (int)(n - g->nodes) + 1;
    float *y = (float *)(void *)out->owned;
    for (size_t i = 0; i < eng_shape_count(&x->shape); i++) {
        size_t k = q_index(&q, i);
        int64_t zp = q.zp != NULL ? get_q(q.zp, k) : 0;
        y[i] = (float)(get_q(x, i) - zp) * scale_at(&q, k);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_fold_quantize(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(x->dtype == VEIL_ONNX_FLOAT, VEIL_ERR_UNSUPPORTED, "%s: quantizes float32 only", label);
    struct qparams q;
    VEIL_GUARD(qparams_of(g, n, x, &q));
    int32_t t = q.zp != NULL ? q.zp->dtype : VEIL_ONNX_UINT8;
    int64_t lo = 0, hi = 0;
    VEIL_GUARD(eng_quant_range(n, t, &lo, &hi));
    size_t width = t == VEIL_ONNX_INT8 || t == VEIL_ONNX_UINT8 ? 1 : 2;
    VEIL_GUARD(out_alloc_width(n, out, t, &x->shape, width, VEIL_SEALED_MAX_SECTION_SIZE / 4));
    for (size_t i = 0; i < eng_shape_count(&x->shape); i++) {
        size_t k = q_index(&q, i);
        double v = rint(get_f(x, i) / (double)scale_at(&q, k)) + (double)(q.zp != NULL ? get_q(q.zp, k) : 0);
        int64_t y = !(v >= (double)lo) ? lo : v > (double)hi ? hi : (int64_t)v; /* NaN: lo */
        if (width == 1)
            out->owned[i] = (uint8_t)y;
        else
            memcpy(out->owned + 2 * i, &(uint16_t){(uint16_t)y}, 2);
    }
    return VEIL_RESULT_OK;
}

/* CumSum of a constant: integers exactly in int64 (wrapping like the other integer operations), floats in double. */
VEIL_RESULT eng_fold_cumsum(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL, *axis = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    VEIL_GUARD(const_in(g, n, 1, &axis));
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(x->shape.rank >= 1, VEIL_ERR_ONNX, "%s: the input is a scalar", label);
    VEIL_GUARD(eng_cumsum_axis(g, n, x->shape.rank));
    VEIL_GUARD(out_alloc(n, out, x->dtype, &x->shape));
    int64_t outer = 1, inner = 1, dim = x->shape.dims[n->axis];
    eng_axis_split(&x->shape, n->axis, &outer, &inner);
    int ints = int_type(x->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            uint64_t acc_i = 0;
            double acc_f = 0;
            for (int64_t s = 0; s < dim; s++) {
                int64_t j = n->trans_b ? dim - 1 - s : s;
                size_t at = (size_t)((o * dim + j) * inner + i);
                if (n->trans_a) /* exclusive: the sum before this element */
                    VEIL_GUARD(put(out->owned, x->dtype, at, (int64_t)acc_i, acc_f, !ints, label));
                acc_i += ints ? (uint64_t)get_i(x, at) : 0;
                acc_f += ints ? 0 : get_f(x, at);
                if (!n->trans_a)
                    VEIL_GUARD(put(out->owned, x->dtype, at, (int64_t)acc_i, acc_f, !ints, label));
            }
        }
    return VEIL_RESULT_OK;
}

/* GatherND (batch_dims 0) of constants: each index tuple's slice of data, copied in order. */
VEIL_RESULT eng_fold_gather_nd(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const struct eng_value *x = NULL, *idx = NULL;
    VEIL_GUARD(const_in(g, n, 0, &x));
    VEIL_GUARD(const_in(g, n, 1, &idx));
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(int_type(idx->dtype) && idx->dtype != VEIL_ONNX_BOOL, VEIL_ERR_ONNX, "%s: indices must be INT64 or "
                "INT32", label);
    struct eng_shape s;
    uint32_t m = 0;
    VEIL_GUARD(eng_gather_nd_shape(n, &x->shape, &idx->shape, &s, &m));
    size_t count = eng_shape_count(&idx->shape), tuples = count / m, w = dtype_width(x->dtype), slice = 1;
    for (uint32_t i = m; i < x->shape.rank; i++)
        slice *= (size_t)x->shape.dims[i];
    VEIL_GUARD(out_alloc(n, out, x->dtype, &s));
    for (size_t t = 0; t < tuples; t++) {
        int64_t tuple[ENG_RANK], pos = 0;
        for (uint32_t j = 0; j < m; j++)
            tuple[j] = get_i(idx, t * m + j);
        VEIL_GUARD(eng_gather_nd_positions(n, &x->shape, tuple, 1, m, &pos));
        memcpy(out->owned + t * slice * w, x->data + (size_t)pos * slice * w, slice * w);
    }
    return VEIL_RESULT_OK;
}
