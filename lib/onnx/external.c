/* SPDX-License-Identifier: Apache-2.0 */
/* ONNX external data: reading a tensor's bytes from its file beside the model (veil_onnx_split_external). */
#include <inttypes.h>

#include "core/file.h"
#include "onnx/onnx.h"

VEIL_RESULT veil_onnx_read_external(int dirfd, const struct veil_onnx_tensor *t, uint8_t *dst)
{
    VEIL_ENSURE(t->location != NULL, VEIL_ERR_ARG, "tensor '%s' has no external data", t->name);
    VEIL_DEFER(veil_fd_close) int fd = -1;
    uint64_t file_size = 0;
    VEIL_GUARD(veil_file_open_beneath(dirfd, t->location, &fd, &file_size));
    VEIL_ENSURE(t->offset <= file_size && t->size <= file_size - t->offset, VEIL_ERR_ONNX, "tensor '%s': its "
                "external data file %s is %" PRIu64 " bytes, too short for %" PRIu64 " bytes at offset %" PRIu64,
                t->name, t->location, file_size, t->size, t->offset);
    return veil_file_pread(fd, dst, (size_t)t->size, t->offset);
}
