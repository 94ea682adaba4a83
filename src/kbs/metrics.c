/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics (metrics.h): relaxed C11 atomics written by the request threads, read by GET /metrics. A
 * scrape reads each number once; numbers of one family may be a request apart, which Prometheus tolerates. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kbsd.h"
#include "metrics.h"

#define NS_PER_S UINT64_C(1000000000)

static const char *const route_names[KBS_ROUTE_LABEL_COUNT] = {"auth", "attest", "resource", "admin", "metrics",
                                                               "other"};

/* The code label: the statuses veil-kbs answers with; anything else is "other" (the last slot). */
static const unsigned codes[] = {200, 201, 400, 401, 403, 404, 405, 409, 413, 429, 500, 503};
#define CODE_COUNT (sizeof codes / sizeof codes[0])

/* Upper bounds of the duration buckets, in nanoseconds and as the le label; the last slot is +Inf. */
static const uint64_t bucket_ns[] = {500000,    1000000,   2500000,   5000000,   10000000,   25000000,
                                     50000000,  100000000, 250000000, 500000000, 1000000000, 2500000000};
static const char *const bucket_le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                        "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5"};
#define BUCKET_COUNT (sizeof bucket_ns / sizeof bucket_ns[0])

/* The tee label: index 0 is "unknown" (no TEE named, or a name the broker does not know). */
static const char *const tee_names[] = {"unknown", "sim", "sample", "sgx", "tdx", "snp"};
#define TEE_COUNT (sizeof tee_names / sizeof tee_names[0])

static struct {
    _Atomic uint64_t requests[KBS_ROUTE_LABEL_COUNT][CODE_COUNT + 1];
    _Atomic uint64_t buckets[KBS_ROUTE_LABEL_COUNT][BUCKET_COUNT + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t duration_ns[KBS_ROUTE_LABEL_COUNT];
    _Atomic uint64_t releases[TEE_COUNT];
    _Atomic uint64_t denials[TEE_COUNT];
    _Atomic uint64_t audit_failures;
    _Atomic uint64_t rate_limited;
    _Atomic int64_t start_time;
} m;

static void inc(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

uint64_t kbs_metrics_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

void kbs_metrics_started(int64_t now)
{
    atomic_store_explicit(&m.start_time, now, memory_order_relaxed);
}

static size_t code_index(unsigned status)
{
    size_t i = 0;
    while (i < CODE_COUNT && codes[i] != status)
        i++;
    return i;
}

static size_t bucket_index(uint64_t elapsed_ns)
{
    size_t i = 0;
    while (i < BUCKET_COUNT && elapsed_ns > bucket_ns[i])
        i++;
    return i;
}

void kbs_metrics_request(enum kbs_route_label route, unsigned status, uint64_t elapsed_ns)
{
    size_t r = (size_t)route < KBS_ROUTE_LABEL_COUNT ? (size_t)route : KBS_ROUTE_OTHER;
    inc(&m.requests[r][code_index(status)], 1);
    inc(&m.buckets[r][bucket_index(elapsed_ns)], 1);
    inc(&m.duration_ns[r], elapsed_ns);
}

static size_t tee_index(const char *tee)
{
    for (size_t i = 1; tee != NULL && i < TEE_COUNT; i++)
        if (strcmp(tee, tee_names[i]) == 0)
            return i;
    return 0;
}

void kbs_metrics_decision(const char *tee, int released)
{
    inc(released ? &m.releases[tee_index(tee)] : &m.denials[tee_index(tee)], 1);
}

void kbs_metrics_audit_failure(void)
{
    inc(&m.audit_failures, 1);
}

void kbs_metrics_rate_limited(void)
{
    inc(&m.rate_limited, 1);
}

/* ---- the exposition ------------------------------------------------------------------------------------- */

static VEIL_RESULT emit(struct veil_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static VEIL_RESULT emit(struct veil_buf *b, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    VEIL_ENSURE(n >= 0 && (size_t)n < sizeof line, VEIL_ERR_INTERNAL, "metrics line too long");
    return veil_buf_append(b, line, (size_t)n);
}

static VEIL_RESULT family(struct veil_buf *b, const char *name, const char *type, const char *help)
{
    return emit(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static VEIL_RESULT emit_info(struct veil_buf *b)
{
    VEIL_GUARD(family(b, "veil_kbs_build_info", "gauge", "The broker's version; always 1."));
    VEIL_GUARD(emit(b, "veil_kbs_build_info{version=\"%s\"} 1\n", VEIL_KBS_VERSION));
    VEIL_GUARD(family(b, "veil_kbs_start_time_seconds", "gauge", "When the broker started serving, seconds since "
                                                                 "the epoch."));
    return emit(b, "veil_kbs_start_time_seconds %" PRId64 "\n",
                atomic_load_explicit(&m.start_time, memory_order_relaxed));
}

static VEIL_RESULT emit_requests(struct veil_buf *b)
{
    VEIL_GUARD(family(b, "veil_kbs_requests_total", "counter", "Answered HTTP requests by route and status code."));
    for (size_t r = 0; r < KBS_ROUTE_LABEL_COUNT; r++) {
        for (size_t c = 0; c <= CODE_COUNT; c++) {
            uint64_t n = get(&m.requests[r][c]);
            if (n == 0)
                continue;
            char code[16] = "other";
            if (c < CODE_COUNT)
                snprintf(code, sizeof code, "%u", codes[c]);
            VEIL_GUARD(emit(b, "veil_kbs_requests_total{route=\"%s\",code=\"%s\"} %" PRIu64 "\n", route_names[r],
                            code, n));
        }
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT emit_histogram(struct veil_buf *b, size_t r)
{
    const char *name = "veil_kbs_request_duration_seconds";
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= BUCKET_COUNT; i++) {
        cumulative += get(&m.buckets[r][i]);
        VEIL_GUARD(emit(b, "%s_bucket{route=\"%s\",le=\"%s\"} %" PRIu64 "\n", name, route_names[r],
                        i < BUCKET_COUNT ? bucket_le[i] : "+Inf", cumulative));
    }
    uint64_t ns = get(&m.duration_ns[r]);
    VEIL_GUARD(emit(b, "%s_sum{route=\"%s\"} %" PRIu64 ".%09" PRIu64 "\n", name, route_names[r], ns / NS_PER_S,
                    ns % NS_PER_S));
    return emit(b, "%s_count{route=\"%s\"} %" PRIu64 "\n", name, route_names[r], cumulative);
}

static VEIL_RESULT emit_durations(struct veil_buf *b)
{
    VEIL_GUARD(family(b, "veil_kbs_request_duration_seconds", "histogram",
                      "Time from routing a request to its answer, by route."));
    for (size_t r = 0; r < KBS_ROUTE_LABEL_COUNT; r++)
        VEIL_GUARD(emit_histogram(b, r));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT emit_per_tee(struct veil_buf *b, const char *name, const char *help, _Atomic uint64_t *counts)
{
    VEIL_GUARD(family(b, name, "counter", help));
    for (size_t t = 0; t < TEE_COUNT; t++)
        VEIL_GUARD(emit(b, "%s{tee=\"%s\"} %" PRIu64 "\n", name, tee_names[t], get(&counts[t])));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT emit_counter(struct veil_buf *b, const char *name, const char *help, _Atomic uint64_t *c)
{
    VEIL_GUARD(family(b, name, "counter", help));
    return emit(b, "%s %" PRIu64 "\n", name, get(c));
}

static VEIL_RESULT emit_all(struct veil_buf *b)
{
    VEIL_GUARD(emit_info(b));
    VEIL_GUARD(emit_requests(b));
    VEIL_GUARD(emit_durations(b));
    VEIL_GUARD(emit_per_tee(b, "veil_kbs_key_releases_total", "Model keys released, by TEE type.", m.releases));
    VEIL_GUARD(emit_per_tee(b, "veil_kbs_release_denials_total",
                            "Audited refusals at /auth, /attest and /resource, by TEE type.", m.denials));
    VEIL_GUARD(emit_counter(b, "veil_kbs_audit_failures_total", "Audit records that could not be stored.",
                            &m.audit_failures));
    VEIL_GUARD(emit_counter(b, "veil_kbs_rate_limited_total", "Requests refused by the per-client rate limiter.",
                            &m.rate_limited));
    return veil_buf_append_u8(b, 0);
}

VEIL_RESULT kbs_metrics_render(char **out, size_t *size)
{
    struct veil_buf b;
    veil_buf_init(&b);
    struct veil_result r = emit_all(&b);
    if (!veil_ok(r)) {
        veil_buf_cleanup(&b);
        return r;
    }
    uint8_t *data = NULL;
    size_t n = 0;
    veil_buf_release(&b, &data, &n);
    *out = (char *)data;
    *size = n - 1; /* without the NUL */
    return VEIL_RESULT_OK;
}

void kbs_metrics_get(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs)
{
    (void)k, (void)rq;
    char *text = NULL;
    size_t size = 0;
    if (!veil_ok(kbs_metrics_render(&text, &size))) {
        kbs_log("error", "metrics-failed", "{s:s}", "detail", veil_last_error());
        kbs_respond_admin_error(rs, 500, "internal", "internal error (see the broker's log)");
        return;
    }
    free(rs->body);
    rs->status = 200;
    rs->body = text;
    rs->body_size = size;
    rs->content_type = KBS_METRICS_CONTENT_TYPE;
}
