/* SPDX-License-Identifier: Apache-2.0 */
/* Files: bounded whole-file reads, positioned reads, and an output file that appears atomically. */
#ifndef VEIL_CORE_FILE_H
#define VEIL_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/result.h"

/* For VEIL_DEFER: closes *fd when it is open. */
void veil_fd_close(int *fd);

/* Reads all of path into b (appending); fails with VEIL_ERR_LIMIT past max_size. */
VEIL_RESULT veil_file_read_all(const char *path, uint64_t max_size, struct veil_buf *b);
/* Reads exactly size bytes at offset, retrying short reads; VEIL_ERR_TRUNCATED at end of file. */
VEIL_RESULT veil_file_pread(int fd, void *out, size_t size, uint64_t offset);
VEIL_RESULT veil_file_write_all(int fd, const void *data, size_t size);

/* Opens rel (a relative path) for reading beneath the directory dirfd: no absolute path, no '..', and no symbolic
 * link may lead out of it (openat2 RESOLVE_BENEATH; where the kernel lacks openat2, no symbolic link is followed at
 * all). Hard links and bind mounts inside the directory are not detected. The file must be a regular file (a FIFO
 * is refused without blocking); *size is its size. */
VEIL_RESULT veil_file_open_beneath(int dirfd, const char *rel, int *fd_out, uint64_t *size);
/* Opens the directory that holds path (O_PATH), for veil_file_open_beneath. */
VEIL_RESULT veil_file_open_parent(const char *path, int *fd_out);
/* Opens the directory of path first, then reads the file relative to it (like veil_file_read_all), so that the file
 * and the directory its external data is read from are the same even if a directory is renamed meanwhile;
 * *dirfd_out is then owned by the caller. */
VEIL_RESULT veil_file_read_in(const char *path, uint64_t max_size, struct veil_buf *b, int *dirfd_out);

/* An output file written under a temporary name in the target's directory, then fsync'ed and renamed over the
 * target by _commit. _cleanup removes the temporary file if it was not committed, so a failed operation leaves
 * nothing behind and never touches an existing target. */
struct veil_outfile {
    int fd;
    char *tmp_path;
    char *path;
};

VEIL_RESULT veil_outfile_open(struct veil_outfile *f, const char *path, mode_t mode);
VEIL_RESULT veil_outfile_commit(struct veil_outfile *f);
/* Like _commit, but fails (leaving the existing file alone) when the target already exists. */
VEIL_RESULT veil_outfile_commit_new(struct veil_outfile *f);
void veil_outfile_cleanup(struct veil_outfile *f);

#endif
