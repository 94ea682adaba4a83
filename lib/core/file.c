/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
#include <unistd.h>

#include "core/file.h"

void veil_fd_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static VEIL_RESULT read_fd_all(int fd, const char *path, uint64_t max_size, struct veil_buf *b)
{
    struct stat st;
    VEIL_ENSURE(fstat(fd, &st) == 0, VEIL_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    VEIL_ENSURE(S_ISREG(st.st_mode), VEIL_ERR_IO, "%s is not a regular file", path);
    VEIL_ENSURE((uint64_t)st.st_size <= max_size, VEIL_ERR_LIMIT, "%s is larger than %llu bytes", path,
                (unsigned long long)max_size);
    size_t size = (size_t)st.st_size;
    VEIL_GUARD(veil_buf_reserve(b, size));
    VEIL_GUARD(veil_file_pread(fd, b->data + b->size, size, 0));
    b->size += size;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_file_read_all(const char *path, uint64_t max_size, struct veil_buf *b)
{
    VEIL_DEFER(veil_fd_close) int fd = open(path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    return read_fd_all(fd, path, max_size, b);
}

VEIL_RESULT veil_file_pread(int fd, void *out, size_t size, uint64_t offset)
{
    uint8_t *p = out;
    while (size > 0) {
        size_t n = size > (1u << 30) ? (1u << 30) : size;
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(got >= 0, VEIL_ERR_IO, "read failed: %s", strerror(errno));
        VEIL_ENSURE(got > 0, VEIL_ERR_TRUNCATED, "file ends early");
        p += got;
        size -= (size_t)got;
        offset += (uint64_t)got;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_file_write_all(int fd, const void *data, size_t size)
{
    const uint8_t *p = data;
    while (size > 0) {
        size_t n = size > (1u << 30) ? (1u << 30) : size;
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(put > 0, VEIL_ERR_IO, "write failed: %s", strerror(errno));
        p += put;
        size -= (size_t)put;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_outfile_open(struct veil_outfile *f, const char *path, mode_t mode)
{
    *f = (struct veil_outfile){.fd = -1};
    VEIL_ENSURE(path != NULL && path[0] != '\0', VEIL_ERR_ARG, "empty output path");
    size_t n = strlen(path);
    f->path = strdup(path);
    f->tmp_path = malloc(n + 16);
    VEIL_ENSURE(f->path != NULL && f->tmp_path != NULL, VEIL_ERR_NOMEM, "out of memory");
    /* ".NAME.XXXXXX.tmp" in the same directory, so rename() stays within one file system. */
    const char *base = strrchr(path, '/');
    size_t dir_len = base == NULL ? 0 : (size_t)(base - path) + 1;
    snprintf(f->tmp_path, n + 16, "%.*s.%s.XXXXXX", (int)dir_len, path, path + dir_len);
    f->fd = mkostemp(f->tmp_path, O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        free(f->tmp_path);
        f->tmp_path = NULL;
        VEIL_BAIL(VEIL_ERR_IO, "cannot create a file next to %s: %s", path, strerror(e));
    }
    VEIL_ENSURE(fchmod(f->fd, mode) == 0, VEIL_ERR_IO, "cannot set the mode of %s: %s", path, strerror(errno));
    return VEIL_RESULT_OK;
}

static void fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

static VEIL_RESULT flush_and_close(struct veil_outfile *f)
{
    VEIL_ENSURE(f->fd >= 0, VEIL_ERR_INTERNAL, "output file not open");
    VEIL_ENSURE(fsync(f->fd) == 0, VEIL_ERR_IO, "cannot flush %s: %s", f->path, strerror(errno));
    int rc = close(f->fd);
    f->fd = -1;
    VEIL_ENSURE(rc == 0, VEIL_ERR_IO, "cannot close %s: %s", f->path, strerror(errno));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_outfile_commit(struct veil_outfile *f)
{
    VEIL_GUARD(flush_and_close(f));
    VEIL_ENSURE(rename(f->tmp_path, f->path) == 0, VEIL_ERR_IO, "cannot write %s: %s", f->path, strerror(errno));
    free(f->tmp_path);
    f->tmp_path = NULL;
    fsync_dir_of(f->path);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_outfile_commit_new(struct veil_outfile *f)
{
    VEIL_GUARD(flush_and_close(f));
    /* link() fails with EEXIST instead of replacing: an existing file is never lost. */
    VEIL_ENSURE(link(f->tmp_path, f->path) == 0, VEIL_ERR_IO, "cannot write %s: %s", f->path,
                errno == EEXIST ? "it already exists" : strerror(errno));
    fsync_dir_of(f->path);
    return VEIL_RESULT_OK; /* _cleanup unlinks the temporary name */
}

void veil_outfile_cleanup(struct veil_outfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp_path != NULL)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    *f = (struct veil_outfile){.fd = -1};
}

/* openat2 with RESOLVE_BENEATH; -1 with errno ENOSYS (or EPERM, from a seccomp filter) where it is missing. */
static int open_beneath_openat2(int dirfd, const char *rel)
{
#ifdef SYS_openat2
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
#else
    (void)dirfd, (void)rel;
    errno = ENOSYS;
    return -1;
#endif
}

/* Without openat2: every component is opened with O_NOFOLLOW, so no symbolic link is followed at all. */
static int open_beneath_nofollow(int dirfd, const char *rel)
{
    char *copy = strdup(rel);
    if (copy == NULL)
        return -1;
    int at = dirfd, fd = -1;
    char *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part != NULL; part = strtok_r(NULL, "/", &save)) {
        int last = *save == '\0';
        int next = openat(at, part, (last ? O_RDONLY | O_NONBLOCK : O_PATH | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC |
                                    O_NOCTTY);
        if (at != dirfd)
            close(at);
        at = dirfd;
        if (next < 0 || last) {
            fd = next;
            break;
        }
        at = next;
    }
    if (at != dirfd)
        close(at);
    free(copy);
    return fd;
}

static int open_beneath(int dirfd, const char *rel)
{
    int fd = open_beneath_openat2(dirfd, rel);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
        return fd;
    return open_beneath_nofollow(dirfd, rel);
}

static int has_dotdot(const char *rel)
{
    for (const char *p = rel; *p != '\0';) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        p += n + (p[n] == '/');
    }
    return 0;
}

static const char *beneath_error(int err)
{
    if (err == EXDEV)
        return "it leads out of the model's directory";
    if (err == ELOOP)
        return "a symbolic link on its path is not followed (it leads out of the model's directory, or this kernel "
               "lacks openat2 and no link is followed)";
    return strerror(err);
}

VEIL_RESULT veil_file_open_beneath(int dirfd, const char *rel, int *fd_out, uint64_t *size)
{
    *fd_out = -1;
    VEIL_ENSURE(rel != NULL && rel[0] != '\0' && rel[0] != '/' && !has_dotdot(rel), VEIL_ERR_ARG,
                "%s is not a relative path inside the model's directory", rel != NULL ? rel : "(null)");
    /* O_NONBLOCK: a FIFO does not block the open; anything but a regular file is refused before it is read. */
    int fd = open_beneath(dirfd, rel);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s beside the model: %s", rel, beneath_error(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || fcntl(fd, F_SETFL, 0) != 0) {
        close(fd);
        VEIL_BAIL(VEIL_ERR_IO, "%s beside the model is not a regular file", rel);
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_file_open_parent(const char *path, int *fd_out)
{
    char *copy = strdup(path);
    VEIL_ENSURE(copy != NULL, VEIL_ERR_NOMEM, "out of memory");
    int fd = open(dirname(copy), O_PATH | O_DIRECTORY | O_CLOEXEC);
    int err = errno;
    free(copy);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open the directory of %s: %s", path, strerror(err));
    *fd_out = fd;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_file_read_in(const char *path, uint64_t max_size, struct veil_buf *b, int *dirfd_out)
{
    VEIL_DEFER(veil_fd_close) int dirfd = -1;
    VEIL_GUARD(veil_file_open_parent(path, &dirfd));
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    VEIL_ENSURE(base[0] != '\0', VEIL_ERR_IO, "%s names a directory, not a file", path);
    VEIL_DEFER(veil_fd_close) int fd = openat(dirfd, base, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    VEIL_GUARD(read_fd_all(fd, path, max_size, b));
    *dirfd_out = dirfd;
    dirfd = -1;
    return VEIL_RESULT_OK;
}
