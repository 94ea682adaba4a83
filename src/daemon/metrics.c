/* SPDX-License-Identifier: Apache-2.0 */
/* The metrics registry (metrics.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "metrics.h"
#include "router.h"

#define NS_PER_S UINT64_C(1000000000)

/* The code label: the statuses the daemons answer with; anything else is "other" (the last slot). */
static const unsigned codes[] = {200, 201, 400, 401, 403, 404, 405, 409, 413, 429, 500, 503};
#define CODE_COUNT (sizeof codes / sizeof codes[0])

/* Upper bounds of the duration buckets, in nanoseconds and as the le label; the last slot is +Inf. */
static const uint64_t bucket_ns[] = {500000,    1000000,   2500000,   5000000,   10000000,   25000000,
                                     50000000,  100000000, 250000000, 500000000, 1000000000, 2500000000};
static const char *const bucket_le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                        "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5"};
#define BUCKET_COUNT (sizeof bucket_ns / sizeof bucket_ns[0])

static struct {
    const char *prefix, *noun, *version;
    const char *const *labels;
    size_t label_count;
    struct vd_family *families[VD_METRICS_MAX_FAMILIES];
    size_t family_count;
    _Atomic uint64_t requests[VD_METRICS_MAX_ROUTE_LABELS][CODE_COUNT + 1];
    _Atomic uint64_t buckets[VD_METRICS_MAX_ROUTE_LABELS][BUCKET_COUNT + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t duration_ns[VD_METRICS_MAX_ROUTE_LABELS];
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

VEIL_RESULT vd_metrics_init(const char *prefix, const char *noun, const char *version,
                            const char *const *route_labels, size_t label_count)
{
    VEIL_ENSURE(label_count >= 1 && label_count <= VD_METRICS_MAX_ROUTE_LABELS, VEIL_ERR_INTERNAL,
                "bad route label count");
    m.prefix = prefix, m.noun = noun, m.version = version;
    m.labels = route_labels, m.label_count = label_count;
    m.family_count = 0;
    return VEIL_RESULT_OK;
}

VEIL_RESULT vd_metrics_register(struct vd_family *family)
{
    for (size_t i = 0; i < m.family_count; i++)
        if (m.families[i] == family)
            return VEIL_RESULT_OK;
    VEIL_ENSURE(m.family_count < VD_METRICS_MAX_FAMILIES, VEIL_ERR_INTERNAL, "too many metric families");
    m.families[m.family_count++] = family;
    return VEIL_RESULT_OK;
}

void vd_metrics_started(int64_t now)
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

void vd_metrics_request(size_t label, unsigned status, uint64_t elapsed_ns)
{
    if (m.label_count == 0)
        return;
    size_t r = label < m.label_count ? label : m.label_count - 1;
    inc(&m.requests[r][code_index(status)], 1);
    inc(&m.buckets[r][bucket_index(elapsed_ns)], 1);
    inc(&m.duration_ns[r], elapsed_ns);
}

void vd_metrics_add(struct vd_family *family, size_t cell, int64_t n)
{
    if (cell < family->count)
        atomic_fetch_add_explicit(&family->cells[cell], n, memory_order_relaxed);
}

/* ---- the exposition ------------------------------------------------------------------------------------- */

static VEIL_RESULT emit(struct veil_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static VEIL_RESULT emit(struct veil_buf *b, const char *fmt, ...)
{
    char line[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    VEIL_ENSURE(n >= 0 && (size_t)n < sizeof line, VEIL_ERR_INTERNAL, "metrics line too long");
    return veil_buf_append(b, line, (size_t)n);
}

static VEIL_RESULT family_header(struct veil_buf *b, const char *name, const char *suffix, const char *type,
                                 const char *help)
{
    return emit(b, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix, type);
}

static VEIL_RESULT emit_info(struct veil_buf *b)
{
    char help[96];
    snprintf(help, sizeof help, "The %s's version; always 1.", m.noun);
    VEIL_GUARD(family_header(b, m.prefix, "_build_info", "gauge", help));
    VEIL_GUARD(emit(b, "%s_build_info{version=\"%s\"} 1\n", m.prefix, m.version));
    snprintf(help, sizeof help, "When the %s started serving, seconds since the epoch.", m.noun);
    VEIL_GUARD(family_header(b, m.prefix, "_start_time_seconds", "gauge", help));
    return emit(b, "%s_start_time_seconds %" PRId64 "\n", m.prefix,
                atomic_load_explicit(&m.start_time, memory_order_relaxed));
}

static VEIL_RESULT emit_requests(struct veil_buf *b)
{
    VEIL_GUARD(family_header(b, m.prefix, "_requests_total", "counter",
                             "Answered HTTP requests by route and status code."));
    for (size_t r = 0; r < m.label_count; r++) {
        for (size_t c = 0; c <= CODE_COUNT; c++) {
            uint64_t n = get(&m.requests[r][c]);
            if (n == 0)
                continue;
            char code[16] = "other";
            if (c < CODE_COUNT)
                snprintf(code, sizeof code, "%u", codes[c]);
            VEIL_GUARD(emit(b, "%s_requests_total{route=\"%s\",code=\"%s\"} %" PRIu64 "\n", m.prefix, m.labels[r],
                            code, n));
        }
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT emit_histogram(struct veil_buf *b, size_t r)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= BUCKET_COUNT; i++) {
        cumulative += get(&m.buckets[r][i]);
        VEIL_GUARD(emit(b, "%s_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %" PRIu64 "\n", m.prefix,
                        m.labels[r], i < BUCKET_COUNT ? bucket_le[i] : "+Inf", cumulative));
    }
    uint64_t ns = get(&m.duration_ns[r]);
    VEIL_GUARD(emit(b, "%s_request_duration_seconds_sum{route=\"%s\"} %" PRIu64 ".%09" PRIu64 "\n", m.prefix,
                    m.labels[r], ns / NS_PER_S, ns % NS_PER_S));
    return emit(b, "%s_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n", m.prefix, m.labels[r],
                cumulative);
}

static VEIL_RESULT emit_durations(struct veil_buf *b)
{
    VEIL_GUARD(family_header(b, m.prefix, "_request_duration_seconds", "histogram",
                             "Time from routing a request to its answer, by route."));
    for (size_t r = 0; r < m.label_count; r++)
        VEIL_GUARD(emit_histogram(b, r));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT emit_family(struct veil_buf *b, struct vd_family *f)
{
    VEIL_GUARD(family_header(b, f->name, "", f->type == VD_COUNTER ? "counter" : "gauge", f->help));
    for (size_t i = 0; i < f->count; i++) {
        int64_t v = atomic_load_explicit(&f->cells[i], memory_order_relaxed);
        if (f->label == NULL)
            VEIL_GUARD(emit(b, "%s %" PRId64 "\n", f->name, v));
        else
            VEIL_GUARD(emit(b, "%s{%s=\"%s\"} %" PRId64 "\n", f->name, f->label, f->values[i], v));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT emit_all(struct veil_buf *b)
{
    VEIL_GUARD(emit_info(b));
    VEIL_GUARD(emit_requests(b));
    VEIL_GUARD(emit_durations(b));
    for (size_t i = 0; i < m.family_count; i++)
        VEIL_GUARD(emit_family(b, m.families[i]));
    return veil_buf_append_u8(b, 0);
}

VEIL_RESULT vd_metrics_render(char **out, size_t *size)
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

VEIL_RESULT vd_metrics_respond(struct vd_response *rs)
{
    char *text = NULL;
    size_t size = 0;
    VEIL_GUARD(vd_metrics_render(&text, &size));
    free(rs->body);
    rs->status = 200;
    rs->body = text;
    rs->body_size = size;
    rs->content_type = VD_METRICS_CONTENT_TYPE;
    return VEIL_RESULT_OK;
}
