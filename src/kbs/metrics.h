/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs Prometheus metrics (docs/kbs.md, "Metrics"): the request counters and duration histograms come from the
 * shared registry (src/daemon/metrics.h) under the prefix veil_kbs, labelled by the routes below; the broker adds its
 * own families: key releases and audited refusals by TEE type, audit failures, rate-limited requests. */
#ifndef VEIL_KBS_METRICS_H
#define VEIL_KBS_METRICS_H

#include <stddef.h>

#include "core/result.h"

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

/* Sets up the registry with the broker's labels and families; once, before serving. */
VEIL_RESULT kbs_metrics_init(void);
/* One audited protocol decision (a key released, or a refusal at /auth, /attest or /resource) for the TEE type
 * named tee (NULL or an unknown name: "unknown"). */
void kbs_metrics_decision(const char *tee, int released);
void kbs_metrics_audit_failure(void);
/* A refusal before authentication at /auth, /attest, /resource or /veil-usage (event "auth", "attest", "release",
 * "usage-release", "usage-report"): counted here instead of the audit log. */
void kbs_metrics_unauthenticated(const char *event);
/* A usage report added to the counters, changing clients of them. */
void kbs_metrics_usage_report(size_t clients);
void kbs_metrics_rate_limited(void);

#endif
