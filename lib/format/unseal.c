/* SPDX-License-Identifier: Apache-2.0 */
/* Owner-side recovery: a sealed file back to the ONNX model it was made from. */
#include <stdlib.h>

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

static VEIL_RESULT unseal_impl(const char *path, const uint8_t *key, size_t key_size,
                               const struct veil_open_options *opt, struct veil_buf *out)
{
    VEIL_DEFER(model_done) veil_model *m = NULL;
    struct veil_result r = {veil_model_open(path, key, key_size, opt, &m)};
    VEIL_GUARD(r);
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

static VEIL_RESULT write_out(const struct veil_buf *model, const char *out_path)
{
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile out = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&out, out_path, 0600));
    VEIL_GUARD(veil_file_write_all(out.fd, model->data, model->size));
    return veil_outfile_commit(&out);
}

veil_status veil_unseal_file(const char *path, const uint8_t *key, size_t key_size,
                             const struct veil_open_options *options, const char *out_path)
{
    veil_error_clear();
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf model;
    veil_buf_init_secret(&model);
    struct veil_result r = unseal_impl(path, key, key_size, options, &model);
    if (veil_ok(r))
        r = write_out(&model, out_path);
    return r.status;
}
