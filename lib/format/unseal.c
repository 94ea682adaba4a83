/* SPDX-License-Identifier: Apache-2.0 */
/* Owner-side recovery: a sealed file back to the ONNX model it was made from. */
#include <stdint.h>
#include <stdio.h>
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

/* The data file's contents: every tensor at a page-aligned offset, zeros between. */
static VEIL_RESULT write_tensors(const veil_model *m, int fd, uint64_t *offsets, uint64_t *sizes)
{
    static const uint8_t zeros[EXTERNAL_ALIGN];
    uint64_t at = 0;
    for (size_t i = 0; i < veil_model_tensor_count(m); i++) {
        struct veil_tensor_view t;
        struct veil_result r = {veil_model_tensor(m, i, &t)};
        VEIL_GUARD(r);
        uint64_t pad = (EXTERNAL_ALIGN - at % EXTERNAL_ALIGN) % EXTERNAL_ALIGN;
        VEIL_GUARD(veil_file_write_all(fd, zeros, (size_t)pad));
        offsets[i] = at + pad;
        sizes[i] = t.size;
        VEIL_GUARD(veil_file_write_all(fd, t.data, t.size));
        at = offsets[i] + t.size;
    }
    return VEIL_RESULT_OK;
}

static void free_u64(uint64_t **p)
{
    free(*p);
}

/* OUT.<first 8 bytes of the sealed file's id, hex>.data: a name of its own per sealed file, so that a graph never
 * refers to another unseal's data file (a crash between the two renames leaves an old graph with its own data). */
static VEIL_RESULT data_path_of(const veil_model *m, const char *out_path, struct veil_buf *path)
{
    char tail[32];
    const uint8_t *id = veil_model_info(m)->file_id;
    snprintf(tail, sizeof tail, ".%02x%02x%02x%02x%02x%02x%02x%02x.data", id[0], id[1], id[2], id[3], id[4], id[5],
             id[6], id[7]);
    VEIL_GUARD(veil_buf_append(path, out_path, strlen(out_path)));
    return veil_buf_append(path, tail, strlen(tail) + 1); /* with its NUL */
}

/* Both files are written under temporary names; the data file is renamed into place first, the graph last. If the
 * graph cannot be, a data file this call created is removed (one that existed came from the same sealed file). */
static VEIL_RESULT commit_pair(struct veil_outfile *data, struct veil_outfile *graph, const char *data_path)
{
    int existed = access(data_path, F_OK) == 0;
    VEIL_GUARD(veil_outfile_commit(data));
    struct veil_result r = veil_outfile_commit(graph);
    if (!veil_ok(r) && !existed)
        unlink(data_path);
    return r;
}

/* out_path gets the graph, OUT.<id>.data every tensor, as ONNX external data (location: that file's name). */
VEIL_RESULT veil_sealed_unseal_external(const veil_model *m, const char *out_path)
{
    size_t n = veil_model_tensor_count(m), graph_size = 0;
    VEIL_DEFER(free_u64) uint64_t *offsets = calloc(n + 1, sizeof *offsets);
    VEIL_DEFER(free_u64) uint64_t *sizes = calloc(n + 1, sizeof *sizes);
    VEIL_ENSURE(offsets != NULL && sizes != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf data_path = {0}, model;
    veil_buf_init_secret(&model);
    VEIL_GUARD(data_path_of(m, out_path, &data_path));
    const char *location = strrchr((const char *)data_path.data, '/');
    location = location != NULL ? location + 1 : (const char *)data_path.data;
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile data = {.fd = -1}, graph = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&data, (const char *)data_path.data, 0600));
    VEIL_GUARD(write_tensors(m, data.fd, offsets, sizes));
    const uint8_t *g = veil_model_graph(m, &graph_size);
    VEIL_GUARD(veil_onnx_join_external(g, graph_size, location, offsets, sizes, n, &model));
    VEIL_GUARD(veil_outfile_open(&graph, out_path, 0600));
    VEIL_GUARD(veil_file_write_all(graph.fd, model.data, model.size));
    return commit_pair(&data, &graph, (const char *)data_path.data);
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
