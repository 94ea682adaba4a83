/* SPDX-License-Identifier: Apache-2.0 */
/* The engine's own kernels, for what oneDNN has no primitive for, and the element-wise operators of transformer
 * graphs.
 *
 * Element-wise operators (Add ... Where, Erf, IsNaN) run as oneDNN eltwise or binary primitives whenever oneDNN
 * has the operation and its broadcasting rule fits (the first operand computed and of the output's shape, the
 * second broadcast); otherwise, and for integer or boolean semantics (Div of integers truncates, And, Where,
 * Mod), on one generic broadcasting kernel here. Slice, Expand, Split and Gather with a scalar index are
 * strided copies on the same kernel; Gather with index tensors (embeddings) has its own; Transpose is a oneDNN
 * reorder. Integer and boolean tensors computed at run time are float32 (exact below 2^24). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

/* ---- evaluation ------------------------------------------------------------------------------------------ */

static double fmod_python(double a, double b)
{
    double r = fmod(a, b);
    return r != 0 && ((r < 0) != (b < 0)) ? r + b : r;
}

double eng_kop_eval(enum eng_kop op, double a, double b, double c)
{
    switch (op) {
    case KOP_ADD: return a + b;
    case KOP_SUB: return a - b;
    case KOP_MUL: return a * b;
    case KOP_DIV: return a / b;
    case KOP_IDIV: return b != 0 ? trunc(a / b) : 0;
    case KOP_POW: return pow(a, b);
    case KOP_MAX: return a > b ? a : b;
    case KOP_MIN: return a < b ? a : b;
    case KOP_EQ: return a == b;
    case KOP_LT: return a < b;
    case KOP_GT: return a > b;
    case KOP_LE: return a <= b;
    case KOP_GE: return a >= b;
    case KOP_AND: return a != 0 && b != 0;
    case KOP_OR: return a != 0 || b != 0;
    case KOP_FMOD: return b != 0 ? fmod(a, b) : 0; /* integer operands held as float32 */
    case KOP_IMOD: return b != 0 ? fmod_python(a, b) : 0;
    case KOP_FMODF: return fmod(a, b); /* float operands: NaN for a zero divisor, as IEEE and numpy */
    case KOP_MODF: return fmod_python(a, b);
    case KOP_LOG: return log(a);
    case KOP_FLOOR: return floor(a);
    case KOP_CEIL: return ceil(a);
    case KOP_SIGN: return a > 0 ? 1.0 : a < 0 ? -1.0 : a; /* 0 and NaN as they are */
    case KOP_SIN: return sin(a);
    case KOP_COS: return cos(a);
    case KOP_RECIPROCAL: return 1.0 / a;
    case KOP_PRELU: return a < 0 ? a * b : a;
    case KOP_MAX3: return eng_kop_eval(KOP_MAX, eng_kop_eval(KOP_MAX, a, b, 0), c, 0);
    case KOP_MIN3: return eng_kop_eval(KOP_MIN, eng_kop_eval(KOP_MIN, a, b, 0), c, 0);
    case KOP_WHERE: return a != 0 ? b : c;
    case KOP_COPY: return a;
    case KOP_NOT: return a == 0;
    case KOP_ISNAN: return isnan(a);
    case KOP_ERF: return erf(a);
    case KOP_TRUNC: return trunc(a);
    case KOP_BOOL: return a != 0;
    case KOP_NEG: return -a;
    case KOP_ABS: return fabs(a);
    case KOP_SQRT: return sqrt(a);
    case KOP_TANH: return tanh(a);
    case KOP_EXP: return exp(a);
    case KOP_GATHER:
    case KOP_CUMSUM:
    case KOP_INSTNORM:
    case KOP_PAD:
    case KOP_QUANT:
    case KOP_ARGMAX:
    case KOP_TOPK:
    case KOP_GATHERELEMENTS:
    case KOP_REDUCE_EXTREME:
    case KOP_RESIZE:
    case KOP_GATHERND: break;
    }
    return 0;
}

static int is_int(int32_t dtype)
{
    return dtype == VEIL_ONNX_INT64 || dtype == VEIL_ONNX_INT32 || dtype == VEIL_ONNX_BOOL;
}

enum eng_kop eng_node_kop(const struct eng_node *n)
{
    switch (n->op) {
    case OP_ADD: return KOP_ADD;
    case OP_SUB: return KOP_SUB;
    case OP_MUL: return KOP_MUL;
    case OP_DIV: return n->dtype ? KOP_IDIV : KOP_DIV;  /* dtype set: integer operands */
    case OP_POW: return KOP_POW;
    case OP_MAX: return n->input_count == 3 ? KOP_MAX3 : KOP_MAX;
    case OP_MIN: return n->input_count == 3 ? KOP_MIN3 : KOP_MIN;
    case OP_EQUAL: return KOP_EQ;
    case OP_LESS: return KOP_LT;
    case OP_GREATER: return KOP_GT;
    case OP_LESSEQ: return KOP_LE;
    case OP_GREATEREQ: return KOP_GE;
    case OP_AND: return KOP_AND;
    case OP_OR: return KOP_OR;
    case OP_NOT: return KOP_NOT;
    case OP_WHERE: return KOP_WHERE;
    case OP_MOD: return n->dtype ? (n->fill_i ? KOP_FMOD : KOP_IMOD) : n->fill_i ? KOP_FMODF : KOP_MODF;
    case OP_SQRT: return KOP_SQRT;
    case OP_TANH: return KOP_TANH;
    case OP_ERF: return KOP_ERF;
    case OP_EXP: return KOP_EXP;
    case OP_NEG: return KOP_NEG;
    case OP_ABS: return KOP_ABS;
    case OP_ISNAN: return KOP_ISNAN;
    case OP_LOG: return KOP_LOG;
    case OP_FLOOR: return KOP_FLOOR;
    case OP_CEIL: return KOP_CEIL;
    case OP_SIGN: return KOP_SIGN;
    case OP_SIN: return KOP_SIN;
    case OP_COS: return KOP_COS;
    case OP_RECIPROCAL: return KOP_RECIPROCAL;
    case OP_PRELU: return KOP_PRELU;
    default: return KOP_COPY;
    }
}

/* ---- kernels --------------------------------------------------------------------------------------------- */

/* One row of n outputs: o[j] = op(a[j * sa], b[j * sb], c[j * sc]). The common operators run as float loops, with a
 * unit-stride version the compiler vectorises (an attention's IsNaN and Where over [heads, seq, seq] are millions of
 * elements a run); their results equal eng_kop_eval's, which computes in double: + - * / of two floats rounded once
 * to float from double are the correctly rounded float results (53 >= 2 * 24 + 2 bits), and the rest are exact.
 * Everything else goes through eng_kop_eval. */
#define ROW1(EXPR)                                                                                                 \
    do {                                                                                                           \
        if (sa == 1)                                                                                               \
            for (int64_t j = 0; j < n; j++) {                                                                      \
                float x = a[j];                                                                                    \
                o[j] = (EXPR);                                                                                     \
            }                                                                                                      \
        else                                                                                                       \
            for (int64_t j = 0; j < n; j++) {                                                                      \
                float x = a[j * sa];                                                                               \
                o[j] = (EXPR);                                                                                     \
            }                                                                                                      \
    } while (0)
#define ROW2(EXPR)                                                                                                 \
    do {                                                                                                           \
        if (sa == 1 && sb == 1)                                                                                    \
            for (int64_t j = 0; j < n; j++) {                                                                      \
                float x = a[j], y = b[j];                                                                          \
                o[j] = (EXPR);                                                                                     \
            }                                                                                                      \
        else if (sa == 1 && sb == 0)                                                                               \
            for (int64_t j = 0; j < n; j++) {                                                                      \
                float x = a[j], y = b[0];                                                                          \
                o[j] = (EXPR);                                                                                     \
            }                                                                                                      \
        else                                                                                                       \
            for (int64_t j = 0; j < n; j++) {                                                                      \
                float x = a[j * sa], y = b[j * sb];                                                                \
                o[j] = (EXPR);                                                                                     \
            }                                                                                                      \
    } while (0)

static void nary_row(enum eng_kop op, int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                     const float *c, int64_t sc, float *o)
{
    switch (op) {
    case KOP_ADD: ROW2(x + y); return;
    case KOP_SUB: ROW2(x - y); return;
    case KOP_MUL: ROW2(x * y); return;
    case KOP_DIV: ROW2(x / y); return;
    case KOP_MAX: ROW2(x > y ? x : y); return;
    case KOP_MIN: ROW2(x < y ? x : y); return;
    case KOP_EQ: ROW2(x == y ? 1.0f : 0.0f); return;
    case KOP_LT: ROW2(x < y ? 1.0f : 0.0f); return;
    case KOP_GT: ROW2(x > y ? 1.0f : 0.0f); return;
    case KOP_LE: ROW2(x <= y ? 1.0f : 0.0f); return;
    case KOP_GE: ROW2(x >= y ? 1.0f : 0.0f); return;
    case KOP_AND: ROW2(x != 0 && y != 0 ? 1.0f : 0.0f); return;
    case KOP_OR: ROW2(x != 0 || y != 0 ? 1.0f : 0.0f); return;
    case KOP_COPY: ROW1(x); return;
    case KOP_NOT: ROW1(x == 0 ? 1.0f : 0.0f); return;
    case KOP_ISNAN: ROW1(isnan(x) ? 1.0f : 0.0f); return;
    case KOP_BOOL: ROW1(x != 0 ? 1.0f : 0.0f); return;
    case KOP_NEG: ROW1(-x); return;
    case KOP_ABS: ROW1(fabsf(x)); return;
    case KOP_FLOOR: ROW1(floorf(x)); return;
    case KOP_CEIL: ROW1(ceilf(x)); return;
    case KOP_RECIPROCAL: ROW1(1.0f / x); return;
    case KOP_PRELU: ROW2(x < 0 ? x * y : x); return;
    case KOP_WHERE:
        if (sa == 1 && sb == 0 && sc == 1) /* masked_fill: Where(cond, constant, x) */
            for (int64_t j = 0; j < n; j++)
                o[j] = a[j] != 0 ? b[0] : c[j];
        else
            for (int64_t j = 0; j < n; j++)
                o[j] = a[j * sa] != 0 ? b[j * sb] : c[j * sc];
        return;
    default:
        for (int64_t j = 0; j < n; j++)
            o[j] = (float)eng_kop_eval(op, a[j * sa], b[j * sb], c[j * sc]); /* b, c: 0 when absent */
        return;
    }
}

#undef ROW1
#undef ROW2

/* out[k] = op(in0[p0], in1[p1], in2[p2]) over the output's elements, one row (last dim) at a time, the rows split
 * over the OpenMP threads (each finds its inputs' offsets from its own row index). */
static void run_nary(const struct eng_kernel *k, const float *const *in, float *out)
{
    uint32_t r = k->out.rank;
    int64_t last = r ? k->out.dims[r - 1] : 1;
    int64_t rows = last > 0 ? (int64_t)(eng_shape_count(&k->out) / (size_t)last) : 0;
    static const float none = 0;
#pragma omp parallel for schedule(static) if (rows * last >= 32768)
    for (int64_t q = 0; q < rows; q++) {
        int64_t p[ENG_KERNEL_INPUTS] = {0}, s[ENG_KERNEL_INPUTS] = {0};
        for (uint32_t i = 0; i < k->inputs; i++) {
            p[i] = k->offset[i];
            s[i] = r ? k->strides[i][r - 1] : 0;
        }
        int64_t rem = q; /* q's coordinates over the dims before the last, the innermost first */
        for (uint32_t d = r > 1 ? r - 1 : 0; d-- > 0;) {
            int64_t cd = rem % k->out.dims[d];
            rem /= k->out.dims[d];
            for (uint32_t i = 0; i < k->inputs; i++)
                p[i] += cd * k->strides[i][d];
        }
        const float *a = in[0] + p[0];
        const float *b = k->inputs > 1 ? in[1] + p[1] : &none, *c = k->inputs > 2 ? in[2] + p[2] : &none;
        nary_row(k->op, last, a, s[0], b, k->inputs > 1 ? s[1] : 0, c, k->inputs > 2 ? s[2] : 0, out + q * last);
    }
}

VEIL_RESULT eng_kernel_index(const struct eng_node *n, float f, int64_t dim, int64_t *at)
{
    char label[160];
    /* range first: casting a float beyond int64 (or a NaN) would be undefined */
    VEIL_ENSURE(f >= -(float)dim && f < (float)dim && floorf(f) == f, VEIL_ERR_ARG, "%s: index %g is out of range [-%"
                PRId64 ", %" PRId64 ")", eng_node_label(n, label, sizeof label), (double)f, dim, dim);
    *at = (int64_t)f < 0 ? (int64_t)f + dim : (int64_t)f;
    return VEIL_RESULT_OK;
}

/* data [outer, dim, inner], indices [count] -> out [outer, count, inner]. */
static VEIL_RESULT run_gather(const struct eng_kernel *k, const float *data, const float *idx, float *out,
                              const struct eng_node *n)
{
    int64_t at = 0;
    for (int64_t j = 0; j < k->count; j++)
        VEIL_GUARD(eng_kernel_index(n, idx[j], k->dim, &at));
    for (int64_t o = 0; o < k->outer; o++)
        for (int64_t j = 0; j < k->count; j++) {
            VEIL_GUARD(eng_kernel_index(n, idx[j], k->dim, &at));
            memcpy(out + (o * k->count + j) * k->inner, data + (o * k->dim + at) * k->inner,
                   (size_t)k->inner * sizeof *out);
        }
    return VEIL_RESULT_OK;
}

/* A coordinate outside [0, n) mapped back into it: mirrored without repeating the edge (reflect: pads < n), clamped
 * (edge) or wrapped around (wrap: pads <= n); -1 for a constant pad. */
static int64_t pad_source(enum eng_pad_mode mode, int64_t x, int64_t n)
{
    if (x >= 0 && x < n)
        return x;
    switch (mode) {
    case PAD_REFLECT: return x < 0 ? -x : 2 * (n - 1) - x;
    case PAD_EDGE: return x < 0 ? 0 : n - 1;
    case PAD_WRAP: return x < 0 ? x + n : x - n;
    case PAD_CONSTANT: break;
    }
    return -1;
}

/* A Pad: each output element is the input's at (coordinate - pad) when that lies inside it, else the pad value (or
 * the input's at the coordinate mirrored, clamped or wrapped into it). */
static void run_pad(const struct eng_kernel *k, const float *in, float *out)
{
    uint32_t r = k->out.rank;
    int64_t c[ENG_RANK] = {0}, stride[ENG_RANK], m = 1;
    for (uint32_t d = r; d-- > 0;) {
        stride[d] = m;
        m *= k->in.dims[d];
    }
    size_t total = eng_shape_count(&k->out);
    for (size_t i = 0; i < total; i++) {
        int64_t at = 0;
        int inside = 1;
        for (uint32_t d = 0; d < r && inside; d++) {
            int64_t x = pad_source(k->pad_mode, c[d] - k->pad[d], k->in.dims[d]);
            inside = x >= 0;
            at += x * stride[d];
        }
        out[i] = inside ? in[at] : k->pad_value;
        for (uint32_t d = r; d-- > 0;) {
            if (++c[d] < k->out.dims[d])
                break;
            c[d] = 0;
        }
    }
}

/* Running sums along dim of [outer, dim, inner], in double (exact for the integers tensors hold as float32). */
static void run_cumsum(const struct eng_kernel *k, const float *in, float *out)
{
#pragma omp parallel for schedule(static) if (k->outer * k->inner >= 64)
    for (int64_t q = 0; q < k->outer * k->inner; q++) {
        int64_t o = q / k->inner, i = q % k->inner;
        double acc = 0;
        for (int64_t s = 0; s < k->dim; s++) {
            int64_t j = k->reverse ? k->dim - 1 - s : s;
            size_t at = (size_t)((o * k->dim + j) * k->inner + i);
            double x = in[at];
            if (!k->exclusive)
                acc += x;
            out[at] = (float)acc;
            if (k->exclusive)
                acc += x;
        }
    }
}

/* InstanceNormalization: each (n, c) row of inner values normalised by its own mean and variance (two passes, in
 * double), then scaled and shifted by channel c's scale and bias. */
static void run_instnorm(const struct eng_kernel *k, const float *in, const float *scale, const float *bias,
                         float *out)
{
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < k->outer; q++) {
        const float *x = in + q * k->inner;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < k->inner; i++)
            mean += x[i];
        mean /= (double)k->inner;
        for (int64_t i = 0; i < k->inner; i++)
            var += (x[i] - mean) * (x[i] - mean);
        var /= (double)k->inner;
        int64_t c = q % k->dim;
        double a = scale[c] / sqrt(var + k->eps), b = bias[c] - mean * a;
        for (int64_t i = 0; i < k->inner; i++)
            out[q * k->inner + i] = (float)(x[i] * a + b);
    }
}

/* Quantize (and dequantize) every element of a dense buffer: round(x / s) + zp, clipped, as ONNX says (the zero
 * point is added after rounding: round half to even of x / s + zp differs for an odd zero point). Clamping before
 * rounding is the same for integer bounds, and keeps |v| < 2^22, where adding and subtracting 1.5 * 2^23 rounds half
 * to even (the default rounding mode) in a loop the compiler vectorizes; a NaN becomes lo. */
static inline float quant_one(const struct eng_kernel *k, float x)
{
    const float magic = 12582912.0f, zp = k->q_zp, lo = k->q_lo - zp, hi = k->q_hi - zp;
    float v = x / k->q_scale;
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    return (v + magic) - magic + zp;
}

static void run_quant(const struct eng_kernel *k, const float *in, float *out)
{
    const float dzp = k->dq_zp, ds = k->dq_scale;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < k->count; i++)
        out[i] = (quant_one(k, in[i]) - dzp) * ds;
}

/* Both at once: the dequantized values for float readers, the integers for int8 convolutions. */
static void run_quant_both(const struct eng_kernel *k, const float *in, float *out, uint8_t *bytes)
{
    const float dzp = k->dq_zp, ds = k->dq_scale;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < k->count; i++) {
        float v = quant_one(k, in[i]);
        bytes[i] = (uint8_t)((int32_t)v & 0xff);
        out[i] = (v - dzp) * ds;
    }
}

/* The same, writing the integers (u8, or s8 when lo < 0) for int8 convolutions. */
static void run_quant_bytes(const struct eng_kernel *k, const float *in, uint8_t *out)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < k->count; i++)
        out[i] = (uint8_t)((int32_t)quant_one(k, in[i]) & 0xff); /* s8: two's complement */
}

VEIL_RESULT eng_kernel_run(const struct eng_step *s, const struct eng_node *n)
{
    const struct eng_kernel *k = s->kernel;
    void *ptr[ENG_KERNEL_INPUTS + 1] = {0};
    uint32_t count = k->op == KOP_GATHER ? 2 : k->inputs, outs = k->q_bytes == 2 || k->op == KOP_TOPK ? 2 : 1;
    VEIL_ENSURE(s->arg_count == count + outs, VEIL_ERR_INTERNAL, "kernel step with %" PRIu32 " arguments",
                s->arg_count);
    for (uint32_t i = 0; i < count + outs; i++)
        ENG_GUARD_DNNL(dnnl_memory_get_data_handle(s->args[i].mem, &ptr[i]), n, "memory handle");
    const float *in[ENG_KERNEL_INPUTS] = {ptr[0], ptr[1], ptr[2]};
    void *out = ptr[count], *second = outs > 1 ? ptr[count + 1] : NULL;
    switch (k->op) { /* the kernels that may fail return; the others fall to the end */
    case KOP_GATHER: return run_gather(k, in[0], in[1], out, n);
    case KOP_TOPK: return eng_run_topk(k, in[0], out, second);
    case KOP_GATHERELEMENTS: return eng_run_gather_elements(k, in[0], in[1], out, n);
    case KOP_GATHERND: return eng_run_gather_nd(k, in[0], in[1], out, n);
    case KOP_PAD: run_pad(k, in[0], out); break;
    case KOP_CUMSUM: run_cumsum(k, in[0], out); break;
    case KOP_ARGMAX: eng_run_argmax(k, in[0], out); break;
    case KOP_REDUCE_EXTREME: eng_run_reduce_extreme(k, in[0], out); break;
    case KOP_RESIZE: eng_run_resize(k, in[0], out); break;
    case KOP_INSTNORM: run_instnorm(k, in[0], in[1], in[2], out); break;
    case KOP_QUANT:
        if (k->q_bytes == 2)
            run_quant_both(k, in[0], out, second);
        else if (k->q_bytes)
            run_quant_bytes(k, in[0], out);
        else
            run_quant(k, in[0], out);
        break;
    default: run_nary(k, in, out); break;
    }
    return VEIL_RESULT_OK;
}

/* ---- shapes ---------------------------------------------------------------------------------------------- */

VEIL_RESULT eng_broadcast_shape(const struct eng_node *n, const struct eng_shape *a, const struct eng_shape *b,
                                struct eng_shape *out)
{
    struct eng_shape s = {.rank = a->rank > b->rank ? a->rank : b->rank};
    for (uint32_t i = 0; i < s.rank; i++) {
        int64_t x = i < s.rank - a->rank ? 1 : a->dims[i - (s.rank - a->rank)];
        int64_t y = i < s.rank - b->rank ? 1 : b->dims[i - (s.rank - b->rank)];
        char label[160];
        VEIL_ENSURE(x == y || x == 1 || y == 1, VEIL_ERR_ONNX, "%s: shapes do not broadcast (%" PRId64 " vs %" PRId64
                    " at axis %" PRIu32 ")", eng_node_label(n, label, sizeof label), x, y, i);
        s.dims[i] = x == 1 ? y : x;
    }
    *out = s;
    return VEIL_RESULT_OK;
}

void eng_broadcast_strides(const struct eng_shape *in, const struct eng_shape *out, int64_t *strides)
{
    int64_t k = 1;
    for (uint32_t i = out->rank; i-- > 0;) {
        uint32_t lead = out->rank - in->rank;
        int64_t d = i < lead ? 1 : in->dims[i - lead];
        strides[i] = d == 1 ? 0 : k;
        k *= d;
    }
}

/* ---- element-wise operators ------------------------------------------------------------------------------ */

VEIL_RESULT eng_elementwise_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    char label[160];
    if ((n->op == OP_MAX || n->op == OP_MIN) && n->input_count == 1) { /* the maximum of one tensor: itself */
        n->op = OP_IDENTITY;
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE((n->op != OP_MAX && n->op != OP_MIN) || n->input_count <= ENG_KERNEL_INPUTS, VEIL_ERR_UNSUPPORTED,
                "%s has %" PRIu32 " inputs; the engine takes Max and Min of one to %u", eng_node_label(n, label,
                sizeof label), n->input_count, ENG_KERNEL_INPUTS);
    if (n->op == OP_MOD)
        return eng_attr_int(n, "fmod", 0, &n->fill_i);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_gelu_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    struct eng_attr *a = eng_attr_get(n, "approximate");
    n->fill_i = 0;
    if (a == NULL)
        return VEIL_RESULT_OK;
    a->used = 0;
    if (veil_ok(eng_attr_string_is(n, "approximate", "none")))
        return VEIL_RESULT_OK;
    veil_error_clear();
    n->fill_i = 1;
    return eng_attr_string_is(n, "approximate", "tanh");
}

static int32_t result_dtype(const struct eng_graph *g, const struct eng_node *n)
{
    switch (n->op) {
    case OP_EQUAL: case OP_LESS: case OP_GREATER: case OP_LESSEQ: case OP_GREATEREQ: case OP_AND: case OP_OR:
    case OP_NOT: case OP_ISNAN:
        return VEIL_ONNX_BOOL;
    case OP_WHERE: return g->values[n->inputs[1]].dtype;
    default: return g->values[n->inputs[0]].dtype;
    }
}

VEIL_RESULT eng_elementwise_infer(struct eng_graph *g, struct eng_node *n)
{
    struct eng_shape s = g->values[n->inputs[0]].shape;
    for (uint32_t i = 1; i < n->input_count; i++)
        VEIL_GUARD(eng_broadcast_shape(n, &s, &g->values[n->inputs[i]].shape, &s));
    char label[160];
    VEIL_ENSURE(n->input_count <= ENG_KERNEL_INPUTS, VEIL_ERR_ONNX, "%s: too many inputs",
                eng_node_label(n, label, sizeof label));
    struct eng_value *out = &g->values[n->outputs[0]];
    out->shape = s;
    out->dtype = result_dtype(g, n);
    int int_op = n->op == OP_DIV || n->op == OP_MOD; /* integer semantics: truncating division, zero divisors */
    n->dtype = int_op && is_int(g->values[n->inputs[0]].dtype) ? VEIL_ONNX_INT64 : 0;
    return VEIL_RESULT_OK;
}

static int same_shape(const struct eng_shape *a, const struct eng_shape *b)
{
    return a->rank == b->rank && memcmp(a->dims, b->dims, a->rank * sizeof a->dims[0]) == 0;
}

/* A computed input in plain layout: the value itself, or a hidden value that a reorder step added now fills. The
 * reorder must come before the kernel's step (steps run in the order they are added): kernels read row-major
 * buffers, and a Conv's output, say, is channels-last. */
static VEIL_RESULT kernel_source(struct veil_engine *e, int v, int *out)
{
    *out = v;
    if (e->g.values[v].kind == VAL_CONST)
        return VEIL_RESULT_OK;
    dnnl_memory_desc_t md;
    VEIL_GUARD(eng_md_plain(&md, &e->g.values[v].shape));
    return eng_input_as(e, v, &md, out);
}

/* The input as float32 in plain layout: a computed value (made plain by kernel_source), or a constant converted
 * and stored with the step. */
static VEIL_RESULT kernel_input(struct veil_engine *e, size_t step, const struct eng_node *n, int v, uint32_t i)
{
    struct eng_value *x = &e->g.values[v];
    dnnl_memory_desc_t md;
    VEIL_GUARD(eng_md_plain(&md, &x->shape));
    if (x->kind != VAL_CONST)
        return eng_step_value(e, &e->steps[step], DNNL_ARG_MULTIPLE_SRC + (int)i, v, 0);
    if (e->steps[step].kernel->op == KOP_GATHER && i == 0 && x->dtype == VEIL_ONNX_FLOAT && eng_lendable(e, x))
        return eng_step_borrow(e, &e->steps[step], DNNL_ARG_MULTIPLE_SRC, &md, x->data); /* embeddings, in place */
    size_t count = eng_shape_count(&x->shape);
    char label[160];
    size_t width = x->dtype == VEIL_ONNX_FLOAT || x->dtype == VEIL_ONNX_INT32 ? 4 : x->dtype == VEIL_ONNX_INT64 ? 8
                   : x->dtype == VEIL_ONNX_BOOL ? 1 : 0;
    VEIL_ENSURE(width > 0 && x->size == count * width, VEIL_ERR_UNSUPPORTED, "%s: constant '%s' has data type %"
                PRId32, eng_node_label(n, label, sizeof label), x->name, x->dtype);
    void *dst = NULL; /* converted straight into the engine's constant: no third copy of an embedding table */
    VEIL_GUARD(eng_step_const_new(e, &e->steps[step], DNNL_ARG_MULTIPLE_SRC + (int)i, &md, &dst));
    float *f = dst;
    for (size_t k = 0; k < count; k++) {
        const uint8_t *p = x->data + k * width;
        if (x->dtype == VEIL_ONNX_FLOAT) {
            memcpy(&f[k], p, 4);
        } else if (x->dtype == VEIL_ONNX_INT64) {
            int64_t q;
            memcpy(&q, p, 8);
            f[k] = (float)q;
        } else if (x->dtype == VEIL_ONNX_INT32) {
            int32_t q;
            memcpy(&q, p, 4);
            f[k] = (float)q;
        } else {
            f[k] = p[0] != 0;
        }
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_step_kernel(struct veil_engine *e, const struct eng_node *n, const struct eng_kernel *k,
                            const int *inputs, int output)
{
    return eng_step_kernel2(e, n, k, inputs, output, -1);
}

VEIL_RESULT eng_step_kernel2(struct veil_engine *e, const struct eng_node *n, const struct eng_kernel *k,
                             const int *inputs, int output, int second)
{
    uint32_t count = k->op == KOP_GATHER ? 2 : k->inputs;
    int src[ENG_KERNEL_INPUTS];
    for (uint32_t i = 0; i < count; i++)
        VEIL_GUARD(kernel_source(e, inputs[i], &src[i]));
    struct eng_step *s = NULL;
    VEIL_GUARD(eng_step_kernel_new(e, n, k, &s));
    size_t step = (size_t)(s - e->steps);
    for (uint32_t i = 0; i < count; i++)
        VEIL_GUARD(kernel_input(e, step, n, src[i], i));
    /* the output's own shape: a copy may run over more dims than it has (Tile, DepthToSpace), in the same order */
    const struct eng_shape *out = &e->g.values[output].shape;
    dnnl_memory_desc_t md;
    VEIL_GUARD(eng_md_plain(&md, eng_shape_count(out) == eng_shape_count(&k->out) ? out : &k->out));
    VEIL_GUARD(eng_value_set_md(e, output, &md));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_DST, output, 1));
    if (second < 0)
        return VEIL_RESULT_OK;
    VEIL_GUARD(eng_value_set_md(e, second, &md));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST + 1, second, 1);
}

static VEIL_RESULT kernel_elementwise(struct veil_engine *e, const struct eng_node *n)
{
    struct eng_kernel k = {.op = eng_node_kop(n), .inputs = n->input_count, .out = e->g.values[n->out].shape};
    for (uint32_t i = 0; i < n->input_count; i++)
        eng_broadcast_strides(&e->g.values[n->inputs[i]].shape, &k.out, k.strides[i]);
    return eng_step_kernel(e, n, &k, n->inputs, n->out);
}

/* A oneDNN eltwise step (alg, alpha, beta) from the input, in its layout, into the output. */
static VEIL_RESULT eltwise(struct veil_engine *e, const struct eng_node *n, dnnl_alg_kind_t alg, float alpha,
                           float beta)
{
    dnnl_memory_desc_t md = e->g.values[n->inputs[0]].md;
    dnnl_eltwise_desc_t desc;
    ENG_GUARD_DNNL(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_inference, alg, &md, alpha, beta), n,
                   "eltwise setup");
    size_t step = 0;
    VEIL_GUARD(eng_step_plain(e, n, &desc, "eltwise", &step));
    VEIL_GUARD(eng_value_set_md(e, n->out, &md));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_SRC, n->inputs[0], 0));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, n->out, 1);
}

/* Pow with a constant scalar exponent: eltwise pow (alpha * x^beta). */
static int scalar_exponent(const struct eng_graph *g, const struct eng_node *n, float *out)
{
    const struct eng_value *b = &g->values[n->inputs[1]];
    if (b->kind != VAL_CONST || b->dtype != VEIL_ONNX_FLOAT || b->size != 4)
        return 0;
    memcpy(out, b->data, 4);
    return 1;
}

static int binary_alg(enum eng_op op, dnnl_alg_kind_t *alg)
{
    switch (op) {
    case OP_ADD: *alg = dnnl_binary_add; return 1;
    case OP_SUB: *alg = dnnl_binary_sub; return 1;
    case OP_MUL: *alg = dnnl_binary_mul; return 1;
    case OP_DIV: *alg = dnnl_binary_div; return 1;
    case OP_MAX: *alg = dnnl_binary_max; return 1;
    case OP_MIN: *alg = dnnl_binary_min; return 1;
    case OP_EQUAL: *alg = dnnl_binary_eq; return 1;
    case OP_LESS: *alg = dnnl_binary_lt; return 1;
    case OP_GREATER: *alg = dnnl_binary_gt; return 1;
    case OP_LESSEQ: *alg = dnnl_binary_le; return 1;
    case OP_GREATEREQ: *alg = dnnl_binary_ge; return 1;
    default: return 0;
    }
}

/* Whether oneDNN's binary primitive fits: float semantics, a computed operand of the output's shape first (or
 * second, for commutative operations), the other broadcast. */
static int binary_fits(const struct veil_engine *e, const struct eng_node *n)
{
    dnnl_alg_kind_t alg;
    if (n->input_count != 2 || !binary_alg(n->op, &alg) || n->dtype != 0)
        return 0;
    const struct eng_value *a = &e->g.values[n->inputs[0]], *b = &e->g.values[n->inputs[1]];
    const struct eng_shape *out = &e->g.values[n->out].shape;
    int a_full = a->kind != VAL_CONST && same_shape(&a->shape, out);
    int b_full = b->kind != VAL_CONST && same_shape(&b->shape, out);
    int commutes = n->op == OP_ADD || n->op == OP_MUL || n->op == OP_MAX || n->op == OP_MIN || n->op == OP_EQUAL;
    if (a->kind == VAL_CONST && a->dtype != VEIL_ONNX_FLOAT)
        return 0;
    if (b->kind == VAL_CONST && b->dtype != VEIL_ONNX_FLOAT)
        return 0;
    return a_full || (b_full && commutes);
}

VEIL_RESULT eng_elementwise_build(struct veil_engine *e, struct eng_node *n)
{
    float p = 0;
    int float_in = !is_int(e->g.values[n->inputs[0]].dtype);
    switch (n->op) {
    case OP_SQRT: return eltwise(e, n, dnnl_eltwise_sqrt, 0, 0);
    case OP_TANH: return eltwise(e, n, dnnl_eltwise_tanh, 0, 0);
    case OP_EXP: return eltwise(e, n, dnnl_eltwise_exp, 0, 0);
    case OP_ABS: return eltwise(e, n, dnnl_eltwise_abs, 0, 0);
    case OP_NEG: return eltwise(e, n, dnnl_eltwise_linear, -1, 0);
    case OP_GELU: return eltwise(e, n, n->fill_i ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf, 0, 0);
    case OP_POW:
        if (float_in && scalar_exponent(&e->g, n, &p) && e->g.values[n->inputs[0]].kind != VAL_CONST)
            return eltwise(e, n, dnnl_eltwise_pow, 1, p);
        break;
    default: break;
    }
    if (binary_fits(e, n))
        return eng_binary_build(e, n);
    return kernel_elementwise(e, n);
}

/* A KOP_QUANT step: n's input into out, and (bytes >= 0) the integers into bytes as well. */
static VEIL_RESULT quant_step(struct veil_engine *e, const struct eng_node *n, const struct eng_kernel *k,
                              const dnnl_memory_desc_t *out_md, int out, int bytes, const dnnl_memory_desc_t *bytes_md)
{
    struct eng_step *s = NULL;
    VEIL_GUARD(eng_step_kernel_new(e, n, k, &s));
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_MULTIPLE_SRC, n->inputs[0], 0));
    VEIL_GUARD(eng_value_set_md(e, out, out_md));
    VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_DST, out, 1));
    if (bytes < 0)
        return VEIL_RESULT_OK;
    VEIL_GUARD(eng_value_set_md(e, bytes, bytes_md));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST + 1, bytes, 1);
}

/* A QuantizeLinear's chain [linear(1/s, zp), round, clip(lo, hi)], and its DequantizeLinear [linear(1, -zp'),
 * linear(s', 0)] when fused, as one pass over the tensor in its own layout (element-wise, so any dense layout does;
 * the padding of a blocked one is 0 and stays 0). Anything else (a DequantizeLinear alone) is a oneDNN eltwise
 * chain. */
VEIL_RESULT eng_quant_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_post *c = n->elt;
    int quant = n->op == OP_QUANTIZE && n->elt_count >= 3 && c[0].alg == dnnl_eltwise_linear &&
                c[1].alg == dnnl_eltwise_round && c[2].alg == dnnl_eltwise_clip;
    int dq = n->elt_count == 5 && c[3].alg == dnnl_eltwise_linear && c[3].alpha == 1.0f &&
             c[4].alg == dnnl_eltwise_linear && c[4].beta == 0.0f;
    if (!quant || (n->elt_count != 3 && !dq))
        return eng_eltwise_build(e, n);
    struct eng_kernel k = {.op = KOP_QUANT, .inputs = 1, .q_scale = n->alpha, .q_zp = c[0].beta,
                           .q_lo = c[2].alpha, .q_hi = c[2].beta, .dq_zp = 0.0f, .dq_scale = 1.0f};
    if (dq)
        k.dq_zp = -c[3].beta, k.dq_scale = c[4].alpha;
    const dnnl_memory_desc_t md = e->g.values[n->inputs[0]].md;
    size_t bytes = dnnl_memory_desc_get_size(&md);
    char label[160];
    VEIL_ENSURE(md.data_type == dnnl_f32 && bytes % 4 == 0, VEIL_ERR_INTERNAL, "%s: not a float32 tensor",
                eng_node_label(n, label, sizeof label));
    k.count = (int64_t)(bytes / 4);
    k.out = e->g.values[n->out].shape;
    if (n->int8 == 0)
        return quant_step(e, n, &k, &md, n->out, -1, NULL);
    dnnl_memory_desc_t bytes_md = md; /* the integers themselves, in the same layout, for the int8 Convs */
    bytes_md.data_type = n->x_type;
    if (n->int8 == 1) {
        k.q_bytes = 1;
        return quant_step(e, n, &k, &bytes_md, n->out, -1, NULL);
    }
    int v = -1; /* int8 = 2: both, in one pass, the integers into a hidden value */
    VEIL_GUARD(eng_graph_add_hidden(&e->g, &v));
    e->g.values[v].shape = e->g.values[n->out].shape;
    e->g.values[v].has_shape = 1;
    n->int8_bytes = v + 1;
    k.q_bytes = 2;
    return quant_step(e, n, &k, &md, n->out, v, &bytes_md);
}
