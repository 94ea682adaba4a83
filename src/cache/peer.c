/* SPDX-License-Identifier: Apache-2.0 */
/* Who is on the other end of a local connection. The kernel says which process connected (SO_PEERCRED: pid, uid;
 * SO_PEERPIDFD: a handle on that very process); its executable is measured through /proc/PID/exe with the sim
 * TEE's formula, and the pidfd then shows the process is still alive, so that the PID was not reused by another
 * process while it was measured. Reading another process's /proc/PID/exe needs the same uid and a dumpable peer,
 * or CAP_SYS_PTRACE (runtimes make themselves non-dumpable: run the cache as root inside the TEE). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cache.h"
#include "core/file.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5 */
#endif

/* Measurements of executables, reused while the file is unchanged (same device, inode, size, times). */
#define MEASURE_CACHE_SLOTS 16u

struct measured {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    uint8_t measurement[CC_MEASUREMENT_SIZE];
    int valid;
};

static struct {
    pthread_mutex_t lock;
    struct measured slots[MEASURE_CACHE_SLOTS];
    size_t next;
} measure_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int same_file(const struct measured *m, const struct stat *st)
{
    return m->valid && m->dev == st->st_dev && m->ino == st->st_ino && m->size == st->st_size &&
           m->mtime.tv_sec == st->st_mtim.tv_sec && m->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           m->ctime.tv_sec == st->st_ctim.tv_sec && m->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static int cache_lookup(const struct stat *st, uint8_t out[CC_MEASUREMENT_SIZE])
{
    int hit = 0;
    pthread_mutex_lock(&measure_cache.lock);
    for (size_t i = 0; i < MEASURE_CACHE_SLOTS && !hit; i++) {
        if (same_file(&measure_cache.slots[i], st)) {
            memcpy(out, measure_cache.slots[i].measurement, CC_MEASUREMENT_SIZE);
            hit = 1;
        }
    }
    pthread_mutex_unlock(&measure_cache.lock);
    return hit;
}

/* A file changed within the last seconds may change again within one timestamp tick: not remembered. */
static void cache_store(const struct stat *st, const uint8_t m[CC_MEASUREMENT_SIZE])
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || st->st_ctim.tv_sec + 2 >= now.tv_sec ||
        st->st_mtim.tv_sec + 2 >= now.tv_sec)
        return;
    pthread_mutex_lock(&measure_cache.lock);
    struct measured *slot = &measure_cache.slots[measure_cache.next++ % MEASURE_CACHE_SLOTS];
    *slot = (struct measured){st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim, {0}, 1};
    memcpy(slot->measurement, m, CC_MEASUREMENT_SIZE);
    pthread_mutex_unlock(&measure_cache.lock);
}

static VEIL_RESULT measure_exe(pid_t pid, uint8_t out[CC_MEASUREMENT_SIZE])
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/exe", (long)pid);
    struct stat before, after;
    VEIL_ENSURE(stat(path, &before) == 0, VEIL_ERR_IO, "cannot look at the peer's executable (%s): %s", path,
                strerror(errno));
    if (cache_lookup(&before, out))
        return VEIL_RESULT_OK;
    VEIL_GUARD(veil_la_sim_measure(path, out));
    VEIL_ENSURE(stat(path, &after) == 0 && before.st_ino == after.st_ino && before.st_dev == after.st_dev,
                VEIL_ERR_IO, "the peer's executable changed while it was measured");
    cache_store(&before, out);
    return VEIL_RESULT_OK;
}

static int uid_allowed(const struct cc_ctx *c, uid_t uid)
{
    for (size_t i = 0; i < c->set.uid_count; i++)
        if (c->set.uids[i] == uid)
            return 1;
    return 0;
}

/* A handle on the connecting process itself: the kernel's (SO_PEERPIDFD), else pidfd_open of its pid. */
static int peer_pidfd(int fd, pid_t pid)
{
    int pidfd = -1;
    socklen_t len = sizeof pidfd;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0)
        return pidfd;
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* A pidfd polls readable once its process has exited. */
static int still_alive(int pidfd)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

VEIL_RESULT cc_peer_identify(const struct cc_ctx *c, int fd, struct cc_peer *out)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    VEIL_ENSURE(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof cred && cred.pid > 0,
                VEIL_ERR_IO, "SO_PEERCRED: %s", strerror(errno));
    out->pid = cred.pid;
    out->uid = cred.uid;
    VEIL_ENSURE(uid_allowed(c, cred.uid), VEIL_ERR_AUTH, "uid %ld is not among allowed_uids", (long)cred.uid);
    VEIL_DEFER(veil_fd_close) int pidfd = peer_pidfd(fd, cred.pid);
    VEIL_ENSURE(pidfd >= 0, VEIL_ERR_IO, "cannot hold the peer process: %s", strerror(errno));
    VEIL_GUARD(measure_exe(cred.pid, out->measurement));
    VEIL_ENSURE(still_alive(pidfd), VEIL_ERR_IO, "the peer exited while it was measured");
    return VEIL_RESULT_OK;
}

int cc_peer_allowed(const struct cc_ctx *c, const struct cc_peer *peer, const char *model)
{
    for (size_t i = 0; i < c->set.allow_count; i++) {
        const struct cc_allow *a = &c->set.allow[i];
        if (model != NULL && strcmp(a->model, model) != 0)
            continue;
        if (a->sgx ? veil_ok(veil_sgx_report_admit_any(&peer->sgx, &c->sgx_policies[i], 1))
                   : memcmp(a->measurement, peer->measurement, CC_MEASUREMENT_SIZE) == 0)
            return 1;
    }
    return 0;
}
