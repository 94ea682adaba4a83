/* SPDX-License-Identifier: Apache-2.0 */
/* The small file helpers the providers share: configfs-tsm and Gramine's pseudo files, report data. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attest/attest_internal.h"
#include "core/file.h"
#include "core/limits.h"

VEIL_RESULT veil_path_join(char *out, size_t out_size, const char *dir, const char *name)
{
    int n = snprintf(out, out_size, "%s/%s", dir, name);
    VEIL_ENSURE(n > 0 && (size_t)n < out_size, VEIL_ERR_ARG, "path %s/%s is too long", dir, name);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_read_stream(const char *path, size_t max_size, struct veil_buf *out)
{
    VEIL_DEFER(veil_fd_close) int fd = open(path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t start = out->size;
    for (;;) {
        VEIL_GUARD(veil_buf_reserve(out, 4096));
        size_t room = out->cap - out->size;
        ssize_t n = read(fd, out->data + out->size, room);
        if (n < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(n >= 0, VEIL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (n == 0)
            return VEIL_RESULT_OK;
        out->size += (size_t)n;
        VEIL_ENSURE(out->size - start <= max_size, VEIL_ERR_LIMIT, "%s is larger than %zu bytes", path, max_size);
    }
}

VEIL_RESULT veil_write_report_data(const char *path, const uint8_t report_data[VEIL_REPORT_DATA_SIZE])
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    ssize_t n;
    do
        n = write(fd, report_data, VEIL_REPORT_DATA_SIZE);
    while (n < 0 && errno == EINTR);
    int werr = errno;
    int closed = close(fd);
    VEIL_ENSURE(n == (ssize_t)VEIL_REPORT_DATA_SIZE, VEIL_ERR_IO, "cannot write 64 bytes to %s: %s", path,
                n < 0 ? strerror(werr) : "short write");
    VEIL_ENSURE(closed == 0, VEIL_ERR_IO, "cannot commit %s: %s", path, strerror(errno));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_read_attr(const char *path, char *out, size_t out_size)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_read_stream(path, out_size - 1, &b));
    size_t n = b.size;
    if (n > 0 && b.data[n - 1] == '\n')
        n--;
    VEIL_ENSURE(n == 0 || memchr(b.data, '\0', n) == NULL, VEIL_ERR_EVIDENCE, "%s holds a NUL byte", path);
    if (n > 0)
        memcpy(out, b.data, n);
    out[n] = '\0';
    return VEIL_RESULT_OK;
}
