/* SPDX-License-Identifier: Apache-2.0 */
/* ONNX external data: reading a tensor's bytes from its file beside the model (veil_onnx_split_external). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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

static int range_compare(const void *a, const void *b)
{
    const struct veil_onnx_tensor *x = *(const struct veil_onnx_tensor *const *)a;
    const struct veil_onnx_tensor *y = *(const struct veil_onnx_tensor *const *)b;
    int c = strcmp(x->location, y->location);
    if (c != 0)
        return c;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

VEIL_RESULT veil_onnx_check_external(const struct veil_onnx_split *split)
{
    size_t n = 0;
    for (size_t i = 0; i < split->tensor_count; i++)
        n += split->tensors[i].location != NULL && split->tensors[i].size > 0;
    if (n < 2)
        return VEIL_RESULT_OK;
    const struct veil_onnx_tensor **sorted = calloc(n, sizeof *sorted);
    VEIL_ENSURE(sorted != NULL, VEIL_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < split->tensor_count; i++)
        if (split->tensors[i].location != NULL && split->tensors[i].size > 0)
            sorted[k++] = &split->tensors[i];
    qsort(sorted, n, sizeof *sorted, range_compare);
    struct veil_result r = VEIL_RESULT_OK;
    for (size_t i = 1; i < n && veil_ok(r); i++) {
        const struct veil_onnx_tensor *a = sorted[i - 1], *b = sorted[i];
        if (strcmp(a->location, b->location) == 0 && b->offset - a->offset < a->size)
            r = veil_error_raise(VEIL_ERR_ONNX, __FILE__, __LINE__, "tensors '%s' and '%s' overlap in their external "
                                 "data file %s", a->name, b->name, a->location);
    }
    free(sorted);
    return r;
}
