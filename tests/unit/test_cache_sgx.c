/* SPDX-License-Identifier: Apache-2.0 */
/* lib/cache: the SGX transport between two enclaves (local.h, "the TLS channel of kind SGX" and "the SGX handshake
 * over TLS"), run whole without SGX: a cache thread (veil_la_sgx_accept, then key requests checked against a
 * per-model allow-list as veil-cache does) and a runtime (veil_la_sgx_connect, then KEY_REQUEST) talk over real
 * TLS 1.3 on TCP loopback. EREPORT and EGETKEY are replaced by a fake CPU: a REPORT's MAC is AES-128-CMAC under a key
 * derived from a CPU secret, the TARGET enclave's MRENCLAVE and the KEYID, so that, as on SGX, only the target can
 * check it. Checked: a key delivered; a report for another target, a report replayed from an earlier session, a
 * report bound to another TLS session (a relay between two TLS sessions), a DEBUG enclave, an enclave allowed for no
 * model — all refused with ERROR report; an MRENCLAVE not allowed for the model asked — ERROR not-allowed; the
 * runtime's refusal of a cache that is not the pinned one, of a relayed CHALLENGE and of a DEBUG cache; TLS 1.2
 * refused; the binding formula recomputed independently. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "cache/local.h"
#include "core/buf.h"
#include "core/cursor.h"
#include "crypto/crypto.h"

#define MODEL_KEY_BYTE 0x6b

/* ---- a fake CPU ------------------------------------------------------------------------------------------------- */

static const uint8_t cpu_secret[32] = {0xc9, 0x1, 0x2, 0x3};

struct enclave {
    uint8_t mrenclave[32];
    uint64_t flags;
    uint8_t ti[VEIL_SGX_TARGETINFO_SIZE];     /* its TARGETINFO: MRENCLAVE at offset 0 */
    const uint8_t *forced_target;             /* test knob: report for this TARGETINFO instead of the one asked */
    uint8_t last_report[VEIL_SGX_REPORT_SIZE];
};

static void enclave_init(struct enclave *e, uint8_t id, uint64_t extra_flags)
{
    memset(e, 0, sizeof *e);
    memset(e->mrenclave, id, sizeof e->mrenclave);
    e->flags = VEIL_SGX_FLAG_INIT | VEIL_SGX_FLAG_MODE64BIT | extra_flags;
    memcpy(e->ti, e->mrenclave, 32);
    veil_store_u64le(e->ti + 32, e->flags);
}

/* The report key of the enclave whose MRENCLAVE is target_mr, for key_id (EGETKEY's stand-in). */
static struct veil_result key_for(const uint8_t target_mr[32], const uint8_t key_id[32], uint8_t key[16])
{
    uint8_t in[96], d[32];
    memcpy(in, cpu_secret, 32), memcpy(in + 32, target_mr, 32), memcpy(in + 64, key_id, 32);
    struct veil_result r = veil_sha256(in, sizeof in, d);
    memcpy(key, d, 16);
    return r;
}

static struct veil_result fake_egetkey(void *ctx, const uint8_t key_id[VEIL_SGX_KEYID_SIZE], uint8_t key[16])
{
    const struct enclave *e = ctx;
    return key_for(e->mrenclave, key_id, key);
}

static struct veil_result fake_ereport(void *ctx, const uint8_t ti[VEIL_SGX_TARGETINFO_SIZE],
                                       const uint8_t rd[VEIL_REPORT_DATA_SIZE], uint8_t out[VEIL_SGX_REPORT_SIZE])
{
    struct enclave *e = ctx;
    const uint8_t *target = e->forced_target != NULL ? e->forced_target : ti;
    memset(out, 0, VEIL_SGX_REPORT_SIZE);
    veil_store_u64le(out + 48, e->flags);
    veil_store_u64le(out + 56, 0xe7);
    memcpy(out + 64, e->mrenclave, 32);
    memset(out + 128, 0x5e, 32); /* MRSIGNER */
    veil_store_u16le(out + 256, 9);
    veil_store_u16le(out + 258, 4);
    memcpy(out + 320, rd, 64);
    VEIL_GUARD(veil_random(out + 384, 32)); /* KEYID */
    uint8_t key[16];
    VEIL_GUARD(key_for(target, out + 384, key));
    VEIL_GUARD(veil_sgx_report_mac(key, out, out + 416));
    memcpy(e->last_report, out, VEIL_SGX_REPORT_SIZE);
    return VEIL_RESULT_OK;
}

static struct veil_la_sgx_side side_of(struct enclave *e, const struct veil_sgx_peer_policy *peers, size_t count)
{
    struct veil_la_sgx_side s = {.ops = {.report = fake_ereport, .report_key = fake_egetkey, .ctx = e},
                                 .peers = peers, .peer_count = count};
    memcpy(s.target_info, e->ti, sizeof s.target_info);
    return s;
}

/* ---- sockets ---------------------------------------------------------------------------------------------------- */

static void timeouts(int fd)
{
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int listen_loopback(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_loopback(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    timeouts(fd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int accept_one(int lfd)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0)
        timeouts(fd);
    return fd;
}

/* ---- the cache's side: one connection, as veil-cache serves it --------------------------------------------------- */

#define ALLOW_MAX 4

struct cache {
    struct enclave e;
    SSL_CTX *tls;
    int lfd;
    uint16_t port;
    struct veil_sgx_identity ids[ALLOW_MAX];
    struct veil_sgx_peer_policy policies[ALLOW_MAX];
    const char *models[ALLOW_MAX];
    size_t allow_count;
    pthread_t thread;
    /* what happened */
    veil_status handshake_status;
    uint16_t refusal;         /* the ERROR code the handshake was answered with */
    uint16_t request_refusal; /* the ERROR code of the last key request */
    int keys_served;
    uint8_t peer_mr[32];
    char detail[512];
};

static void cache_allow(struct cache *c, const char *model, const uint8_t mr[32])
{
    struct veil_sgx_identity *id = &c->ids[c->allow_count];
    memset(id, 0, sizeof *id);
    memcpy(id->mr, mr, 32);
    veil_sgx_identity_policy(id, &c->policies[c->allow_count]);
    c->models[c->allow_count++] = model;
}

static void send_error(const struct veil_la_conn *lc, uint16_t code)
{
    struct veil_la_msg m;
    veil_la_error_msg(&m, code, veil_la_error_name(code));
    struct veil_result r = veil_la_send(lc, &m);
    (void)r;
}

/* KEY_REQUEST: the model's allow entries must admit the runtime's REPORT (src/cache/peer.c's rule). */
static void cache_request(struct cache *c, const struct veil_la_conn *lc, const struct veil_sgx_report *peer,
                          const struct veil_la_msg *q)
{
    struct veil_sgx_peer_policy mine[ALLOW_MAX];
    size_t n = 0;
    for (size_t i = 0; i < c->allow_count; i++)
        if (strcmp(c->models[i], q->model_id) == 0)
            mine[n++] = c->policies[i];
    if (!veil_ok(veil_sgx_report_admit_any(peer, mine, n))) {
        c->request_refusal = VEIL_LA_E_NOT_ALLOWED;
        send_error(lc, VEIL_LA_E_NOT_ALLOWED);
        return;
    }
    uint8_t key[32];
    memset(key, MODEL_KEY_BYTE, sizeof key);
    struct veil_la_msg m = {.type = VEIL_LA_KEY, .key_version = q->key_version, .lease_ms = 1000, .key = key,
                            .key_size = sizeof key};
    if (veil_ok(veil_la_send(lc, &m)))
        c->keys_served++;
}

static void cache_session(struct cache *c, const struct veil_la_conn *lc)
{
    struct veil_la_sgx_side side = side_of(&c->e, c->policies, c->allow_count);
    struct veil_buf body;
    veil_buf_init_secret(&body);
    struct veil_sgx_report peer;
    struct veil_result r = veil_la_sgx_accept(lc, &side, &body, &peer, &c->refusal);
    c->handshake_status = r.status;
    if (!veil_ok(r)) {
        snprintf(c->detail, sizeof c->detail, "%s", veil_last_error());
        if (c->refusal != 0)
            send_error(lc, c->refusal);
    } else {
        memcpy(c->peer_mr, peer.mrenclave, 32);
        struct veil_la_msg q;
        while (veil_ok(veil_la_recv(lc, &body, &q)) && q.type == VEIL_LA_KEY_REQUEST)
            cache_request(c, lc, &peer, &q);
    }
    veil_buf_cleanup(&body);
}

static void *cache_main(void *arg)
{
    struct cache *c = arg;
    int fd = accept_one(c->lfd);
    if (fd < 0)
        return NULL;
    struct veil_la_conn lc;
    if (veil_ok(veil_la_tls_open(c->tls, fd, &lc))) {
        cache_session(c, &lc);
        veil_la_tls_close(&lc);
    } else {
        c->handshake_status = VEIL_ERR_IO;
        snprintf(c->detail, sizeof c->detail, "%s", veil_last_error());
    }
    close(fd);
    return NULL;
}

static void cache_init(struct cache *c, uint8_t id, uint64_t extra_flags)
{
    memset(c, 0, sizeof *c);
    enclave_init(&c->e, id, extra_flags);
    assert_true(veil_ok(veil_la_tls_ctx_new(1, &c->tls)));
    c->lfd = listen_loopback(&c->port);
}

/* Serves one connection in a thread. */
static void cache_start(struct cache *c)
{
    c->handshake_status = VEIL_OK;
    c->refusal = c->request_refusal = 0;
    c->keys_served = 0;
    c->detail[0] = '\0';
    assert_int_equal(pthread_create(&c->thread, NULL, cache_main, c), 0);
}

static void cache_join(struct cache *c)
{
    assert_int_equal(pthread_join(c->thread, NULL), 0);
}

static void cache_cleanup(struct cache *c)
{
    close(c->lfd);
    veil_la_tls_ctx_free(c->tls);
}

/* ---- the runtime's side, as veil-runtime asks ------------------------------------------------------------------ */

struct runtime {
    struct enclave e;
    SSL_CTX *tls;
    struct veil_sgx_identity pin;      /* the cache's MRENCLAVE (cache_measurement) */
    struct veil_sgx_peer_policy policy;
    uint8_t cache_mr[32];              /* the cache's MRENCLAVE, as its verified REPORT says */
    char detail[512];
};

static void runtime_init(struct runtime *rt, uint8_t id, uint64_t extra_flags, uint8_t pinned_cache)
{
    memset(rt, 0, sizeof *rt);
    enclave_init(&rt->e, id, extra_flags);
    memset(rt->pin.mr, pinned_cache, 32);
    veil_sgx_identity_policy(&rt->pin, &rt->policy);
    assert_true(veil_ok(veil_la_tls_ctx_new(0, &rt->tls)));
}

static struct veil_result fetch_on(struct runtime *rt, const struct veil_la_conn *lc, const char *model,
                                   struct veil_buf *body, uint8_t key[32])
{
    struct veil_la_sgx_side side = side_of(&rt->e, &rt->policy, 1);
    struct veil_sgx_report cache;
    VEIL_GUARD(veil_la_sgx_connect(lc, &side, body, &cache));
    memcpy(rt->cache_mr, cache.mrenclave, 32);
    struct veil_la_msg q = {.type = VEIL_LA_KEY_REQUEST, .key_version = 1}, a;
    snprintf(q.model_id, sizeof q.model_id, "%s", model);
    VEIL_GUARD(veil_la_send(lc, &q));
    VEIL_GUARD(veil_la_expect(lc, body, VEIL_LA_KEY, &a));
    VEIL_ENSURE(a.key_size == 32, VEIL_ERR_FORMAT, "a key of %zu bytes", a.key_size);
    memcpy(key, a.key, 32);
    return VEIL_RESULT_OK;
}

/* A fresh TCP connection and TLS session to port, the handshake, one KEY_REQUEST for model: the status. */
static veil_status runtime_fetch(struct runtime *rt, uint16_t port, const char *model, uint8_t key[32])
{
    int fd = connect_loopback(port);
    struct veil_la_conn lc;
    struct veil_result r = veil_la_tls_open(rt->tls, fd, &lc);
    if (veil_ok(r)) {
        struct veil_buf body;
        veil_buf_init_secret(&body);
        r = fetch_on(rt, &lc, model, &body, key);
        veil_buf_cleanup(&body);
        veil_la_tls_close(&lc);
    }
    if (!veil_ok(r))
        snprintf(rt->detail, sizeof rt->detail, "%s", veil_last_error());
    close(fd);
    return r.status;
}

static void runtime_cleanup(struct runtime *rt)
{
    veil_la_tls_ctx_free(rt->tls);
}

/* ---- scenarios -------------------------------------------------------------------------------------------------- */

enum { CACHE_ID = 0xca, RUNTIME_A = 0xa1, RUNTIME_B = 0xb2, STRANGER = 0x55 };

struct world {
    struct cache cache;
    struct runtime rt;
};

/* A cache (MRENCLAVE CACHE_ID) allowing RUNTIME_A for model "a" and RUNTIME_B for model "b"; a runtime of id
 * pinning the cache. */
static void world_init(struct world *w, uint8_t runtime_id, uint64_t runtime_flags, uint64_t cache_flags)
{
    cache_init(&w->cache, CACHE_ID, cache_flags);
    uint8_t a[32], b[32];
    memset(a, RUNTIME_A, 32), memset(b, RUNTIME_B, 32);
    cache_allow(&w->cache, "a", a);
    cache_allow(&w->cache, "b", b);
    runtime_init(&w->rt, runtime_id, runtime_flags, CACHE_ID);
}

static void world_cleanup(struct world *w)
{
    cache_cleanup(&w->cache);
    runtime_cleanup(&w->rt);
}

static veil_status world_fetch(struct world *w, const char *model, uint8_t key[32])
{
    cache_start(&w->cache);
    veil_status st = runtime_fetch(&w->rt, w->cache.port, model, key);
    cache_join(&w->cache);
    return st;
}

static void test_key_delivered(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, RUNTIME_A, 0, 0);
    uint8_t key[32] = {0}, want[32];
    memset(want, MODEL_KEY_BYTE, sizeof want);
    assert_int_equal(world_fetch(&w, "a", key), VEIL_OK);
    assert_memory_equal(key, want, 32);
    assert_int_equal(w.cache.handshake_status, VEIL_OK);
    assert_int_equal(w.cache.keys_served, 1);
    assert_int_equal(w.cache.peer_mr[0], RUNTIME_A); /* each side learnt the other's MRENCLAVE from its REPORT */
    assert_int_equal(w.rt.cache_mr[0], CACHE_ID);
    /* twice: a second session is a fresh handshake */
    memset(key, 0, sizeof key);
    assert_int_equal(world_fetch(&w, "a", key), VEIL_OK);
    assert_memory_equal(key, want, 32);
    world_cleanup(&w);
}

/* An MRENCLAVE allowed for model "b" only asks for "a": attested, then ERROR not-allowed. */
static void test_not_allowed_for_model(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, RUNTIME_B, 0, 0);
    uint8_t key[32];
    assert_int_equal(world_fetch(&w, "a", key), VEIL_ERR_POLICY);
    assert_non_null(strstr(w.rt.detail, "not-allowed"));
    assert_int_equal(w.cache.handshake_status, VEIL_OK);
    assert_int_equal(w.cache.request_refusal, VEIL_LA_E_NOT_ALLOWED);
    assert_int_equal(w.cache.keys_served, 0);
    assert_int_equal(world_fetch(&w, "b", key), VEIL_OK); /* its own model */
    world_cleanup(&w);
}

/* An enclave allowed for no model is refused at the handshake (report). */
static void test_stranger_refused(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, STRANGER, 0, 0);
    uint8_t key[32];
    assert_int_equal(world_fetch(&w, "a", key), VEIL_ERR_POLICY);
    assert_int_equal(w.cache.refusal, VEIL_LA_E_REPORT);
    assert_int_equal(w.cache.handshake_status, VEIL_ERR_POLICY);
    assert_non_null(strstr(w.rt.detail, "report"));
    world_cleanup(&w);
}

static void test_debug_refused(void **state)
{
    (void)state;
    struct world w;
    uint8_t key[32];
    world_init(&w, RUNTIME_A, VEIL_SGX_FLAG_DEBUG, 0); /* a DEBUG runtime */
    assert_int_equal(world_fetch(&w, "a", key), VEIL_ERR_POLICY);
    assert_int_equal(w.cache.refusal, VEIL_LA_E_REPORT);
    assert_int_equal(w.cache.handshake_status, VEIL_ERR_POLICY);
    assert_non_null(strstr(w.cache.detail, "DEBUG"));
    world_cleanup(&w);
    world_init(&w, RUNTIME_A, 0, VEIL_SGX_FLAG_DEBUG); /* a DEBUG cache */
    assert_int_equal(world_fetch(&w, "a", key), VEIL_ERR_POLICY);
    assert_non_null(strstr(w.rt.detail, "DEBUG"));
    assert_int_equal(w.cache.keys_served, 0);
    world_cleanup(&w);
}

/* A REPORT MACed for another target enclave: the verifier's report key does not check it. */
static void test_other_target_refused(void **state)
{
    (void)state;
    struct world w;
    uint8_t key[32];
    struct enclave other;
    enclave_init(&other, 0x77, 0);
    world_init(&w, RUNTIME_A, 0, 0);
    w.rt.e.forced_target = other.ti; /* the runtime's report, for someone else */
    assert_int_equal(world_fetch(&w, "a", key), VEIL_ERR_POLICY);
    assert_int_equal(w.cache.refusal, VEIL_LA_E_REPORT);
    assert_int_equal(w.cache.handshake_status, VEIL_ERR_AUTH);
    w.rt.e.forced_target = NULL;
    w.cache.e.forced_target = other.ti; /* the cache's, for someone else */
    assert_int_equal(world_fetch(&w, "a", key), VEIL_ERR_POLICY);
    assert_non_null(strstr(w.rt.detail, "MAC"));
    assert_int_equal(w.cache.keys_served, 0);
    world_cleanup(&w);
    /* a runtime pinning another cache refuses this one */
    world_init(&w, RUNTIME_A, 0, 0);
    memset(w.rt.pin.mr, 0x33, 32);
    assert_int_equal(world_fetch(&w, "a", key), VEIL_ERR_POLICY);
    assert_non_null(strstr(w.rt.detail, "not allowed"));
    world_cleanup(&w);
}

/* A client speaking the protocol by hand in a fresh session: HELLO with ti, then ATTEST carrying report. Returns the
 * ERROR code the cache answers with (0 for READY). */
static uint16_t attest_by_hand(struct world *w, const uint8_t ti[VEIL_SGX_TARGETINFO_SIZE],
                               const uint8_t report[VEIL_SGX_REPORT_SIZE])
{
    cache_start(&w->cache);
    int fd = connect_loopback(w->cache.port);
    struct veil_la_conn lc;
    assert_true(veil_ok(veil_la_tls_open(w->rt.tls, fd, &lc)));
    struct veil_buf body;
    veil_buf_init_secret(&body);
    struct veil_la_msg hello = {.type = VEIL_LA_HELLO, .kind = VEIL_LA_KIND_SGX, .target = ti,
                                .target_size = VEIL_SGX_TARGETINFO_SIZE}, m;
    assert_true(veil_ok(veil_random(hello.nonce, sizeof hello.nonce)));
    assert_true(veil_ok(veil_la_send(&lc, &hello)));
    assert_true(veil_ok(veil_la_expect(&lc, &body, VEIL_LA_CHALLENGE, &m)));
    struct veil_la_msg at = {.type = VEIL_LA_ATTEST, .kind = VEIL_LA_KIND_SGX, .report = report,
                             .report_size = VEIL_SGX_REPORT_SIZE};
    assert_true(veil_ok(veil_la_send(&lc, &at)));
    assert_true(veil_ok(veil_la_recv(&lc, &body, &m)));
    uint16_t code = m.type == VEIL_LA_ERROR ? m.error : 0;
    assert_true(code != 0 || m.type == VEIL_LA_READY);
    veil_buf_cleanup(&body);
    veil_la_tls_close(&lc);
    close(fd);
    cache_join(&w->cache);
    return code;
}

/* The runtime's REPORT of an earlier, successful session, sent again in a new one. */
static void test_replay_refused(void **state)
{
    (void)state;
    struct world w;
    uint8_t key[32], old[VEIL_SGX_REPORT_SIZE];
    world_init(&w, RUNTIME_A, 0, 0);
    assert_int_equal(world_fetch(&w, "a", key), VEIL_OK);
    memcpy(old, w.rt.e.last_report, sizeof old);
    assert_int_equal(attest_by_hand(&w, w.rt.e.ti, old), VEIL_LA_E_REPORT);
    assert_int_equal(w.cache.handshake_status, VEIL_ERR_VERIFY); /* MAC and identity fine: the binding is not */
    assert_non_null(strstr(w.cache.detail, "another channel"));
    world_cleanup(&w);
}

/* ---- a relay: the host terminates the runtime's TLS session (1) and opens its own to the cache (2) --------------- */

struct relay {
    struct world *w;
    int lfd;
    uint16_t port;
    SSL_CTX *server;
    uint16_t cache_answer; /* the cache's answer to a runtime REPORT bound to session 1 */
    int done;
};

static void relay_forward(struct relay *r, const struct veil_la_conn *s1, const struct veil_la_conn *s2)
{
    struct veil_buf body;
    veil_buf_init_secret(&body);
    struct veil_la_msg hello, ch;
    uint8_t nonce_r[32], ti_r[VEIL_SGX_TARGETINFO_SIZE], x1[VEIL_LA_EXPORTER_SIZE], rd[64], rep[VEIL_SGX_REPORT_SIZE];
    if (!veil_ok(veil_la_recv(s1, &body, &hello)) || hello.type != VEIL_LA_HELLO)
        goto out;
    memcpy(nonce_r, hello.nonce, 32), memcpy(ti_r, hello.target, sizeof ti_r);
    if (!veil_ok(veil_la_send(s2, &hello)) || !veil_ok(veil_la_recv(s2, &body, &ch)) || ch.type != VEIL_LA_CHALLENGE)
        goto out;
    if (!veil_ok(veil_la_send(s1, &ch))) /* the runtime sees the cache's genuine REPORT, bound to session 2 */
        goto out;
    /* What the runtime would send if it accepted: its genuine REPORT for the cache, bound to session 1. */
    if (!veil_ok(veil_la_tls_exporter(s1, x1)) ||
        !veil_ok(veil_la_binding('R', nonce_r, ch.nonce, ti_r, sizeof ti_r, ch.target, ch.target_size, x1, rd)) ||
        !veil_ok(fake_ereport(&r->w->rt.e, ch.target, rd, rep)))
        goto out;
    struct veil_la_msg at = {.type = VEIL_LA_ATTEST, .kind = VEIL_LA_KIND_SGX, .report = rep,
                             .report_size = sizeof rep}, answer;
    if (veil_ok(veil_la_send(s2, &at)) && veil_ok(veil_la_recv(s2, &body, &answer)))
        r->cache_answer = answer.type == VEIL_LA_ERROR ? answer.error : 0xffff;
out:
    veil_buf_cleanup(&body);
}

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    int fd1 = accept_one(r->lfd), fd2 = connect_loopback(r->w->cache.port);
    struct veil_la_conn s1 = {fd1, NULL}, s2 = {fd2, NULL};
    if (fd1 >= 0 && veil_ok(veil_la_tls_open(r->server, fd1, &s1)) &&
        veil_ok(veil_la_tls_open(r->w->rt.tls, fd2, &s2)))
        relay_forward(r, &s1, &s2);
    veil_la_tls_close(&s1), veil_la_tls_close(&s2);
    close(fd1), close(fd2);
    r->done = 1;
    return NULL;
}

static void test_relay_refused(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, RUNTIME_A, 0, 0);
    struct relay r = {.w = &w, .cache_answer = 0};
    r.lfd = listen_loopback(&r.port);
    assert_true(veil_ok(veil_la_tls_ctx_new(1, &r.server)));
    cache_start(&w.cache);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, relay_main, &r), 0);
    uint8_t key[32];
    /* the runtime: the cache's REPORT is bound to the relay's session with the cache, not to ours */
    assert_int_equal(runtime_fetch(&w.rt, r.port, "a", key), VEIL_ERR_POLICY);
    assert_non_null(strstr(w.rt.detail, "another channel"));
    assert_int_equal(pthread_join(t, NULL), 0);
    cache_join(&w.cache);
    /* the cache: the runtime's REPORT is bound to the runtime's session with the relay, not to the cache's */
    assert_true(r.done);
    assert_int_equal(r.cache_answer, VEIL_LA_E_REPORT);
    assert_int_equal(w.cache.handshake_status, VEIL_ERR_VERIFY);
    assert_int_equal(w.cache.keys_served, 0);
    veil_la_tls_ctx_free(r.server);
    close(r.lfd);
    world_cleanup(&w);
}

/* ---- TLS and the binding ---------------------------------------------------------------------------------------- */

/* A client that offers at most TLS 1.2 gets no session. */
static void test_tls12_refused(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, RUNTIME_A, 0, 0);
    cache_start(&w.cache);
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    assert_non_null(old);
    assert_int_equal(SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION), 1);
    SSL_CTX_set_verify(old, SSL_VERIFY_NONE, NULL);
    int fd = connect_loopback(w.cache.port);
    struct veil_la_conn lc;
    assert_int_equal(veil_la_tls_open(old, fd, &lc).status, VEIL_ERR_IO);
    close(fd);
    cache_join(&w.cache);
    assert_int_equal(w.cache.handshake_status, VEIL_ERR_IO);
    assert_int_equal(w.cache.keys_served, 0);
    SSL_CTX_free(old);
    world_cleanup(&w);
}

/* The binding of local.h recomputed here, byte by byte: with X appended for kind SGX, and without it unchanged. */
static void test_binding_formula(void **state)
{
    (void)state;
    uint8_t nr[32], nc[32], tr[512], tc[512], x[64], got[64], want[64], plain[64];
    memset(nr, 1, 32), memset(nc, 2, 32), memset(tr, 3, 512), memset(tc, 4, 512), memset(x, 5, 64);
    static const uint8_t len512[2] = {0x00, 0x02};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestInit_ex(md, EVP_sha512(), NULL), 1);
    EVP_DigestUpdate(md, "VEIL-LOCAL-ATTESTATION-V1", 26); /* with its NUL */
    EVP_DigestUpdate(md, "R", 1);
    EVP_DigestUpdate(md, nr, 32), EVP_DigestUpdate(md, nc, 32);
    EVP_DigestUpdate(md, len512, 2), EVP_DigestUpdate(md, tr, 512);
    EVP_DigestUpdate(md, len512, 2), EVP_DigestUpdate(md, tc, 512);
    EVP_DigestUpdate(md, x, 64);
    assert_int_equal(EVP_DigestFinal_ex(md, want, NULL), 1);
    EVP_MD_CTX_free(md);
    assert_true(veil_ok(veil_la_binding('R', nr, nc, tr, 512, tc, 512, x, got)));
    assert_memory_equal(got, want, 64);
    assert_true(veil_ok(veil_la_binding('R', nr, nc, tr, 512, tc, 512, NULL, plain)));
    assert_memory_not_equal(plain, want, 64);
    x[63] ^= 1; /* another TLS session */
    assert_true(veil_ok(veil_la_binding('R', nr, nc, tr, 512, tc, 512, x, got)));
    assert_memory_not_equal(got, want, 64);
    struct veil_la_conn none = {.fd = -1, .ssl = NULL};
    assert_int_equal(veil_la_tls_exporter(&none, x).status, VEIL_ERR_ARG); /* SGX only inside TLS */
}

static void test_identity_parse(void **state)
{
    (void)state;
    struct veil_sgx_identity id;
    char text[200];
    memset(text, 'a', 64), text[64] = '\0';
    assert_true(veil_ok(veil_sgx_identity_parse(text, &id)));
    assert_false(id.by_signer);
    assert_int_equal(id.mr[0], 0xaa);
    snprintf(text + 64, sizeof text - 64, ":9:4");
    assert_true(veil_ok(veil_sgx_identity_parse(text, &id)));
    assert_true(id.by_signer);
    assert_int_equal(id.product_id, 9);
    assert_int_equal(id.min_svn, 4);
    static const char *const bad[] = {"", "aa", ":9:4", "zz", NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        assert_int_equal(veil_sgx_identity_parse(bad[i], &id).status, VEIL_ERR_ARG);
    static const char *const bad_tails[] = {":9", ":9:65536", ":9:-1", ":x:4", ":9:4:1", "::4", NULL};
    for (size_t i = 0; bad_tails[i] != NULL; i++) {
        snprintf(text + 64, sizeof text - 64, "%s", bad_tails[i]);
        assert_int_equal(veil_sgx_identity_parse(text, &id).status, VEIL_ERR_ARG);
    }
    text[63] = '\0'; /* 63 digits */
    assert_int_equal(veil_sgx_identity_parse(text, &id).status, VEIL_ERR_ARG);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemons: a peer gone is an error, not a signal */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_delivered),        cmocka_unit_test(test_not_allowed_for_model),
        cmocka_unit_test(test_stranger_refused),     cmocka_unit_test(test_debug_refused),
        cmocka_unit_test(test_other_target_refused), cmocka_unit_test(test_replay_refused),
        cmocka_unit_test(test_relay_refused),        cmocka_unit_test(test_tls12_refused),
        cmocka_unit_test(test_binding_formula),      cmocka_unit_test(test_identity_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
