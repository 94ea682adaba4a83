/* SPDX-License-Identifier: Apache-2.0 */
/* Model keys from veil-cache on this node (docs/cache.md; lib/cache/local.h): a fresh connection per request, local
 * attestation, then KEY_REQUEST or RENEW. Inside one TEE the connection is the cache's Unix socket (sim: reports
 * MACed with the node's report key, bound to both nonces); between two SGX enclaves it is TLS 1.3 on TCP loopback
 * (cache_socket = tls://ADDR:PORT) with mutual EREPORTs bound to the TLS session (lib/cache/sgx_channel.c). Every
 * key comes with a lease no longer than the cache's own (leases.c renews it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cache/local.h"
#include "core/file.h"
#include "core/hex.h"
#include "crypto/crypto.h"
#include "daemon/http.h"
#include "runtime.h"

/* ---- veil-cache ---------------------------------------------------------------------------------------------- */

#define TLS_SCHEME "tls://"

struct cache_source {
    struct rt_key_source base;
    char socket[sizeof ((struct sockaddr_un *)0)->sun_path];
    uint8_t kind;                                     /* VEIL_LA_KIND_SIM, _SGX or _NONE */
    uint8_t self[VEIL_LA_SIM_MEASUREMENT_SIZE];       /* sim: this runtime's local identity */
    uint8_t report_key[VEIL_LA_SIM_REPORT_KEY_SIZE];  /* sim: the node's report key */
    uint8_t pin[VEIL_LA_SIM_MEASUREMENT_SIZE];        /* the cache's measurement, when pinned (sim, none) */
    int pinned;
    unsigned timeout_ms;
    /* SGX: TLS on loopback to address, the cache's identity pinned (cache_measurement), EREPORT and EGETKEY */
    struct sockaddr_storage address;
    SSL_CTX *tls;
    char gramine_root[1024];
    struct veil_sgx_identity cache_id;
    struct veil_sgx_peer_policy cache_policy;
    struct veil_la_sgx_side sgx;
};

/* Sends m. When the cache has already closed the connection (it refuses a peer as soon as it connects, with an ERROR
 * saying why), that answer is the reason to report, not the broken pipe. */
static VEIL_RESULT send_msg(const struct veil_la_conn *c, const struct veil_la_msg *m, struct veil_buf *body)
{
    struct veil_result r = veil_la_send(c, m);
    if (veil_ok(r))
        return r;
    char why[512];
    snprintf(why, sizeof why, "%s", veil_last_error());
    struct veil_la_msg answer;
    struct veil_result e = veil_la_expect(c, body, VEIL_LA_ERROR, &answer);
    if (e.status == VEIL_ERR_POLICY || (e.status == VEIL_ERR_IO && answer.type == VEIL_LA_ERROR))
        return e;
    VEIL_BAIL(r.status, "%s", why);
}

static void timeouts(int fd, unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static VEIL_RESULT cache_connect(const struct cache_source *s, int *out)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", s->socket);
    int sgx = s->kind == VEIL_LA_KIND_SGX;
    int fd = socket(sgx ? s->address.ss_family : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "socket: %s", strerror(errno));
    timeouts(fd, s->timeout_ms);
    socklen_t tcp_len = s->address.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int ok = sgx ? connect(fd, (const struct sockaddr *)&s->address, tcp_len) == 0
                 : connect(fd, (const struct sockaddr *)&a, sizeof a) == 0;
    if (!ok) {
        int e = errno;
        close(fd);
        VEIL_BAIL(VEIL_ERR_IO, "cannot reach veil-cache at %s: %s", s->socket, strerror(e));
    }
    *out = fd;
    return VEIL_RESULT_OK;
}

/* Without local reports (one confidential VM): a pinned cache is checked by its executable, as it checks ours. */
static VEIL_RESULT check_server(const struct cache_source *s, int fd)
{
    if (!s->pinned || s->kind != VEIL_LA_KIND_NONE)
        return VEIL_RESULT_OK;
    struct ucred cred;
    socklen_t len = sizeof cred;
    VEIL_ENSURE(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, VEIL_ERR_IO, "SO_PEERCRED: %s",
                strerror(errno));
    char exe[64];
    uint8_t m[VEIL_LA_SIM_MEASUREMENT_SIZE];
    snprintf(exe, sizeof exe, "/proc/%ld/exe", (long)cred.pid);
    VEIL_GUARD(veil_la_sim_measure(exe, m));
    VEIL_ENSURE(memcmp(m, s->pin, sizeof m) == 0, VEIL_ERR_POLICY, "the process on %s is not the pinned veil-cache "
                "(cache_measurement)", s->socket);
    return VEIL_RESULT_OK;
}

/* CHALLENGE: the cache's report, made for us, bound to this handshake, of the identity it announced (and pinned). */
static VEIL_RESULT check_challenge(const struct cache_source *s, const uint8_t nonce_r[VEIL_LA_NONCE_SIZE],
                                   const struct veil_la_msg *m)
{
    VEIL_ENSURE(m->kind == s->kind, VEIL_ERR_POLICY, "veil-cache uses local reports of kind %u, this runtime %u",
                m->kind, s->kind);
    if (s->kind != VEIL_LA_KIND_SIM)
        return VEIL_RESULT_OK;
    uint8_t expected[VEIL_LA_BINDING_SIZE], seen[VEIL_LA_SIM_MEASUREMENT_SIZE];
    VEIL_GUARD(veil_la_binding('C', nonce_r, m->nonce, s->self, sizeof s->self, m->target, m->target_size, NULL,
                               expected));
    struct veil_result r = veil_la_sim_verify(s->report_key, s->self, m->report, m->report_size, expected, seen);
    if (!veil_ok(r))
        VEIL_BAIL(VEIL_ERR_POLICY, "veil-cache's local report does not verify: %s", veil_last_error());
    VEIL_ENSURE(memcmp(seen, m->target, sizeof seen) == 0, VEIL_ERR_POLICY,
                "veil-cache's local report is of another identity than it announced");
    VEIL_ENSURE(!s->pinned || memcmp(seen, s->pin, sizeof seen) == 0, VEIL_ERR_POLICY,
                "veil-cache's measurement is not the pinned one (cache_measurement)");
    return VEIL_RESULT_OK;
}

/* ATTEST: our report for the cache, bound to this handshake. */
static VEIL_RESULT attest(const struct cache_source *s, const struct veil_la_conn *c,
                          const uint8_t nonce_r[VEIL_LA_NONCE_SIZE],
                          const struct veil_la_msg *ch)
{
    uint8_t binding[VEIL_LA_BINDING_SIZE], report[VEIL_LA_SIM_REPORT_SIZE];
    int sim = s->kind == VEIL_LA_KIND_SIM;
    if (sim) {
        VEIL_GUARD(veil_la_binding('R', nonce_r, ch->nonce, s->self, sizeof s->self, ch->target, ch->target_size,
                                   NULL, binding));
        VEIL_GUARD(veil_la_sim_report(s->report_key, ch->target, s->self, binding, report));
    }
    struct veil_la_msg m = {.type = VEIL_LA_ATTEST, .kind = s->kind, .report = report,
                            .report_size = sim ? sizeof report : 0};
    return veil_la_send(c, &m);
}

static VEIL_RESULT handshake(const struct cache_source *s, const struct veil_la_conn *c, struct veil_buf *body)
{
    if (s->kind == VEIL_LA_KIND_SGX) { /* no SO_PEERCRED across enclaves: the cache's REPORT is its identity */
        struct veil_sgx_report cache;
        return veil_la_sgx_connect(c, &s->sgx, body, &cache);
    }
    VEIL_GUARD(check_server(s, c->fd));
    struct veil_la_msg hello = {.type = VEIL_LA_HELLO, .kind = s->kind, .target = s->self,
                                .target_size = s->kind == VEIL_LA_KIND_SIM ? sizeof s->self : 0};
    VEIL_GUARD(veil_random(hello.nonce, sizeof hello.nonce));
    VEIL_GUARD(send_msg(c, &hello, body));
    struct veil_la_msg ch;
    VEIL_GUARD(veil_la_expect(c, body, VEIL_LA_CHALLENGE, &ch));
    VEIL_GUARD(check_challenge(s, hello.nonce, &ch));
    VEIL_GUARD(attest(s, c, hello.nonce, &ch));
    struct veil_la_msg ready;
    return veil_la_expect(c, body, VEIL_LA_READY, &ready);
}

/* One request on a connection already open: attest, ask, read the answer. */
static VEIL_RESULT exchange_on(const struct cache_source *s, const struct veil_la_conn *c,
                               const struct veil_la_msg *q, uint8_t want, struct veil_buf *body, struct veil_la_msg *a)
{
    VEIL_GUARD(handshake(s, c, body));
    VEIL_GUARD(send_msg(c, q, body));
    VEIL_GUARD(veil_la_expect(c, body, want, a));
    VEIL_ENSURE(a->type != VEIL_LA_KEY || a->key_version == q->key_version, VEIL_ERR_FORMAT,
                "veil-cache answered for key version %u, not %u", a->key_version, q->key_version);
    return VEIL_RESULT_OK;
}

/* One request on a fresh, attested connection (SGX: in a fresh TLS session); the answer decoded into a (pointing
 * into body). */
static VEIL_RESULT cache_exchange(const struct cache_source *s, const struct veil_la_msg *q, uint8_t want,
                                  struct veil_buf *body, struct veil_la_msg *a)
{
    VEIL_DEFER(veil_fd_close) int fd = -1;
    VEIL_GUARD(cache_connect(s, &fd));
    struct veil_la_conn c = {.fd = fd, .ssl = NULL};
    if (s->kind == VEIL_LA_KIND_SGX)
        VEIL_GUARD(veil_la_tls_open(s->tls, fd, &c));
    struct veil_result r = exchange_on(s, &c, q, want, body, a);
    veil_la_tls_close(&c);
    return r;
}

static VEIL_RESULT request_of(uint8_t type, const char *model_id, uint32_t key_version, struct veil_la_msg *q)
{
    memset(q, 0, sizeof *q);
    q->type = type;
    q->key_version = key_version;
    VEIL_ENSURE(strlen(model_id) < sizeof q->model_id, VEIL_ERR_ARG, "model id too long");
    strcpy(q->model_id, model_id);
    return VEIL_RESULT_OK;
}

/* The key and usage policy out of a KEY answer. */
static VEIL_RESULT key_out(const struct veil_la_msg *a, struct veil_secure_mem *key, char **usage_policy)
{
    VEIL_ENSURE(a->key_size == VEIL_KEY_SIZE && key->size >= VEIL_KEY_SIZE, VEIL_ERR_FORMAT,
                "veil-cache gave a %zu-byte key; expected %u", a->key_size, VEIL_KEY_SIZE);
    if (a->has_usage) {
        *usage_policy = malloc(a->usage_size + 1);
        VEIL_ENSURE(*usage_policy != NULL, VEIL_ERR_NOMEM, "out of memory");
        memcpy(*usage_policy, a->usage, a->usage_size);
        (*usage_policy)[a->usage_size] = '\0';
    }
    memcpy(key->data, a->key, VEIL_KEY_SIZE);
    return VEIL_RESULT_OK;
}

/* The error just raised, raised again from a copy: callers format veil_last_error() into their own message, which
 * is written to the same buffer. */
static VEIL_RESULT detached(struct veil_result r)
{
    if (veil_ok(r))
        return r;
    char why[512];
    snprintf(why, sizeof why, "%s", veil_last_error());
    VEIL_BAIL(r.status, "%s", why);
}

/* The usage counts of an answer (NULL when it carried none). */
static VEIL_RESULT counts_out(const struct veil_la_msg *a, char **usage_counts)
{
    *usage_counts = NULL;
    if (a->counts_size == 0)
        return VEIL_RESULT_OK;
    *usage_counts = malloc(a->counts_size + 1);
    VEIL_ENSURE(*usage_counts != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(*usage_counts, a->counts, a->counts_size);
    (*usage_counts)[a->counts_size] = '\0';
    return VEIL_RESULT_OK;
}

static VEIL_RESULT cache_fetch(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                               struct veil_secure_mem *key, uint64_t *min_model_version, char **usage_policy,
                               char **usage_counts, uint64_t *lease_ms)
{
    const struct cache_source *s = (const struct cache_source *)(void *)src;
    struct veil_la_msg q, a;
    VEIL_GUARD(request_of(VEIL_LA_KEY_REQUEST, model_id, key_version, &q));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf body;
    veil_buf_init_secret(&body);
    VEIL_GUARD(detached(cache_exchange(s, &q, VEIL_LA_KEY, &body, &a)));
    VEIL_GUARD(key_out(&a, key, usage_policy));
    struct veil_result r = counts_out(&a, usage_counts);
    if (!veil_ok(r)) {
        free(*usage_policy);
        *usage_policy = NULL;
        return r;
    }
    *min_model_version = a.min_model_version;
    *lease_ms = a.lease_ms;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT cache_renew(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                               const char *usage_report, char **usage_counts, uint64_t *lease_ms)
{
    const struct cache_source *s = (const struct cache_source *)(void *)src;
    struct veil_la_msg q, a;
    *usage_counts = NULL;
    VEIL_GUARD(request_of(VEIL_LA_RENEW, model_id, key_version, &q));
    q.counts = usage_report;
    q.counts_size = usage_report != NULL ? strlen(usage_report) : 0;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf body;
    veil_buf_init_secret(&body);
    VEIL_GUARD(detached(cache_exchange(s, &q, VEIL_LA_LEASE, &body, &a)));
    VEIL_GUARD(counts_out(&a, usage_counts));
    *lease_ms = a.lease_ms;
    return VEIL_RESULT_OK;
}

/* A last report: a renewal whose lease goes unused. */
static VEIL_RESULT cache_report(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                                const char *usage_report, char **usage_counts)
{
    uint64_t lease = 0;
    return cache_renew(src, model_id, key_version, usage_report, usage_counts, &lease);
}

static void cache_free(struct rt_key_source *src)
{
    struct cache_source *s = (struct cache_source *)(void *)src;
    veil_wipe(s->report_key, sizeof s->report_key);
    veil_la_tls_ctx_free(s->tls);
    free(s);
}

/* SGX: TLS to the cache's loopback address; this enclave's TARGETINFO; the cache pinned by its SGX identity; EREPORT
 * through Gramine and the report key from EGETKEY (which exists only inside the enclave). */
static VEIL_RESULT sgx_setup(struct cache_source *s, const struct rt_config *c, const struct veil_provider_config *pc)
{
    int loopback = 0;
    VEIL_ENSURE(strncmp(c->cache_socket, TLS_SCHEME, strlen(TLS_SCHEME)) == 0, VEIL_ERR_ARG,
                "key_source = cache with tee = sgx: two enclaves cannot share a Unix socket; set cache_socket = "
                "tls://127.0.0.1:PORT (veil-cache's local_listen)");
    VEIL_GUARD(vd_listen_parse(c->cache_socket + strlen(TLS_SCHEME), &s->address, &loopback));
    VEIL_ENSURE(loopback, VEIL_ERR_ARG, "cache_socket: the cache's address must be a loopback address");
    VEIL_ENSURE(c->cache_measurement[0] != '\0', VEIL_ERR_ARG, "key_source = cache with tee = sgx needs "
                "cache_measurement (the cache's MRENCLAVE, or MRSIGNER:ISVPRODID:MIN_ISVSVN)");
    VEIL_GUARD(veil_sgx_identity_parse(c->cache_measurement, &s->cache_id));
    veil_sgx_identity_policy(&s->cache_id, &s->cache_policy);
    VEIL_ENSURE(snprintf(s->gramine_root, sizeof s->gramine_root, "%s",
                         pc->gramine_root != NULL ? pc->gramine_root : "") < (int)sizeof s->gramine_root,
                VEIL_ERR_ARG, "gramine_root: too long");
    VEIL_GUARD(veil_sgx_my_target_info(s->gramine_root, s->sgx.target_info));
    s->sgx.ops = (struct veil_la_sgx_ops){.report = veil_la_sgx_gramine_report,
                                          .report_key = veil_sgx_egetkey_report_key, .ctx = s->gramine_root};
    s->sgx.peers = &s->cache_policy;
    s->sgx.peer_count = 1;
    return veil_la_tls_ctx_new(0, &s->tls);
}

static VEIL_RESULT cache_setup(struct cache_source *s, const struct rt_config *c, veil_tee tee,
                               const struct veil_provider_config *pc)
{
    snprintf(s->socket, sizeof s->socket, "%s", c->cache_socket);
    s->timeout_ms = (unsigned)c->key_timeout_s * 1000u;
    if (tee == VEIL_TEE_SGX) {
        s->kind = VEIL_LA_KIND_SGX;
        return sgx_setup(s, c, pc);
    }
    VEIL_ENSURE(strncmp(c->cache_socket, TLS_SCHEME, strlen(TLS_SCHEME)) != 0, VEIL_ERR_ARG,
                "cache_socket = tls://...: the TLS transport is for two SGX enclaves (tee = sgx); inside one TEE "
                "give the cache's Unix socket");
    if (c->cache_measurement[0] != '\0') {
        VEIL_GUARD(veil_hex_decode(VEIL_HEX_ANY_CASE, c->cache_measurement, strlen(c->cache_measurement), s->pin,
                                   sizeof s->pin, VEIL_ERR_ARG, "cache_measurement (96 hex digits)"));
        s->pinned = 1;
    }
    s->kind = tee == VEIL_TEE_SIM ? VEIL_LA_KIND_SIM : VEIL_LA_KIND_NONE;
    if (s->kind != VEIL_LA_KIND_SIM)
        return VEIL_RESULT_OK;
    VEIL_GUARD(veil_la_sim_measure("/proc/self/exe", s->self));
    return veil_la_sim_report_key(pc->sim_dir, s->report_key);
}

VEIL_RESULT rt_key_source_cache(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                                struct rt_key_source **out)
{
    struct cache_source *s = calloc(1, sizeof *s);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    s->base = (struct rt_key_source){.fetch = cache_fetch, .renew = cache_renew, .report = cache_report,
                                     .free = cache_free, .name = "cache"};
    struct veil_result r = cache_setup(s, c, tee, pc);
    if (!veil_ok(r)) {
        cache_free(&s->base);
        return r;
    }
    *out = &s->base;
    return VEIL_RESULT_OK;
}
