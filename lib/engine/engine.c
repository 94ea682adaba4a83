/* SPDX-License-Identifier: Apache-2.0 */
/* The engine's public API (include/veil/engine.h): load from a stripped graph and tensor views, from a plain
 * ONNX model or from an opened sealed model; describe inputs and outputs; run; free. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"
#include "core/file.h"
#include "format/format.h"
#include "onnx/onnx.h"

uint64_t eng_borrow_min_model = ENG_BORROW_MIN_MODEL;

size_t eng_borrowed_count(const veil_engine *e)
{
    return e != NULL ? e->borrowed : 0;
}

size_t veil_engine_max_rank(void)
{
    return VEIL_ENGINE_MAX_RANK;
}

static VEIL_RESULT resolve_options(const struct veil_engine_options *in, struct veil_engine_options *out)
{
    *out = in != NULL ? *in : (struct veil_engine_options){0};
    VEIL_ENSURE(out->threads <= VEIL_MAX_THREADS, VEIL_ERR_ARG, "threads must be at most %u", VEIL_MAX_THREADS);
    VEIL_ENSURE(out->batch <= VEIL_ENGINE_MAX_BATCH, VEIL_ERR_ARG, "batch must be at most %u", VEIL_ENGINE_MAX_BATCH);
    VEIL_ENSURE(out->symbolic_size <= VEIL_ENGINE_MAX_ACTIVATION_SIZE, VEIL_ERR_ARG, "symbolic_size is too large");
    VEIL_ENSURE(out->precision == VEIL_ENGINE_FP32 || out->precision == VEIL_ENGINE_BF16, VEIL_ERR_ARG,
                "precision must be VEIL_ENGINE_FP32 or VEIL_ENGINE_BF16");
    VEIL_ENSURE(out->precision != VEIL_ENGINE_BF16 || veil_engine_bf16_available(), VEIL_ERR_UNSUPPORTED,
                "bf16 needs a CPU with AVX512-BF16 or AMX; this one runs %s", veil_engine_cpu_isa());
    if (out->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        out->threads = n < 1 ? 1u : n > (long)VEIL_MAX_THREADS ? VEIL_MAX_THREADS : (unsigned)n;
    }
    return VEIL_RESULT_OK;
}

/* The views must be exactly the graph's extracted initializers: same count, names, types and dims. */
static VEIL_RESULT check_views(const uint8_t *graph, size_t size, const struct veil_tensor_view *tensors,
                               size_t count)
{
    struct veil_onnx_tensor *table = NULL;
    size_t n = 0;
    VEIL_GUARD(veil_onnx_tensor_table(graph, size, &table, &n));
    struct veil_result r = VEIL_RESULT_OK;
    if (n != count)
        r = veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "the graph has %zu initializers, %zu tensors were "
                             "given", n, count);
    for (size_t i = 0; veil_ok(r) && i < n; i++) {
        const struct veil_onnx_tensor *t = &table[i];
        const struct veil_tensor_view *v = &tensors[i];
        int same = v->name != NULL && strcmp(v->name, t->name) == 0 && v->dtype == t->dtype && v->rank == t->rank &&
                   (t->rank == 0 || (v->dims != NULL && memcmp(v->dims, t->dims, t->rank * sizeof *t->dims) == 0));
        if (!same)
            r = veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "tensor %zu does not match initializer '%s' of "
                                 "the graph (name, type or dims)", i, t->name);
    }
    veil_onnx_tensors_free(table, n);
    return r;
}

static VEIL_RESULT describe(const struct eng_graph *g, const int *values, size_t count, struct veil_engine_io **out)
{
    struct veil_engine_io *io = calloc(count + 1, sizeof *io);
    VEIL_ENSURE(io != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const struct eng_value *v = &g->values[values[i]];
        io[i].name = v->name;
        io[i].rank = v->shape.rank;
        memcpy(io[i].dims, v->shape.dims, sizeof io[i].dims);
        size_t width = v->kind == VAL_INPUT ? veil_onnx_dtype_size(v->in_dtype) : sizeof(float);
        io[i].size = eng_shape_count(&v->shape) * width;
    }
    *out = io;
    return VEIL_RESULT_OK;
}

/* Where the tensor views come from: the caller (checked against the graph's table here), or libveil's own split or
 * opened model, which read that table from the same graph already (not parsed again); a model may lend its weights. */
enum views_origin { VIEWS_CALLER, VIEWS_TABLE, VIEWS_LENT };

static VEIL_RESULT load_impl(struct veil_engine *e, const uint8_t *graph, size_t size,
                             const struct veil_tensor_view *tensors, size_t count,
                             const struct veil_engine_shape *shapes, size_t shape_count, enum views_origin origin)
{
    VEIL_ENSURE(shapes != NULL || shape_count == 0, VEIL_ERR_ARG, "no shapes given");
    VEIL_ENSURE(shape_count <= VEIL_ENGINE_MAX_NODE_IO, VEIL_ERR_ARG, "too many shapes");
    VEIL_ENSURE(graph != NULL || size == 0, VEIL_ERR_ARG, "no graph given");
    VEIL_ENSURE(tensors != NULL || count == 0, VEIL_ERR_ARG, "no tensors given");
    if (origin == VIEWS_CALLER)
        VEIL_GUARD(check_views(graph, size, tensors, count));
    VEIL_GUARD(eng_graph_parse(&e->g, graph, size, tensors, count));
    VEIL_GUARD(eng_plan_graph(&e->g, e->opts.batch, e->opts.symbolic_size, shapes, shape_count));
    if (e->releasing != NULL)
        VEIL_GUARD(eng_release_plan(e, tensors, count));
    for (size_t i = 0; i < count; i++)
        e->lender_bytes += tensors[i].size;
    VEIL_GUARD(eng_exec_build(e));
    VEIL_GUARD(describe(&e->g, e->g.inputs, e->g.input_count, &e->io_in));
    return describe(&e->g, e->g.outputs, e->g.output_count, &e->io_out);
}

/* Constants are read during load only: forget every pointer into the caller's views and graph. */
static void drop_views(struct eng_graph *g)
{
    for (size_t i = 0; i < g->value_count; i++) {
        struct eng_value *v = &g->values[i];
        if (v->owned != NULL)
            veil_wipe(v->owned, v->size);
        free(v->owned);
        v->owned = NULL;
        v->data = NULL;
        v->from_view = 0;
        v->size = 0;
    }
    for (size_t i = 0; i < g->node_count; i++) {
        free(g->nodes[i].attrs);
        g->nodes[i].attrs = NULL;
        g->nodes[i].attr_count = 0;
    }
}

veil_status veil_engine_load(const uint8_t *graph, size_t graph_size, const struct veil_tensor_view *tensors,
                             size_t tensor_count, const struct veil_engine_options *options, veil_engine **out)
{
    return veil_engine_load_shaped(graph, graph_size, tensors, tensor_count, options, NULL, 0, out);
}

/* Loads; with a lender (VIEWS_LENT: the sealed model the views come from), large weights are used in place and the
 * engine keeps a reference to the model. */
static veil_status load_engine(const uint8_t *graph, size_t graph_size, const struct veil_tensor_view *tensors,
                               size_t tensor_count, const struct veil_engine_options *options,
                               const struct veil_engine_shape *shapes, size_t shape_count, enum views_origin origin,
                               const veil_model *lender, int lend_all, veil_model *releasing, veil_engine **out)
{
    if (out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    *out = NULL;
    struct veil_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    struct veil_result r = resolve_options(options, &e->opts);
    /* lent weights stay in the model's memory: not when the engine must lock its weights and the model is not */
    int lockable = lender != NULL && (!e->opts.lock_memory || veil_model_locked(lender));
    e->borrow = !lockable ? ENG_BORROW_NONE : lend_all ? ENG_BORROW_FORCE : ENG_BORROW_IF_PLAIN;
    if (releasing != NULL && e->borrow == ENG_BORROW_IF_PLAIN)
        e->borrow = ENG_BORROW_NONE; /* release.c: a consumed model's copies peak no higher, and free it all */
    e->releasing = releasing;
    if (veil_ok(r))
        r = load_impl(e, graph, graph_size, tensors, tensor_count, shapes, shape_count, origin);
    eng_release_cleanup(e);
    if (!veil_ok(r)) {
        veil_engine_free(e);
        return r.status;
    }
    drop_views(&e->g);
    if (lender != NULL && e->borrowed > 0)
        e->model = veil_model_retain(lender);
    *out = e;
    return VEIL_OK;
}

veil_status veil_engine_load_shaped(const uint8_t *graph, size_t graph_size, const struct veil_tensor_view *tensors,
                                    size_t tensor_count, const struct veil_engine_options *options,
                                    const struct veil_engine_shape *shapes, size_t shape_count, veil_engine **out)
{
    veil_error_clear();
    return load_engine(graph, graph_size, tensors, tensor_count, options, shapes, shape_count, VIEWS_CALLER, NULL, 0,
                       NULL, out);
}

veil_status veil_engine_load_onnx(const uint8_t *onnx, size_t size, const struct veil_engine_options *options,
                                  veil_engine **out)
{
    return veil_engine_load_onnx_shaped(onnx, size, options, NULL, 0, out);
}

/* Loads from a split model (its tensors' data in memory). */
static veil_status load_split(const struct veil_onnx_split *split, const struct veil_engine_options *options,
                              const struct veil_engine_shape *shapes, size_t shape_count, veil_engine **out)
{
    struct veil_tensor_view *views = calloc(split->tensor_count + 1, sizeof *views);
    if (views == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    for (size_t i = 0; i < split->tensor_count; i++) {
        const struct veil_onnx_tensor *t = &split->tensors[i];
        views[i] = (struct veil_tensor_view){t->name, t->dtype, t->rank, t->dims, t->data, (size_t)t->size};
    }
    veil_status st = load_engine(split->graph.data, split->graph.size, views, split->tensor_count, options, shapes,
                                 shape_count, VIEWS_TABLE, NULL, 0, NULL, out);
    free(views);
    return st;
}

veil_status veil_engine_load_onnx_shaped(const uint8_t *onnx, size_t size, const struct veil_engine_options *options,
                                         const struct veil_engine_shape *shapes, size_t shape_count,
                                         veil_engine **out)
{
    veil_error_clear();
    if (out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    *out = NULL;
    struct veil_onnx_split split = {0};
    struct veil_result r = veil_onnx_split(onnx, size, &split);
    veil_status st = veil_ok(r) ? load_split(&split, options, shapes, shape_count, out) : r.status;
    veil_onnx_split_cleanup(&split);
    return st;
}

/* Reads every external tensor of split into memory it owns (wiped when the split is cleaned up). */
static VEIL_RESULT read_external_tensors(int dirfd, struct veil_onnx_split *split)
{
    VEIL_GUARD(veil_onnx_check_external(split));
    for (size_t i = 0; i < split->tensor_count; i++) {
        struct veil_onnx_tensor *t = &split->tensors[i];
        if (t->location == NULL)
            continue;
        t->owned = malloc(t->size > 0 ? (size_t)t->size : 1);
        VEIL_ENSURE(t->owned != NULL, VEIL_ERR_NOMEM, "out of memory (tensor '%s', %" PRIu64 " bytes)", t->name,
                    t->size);
        t->data = t->owned;
        VEIL_GUARD(veil_onnx_read_external(dirfd, t, t->owned));
    }
    return VEIL_RESULT_OK;
}

veil_status veil_engine_load_onnx_file(const char *path, const struct veil_engine_options *options,
                                       const struct veil_engine_shape *shapes, size_t shape_count, veil_engine **out)
{
    veil_error_clear();
    if (out == NULL || path == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no path or output given").status;
    *out = NULL;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf model;
    veil_buf_init_secret(&model);
    VEIL_DEFER(veil_fd_close) int dirfd = -1;
    struct veil_onnx_split split = {0};
    struct veil_result r = veil_file_read_in(path, VEIL_ONNX_MAX_MODEL_SIZE, &model, &dirfd);
    if (veil_ok(r))
        r = veil_onnx_split_external(model.data, model.size, &split);
    if (veil_ok(r))
        r = read_external_tensors(dirfd, &split);
    veil_status st = veil_ok(r) ? load_split(&split, options, shapes, shape_count, out) : r.status;
    veil_onnx_split_cleanup(&split);
    return st;
}

veil_status veil_engine_load_model(const veil_model *model, const struct veil_engine_options *options,
                                   veil_engine **out)
{
    return veil_engine_load_model_shaped(model, options, NULL, 0, out);
}

static veil_status load_model(const veil_model *model, veil_model *releasing,
                              const struct veil_engine_options *options, const struct veil_engine_shape *shapes,
                              size_t shape_count, veil_engine **out)
{
    veil_error_clear();
    if (model == NULL || out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no model or output given").status;
    *out = NULL;
    size_t size = 0, count = veil_model_tensor_count(model);
    const uint8_t *graph = veil_model_graph(model, &size);
    struct veil_tensor_view *views = calloc(count + 1, sizeof *views);
    if (views == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    veil_status st = VEIL_OK;
    uint64_t total = 0;
    for (size_t i = 0; st == VEIL_OK && i < count; i++) {
        st = veil_model_tensor(model, i, &views[i]);
        total += views[i].size;
    }
    if (st == VEIL_OK)
        st = load_engine(graph, size, views, count, options, shapes, shape_count, VIEWS_LENT, model,
                         total >= eng_borrow_min_model, releasing, out);
    free(views);
    return st;
}

veil_status veil_engine_load_model_shaped(const veil_model *model, const struct veil_engine_options *options,
                                          const struct veil_engine_shape *shapes, size_t shape_count,
                                          veil_engine **out)
{
    return load_model(model, NULL, options, shapes, shape_count, out);
}

veil_status veil_engine_load_model_releasing(veil_model *model, const struct veil_engine_options *options,
                                             const struct veil_engine_shape *shapes, size_t shape_count,
                                             veil_engine **out)
{
    if (model != NULL && !veil_model_exclusive(model)) {
        veil_error_clear();
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "the model is shared (an engine holds it): "
                                "only its sole owner may let a load consume it").status;
    }
    return load_model(model, model, options, shapes, shape_count, out);
}

size_t veil_engine_input_count(const veil_engine *e)
{
    return e != NULL ? e->g.input_count : 0;
}

size_t veil_engine_output_count(const veil_engine *e)
{
    return e != NULL ? e->g.output_count : 0;
}

veil_status veil_engine_input(const veil_engine *e, size_t index, struct veil_engine_io *out)
{
    veil_error_clear();
    if (e == NULL || out == NULL || index >= e->g.input_count)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no such input").status;
    *out = e->io_in[index];
    return VEIL_OK;
}

int32_t veil_engine_input_dtype(const veil_engine *e, size_t index)
{
    return e != NULL && index < e->g.input_count ? e->g.values[e->g.inputs[index]].in_dtype : 0;
}

size_t veil_engine_int8_nodes(const veil_engine *e)
{
    size_t count = 0;
    for (size_t i = 0; e != NULL && i < e->g.node_count; i++) {
        const struct eng_node *n = &e->g.nodes[i];
        count += !n->dead && n->int8_q > 0 && (n->op == OP_CONV || n->op == OP_MATMUL || n->op == OP_GEMM);
    }
    return count;
}

int veil_engine_bf16_available(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

/* With VNNI (or AMX) oneDNN accumulates u8/s8 x s8 products in int32. Without it (AVX2; AVX-512 without VNNI) its
 * kernels sum pairs of u8 x s8 products in int16 with saturation (vpmaddubsw), and for an s8 source they halve the
 * weights ("sa0.5" in ONEDNN_VERBOSE): exact only for a u8 source and weights within [-64, 64], where a pair is at
 * most 2 x 255 x 64 = 32,640 <= 32,767. Both were measured on the AVX2 machine (docs/internals/engine.md). */
int veil_engine_int8_support(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    if ((isa & (unsigned)dnnl_cpu_isa_avx512_core_vnni) == (unsigned)dnnl_cpu_isa_avx512_core_vnni ||
        (isa & (unsigned)dnnl_cpu_isa_avx2_vnni) == (unsigned)dnnl_cpu_isa_avx2_vnni)
        return VEIL_ENGINE_INT8_ALL;
    return (isa & (unsigned)dnnl_cpu_isa_avx2) == (unsigned)dnnl_cpu_isa_avx2 ? VEIL_ENGINE_INT8_7BIT
                                                                                : VEIL_ENGINE_INT8_NONE;
}

int eng_isa_avx512(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core;
}

int veil_engine_int8_available(void)
{
    return veil_engine_int8_support() != VEIL_ENGINE_INT8_NONE;
}

const char *veil_engine_cpu_isa(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_sse41: return "sse41";
    default: return "another ISA";
    }
}

uint32_t veil_engine_input_symbolic(const veil_engine *e, size_t index)
{
    return e != NULL && index < e->g.input_count ? e->g.values[e->g.inputs[index]].symbolic_mask : 0;
}

uint32_t veil_engine_output_symbolic(const veil_engine *e, size_t index)
{
    return e != NULL && index < e->g.output_count ? e->g.values[e->g.outputs[index]].symbolic_mask : 0;
}

int veil_engine_input_batched(const veil_engine *e, size_t index)
{
    return e != NULL && index < e->g.input_count && e->g.values[e->g.inputs[index]].batch_symbolic;
}

veil_status veil_engine_output(const veil_engine *e, size_t index, struct veil_engine_io *out)
{
    veil_error_clear();
    if (e == NULL || out == NULL || index >= e->g.output_count)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no such output").status;
    *out = e->io_out[index];
    return VEIL_OK;
}

static VEIL_RESULT check_run(const veil_engine *e, const float *const *inputs, const size_t *input_sizes,
                             size_t input_count, float *const *outputs, const size_t *output_sizes,
                             size_t output_count)
{
    VEIL_ENSURE(input_count == e->g.input_count, VEIL_ERR_ARG, "the model takes %zu inputs, %zu were given",
                e->g.input_count, input_count);
    VEIL_ENSURE(output_count == e->g.output_count, VEIL_ERR_ARG, "the model has %zu outputs, room for %zu was given",
                e->g.output_count, output_count);
    VEIL_ENSURE(inputs != NULL && input_sizes != NULL && outputs != NULL && output_sizes != NULL, VEIL_ERR_ARG,
                "no inputs or outputs given");
    for (size_t i = 0; i < input_count; i++)
        VEIL_ENSURE(input_sizes[i] == e->io_in[i].size, VEIL_ERR_ARG, "input '%s' is %zu bytes; the planned shape "
                    "needs %zu", e->io_in[i].name, input_sizes[i], e->io_in[i].size);
    for (size_t i = 0; i < output_count; i++)
        VEIL_ENSURE(outputs[i] != NULL && output_sizes[i] == e->io_out[i].size, VEIL_ERR_ARG, "output '%s' needs %zu "
                    "bytes, %zu were given", e->io_out[i].name, e->io_out[i].size, output_sizes[i]);
    return VEIL_RESULT_OK;
}

veil_status veil_engine_run(veil_engine *e, const float *const *inputs, const size_t *input_sizes,
                            size_t input_count, float *const *outputs, const size_t *output_sizes,
                            size_t output_count)
{
    veil_error_clear();
    if (e == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no engine given").status;
    struct veil_result r = check_run(e, inputs, input_sizes, input_count, outputs, output_sizes, output_count);
    if (veil_ok(r))
        r = eng_exec_run(e, inputs, outputs);
    if (!veil_ok(r) && outputs != NULL && output_sizes != NULL)
        for (size_t i = 0; i < output_count; i++)
            if (outputs[i] != NULL)
                memset(outputs[i], 0, output_sizes[i]);
    return r.status;
}

void veil_engine_free(veil_engine *e)
{
    if (e == NULL)
        return;
    eng_exec_cleanup(e);
    eng_graph_cleanup(&e->g);
    free(e->io_in);
    free(e->io_out);
    veil_model_free(e->model);
    free(e);
}
