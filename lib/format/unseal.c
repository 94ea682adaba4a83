/* SPDX-License-Identifier: Apache-2.0 */
/* Owner-side recovery: a sealed file back to the ONNX model it was made from. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "format/format.h"
#include "onnx/onnx.h"

static void model_done(veil_model **m)
{
    veil_model_free(*m);
}

VEIL_RESULT veil_sealed_join_model(const veil_model *m, struct veil_buf *out)
{
    size_t n = veil_model_tensor_count(m);
    const uint8_t **data = calloc(n + 1, sizeof *data);
    uint64_t *sizes = calloc(n + 1, sizeof *sizes);
    struct veil_result r = VEIL_RESULT_OK;
    if (data == NULL || sizes == NULL)
        r = veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    for (size_t i = 0; veil_ok(r) && i < n; i++) {
        struct veil_tensor_view t;
        r.status = veil_model_tensor(m, i, &t);
        data[i] = t.data;
        sizes[i] = t.size;
    }
    size_t graph_size = 0;
    const uint8_t *graph = veil_model_graph(m, &graph_size);
    if (veil_ok(r))
        r = veil_onnx_join(graph, graph_size, data, sizes, n, out);
    free(data);
    free(sizes);
    return r;
}

static VEIL_RESULT write_out(const struct veil_buf *model, const char *out_path)
{
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile out = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&out, out_path, 0600));
    VEIL_GUARD(veil_file_write_all(out.fd, model->data, model->size));
    return veil_outfile_commit(&out);
}

/* Protobuf cannot serialise a message of 2 GiB or more: past that the model's tensors go to external data. */
static int needs_external_data(const veil_model *m)
{
    size_t graph_size = 0, n = veil_model_tensor_count(m);
    (void)veil_model_graph(m, &graph_size);
    uint64_t total = graph_size + 64;
    for (size_t i = 0; i < n; i++) {
        struct veil_tensor_view t;
        if (veil_model_tensor(m, i, &t) == VEIL_OK)
            total += t.size + 16;
    }
    return total > INT32_MAX;
}

enum { EXTERNAL_ALIGN = 4096 }; /* page-aligned tensors, so readers can map them */

/* The data file: every tensor at a page-aligned offset, zeros between. */
static VEIL_RESULT write_data_file(const veil_model *m, const char *path, uint64_t *offsets, uint64_t *sizes)
{
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile out = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&out, path, 0600));
    static const uint8_t zeros[EXTERNAL_ALIGN];
    uint64_t at = 0;
    for (size_t i = 0; i < veil_model_tensor_count(m); i++) {
        struct veil_tensor_view t;
        struct veil_result r = {veil_model_tensor(m, i, &t)};
        VEIL_GUARD(r);
        uint64_t pad = (EXTERNAL_ALIGN - at % EXTERNAL_ALIGN) % EXTERNAL_ALIGN;
        VEIL_GUARD(veil_file_write_all(out.fd, zeros, (size_t)pad));
        offsets[i] = at + pad;
        sizes[i] = t.size;
        VEIL_GUARD(veil_file_write_all(out.fd, t.data, t.size));
        at = offsets[i] + t.size;
    }
    return veil_outfile_commit(&out);
}

static void free_u64(uint64_t **p)
{
    free(*p);
}

/* out_path gets the graph; out_path + ".data" every tensor, as ONNX external data (location: its file name). */
VEIL_RESULT veil_sealed_unseal_external(const veil_model *m, const char *out_path)
{
    size_t n = veil_model_tensor_count(m), graph_size = 0;
    VEIL_DEFER(free_u64) uint64_t *offsets = calloc(n + 1, sizeof *offsets);
    VEIL_DEFER(free_u64) uint64_t *sizes = calloc(n + 1, sizeof *sizes);
    VEIL_ENSURE(offsets != NULL && sizes != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf data_path = {0}, model;
    veil_buf_init_secret(&model);
    VEIL_GUARD(veil_buf_append(&data_path, out_path, strlen(out_path)));
    VEIL_GUARD(veil_buf_append(&data_path, ".data", sizeof ".data")); /* with its NUL */
    const char *location = strrchr((const char *)data_path.data, '/');
    location = location != NULL ? location + 1 : (const char *)data_path.data;
    VEIL_GUARD(write_data_file(m, (const char *)data_path.data, offsets, sizes));
    const uint8_t *graph = veil_model_graph(m, &graph_size);
    struct veil_result r = veil_onnx_join_external(graph, graph_size, location, offsets, sizes, n, &model);
    if (veil_ok(r))
        r = write_out(&model, out_path);
    if (!veil_ok(r))
        unlink((const char *)data_path.data);
    return r;
}

static VEIL_RESULT unseal_impl(const char *path, const uint8_t *key, size_t key_size,
                               const struct veil_open_options *opt, struct veil_buf *out)
{
    VEIL_DEFER(model_done) veil_model *m = NULL;
    struct veil_result r = {veil_model_open(path, key, key_size, opt, &m)};
    VEIL_GUARD(r);
    VEIL_ENSURE(!needs_external_data(m), VEIL_ERR_LIMIT, "the model is larger than protobuf's 2 GiB limit; unseal "
                "it to a file (veil unseal, veil_unseal_file), which writes its tensors as ONNX external data");
    return veil_sealed_join_model(m, out);
}

veil_status veil_unseal(const char *path, const uint8_t *key, size_t key_size,
                        const struct veil_open_options *options, uint8_t **onnx_out, size_t *onnx_size_out)
{
    veil_error_clear();
    if (onnx_out == NULL || onnx_size_out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    *onnx_out = NULL;
    *onnx_size_out = 0;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf out;
    veil_buf_init_secret(&out);
    struct veil_result r = unseal_impl(path, key, key_size, options, &out);
    if (veil_ok(r))
        veil_buf_release(&out, onnx_out, onnx_size_out);
    return r.status;
}

veil_status veil_unseal_file(const char *path, const uint8_t *key, size_t key_size,
                             const struct veil_open_options *options, const char *out_path)
{
    veil_error_clear();
    if (out_path == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output path given").status;
    VEIL_DEFER(model_done) veil_model *m = NULL;
    veil_status st = veil_model_open(path, key, key_size, options, &m);
    if (st != VEIL_OK)
        return st;
    if (needs_external_data(m))
        return veil_sealed_unseal_external(m, out_path).status;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf model;
    veil_buf_init_secret(&model);
    struct veil_result r = veil_sealed_join_model(m, &model);
    if (veil_ok(r))
        r = write_out(&model, out_path);
    return r.status;
}
