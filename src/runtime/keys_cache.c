/* SPDX-License-Identifier: Apache-2.0 */
/* Model keys from veil-cache on this node (docs/cache.md; lib/cache/local.h): a fresh connection to its Unix socket
 * per request, local attestation (sim: reports MACed with the node's report key, bound to both nonces), then
 * KEY_REQUEST or RENEW. Every key comes with a lease no longer than the cache's own (leases.c renews it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cache/local.h"
#include "core/file.h"
#include "core/hex.h"
#include "crypto/crypto.h"
#include "runtime.h"

/* ---- veil-cache ---------------------------------------------------------------------------------------------- */

struct cache_source {
    struct rt_key_source base;
    char socket[sizeof ((struct sockaddr_un *)0)->sun_path];
    uint8_t kind;                                     /* VEIL_LA_KIND_SIM or VEIL_LA_KIND_NONE */
    uint8_t self[VEIL_LA_SIM_MEASUREMENT_SIZE];       /* sim: this runtime's local identity */
    uint8_t report_key[VEIL_LA_SIM_REPORT_KEY_SIZE];  /* sim: the node's report key */
    uint8_t pin[VEIL_LA_SIM_MEASUREMENT_SIZE];        /* the cache's measurement, when pinned */
    int pinned;
    unsigned timeout_ms;
};

/* What a refusal means for the key: the cache's definitive answers (VEIL_ERR_POLICY) against the transient ones. */
static veil_status refusal_status(uint16_t code)
{
    switch (code) {
    case VEIL_LA_E_PEER:
    case VEIL_LA_E_REPORT:
    case VEIL_LA_E_NOT_ALLOWED:
    case VEIL_LA_E_REVOKED: return VEIL_ERR_POLICY;
    default: return VEIL_ERR_IO;
    }
}

/* Receives the next message, which must be of type want; an ERROR becomes the matching failure. */
static VEIL_RESULT expect(int fd, struct veil_buf *body, uint8_t want, struct veil_la_msg *m)
{
    VEIL_GUARD(veil_la_recv(fd, body, m));
    if (m->type == VEIL_LA_ERROR)
        VEIL_BAIL(refusal_status(m->error), "veil-cache refused (%s): %s", veil_la_error_name(m->error), m->message);
    VEIL_ENSURE(m->type == want, VEIL_ERR_FORMAT, "veil-cache sent message type %u where %u was expected", m->type,
                want);
    return VEIL_RESULT_OK;
}

/* Sends m. When the cache has already closed the connection (it refuses a peer as soon as it connects, with an ERROR
 * saying why), that answer is the reason to report, not the broken pipe. */
static VEIL_RESULT send_msg(int fd, const struct veil_la_msg *m, struct veil_buf *body)
{
    struct veil_result r = veil_la_send(fd, m);
    if (veil_ok(r))
        return r;
    char why[512];
    snprintf(why, sizeof why, "%s", veil_last_error());
    struct veil_la_msg answer;
    struct veil_result e = veil_la_recv(fd, body, &answer);
    if (veil_ok(e) && answer.type == VEIL_LA_ERROR)
        VEIL_BAIL(refusal_status(answer.error), "veil-cache refused (%s): %s", veil_la_error_name(answer.error),
                  answer.message);
    VEIL_BAIL(r.status, "%s", why);
}

static VEIL_RESULT cache_connect(const struct cache_source *s, int *out)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", s->socket);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "socket: %s", strerror(errno));
    struct timeval tv = {(time_t)(s->timeout_ms / 1000), (suseconds_t)(s->timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)&a, sizeof a) != 0) {
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
    VEIL_GUARD(veil_la_binding('C', nonce_r, m->nonce, s->self, sizeof s->self, m->target, m->target_size, expected));
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
static VEIL_RESULT attest(const struct cache_source *s, int fd, const uint8_t nonce_r[VEIL_LA_NONCE_SIZE],
                          const struct veil_la_msg *ch)
{
    uint8_t binding[VEIL_LA_BINDING_SIZE], report[VEIL_LA_SIM_REPORT_SIZE];
    int sim = s->kind == VEIL_LA_KIND_SIM;
    if (sim) {
        VEIL_GUARD(veil_la_binding('R', nonce_r, ch->nonce, s->self, sizeof s->self, ch->target, ch->target_size,
                                   binding));
        VEIL_GUARD(veil_la_sim_report(s->report_key, ch->target, s->self, binding, report));
    }
    struct veil_la_msg m = {.type = VEIL_LA_ATTEST, .kind = s->kind, .report = report,
                            .report_size = sim ? sizeof report : 0};
    return veil_la_send(fd, &m);
}

static VEIL_RESULT handshake(const struct cache_source *s, int fd, struct veil_buf *body)
{
    VEIL_GUARD(check_server(s, fd));
    struct veil_la_msg hello = {.type = VEIL_LA_HELLO, .kind = s->kind, .target = s->self,
                                .target_size = s->kind == VEIL_LA_KIND_SIM ? sizeof s->self : 0};
    VEIL_GUARD(veil_random(hello.nonce, sizeof hello.nonce));
    VEIL_GUARD(send_msg(fd, &hello, body));
    struct veil_la_msg ch;
    VEIL_GUARD(expect(fd, body, VEIL_LA_CHALLENGE, &ch));
    VEIL_GUARD(check_challenge(s, hello.nonce, &ch));
    VEIL_GUARD(attest(s, fd, hello.nonce, &ch));
    struct veil_la_msg ready;
    return expect(fd, body, VEIL_LA_READY, &ready);
}

/* One request on a fresh, attested connection; the answer decoded into a (pointing into body). */
static VEIL_RESULT cache_exchange(const struct cache_source *s, const struct veil_la_msg *q, uint8_t want,
                                  struct veil_buf *body, struct veil_la_msg *a)
{
    VEIL_DEFER(veil_fd_close) int fd = -1;
    VEIL_GUARD(cache_connect(s, &fd));
    VEIL_GUARD(handshake(s, fd, body));
    VEIL_GUARD(send_msg(fd, q, body));
    VEIL_GUARD(expect(fd, body, want, a));
    VEIL_ENSURE(a->type != VEIL_LA_KEY || a->key_version == q->key_version, VEIL_ERR_FORMAT,
                "veil-cache answered for key version %u, not %u", a->key_version, q->key_version);
    return VEIL_RESULT_OK;
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
    free(s);
}

static VEIL_RESULT cache_setup(struct cache_source *s, const struct rt_config *c, veil_tee tee,
                               const struct veil_provider_config *pc)
{
    snprintf(s->socket, sizeof s->socket, "%s", c->cache_socket);
    s->timeout_ms = (unsigned)c->key_timeout_s * 1000u;
    if (c->cache_measurement[0] != '\0') {
        VEIL_GUARD(veil_hex_decode(VEIL_HEX_ANY_CASE, c->cache_measurement, strlen(c->cache_measurement), s->pin,
                                   sizeof s->pin, VEIL_ERR_ARG, "cache_measurement (96 hex digits)"));
        s->pinned = 1;
    }
    VEIL_ENSURE(tee != VEIL_TEE_SGX, VEIL_ERR_UNSUPPORTED,
                "key_source = cache with SGX: local attestation between Gramine enclaves is not built (docs/cache.md)");
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
