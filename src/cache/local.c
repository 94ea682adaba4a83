/* SPDX-License-Identifier: Apache-2.0 */
/* The local protocol on the cache's Unix socket, or under SGX on TLS over TCP loopback (lib/cache/local.h;
 * docs/cache.md, "Protocol" and "SGX"). For each connection, in order:
 *   1. the peer check: the connecting process's uid must be allowed, and its executable's measurement must be
 *      allowed for some model (peer.c) — else ERROR peer, before a byte of it is parsed. SGX instead: a TLS 1.3
 *      handshake (the kernel's word on a TCP peer means nothing across enclaves: the REPORT is the identity);
 *   2. local attestation: HELLO, CHALLENGE (the cache's report for the runtime), ATTEST (the runtime's report for
 *      the cache, bound to both nonces and both identities, whose measurement must be the executable's), READY;
 *      SGX: the same messages with EREPORTs bound to the TLS session too, the runtime's REPORT admitted by one
 *      allow entry (lib/cache/sgx_channel.c);
 *   3. KEY_REQUEST / RENEW, as many as the runtime sends: the model must be allowed for this runtime's
 *      measurement; the key comes from the lease table (or the broker) with a lease no longer than the cache's.
 * A malformed or unexpected message is answered ERROR bad-message and the connection closed; every other refusal
 * is an ERROR the runtime can act on. One thread per connection, at most max_connections. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <netinet/in.h>

#include "cache.h"
#include "core/hex.h"
#include "crypto/crypto.h"

struct conn {
    struct cc_ctx *c;
    struct veil_la_conn lc; /* the socket, and its TLS session under SGX */
    struct cc_peer peer;
    struct veil_buf body;
};

/* ---- answers ----------------------------------------------------------------------------------------------- */

/* An ERROR the peer may or may not read (it may be gone): nothing to do when the send fails. */
static void send_error(const struct veil_la_conn *lc, const struct veil_la_msg *m)
{
    struct veil_result r = veil_la_send(lc, m);
    (void)r;
}

/* One refusal in the log and the metrics (SGX: the measurement is the REPORT's MRENCLAVE, and pid and uid are 0). */
static void note_refusal(const struct conn *k, uint16_t code, const char *detail)
{
    char hex[2 * CC_MEASUREMENT_SIZE + 1];
    veil_hex_encode(k->peer.measurement, k->c->set.kind == VEIL_LA_KIND_SGX ? VEIL_SGX_MR_SIZE : CC_MEASUREMENT_SIZE,
                    hex);
    vd_log("warn", "local-refused", "{s:s, s:I, s:I, s:s, s:s}", "reason", veil_la_error_name(code), "pid",
           (json_int_t)k->peer.pid, "uid", (json_int_t)k->peer.uid, "measurement", hex, "detail", detail);
    cc_metrics_refused(code);
}

/* Logged before the ERROR is sent: a failed send would overwrite detail (often veil_last_error()). */
static void refuse(struct conn *k, uint16_t code, const char *message, const char *detail)
{
    note_refusal(k, code, detail != NULL ? detail : message);
    struct veil_la_msg m;
    veil_la_error_msg(&m, code, message);
    send_error(&k->lc, &m);
}

/* A decode or transport failure of what the runtime sent: closed quietly when the peer went away. */
static void bad_message(struct conn *k, struct veil_result r)
{
    if (r.status == VEIL_ERR_IO)
        return;
    refuse(k, VEIL_LA_E_BAD_MESSAGE, "malformed or unexpected message", veil_last_error());
}

/* ---- local attestation ------------------------------------------------------------------------------------- */

struct handshake {
    uint8_t nonce_r[VEIL_LA_NONCE_SIZE], nonce_c[VEIL_LA_NONCE_SIZE];
    uint8_t target_r[VEIL_LA_MAX_TARGET_SIZE];
    size_t target_r_size;
};

/* HELLO: the runtime's nonce and (sim) the identity it reports as, which must be the executable's. */
static int hello(struct conn *k, struct handshake *h)
{
    struct veil_la_msg m;
    struct veil_result r = veil_la_recv(&k->lc, &k->body, &m);
    if (veil_ok(r) && (m.type != VEIL_LA_HELLO || m.kind != k->c->set.kind))
        r = veil_error_raise(VEIL_ERR_FORMAT, __FILE__, __LINE__, "expected HELLO of report kind %u (type %u kind %u)",
                             k->c->set.kind, m.type, m.kind);
    if (!veil_ok(r)) {
        bad_message(k, r);
        return 0;
    }
    memcpy(h->nonce_r, m.nonce, sizeof h->nonce_r);
    memcpy(h->target_r, m.target, m.target_size);
    h->target_r_size = m.target_size;
    if (m.kind == VEIL_LA_KIND_SIM && memcmp(m.target, k->peer.measurement, CC_MEASUREMENT_SIZE) != 0) {
        refuse(k, VEIL_LA_E_REPORT, "the runtime claims another identity than its executable's", NULL);
        return 0;
    }
    return 1;
}

/* CHALLENGE: the cache's nonce, identity and report for the runtime. */
static int challenge(struct conn *k, struct handshake *h)
{
    const struct cc_ctx *c = k->c;
    int sim = c->set.kind == VEIL_LA_KIND_SIM;
    uint8_t binding[VEIL_LA_BINDING_SIZE], report[VEIL_LA_SIM_REPORT_SIZE];
    struct veil_result r = veil_random(h->nonce_c, sizeof h->nonce_c);
    if (veil_ok(r))
        r = veil_la_binding('C', h->nonce_r, h->nonce_c, h->target_r, h->target_r_size,
                            sim ? c->self_measurement : NULL, sim ? CC_MEASUREMENT_SIZE : 0, NULL, binding);
    if (veil_ok(r) && sim)
        r = veil_la_sim_report(c->report_key, h->target_r, c->self_measurement, binding, report);
    struct veil_la_msg m = {.type = VEIL_LA_CHALLENGE, .kind = c->set.kind, .target = c->self_measurement,
                            .target_size = sim ? CC_MEASUREMENT_SIZE : 0, .report = report,
                            .report_size = sim ? sizeof report : 0};
    memcpy(m.nonce, h->nonce_c, sizeof m.nonce);
    if (veil_ok(r))
        r = veil_la_send(&k->lc, &m);
    if (!veil_ok(r) && r.status != VEIL_ERR_IO)
        refuse(k, VEIL_LA_E_INTERNAL, "internal error", veil_last_error());
    return veil_ok(r);
}

/* ATTEST: the runtime's report for the cache, bound to this handshake, of the executable that connected. */
static int attest(struct conn *k, const struct handshake *h)
{
    const struct cc_ctx *c = k->c;
    struct veil_la_msg m;
    struct veil_result r = veil_la_recv(&k->lc, &k->body, &m);
    if (veil_ok(r) && (m.type != VEIL_LA_ATTEST || m.kind != c->set.kind))
        r = veil_error_raise(VEIL_ERR_FORMAT, __FILE__, __LINE__, "expected ATTEST (type %u kind %u)", m.type, m.kind);
    if (!veil_ok(r)) {
        bad_message(k, r);
        return 0;
    }
    if (c->set.kind != VEIL_LA_KIND_SIM)
        return 1;
    uint8_t expected[VEIL_LA_BINDING_SIZE], seen[CC_MEASUREMENT_SIZE];
    r = veil_la_binding('R', h->nonce_r, h->nonce_c, h->target_r, h->target_r_size, c->self_measurement,
                        CC_MEASUREMENT_SIZE, NULL, expected);
    if (veil_ok(r))
        r = veil_la_sim_verify(c->report_key, c->self_measurement, m.report, m.report_size, expected, seen);
    if (veil_ok(r) && memcmp(seen, k->peer.measurement, sizeof seen) != 0)
        r = veil_error_raise(VEIL_ERR_VERIFY, __FILE__, __LINE__, "the report's measurement is not the executable's");
    if (!veil_ok(r)) {
        refuse(k, VEIL_LA_E_REPORT, "the local report does not verify", veil_last_error());
        return 0;
    }
    return 1;
}

/* SGX: the TLS session, then the EREPORTs both ways (lib/cache/sgx_channel.c); the runtime's MRENCLAVE is its
 * measurement in logs, its REPORT what the allow-list is checked against. */
static int sgx_handshake(struct conn *k)
{
    const struct cc_ctx *c = k->c;
    if (!veil_ok(veil_la_tls_open(c->tls, k->lc.fd, &k->lc))) {
        note_refusal(k, VEIL_LA_E_BAD_MESSAGE, veil_last_error()); /* no TLS 1.3 session: nothing can be answered */
        return 0;
    }
    uint16_t code = 0;
    struct veil_result r = veil_la_sgx_accept(&k->lc, &c->sgx, &k->body, &k->peer.sgx, &code);
    if (veil_ok(r)) {
        memcpy(k->peer.measurement, k->peer.sgx.mrenclave, VEIL_SGX_MR_SIZE);
        return 1;
    }
    if (code != 0)
        refuse(k, code, code == VEIL_LA_E_REPORT ? "the local report does not verify"
                        : code == VEIL_LA_E_BAD_MESSAGE ? "malformed or unexpected message" : "internal error",
               veil_last_error());
    return 0;
}

static int handshake(struct conn *k)
{
    if (k->c->set.kind == VEIL_LA_KIND_SGX)
        return sgx_handshake(k);
    struct handshake h;
    memset(&h, 0, sizeof h);
    if (!hello(k, &h) || !challenge(k, &h) || !attest(k, &h))
        return 0;
    struct veil_la_msg ready = {.type = VEIL_LA_READY};
    return veil_ok(veil_la_send(&k->lc, &ready));
}

/* ---- requests ---------------------------------------------------------------------------------------------- */

static void answer_lease(struct conn *k, const struct veil_la_msg *q, const struct veil_lease *l, const char *counts)
{
    uint64_t lease = veil_lease_sublease_ms(l, vd_now_ms(), k->c->cfg->runtime_lease_max_s * 1000u);
    struct veil_la_msg m = {.type = q->type == VEIL_LA_RENEW ? VEIL_LA_LEASE : VEIL_LA_KEY,
                            .key_version = l->key_version, .min_model_version = l->min_model_version,
                            .lease_ms = lease, .key = l->key.data, .key_size = l->key_size,
                            .has_usage = l->usage_policy != NULL, .usage = l->usage_policy,
                            .usage_size = l->usage_policy != NULL ? strlen(l->usage_policy) : 0,
                            .counts = counts, .counts_size = strlen(counts)};
    struct veil_result r = lease > 0 ? veil_la_send(&k->lc, &m) : VEIL_RESULT_OK;
    pthread_mutex_unlock(&k->c->lock);
    if (lease == 0) {
        refuse(k, VEIL_LA_E_UNAVAILABLE, "the cache's lease on this key ends now", NULL);
        return;
    }
    if (!veil_ok(r))
        return;
    vd_log("info", q->type == VEIL_LA_RENEW ? "lease-granted" : "key-served", "{s:s, s:I, s:I, s:I}", "model_id",
           q->model_id, "key_version", (json_int_t)q->key_version, "pid", (json_int_t)k->peer.pid, "lease_ms",
           (json_int_t)lease);
    cc_metrics_served(q->type == VEIL_LA_RENEW);
}

/* One KEY_REQUEST or RENEW; 0 when the connection must close (a malformed usage report). A runtime's report is
 * added to pending once the lease is held, restricted to the clients of the usage policy under that lease (a report
 * cannot make up names; the broker restricts again). Counts for a key the broker refuses go nowhere: the broker
 * would refuse them too. */
static int request(struct conn *k, const struct veil_la_msg *q)
{
    if (!cc_peer_allowed(k->c, &k->peer, q->model_id)) {
        refuse(k, VEIL_LA_E_NOT_ALLOWED, "this runtime's measurement is not allowed for the model", q->model_id);
        return 1;
    }
    json_t *deltas = NULL;
    struct veil_result r = q->counts_size > 0 ? veil_usage_counts_parse(q->counts, q->counts_size, 1, &deltas)
                                              : VEIL_RESULT_OK;
    if (!veil_ok(r)) {
        bad_message(k, r);
        return 0;
    }
    struct veil_lease *l = NULL;
    char *counts = NULL;
    switch (cc_obtain(k->c, q->model_id, q->key_version, &l)) {
    case CC_OK: /* the counts after any fetch cc_obtain made */
        if (veil_ok(cc_usage_local(k->c, q->model_id, deltas, l->usage_policy, &counts))) {
            answer_lease(k, q, l, counts);
        } else {
            pthread_mutex_unlock(&k->c->lock);
            refuse(k, VEIL_LA_E_INTERNAL, "internal error", veil_last_error());
        }
        break;
    case CC_DENIED: refuse(k, VEIL_LA_E_REVOKED, "the key broker does not release this key", q->model_id); break;
    case CC_UNAVAILABLE:
        refuse(k, VEIL_LA_E_UNAVAILABLE, "no valid lease and the key broker cannot be reached", q->model_id);
        break;
    case CC_FAILED: refuse(k, VEIL_LA_E_INTERNAL, "internal error", q->model_id); break;
    }
    json_decref(deltas);
    free(counts);
    return 1;
}

/* Unix socket: the process on the other end, before a byte of it is parsed. */
static int peer_check(struct conn *k)
{
    if (k->c->set.kind == VEIL_LA_KIND_SGX)
        return 1; /* TCP across enclaves: the REPORT (sgx_handshake) is the identity */
    struct veil_result r = cc_peer_identify(k->c, k->lc.fd, &k->peer);
    if (veil_ok(r) && cc_peer_allowed(k->c, &k->peer, NULL))
        return 1;
    refuse(k, VEIL_LA_E_PEER, "this process may not use the key cache",
           veil_ok(r) ? "its executable's measurement is not allowed for any model" : veil_last_error());
    return 0;
}

static void serve(struct conn *k)
{
    struct veil_result r;
    if (!peer_check(k) || !handshake(k))
        return;
    for (;;) {
        struct veil_la_msg q;
        r = veil_la_recv(&k->lc, &k->body, &q);
        if (veil_ok(r) && q.type != VEIL_LA_KEY_REQUEST && q.type != VEIL_LA_RENEW)
            r = veil_error_raise(VEIL_ERR_FORMAT, __FILE__, __LINE__, "expected KEY_REQUEST or RENEW, not type %u",
                                 q.type);
        if (!veil_ok(r)) {
            bad_message(k, r);
            return;
        }
        if (!request(k, &q))
            return;
    }
}

/* ---- connections ------------------------------------------------------------------------------------------- */

static void conn_unregister(struct cc_ctx *c, int fd)
{
    pthread_mutex_lock(&c->conn_lock);
    for (size_t i = 0; i < c->conn_count; i++)
        if (c->conn_fds[i] == fd) {
            c->conn_fds[i] = c->conn_fds[--c->conn_count];
            break;
        }
    pthread_cond_broadcast(&c->conn_done);
    pthread_mutex_unlock(&c->conn_lock);
}

static void *conn_main(void *arg)
{
    struct conn *k = arg;
    serve(k);
    veil_la_tls_close(&k->lc);
    veil_buf_cleanup(&k->body);
    conn_unregister(k->c, k->lc.fd);
    close(k->lc.fd);
    free(k);
    return NULL;
}

static int conn_register(struct cc_ctx *c, int fd)
{
    pthread_mutex_lock(&c->conn_lock);
    int ok = c->conn_count < c->cfg->max_connections;
    if (ok)
        c->conn_fds[c->conn_count++] = fd;
    pthread_mutex_unlock(&c->conn_lock);
    return ok;
}

static void conn_start(struct cc_ctx *c, int fd)
{
    struct timeval tv = {(time_t)(c->cfg->io_timeout_ms / 1000), (suseconds_t)(c->cfg->io_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct conn *k = calloc(1, sizeof *k);
    if (k == NULL || !conn_register(c, fd)) {
        struct veil_la_msg m;
        veil_la_error_msg(&m, VEIL_LA_E_UNAVAILABLE, "too many connections");
        struct veil_la_conn plain = {.fd = fd, .ssl = NULL};
        if (c->set.kind != VEIL_LA_KIND_SGX) /* under SGX nothing is said outside TLS: the runtime sees a close */
            send_error(&plain, &m);
        cc_metrics_busy();
        close(fd);
        free(k);
        return;
    }
    *k = (struct conn){.c = c, .lc = {.fd = fd, .ssl = NULL}};
    veil_buf_init_secret(&k->body);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, conn_main, k) != 0) {
        conn_unregister(c, fd);
        close(fd);
        free(k);
    }
    pthread_attr_destroy(&a);
}

static int stop_pipe[2] = {-1, -1};

static void *acceptor(void *arg)
{
    struct cc_ctx *c = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = c->listen_fd, .events = POLLIN}, {.fd = stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents != 0)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            conn_start(c, fd);
    }
    return NULL;
}

/* Another veil-cache still answers on path: refuse to take it over. */
static int socket_in_use(const struct sockaddr_un *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int used = fd >= 0 && connect(fd, (const struct sockaddr *)a, sizeof *a) == 0;
    if (fd >= 0)
        close(fd);
    return used;
}

static VEIL_RESULT socket_open(struct cc_ctx *c)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", c->cfg->socket);
    struct stat st;
    if (lstat(a.sun_path, &st) == 0) {
        VEIL_ENSURE(S_ISSOCK(st.st_mode), VEIL_ERR_ARG, "%s exists and is not a socket", a.sun_path);
        VEIL_ENSURE(!socket_in_use(&a), VEIL_ERR_ARG, "%s: another process is listening on it", a.sun_path);
        unlink(a.sun_path); /* a socket left by a cache that was killed */
    }
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    VEIL_ENSURE(c->listen_fd >= 0, VEIL_ERR_IO, "socket: %s", strerror(errno));
    VEIL_ENSURE(bind(c->listen_fd, (const struct sockaddr *)&a, sizeof a) == 0, VEIL_ERR_IO, "cannot bind %s: %s",
                a.sun_path, strerror(errno));
    VEIL_ENSURE(chmod(a.sun_path, c->set.socket_mode) == 0, VEIL_ERR_IO, "chmod %s: %s", a.sun_path, strerror(errno));
    VEIL_ENSURE(listen(c->listen_fd, 64) == 0, VEIL_ERR_IO, "listen on %s: %s", a.sun_path, strerror(errno));
    return VEIL_RESULT_OK;
}

/* SGX: TCP on the loopback address local_listen (checked by the configuration). */
static VEIL_RESULT tcp_open(struct cc_ctx *c)
{
    struct sockaddr_storage ss;
    int loopback = 0;
    VEIL_GUARD(vd_listen_parse(c->cfg->local_listen, &ss, &loopback));
    VEIL_ENSURE(loopback, VEIL_ERR_ARG, "local_listen must be a loopback address");
    c->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    VEIL_ENSURE(c->listen_fd >= 0, VEIL_ERR_IO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    VEIL_ENSURE(bind(c->listen_fd, (const struct sockaddr *)&ss, len) == 0, VEIL_ERR_IO, "cannot bind %s: %s",
                c->cfg->local_listen, strerror(errno));
    VEIL_ENSURE(listen(c->listen_fd, 64) == 0, VEIL_ERR_IO, "listen on %s: %s", c->cfg->local_listen,
                strerror(errno));
    return VEIL_RESULT_OK;
}

VEIL_RESULT cc_local_start(struct cc_ctx *c)
{
    pthread_mutex_init(&c->conn_lock, NULL);
    pthread_cond_init(&c->conn_done, NULL);
    VEIL_ENSURE(pipe2(stop_pipe, O_CLOEXEC) == 0, VEIL_ERR_IO, "pipe: %s", strerror(errno));
    VEIL_GUARD(c->set.kind == VEIL_LA_KIND_SGX ? tcp_open(c) : socket_open(c));
    VEIL_ENSURE(pthread_create(&c->acceptor, NULL, acceptor, c) == 0, VEIL_ERR_INTERNAL, "cannot start a thread");
    c->acceptor_started = 1;
    return VEIL_RESULT_OK;
}

void cc_local_stop(struct cc_ctx *c)
{
    if (c->acceptor_started) {
        ssize_t n = write(stop_pipe[1], "x", 1);
        (void)n;
        pthread_join(c->acceptor, NULL);
        c->acceptor_started = 0;
    }
    if (c->listen_fd >= 0) {
        close(c->listen_fd);
        c->listen_fd = -1;
        if (c->set.kind != VEIL_LA_KIND_SGX)
            unlink(c->cfg->socket);
    }
    pthread_mutex_lock(&c->conn_lock);
    for (size_t i = 0; i < c->conn_count; i++)
        shutdown(c->conn_fds[i], SHUT_RDWR);
    uint64_t deadline = vd_now_ms() + 2000;
    while (c->conn_count > 0 && vd_now_ms() < deadline) {
        pthread_mutex_unlock(&c->conn_lock);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&c->conn_lock);
    }
    pthread_mutex_unlock(&c->conn_lock);
    for (int i = 0; i < 2; i++)
        if (stop_pipe[i] >= 0)
            close(stop_pipe[i]), stop_pipe[i] = -1;
}
