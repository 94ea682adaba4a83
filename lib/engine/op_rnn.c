/* SPDX-License-Identifier: Apache-2.0 */
/* LSTM and GRU (ONNX layout 0: X [seq, batch, input]) on oneDNN's RNN primitives: forward, reverse and bidirectional;
 * GRU with linear_before_reset 0 (oneDNN's GRU) or 1 (its LBR GRU, as PyTorch exports nn.GRU).
 *
 * ONNX holds W [D, G * H, I], R [D, G * H, H] and B [D, 2 * G * H] with its own gate order (LSTM: i, o, f, c; GRU:
 * z, r, h); oneDNN takes [1, D, I, G, H] (ldigo) with its own (LSTM: i, f, c, o; GRU: u = z, r, o = h) and one bias
 * per gate (Wb + Rb; the LBR GRU keeps Rb of the candidate gate apart, as a fourth). The weights are rearranged once
 * at load in wiped memory, then reordered into the primitive's layout. Y [T, D, N, H] is oneDNN's dst_layer
 * [T, N, D * H] (the same bytes when D = 1; a transposing reorder when bidirectional), Y_h and Y_c its dst_iter
 * [1, D, N, H]. Refused by name: other activations, clip, input_forget, peepholes, layout 1, and sequence_lens
 * that differ from the sequence length. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

enum { RNN_FORWARD, RNN_REVERSE, RNN_BIDIRECTIONAL };

/* n->axis: the direction; n->fill_i: hidden_size; n->trans_a: linear_before_reset (GRU). */
VEIL_RESULT eng_rnn_parse(struct eng_graph *g, struct eng_node *n)
{
    (void)g;
    char label[160], dir[16];
    eng_node_label(n, label, sizeof label);
    int64_t layout = 0, forget = 0, lbr = 0;
    VEIL_GUARD(eng_attr_string(n, "direction", dir, sizeof dir));
    VEIL_GUARD(eng_attr_int(n, "hidden_size", 0, &n->fill_i));
    VEIL_GUARD(eng_attr_int(n, "layout", 0, &layout));
    if (n->op == OP_LSTM)
        VEIL_GUARD(eng_attr_int(n, "input_forget", 0, &forget));
    else
        VEIL_GUARD(eng_attr_int(n, "linear_before_reset", 0, &lbr));
    n->axis = strcmp(dir, "reverse") == 0 ? RNN_REVERSE : strcmp(dir, "bidirectional") == 0 ? RNN_BIDIRECTIONAL
                                                                                            : RNN_FORWARD;
    VEIL_ENSURE(dir[0] == '\0' || strcmp(dir, "forward") == 0 || n->axis != RNN_FORWARD, VEIL_ERR_ONNX,
                "%s: direction '%s' is not forward, reverse or bidirectional", label, dir);
    VEIL_ENSURE(n->fill_i >= 1 && n->fill_i <= INT32_MAX, VEIL_ERR_ONNX, "%s: hidden_size %" PRId64
                " is missing or out of range", label, n->fill_i);
    static const char *const refused[] = {"activations", "activation_alpha", "activation_beta", "clip"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        VEIL_ENSURE(eng_attr_get(n, refused[i]) == NULL, VEIL_ERR_UNSUPPORTED, "%s: attribute '%s' is not supported "
                    "(only the default activations, unclipped)", label, refused[i]);
    VEIL_ENSURE(layout == 0, VEIL_ERR_UNSUPPORTED, "%s: layout 1 (batch first) is not supported", label);
    VEIL_ENSURE(forget == 0, VEIL_ERR_UNSUPPORTED, "%s: input_forget=1 is not supported", label);
    VEIL_ENSURE(lbr == 0 || lbr == 1, VEIL_ERR_ONNX, "%s: linear_before_reset must be 0 or 1", label);
    n->trans_a = (int)lbr;
    return VEIL_RESULT_OK;
}

static int64_t rnn_gates(const struct eng_node *n)
{
    return n->op == OP_LSTM ? 4 : 3;
}

static int64_t rnn_dirs(const struct eng_node *n)
{
    return n->axis == RNN_BIDIRECTIONAL ? 2 : 1;
}

/* A float32 constant of exactly the given shape. */
static VEIL_RESULT rnn_const(const struct eng_graph *g, const struct eng_node *n, uint32_t input, const char *what,
                             const struct eng_shape *want)
{
    const float *data = NULL;
    size_t count = 0;
    char label[160];
    VEIL_GUARD(eng_const_floats(g, n, input, &data, &count));
    const struct eng_shape *s = &g->values[n->inputs[input]].shape;
    int same = s->rank == want->rank && memcmp(s->dims, want->dims, want->rank * sizeof want->dims[0]) == 0;
    VEIL_ENSURE(same, VEIL_ERR_ONNX, "%s: %s must be [%" PRId64 ", %" PRId64 ", %" PRId64 "]",
                eng_node_label(n, label, sizeof label), what, want->dims[0], want->dims[1],
                want->rank > 2 ? want->dims[2] : 0);
    return VEIL_RESULT_OK;
}

/* sequence_lens: absent, or a constant holding the sequence length for every batch entry. */
static VEIL_RESULT rnn_lengths(const struct eng_graph *g, const struct eng_node *n, int64_t seq, int64_t batch)
{
    if (n->input_count <= 4 || n->inputs[4] < 0)
        return VEIL_RESULT_OK;
    const struct eng_value *v = &g->values[n->inputs[4]];
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(v->kind == VAL_CONST && v->dtype == VEIL_ONNX_INT32 && v->size == (size_t)batch * 4,
                VEIL_ERR_UNSUPPORTED, "%s: sequence_lens must be a constant INT32 [batch] (shorter sequences in a "
                "batch are not supported)", label);
    for (int64_t i = 0; i < batch; i++) {
        int32_t len;
        memcpy(&len, v->data + 4 * i, 4);
        VEIL_ENSURE(len == seq, VEIL_ERR_UNSUPPORTED, "%s: sequence_lens[%" PRId64 "] is %" PRId32 ", not the "
                    "sequence length %" PRId64 " (shorter sequences in a batch are not supported)", label, i, len, seq);
    }
    return VEIL_RESULT_OK;
}

/* An initial state (initial_h, initial_c): absent, or [D, N, H], computed or constant. */
static VEIL_RESULT rnn_state_in(const struct eng_graph *g, const struct eng_node *n, uint32_t input,
                                const struct eng_shape *want)
{
    if (n->input_count <= input || n->inputs[input] < 0)
        return VEIL_RESULT_OK;
    const struct eng_value *v = &g->values[n->inputs[input]];
    char label[160];
    int same = v->shape.rank == 3 && memcmp(v->shape.dims, want->dims, 3 * sizeof want->dims[0]) == 0;
    VEIL_ENSURE(same && (v->kind != VAL_CONST || v->dtype == VEIL_ONNX_FLOAT), VEIL_ERR_ONNX, "%s: an initial "
                "state must be float32 [%" PRId64 ", %" PRId64 ", %" PRId64 "]",
                eng_node_label(n, label, sizeof label), want->dims[0], want->dims[1], want->dims[2]);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_rnn_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    VEIL_ENSURE(x->shape.rank == 3, VEIL_ERR_ONNX, "%s: X must be 3-D [seq, batch, input]", label);
    int64_t t = x->shape.dims[0], b = x->shape.dims[1], in = x->shape.dims[2], h = n->fill_i;
    int64_t d = rnn_dirs(n), gh = rnn_gates(n) * h;
    VEIL_GUARD(rnn_const(g, n, 1, "W", &(struct eng_shape){.rank = 3, .dims = {d, gh, in}}));
    VEIL_GUARD(rnn_const(g, n, 2, "R", &(struct eng_shape){.rank = 3, .dims = {d, gh, h}}));
    if (n->input_count > 3 && n->inputs[3] >= 0)
        VEIL_GUARD(rnn_const(g, n, 3, "B", &(struct eng_shape){.rank = 2, .dims = {d, 2 * gh}}));
    VEIL_GUARD(rnn_lengths(g, n, t, b));
    struct eng_shape state = {.rank = 3, .dims = {d, b, h}};
    VEIL_GUARD(rnn_state_in(g, n, 5, &state));
    if (n->op == OP_LSTM) {
        VEIL_GUARD(rnn_state_in(g, n, 6, &state));
        VEIL_ENSURE(n->input_count <= 7 || n->inputs[7] < 0, VEIL_ERR_UNSUPPORTED, "%s: peepholes (P) are not "
                    "supported", label);
    }
    VEIL_ENSURE(n->output_count <= (n->op == OP_LSTM ? 3u : 2u), VEIL_ERR_ONNX, "%s: too many outputs", label);
    for (uint32_t i = 0; i < n->output_count; i++) {
        struct eng_value *out = &g->values[n->outputs[i]];
        out->shape = i == 0 ? (struct eng_shape){.rank = 4, .dims = {t, d, b, h}} : state;
        size_t size = 0;
        VEIL_GUARD(eng_shape_bytes(&out->shape, out->name, &size));
        out->has_shape = 1;
    }
    return VEIL_RESULT_OK;
}

/* ---- building ------------------------------------------------------------------------------------------- */

struct rnn_build {
    struct eng_node *n;
    int64_t t, b, in, h, d, gates, bias_gates;
    const int *order;             /* ONNX's gate index for each of oneDNN's gates */
    dnnl_memory_desc_t layer, iter, iter_c, wl, wi, bias, dst_layer, dst_iter;
    int x, h0, c0;                /* values read (plain): X, initial_h, initial_c (-1: absent) */
};

/* oneDNN's gates in ONNX's numbering: LSTM i, f, c, o of ONNX's i, o, f, c; GRU u, r, o = z, r, h. */
static const int lstm_order[4] = {0, 2, 3, 1}, gru_order[3] = {0, 1, 2};

/* W [D, G * H, cols] (ONNX) -> [1, D, cols, G, H] (ldigo) in oneDNN's gate order. */
static void rnn_weights(const struct rnn_build *r, const float *w, int64_t cols, float *out)
{
    for (int64_t d = 0; d < r->d; d++)
        for (int64_t c = 0; c < cols; c++)
            for (int64_t g = 0; g < r->gates; g++)
                for (int64_t o = 0; o < r->h; o++)
                    out[((d * cols + c) * r->gates + g) * r->h + o] =
                        w[(d * r->gates * r->h + r->order[g] * r->h + o) * cols + c];
}

/* B [D, 2 * G * H] (Wb, then Rb) -> [1, D, G', H]: Wb + Rb per gate; the LBR GRU's candidate gate Wb alone, and
 * its Rb as a fourth gate. No B: zeros. */
static void rnn_bias(const struct rnn_build *r, const float *bias, float *out)
{
    int64_t gh = r->gates * r->h;
    for (int64_t d = 0; d < r->d; d++)
        for (int64_t g = 0; g < r->bias_gates; g++)
            for (int64_t o = 0; o < r->h; o++) {
                int lbr = r->bias_gates > r->gates, lbr_candidate = lbr && g == 2, lbr_extra = lbr && g == 3;
                int64_t at = d * 2 * gh + (lbr_extra ? 2 : r->order[g]) * r->h + o;
                float wb = bias != NULL && !lbr_extra ? bias[at] : 0.0f;
                float rb = bias != NULL && !lbr_candidate ? bias[at + gh] : 0.0f;
                out[(d * r->bias_gates + g) * r->h + o] = wb + rb;
            }
}

static VEIL_RESULT rnn_descs(struct veil_engine *e, struct rnn_build *r, dnnl_primitive_desc_t *pd)
{
    struct eng_node *n = r->n;
    dnnl_dims_t layer = {r->t, r->b, r->in}, iter = {1, r->d, r->b, r->h}, dst = {r->t, r->b, r->d * r->h};
    dnnl_dims_t wl = {1, r->d, r->in, r->gates, r->h}, wi = {1, r->d, r->h, r->gates, r->h};
    dnnl_dims_t bias = {1, r->d, r->bias_gates, r->h};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&r->layer, 3, layer, dnnl_f32, dnnl_tnc), n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&r->iter, 4, iter, dnnl_f32, dnnl_ldnc), n, "descriptor");
    r->iter_c = r->iter;
    r->dst_iter = r->iter;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&r->dst_layer, 3, dst, dnnl_f32, dnnl_tnc), n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&r->wl, 5, wl, dnnl_f32, dnnl_format_tag_any), n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&r->wi, 5, wi, dnnl_f32, dnnl_format_tag_any), n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&r->bias, 4, bias, dnnl_f32, dnnl_ldgo), n, "descriptor");
    dnnl_rnn_direction_t dir = n->axis == RNN_REVERSE         ? dnnl_unidirectional_right2left
                               : n->axis == RNN_BIDIRECTIONAL ? dnnl_bidirectional_concat
                                                              : dnnl_unidirectional_left2right;
    const dnnl_memory_desc_t *h0 = r->h0 >= 0 ? &r->iter : NULL, *c0 = r->c0 >= 0 ? &r->iter_c : NULL;
    dnnl_rnn_desc_t desc;
    if (n->op == OP_LSTM)
        ENG_GUARD_DNNL(dnnl_lstm_forward_desc_init(&desc, dnnl_forward_inference, dir, &r->layer, h0, c0, &r->wl,
                       &r->wi, &r->bias, &r->dst_layer, &r->dst_iter, &r->iter_c, 0), n, "LSTM setup");
    else if (n->trans_a)
        ENG_GUARD_DNNL(dnnl_lbr_gru_forward_desc_init(&desc, dnnl_forward_inference, dir, &r->layer, h0, &r->wl,
                       &r->wi, &r->bias, &r->dst_layer, &r->dst_iter, 0), n, "GRU setup");
    else
        ENG_GUARD_DNNL(dnnl_gru_forward_desc_init(&desc, dnnl_forward_inference, dir, &r->layer, h0, &r->wl, &r->wi,
                       &r->bias, &r->dst_layer, &r->dst_iter, 0), n, "GRU setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(n, NULL, 0, &attr));
    dnnl_status_t st = dnnl_primitive_desc_create(pd, &desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, n, n->op == OP_LSTM ? "LSTM" : "GRU");
    return VEIL_RESULT_OK;
}

/* The weights and bias, rearranged in wiped memory, then reordered into the primitive's layouts. */
static VEIL_RESULT rnn_constants(struct veil_engine *e, const struct rnn_build *r, size_t step,
                                 const_dnnl_primitive_desc_t pd)
{
    const float *w = NULL, *u = NULL, *bias = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(&e->g, r->n, 1, &w, &count));
    VEIL_GUARD(eng_const_floats(&e->g, r->n, 2, &u, &count));
    if (r->n->input_count > 3 && r->n->inputs[3] >= 0)
        VEIL_GUARD(eng_const_floats(&e->g, r->n, 3, &bias, &count));
    size_t wl = (size_t)(r->d * r->in * r->gates * r->h), wi = (size_t)(r->d * r->h * r->gates * r->h);
    size_t bs = (size_t)(r->d * r->bias_gates * r->h);
    VEIL_DEFER(veil_secure_free) struct veil_secure_mem tmp = {0};
    VEIL_GUARD(veil_secure_alloc(&tmp, (wl + wi + bs) * sizeof(float), 0));
    float *lw = (float *)(void *)tmp.data, *iw = lw + wl, *b = iw + wi;
    rnn_weights(r, w, r->in, lw);
    rnn_weights(r, u, r->h, iw);
    rnn_bias(r, bias, b);
    dnnl_dims_t lwd = {1, r->d, r->in, r->gates, r->h}, iwd = {1, r->d, r->h, r->gates, r->h};
    dnnl_memory_desc_t lu, iu;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&lu, 5, lwd, dnnl_f32, dnnl_ldigo), r->n, "descriptor");
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&iu, 5, iwd, dnnl_f32, dnnl_ldigo), r->n, "descriptor");
    const dnnl_memory_desc_t *lmd = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_WEIGHTS_LAYER);
    const dnnl_memory_desc_t *imd = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_WEIGHTS_ITER);
    VEIL_GUARD(eng_step_const(e, &e->steps[step], DNNL_ARG_WEIGHTS_LAYER, lmd, &lu, lw));
    VEIL_GUARD(eng_step_const(e, &e->steps[step], DNNL_ARG_WEIGHTS_ITER, imd, &iu, iw));
    return eng_step_const(e, &e->steps[step], DNNL_ARG_BIAS, &r->bias, &r->bias, b);
}

/* An initial state: a computed one read through an [1, D, N, H] view of its plain bytes; a constant copied in. */
static VEIL_RESULT rnn_state_arg(struct veil_engine *e, const struct rnn_build *r, size_t step, int arg, uint32_t input,
                                 int v)
{
    if (v < 0)
        return VEIL_RESULT_OK;
    if (e->g.values[v].kind != VAL_CONST)
        return eng_step_value_as(e, &e->steps[step], arg, v, 0, &r->iter);
    const float *data = NULL;
    size_t count = 0;
    VEIL_GUARD(eng_const_floats(&e->g, r->n, input, &data, &count));
    return eng_step_const(e, &e->steps[step], arg, &r->iter, &r->iter, data);
}

/* A state output (Y_h, Y_c): written through an [1, D, N, H] view of its plain [D, N, H] bytes; absent: a hidden
 * value of its own. */
static VEIL_RESULT rnn_state_out(struct veil_engine *e, const struct rnn_build *r, size_t step, int arg,
                                 uint32_t output)
{
    int v = output < r->n->output_count ? r->n->outputs[output] : -1;
    struct eng_shape s = {.rank = 3, .dims = {r->d, r->b, r->h}};
    if (v < 0) {
        VEIL_GUARD(eng_graph_add_hidden(&e->g, &v));
        e->g.values[v].shape = s;
        e->g.values[v].has_shape = 1;
    }
    dnnl_memory_desc_t plain;
    VEIL_GUARD(eng_md_plain(&plain, &s));
    VEIL_GUARD(eng_value_set_md(e, v, &plain));
    return eng_step_value_as(e, &e->steps[step], arg, v, 1, &r->iter);
}

/* Y [T, D, N, H] from dst_layer [T, N, D * H]: the same bytes when D = 1; bidirectional, a hidden dst_layer and a
 * reorder from its [T, D, N, H] strided view into Y. */
static VEIL_RESULT rnn_sequence_out(struct veil_engine *e, const struct rnn_build *r, size_t step)
{
    int y = r->n->output_count > 0 ? r->n->outputs[0] : -1, v = y;
    struct eng_shape ys = {.rank = 4, .dims = {r->t, r->d, r->b, r->h}};
    struct eng_shape ls = {.rank = 3, .dims = {r->t, r->b, r->d * r->h}};
    dnnl_memory_desc_t yplain, lplain;
    VEIL_GUARD(eng_md_plain(&yplain, &ys));
    VEIL_GUARD(eng_md_plain(&lplain, &ls));
    if (y < 0 || r->d > 1) {
        VEIL_GUARD(eng_graph_add_hidden(&e->g, &v));
        e->g.values[v].shape = ls;
        e->g.values[v].has_shape = 1;
        VEIL_GUARD(eng_value_set_md(e, v, &lplain));
        VEIL_GUARD(eng_step_value(e, &e->steps[step], DNNL_ARG_DST_LAYER, v, 1));
    } else {
        VEIL_GUARD(eng_value_set_md(e, y, &yplain));
        return eng_step_value_as(e, &e->steps[step], DNNL_ARG_DST_LAYER, y, 1, &r->dst_layer);
    }
    if (y < 0)
        return VEIL_RESULT_OK;
    dnnl_dims_t dims = {r->t, r->d, r->b, r->h}, strides = {r->b * r->d * r->h, r->h, r->d * r->h, 1};
    dnnl_memory_desc_t view;
    int viewed = -1, copy = -1;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_strides(&view, 4, dims, dnnl_f32, strides), r->n, "descriptor");
    VEIL_GUARD(eng_view_value(e, v, &view, &viewed));
    VEIL_GUARD(eng_input_as(e, viewed, &yplain, &copy)); /* a reorder step into a new plain value */
    e->g.values[y].alias = copy;
    return eng_value_set_md(e, y, &yplain);
}

VEIL_RESULT eng_rnn_build(struct veil_engine *e, struct eng_node *n)
{
    const struct eng_shape xs = e->g.values[n->inputs[0]].shape;
    struct rnn_build r = {.n = n, .t = xs.dims[0], .b = xs.dims[1], .in = xs.dims[2], .h = n->fill_i,
                          .d = rnn_dirs(n), .gates = rnn_gates(n), .order = n->op == OP_LSTM ? lstm_order : gru_order,
                          .h0 = -1, .c0 = -1};
    r.bias_gates = r.gates + (n->op == OP_GRU && n->trans_a);
    struct eng_shape state = {.rank = 3, .dims = {r.d, r.b, r.h}};
    dnnl_memory_desc_t plain_x, plain_state;
    VEIL_GUARD(eng_md_plain(&plain_x, &xs));
    VEIL_GUARD(eng_md_plain(&plain_state, &state));
    VEIL_GUARD(eng_input_as(e, n->inputs[0], &plain_x, &r.x)); /* inputs first: a reorder adds a step */
    for (uint32_t i = 5; i <= (n->op == OP_LSTM ? 6u : 5u); i++) {
        int *v = i == 5 ? &r.h0 : &r.c0;
        if (n->input_count <= i || n->inputs[i] < 0)
            continue;
        *v = n->inputs[i];
        if (e->g.values[*v].kind != VAL_CONST)
            VEIL_GUARD(eng_input_as(e, n->inputs[i], &plain_state, v));
    }
    dnnl_primitive_desc_t pd = NULL;
    VEIL_GUARD(rnn_descs(e, &r, &pd));
    struct eng_step *s = NULL;
    struct veil_result res = eng_step_new(e, n, pd, &s);
    size_t step = veil_ok(res) ? (size_t)(s - e->steps) : 0;
    if (veil_ok(res))
        res = rnn_constants(e, &r, step, pd);
    dnnl_primitive_desc_destroy(pd);
    VEIL_GUARD(res);
    VEIL_GUARD(eng_step_value_as(e, &e->steps[step], DNNL_ARG_SRC_LAYER, r.x, 0, &r.layer));
    VEIL_GUARD(rnn_state_arg(e, &r, step, DNNL_ARG_SRC_ITER, 5, r.h0));
    if (n->op == OP_LSTM)
        VEIL_GUARD(rnn_state_arg(e, &r, step, DNNL_ARG_SRC_ITER_C, 6, r.c0));
    VEIL_GUARD(rnn_state_out(e, &r, step, DNNL_ARG_DST_ITER, 1));
    if (n->op == OP_LSTM)
        VEIL_GUARD(rnn_state_out(e, &r, step, DNNL_ARG_DST_ITER_C, 2));
    return rnn_sequence_out(e, &r, step);
}
