/* SPDX-License-Identifier: Apache-2.0 */
/* Compromise recovery: a sealed file decrypted (every chunk authenticated) and sealed again under a fresh data
 * key and file id. Key rotation without re-encryption is rewrap.c. */
#include <string.h>

#include "format/format.h"

static void model_done(veil_model **m)
{
    veil_model_free(*m);
}

static VEIL_RESULT check_args(const char *in_path, const uint8_t *old_key, size_t old_size, const uint8_t *new_key,
                              size_t new_size, const struct veil_reseal_options *opt, const char *out_path)
{
    VEIL_ENSURE(in_path != NULL && out_path != NULL, VEIL_ERR_ARG, "no input or output path given");
    VEIL_GUARD(veil_sealed_check_key(old_key, old_size));
    if (new_key == NULL) {
        VEIL_ENSURE(new_size == 0, VEIL_ERR_ARG, "a new key size without a new key");
        return VEIL_RESULT_OK;
    }
    VEIL_GUARD(veil_sealed_check_key(new_key, new_size));
    VEIL_ENSURE(opt->new_key_version >= 1, VEIL_ERR_ARG, "a new key needs its key version (new_key_version >= 1)");
    return VEIL_RESULT_OK;
}

/* The sealing options of the new file: everything the input said, but what the caller changes. */
static VEIL_RESULT new_options(const struct veil_sealed_info *in, const struct veil_reseal_options *opt,
                               struct veil_seal_options *out)
{
    VEIL_ENSURE(opt->model_version == 0 || opt->model_version >= in->model_version, VEIL_ERR_ARG,
                "the model version may not go down (%llu < %llu)", (unsigned long long)opt->model_version,
                (unsigned long long)in->model_version);
    *out = (struct veil_seal_options){
        .model_id = in->model_id,
        .key_version = opt->new_key_version != 0 ? opt->new_key_version : in->key_version,
        .model_version = opt->model_version != 0 ? opt->model_version : in->model_version,
        .chunk_size = in->chunk_size,
        .public_graph = in->public_graph,
        .threads = opt->threads,
        .progress = opt->progress,
        .progress_ctx = opt->progress_ctx,
    };
    return VEIL_RESULT_OK;
}

static VEIL_RESULT reseal_impl(const char *in_path, const uint8_t *old_key, size_t old_size, const uint8_t *new_key,
                               size_t new_size, const struct veil_reseal_options *opt, const char *out_path)
{
    VEIL_GUARD(check_args(in_path, old_key, old_size, new_key, new_size, opt, out_path));
    struct veil_open_options open_opt = {.threads = opt->threads, .progress = opt->progress,
                                         .progress_ctx = opt->progress_ctx};
    VEIL_DEFER(model_done) veil_model *m = NULL;
    VEIL_GUARD(((struct veil_result){veil_model_open(in_path, old_key, old_size, &open_opt, &m)}));
    struct veil_sealed_info info = *veil_model_info(m);
    struct veil_seal_options seal_opt;
    VEIL_GUARD(new_options(&info, opt, &seal_opt)); /* model_id points into info, which outlives m */
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf onnx;
    veil_buf_init_secret(&onnx);
    VEIL_GUARD(veil_sealed_join_model(m, &onnx));
    veil_model_free(m); /* wipes the plaintext tensors before sealing doubles the memory */
    m = NULL;
    const uint8_t *key = new_key != NULL ? new_key : old_key;
    size_t key_size = new_key != NULL ? new_size : old_size;
    return (struct veil_result){veil_seal(onnx.data, onnx.size, key, key_size, &seal_opt, out_path)};
}

veil_status veil_reseal_file(const char *in_path, const uint8_t *old_key, size_t old_key_size,
                             const uint8_t *new_key, size_t new_key_size,
                             const struct veil_reseal_options *options, const char *out_path)
{
    static const struct veil_reseal_options defaults = {0};
    veil_error_clear();
    return reseal_impl(in_path, old_key, old_key_size, new_key, new_key_size, options != NULL ? options : &defaults,
                       out_path)
        .status;
}
