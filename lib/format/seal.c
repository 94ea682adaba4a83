/* SPDX-License-Identifier: Apache-2.0 */
/* Sealing: ONNX in, a sealed file out (spec sections 3 to 7 and 9). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/limits.h"
#include "format/format.h"
#include "onnx/onnx.h"

/* Where the file id, data key and nonce come from: the CSPRNG unless a test passed a source. */
struct seal_random {
    veil_random_fn fn; /* NULL: veil_random (OpenSSL) */
    void *ctx;
};

struct seal_state {
    const struct veil_seal_options *opt;
    int dirfd;                           /* the model's directory, for external data; -1: the model came as bytes */
    struct seal_random random;
    struct veil_onnx_split split;
    struct veil_sealed_header h;
    struct veil_buf header_bytes;
    uint8_t *region;
    uint8_t *tags;
    struct veil_secure_mem data_key;
};

static void seal_state_cleanup(struct seal_state *st)
{
    if (st->region != NULL) /* plaintext when sealing failed before the encryption */
        veil_wipe(st->region, (size_t)st->h.data_size);
    veil_onnx_split_cleanup(&st->split);
    veil_sealed_header_cleanup(&st->h);
    veil_buf_cleanup(&st->header_bytes);
    free(st->region);
    free(st->tags);
    veil_secure_free(&st->data_key);
}

static VEIL_RESULT draw_random(const struct seal_random *random, uint8_t *out, size_t size)
{
    if (random->fn == NULL)
        return veil_random(out, size);
    VEIL_ENSURE(random->fn(random->ctx, out, size) == 0, VEIL_ERR_CRYPTO, "random source failed");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_options(const struct veil_seal_options *opt, const uint8_t *key, size_t key_size)
{
    VEIL_ENSURE(opt != NULL && opt->model_id != NULL, VEIL_ERR_ARG, "a model id is required");
    VEIL_GUARD(veil_sealed_check_model_id(opt->model_id, strlen(opt->model_id)));
    VEIL_GUARD(veil_sealed_check_key(key, key_size));
    uint32_t cs = opt->chunk_size;
    VEIL_ENSURE(cs == 0 || (cs >= VEIL_SEALED_MIN_CHUNK_SIZE && cs <= VEIL_SEALED_MAX_CHUNK_SIZE &&
                            (cs & (cs - 1)) == 0),
                VEIL_ERR_ARG, "chunk size must be a power of two from 4 KiB to 1 GiB");
    VEIL_ENSURE(opt->threads <= VEIL_MAX_THREADS, VEIL_ERR_ARG, "at most %u threads", VEIL_MAX_THREADS);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT build_sections(struct seal_state *st)
{
    struct veil_sealed_header *h = &st->h;
    VEIL_ENSURE(st->split.tensor_count < VEIL_SEALED_MAX_SECTIONS, VEIL_ERR_LIMIT,
                "the model has more than %u initializers", VEIL_SEALED_MAX_SECTIONS - 1);
    h->section_count = (uint32_t)st->split.tensor_count + 1u;
    h->sections = calloc(h->section_count, sizeof *h->sections);
    VEIL_ENSURE(h->sections != NULL, VEIL_ERR_NOMEM, "out of memory");
    uint64_t next = 0;
    for (uint32_t i = 0; i < h->section_count; i++) {
        h->sections[i].offset = next;
        h->sections[i].size = i == 0 ? st->split.graph.size : st->split.tensors[i - 1].size;
        VEIL_GUARD(veil_add_u64(next, h->sections[i].size, &next));
        VEIL_GUARD(veil_align64_u64(next, &next));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT build_header(struct seal_state *st)
{
    const struct veil_seal_options *opt = st->opt;
    struct veil_sealed_header *h = &st->h;
    h->major = VEIL_SEALED_MAJOR;
    h->minor = VEIL_SEALED_MINOR;
    h->required_flags = opt->public_graph ? VEIL_SEALED_FLAG_GRAPH_PUBLIC : 0;
    h->model_version = opt->model_version != 0 ? opt->model_version : 1;
    h->chunk_size = opt->chunk_size != 0 ? opt->chunk_size : VEIL_DEFAULT_CHUNK_SIZE;
    snprintf(h->model_id, sizeof h->model_id, "%s", opt->model_id);
    h->wrap.key_version = opt->key_version != 0 ? opt->key_version : 1;
    VEIL_GUARD(draw_random(&st->random, h->file_id, sizeof h->file_id));
    if (opt->public_graph)
        VEIL_GUARD(veil_sha256(st->split.graph.data, st->split.graph.size, h->graph_digest));
    VEIL_GUARD(build_sections(st));
    VEIL_GUARD(veil_sealed_encode_header(h, &st->header_bytes));
    size_t header_size = st->header_bytes.size - VEIL_SEALED_PREAMBLE_SIZE;
    VEIL_ENSURE(header_size <= VEIL_SEALED_MAX_HEADER_SIZE, VEIL_ERR_LIMIT, "header too large");
    h->header_size = (uint32_t)header_size;
    veil_store_u32le(st->header_bytes.data + 12, h->header_size);
    VEIL_GUARD(veil_sha256(st->header_bytes.data, st->header_bytes.size, h->digest));
    VEIL_GUARD(veil_align64_u64(st->header_bytes.size + VEIL_SEALED_WRAP_SIZE, &h->data_offset));
    return veil_sealed_layout(h);
}

/* Lays the plaintext out as the data region; encryption then runs in place. */
static VEIL_RESULT build_region(struct seal_state *st)
{
    const struct veil_sealed_header *h = &st->h;
    st->region = calloc(1, (size_t)h->data_size);
    st->tags = calloc(h->tag_count + 1, VEIL_GCM_TAG_SIZE);
    VEIL_ENSURE(st->region != NULL && st->tags != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(st->region, st->split.graph.data, st->split.graph.size);
    for (uint32_t i = 1; i < h->section_count; i++) {
        const struct veil_onnx_tensor *t = &st->split.tensors[i - 1];
        uint8_t *dst = st->region + h->sections[i].offset;
        if (t->location != NULL)
            VEIL_GUARD(veil_onnx_read_external(st->dirfd, t, dst));
        else if (t->size > 0)
            memcpy(dst, t->data, (size_t)t->size);
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT encrypt_region(struct seal_state *st, const uint8_t *key, size_t key_size)
{
    VEIL_GUARD(veil_secure_alloc(&st->data_key, VEIL_GCM_KEY_SIZE, 0));
    VEIL_GUARD(draw_random(&st->random, st->data_key.data, VEIL_GCM_KEY_SIZE));
    uint8_t nonce[VEIL_GCM_NONCE_SIZE];
    VEIL_GUARD(draw_random(&st->random, nonce, sizeof nonce));
    VEIL_GUARD(veil_sealed_wrap(key, key_size, st->h.digest, st->data_key.data, nonce, &st->h.wrap));
    struct veil_crypt_job job = {.h = &st->h, .data_key = st->data_key.data, .region = st->region,
                                 .tags = st->tags, .encrypt = 1, .fd = -1, .threads = st->opt->threads,
                                 .progress = st->opt->progress, .progress_ctx = st->opt->progress_ctx};
    return veil_sealed_crypt(&job);
}

static VEIL_RESULT write_sealed(const struct seal_state *st, const char *out_path)
{
    const struct veil_sealed_header *h = &st->h;
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile out = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&out, out_path, 0644));
    uint8_t wrap[VEIL_SEALED_WRAP_SIZE], pad[64] = {0};
    veil_sealed_wrap_encode(&h->wrap, wrap);
    size_t pad_size = (size_t)h->data_offset - st->header_bytes.size - sizeof wrap;
    VEIL_GUARD(veil_file_write_all(out.fd, st->header_bytes.data, st->header_bytes.size));
    VEIL_GUARD(veil_file_write_all(out.fd, wrap, sizeof wrap));
    VEIL_GUARD(veil_file_write_all(out.fd, pad, pad_size));
    VEIL_GUARD(veil_file_write_all(out.fd, st->region, (size_t)h->data_size));
    VEIL_GUARD(veil_file_write_all(out.fd, st->tags, (size_t)h->tag_count * VEIL_GCM_TAG_SIZE));
    return veil_outfile_commit(&out);
}

/* Names the input in ONNX errors: "not a valid ONNX model: malformed GraphProto: ...". */
static VEIL_RESULT split_model(const uint8_t *onnx, size_t onnx_size, int dirfd, struct veil_onnx_split *split)
{
    struct veil_result r = dirfd >= 0 ? veil_onnx_split_external(onnx, onnx_size, split)
                                      : veil_onnx_split(onnx, onnx_size, split);
    if (r.status != VEIL_ERR_ONNX || strncmp(veil_last_error(), "not an ONNX model", 17) == 0)
        return r;
    char detail[512];
    snprintf(detail, sizeof detail, "%s", veil_last_error());
    VEIL_BAIL(VEIL_ERR_ONNX, "not a valid ONNX model: %s", detail);
}

static VEIL_RESULT seal_impl(const uint8_t *onnx, size_t onnx_size, const uint8_t *key, size_t key_size,
                             const struct veil_seal_options *opt, struct seal_random random, int dirfd,
                             const char *out_path)
{
    VEIL_GUARD(check_options(opt, key, key_size));
    VEIL_ENSURE(onnx != NULL && out_path != NULL, VEIL_ERR_ARG, "no model or no output path given");
    VEIL_DEFER(seal_state_cleanup) struct seal_state st = {.opt = opt, .random = random, .dirfd = dirfd};
    VEIL_GUARD(split_model(onnx, onnx_size, dirfd, &st.split));
    VEIL_GUARD(veil_onnx_check_external(&st.split));
    VEIL_GUARD(build_header(&st));
    VEIL_GUARD(build_region(&st));
    VEIL_GUARD(encrypt_region(&st, key, key_size));
    return write_sealed(&st, out_path);
}

veil_status veil_seal(const uint8_t *onnx, size_t onnx_size, const uint8_t *key, size_t key_size,
                      const struct veil_seal_options *options, const char *out_path)
{
    veil_error_clear();
    return seal_impl(onnx, onnx_size, key, key_size, options, (struct seal_random){0}, -1, out_path).status;
}

veil_status veil_seal_with_random(const uint8_t *onnx, size_t onnx_size, const uint8_t *key, size_t key_size,
                                  const struct veil_seal_options *options, veil_random_fn random, void *random_ctx,
                                  const char *out_path)
{
    veil_error_clear();
    struct seal_random r = {.fn = random, .ctx = random_ctx};
    return seal_impl(onnx, onnx_size, key, key_size, options, r, -1, out_path).status;
}

veil_status veil_seal_file(const char *onnx_path, const uint8_t *key, size_t key_size,
                           const struct veil_seal_options *options, const char *out_path)
{
    veil_error_clear();
    if (onnx_path == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no model path given").status;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf model;
    veil_buf_init_secret(&model);
    VEIL_DEFER(veil_fd_close) int dirfd = -1;
    struct veil_result r = veil_file_read_in(onnx_path, VEIL_ONNX_MAX_MODEL_SIZE, &model, &dirfd);
    if (!veil_ok(r))
        return r.status;
    return seal_impl(model.data, model.size, key, key_size, options, (struct seal_random){0}, dirfd, out_path).status;
}
