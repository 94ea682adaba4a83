/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs Prometheus metrics (docs/kbs.md, "Metrics"): process-wide counters and histograms held in C11 atomics,
 * so the request path takes no lock; rendered in the text exposition format 0.0.4 at GET /metrics. Every label
 * set is fixed and small: no model ids, no client addresses, no free text. */
#ifndef VEIL_KBS_METRICS_H
#define VEIL_KBS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"

#define KBS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The route label of veil_kbs_requests_total and veil_kbs_request_duration_seconds. */
enum kbs_route_label {
    KBS_ROUTE_AUTH,
    KBS_ROUTE_ATTEST,
    KBS_ROUTE_RESOURCE,
    KBS_ROUTE_ADMIN,
    KBS_ROUTE_METRICS,
    KBS_ROUTE_OTHER,
    KBS_ROUTE_LABEL_COUNT
};

/* The route label of a path, by the routing table (routes.c); for requests answered before routing. */
enum kbs_route_label kbs_route_label_of(const char *path);
/* A monotonic clock in nanoseconds, for request durations. */
uint64_t kbs_metrics_clock_ns(void);
/* Records the time the broker started serving (veil_kbs_start_time_seconds). */
void kbs_metrics_started(int64_t now);
/* One answered request: its route, HTTP status (codes outside the fixed set count as "other") and duration. */
void kbs_metrics_request(enum kbs_route_label route, unsigned status, uint64_t elapsed_ns);
/* One audited protocol decision (a key released, or a refusal at /auth, /attest or /resource) for the TEE type
 * named tee (NULL or an unknown name: "unknown"). */
void kbs_metrics_decision(const char *tee, int released);
void kbs_metrics_audit_failure(void);
void kbs_metrics_rate_limited(void);
/* The exposition text (malloc'd, *size bytes, NUL-terminated). */
VEIL_RESULT kbs_metrics_render(char **out, size_t *size);

#endif
