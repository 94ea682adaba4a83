/* SPDX-License-Identifier: Apache-2.0 */
/* The planner, run once at load:
 *   1. parse each node's attributes (refusing unknown ones) and fold Constant / Identity-of-constant nodes;
 *   2. topological order (Kahn, stable in graph order); a cycle is refused, naming a node on it;
 *   3. shape inference in that order (only dim 0 of the inputs may be symbolic: it takes the planned batch);
 *   4. fusion: Conv + BatchNormalization (folded into the weights when the primitive is built), then activations
 *      as eltwise post-ops and a residual Add as an in-place sum post-op where that is provably safe;
 *   5. after exec.c has built the steps: liveness of every buffer and a greedy-by-size offset assignment, so
 *      buffers whose lifetimes do not overlap share memory. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "engine/internal.h"
#include "onnx/onnx.h"

const char *eng_node_label(const struct eng_node *n, char *buf, size_t size)
{
    if (n == NULL) /* a step of the engine's own, for no node (a constant graph output's copy) */
        snprintf(buf, size, "the engine");
    else
        snprintf(buf, size, "%s node '%.100s'", eng_op_name(n->op), n->name);
    return buf;
}

int eng_value_root(const struct eng_graph *g, int v)
{
    while (g->values[v].alias >= 0)
        v = g->values[v].alias;
    return v;
}

size_t eng_shape_count(const struct eng_shape *s)
{
    size_t n = 1;
    for (uint32_t i = 0; i < s->rank; i++)
        n *= (size_t)s->dims[i];
    return n;
}

VEIL_RESULT eng_shape_bytes(const struct eng_shape *s, const char *what, size_t *out)
{
    uint64_t n = 4;
    for (uint32_t i = 0; i < s->rank; i++) {
        VEIL_ENSURE(s->dims[i] >= 0, VEIL_ERR_INTERNAL, "%s: negative dim", what);
        VEIL_ENSURE(veil_ok(veil_mul_u64(n, (uint64_t)s->dims[i], &n)), VEIL_ERR_LIMIT, "%s: shape overflows", what);
    }
    VEIL_ENSURE(n <= VEIL_ENGINE_MAX_ACTIVATION_SIZE, VEIL_ERR_LIMIT, "%s: %" PRIu64 " bytes, more than the %"
                PRIu64 "-byte activation limit", what, n, (uint64_t)VEIL_ENGINE_MAX_ACTIVATION_SIZE);
    *out = (size_t)n;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_input_act(const struct eng_graph *g, const struct eng_node *n, uint32_t i,
                          const struct eng_value **out)
{
    char label[160];
    VEIL_ENSURE(i < n->input_count && n->inputs[i] >= 0, VEIL_ERR_ONNX, "%s: input %" PRIu32 " is missing",
                eng_node_label(n, label, sizeof label), i);
    const struct eng_value *v = &g->values[n->inputs[i]];
    VEIL_ENSURE(v->kind == VAL_ACT || v->kind == VAL_INPUT, VEIL_ERR_UNSUPPORTED,
                "%s: input '%s' is a constant; the engine needs a computed tensor there",
                eng_node_label(n, label, sizeof label), v->name);
    VEIL_ENSURE(v->has_shape, VEIL_ERR_INTERNAL, "%s: input '%s' has no shape", eng_node_label(n, label, sizeof label),
                v->name);
    *out = v;
    return VEIL_RESULT_OK;
}

/* Float32 constants are read in place; a view that is not 4-byte aligned (raw_data inside a protobuf) is copied
 * once into memory this value owns. Owned data (malloc'ed) is always aligned and never replaced, so values that
 * share a constant's data (a folded Identity) never see it freed under them. */
static VEIL_RESULT align_const(struct eng_value *v)
{
    if (((uintptr_t)v->data & 3) == 0 || v->size == 0)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(v->owned == NULL, VEIL_ERR_INTERNAL, "owned constant data is misaligned");
    uint8_t *p = malloc(v->size);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(p, v->data, v->size);
    v->owned = p;
    v->data = p;
    v->from_view = 0;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_const_floats(const struct eng_graph *g, const struct eng_node *n, uint32_t input,
                             const float **data, size_t *count)
{
    char label[160];
    VEIL_ENSURE(input < n->input_count && n->inputs[input] >= 0, VEIL_ERR_ONNX, "%s: input %" PRIu32 " is missing",
                eng_node_label(n, label, sizeof label), input);
    struct eng_value *v = &g->values[n->inputs[input]];
    VEIL_ENSURE(v->kind == VAL_CONST, VEIL_ERR_UNSUPPORTED, "%s: input '%s' must be an initializer or a constant",
                eng_node_label(n, label, sizeof label), v->name);
    VEIL_ENSURE(v->dtype == VEIL_ONNX_FLOAT, VEIL_ERR_UNSUPPORTED, "%s: constant '%s' has data type %" PRId32
                "; float32 is required", eng_node_label(n, label, sizeof label), v->name, v->dtype);
    VEIL_GUARD(align_const(v));
    *data = (const float *)(const void *)v->data;
    *count = v->size / 4;
    return VEIL_RESULT_OK;
}

/* ---- 1. attributes and constants ------------------------------------------------------------------------- */

static VEIL_RESULT parse_nodes(struct eng_graph *g)
{
    for (size_t i = 0; i < g->node_count; i++) {
        struct eng_node *n = &g->nodes[i];
        n->out = n->outputs[0];
        VEIL_GUARD(eng_op_info(n->op)->parse(g, n));
        VEIL_GUARD(eng_attr_check_used(n));
    }
    return VEIL_RESULT_OK;
}

/* ---- 2. topological order -------------------------------------------------------------------------------- */

struct edges {
    size_t *start;   /* per value: first consumer in list */
    int *list;       /* consumer node per (value, input) edge */
};

static void edges_cleanup(struct edges *e)
{
    free(e->start);
    free(e->list);
}

static VEIL_RESULT edges_build(const struct eng_graph *g, struct edges *e)
{
    size_t total = 0;
    e->start = calloc(g->value_count + 1, sizeof *e->start);
    VEIL_ENSURE(e->start != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->node_count; i++)
        for (uint32_t k = 0; k < g->nodes[i].input_count; k++)
            if (g->nodes[i].inputs[k] >= 0) {
                e->start[g->nodes[i].inputs[k] + 1]++;
                total++;
            }
    for (size_t v = 0; v < g->value_count; v++)
        e->start[v + 1] += e->start[v];
    e->list = malloc((total + 1) * sizeof *e->list);
    size_t *fill = calloc(g->value_count + 1, sizeof *fill);
    VEIL_ENSURE(e->list != NULL && fill != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->node_count; i++)
        for (uint32_t k = 0; k < g->nodes[i].input_count; k++) {
            int v = g->nodes[i].inputs[k];
            if (v >= 0)
                e->list[e->start[v] + fill[v]++] = (int)i;
        }
    free(fill);
    return VEIL_RESULT_OK;
}

/* Edges from computed values into n. */
static uint32_t pending_inputs(const struct eng_graph *g, const struct eng_node *n)
{
    uint32_t c = 0;
    for (uint32_t k = 0; k < n->input_count; k++)
        c += n->inputs[k] >= 0 && g->values[n->inputs[k]].producer >= 0;
    return c;
}

static VEIL_RESULT topo_sort(struct eng_graph *g, const struct edges *e)
{
    size_t count = g->node_count, head = 0, tail = 0;
    uint32_t *deg = calloc(count + 1, sizeof *deg);
    g->order = malloc((count + 1) * sizeof *g->order);
    VEIL_ENSURE(deg != NULL && g->order != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++)
        if ((deg[i] = pending_inputs(g, &g->nodes[i])) == 0)
            g->order[tail++] = (int)i;
    while (head < tail) {
        int node = g->order[head++];
        g->nodes[node].order = (int64_t)head - 1;
        for (uint32_t o = 0; o < g->nodes[node].output_count; o++) {
            int v = g->nodes[node].outputs[o];
            for (size_t k = e->start[v]; k < e->start[v + 1]; k++)
                if (--deg[e->list[k]] == 0)
                    g->order[tail++] = e->list[k];
        }
    }
    size_t stuck = 0;
    while (stuck < count && deg[stuck] == 0)
        stuck++;
    free(deg);
    char label[160];
    VEIL_ENSURE(tail == count, VEIL_ERR_ONNX, "the graph has a cycle (through %s)",
                eng_node_label(&g->nodes[stuck < count ? stuck : 0], label, sizeof label));
    return VEIL_RESULT_OK;
}

/* ---- 3. shapes ------------------------------------------------------------------------------------------- */

/* The shape asked for input v, if any. */
static const struct veil_engine_shape *asked_shape(const struct eng_value *v, const struct veil_engine_shape *shapes,
                                                   size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (shapes[i].name != NULL && strcmp(shapes[i].name, v->name) == 0)
            return &shapes[i];
    return NULL;
}

/* A symbolic dim takes the asked shape's, or for dim 0 the batch, or for another dim symbolic_size (when set); a
 * fixed dim must match what is asked. */
static VEIL_RESULT resolve_input(struct eng_value *v, uint64_t batch, uint64_t symbolic_size,
                                 const struct veil_engine_shape *want)
{
    VEIL_ENSURE(want == NULL || want->rank == v->shape.rank, VEIL_ERR_ARG, "graph input '%s' has rank %" PRIu32
                ", a shape of rank %" PRIu32 " was given", v->name, v->shape.rank, want ? want->rank : 0);
    for (uint32_t i = 0; i < v->shape.rank; i++) {
        int64_t d = v->shape.dims[i];
        if (want != NULL) {
            VEIL_ENSURE(want->dims[i] > 0 && want->dims[i] <= (int64_t)VEIL_ENGINE_MAX_ACTIVATION_SIZE, VEIL_ERR_ARG,
                        "graph input '%s': dim %" PRIu32 " of the given shape is %" PRId64, v->name, i, want->dims[i]);
            VEIL_ENSURE(d < 0 || d == want->dims[i], VEIL_ERR_ARG, "graph input '%s': dim %" PRIu32 " is fixed at %"
                        PRId64 "; cannot plan for %" PRId64, v->name, i, d, want->dims[i]);
            v->shape.dims[i] = want->dims[i];
        } else if (d < 0 && i > 0) {
            VEIL_ENSURE(symbolic_size > 0, VEIL_ERR_UNSUPPORTED, "graph input '%s': dim %" PRIu32 " is symbolic; give "
                        "the input's shape to plan for (only dim 0 takes the batch)", v->name, i);
            v->shape.dims[i] = (int64_t)symbolic_size;
        } else if (d < 0) {
            v->shape.dims[0] = (int64_t)(batch ? batch : 1);
        }
    }
    v->batch_symbolic = v->shape.rank > 0 && (v->symbolic_mask & 1u);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT input_shapes(struct eng_graph *g, uint64_t batch, uint64_t symbolic_size,
                                const struct veil_engine_shape *shapes,
                                size_t shape_count)
{
    for (size_t i = 0; i < shape_count; i++) {
        VEIL_ENSURE(shapes[i].name != NULL && eng_graph_find(g, shapes[i].name) >= 0 &&
                    g->values[eng_graph_find(g, shapes[i].name)].kind == VAL_INPUT, VEIL_ERR_ARG,
                    "a shape was given for '%.100s', which is no graph input", shapes[i].name ? shapes[i].name : "");
        VEIL_ENSURE(shapes[i].rank <= ENG_RANK, VEIL_ERR_ARG, "a shape of rank %" PRIu32 " was given", shapes[i].rank);
    }
    for (size_t i = 0; i < g->input_count; i++) {
        struct eng_value *v = &g->values[g->inputs[i]];
        const struct veil_engine_shape *want = asked_shape(v, shapes, shape_count);
        VEIL_GUARD(resolve_input(v, want != NULL ? 0 : batch, symbolic_size, want));
        VEIL_ENSURE(v->shape.rank == 0 || v->shape.dims[0] > 0, VEIL_ERR_UNSUPPORTED,
                    "graph input '%s' has a batch of 0; the engine runs no empty tensors", v->name);
        VEIL_ENSURE(want != NULL || batch == 0 || v->shape.rank == 0 || v->shape.dims[0] == (int64_t)batch,
                    VEIL_ERR_ARG, "graph input '%s' has a fixed batch of %" PRId64 "; cannot plan for %" PRIu64,
                    v->name, v->shape.dims[0], batch);
        for (uint32_t d = 0; d < v->shape.rank; d++)
            VEIL_ENSURE(v->shape.dims[d] > 0, VEIL_ERR_UNSUPPORTED, "graph input '%s': dim %" PRIu32 " is 0; the "
                        "engine runs no empty tensors", v->name, d);
        size_t size = 0;
        VEIL_GUARD(eng_shape_bytes(&v->shape, v->name, &size));
        v->has_shape = 1;
    }
    return VEIL_RESULT_OK;
}

/* Inputs read at load only, as parameters (a Reshape's shape, a reduction's axes ...): empty is a value there (a
 * scalar's shape, "all axes"). */
static int load_time_input(const struct eng_node *n, uint32_t i)
{
    switch (n->op) {
    case OP_RESIZE:
    case OP_RESHAPE: case OP_REDUCEMEAN: case OP_REDUCESUM: case OP_REDUCEMAX: case OP_REDUCEMIN: case OP_REDUCEL2:
    case OP_SQUEEZE: case OP_UNSQUEEZE: case OP_SLICE: case OP_EXPAND: case OP_SPLIT: case OP_TILE: case OP_TOPK:
        return i > 0 && n->inputs[i] >= 0;
    default: return 0;
    }
}

/* oneDNN has no kernels for empty tensors (some divide by a zero dimension): a node that will run takes and makes
 * none. Folded nodes may (exporters' shape arithmetic uses empty constants). */
static VEIL_RESULT no_empty_tensor(const struct eng_graph *g, const struct eng_node *n)
{
    char label[160];
    for (uint32_t i = 0; i < n->input_count; i++) {
        const struct eng_value *v = n->inputs[i] >= 0 ? &g->values[n->inputs[i]] : NULL;
        if (v != NULL && v->kind == VAL_CONST && load_time_input(n, i))
            continue;
        VEIL_ENSURE(v == NULL || !(v->has_shape || v->kind == VAL_CONST) || eng_shape_count(&v->shape) > 0,
                    VEIL_ERR_UNSUPPORTED, "%s: input '%s' is an empty tensor (a zero dimension); the engine runs no "
                    "empty tensors", eng_node_label(n, label, sizeof label), v->name);
    }
    const struct eng_value *out = &g->values[n->outputs[0]];
    VEIL_ENSURE(eng_shape_count(&out->shape) > 0, VEIL_ERR_UNSUPPORTED, "%s: its output '%s' would be an empty "
                "tensor (a zero dimension); the engine runs no empty tensors", eng_node_label(n, label, sizeof label),
                out->name);
    return VEIL_RESULT_OK;
}

/* In topological order: a node whose inputs are all constant (or a Shape of a shaped tensor) is evaluated now
 * (fold.c) and its output becomes a constant; every other node gets its output shape. */
static VEIL_RESULT infer_shapes(struct eng_graph *g)
{
    for (size_t i = 0; i < g->node_count; i++) {
        struct eng_node *n = &g->nodes[g->order[i]];
        if (n->op == OP_CONSTANT)
            n->dead = 1;
        if (n->dead)
            continue;
        if (eng_fold_ready(g, n)) {
            VEIL_GUARD(eng_fold_eval(g, n));
            continue;
        }
        VEIL_GUARD(eng_op_info(n->op)->infer(g, n));
        VEIL_GUARD(no_empty_tensor(g, n));
        struct eng_value *out = &g->values[n->outputs[0]];
        if (n->op == OP_IDENTITY || n->op == OP_FLATTEN || n->op == OP_RESHAPE || n->op == OP_CONCAT)
            out->dtype = g->values[n->inputs[0]].dtype; /* views keep integer and boolean tensors so */
        size_t size = 0;
        VEIL_GUARD(eng_shape_bytes(&out->shape, out->name, &size));
        out->has_shape = 1;
    }
    return VEIL_RESULT_OK;
}

/* ---- 4. fusion ------------------------------------------------------------------------------------------- */

/* The only live consumer of v, or -1 when v has none, several, or is a graph output. */
static int sole_consumer(const struct eng_graph *g, const struct edges *e, int v)
{
    if (g->values[v].is_output)
        return -1;
    int found = -1;
    for (size_t k = e->start[v]; k < e->start[v + 1]; k++) {
        int node = e->list[k];
        if (g->nodes[node].dead)
            continue;
        if (found >= 0)
            return -1;
        found = node;
    }
    return found;
}

static int is_eltwise(enum eng_op op)
{
    return op == OP_RELU || op == OP_CLIP || op == OP_SIGMOID || op == OP_HARDSIGMOID || op == OP_HARDSWISH ||
           op == OP_QUANTIZE || op == OP_DEQUANTIZE || (op >= OP_LEAKYRELU && op <= OP_ROUND);
}

static int is_view(enum eng_op op)
{
    return op == OP_IDENTITY || op == OP_FLATTEN || op == OP_RESHAPE;
}

static int same_shape(const struct eng_shape *a, const struct eng_shape *b)
{
    return a->rank == b->rank && memcmp(a->dims, b->dims, a->rank * sizeof a->dims[0]) == 0;
}

/* Whether the conv may overwrite x in place: x is computed by a real operator before the conv, is no graph
 * output, and nothing but the Add reads it at or after the conv's position. */
static int sum_operand_ok(const struct eng_graph *g, const struct edges *e, const struct eng_node *conv, int add,
                          int x)
{
    const struct eng_value *v = &g->values[x];
    if (v->kind != VAL_ACT || v->is_output || v->producer < 0 || is_view(g->nodes[v->producer].op))
        return 0;
    if (g->nodes[v->producer].order >= conv->order)
        return 0;
    for (size_t k = e->start[x]; k < e->start[x + 1]; k++) {
        const struct eng_node *c = &g->nodes[e->list[k]];
        if (e->list[k] == add || c->dead)
            continue;
        if (is_view(c->op) || c->order >= conv->order)
            return 0;
    }
    return same_shape(&v->shape, &g->values[conv->out].shape);
}

static int bn_foldable(const struct eng_graph *g, const struct eng_node *bn)
{
    for (uint32_t k = 1; k < 5; k++)
        if (g->values[bn->inputs[k]].kind != VAL_CONST)
            return 0;
    return 1;
}

/* oneDNN 2.6's brgemm convolutions compute a round post-op wrongly (measured: a QuantizeLinear fused as post-ops
 * gave values far outside its clip); a chain with one runs as its own eltwise step, where round is right. */
static int has_round(const struct eng_node *n)
{
    for (uint32_t k = 0; k < n->elt_count; k++)
        if (n->elt[k].alg == dnnl_eltwise_round)
            return 1;
    return 0;
}

/* Whether a chain holds only the activations the engine fused into convolutions before LeakyRelu, Elu and the rest
 * came: combined freely, as tested. */
static int classic_chain(const struct eng_post *p, uint32_t count)
{
    for (uint32_t k = 0; k < count; k++) {
        dnnl_alg_kind_t a = p[k].alg;
        if (!p[k].sum && !(a == dnnl_eltwise_relu && p[k].alpha == 0) && a != dnnl_eltwise_clip &&
            a != dnnl_eltwise_logistic && a != dnnl_eltwise_linear && a != dnnl_eltwise_hardswish)
            return 0;
    }
    return 1;
}

/* oneDNN 2.6.3's jit:avx2 convolution computes some chains of eltwise post-ops wrongly (measured: a Celu, [linear,
 * elu, linear], 6.4 off; LeakyRelu then Relu 0.0016 off), while each of those activations alone (Selu: [elu,
 * linear]) is right. So an activation with elu, soft_relu, mish, log or a leaky relu fuses into a Conv only as the
 * Conv's one activation; anything longer runs as its own eltwise step, which computes them right. */
static int conv_may_take(const struct eng_node *conv, const struct eng_node *n)
{
    if (classic_chain(conv->post, conv->post_count) && classic_chain(n->elt, n->elt_count))
        return 1;
    return conv->post_count == 0 && (n->elt_count == 1 || n->op == OP_SELU);
}

static int try_fuse_next(struct eng_graph *g, const struct edges *e, struct eng_node *conv)
{
    int next = sole_consumer(g, e, conv->out);
    if (next < 0)
        return 0;
    struct eng_node *n = &g->nodes[next];
    if (is_eltwise(n->op) && n->inputs[0] == conv->out && conv->post_count + n->elt_count <= ENG_MAX_POST &&
        !has_round(n) && conv_may_take(conv, n)) {
        for (uint32_t k = 0; k < n->elt_count; k++)
            conv->post[conv->post_count++] = n->elt[k];
    } else if (n->op == OP_ADD && conv->post_count == 0 && conv->sum < 0) {
        int x = n->inputs[0] == conv->out ? n->inputs[1] : n->inputs[0];
        if (x == conv->out || !sum_operand_ok(g, e, conv, next, x))
            return 0;
        conv->sum = x;
        conv->post[conv->post_count++] = (struct eng_post){.sum = 1};
    } else {
        return 0;
    }
    n->dead = 1;
    conv->out = n->outputs[0];
    return 1;
}

static void fuse_conv(struct eng_graph *g, const struct edges *e, struct eng_node *conv)
{
    int next = sole_consumer(g, e, conv->out);
    if (next >= 0 && g->nodes[next].op == OP_BATCHNORM && g->nodes[next].inputs[0] == conv->out &&
        bn_foldable(g, &g->nodes[next])) {
        conv->bn = next;
        g->nodes[next].dead = 1;
        conv->out = g->nodes[next].outputs[0];
    }
    while (try_fuse_next(g, e, conv)) {
    }
}

/* A zero Pad of H and W read only by a Conv becomes part of the Conv's (asymmetric) padding. */
static int fuse_pad(struct eng_graph *g, const struct edges *e, struct eng_node *pad)
{
    int next = sole_consumer(g, e, pad->outputs[0]);
    if (next < 0 || pad->int_count != 8 || pad->ints[0] || pad->ints[1] || pad->ints[4] || pad->ints[5] ||
        pad->fill_f != 0 || pad->pad_mode != PAD_CONSTANT)
        return 0;
    struct eng_node *conv = &g->nodes[next];
    if (conv->op != OP_CONV || conv->inputs[0] != pad->outputs[0])
        return 0;
    for (int i = 0; i < 2; i++) {
        if (conv->conv.pads[i] + pad->ints[2 + i] > VEIL_ENGINE_MAX_WINDOW ||
            conv->conv.pads[2 + i] + pad->ints[6 + i] > VEIL_ENGINE_MAX_WINDOW)
            return 0;
    }
    for (int i = 0; i < 2; i++) {
        conv->conv.pads[i] += pad->ints[2 + i];
        conv->conv.pads[2 + i] += pad->ints[6 + i];
    }
    conv->inputs[0] = pad->inputs[0];
    pad->dead = 1;
    return 1;
}

static int fuse_pads(struct eng_graph *g, const struct edges *e)
{
    int any = 0;
    for (size_t i = 0; i < g->node_count; i++) {
        struct eng_node *n = &g->nodes[g->order[i]];
        if (!n->dead && n->op == OP_PAD)
            any |= fuse_pad(g, e, n);
    }
    return any;
}

/* A float32 constant holding one value. */
static int const_scalar(const struct eng_graph *g, int v, double *out)
{
    const struct eng_value *x = &g->values[v];
    if (x->kind != VAL_CONST || x->dtype != VEIL_ONNX_FLOAT || x->size != 4 || x->data == NULL)
        return 0;
    float f;
    memcpy(&f, x->data, 4);
    *out = f;
    return 1;
}

/* The other input of a live two-input node reading v, or -1. */
static int other_input(const struct eng_node *n, int v)
{
    if (n->dead || n->input_count != 2)
        return -1;
    return n->inputs[0] == v ? n->inputs[1] : n->inputs[1] == v ? n->inputs[0] : -1;
}

static int is_scalar_near(const struct eng_graph *g, int v, double want)
{
    double c = 0;
    return v >= 0 && const_scalar(g, v, &c) && fabs(c - want) <= 1e-6 * fabs(want);
}

/* x / sqrt(2) -> Erf -> + 1 -> * x -> * 0.5 (the exporters' exact GELU, either multiplication first) becomes one
 * oneDNN gelu_erf eltwise: the last Mul turns into a Gelu of x, the four nodes before it die. */
static void fuse_gelu(struct eng_graph *g, const struct edges *e, struct eng_node *erf)
{
    int dv = erf->inputs[0], p = g->values[dv].producer;
    if (p < 0 || g->nodes[p].op != OP_DIV || g->nodes[p].dead || sole_consumer(g, e, dv) != (int)(erf - g->nodes))
        return;
    struct eng_node *div = &g->nodes[p];
    int x = div->inputs[0];
    if (!is_scalar_near(g, div->inputs[1], 1.4142135623730951) || g->values[x].kind == VAL_CONST)
        return;
    int a = sole_consumer(g, e, erf->outputs[0]);
    if (a < 0 || g->nodes[a].op != OP_ADD || !is_scalar_near(g, other_input(&g->nodes[a], erf->outputs[0]), 1.0))
        return;
    int m1 = sole_consumer(g, e, g->nodes[a].outputs[0]);
    if (m1 < 0 || g->nodes[m1].op != OP_MUL)
        return;
    int o1 = other_input(&g->nodes[m1], g->nodes[a].outputs[0]);
    int m2 = sole_consumer(g, e, g->nodes[m1].outputs[0]);
    if (o1 < 0 || m2 < 0 || g->nodes[m2].op != OP_MUL)
        return;
    int o2 = other_input(&g->nodes[m2], g->nodes[m1].outputs[0]);
    int half_x = o1 == x ? is_scalar_near(g, o2, 0.5) : o2 == x && is_scalar_near(g, o1, 0.5);
    if (!half_x)
        return;
    struct eng_node *gelu = &g->nodes[m2];
    gelu->op = OP_GELU;
    gelu->inputs[0] = x;
    gelu->input_count = 1;
    gelu->fill_i = 0;
    div->dead = erf->dead = g->nodes[a].dead = g->nodes[m1].dead = 1;
}

/* The node producing v when it is a live op whose output only `consumer` reads, else NULL. */
static struct eng_node *feeding(struct eng_graph *g, const struct edges *e, int v, enum eng_op op,
                                const struct eng_node *consumer)
{
    int p = v >= 0 ? g->values[v].producer : -1;
    if (p < 0 || g->nodes[p].dead || g->nodes[p].op != op || sole_consumer(g, e, v) != (int)(consumer - g->nodes))
        return NULL;
    return &g->nodes[p];
}

/* A Mul of something by a scalar near want: that something (-1 when n is not one). */
static int scaled(const struct eng_graph *g, const struct eng_node *n, double want)
{
    if (n == NULL || n->op != OP_MUL || n->input_count != 2)
        return -1;
    return is_scalar_near(g, n->inputs[1], want) ? n->inputs[0] : is_scalar_near(g, n->inputs[0], want) ? n->inputs[1]
                                                                                                         : -1;
}

/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as exporters write GPT-2's gelu_new: Pow(x, 3), Mul 0.044715,
 * Add x, Mul sqrt(2/pi), Tanh, Add 1, Mul by (Mul x 0.5) becomes one oneDNN gelu_tanh eltwise: the last Mul turns into
 * a Gelu of x, the six nodes before it die. */
static void fuse_gelu_tanh(struct eng_graph *g, const struct edges *e, struct eng_node *tanh)
{
    struct eng_node *inner = feeding(g, e, tanh->inputs[0], OP_MUL, tanh);
    int sum = scaled(g, inner, 0.7978845608028654);
    struct eng_node *add = sum >= 0 ? feeding(g, e, sum, OP_ADD, inner) : NULL;
    if (add == NULL || add->input_count != 2)
        return;
    for (int side = 0; side < 2; side++) {
        int x = add->inputs[side];
        struct eng_node *cube_scale = feeding(g, e, add->inputs[1 - side], OP_MUL, add);
        int cube = scaled(g, cube_scale, 0.044715);
        struct eng_node *pow = cube >= 0 ? feeding(g, e, cube, OP_POW, cube_scale) : NULL;
        if (pow == NULL || pow->inputs[0] != x || !is_scalar_near(g, pow->inputs[1], 3.0) ||
            g->values[x].kind == VAL_CONST)
            continue;
        int a1 = sole_consumer(g, e, tanh->outputs[0]);
        if (a1 < 0 || g->nodes[a1].op != OP_ADD || !is_scalar_near(g, other_input(&g->nodes[a1], tanh->outputs[0]), 1))
            return;
        int m = sole_consumer(g, e, g->nodes[a1].outputs[0]);
        int half = m >= 0 && g->nodes[m].op == OP_MUL ? other_input(&g->nodes[m], g->nodes[a1].outputs[0]) : -1;
        struct eng_node *h = half >= 0 && m >= 0 ? feeding(g, e, half, OP_MUL, &g->nodes[m]) : NULL;
        if (h == NULL || scaled(g, h, 0.5) != x)
            return;
        struct eng_node *gelu = &g->nodes[m];
        gelu->op = OP_GELU;
        gelu->inputs[0] = x;
        gelu->input_count = 1;
        gelu->fill_i = 1; /* tanh */
        pow->dead = cube_scale->dead = add->dead = inner->dead = tanh->dead = g->nodes[a1].dead = h->dead = 1;
        return;
    }
}

/* MatMul(A, B) + bias, B a constant 2-D [K, N] and A of rank 3 or more (a transformer's Linear layer, which
 * op_gemm.c runs as one 2-D product), bias a float32 constant of N values ([N] or [1, ..., 1, N]) that only this Add
 * reads the product with: the bias becomes the product's (oneDNN adds it while writing), the Add dies. */
static void fuse_matmul_bias(struct eng_graph *g, const struct edges *e, struct eng_node *mm)
{
    const struct eng_value *a = &g->values[mm->inputs[0]], *w = &g->values[mm->inputs[1]];
    if (mm->input_count != 2 || w->kind != VAL_CONST || w->shape.rank != 2 || a->shape.rank < 3)
        return;
    int add = sole_consumer(g, e, mm->outputs[0]);
    if (add < 0 || g->nodes[add].op != OP_ADD)
        return;
    int b = other_input(&g->nodes[add], mm->outputs[0]);
    if (b < 0 || b == mm->outputs[0])
        return;
    const struct eng_value *bias = &g->values[b];
    int64_t n = w->shape.dims[1];
    if (bias->kind != VAL_CONST || bias->dtype != VEIL_ONNX_FLOAT || bias->size != (size_t)n * 4 ||
        bias->shape.rank < 1 || bias->shape.dims[bias->shape.rank - 1] != n)
        return;
    const struct eng_shape *out = &g->values[mm->outputs[0]].shape, *sum = &g->values[g->nodes[add].outputs[0]].shape;
    if (out->rank != sum->rank || memcmp(out->dims, sum->dims, out->rank * sizeof out->dims[0]) != 0)
        return;
    int *inputs = realloc(mm->inputs, 3 * sizeof *inputs);
    if (inputs == NULL)
        return; /* no fusion: the Add runs on its own */
    mm->inputs = inputs;
    mm->inputs[2] = b;
    mm->input_count = 3;
    mm->beta = 1.0f;
    mm->out = g->nodes[add].outputs[0];
    g->nodes[add].dead = 1;
}

/* The only live node reading v, from the nodes' inputs as the fusions left them (the edges predate the GELU
 * patterns' rewrite: their Gelu node reads x, which its Mul did not), or -1 as sole_consumer. */
static int sole_reader(const struct eng_graph *g, int v)
{
    if (g->values[v].is_output)
        return -1;
    int found = -1;
    for (size_t i = 0; i < g->node_count; i++) {
        const struct eng_node *n = &g->nodes[i];
        for (uint32_t k = 0; !n->dead && k < n->input_count; k++) {
            if (n->inputs[k] != v)
                continue;
            if (found >= 0)
                return -1;
            found = (int)i;
            break;
        }
    }
    return found;
}

/* A MatMul or Gemm whose product (bias included) only a Relu or a Gelu reads, directly or through one view (Reshape,
 * Flatten, Identity): the activation becomes the product's eltwise post-op (oneDNN applies it while writing: GELU
 * after each of BERT-base's FFN products, 2.3 ms a run as separate eltwise steps on AVX2; 6.4 ms of GPT-2's, whose
 * Conv1D reshapes the product first), and the activation node dies, or through a view becomes an Identity view of
 * it. Runs after the GELU patterns were fused. */
static void fuse_matmul_act(struct eng_graph *g, struct eng_node *mm)
{
    int next = sole_reader(g, mm->out);
    if (next < 0 || mm->post_count > 0)
        return;
    struct eng_node *a = &g->nodes[next], *view = NULL;
    if (is_view(a->op) && !a->dead && a->inputs[0] == mm->out) { /* GPT-2's Conv1D: Gemm, Reshape, then gelu */
        int after = sole_reader(g, a->outputs[0]);
        if (after < 0)
            return;
        view = a;
        a = &g->nodes[after];
    }
    struct eng_post p;
    int from = view != NULL ? view->outputs[0] : mm->out;
    if (a->dead || a->input_count < 1 || a->inputs[0] != from)
        return;
    if (a->op == OP_GELU)
        p = (struct eng_post){.alg = a->fill_i ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf};
    else if (a->op == OP_RELU && a->elt_count == 1)
        p = a->elt[0];
    else
        return;
    mm->post[mm->post_count++] = p;
    if (view != NULL) { /* the activation runs before the view (it is elementwise); its node becomes a view too */
        a->op = OP_IDENTITY;
        a->elt_count = 0;
        return;
    }
    mm->out = a->outputs[0];
    a->dead = 1;
}

/* An eltwise node read only by another (a QuantizeLinear by its DequantizeLinear) runs both chains in one step. */
static void fuse_eltwise_chain(struct eng_graph *g, const struct edges *e, struct eng_node *n)
{
    for (;;) {
        int next = sole_consumer(g, e, n->out);
        if (next < 0)
            return;
        struct eng_node *m = &g->nodes[next];
        if (!is_eltwise(m->op) || m->inputs[0] != n->out || n->elt_count + m->elt_count > ENG_MAX_ELT)
            return;
        if (has_round(m) || (has_round(n) && m->op != OP_DEQUANTIZE)) /* a Q heads its chain: the kernel's form */
            return;
        for (uint32_t k = 0; k < m->elt_count; k++)
            n->elt[n->elt_count++] = m->elt[k];
        m->dead = 1;
        n->out = m->outputs[0];
    }
}

/* Whether int8 weights stay within [-64, 64], where this CPU's int8 kernels cannot saturate (VEIL_ENGINE_INT8_7BIT). */
static int weights_7bit(const struct eng_value *q)
{
    const int8_t *w = (const int8_t *)q->data;
    for (size_t i = 0; i < q->size; i++)
        if (w[i] < -64 || w[i] > 64)
            return 0;
    return 1;
}

/* Weights w (a constant) that an int8 kernel can read as they are: dequantized from int8 with zero points of 0 and
 * one scale, or one per output channel along axis (a Conv's 0, a MatMul's 1), each normal (the bias is divided by
 * x_scale * w_scale); within [-64, 64] when support is VEIL_ENGINE_INT8_7BIT. */
static int int8_weights(const struct eng_graph *g, const struct eng_value *w, int64_t out_axis, float x_scale,
                        int support)
{
    if (w->kind != VAL_CONST || w->dq_from == 0)
        return 0;
    const struct eng_node *dq = &g->nodes[w->dq_from - 1];
    const struct eng_value *q = &g->values[dq->inputs[0]], *s = &g->values[dq->inputs[1]];
    size_t scales = eng_shape_count(&s->shape);
    int64_t axis = dq->axis < 0 ? dq->axis + q->shape.rank : dq->axis;
    if (q->dtype != VEIL_ONNX_INT8 || !(scales == 1 || (axis == out_axis && (int64_t)scales == q->shape.dims[axis])))
        return 0;
    if (support == VEIL_ENGINE_INT8_7BIT && !weights_7bit(q))
        return 0;
    for (size_t i = 0; i < scales; i++) {
        float ws;
        memcpy(&ws, s->data + 4 * i, 4);
        if (!(ws > 0) || fpclassify(ws) != FP_NORMAL || fpclassify(ws * x_scale) != FP_NORMAL)
            return 0;
    }
    if (dq->input_count > 2 && dq->inputs[2] >= 0) {
        const struct eng_value *z = &g->values[dq->inputs[2]];
        for (size_t i = 0; i < z->size; i++)
            if (z->data[i] != 0)
                return 0;
    }
    return 1;
}

/* A Conv or MatMul reading x that can run on int8 kernels. A Conv: int8 weights, no folded BatchNormalization, no
 * residual sum; and, when the input's zero point is not 0, no padding: oneDNN 2.6 pads a u8 source with 0, not with
 * its zero point (measured: wrong borders), while ONNX pads the dequantized input with 0.0, which is the zero point.
 * A MatMul (op_gemm_int8.c): A of rank 2 or more, B a 2-D constant of int8 weights, one scale per column or one;
 * a Gemm: the same, per row of a transposed B, and alpha 1. */
static int int8_reader(const struct eng_graph *g, const struct eng_node *c, int x, float x_zp, float x_scale,
                       int support)
{
    if (c->dead || c->inputs[0] != x)
        return 0;
    const struct eng_value *w = &g->values[c->inputs[1]];
    if (c->op == OP_MATMUL)
        return w->shape.rank == 2 && g->values[x].shape.rank >= 2 && int8_weights(g, w, 1, x_scale, support);
    if (c->op == OP_GEMM)
        return c->alpha == 1.0f && w->shape.rank == 2 && int8_weights(g, w, c->trans_b ? 0 : 1, x_scale, support);
    if (c->op != OP_CONV || c->bn >= 0 || c->sum >= 0)
        return 0;
    const int64_t *p = c->conv.pads;
    if (x_zp != 0.0f && (p[0] || p[1] || p[2] || p[3]))
        return 0;
    return int8_weights(g, w, 0, x_scale, support);
}

/* A QuantizeLinear with its DequantizeLinear fused (elt_count 5), read by int8 Convs or MatMuls: it writes its
 * integers (u8 or s8) for them, and they read them with the scale and zero point, dequantizing in their output
 * scales; other readers (a residual Add) read the dequantized values as before. */
static void mark_int8(struct eng_graph *g, struct eng_node *n)
{
    int support = veil_engine_int8_support();
    if (n->op != OP_QUANTIZE || n->elt_count != 5 || g->values[n->out].is_output || support == VEIL_ENGINE_INT8_NONE)
        return;
    float lo = n->elt[2].alpha, hi = n->elt[2].beta;
    float dq_zp = -n->elt[3].beta, dq_scale = n->elt[4].alpha; /* the Conv reads the integers as its DQ says */
    if (!((lo == 0.0f && hi == 255.0f) || (lo == -128.0f && hi == 127.0f && support == VEIL_ENGINE_INT8_ALL)))
        return;
    /* the readers from the nodes' inputs as the fusions left them, not from the edges: a fused GELU's node reads x,
     * which its Mul did not; a Conv that absorbed an Add reading x reads it as a sum post-op */
    int x = n->out, readers = 0, others = 0;
    for (size_t i = 0; i < g->node_count; i++) {
        const struct eng_node *c = &g->nodes[i];
        int reads = 0;
        for (uint32_t k = 0; !c->dead && k < c->input_count; k++)
            reads |= c->inputs[k] == x;
        if (reads)
            int8_reader(g, c, x, dq_zp, dq_scale, support) ? readers++ : others++;
        others += !c->dead && c->sum == x;
    }
    if (readers == 0)
        return;
    n->int8 = others == 0 ? 1 : 2;
    n->x_type = lo < 0 ? dnnl_s8 : dnnl_u8;
    for (size_t i = 0; i < g->node_count; i++) {
        struct eng_node *c = &g->nodes[i];
        if (!int8_reader(g, c, x, dq_zp, dq_scale, support))
            continue;
        c->int8 = 1;
        c->int8_q = (int)(n - g->nodes) + 1;
        c->x_scale = dq_scale;
        c->x_zp = (int32_t)dq_zp;
        c->x_type = n->x_type;
    }
}

/* A QuantizeLinear that writes integers for int8 Convs only (int8 = 1), fed by an int8 Conv alone (no sum, no
 * post-op but ReLU): that Conv writes the integers itself (u8/s8 destination, scales divided by the output scale,
 * the zero point added), and the QuantizeLinear's pass over float32 values disappears. */
static void absorb_quant(struct eng_graph *g, const struct edges *e, struct eng_node *q)
{
    if (q->op != OP_QUANTIZE || q->int8 != 1)
        return;
    int y = q->inputs[0];
    struct eng_node *conv = NULL;
    for (size_t i = 0; i < g->node_count && conv == NULL; i++)
        if (!g->nodes[i].dead && g->nodes[i].out == y && g->nodes[i].op == OP_CONV)
            conv = &g->nodes[i];
    if (conv == NULL || conv->int8 != 1 || conv->sum >= 0 || sole_consumer(g, e, y) != (int)(q - g->nodes))
        return;
    for (uint32_t k = 0; k < conv->post_count; k++)
        if (conv->post[k].sum || conv->post[k].alg != dnnl_eltwise_relu || conv->post[k].alpha != 0.0f)
            return;
    conv->q_out = (int)(q - g->nodes) + 1;
    conv->out = q->out;
    q->dead = 1;
}

static void fuse(struct eng_graph *g, const struct edges *e)
{
    for (size_t i = 0; i < g->node_count; i++) {
        struct eng_node *n = &g->nodes[g->order[i]];
        if (!n->dead && (n->op == OP_CONV || n->op == OP_CONVTRANSPOSE))
            fuse_conv(g, e, n);
        if (!n->dead && is_eltwise(n->op) && n->elt_count > 0)
            fuse_eltwise_chain(g, e, n);
        if (!n->dead && n->op == OP_ERF)
            fuse_gelu(g, e, n);
        if (!n->dead && n->op == OP_TANH)
            fuse_gelu_tanh(g, e, n);
        if (!n->dead && n->op == OP_MATMUL)
            fuse_matmul_bias(g, e, n);
    }
    for (size_t i = 0; i < g->node_count; i++) {
        struct eng_node *n = &g->nodes[g->order[i]];
        if (!n->dead && (n->op == OP_MATMUL || n->op == OP_GEMM))
            fuse_matmul_act(g, n);
    }
    for (size_t i = 0; i < g->node_count; i++)
        if (!g->nodes[g->order[i]].dead)
            mark_int8(g, &g->nodes[g->order[i]]);
    for (size_t i = 0; i < g->node_count; i++)
        if (!g->nodes[g->order[i]].dead)
            absorb_quant(g, e, &g->nodes[g->order[i]]);
}

VEIL_RESULT eng_plan_graph(struct eng_graph *g, uint64_t batch, uint64_t symbolic_size,
                           const struct veil_engine_shape *shapes, size_t shape_count)
{
    VEIL_ENSURE(batch <= VEIL_ENGINE_MAX_BATCH, VEIL_ERR_LIMIT, "batch %" PRIu64 " is more than %u", batch,
                VEIL_ENGINE_MAX_BATCH);
    VEIL_GUARD(parse_nodes(g));
    VEIL_DEFER(edges_cleanup) struct edges e = {0};
    VEIL_GUARD(edges_build(g, &e));
    VEIL_GUARD(topo_sort(g, &e));
    VEIL_GUARD(input_shapes(g, batch, symbolic_size, shapes, shape_count));
    VEIL_GUARD(infer_shapes(g));
    if (fuse_pads(g, &e)) { /* a Conv now reads the Pad's input: rebuild the consumer lists */
        edges_cleanup(&e);
        e = (struct edges){0};
        VEIL_GUARD(edges_build(g, &e));
    }
    fuse(g, &e);
    return VEIL_RESULT_OK;
}

/* ---- 5. memory ------------------------------------------------------------------------------------------- */

static void touch(struct eng_value *r, int64_t pos, int writes)
{
    if (writes && pos < r->first)
        r->first = pos;
    if (!writes && pos > r->last)
        r->last = pos;
}

static VEIL_RESULT liveness(struct veil_engine *e)
{
    struct eng_graph *g = &e->g;
    for (size_t v = 0; v < g->value_count; v++) {
        g->values[v].first = INT64_MAX;
        g->values[v].last = INT64_MIN;
        g->values[v].buf_size = 0;
    }
    for (size_t i = 0; i < g->input_count; i++)
        g->values[eng_value_root(g, g->inputs[i])].first = -1;
    for (size_t s = 0; s < e->step_count; s++) {
        const struct eng_step *st = &e->steps[s];
        for (uint32_t a = 0; a < st->arg_count; a++)
            if (st->args[a].kind == ARG_VALUE)
                touch(&g->values[eng_value_root(g, st->args[a].value)], (int64_t)s, st->args[a].writes);
        if (st->reads_sum >= 0)
            touch(&g->values[eng_value_root(g, st->reads_sum)], (int64_t)s, 0);
    }
    for (size_t i = 0; i < g->output_count; i++)
        g->values[eng_value_root(g, e->out_values[i])].last = (int64_t)e->step_count;
    for (size_t v = 0; v < g->value_count; v++) {
        struct eng_value *x = &g->values[v];
        if (!x->has_md)
            continue;
        struct eng_value *r = &g->values[eng_value_root(g, (int)v)];
        size_t size = dnnl_memory_desc_get_size(&x->md);
        r->buf_size = size > r->buf_size ? size : r->buf_size;
    }
    return VEIL_RESULT_OK;
}

static int overlaps(const struct eng_value *a, const struct eng_value *b)
{
    int64_t a_last = a->last < a->first ? a->first : a->last, b_last = b->last < b->first ? b->first : b->last;
    return a->first <= b_last && b->first <= a_last;
}

struct placed {
    size_t offset, end;
};

static int placed_compare(const void *x, const void *y)
{
    const struct placed *a = x, *b = y;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

struct root {
    size_t size;
    int value;
};

/* Largest first, then in value order, so the plan is deterministic. */
static int root_compare(const void *x, const void *y)
{
    const struct root *a = x, *b = y;
    if (a->size != b->size)
        return a->size < b->size ? 1 : -1;
    return (a->value > b->value) - (a->value < b->value);
}

static void sort_roots(const struct eng_graph *g, int *roots, size_t n, struct root *tmp)
{
    for (size_t i = 0; i < n; i++)
        tmp[i] = (struct root){g->values[roots[i]].buf_size, roots[i]};
    qsort(tmp, n, sizeof *tmp, root_compare);
    for (size_t i = 0; i < n; i++)
        roots[i] = tmp[i].value;
}

static VEIL_RESULT place(struct eng_graph *g, const int *roots, size_t i, struct placed *tmp, size_t *arena)
{
    struct eng_value *r = &g->values[roots[i]];
    size_t n = 0, offset = 0;
    for (size_t k = 0; k < i; k++) {
        const struct eng_value *o = &g->values[roots[k]];
        if (overlaps(r, o))
            tmp[n++] = (struct placed){o->offset, o->offset + o->buf_size};
    }
    qsort(tmp, n, sizeof *tmp, placed_compare);
    for (size_t k = 0; k < n; k++) {
        if (tmp[k].offset >= offset + r->buf_size)
            break;
        if (tmp[k].end > offset)
            offset = (tmp[k].end + 63) & ~(size_t)63;
    }
    r->offset = offset;
    uint64_t end = 0;
    VEIL_GUARD(veil_add_u64(offset, r->buf_size, &end));
    VEIL_ENSURE(end <= VEIL_ENGINE_MAX_ARENA_SIZE, VEIL_ERR_LIMIT, "the activations need more than %" PRIu64
                " bytes", (uint64_t)VEIL_ENGINE_MAX_ARENA_SIZE);
    end = (end + 63) & ~(uint64_t)63;
    *arena = end > *arena ? (size_t)end : *arena;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_plan_memory(struct veil_engine *e, size_t *arena_size)
{
    struct eng_graph *g = &e->g;
    VEIL_GUARD(liveness(e));
    int *roots = malloc((g->value_count + 1) * sizeof *roots);
    struct placed *tmp = malloc((g->value_count + 1) * sizeof *tmp);
    struct root *order = malloc((g->value_count + 1) * sizeof *order);
    struct veil_result r = VEIL_RESULT_OK;
    size_t n = 0;
    if (roots == NULL || tmp == NULL || order == NULL)
        r = veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    for (size_t v = 0; veil_ok(r) && v < g->value_count; v++)
        if (g->values[v].alias < 0 && g->values[v].buf_size > 0 && !g->values[v].external)
            roots[n++] = (int)v;
    if (veil_ok(r))
        sort_roots(g, roots, n, order);
    *arena_size = 64;
    for (size_t i = 0; veil_ok(r) && i < n; i++)
        r = place(g, roots, i, tmp, arena_size);
    free(roots);
    free(tmp);
    free(order);
    return r;
}
