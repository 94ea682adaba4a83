/* SPDX-License-Identifier: Apache-2.0 */
/* Where model keys come from (struct rt_key_source), and the leases on them.
 *
 *   kbs    a key broker: veil-kbs (or a Trustee KBS holding Veil keys) over RCAR, with this TEE's evidence
 *          (libveil's veil_kbs_fetch_model: the key, the owner's minimum model version and usage policy, in one
 *          attested session). No lease: the key is used for the process's lifetime.
 *   cache  veil-cache on this node, over its Unix socket (lib/cache/local.h; docs/cache.md): a fresh connection per
 *          request, local attestation (sim: reports MACed with the node's report key, bound to both nonces), then
 *          KEY_REQUEST or RENEW. Every key comes with a lease no longer than the cache's own.
 *
 * The lease thread renews each model's lease at half its length. A refusal (the key revoked, the policy no longer
 * admitting the node, this runtime no longer allowed) lapses the model at once; an unreachable cache is retried
 * until the lease ends, and then the model lapses: its decrypted weights are wiped and it answers 503 until the
 * cache gives the key again (models.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cache/lease.h"
#include "cache/local.h"
#include "core/file.h"
#include "core/hex.h"
#include "crypto/crypto.h"
#include "runtime.h"
#include "veil/kbs_client.h"

/* ---- veil-kbs ----------------------------------------------------------------------------------------------- */

struct kbs_source {
    struct rt_key_source base;
    struct veil_kbs_fetch_options options;
};

static VEIL_RESULT kbs_fetch(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                             struct veil_secure_mem *key, uint64_t *min_model_version, char **usage_policy,
                             uint64_t *lease_ms)
{
    struct kbs_source *k = (struct kbs_source *)(void *)src;
    struct veil_kbs_model_release out = {.key = key->data, .key_capacity = key->size, .with_usage_policy = 1};
    *lease_ms = 0;
    veil_status st = veil_kbs_fetch_model(&k->options, model_id, key_version, &out);
    if (st != VEIL_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", veil_last_error());
        VEIL_BAIL(st, "%s", why);
    }
    *min_model_version = out.min_model_version;
    *usage_policy = out.usage_policy;
    VEIL_ENSURE(out.key_size == VEIL_KEY_SIZE, VEIL_ERR_FORMAT, "the broker released a %zu-byte key for %s; "
                "expected %u", out.key_size, model_id, VEIL_KEY_SIZE);
    return VEIL_RESULT_OK;
}

static void source_free(struct rt_key_source *src)
{
    free(src);
}

VEIL_RESULT rt_key_source_kbs(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                              struct rt_key_source **out)
{
    struct kbs_source *k = calloc(1, sizeof *k);
    VEIL_ENSURE(k != NULL, VEIL_ERR_NOMEM, "out of memory");
    k->base = (struct rt_key_source){.fetch = kbs_fetch, .renew = NULL, .free = source_free, .name = "kbs"};
    k->options = (struct veil_kbs_fetch_options){
        .url = c->kbs_url,
        .cacert = c->kbs_cacert[0] != '\0' ? c->kbs_cacert : NULL,
        .tee = tee,
        .provider = pc,
        .timeout_s = (unsigned)c->key_timeout_s,
    };
    *out = &k->base;
    return VEIL_RESULT_OK;
}

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
    VEIL_GUARD(veil_la_send(fd, &hello));
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
    VEIL_GUARD(veil_la_send(fd, q));
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

static VEIL_RESULT cache_fetch(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                               struct veil_secure_mem *key, uint64_t *min_model_version, char **usage_policy,
                               uint64_t *lease_ms)
{
    const struct cache_source *s = (const struct cache_source *)(void *)src;
    struct veil_la_msg q, a;
    VEIL_GUARD(request_of(VEIL_LA_KEY_REQUEST, model_id, key_version, &q));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf body;
    veil_buf_init_secret(&body);
    VEIL_GUARD(detached(cache_exchange(s, &q, VEIL_LA_KEY, &body, &a)));
    VEIL_GUARD(key_out(&a, key, usage_policy));
    *min_model_version = a.min_model_version;
    *lease_ms = a.lease_ms;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT cache_renew(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                               uint64_t *lease_ms)
{
    const struct cache_source *s = (const struct cache_source *)(void *)src;
    struct veil_la_msg q, a;
    VEIL_GUARD(request_of(VEIL_LA_RENEW, model_id, key_version, &q));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf body;
    veil_buf_init_secret(&body);
    VEIL_GUARD(detached(cache_exchange(s, &q, VEIL_LA_LEASE, &body, &a)));
    *lease_ms = a.lease_ms;
    return VEIL_RESULT_OK;
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
    s->base = (struct rt_key_source){.fetch = cache_fetch, .renew = cache_renew, .free = cache_free,
                                     .name = "cache"};
    struct veil_result r = cache_setup(s, c, tee, pc);
    if (!veil_ok(r)) {
        cache_free(&s->base);
        return r;
    }
    *out = &s->base;
    return VEIL_RESULT_OK;
}

VEIL_RESULT rt_key_source_open(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                               struct rt_key_source **out)
{
    if (strcmp(c->key_source, "cache") == 0)
        return rt_key_source_cache(c, tee, pc, out);
    return rt_key_source_kbs(c, tee, pc, out);
}

/* ---- the lease thread ---------------------------------------------------------------------------------------- */

#define RETRY_MAX_MS 1000u  /* a failed renewal or restore is retried at least this often */
#define TICK_MAX_MS 1000u

/* One model's lease: renewed when due, lapsed when refused or ended, restored when lapsed. Returns when it next
 * needs attention. */
static uint64_t lease_step(struct rt_ctx *r, struct rt_model *m, uint64_t now)
{
    struct rt_key_source *src = r->keys;
    if (atomic_load(&m->lapsed)) {
        if (now < m->lease_retry_ms)
            return m->lease_retry_ms;
        m->lease_retry_ms = now + RETRY_MAX_MS;
        if (!veil_ok(rt_model_restore(m, r->cfg, src)))
            vd_log("info", "model-still-lapsed", "{s:s, s:s}", "model", m->name, "detail", veil_last_error());
        return m->lease_retry_ms;
    }
    uint64_t expires = atomic_load(&m->lease_expires_ms);
    if (now >= expires) {
        rt_model_lapse(m, "the key's lease ended without renewal (veil-cache unreachable)");
        m->lease_retry_ms = now;
        return now;
    }
    if (now < m->lease_renew_ms)
        return m->lease_renew_ms < expires ? m->lease_renew_ms : expires;
    uint64_t lease = 0;
    struct veil_result res = src->renew(src, m->info.model_id, m->info.key_version, &lease);
    uint64_t after = vd_now_ms();
    if (veil_ok(res)) {
        uint64_t e = 0;
        veil_lease_schedule(now, lease, after, &e, &m->lease_renew_ms);
        atomic_store(&m->lease_expires_ms, e);
    } else if (res.status == VEIL_ERR_POLICY) {
        vd_log("warn", "lease-refused", "{s:s, s:s}", "model", m->name, "detail", veil_last_error());
        rt_model_lapse(m, "veil-cache refused the key (revoked, or no longer allowed)");
        m->lease_retry_ms = after + RETRY_MAX_MS;
    } else {
        uint64_t left = expires > after ? expires - after : 0;
        m->lease_renew_ms = after + (left / 4 < RETRY_MAX_MS ? left / 4 : RETRY_MAX_MS);
        vd_log("warn", "lease-renewal-failed", "{s:s, s:I, s:s}", "model", m->name, "lease_left_ms",
               (json_int_t)left, "detail", veil_last_error());
    }
    return after;
}

static void *lease_main(void *arg)
{
    struct rt_ctx *r = arg;
    pthread_mutex_lock(&r->lease_lock);
    while (!r->lease_stop) {
        pthread_mutex_unlock(&r->lease_lock);
        uint64_t now = vd_now_ms(), wake = now + TICK_MAX_MS;
        for (size_t i = 0; i < r->model_count; i++) {
            uint64_t next = lease_step(r, r->models[i], now);
            wake = next < wake ? next : wake;
        }
        pthread_mutex_lock(&r->lease_lock);
        now = vd_now_ms();
        if (r->lease_stop || wake <= now)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (wake - now) * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&r->lease_wake, &r->lease_lock, &ts);
    }
    pthread_mutex_unlock(&r->lease_lock);
    return NULL;
}

VEIL_RESULT rt_leases_start(struct rt_ctx *r)
{
    if (r->keys == NULL || r->keys->renew == NULL)
        return VEIL_RESULT_OK;
    pthread_mutex_init(&r->lease_lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&r->lease_wake, &a);
    pthread_condattr_destroy(&a);
    VEIL_ENSURE(pthread_create(&r->lease_thread, NULL, lease_main, r) == 0, VEIL_ERR_INTERNAL,
                "cannot start the lease thread");
    r->lease_thread_started = 1;
    return VEIL_RESULT_OK;
}

void rt_leases_stop(struct rt_ctx *r)
{
    if (!r->lease_thread_started)
        return;
    pthread_mutex_lock(&r->lease_lock);
    r->lease_stop = 1;
    pthread_cond_broadcast(&r->lease_wake);
    pthread_mutex_unlock(&r->lease_lock);
    pthread_join(r->lease_thread, NULL);
    r->lease_thread_started = 0;
    pthread_cond_destroy(&r->lease_wake);
    pthread_mutex_destroy(&r->lease_lock);
}
