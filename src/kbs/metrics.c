/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's metric families (metrics.h) and GET /metrics. */
#include <stdlib.h>
#include <string.h>

#include "attest/tee_table.h"
#include "kbsd.h"
#include "metrics.h"

static const char *const route_names[KBS_ROUTE_LABEL_COUNT] = {"auth", "attest", "resource", "admin", "metrics",
                                                               "other"};

/* The tee label: index 0 is "unknown" (no TEE named, or a name the broker does not know), then one per row of
 * lib/attest's TEE table. */
#define TEE_LABEL(desc) desc.name,
static const char *const tee_names[] = {"unknown", VEIL_TEE_TABLE(TEE_LABEL)};
#define TEE_COUNT (sizeof tee_names / sizeof tee_names[0])

/* The endpoint label of refusals before authentication. */
static const char *const endpoints[] = {"auth", "attest", "resource", "usage"};
#define ENDPOINT_COUNT (sizeof endpoints / sizeof endpoints[0])

static _Atomic int64_t releases[TEE_COUNT], denials[TEE_COUNT], audit_failures, rate_limited,
    unauthenticated[ENDPOINT_COUNT], usage_reports, usage_clients;

static struct vd_family families[] = {
    {"veil_kbs_key_releases_total", "Model keys released, by TEE type.", VD_COUNTER, "tee", tee_names, TEE_COUNT,
     releases},
    {"veil_kbs_release_denials_total", "Audited refusals at /auth, /attest and /resource, by TEE type.", VD_COUNTER,
     "tee", tee_names, TEE_COUNT, denials},
    {"veil_kbs_audit_failures_total", "Audit records that could not be stored.", VD_COUNTER, NULL, NULL, 1,
     &audit_failures},
    {"veil_kbs_rate_limited_total", "Requests refused by the per-client rate limiter.", VD_COUNTER, NULL, NULL, 1,
     &rate_limited},
    {"veil_kbs_unauthenticated_refusals_total", "Protocol requests refused before authentication (not audited), "
     "by endpoint.", VD_COUNTER, "endpoint", endpoints, ENDPOINT_COUNT, unauthenticated},
    {"veil_kbs_usage_reports_total", "Usage reports added to the usage counters (POST /kbs/v0/veil-usage).",
     VD_COUNTER, NULL, NULL, 1, &usage_reports},
    {"veil_kbs_usage_report_clients_total", "Client counters those reports changed.", VD_COUNTER, NULL, NULL, 1,
     &usage_clients},
};
enum { F_RELEASES, F_DENIALS, F_AUDIT_FAILURES, F_RATE_LIMITED, F_UNAUTHENTICATED, F_USAGE_REPORTS, F_USAGE_CLIENTS };

VEIL_RESULT kbs_metrics_init(void)
{
    VEIL_GUARD(vd_metrics_init("veil_kbs", "broker", VEIL_KBS_VERSION, route_names, KBS_ROUTE_LABEL_COUNT));
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        VEIL_GUARD(vd_metrics_register(&families[i]));
    return VEIL_RESULT_OK;
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
    vd_metrics_add(&families[released ? F_RELEASES : F_DENIALS], tee_index(tee), 1);
}

void kbs_metrics_audit_failure(void)
{
    vd_metrics_add(&families[F_AUDIT_FAILURES], 0, 1);
}

void kbs_metrics_rate_limited(void)
{
    vd_metrics_add(&families[F_RATE_LIMITED], 0, 1);
}

void kbs_metrics_unauthenticated(const char *event)
{
    size_t i = strcmp(event, "auth") == 0 ? 0 : strcmp(event, "attest") == 0 ? 1 : 2;
    if (strcmp(event, "usage-report") == 0)
        i = 3;
    vd_metrics_add(&families[F_UNAUTHENTICATED], i, 1);
}

void kbs_metrics_usage_report(size_t clients)
{
    vd_metrics_add(&families[F_USAGE_REPORTS], 0, 1);
    vd_metrics_add(&families[F_USAGE_CLIENTS], 0, (int64_t)clients);
}

void kbs_metrics_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    if (!veil_ok(vd_metrics_respond(rs))) {
        vd_log("error", "metrics-failed", "{s:s}", "detail", veil_last_error());
        kbs_respond_admin_error(rs, 500, "internal", "internal error (see the broker's log)");
    }
}
