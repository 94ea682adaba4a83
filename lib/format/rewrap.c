/* SPDX-License-Identifier: Apache-2.0 */
/* Key rotation: a new key wrap over the same data key; the encrypted sections are copied, not re-encrypted. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "format/format.h"

static VEIL_RESULT copy_range(int in, int out, uint64_t offset, uint64_t size)
{
    uint8_t buf[1 << 16];
    while (size > 0) {
        size_t n = size < sizeof buf ? (size_t)size : sizeof buf;
        VEIL_GUARD(veil_file_pread(in, buf, n, offset));
        VEIL_GUARD(veil_file_write_all(out, buf, n));
        offset += n;
        size -= n;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT write_rewrapped(int in, const struct veil_sealed_header *h, const struct veil_key_wrap *wrap,
                                   const char *out_path)
{
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile out = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&out, out_path, 0644));
    uint64_t wrap_at = VEIL_SEALED_PREAMBLE_SIZE + (uint64_t)h->header_size;
    uint8_t bytes[VEIL_SEALED_WRAP_SIZE];
    veil_sealed_wrap_encode(wrap, bytes);
    VEIL_GUARD(copy_range(in, out.fd, 0, wrap_at));
    VEIL_GUARD(veil_file_write_all(out.fd, bytes, sizeof bytes));
    VEIL_GUARD(copy_range(in, out.fd, wrap_at + VEIL_SEALED_WRAP_SIZE, h->file_size - wrap_at - sizeof bytes));
    return veil_outfile_commit(&out);
}

static VEIL_RESULT rewrap_impl(const char *in_path, const uint8_t *old_key, size_t old_size, const uint8_t *new_key,
                               size_t new_size, uint32_t new_version, const char *out_path)
{
    VEIL_ENSURE(in_path != NULL && out_path != NULL, VEIL_ERR_ARG, "no input or output path given");
    VEIL_ENSURE(new_version >= 1, VEIL_ERR_ARG, "the new key version must be at least 1");
    VEIL_GUARD(veil_sealed_check_key(old_key, old_size));
    VEIL_GUARD(veil_sealed_check_key(new_key, new_size));
    VEIL_DEFER(veil_fd_close) int fd = open(in_path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", in_path, strerror(errno));
    VEIL_DEFER(veil_sealed_header_cleanup) struct veil_sealed_header h = {0};
    VEIL_GUARD(veil_sealed_read_header(fd, &h));
    struct veil_secure_mem data_key = {0};
    VEIL_GUARD(veil_secure_alloc(&data_key, VEIL_GCM_KEY_SIZE, 0));
    struct veil_key_wrap wrap = {.key_version = new_version};
    uint8_t nonce[VEIL_GCM_NONCE_SIZE];
    struct veil_result r = veil_sealed_unwrap(old_key, old_size, h.digest, &h.wrap, data_key.data);
    if (veil_ok(r))
        r = veil_random(nonce, sizeof nonce);
    if (veil_ok(r))
        r = veil_sealed_wrap(new_key, new_size, h.digest, data_key.data, nonce, &wrap);
    veil_secure_free(&data_key);
    VEIL_GUARD(r);
    return write_rewrapped(fd, &h, &wrap, out_path);
}

veil_status veil_rewrap_file(const char *in_path, const uint8_t *old_key, size_t old_key_size,
                             const uint8_t *new_key, size_t new_key_size, uint32_t new_key_version,
                             const char *out_path)
{
    veil_error_clear();
    return rewrap_impl(in_path, old_key, old_key_size, new_key, new_key_size, new_key_version, out_path).status;
}
