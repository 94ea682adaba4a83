/* SPDX-License-Identifier: Apache-2.0 */
/* Reading a sealed file (spec section 8): header, key unwrap, every chunk authenticated and decrypted in place
 * into one 64-byte aligned region laid out as the data region. Nothing is handed out before every tag verified. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "format/format.h"

static void free_ptr(uint8_t **p)
{
    free(*p);
}

static VEIL_RESULT check_public_graph(const struct veil_sealed_header *h, int fd, uint8_t *region)
{
    if (h->sections[0].chunk_count != 0)
        return VEIL_RESULT_OK;
    uint8_t digest[VEIL_SHA256_SIZE];
    VEIL_GUARD(veil_file_pread(fd, region, (size_t)h->sections[0].size, h->data_offset));
    VEIL_GUARD(veil_sha256(region, (size_t)h->sections[0].size, digest));
    VEIL_ENSURE(veil_ct_compare(digest, h->graph_digest, sizeof digest) == 0, VEIL_ERR_AUTH,
                "graph authentication failed: the public graph does not match its digest");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT decrypt_region(struct veil_sealed_plain *p, int fd, const uint8_t data_key[VEIL_GCM_KEY_SIZE],
                                  const struct veil_open_options *opt)
{
    const struct veil_sealed_header *h = &p->h;
    VEIL_DEFER(free_ptr) uint8_t *tags = malloc((size_t)h->tag_count * VEIL_GCM_TAG_SIZE + 1);
    VEIL_ENSURE(tags != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_file_pread(fd, tags, (size_t)h->tag_count * VEIL_GCM_TAG_SIZE, h->data_offset + h->data_size));
    VEIL_GUARD(check_public_graph(h, fd, p->region.data));
    struct veil_crypt_job job = {.h = h, .data_key = data_key, .region = p->region.data, .tags = tags,
                                 .encrypt = 0, .fd = fd, .threads = opt->threads, .progress = opt->progress,
                                 .progress_ctx = opt->progress_ctx};
    return veil_sealed_crypt(&job);
}

/* Anti-rollback: the host may hand the TEE an older file sealed under a key version that is still valid. */
static VEIL_RESULT check_min_version(const struct veil_sealed_header *h, uint64_t min_model_version)
{
    VEIL_ENSURE(h->model_version >= min_model_version, VEIL_ERR_VERSION,
                "sealed model %s has model version %llu, older than the required minimum %llu (anti-rollback)",
                h->model_id, (unsigned long long)h->model_version, (unsigned long long)min_model_version);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT decrypt_file(const char *path, const uint8_t *key, size_t key_size,
                                const struct veil_open_options *opt, struct veil_sealed_plain *p)
{
    VEIL_GUARD(veil_sealed_check_key(key, key_size));
    VEIL_ENSURE(path != NULL, VEIL_ERR_ARG, "no sealed file given");
    VEIL_DEFER(veil_fd_close) int fd = open(path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    VEIL_GUARD(veil_sealed_read_header(fd, &p->h));
    struct veil_secure_mem data_key = {0};
    VEIL_GUARD(veil_secure_alloc(&data_key, VEIL_GCM_KEY_SIZE, 0));
    struct veil_result r = veil_sealed_unwrap(key, key_size, p->h.digest, &p->h.wrap, data_key.data);
    if (veil_ok(r)) /* the unwrap authenticated the header: its model_version is the owner's */
        r = check_min_version(&p->h, opt->min_model_version);
    if (veil_ok(r))
        r = veil_secure_alloc(&p->region, (size_t)p->h.data_size, opt->lock_memory);
    if (veil_ok(r))
        r = decrypt_region(p, fd, data_key.data, opt);
    veil_secure_free(&data_key);
    return r;
}

VEIL_RESULT veil_sealed_decrypt_file(const char *path, const uint8_t *key, size_t key_size,
                                     const struct veil_open_options *options, struct veil_sealed_plain *out)
{
    static const struct veil_open_options defaults = {0};
    *out = (struct veil_sealed_plain){0};
    struct veil_result r = decrypt_file(path, key, key_size, options != NULL ? options : &defaults, out);
    if (!veil_ok(r))
        veil_sealed_plain_cleanup(out);
    return r;
}

void veil_sealed_plain_cleanup(struct veil_sealed_plain *p)
{
    veil_secure_free(&p->region); /* wipes */
    veil_sealed_header_cleanup(&p->h);
}
