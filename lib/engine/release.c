/* SPDX-License-Identifier: Apache-2.0 */
/* Consuming a sealed model while the engine is built (veil_engine_load_model_releasing): once the last node that
 * reads a weight has been built, the engine holds its own copy (packed, converted, or folded), so the model's
 * plaintext of that weight is wiped and its pages go back to the system. The peak of a load is then about one copy
 * of the weights instead of two.
 *
 * Who reads a weight, and when, is taken from the planned graph:
 * - a live node reads its inputs while it is built, and the inputs of the nodes whose index it keeps (the folded
 *   DequantizeLinear of an int8 Conv's weights, its QuantizeLinear);
 * - a node evaluated at load (folded) read its inputs then; its output, when it views them (Reshape, Identity...),
 *   is read by its own readers, which the first rule finds by address;
 * - a node fused into another one (a BatchNormalization into its Conv, a bias Add into its MatMul) is read by that
 *   node, whose index it does not keep: its inputs go after the last node is built;
 * - a weight lent to a primitive (read in place at run time: a model of 1 GiB or more, ENG_BORROW_FORCE) stays with
 *   the model. A smaller model lends nothing to a consuming load: lending it pays only by keeping the model, and
 *   copying what would be lent, one tensor at a time as its readers are built, peaks no higher and frees it all.
 * The model gives back the whole pages of each tensor, and the pages it shares with tensors already given back
 * (lib/format/model.c), made inaccessible, so a reader this plan missed would fault, never compute on zeros. */
#include <stdlib.h>

#include "engine/internal.h"
#include "format/format.h"

#define AT_NONE INT64_C(-1)      /* no reader during the build: read while planning, or never */

struct eng_release {
    const uint8_t *data;
    size_t size;
    size_t index;                /* in the model's tensor table */
    int64_t at;                  /* the position of the last node that reads it, or AT_NONE */
    int lent;                    /* a step reads it in place */
};

static int by_data(const void *a, const void *b)
{
    const struct eng_release *x = a, *y = b;
    return (x->data > y->data) - (x->data < y->data);
}

static int by_at(const void *a, const void *b)
{
    const struct eng_release *x = a, *y = b;
    return (x->at > y->at) - (x->at < y->at);
}

/* The released tensor whose bytes hold p, or NULL; the table is sorted by data while planning. */
static struct eng_release *holding(struct eng_release *t, size_t count, const uint8_t *p)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p < t[mid].data)
            hi = mid;
        else if (p >= t[mid].data + t[mid].size)
            lo = mid + 1;
        else
            return &t[mid];
    }
    return NULL;
}

static void mark(struct veil_engine *e, int value, int64_t at)
{
    if (value < 0)
        return;
    const struct eng_value *v = &e->g.values[value];
    if (v->kind != VAL_CONST || !v->from_view || v->data == NULL)
        return;
    struct eng_release *t = holding(e->release, e->release_count, v->data);
    if (t != NULL && at > t->at)
        t->at = at;
}

static void mark_inputs(struct veil_engine *e, const struct eng_node *n, int64_t at)
{
    for (uint32_t k = 0; k < n->input_count; k++)
        mark(e, n->inputs[k], at);
}

/* Node n (live) reads, while it is built at position at: its inputs and those of the nodes it keeps by index. */
static void mark_reads(struct veil_engine *e, const struct eng_node *n, int64_t at)
{
    mark_inputs(e, n, at);
    for (uint32_t k = 0; k < n->input_count; k++) {
        int v = n->inputs[k];
        if (v >= 0 && e->g.values[v].kind == VAL_CONST && e->g.values[v].dq_from > 0)
            mark_inputs(e, &e->g.nodes[e->g.values[v].dq_from - 1], at);
    }
    if (n->int8_q > 0)
        mark_inputs(e, &e->g.nodes[n->int8_q - 1], at);
    if (n->q_out > 0)
        mark_inputs(e, &e->g.nodes[n->q_out - 1], at);
}

VEIL_RESULT eng_release_plan(struct veil_engine *e, const struct veil_tensor_view *views, size_t count)
{
    e->release = calloc(count + 1, sizeof *e->release);
    VEIL_ENSURE(e->release != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++)
        if (views[i].data != NULL && views[i].size > 0)
            e->release[e->release_count++] = (struct eng_release){.data = views[i].data, .size = views[i].size,
                                                                  .index = i, .at = AT_NONE};
    qsort(e->release, e->release_count, sizeof *e->release, by_data);
    int64_t last = (int64_t)e->g.node_count - 1;
    for (size_t i = 0; i < e->g.node_count; i++) {
        const struct eng_node *n = &e->g.nodes[i];
        if (!n->dead)
            mark_reads(e, n, n->order);
        else if (!n->folded)
            mark_inputs(e, n, last);
    }
    qsort(e->release, e->release_count, sizeof *e->release, by_at);
    return VEIL_RESULT_OK;
}

void eng_release_lent(struct veil_engine *e, const void *src)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < e->release_count; i++)
        if (p >= e->release[i].data && p < e->release[i].data + e->release[i].size)
            e->release[i].lent = 1;
}

/* Each entry is passed once, in the order of its last reader. */
void eng_release_after(struct veil_engine *e, int64_t position)
{
    for (; e->release_next < e->release_count && e->release[e->release_next].at <= position; e->release_next++)
        if (!e->release[e->release_next].lent)
            veil_model_release_tensor(e->releasing, e->release[e->release_next].index);
}

void eng_release_cleanup(struct veil_engine *e)
{
    free(e->release);
    e->release = NULL;
    e->release_count = e->release_next = 0;
    e->releasing = NULL;
}
