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
 * The client is libveil's own (lib/kbs/client_internal.h: the steps of veil_kbs_fetch_key, timed one by one).
 * THREADS client threads, each with one libcurl easy handle (one keep-alive connection), run until SECONDS have
 * passed or MAX operations are done in all. Latency is per operation (a whole release), wall clock. The client's
 * own CPU (getrusage) and, with SERVER_PID, the broker's CPU (/proc/PID/stat utime + stime) are reported per
 * operation, so client and server costs can be told apart on a shared machine. Exit status 1 on any failure. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/buf.h"
#include "core/measure.h"
#include "kbs/client_internal.h"
#include "protocol/protocol.h"
#include "veil/attest.h"

#define MAX_THREADS 256
#define MAX_OPS 10000000L
#define MODEL_ID "test-0"

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
    struct veil_kbs_conn conn; /* one keep-alive connection, libveil's RCAR client (lib/kbs/client_internal.h) */
    double *lat;
    long count, cap;
    struct phases ph;
};

static void fail(struct worker *w, const char *what, const char *detail)
{
    if (atomic_fetch_add(&w->sh->failures, 1) < 5)
        fprintf(stderr, "bench_kbs: %s: %s\n", what, detail);
}

/* One release's state: the challenge, the TEE key, the Attestation, the released key. */
struct release {
    struct veil_rcar_challenge ch;
    struct veil_jwk key;
    json_t *jwk, *att;
    struct veil_buf plain;
};

/* The TEE side after /auth, each phase timed: key, evidence, /attest, /resource, JWE. */
static struct veil_result release_steps(struct worker *w, veil_tee tee, struct release *r)
{
    struct veil_provider_config pc = {.sim_dir = w->sh->sim_dir};
    double t0 = veil_now_s();
    struct veil_result res = veil_kbs_client_tee_key(&r->key, &r->jwk);
    double t1 = veil_now_s();
    if (veil_ok(res))
        res = veil_kbs_client_evidence(tee, &pc, &r->ch, r->jwk, &r->att);
    double t2 = veil_now_s();
    if (veil_ok(res))
        res = veil_kbs_client_attest(&w->conn, r->att);
    double t3 = veil_now_s();
    if (veil_ok(res))
        res = veil_kbs_client_resource(&w->conn, MODEL_ID, 0);
    double t4 = veil_now_s();
    if (veil_ok(res))
        res = veil_kbs_client_decrypt(&w->conn, &r->key, &r->plain);
    w->ph.keygen += t1 - t0, w->ph.collect += t2 - t1, w->ph.attest += t3 - t2, w->ph.resource += t4 - t3;
    w->ph.decrypt += veil_now_s() - t4;
    return res;
}

static int release_once(struct worker *w)
{
    static const uint8_t zeros[32] = {0};
    veil_tee tee = w->sh->mode == MODE_SIM ? VEIL_TEE_SIM : VEIL_TEE_SAMPLE;
    struct release r;
    memset(&r, 0, sizeof r);
    veil_jwk_init(&r.key);
    veil_buf_init_secret(&r.plain);
    double t0 = veil_now_s();
    struct veil_result res = veil_kbs_client_auth(&w->conn, tee, &r.ch);
    w->ph.auth += veil_now_s() - t0;
    if (veil_ok(res) && w->sh->mode != MODE_AUTH)
        res = release_steps(w, tee, &r);
    int ok = veil_ok(res) && (w->sh->mode == MODE_AUTH || (r.plain.size == 32 && memcmp(r.plain.data, zeros, 32) == 0));
    if (!ok)
        fail(w, "release", veil_ok(res) ? "the released key is not test-0's" : veil_last_error());
    veil_buf_cleanup(&r.plain);
    json_decref(r.att);
    json_decref(r.jwk);
    veil_jwk_cleanup(&r.key);
    veil_rcar_challenge_cleanup(&r.ch);
    return ok ? 0 : -1;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    while (veil_now_s() < w->sh->deadline && atomic_fetch_add(&w->sh->claimed, 1) < w->sh->max_ops &&
           atomic_load(&w->sh->failures) == 0) {
        double t0 = veil_now_s();
        if (release_once(w) != 0)
            break;
        if (w->count < w->cap)
            w->lat[w->count++] = veil_now_s() - t0;
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
    /* A load generator against test-0's zero key: plain HTTP to any host is allowed. */
    struct veil_kbs_fetch_options o = {.url = sh->url, .allow_insecure_http = 1, .timeout_s = 30};
    if (w->lat == NULL)
        return -1;
    if (!veil_ok(veil_kbs_conn_init(&w->conn, &o)))
        return fprintf(stderr, "bench_kbs: %s\n", veil_last_error()), -1;
    return 0;
}

static void worker_cleanup(struct worker *w)
{
    veil_kbs_conn_cleanup(&w->conn);
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
            return fprintf(stderr, "bench_kbs: cannot set up a client\n"), 1;
    double s0 = server_pid > 0 ? proc_cpu_s(server_pid) : -1, c0 = self_cpu_s(), t0 = veil_now_s();
    sh.deadline = t0 + seconds;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ws[i].thread, NULL, work, &ws[i]) != 0)
            return fprintf(stderr, "bench_kbs: pthread_create failed\n"), 1;
    for (int i = 0; i < threads; i++)
        pthread_join(ws[i].thread, NULL);
    double elapsed = veil_now_s() - t0, s1 = server_pid > 0 ? proc_cpu_s(server_pid) : -1;
    long failures = atomic_load(&sh.failures);
    report(m, threads, elapsed, ws, self_cpu_s() - c0, s0 >= 0 && s1 >= 0 ? s1 - s0 : -1, failures);
    for (int i = 0; i < threads; i++)
        worker_cleanup(&ws[i]);
    free(ws);
    curl_global_cleanup();
    return failures == 0 ? 0 : 1;
}
