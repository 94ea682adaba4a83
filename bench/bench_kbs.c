/* SPDX-License-Identifier: Apache-2.0 */
/* Load generator for veil-kbs: full RCAR key releases per second over keep-alive HTTP, one JSON line.
 *
 *   bench_kbs URL MODE THREADS SECONDS MAX [SIM_DIR] [SERVER_PID]
 *
 * MODE release-sim | release-sample: every release is a fresh session and a fresh TEE key, as a real TEE does:
 *   POST /kbs/v0/auth -> generate a P-256 tee key -> report data = SHA-384(JCS(runtime data)) -> collect
 *   evidence (sim: signed with SIM_DIR's platform key; sample: unsigned) -> POST /kbs/v0/attest ->
 *   GET /kbs/v0/resource/veil/model-key/test-0 -> decrypt the JWE with the tee key -> check the 32 zero bytes.
 * MODE auth: POST /kbs/v0/auth only (one store commit per request): the same server's per-request floor.
 *
 * THREADS client threads, each with one libcurl easy handle (one keep-alive connection), run until SECONDS have
 * passed or MAX operations are done in all. Latency is per operation (a whole release), wall clock. The client's
 * own CPU (getrusage) and, with SERVER_PID, the broker's CPU (/proc/PID/stat utime + stime) are reported per
 * operation, so client and server costs can be told apart on a shared machine. Exit status 1 on any failure. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/buf.h"
#include "protocol/protocol.h"
#include "veil/attest.h"

#define MAX_THREADS 256
#define MAX_OPS 10000000L
#define MODEL_PATH "/kbs/v0/resource/veil/model-key/test-0"

enum mode { MODE_SIM, MODE_SAMPLE, MODE_AUTH };

struct shared {
    const char *url;
    enum mode mode;
    const char *sim_dir;
    double deadline;
    long max_ops;
    atomic_long claimed;
    atomic_long failures;
};

/* Per-thread phase times, seconds, summed over its releases. */
struct phases {
    double auth, keygen, collect, attest, resource, decrypt;
};

struct worker {
    pthread_t thread;
    struct shared *sh;
    CURL *curl;
    struct veil_buf body;
    char cookie[160];
    double *lat;
    long count, cap;
    struct phases ph;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    struct worker *w = ctx;
    return veil_ok(veil_buf_append(&w->body, data, size * n)) ? size * n : 0;
}

/* Keeps "kbs-session-id=<id>" from Set-Cookie. */
static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    struct worker *w = ctx;
    size_t len = size * n;
    static const char name[] = "Set-Cookie: kbs-session-id=";
    if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *value = data + sizeof name - 1;
        size_t v = strcspn(value, ";\r\n");
        if (v < sizeof w->cookie && v <= len - (sizeof name - 1)) {
            memcpy(w->cookie, value, v);
            w->cookie[v] = '\0';
        }
    }
    return len;
}

static void fail(struct worker *w, const char *what, const char *detail)
{
    if (atomic_fetch_add(&w->sh->failures, 1) < 5)
        fprintf(stderr, "bench_kbs: %s: %s\n", what, detail);
}

/* One HTTP exchange; the response body lands in w->body (NUL-terminated). 0 on HTTP 200. */
static int exchange(struct worker *w, const char *path, const json_t *body, int send_cookie)
{
    char url[512], cookie[200];
    snprintf(url, sizeof url, "%s%s", w->sh->url, path);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    veil_buf_cleanup(&w->body);
    curl_easy_setopt(w->curl, CURLOPT_URL, url);
    if (body != NULL) {
        curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, text);
    } else {
        curl_easy_setopt(w->curl, CURLOPT_HTTPGET, 1L);
    }
    snprintf(cookie, sizeof cookie, "kbs-session-id=%s", w->cookie);
    curl_easy_setopt(w->curl, CURLOPT_COOKIE, send_cookie ? cookie : NULL);
    CURLcode rc = curl_easy_perform(w->curl);
    free(text);
    long status = 0;
    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200 || !veil_ok(veil_buf_append_u8(&w->body, 0))) {
        char d[256];
        snprintf(d, sizeof d, "%s: curl %d, HTTP %ld: %.120s", path, (int)rc, status,
                 w->body.data != NULL ? (const char *)w->body.data : "");
        fail(w, "request", d);
        return -1;
    }
    return 0;
}

static int post_auth(struct worker *w, struct veil_rcar_challenge *ch)
{
    json_t *req = NULL;
    /* The builder knows kbs-types' names only; "sim" is Veil's extra name. */
    if (!veil_ok(veil_rcar_request_build("sample", &req)) ||
        (w->sh->mode == MODE_SIM && json_object_set_new(req, "tee", json_string("sim")) != 0))
        return json_decref(req), fail(w, "request build", veil_last_error()), -1;
    w->cookie[0] = '\0';
    int r = exchange(w, "/kbs/v0/auth", req, 0);
    json_decref(req);
    if (r != 0)
        return -1;
    if (w->cookie[0] == '\0')
        return fail(w, "auth", "no session cookie"), -1;
    if (!veil_ok(veil_rcar_challenge_parse(w->body.data, w->body.size - 1, ch)))
        return fail(w, "challenge", veil_last_error()), -1;
    return 0;
}

/* The TEE side of /attest: a fresh key, its binding, evidence over it. */
static int make_attestation(struct worker *w, const struct veil_rcar_challenge *ch, struct veil_jwk *key,
                            json_t **att)
{
    double t0 = now_s();
    json_t *jwk = NULL;
    if (!veil_ok(veil_jwk_generate(VEIL_JWK_EC_P256, key)) || !veil_ok(veil_jwk_export(key, "ECDH-ES+A256KW", &jwk)))
        return fail(w, "tee key", veil_last_error()), -1;
    double t1 = now_s();
    uint8_t rd[VEIL_KBS_REPORT_DATA_SIZE];
    char *ev_text = NULL;
    json_t *ev = NULL;
    struct veil_provider_config pc = {.sim_dir = w->sh->sim_dir};
    int ok = veil_ok(veil_kbs_report_data(ch->nonce, jwk, "", ch->hash, rd)) &&
             veil_evidence_collect(w->sh->mode == MODE_SIM ? VEIL_TEE_SIM : VEIL_TEE_SAMPLE, &pc, rd, &ev_text) ==
                 VEIL_OK &&
             (ev = json_loads(ev_text, 0, NULL)) != NULL &&
             veil_ok(veil_rcar_attestation_build(ch->nonce, jwk, ev, NULL, att));
    if (!ok)
        fail(w, "evidence", veil_last_error());
    veil_free(ev_text);
    json_decref(ev);
    json_decref(jwk);
    w->ph.keygen += t1 - t0;
    w->ph.collect += now_s() - t1;
    return ok ? 0 : -1;
}

static int check_key(struct worker *w, const struct veil_jwk *key)
{
    json_t *jwe = json_loads((const char *)w->body.data, 0, NULL);
    struct veil_buf plain;
    veil_buf_init_secret(&plain);
    static const uint8_t zeros[32] = {0};
    int ok = jwe != NULL && veil_ok(veil_jwe_decrypt(key, jwe, &plain)) && plain.size == 32 &&
             memcmp(plain.data, zeros, 32) == 0;
    if (!ok)
        fail(w, "jwe", jwe == NULL ? "not JSON" : "decryption failed or wrong key");
    veil_buf_cleanup(&plain);
    json_decref(jwe);
    return ok ? 0 : -1;
}

static int release_once(struct worker *w)
{
    struct veil_rcar_challenge ch;
    memset(&ch, 0, sizeof ch);
    struct veil_jwk key;
    veil_jwk_init(&key);
    json_t *att = NULL;
    double t0 = now_s();
    int r = post_auth(w, &ch);
    double t1 = now_s();
    w->ph.auth += t1 - t0;
    if (r == 0 && w->sh->mode != MODE_AUTH) {
        r = make_attestation(w, &ch, &key, &att);
        double t2 = now_s();
        if (r == 0)
            r = exchange(w, "/kbs/v0/attest", att, 1);
        double t3 = now_s();
        if (r == 0)
            r = exchange(w, MODEL_PATH, NULL, 1);
        double t4 = now_s();
        if (r == 0)
            r = check_key(w, &key);
        w->ph.attest += t3 - t2;
        w->ph.resource += t4 - t3;
        w->ph.decrypt += now_s() - t4;
    }
    json_decref(att);
    veil_jwk_cleanup(&key);
    veil_rcar_challenge_cleanup(&ch);
    return r;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    while (now_s() < w->sh->deadline && atomic_fetch_add(&w->sh->claimed, 1) < w->sh->max_ops &&
           atomic_load(&w->sh->failures) == 0) {
        double t0 = now_s();
        if (release_once(w) != 0)
            break;
        if (w->count < w->cap)
            w->lat[w->count++] = now_s() - t0;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, long n, double q)
{
    if (n == 0)
        return 0;
    long i = (long)(q * (double)n + 0.999999) - 1;
    return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

/* utime + stime of a process, seconds; -1 when unreadable. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static int worker_init(struct worker *w, struct shared *sh, long cap)
{
    w->sh = sh;
    w->cap = cap;
    w->lat = calloc((size_t)cap, sizeof *w->lat);
    w->curl = curl_easy_init();
    if (w->lat == NULL || w->curl == NULL)
        return -1;
    curl_easy_setopt(w->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(w->curl, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(w->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(w->curl, CURLOPT_HEADERDATA, w);
    curl_easy_setopt(w->curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(w->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(w->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(w->curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(w->curl, CURLOPT_MAXCONNECTS, 1L);
    return 0;
}

static void worker_cleanup(struct worker *w)
{
    curl_easy_cleanup(w->curl);
    veil_buf_cleanup(&w->body);
    free(w->lat);
}

static void report(const char *mode_name, int threads, double seconds, struct worker *ws, double client_cpu,
                   double server_cpu, long failures)
{
    long n = 0;
    struct phases ph = {0};
    for (int i = 0; i < threads; i++) {
        n += ws[i].count;
        ph.auth += ws[i].ph.auth, ph.keygen += ws[i].ph.keygen, ph.collect += ws[i].ph.collect;
        ph.attest += ws[i].ph.attest, ph.resource += ws[i].ph.resource, ph.decrypt += ws[i].ph.decrypt;
    }
    double *all = calloc((size_t)(n > 0 ? n : 1), sizeof *all);
    long k = 0;
    for (int i = 0; i < threads; i++)
        for (long j = 0; j < ws[i].count; j++)
            all[k++] = ws[i].lat[j];
    qsort(all, (size_t)n, sizeof *all, cmp_double);
    double d = n > 0 ? (double)n : 1, ms = 1e3 / d;
    printf("{\"mode\": \"%s\", \"threads\": %d, \"ops\": %ld, \"failures\": %ld, \"seconds\": %.3f, "
           "\"per_second\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
           "\"client_cpu_ms_per_op\": %.4f, \"server_cpu_ms_per_op\": %.4f, "
           "\"wall_ms_per_op\": {\"auth\": %.4f, \"tee_keygen\": %.4f, \"evidence_collect\": %.4f, "
           "\"attest\": %.4f, \"resource\": %.4f, \"jwe_decrypt\": %.4f}}\n",
           mode_name, threads, n, failures, seconds, (double)n / seconds, percentile(all, n, 0.5) * 1e3,
           percentile(all, n, 0.99) * 1e3, n > 0 ? all[n - 1] * 1e3 : 0.0, client_cpu * 1e3 / d,
           server_cpu >= 0 ? server_cpu * 1e3 / d : -1.0, ph.auth * ms, ph.keygen * ms, ph.collect * ms,
           ph.attest * ms, ph.resource * ms, ph.decrypt * ms);
    free(all);
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 8)
        return fprintf(stderr, "usage: bench_kbs URL release-sim|release-sample|auth THREADS SECONDS MAX "
                               "[SIM_DIR] [SERVER_PID]\n"), 2;
    struct shared sh = {.url = argv[1]};
    const char *m = argv[2];
    sh.mode = strcmp(m, "release-sim") == 0 ? MODE_SIM : strcmp(m, "release-sample") == 0 ? MODE_SAMPLE
              : strcmp(m, "auth") == 0                                                 ? MODE_AUTH
                                                                                       : (enum mode)-1;
    int threads = atoi(argv[3]);
    double seconds = atof(argv[4]);
    sh.max_ops = atol(argv[5]);
    sh.sim_dir = argc > 6 && argv[6][0] != '\0' ? argv[6] : NULL;
    long server_pid = argc > 7 ? atol(argv[7]) : 0;
    if ((int)sh.mode < 0 || threads < 1 || threads > MAX_THREADS || !(seconds > 0 && seconds <= 3600) ||
        sh.max_ops < 1 || sh.max_ops > MAX_OPS || (sh.mode == MODE_SIM && sh.sim_dir == NULL))
        return fprintf(stderr, "bench_kbs: bad arguments\n"), 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return fprintf(stderr, "bench_kbs: curl_global_init failed\n"), 1;
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    if (ws == NULL)
        return 1;
    for (int i = 0; i < threads; i++)
        if (worker_init(&ws[i], &sh, sh.max_ops / threads + 1) != 0)
            return fprintf(stderr, "bench_kbs: out of memory\n"), 1;
    double s0 = server_pid > 0 ? proc_cpu_s(server_pid) : -1, c0 = self_cpu_s(), t0 = now_s();
    sh.deadline = t0 + seconds;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ws[i].thread, NULL, work, &ws[i]) != 0)
            return fprintf(stderr, "bench_kbs: pthread_create failed\n"), 1;
    for (int i = 0; i < threads; i++)
        pthread_join(ws[i].thread, NULL);
    double elapsed = now_s() - t0, s1 = server_pid > 0 ? proc_cpu_s(server_pid) : -1;
    long failures = atomic_load(&sh.failures);
    report(m, threads, elapsed, ws, self_cpu_s() - c0, s0 >= 0 && s1 >= 0 ? s1 - s0 : -1, failures);
    for (int i = 0; i < threads; i++)
        worker_cleanup(&ws[i]);
    free(ws);
    curl_global_cleanup();
    return failures == 0 ? 0 : 1;
}
