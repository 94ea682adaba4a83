/* SPDX-License-Identifier: Apache-2.0 */
/* The oneDNN side: memory descriptors, steps (one primitive each, in execution order), weights reordered once
 * into engine-owned memory, the activation arena, and the run loop.
 *
 * Layouts: graph inputs and outputs are plain row-major (NCHW). A convolution picks its preferred layouts
 * (format_tag any) and its output stays in that layout for the operators that follow; where an operator needs
 * another layout (a reshape needs row-major, a convolution may want blocked channels), a reorder step into a
 * hidden value is inserted at load time. Every buffer lives in one arena planned by plan.c.
 *
 * Threads: Debian's oneDNN uses OpenMP, which takes the thread count from the calling thread's ICV; load and
 * run set it with omp_set_num_threads and restore the previous value. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl_debug.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

/* The OpenMP runtime (libgomp) that Debian's oneDNN runs on, declared here so that no OpenMP compiler flag or
 * header is needed (clang builds the fuzzers without libomp). */
int omp_get_max_threads(void);
void omp_set_num_threads(int n);

struct veil_result eng_dnnl_error(dnnl_status_t s, const struct eng_node *node, const char *what,
                                  const char *file, int line)
{
    char label[160] = "engine";
    if (node != NULL)
        eng_node_label(node, label, sizeof label);
    veil_status st = s == dnnl_unimplemented ? VEIL_ERR_UNSUPPORTED
                     : s == dnnl_out_of_memory ? VEIL_ERR_NOMEM
                                               : VEIL_ERR_INTERNAL;
    return veil_error_raise(st, file, line, "%s: oneDNN %s failed (%s)%s", label, what, dnnl_status2str(s),
                            s == dnnl_unimplemented ? ": this configuration is not supported" : "");
}

/* ---- descriptors ----------------------------------------------------------------------------------------- */

VEIL_RESULT eng_md_plain(dnnl_memory_desc_t *md, const struct eng_shape *s)
{
    static const dnnl_format_tag_t tags[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd, dnnl_abcde, dnnl_abcdef};
    dnnl_dims_t dims = {1};
    VEIL_ENSURE(s->rank <= ENG_RANK, VEIL_ERR_INTERNAL, "rank %" PRIu32 " is too large", s->rank);
    for (uint32_t i = 0; i < s->rank; i++)
        dims[i] = s->dims[i];
    int rank = s->rank == 0 ? 1 : (int)s->rank;
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(md, rank, dims, dnnl_f32, tags[s->rank]), NULL, "memory descriptor");
    return VEIL_RESULT_OK;
}

int eng_md_is_plain(const dnnl_memory_desc_t *md)
{
    struct eng_shape s = {.rank = (uint32_t)md->ndims};
    for (int i = 0; i < md->ndims && i < (int)ENG_RANK; i++)
        s.dims[i] = md->dims[i];
    dnnl_memory_desc_t plain;
    if (md->ndims > (int)ENG_RANK || !veil_ok(eng_md_plain(&plain, &s)))
        return 0;
    return dnnl_memory_desc_equal(md, &plain);
}

VEIL_RESULT eng_value_set_md(struct veil_engine *e, int value, const dnnl_memory_desc_t *md)
{
    struct eng_value *v = &e->g.values[value];
    VEIL_ENSURE(!v->has_md, VEIL_ERR_INTERNAL, "value '%s' is written twice", v->name ? v->name : "(hidden)");
    v->md = *md;
    v->has_md = 1;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_view_value(struct veil_engine *e, int value, const dnnl_memory_desc_t *md, int *out)
{
    VEIL_GUARD(eng_graph_add_hidden(&e->g, out));
    struct eng_value *v = &e->g.values[*out];
    v->alias = value;
    v->md = *md;
    v->has_md = 1;
    return VEIL_RESULT_OK;
}

/* ---- steps ----------------------------------------------------------------------------------------------- */

static VEIL_RESULT step_arg(struct eng_step *s, struct eng_arg a)
{
    if (s->arg_count == s->arg_cap) {
        uint32_t cap = s->arg_cap ? s->arg_cap * 2 : 8;
        VEIL_ENSURE(cap <= 4 * VEIL_ENGINE_MAX_NODE_IO, VEIL_ERR_LIMIT, "too many arguments");
        struct eng_arg *p = realloc(s->args, cap * sizeof *p);
        VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
        s->args = p;
        s->arg_cap = cap;
    }
    s->args[s->arg_count++] = a;
    return VEIL_RESULT_OK;
}

/* A new, empty step at the end; *out is valid until the next step is added. */
static VEIL_RESULT step_append(struct veil_engine *e, const struct eng_node *n, struct eng_step **out)
{
    if (e->step_count == e->step_cap) {
        size_t cap = e->step_cap ? e->step_cap * 2 : 64;
        struct eng_step *p = realloc(e->steps, cap * sizeof *p);
        VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
        e->steps = p;
        e->step_cap = cap;
    }
    struct eng_step *s = &e->steps[e->step_count];
    *s = (struct eng_step){.node = n != NULL ? (int)(n - e->g.nodes) : -1, .reads_sum = -1};
    *out = s;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_step_kernel_new(struct veil_engine *e, const struct eng_node *n, const struct eng_kernel *k,
                                struct eng_step **out)
{
    struct eng_kernel *copy = malloc(sizeof *copy);
    VEIL_ENSURE(copy != NULL, VEIL_ERR_NOMEM, "out of memory");
    *copy = *k;
    struct veil_result r = step_append(e, n, out);
    if (!veil_ok(r)) {
        free(copy);
        return r;
    }
    (*out)->kernel = copy;
    e->step_count++;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_step_new(struct veil_engine *e, const struct eng_node *n, const_dnnl_primitive_desc_t pd,
                         struct eng_step **out)
{
    struct eng_step *s = NULL;
    VEIL_GUARD(step_append(e, n, &s));
    ENG_GUARD_DNNL(dnnl_primitive_create(&s->prim, pd), n, "primitive creation");
    e->step_count++;
    const dnnl_memory_desc_t *scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t size = scratch != NULL ? dnnl_memory_desc_get_size(scratch) : 0;
    if (size > 0) {
        VEIL_GUARD(step_arg(s, (struct eng_arg){.arg = DNNL_ARG_SCRATCHPAD, .kind = ARG_SCRATCH, .md = *scratch}));
        e->scratch_size = size > e->scratch_size ? size : e->scratch_size;
    }
    *out = s;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_step_plain(struct veil_engine *e, const struct eng_node *n, const void *desc, const char *what,
                           size_t *step)
{
    return eng_step_posts(e, n, desc, what, NULL, 0, step);
}

VEIL_RESULT eng_step_posts(struct veil_engine *e, const struct eng_node *n, const void *desc, const char *what,
                           const struct eng_post *posts, uint32_t post_count, size_t *step)
{
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(n, posts, post_count, &attr));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, n, what);
    struct eng_step *s = NULL;
    struct veil_result r = eng_step_new(e, n, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    VEIL_GUARD(r);
    *step = (size_t)(s - e->steps);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_step_value(struct veil_engine *e, struct eng_step *s, int arg, int value, int writes)
{
    const struct eng_value *v = &e->g.values[value];
    VEIL_ENSURE(v->has_md, VEIL_ERR_INTERNAL, "value '%s' is used before it has a layout",
                v->name ? v->name : "(hidden)");
    return step_arg(s, (struct eng_arg){.arg = arg, .kind = ARG_VALUE, .value = value, .writes = writes, .md = v->md});
}

VEIL_RESULT eng_step_value_as(struct veil_engine *e, struct eng_step *s, int arg, int value, int writes,
                              const dnnl_memory_desc_t *md)
{
    VEIL_GUARD(eng_step_value(e, s, arg, value, writes));
    struct eng_arg *a = &s->args[s->arg_count - 1];
    VEIL_ENSURE(dnnl_memory_desc_get_size(md) == dnnl_memory_desc_get_size(&a->md), VEIL_ERR_INTERNAL,
                "a value bound under a descriptor of another size");
    a->md = *md;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_const_alloc(struct veil_engine *e, size_t size, void **out)
{
    if (e->const_count == e->const_cap) {
        size_t cap = e->const_cap ? e->const_cap * 2 : 64;
        struct veil_secure_mem *p = realloc(e->consts, cap * sizeof *p);
        VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
        e->consts = p;
        e->const_cap = cap;
    }
    struct veil_secure_mem *m = &e->consts[e->const_count];
    *m = (struct veil_secure_mem){0};
    VEIL_GUARD(veil_secure_alloc(m, size ? size : 1, e->opts.lock_memory));
    e->const_count++;
    *out = m->data;
    return VEIL_RESULT_OK;
}

/* Runs one reorder from src (layout src_md) into dst (layout dst_md), now. */
static VEIL_RESULT reorder_now(struct veil_engine *e, const dnnl_memory_desc_t *src_md, const void *src,
                               const dnnl_memory_desc_t *dst_md, void *dst)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, src_md, e->dnnl, dst_md, e->dnnl, NULL);
    /* oneDNN only reads a reorder's source; its API takes a non-const handle. */
    if (st == dnnl_success)
        st = dnnl_memory_create(&ms, src_md, e->dnnl, (void *)(uintptr_t)src);
    if (st == dnnl_success)
        st = dnnl_memory_create(&md, dst_md, e->dnnl, dst);
    if (st == dnnl_success)
        st = dnnl_primitive_create(&prim, pd);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DST, md}};
        st = dnnl_primitive_execute(prim, e->stream, 2, args);
    }
    if (st == dnnl_success)
        st = dnnl_stream_wait(e->stream);
    dnnl_primitive_destroy(prim);
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(md);
    dnnl_primitive_desc_destroy(pd);
    ENG_GUARD_DNNL(st, NULL, "weight reorder");
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_step_const(struct veil_engine *e, struct eng_step *s, int arg, const dnnl_memory_desc_t *dst_md,
                           const dnnl_memory_desc_t *src_md, const void *src)
{
    size_t size = dnnl_memory_desc_get_size(dst_md);
    void *dst = NULL;
    VEIL_GUARD(eng_const_alloc(e, size, &dst));
    if (dnnl_memory_desc_equal(dst_md, src_md))
        memcpy(dst, src, size);
    else
        VEIL_GUARD(reorder_now(e, src_md, src, dst_md, dst));
    return step_arg(s, (struct eng_arg){.arg = arg, .kind = ARG_CONST, .md = *dst_md, .ptr = dst});
}

VEIL_RESULT eng_step_const_new(struct veil_engine *e, struct eng_step *s, int arg, const dnnl_memory_desc_t *md,
                               void **out)
{
    VEIL_GUARD(eng_const_alloc(e, dnnl_memory_desc_get_size(md), out));
    return step_arg(s, (struct eng_arg){.arg = arg, .kind = ARG_CONST, .md = *md, .ptr = *out});
}

int eng_lendable(const struct veil_engine *e, const struct eng_value *v)
{
    return e->borrow != ENG_BORROW_NONE && v->kind == VAL_CONST && v->from_view && v->owned == NULL &&
           v->data != NULL && v->size >= ENG_BORROW_MIN_TENSOR && ((uintptr_t)v->data & 63u) == 0;
}

VEIL_RESULT eng_step_borrow(struct veil_engine *e, struct eng_step *s, int arg, const dnnl_memory_desc_t *md,
                            const void *src)
{
    VEIL_ENSURE(((uintptr_t)src & 63u) == 0, VEIL_ERR_INTERNAL, "a borrowed constant is not 64-byte aligned");
    e->borrowed++;
    e->borrowed_bytes += dnnl_memory_desc_get_size(md);
    if (e->releasing != NULL)
        eng_release_lent(e, src);
    /* oneDNN only reads weights; its memory API takes a non-const handle. */
    return step_arg(s, (struct eng_arg){.arg = arg, .kind = ARG_CONST, .md = *md, .ptr = (void *)(uintptr_t)src,
                                        .lent = 1});
}

VEIL_RESULT eng_attr_new(const struct eng_node *n, const struct eng_post *post, uint32_t count,
                         dnnl_primitive_attr_t *out)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && count > 0)
        st = dnnl_post_ops_create(&ops);
    for (uint32_t i = 0; st == dnnl_success && i < count; i++)
        st = post[i].sum ? dnnl_post_ops_append_sum(ops, 1.0f)
                         : dnnl_post_ops_append_eltwise(ops, 1.0f, post[i].alg, post[i].alpha, post[i].beta);
    if (st == dnnl_success && count > 0)
        st = dnnl_primitive_attr_set_post_ops(attr, ops);
    dnnl_post_ops_destroy(ops);
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return eng_dnnl_error(st, n, "attributes", __FILE__, __LINE__);
    }
    *out = attr;
    return VEIL_RESULT_OK;
}

/* A reorder step from value into a new hidden value with layout want. */
static VEIL_RESULT reorder_step(struct veil_engine *e, int value, const dnnl_memory_desc_t *want, int *out)
{
    const dnnl_memory_desc_t src = e->g.values[value].md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(NULL, NULL, 0, &attr));
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, &src, e->dnnl, want, e->dnnl, attr);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, NULL, "layout reorder");
    struct eng_step *s = NULL;
    struct veil_result r = eng_step_new(e, NULL, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    VEIL_GUARD(r);
    VEIL_GUARD(eng_graph_add_hidden(&e->g, out));
    VEIL_GUARD(eng_value_set_md(e, *out, want));
    VEIL_GUARD(eng_step_value(e, s, DNNL_ARG_SRC, value, 0));
    return eng_step_value(e, s, DNNL_ARG_DST, *out, 1);
}

VEIL_RESULT eng_input_as(struct veil_engine *e, int value, const dnnl_memory_desc_t *want, int *out)
{
    const struct eng_value *v = &e->g.values[value];
    VEIL_ENSURE(v->has_md, VEIL_ERR_INTERNAL, "value '%s' has no layout", v->name ? v->name : "(hidden)");
    if (want == NULL || dnnl_memory_desc_equal(&v->md, want)) {
        *out = value;
        return VEIL_RESULT_OK;
    }
    return reorder_step(e, value, want, out);
}

/* ---- build ----------------------------------------------------------------------------------------------- */

static VEIL_RESULT build_inputs(struct veil_engine *e)
{
    for (size_t i = 0; i < e->g.input_count; i++) {
        dnnl_memory_desc_t md;
        VEIL_GUARD(eng_md_plain(&md, &e->g.values[e->g.inputs[i]].shape));
        VEIL_GUARD(eng_value_set_md(e, e->g.inputs[i], &md));
    }
    return VEIL_RESULT_OK;
}

/* Integer tensors computed at run time are held as float32, exact while below 2^24 in magnitude. Arithmetic that can
 * leave that range (sums, products, casts from float) is checked after it runs (check_integers). */
static int grows_integers(const struct veil_engine *e, const struct eng_node *n)
{
    int32_t t = e->g.values[n->out].dtype;
    if (t != VEIL_ONNX_INT64 && t != VEIL_ONNX_INT32)
        return 0;
    switch (n->op) {
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_POW: case OP_CUMSUM: case OP_REDUCESUM:
    case OP_MATMUL: case OP_GEMM: case OP_EINSUM: case OP_CAST: case OP_CASTLIKE: case OP_ABS: case OP_NEG:
        return 1;
    default: return 0;
    }
}

/* In a load that consumes the model, each weight is given back after the last node that reads it (release.c). */
static VEIL_RESULT build_nodes(struct veil_engine *e)
{
    if (e->releasing != NULL)
        eng_release_after(e, -1);
    for (size_t i = 0; i < e->g.node_count; i++) {
        struct eng_node *n = &e->g.nodes[e->g.order[i]];
        size_t before = e->step_count;
        if (!n->dead)
            VEIL_GUARD(eng_op_info(n->op)->build(e, n));
        if (!n->dead && e->step_count > before && grows_integers(e, n))
            e->steps[e->step_count - 1].int_check = n->out + 1;
        if (e->releasing != NULL)
            eng_release_after(e, (int64_t)i);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_const_value(struct veil_engine *e, const struct eng_node *n, int v, int *out)
{
    struct eng_shape s = e->g.values[v].shape;
    VEIL_ENSURE(eng_shape_count(&s) > 0, VEIL_ERR_UNSUPPORTED, "'%s' is an empty constant; the engine runs no empty "
                "tensors", e->g.values[v].name);
    VEIL_GUARD(eng_graph_add_hidden(&e->g, out));
    e->g.values[*out].shape = s;
    e->g.values[*out].has_shape = 1;
    struct eng_kernel k = {.op = KOP_COPY, .inputs = 1, .out = s};
    eng_broadcast_strides(&s, &s, k.strides[0]);
    return eng_step_kernel(e, n, &k, &v, *out);
}

/* The constant graph outputs' copies (a model returning its anchors, or a shape), before any node is built: a
 * consuming load may give back the model's tensor such an output views once the nodes reading it are built (release.c
 * counts node readers only). */
static VEIL_RESULT build_constant_outputs(struct veil_engine *e)
{
    e->out_values = calloc(e->g.output_count, sizeof *e->out_values);
    VEIL_ENSURE(e->out_values != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < e->g.output_count; i++)
        if (e->g.values[e->g.outputs[i]].kind == VAL_CONST)
            VEIL_GUARD(eng_const_value(e, NULL, e->g.outputs[i], &e->out_values[i]));
    return VEIL_RESULT_OK;
}

/* Graph outputs leave in plain row-major layout. */
static VEIL_RESULT build_outputs(struct veil_engine *e)
{
    for (size_t i = 0; i < e->g.output_count; i++) {
        int v = e->g.outputs[i];
        if (e->g.values[v].kind == VAL_CONST)
            continue;
        dnnl_memory_desc_t md;
        VEIL_GUARD(eng_md_plain(&md, &e->g.values[v].shape));
        VEIL_GUARD(eng_input_as(e, v, &md, &e->out_values[i]));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT bind_arg(struct veil_engine *e, struct eng_arg *a)
{
    void *ptr = a->ptr;
    if (a->kind == ARG_SCRATCH)
        ptr = e->scratch.data;
    if (a->kind == ARG_VALUE)
        ptr = e->arena.data + e->g.values[eng_value_root(&e->g, a->value)].offset;
    ENG_GUARD_DNNL(dnnl_memory_create(&a->mem, &a->md, e->dnnl, ptr), NULL, "memory creation");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT bind(struct veil_engine *e)
{
    for (size_t i = 0; i < e->step_count; i++) {
        struct eng_step *s = &e->steps[i];
        s->exec = calloc(s->arg_count + 1u, sizeof *s->exec);
        VEIL_ENSURE(s->exec != NULL, VEIL_ERR_NOMEM, "out of memory");
        for (uint32_t k = 0; k < s->arg_count; k++) {
            VEIL_GUARD(bind_arg(e, &s->args[k]));
            s->exec[k] = (dnnl_exec_arg_t){s->args[k].arg, s->args[k].mem};
        }
    }
    return VEIL_RESULT_OK;
}

/* Whether graph input root r may be read in place from the caller's buffer: only read, never written (no
 * in-place sum or eltwise on it), and not copied out as a graph output. */
static int input_direct(const struct veil_engine *e, int r)
{
    for (size_t i = 0; i < e->g.output_count; i++)
        if (eng_value_root(&e->g, e->out_values[i]) == r)
            return 0;
    for (size_t i = 0; i < e->step_count; i++) {
        const struct eng_step *s = &e->steps[i];
        if (s->reads_sum >= 0 && eng_value_root(&e->g, s->reads_sum) == r)
            return 0;
        for (uint32_t k = 0; k < s->arg_count; k++)
            if (s->args[k].kind == ARG_VALUE && s->args[k].writes && eng_value_root(&e->g, s->args[k].value) == r)
                return 0;
    }
    return 1;
}

static VEIL_RESULT bind_input(struct veil_engine *e, int r, struct eng_input_bind *b)
{
    b->direct = e->g.values[r].external;
    for (size_t i = 0; b->direct && i < e->step_count; i++)
        for (uint32_t k = 0; k < e->steps[i].arg_count; k++)
            b->count += e->steps[i].args[k].kind == ARG_VALUE && eng_value_root(&e->g, e->steps[i].args[k].value) == r;
    if (!b->direct)
        return VEIL_RESULT_OK;
    b->mems = calloc(b->count + 1, sizeof *b->mems);
    VEIL_ENSURE(b->mems != NULL, VEIL_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < e->step_count; i++)
        for (uint32_t k = 0; k < e->steps[i].arg_count; k++)
            if (e->steps[i].args[k].kind == ARG_VALUE && eng_value_root(&e->g, e->steps[i].args[k].value) == r)
                b->mems[n++] = e->steps[i].args[k].mem;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT bind_inputs(struct veil_engine *e)
{
    e->in_binds = calloc(e->g.input_count + 1, sizeof *e->in_binds);
    VEIL_ENSURE(e->in_binds != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < e->g.input_count; i++)
        VEIL_GUARD(bind_input(e, eng_value_root(&e->g, e->g.inputs[i]), &e->in_binds[i]));
    return VEIL_RESULT_OK;
}

/* ENG_BORROW_IF_PLAIN: keeping the whole model pays only when what was lent is at least half of it; otherwise the
 * lent constants are copied into the engine after all, and the model is not kept (no memory object exists yet). */
static VEIL_RESULT settle_lending(struct veil_engine *e)
{
    if (e->borrow != ENG_BORROW_IF_PLAIN || e->borrowed_bytes >= e->lender_bytes / 2)
        return VEIL_RESULT_OK;
    for (size_t i = 0; i < e->step_count; i++) {
        for (uint32_t k = 0; k < e->steps[i].arg_count; k++) {
            struct eng_arg *a = &e->steps[i].args[k];
            if (a->kind != ARG_CONST || !a->lent)
                continue;
            size_t size = dnnl_memory_desc_get_size(&a->md);
            void *copy = NULL;
            VEIL_GUARD(eng_const_alloc(e, size, &copy));
            memcpy(copy, a->ptr, size);
            a->ptr = copy;
            a->lent = 0;
        }
    }
    e->borrowed = 0;
    e->borrowed_bytes = 0;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT build_all(struct veil_engine *e)
{
    ENG_GUARD_DNNL(dnnl_engine_create(&e->dnnl, dnnl_cpu, 0), NULL, "engine creation");
    ENG_GUARD_DNNL(dnnl_stream_create(&e->stream, e->dnnl, dnnl_stream_default_flags), NULL, "stream creation");
    VEIL_GUARD(build_inputs(e));
    VEIL_GUARD(build_constant_outputs(e));
    VEIL_GUARD(build_nodes(e));
    VEIL_GUARD(build_outputs(e));
    VEIL_GUARD(settle_lending(e));
    for (size_t i = 0; i < e->g.input_count; i++) {
        int r = eng_value_root(&e->g, e->g.inputs[i]);
        e->g.values[r].external = input_direct(e, r) && e->g.values[e->g.inputs[i]].in_dtype == VEIL_ONNX_FLOAT;
    }
    size_t arena = 0;
    VEIL_GUARD(eng_plan_memory(e, &arena));
    VEIL_GUARD(veil_secure_alloc(&e->arena, arena, e->opts.lock_memory));
    VEIL_GUARD(veil_secure_alloc(&e->scratch, e->scratch_size ? e->scratch_size : 1, e->opts.lock_memory));
    VEIL_GUARD(bind(e));
    return bind_inputs(e);
}

VEIL_RESULT eng_exec_build(struct veil_engine *e)
{
    int saved = omp_get_max_threads();
    omp_set_num_threads((int)e->opts.threads);
    struct veil_result r = build_all(e);
    omp_set_num_threads(saved);
    return r;
}

/* ---- run ------------------------------------------------------------------------------------------------- */

/* Exponent all ones: an infinity or a NaN. Branch-free per block so the scan vectorises. */
static VEIL_RESULT check_finite(const float *p, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i += 4096) {
        size_t end = count - i < 4096 ? count : i + 4096;
        uint32_t bad = 0;
        for (size_t k = i; k < end; k++) {
            uint32_t bits;
            memcpy(&bits, &p[k], sizeof bits);
            bad |= (bits & 0x7f800000u) == 0x7f800000u;
        }
        for (size_t k = i; bad && k < end; k++)
            VEIL_ENSURE(isfinite(p[k]), VEIL_ERR_ARG, "input '%s' holds %s at element %zu", name,
                        isnan(p[k]) ? "a NaN" : "an infinity", k);
    }
    return VEIL_RESULT_OK;
}

/* Points the input's memory objects at ptr (the caller's buffer for a run, the arena again after it). */
static VEIL_RESULT point_input(const struct eng_input_bind *b, const void *ptr)
{
    for (size_t k = 0; k < b->count; k++)
        /* oneDNN only reads these (input_direct); its API takes a non-const handle. */
        ENG_GUARD_DNNL(dnnl_memory_set_data_handle(b->mems[k], (void *)(uintptr_t)ptr), NULL, "input binding");
    return VEIL_RESULT_OK;
}

/* Integer and boolean inputs become float32 in the arena: exact within +-2^24, refused beyond. */
static VEIL_RESULT convert_input(const void *src, int32_t dtype, size_t count, float *dst, const char *name)
{
    const uint8_t *p = src;
    for (size_t k = 0; k < count; k++) {
        int64_t v = 0;
        if (dtype == VEIL_ONNX_INT64) {
            memcpy(&v, p + 8 * k, 8);
        } else if (dtype == VEIL_ONNX_INT32) {
            int32_t w;
            memcpy(&w, p + 4 * k, 4);
            v = w;
        } else {
            v = p[k] != 0;
        }
        VEIL_ENSURE(v >= -(INT64_C(1) << 24) && v <= (INT64_C(1) << 24), VEIL_ERR_ARG, "input '%s' holds %" PRId64
                    " at element %zu; integer inputs must lie within +-2^24", name, v, k);
        dst[k] = (float)v;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT copy_inputs(struct veil_engine *e, const float *const *inputs)
{
    for (size_t i = 0; i < e->g.input_count; i++) {
        const struct veil_engine_io *io = &e->io_in[i];
        VEIL_ENSURE(inputs[i] != NULL, VEIL_ERR_ARG, "input '%s' is NULL", io->name);
        if (e->g.values[e->g.inputs[i]].in_dtype == VEIL_ONNX_FLOAT)
            VEIL_GUARD(check_finite(inputs[i], io->size / 4, io->name));
    }
    for (size_t i = 0; i < e->g.input_count; i++) {
        if (e->in_binds[i].direct) {
            VEIL_GUARD(point_input(&e->in_binds[i], inputs[i]));
            continue;
        }
        const struct eng_value *v = &e->g.values[e->g.inputs[i]];
        uint8_t *dst = e->arena.data + e->g.values[eng_value_root(&e->g, e->g.inputs[i])].offset;
        if (v->in_dtype == VEIL_ONNX_FLOAT)
            memcpy(dst, inputs[i], e->io_in[i].size);
        else
            VEIL_GUARD(convert_input(inputs[i], v->in_dtype, eng_shape_count(&v->shape), (float *)(void *)dst,
                                     e->io_in[i].name));
    }
    return VEIL_RESULT_OK;
}

/* After a run, no memory object keeps a pointer into the caller's buffers. */
static VEIL_RESULT release_inputs(struct veil_engine *e)
{
    for (size_t i = 0; i < e->g.input_count; i++)
        if (e->in_binds[i].direct)
            VEIL_GUARD(point_input(&e->in_binds[i],
                                   e->arena.data + e->g.values[eng_value_root(&e->g, e->g.inputs[i])].offset));
    return VEIL_RESULT_OK;
}

/* A step's integer results must stay below 2^24 in magnitude, where float32 holds every integer: a larger one may
 * already be rounded (2^24 + 1 is not a float32), so the run is refused rather than computed wrong. */
static VEIL_RESULT check_integers(struct veil_engine *e, const struct eng_step *s, const struct eng_node *n)
{
    ENG_GUARD_DNNL(dnnl_stream_wait(e->stream), n, "stream wait");
    int root = eng_value_root(&e->g, s->int_check - 1);
    for (uint32_t k = 0; k < s->arg_count; k++) {
        const struct eng_arg *a = &s->args[k];
        if (a->kind != ARG_VALUE || !a->writes || eng_value_root(&e->g, a->value) != root)
            continue;
        const float *v = (const float *)(const void *)(e->arena.data + e->g.values[root].offset);
        size_t count = dnnl_memory_desc_get_size(&a->md) / sizeof(float);
        for (size_t i = 0; i < count; i++) {
            char label[160];
            VEIL_ENSURE(fabsf(v[i]) < 16777216.0f, VEIL_ERR_ARG, "%s: an integer result of about %.0f is beyond "
                        "2^24; the engine holds computed integers as float32, exact only below that, so this run is "
                        "refused",
                        n != NULL ? eng_node_label(n, label, sizeof label) : "the engine", (double)v[i]);
        }
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT run_steps(struct veil_engine *e)
{
    for (size_t i = 0; i < e->step_count; i++) {
        const struct eng_step *s = &e->steps[i];
        const struct eng_node *n = s->node >= 0 ? &e->g.nodes[s->node] : NULL;
        if (s->kernel != NULL) {
            ENG_GUARD_DNNL(dnnl_stream_wait(e->stream), n, "stream wait");
            VEIL_GUARD(eng_kernel_run(s, n));
        } else {
            ENG_GUARD_DNNL(dnnl_primitive_execute(s->prim, e->stream, (int)s->arg_count, s->exec), n, "execution");
        }
        if (s->int_check)
            VEIL_GUARD(check_integers(e, s, n));
    }
    ENG_GUARD_DNNL(dnnl_stream_wait(e->stream), NULL, "stream wait");
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_exec_run(struct veil_engine *e, const float *const *inputs, float *const *outputs)
{
    struct veil_result r = copy_inputs(e, inputs);
    int saved = omp_get_max_threads();
    omp_set_num_threads((int)e->opts.threads);
    if (veil_ok(r))
        r = run_steps(e);
    omp_set_num_threads(saved);
    struct veil_result back = release_inputs(e);
    VEIL_GUARD(r);
    VEIL_GUARD(back);
    for (size_t i = 0; i < e->g.output_count; i++) {
        int root = eng_value_root(&e->g, e->out_values[i]);
        memcpy(outputs[i], e->arena.data + e->g.values[root].offset, e->io_out[i].size);
    }
    return VEIL_RESULT_OK;
}

void eng_exec_cleanup(struct veil_engine *e)
{
    for (size_t i = 0; i < e->step_count; i++) {
        struct eng_step *s = &e->steps[i];
        for (uint32_t k = 0; k < s->arg_count; k++)
            dnnl_memory_destroy(s->args[k].mem);
        dnnl_primitive_destroy(s->prim);
        free(s->kernel);
        free(s->args);
        free(s->exec);
    }
    free(e->steps);
    for (size_t i = 0; i < e->const_count; i++)
        veil_secure_free(&e->consts[i]);
    free(e->consts);
    veil_secure_free(&e->arena);
    veil_secure_free(&e->scratch);
    free(e->out_values);
    for (size_t i = 0; e->in_binds != NULL && i < e->g.input_count; i++)
        free(e->in_binds[i].mems);
    free(e->in_binds);
    if (e->stream != NULL)
        dnnl_stream_destroy(e->stream);
    if (e->dnnl != NULL)
        dnnl_engine_destroy(e->dnnl);
}

VEIL_RESULT eng_step_int8_bias(struct veil_engine *e, size_t step, const dnnl_memory_desc_t *md, const float *bias,
                               size_t count, size_t n, float beta, const float *scales)
{
    VEIL_DEFER(veil_secure_free) struct veil_secure_mem tmp = {0};
    VEIL_GUARD(veil_secure_alloc(&tmp, n * sizeof(float), 0));
    float *scaled = (float *)(void *)tmp.data;
    for (size_t c = 0; c < n; c++)
        scaled[c] = beta * bias[count == 1 ? 0 : c] / scales[c];
    return eng_step_const(e, &e->steps[step], DNNL_ARG_BIAS, md, md, scaled);
}

VEIL_RESULT eng_step_zero_point(struct veil_engine *e, size_t step, int arg, const int32_t *zp)
{
    if (*zp == 0)
        return VEIL_RESULT_OK;
    dnnl_memory_desc_t md;
    dnnl_dims_t one = {1};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&md, 1, one, dnnl_s32, dnnl_a), NULL, "descriptor");
    return eng_step_const(e, &e->steps[step], DNNL_ARG_ATTR_ZERO_POINTS | arg, &md, &md, zp);
}
