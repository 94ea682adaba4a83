/* SPDX-License-Identifier: Apache-2.0 */
/* ONNX ModelProto -> engine values and nodes, through the bounded protobuf reader (lib/onnx/pb.h).
 *
 * ModelProto: ir_version (1), graph (7, exactly one), opset_import (8). GraphProto: node (1), initializer (5,
 * names and types only: the data comes from the tensor views), input (11), output (12); sparse_initializer (15)
 * is refused. NodeProto: input (1), output (2), name (3), op_type (4), attribute (5), domain (7).
 * Values are created on first mention; when the whole graph is read, every value a node reads must be a graph
 * input, an initializer or the output of exactly one node. Unsupported operators are refused here, by name. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "engine/internal.h"
#include "onnx/onnx.h"
#include "onnx/pb.h"

#define W_VARINT VEIL_PB_WIRE_BIT(VEIL_PB_VARINT)
#define W_I64 VEIL_PB_WIRE_BIT(VEIL_PB_I64)
#define W_LEN VEIL_PB_WIRE_BIT(VEIL_PB_LEN)
#define W_I32 VEIL_PB_WIRE_BIT(VEIL_PB_I32)

/* ---- names and values ------------------------------------------------------------------------------------ */

/* A printable, shortened copy of untrusted bytes for messages. */
static void printable(const uint8_t *p, size_t n, char *out, size_t out_size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < out_size; i++)
        out[k++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    if (k + 4 >= out_size && n > k) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

static VEIL_RESULT check_name(const uint8_t *p, size_t n, const char *what)
{
    VEIL_ENSURE(n <= VEIL_ONNX_MAX_NAME_SIZE, VEIL_ERR_LIMIT, "%s: a name of %zu bytes, more than %u", what, n,
                VEIL_ONNX_MAX_NAME_SIZE);
    VEIL_ENSURE(n == 0 || memchr(p, 0, n) == NULL, VEIL_ERR_ONNX, "%s: a name contains a NUL byte", what);
    return VEIL_RESULT_OK;
}

static uint64_t hash_name(const uint8_t *p, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    return h;
}

static int name_equals(const struct eng_value *v, const uint8_t *p, size_t n)
{
    return v->name != NULL && strlen(v->name) == n && memcmp(v->name, p, n) == 0;
}

static int64_t table_slot(const struct eng_graph *g, const uint8_t *p, size_t n)
{
    size_t mask = g->table_size - 1, i = (size_t)hash_name(p, n) & mask;
    while (g->table[i] >= 0 && !name_equals(&g->values[g->table[i]], p, n))
        i = (i + 1) & mask;
    return (int64_t)i;
}

static VEIL_RESULT table_grow(struct eng_graph *g)
{
    size_t size = g->table_size ? g->table_size * 2 : 1024;
    int *t = malloc(size * sizeof *t);
    VEIL_ENSURE(t != NULL, VEIL_ERR_NOMEM, "out of memory");
    free(g->table);
    g->table = t;
    g->table_size = size;
    for (size_t i = 0; i < size; i++)
        t[i] = -1;
    for (size_t v = 0; v < g->value_count; v++) {
        const char *name = g->values[v].name;
        if (name != NULL)
            t[table_slot(g, (const uint8_t *)name, strlen(name))] = (int)v;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT grow_array(void **items, size_t *cap, size_t count, size_t item_size, size_t limit,
                              const char *what)
{
    if (count < *cap)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(count < limit, VEIL_ERR_LIMIT, "the graph has more than %zu %s", limit, what);
    size_t n = *cap < 64 ? 64 : *cap * 2;
    void *p = realloc(*items, n * item_size);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    *items = p;
    *cap = n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT new_value(struct eng_graph *g, int *index)
{
    void *items = g->values;
    struct veil_result r = grow_array(&items, &g->value_cap, g->value_count, sizeof *g->values,
                                      VEIL_ENGINE_MAX_VALUES, "values");
    g->values = items;
    VEIL_GUARD(r);
    g->values[g->value_count] = (struct eng_value){.producer = -1, .alias = -1};
    *index = (int)g->value_count++;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_graph_add_hidden(struct eng_graph *g, int *index)
{
    VEIL_GUARD(new_value(g, index));
    g->values[*index].kind = VAL_ACT;
    g->values[*index].dtype = VEIL_ONNX_FLOAT;
    return VEIL_RESULT_OK;
}

/* The value named p[0..n), created when new. */
static VEIL_RESULT intern(struct eng_graph *g, const uint8_t *p, size_t n, const char *what, int *index)
{
    VEIL_GUARD(check_name(p, n, what));
    if ((g->value_count + 1) * 2 > g->table_size)
        VEIL_GUARD(table_grow(g));
    int64_t slot = table_slot(g, p, n);
    if (g->table[slot] >= 0) {
        *index = g->table[slot];
        return VEIL_RESULT_OK;
    }
    char *name = malloc(n + 1);
    VEIL_ENSURE(name != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(name, p, n);
    name[n] = '\0';
    struct veil_result r = new_value(g, index);
    if (!veil_ok(r)) {
        free(name);
        return r;
    }
    g->values[*index].name = name;
    g->table[slot] = *index;
    return VEIL_RESULT_OK;
}

int eng_graph_find(const struct eng_graph *g, const char *name)
{
    if (g->table_size == 0)
        return -1;
    return g->table[table_slot(g, (const uint8_t *)name, strlen(name))];
}

void eng_graph_cleanup(struct eng_graph *g)
{
    for (size_t i = 0; i < g->value_count; i++) {
        struct eng_value *v = &g->values[i];
        free(v->name);
        if (v->owned != NULL)
            veil_wipe(v->owned, v->size);
        free(v->owned);
    }
    for (size_t i = 0; i < g->node_count; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].inputs);
        free(g->nodes[i].outputs);
        free(g->nodes[i].attrs);
    }
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->order);
    free(g->table);
    *g = (struct eng_graph){0};
}

/* ---- initializers ---------------------------------------------------------------------------------------- */

static VEIL_RESULT add_initializer(struct eng_graph *g, const struct veil_tensor_view *t)
{
    int v = -1;
    VEIL_ENSURE(t->name != NULL, VEIL_ERR_ARG, "a tensor view has no name");
    VEIL_GUARD(intern(g, (const uint8_t *)t->name, strlen(t->name), "initializer", &v));
    struct eng_value *x = &g->values[v];
    VEIL_ENSURE(x->kind == VAL_NONE, VEIL_ERR_ONNX, "two initializers are named '%s'", x->name);
    VEIL_ENSURE(t->rank <= ENG_RANK, VEIL_ERR_UNSUPPORTED, "initializer '%s' has rank %" PRIu32
                ", more than the engine's %u", x->name, t->rank, ENG_RANK);
    uint64_t n = veil_onnx_dtype_size(t->dtype);
    for (uint32_t i = 0; i < t->rank; i++) {
        VEIL_ENSURE(t->dims[i] >= 0, VEIL_ERR_ONNX, "initializer '%s' has a negative dim", x->name);
        VEIL_ENSURE(veil_ok(veil_mul_u64(n, (uint64_t)t->dims[i], &n)), VEIL_ERR_LIMIT,
                    "initializer '%s': dims overflow", x->name);
        x->shape.dims[i] = t->dims[i];
    }
    VEIL_ENSURE(n == t->size && (t->data != NULL || t->size == 0), VEIL_ERR_ARG,
                "initializer '%s': the view holds %zu bytes, its dims say %" PRIu64, x->name, t->size, n);
    x->shape.rank = t->rank;
    x->has_shape = 1;
    x->kind = VAL_CONST;
    x->dtype = t->dtype;
    x->data = t->data;
    x->size = t->size;
    x->from_view = 1;
    return VEIL_RESULT_OK;
}

/* An initializer field of the stripped graph: its data is in the views; refuse string tensors. */
static VEIL_RESULT check_graph_initializer(struct veil_cursor c)
{
    struct veil_pb_field f;
    const uint8_t *name = NULL;
    size_t name_size = 0;
    uint64_t dtype = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "TensorProto", &f));
        if (f.number == 8 && f.wire == VEIL_PB_LEN) {
            name = f.payload.data;
            name_size = f.payload.size;
        }
        if (f.number == 2 && f.wire == VEIL_PB_VARINT)
            dtype = f.value;
    }
    char label[80];
    printable(name, name_size, label, sizeof label);
    VEIL_ENSURE(dtype != VEIL_ONNX_STRING, VEIL_ERR_UNSUPPORTED, "initializer '%s' is a STRING tensor; the engine "
                "does not support strings", label);
    return VEIL_RESULT_OK;
}

/* ---- graph inputs ---------------------------------------------------------------------------------------- */

struct input_scan {
    const uint8_t *name;
    size_t name_size;
    int64_t elem_type;
    int tensor, other_type, has_shape;
    struct eng_shape shape;
};

static VEIL_RESULT scan_dim(struct input_scan *s, struct veil_cursor c)
{
    struct veil_pb_field f;
    int64_t dim = -1;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "TensorShapeProto.Dimension", &f));
        if (f.number == 1) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_VARINT, "TensorShapeProto.Dimension"));
            dim = (int64_t)f.value;
            VEIL_ENSURE(dim >= 0, VEIL_ERR_ONNX, "a graph input has a negative dim");
        }
    }
    VEIL_ENSURE(s->shape.rank < ENG_RANK, VEIL_ERR_UNSUPPORTED, "a graph input has more than %u dims", ENG_RANK);
    s->shape.dims[s->shape.rank++] = dim;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_shape(struct input_scan *s, struct veil_cursor c)
{
    struct veil_pb_field f;
    s->has_shape = 1;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "TensorShapeProto", &f));
        if (f.number == 1) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, "TensorShapeProto"));
            VEIL_GUARD(scan_dim(s, f.payload));
        }
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_tensor_type(struct input_scan *s, struct veil_cursor c)
{
    struct veil_pb_field f;
    s->tensor = 1;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "TypeProto.Tensor", &f));
        if (f.number == 1) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_VARINT, "TypeProto.Tensor"));
            s->elem_type = (int64_t)f.value;
        } else if (f.number == 2) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, "TypeProto.Tensor"));
            VEIL_GUARD(scan_shape(s, f.payload));
        }
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_type(struct input_scan *s, struct veil_cursor c)
{
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "TypeProto", &f));
        if (f.number == 1) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, "TypeProto"));
            VEIL_GUARD(scan_tensor_type(s, f.payload));
        } else if (f.number != 6) { /* 6: denotation */
            s->other_type = 1;
        }
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_value_info(struct input_scan *s, struct veil_cursor c)
{
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "ValueInfoProto", &f));
        if (f.number == 1 || f.number == 2)
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, "ValueInfoProto"));
        if (f.number == 1) {
            s->name = f.payload.data;
            s->name_size = f.payload.size;
        } else if (f.number == 2) {
            VEIL_GUARD(scan_type(s, f.payload));
        }
    }
    VEIL_ENSURE(s->name != NULL && s->name_size > 0, VEIL_ERR_ONNX, "a graph input or output has no name");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT push_index(int **items, size_t *count, int v)
{
    VEIL_ENSURE(*count < VEIL_ENGINE_MAX_NODE_IO, VEIL_ERR_LIMIT, "the graph has more than %u inputs or outputs",
                VEIL_ENGINE_MAX_NODE_IO);
    int *p = realloc(*items, (*count + 1) * sizeof *p);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    p[(*count)++] = v;
    *items = p;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_input_type(const struct eng_value *x, const struct input_scan *s)
{
    VEIL_ENSURE(s->tensor && !s->other_type, VEIL_ERR_UNSUPPORTED, "graph input '%s' is not a tensor", x->name);
    VEIL_ENSURE(s->elem_type == VEIL_ONNX_FLOAT || s->elem_type == VEIL_ONNX_INT64 || s->elem_type == VEIL_ONNX_INT32 ||
                s->elem_type == VEIL_ONNX_BOOL, VEIL_ERR_UNSUPPORTED, "graph input '%s' has data type %" PRId64
                "; the engine takes float32, int64, int32 and bool inputs", x->name, s->elem_type);
    VEIL_ENSURE(s->has_shape, VEIL_ERR_UNSUPPORTED, "graph input '%s' has no shape", x->name);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_input(struct eng_graph *g, struct veil_cursor c)
{
    struct input_scan s = {0};
    VEIL_GUARD(scan_value_info(&s, c));
    int v = -1;
    VEIL_GUARD(intern(g, s.name, s.name_size, "graph input", &v));
    struct eng_value *x = &g->values[v];
    if (x->kind == VAL_CONST)
        return VEIL_RESULT_OK; /* IR < 4 lists initializers among the inputs */
    VEIL_ENSURE(x->kind == VAL_NONE, VEIL_ERR_ONNX, "graph input '%s' is listed twice", x->name);
    VEIL_GUARD(check_input_type(x, &s));
    x->kind = VAL_INPUT;
    x->dtype = (int32_t)s.elem_type;
    x->in_dtype = (int32_t)s.elem_type;
    x->shape = s.shape;
    for (uint32_t i = 0; i < s.shape.rank; i++)
        x->symbolic_mask |= s.shape.dims[i] < 0 ? 1u << i : 0u;
    return push_index(&g->inputs, &g->input_count, v);
}

static VEIL_RESULT parse_output(struct eng_graph *g, struct veil_cursor c)
{
    struct input_scan s = {0};
    VEIL_GUARD(scan_value_info(&s, c));
    int v = -1;
    VEIL_GUARD(intern(g, s.name, s.name_size, "graph output", &v));
    VEIL_ENSURE(!g->values[v].is_output, VEIL_ERR_UNSUPPORTED, "graph output '%s' is listed twice; outputs are "
                "answered by name (KServe v2), so each must be listed once", g->values[v].name);
    g->values[v].is_output = 1;
    for (uint32_t i = 0; s.has_shape && i < s.shape.rank && i < 32; i++) /* as declared: metadata for servers */
        g->values[v].symbolic_mask |= s.shape.dims[i] < 0 ? 1u << i : 0u;
    return push_index(&g->outputs, &g->output_count, v);
}

/* ---- nodes ----------------------------------------------------------------------------------------------- */

struct node_scan {
    char what[48];
    const uint8_t *op, *domain, *name;
    size_t op_size, domain_size, name_size;
    uint32_t inputs, outputs, attrs;
};

static VEIL_RESULT scan_node(struct node_scan *s, struct veil_cursor c)
{
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, s->what, &f));
        if (f.number >= 1 && f.number <= 7)
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, s->what));
        switch (f.number) {
        case 1: s->inputs++; break;
        case 2: s->outputs++; break;
        case 3: s->name = f.payload.data; s->name_size = f.payload.size; break;
        case 4: s->op = f.payload.data; s->op_size = f.payload.size; break;
        case 5: s->attrs++; break;
        case 7: s->domain = f.payload.data; s->domain_size = f.payload.size; break;
        default: break;
        }
    }
    VEIL_ENSURE(s->inputs <= VEIL_ENGINE_MAX_NODE_IO && s->outputs <= VEIL_ENGINE_MAX_NODE_IO, VEIL_ERR_LIMIT,
                "%s has more than %u inputs or outputs", s->what, VEIL_ENGINE_MAX_NODE_IO);
    VEIL_ENSURE(s->attrs <= VEIL_ENGINE_MAX_ATTRS, VEIL_ERR_LIMIT, "%s has more than %u attributes", s->what,
                VEIL_ENGINE_MAX_ATTRS);
    return VEIL_RESULT_OK;
}

static int default_domain(const uint8_t *d, size_t n)
{
    return n == 0 || (n == 7 && memcmp(d, "ai.onnx", 7) == 0);
}

static VEIL_RESULT resolve_op(const struct node_scan *s, enum eng_op *op)
{
    char op_name[64], label[80];
    printable(s->op, s->op_size, op_name, sizeof op_name);
    printable(s->name, s->name_size, label, sizeof label);
    VEIL_ENSURE(s->op != NULL && s->op_size > 0, VEIL_ERR_ONNX, "%s has no op_type", s->what);
    if (!default_domain(s->domain, s->domain_size)) {
        char domain[64];
        printable(s->domain, s->domain_size, domain, sizeof domain);
        VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "unsupported operator %s:%s (node '%s'): the engine runs the default ONNX "
                  "domain only", domain, op_name, label);
    }
    int k = eng_op_lookup(s->op, s->op_size);
    VEIL_ENSURE(k >= 0, VEIL_ERR_UNSUPPORTED, "unsupported operator %s (node '%s')", op_name, label);
    *op = (enum eng_op)k;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT read_attr(struct eng_node *n, const struct veil_pb_field *f, const char *what)
{
    struct eng_attr *a = &n->attrs[n->attr_count++];
    *a = (struct eng_attr){.body = f->payload};
    struct veil_cursor c = f->payload;
    struct veil_pb_field x;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, what, &x));
        if (x.number == 1) {
            VEIL_GUARD(veil_pb_expect_wire(&x, W_LEN, what));
            a->name = x.payload.data;
            a->name_size = x.payload.size;
        } else if (x.number == 20) {
            VEIL_GUARD(veil_pb_expect_wire(&x, W_VARINT, what));
            a->type = x.value;
        } else if (x.number == 21) {
            VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "%s: attribute references (ref_attr_name) are not supported", what);
        }
    }
    VEIL_ENSURE(a->name != NULL && a->name_size > 0, VEIL_ERR_ONNX, "%s: an attribute has no name", what);
    for (uint32_t i = 0; i + 1 < n->attr_count; i++)
        VEIL_ENSURE(n->attrs[i].name_size != a->name_size || memcmp(n->attrs[i].name, a->name, a->name_size) != 0,
                    VEIL_ERR_ONNX, "%s: an attribute is given twice", what);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT node_value(struct eng_graph *g, const struct veil_pb_field *f, const char *what, int output,
                              int *v)
{
    if (f->payload.size == 0 && output) { /* an omitted optional output: a value of its own, without a name */
        VEIL_GUARD(new_value(g, v));
        g->values[*v].name = calloc(1, 1);
        VEIL_ENSURE(g->values[*v].name != NULL, VEIL_ERR_NOMEM, "out of memory");
        return VEIL_RESULT_OK;
    }
    if (f->payload.size == 0) {
        *v = -1;
        return VEIL_RESULT_OK;
    }
    return intern(g, f->payload.data, f->payload.size, what, v);
}

static VEIL_RESULT set_producer(struct eng_graph *g, int v, int node)
{
    struct eng_value *x = &g->values[v];
    VEIL_ENSURE(x->kind == VAL_NONE, VEIL_ERR_ONNX, "value '%s' is written by two nodes, or is both an input or "
                "initializer and a node's output", x->name);
    x->kind = VAL_ACT;
    x->dtype = VEIL_ONNX_FLOAT;
    x->producer = node;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT fill_node(struct eng_graph *g, int index, struct veil_cursor c, const char *what)
{
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, what, &f));
        struct eng_node *n = &g->nodes[index];
        int v = -1;
        if (f.number == 1) {
            VEIL_GUARD(node_value(g, &f, what, 0, &v));
            n->inputs[n->input_count++] = v;
        } else if (f.number == 2) {
            VEIL_GUARD(node_value(g, &f, what, 1, &v));
            n->outputs[n->output_count++] = v;
        } else if (f.number == 5) {
            VEIL_GUARD(read_attr(n, &f, what));
        }
    }
    struct eng_node *n = &g->nodes[index];
    while (n->output_count > 1 && g->values[n->outputs[n->output_count - 1]].name[0] == '\0')
        n->output_count--; /* trailing omitted outputs are not produced at all */
    for (uint32_t i = 0; i < n->output_count; i++)
        VEIL_GUARD(set_producer(g, n->outputs[i], index));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT alloc_node(struct eng_node *n, const struct node_scan *s)
{
    n->name = malloc(s->name_size + 1);
    n->inputs = calloc(s->inputs + 1u, sizeof *n->inputs);
    n->outputs = calloc(s->outputs + 1u, sizeof *n->outputs);
    n->attrs = calloc(s->attrs + 1u, sizeof *n->attrs);
    VEIL_ENSURE(n->name && n->inputs && n->outputs && n->attrs, VEIL_ERR_NOMEM, "out of memory");
    if (s->name_size > 0)
        memcpy(n->name, s->name, s->name_size);
    n->name[s->name_size] = '\0';
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_arity(const struct eng_node *n, const char *what)
{
    const struct eng_op_info *info = eng_op_info(n->op);
    char label[160];
    VEIL_ENSURE(n->input_count >= info->min_inputs && n->input_count <= info->max_inputs, VEIL_ERR_ONNX,
                "%s has %" PRIu32 " inputs, %s takes %" PRIu32 " to %" PRIu32, eng_node_label(n, label, sizeof label),
                n->input_count, info->name, info->min_inputs, info->max_inputs);
    VEIL_ENSURE(n->op != OP_SPLIT || (n->output_count >= 1 && n->output_count <= ENG_MAX_SPLIT),
                n->output_count > 1 ? VEIL_ERR_UNSUPPORTED : VEIL_ERR_ONNX, "%s has %" PRIu32 " outputs; the "
                "engine splits into 1 to %u (%s)", eng_node_label(n, label, sizeof label), n->output_count,
                ENG_MAX_SPLIT, what);
    VEIL_ENSURE(n->output_count == 1 || n->op == OP_SPLIT || (n->output_count == 2 && (n->op == OP_DROPOUT ||
                n->op == OP_TOPK || n->op == OP_GRU)) || (n->output_count <= 3 && n->op == OP_LSTM),
                n->output_count > 1 ? VEIL_ERR_UNSUPPORTED : VEIL_ERR_ONNX, /* a Dropout's mask: eng_dropout_parse */
                "%s has %" PRIu32 " outputs; the engine supports exactly one (%s)",
                eng_node_label(n, label, sizeof label), n->output_count, what);
    for (uint32_t i = 0; i < info->min_inputs; i++)
        VEIL_ENSURE(n->inputs[i] >= 0, VEIL_ERR_ONNX, "%s: required input %" PRIu32 " is empty",
                    eng_node_label(n, label, sizeof label), i);
    return VEIL_RESULT_OK;
}

/* A new node of op at the end of the node array; *out is its index (pointers into the array may move). */
static VEIL_RESULT append_node(struct eng_graph *g, enum eng_op op, int *out)
{
    void *items = g->nodes;
    struct veil_result r = grow_array(&items, &g->node_cap, g->node_count, sizeof *g->nodes,
                                      VEIL_ENGINE_MAX_NODES, "nodes");
    g->nodes = items;
    VEIL_GUARD(r);
    *out = (int)g->node_count++;
    g->nodes[*out] = (struct eng_node){.op = op, .bn = -1, .sum = -1, .out = -1};
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_node(struct eng_graph *g, struct veil_cursor c)
{
    struct node_scan s = {0};
    snprintf(s.what, sizeof s.what, "node #%zu", g->node_count);
    VEIL_GUARD(scan_node(&s, c));
    enum eng_op op = OP_COUNT;
    VEIL_GUARD(resolve_op(&s, &op));
    int index = -1;
    VEIL_GUARD(append_node(g, op, &index));
    struct eng_node *n = &g->nodes[index];
    VEIL_GUARD(alloc_node(n, &s));
    VEIL_GUARD(check_name(s.name, s.name_size, s.what));
    VEIL_GUARD(fill_node(g, index, c, s.what));
    return check_arity(&g->nodes[index], s.what);
}

/* ---- graph and model ------------------------------------------------------------------------------------- */

static uint32_t graph_wires(uint32_t number)
{
    switch (number) {
    case 1: case 2: case 5: case 10: case 11: case 12: case 13: case 14: case 15: case 16: return W_LEN;
    default: return VEIL_PB_ANY_WIRE;
    }
}

static VEIL_RESULT parse_graph_field(struct eng_graph *g, const struct veil_pb_field *f)
{
    switch (f->number) {
    case 1: return parse_node(g, f->payload);
    case 5: return check_graph_initializer(f->payload);
    case 11: return parse_input(g, f->payload);
    case 15: VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "the graph has a sparse_initializer; the engine does not support them");
    default: return VEIL_RESULT_OK;
    }
}

/* Outputs are read last, so that they can name values of any kind. */
static VEIL_RESULT parse_graph(struct eng_graph *g, struct veil_cursor c)
{
    struct veil_cursor again = c;
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "GraphProto", &f));
        VEIL_GUARD(veil_pb_expect_wire(&f, graph_wires(f.number), "GraphProto"));
        VEIL_GUARD(parse_graph_field(g, &f));
    }
    while (veil_cursor_left(&again) > 0) {
        VEIL_GUARD(veil_pb_next(&again, "GraphProto", &f));
        if (f.number == 12)
            VEIL_GUARD(parse_output(g, f.payload));
    }
    VEIL_ENSURE(g->input_count > 0, VEIL_ERR_UNSUPPORTED, "the graph has no inputs");
    VEIL_ENSURE(g->output_count > 0, VEIL_ERR_ONNX, "the graph has no outputs");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_opset(struct eng_graph *g, struct veil_cursor c)
{
    struct veil_pb_field f;
    const uint8_t *domain = NULL;
    size_t domain_size = 0;
    int64_t version = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "OperatorSetIdProto", &f));
        if (f.number == 1) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, "OperatorSetIdProto"));
            domain = f.payload.data;
            domain_size = f.payload.size;
        } else if (f.number == 2) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_VARINT, "OperatorSetIdProto"));
            version = (int64_t)f.value;
        }
    }
    if (default_domain(domain, domain_size)) {
        VEIL_ENSURE(g->opset == 0, VEIL_ERR_ONNX, "the default opset is imported twice");
        VEIL_ENSURE(version >= 1 && version <= 1000, VEIL_ERR_ONNX, "opset version %" PRId64 " is invalid", version);
        g->opset = version;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_values(const struct eng_graph *g)
{
    for (size_t i = 0; i < g->node_count; i++) {
        const struct eng_node *n = &g->nodes[i];
        for (uint32_t k = 0; k < n->input_count; k++) {
            if (n->inputs[k] < 0)
                continue;
            const struct eng_value *v = &g->values[n->inputs[k]];
            char label[160];
            VEIL_ENSURE(v->kind != VAL_NONE, VEIL_ERR_ONNX, "%s reads '%s', which is no graph input, initializer "
                        "or node output (a missing initializer?)", eng_node_label(n, label, sizeof label), v->name);
        }
    }
    for (size_t i = 0; i < g->output_count; i++) {
        const struct eng_value *v = &g->values[g->outputs[i]];
        VEIL_ENSURE(v->kind != VAL_NONE, VEIL_ERR_ONNX, "graph output '%s' is no graph input, initializer or node "
                    "output", v->name);
    }
    return VEIL_RESULT_OK;
}

/* ---- 1-D convolutions as 2-D ones ----------------------------------------------------------------------- */

static VEIL_RESULT int64_constant(struct eng_graph *g, const int64_t *v, uint32_t count, int *out)
{
    VEIL_GUARD(new_value(g, out));
    struct eng_value *c = &g->values[*out];
    c->owned = malloc(count * sizeof *v);
    VEIL_ENSURE(c->owned != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(c->owned, v, count * sizeof *v);
    *c = (struct eng_value){.kind = VAL_CONST, .dtype = VEIL_ONNX_INT64, .shape = {.rank = 1, .dims = {count}},
                            .has_shape = 1, .owned = c->owned, .data = c->owned, .size = count * sizeof *v,
                            .producer = -1, .alias = -1};
    return VEIL_RESULT_OK;
}

/* A Reshape node x -> y by the constant shape, added at the end (the plan orders nodes itself). */
static VEIL_RESULT add_reshape(struct eng_graph *g, int x, int shape, int y)
{
    int index = -1;
    VEIL_GUARD(append_node(g, OP_RESHAPE, &index));
    struct eng_node *n = &g->nodes[index];
    n->input_count = 2;
    n->output_count = 1;
    n->name = calloc(1, 1);
    n->inputs = calloc(3, sizeof *n->inputs);
    n->outputs = calloc(2, sizeof *n->outputs);
    n->attrs = calloc(1, sizeof *n->attrs);
    VEIL_ENSURE(n->name && n->inputs && n->outputs && n->attrs, VEIL_ERR_NOMEM, "out of memory");
    n->inputs[0] = x;
    n->inputs[1] = shape;
    n->outputs[0] = y;
    return set_producer(g, y, index);
}

/* A Conv over [N, C, L] with constant weights [M, C / group, K] (Whisper's and wav2vec2's front ends), or a
 * ConvTranspose with weights [C, M / group, K] (vocoders' upsampling), runs as the 2-D one over [N, C, 1, L]:
 * Reshape(x, [0, 0, 1, -1]), the node on a 4-D view of the same weight bytes (a 1 before K), Reshape(y, [0, 0, -1]);
 * eng_conv_parse reads its 1-D attributes as the W half of 2-D ones. Weights computed at load (weight_norm) are
 * recognised by a one-value kernel_shape and reshaped by a Reshape node, folded with them. */
/* How many values the node's kernel_shape attribute holds (0 when it has none): a Conv's spatial rank. */
static VEIL_RESULT kernel_rank(struct eng_node *n, int *rank)
{
    int64_t v[VEIL_ENGINE_MAX_ATTR_INTS];
    uint32_t count = 0;
    VEIL_GUARD(eng_attr_ints(n, "kernel_shape", v, VEIL_ENGINE_MAX_ATTR_INTS, &count));
    *rank = (int)count;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT expand_conv1d(struct eng_graph *g)
{
    static const int64_t to4[4] = {0, 0, 1, -1}, to3[3] = {0, 0, -1};
    size_t count = g->node_count;
    for (size_t i = 0; i < count; i++) {
        const struct eng_node *n = &g->nodes[i];
        if ((n->op != OP_CONV && n->op != OP_CONVTRANSPOSE) || n->input_count < 2 || n->inputs[1] < 0 ||
            n->inputs[0] < 0)
            continue;
        int x = n->inputs[0], w = n->inputs[1], y = n->outputs[0], s4 = -1, s3 = -1, x4 = -1, y4 = -1, w4 = -1;
        int given = g->values[w].kind == VAL_CONST, window = 0; /* else computed at load: weight_norm */
        VEIL_GUARD(kernel_rank(&g->nodes[i], &window));
        if (given ? g->values[w].shape.rank != 3 : window != 1)
            continue;
        VEIL_GUARD(int64_constant(g, to4, 4, &s4));
        VEIL_GUARD(int64_constant(g, to3, 3, &s3));
        VEIL_GUARD(new_value(g, &x4));
        VEIL_GUARD(new_value(g, &y4));
        VEIL_GUARD(new_value(g, &w4));
        if (given) {
            struct eng_value view = g->values[w]; /* the same bytes, not owned: the model's tensor stays the owner */
            view.name = NULL;
            view.owned = NULL;
            view.shape = (struct eng_shape){.rank = 4, .dims = {view.shape.dims[0], view.shape.dims[1], 1,
                                                                view.shape.dims[2]}};
            g->values[w4] = view;
        } else {
            VEIL_GUARD(add_reshape(g, w, s4, w4)); /* folded once the weights are */
        }
        g->values[y].kind = VAL_NONE; /* written by the second Reshape now */
        g->values[y].producer = -1;
        VEIL_GUARD(set_producer(g, y4, (int)i));
        VEIL_GUARD(add_reshape(g, x, s4, x4));
        VEIL_GUARD(add_reshape(g, y4, s3, y));
        struct eng_node *c = &g->nodes[i];
        c->inputs[0] = x4;
        c->inputs[1] = w4;
        c->outputs[0] = y4;
        c->conv.one_d = 1;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_graph_parse(struct eng_graph *g, const uint8_t *model, size_t size,
                            const struct veil_tensor_view *tensors, size_t count)
{
    for (size_t i = 0; i < count; i++)
        VEIL_GUARD(add_initializer(g, &tensors[i]));
    struct veil_cursor c = veil_cursor_make(model, size), graph = {0};
    struct veil_pb_field f;
    uint32_t graphs = 0, imports = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "ModelProto", &f));
        if (f.number == 8) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, "ModelProto"));
            VEIL_GUARD(parse_opset(g, f.payload));
            imports++;
        } else if (f.number == 7) {
            VEIL_GUARD(veil_pb_expect_wire(&f, W_LEN, "ModelProto"));
            graph = f.payload;
            graphs++;
        }
    }
    VEIL_ENSURE(graphs == 1, VEIL_ERR_ONNX, "not an ONNX model: graph field %s", graphs ? "repeated" : "missing");
    VEIL_ENSURE(g->opset > 0 || imports > 0, VEIL_ERR_ONNX, "not an ONNX model: it imports no operator set");
    VEIL_ENSURE(g->opset > 0, VEIL_ERR_UNSUPPORTED, "the model imports only other operator sets than ONNX's default "
                "one (ai.onnx.ml, say); the engine runs the default operators only");
    VEIL_GUARD(parse_graph(g, graph));
    VEIL_GUARD(check_values(g));
    return expand_conv1d(g);
}

/* ---- tensors held in attributes (Constant) --------------------------------------------------------------- */

struct const_scan {
    struct eng_shape shape;
    int64_t dtype;
    uint64_t count;           /* typed elements seen */
    struct veil_cursor raw;
    int has_raw, bad_storage;
};

static VEIL_RESULT const_field(struct const_scan *s, const struct veil_pb_field *f, const char *what)
{
    if (f->number == 1) {
        VEIL_ENSURE(s->shape.rank < ENG_RANK, VEIL_ERR_UNSUPPORTED, "%s: more than %u dims", what, ENG_RANK);
        VEIL_GUARD(veil_pb_expect_wire(f, W_VARINT, what));
        VEIL_ENSURE(f->value <= INT64_MAX, VEIL_ERR_ONNX, "%s: a negative dim", what);
        s->shape.dims[s->shape.rank++] = (int64_t)f->value;
    } else if (f->number == 2) {
        VEIL_GUARD(veil_pb_expect_wire(f, W_VARINT, what));
        s->dtype = (int64_t)f->value;
    } else if (f->number == 9) {
        VEIL_GUARD(veil_pb_expect_wire(f, W_LEN, what));
        s->raw = f->payload;
        s->has_raw++;
    } else if (f->number == 3 || f->number == 13 || f->number == 14) {
        s->bad_storage = 1;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT decode_element(const struct veil_pb_field *f, struct veil_cursor *c, int64_t dtype,
                                  const char *what, uint64_t *v)
{
    if (f->wire != VEIL_PB_LEN) {
        *v = f->value;
        return VEIL_RESULT_OK;
    }
    if (dtype == VEIL_ONNX_FLOAT)
        return veil_pb_read_fixed32(c, what, v);
    return veil_pb_read_varint(c, what, v);
}

static size_t const_width(int64_t dtype)
{
    return dtype == VEIL_ONNX_INT64 ? 8 : dtype == VEIL_ONNX_BOOL ? 1 : 4;
}

/* Copies the typed field (float_data 4 for FLOAT, int64_data 7 for INT64, int32_data 5 for INT32 and BOOL) of
 * body into out[count]. */
static VEIL_RESULT decode_typed(struct veil_cursor body, int64_t dtype, uint8_t *out, uint64_t count,
                                const char *what)
{
    uint32_t field = dtype == VEIL_ONNX_FLOAT ? 4 : dtype == VEIL_ONNX_INT64 ? 7 : 5;
    size_t width = const_width(dtype);
    uint64_t k = 0, v = 0;
    struct veil_pb_field f;
    while (veil_cursor_left(&body) > 0) {
        VEIL_GUARD(veil_pb_next(&body, what, &f));
        if (f.number != field)
            continue;
        VEIL_GUARD(veil_pb_expect_wire(&f, (dtype == VEIL_ONNX_FLOAT ? W_I32 : W_VARINT) | W_LEN, what));
        struct veil_cursor c = f.payload;
        int once = f.wire != VEIL_PB_LEN;
        while (once || veil_cursor_left(&c) > 0) {
            once = 0;
            VEIL_GUARD(decode_element(&f, &c, dtype, what, &v));
            VEIL_ENSURE(k < count, VEIL_ERR_ONNX, "%s: more values than its dims say", what);
            for (size_t b = 0; b < width; b++)
                out[k * width + b] = (uint8_t)(v >> (8 * b));
            k++;
        }
    }
    VEIL_ENSURE(k == count, VEIL_ERR_ONNX, "%s: %" PRIu64 " values, its dims say %" PRIu64, what, k, count);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT const_size(struct const_scan *s, const char *what, size_t *count, size_t *size)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < s->shape.rank; i++)
        VEIL_ENSURE(veil_ok(veil_mul_u64(n, (uint64_t)s->shape.dims[i], &n)), VEIL_ERR_LIMIT, "%s: dims overflow",
                    what);
    uint64_t bytes = n * 8; /* n is at most 2^64 / 8 is checked next */
    VEIL_ENSURE(n <= VEIL_ENGINE_MAX_CONST_SIZE / 8, VEIL_ERR_LIMIT, "%s: %" PRIu64 " elements, too many", what, n);
    *count = (size_t)n;
    *size = (size_t)(bytes / 8 * const_width(s->dtype));
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_decode_tensor(struct veil_cursor body, const char *what, struct eng_value *v)
{
    struct const_scan s = {0};
    struct veil_cursor c = body;
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, what, &f));
        VEIL_GUARD(const_field(&s, &f, what));
    }
    VEIL_ENSURE(!s.bad_storage, VEIL_ERR_UNSUPPORTED, "%s: external or segmented data is not supported", what);
    VEIL_ENSURE(s.dtype == VEIL_ONNX_FLOAT || s.dtype == VEIL_ONNX_INT64 || s.dtype == VEIL_ONNX_INT32 ||
                s.dtype == VEIL_ONNX_BOOL, VEIL_ERR_UNSUPPORTED, "%s: data type %" PRId64 " is not supported (FLOAT, "
                "INT64, INT32 and BOOL are)", what, s.dtype);
    VEIL_ENSURE(s.has_raw <= 1, VEIL_ERR_ONNX, "%s: two raw_data fields", what);
    size_t count = 0, size = 0;
    VEIL_GUARD(const_size(&s, what, &count, &size));
    VEIL_ENSURE(!s.has_raw || s.raw.size == size, VEIL_ERR_ONNX, "%s: raw_data is %zu bytes, its dims say %zu",
                what, s.raw.size, size);
    uint8_t *data = malloc(size ? size : 1);
    VEIL_ENSURE(data != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = VEIL_RESULT_OK;
    if (s.has_raw)
        memcpy(data, s.raw.data, size);
    else
        r = decode_typed(body, s.dtype, data, count, what);
    if (!veil_ok(r)) {
        free(data);
        return r;
    }
    v->owned = data;
    v->data = data;
    v->size = size;
    v->dtype = (int32_t)s.dtype;
    v->shape = s.shape;
    v->has_shape = 1;
    return VEIL_RESULT_OK;
}
