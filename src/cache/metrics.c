/* SPDX-License-Identifier: Apache-2.0 */
/* The cache's metric families in the shared registry (src/daemon/metrics.h), and its small HTTP routing table:
 * GET /metrics (Prometheus text), GET /health/live, GET /health/ready. No model id is a label (which models a node
 * serves is the owner's business); per-model history is in the log. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"

enum cc_label { L_METRICS, L_HEALTH, L_OTHER };
static const char *const route_labels[] = {"metrics", "health", "other"};

static const char *const renewal_results[] = {"ok", "denied", "failed"};
static const char *const served_kinds[] = {"key", "lease"};
/* ERROR codes by name (lib/cache/local.h), then "busy" (max_connections reached). */
static const char *const refusal_reasons[] = {"bad-message", "peer",     "report", "not-allowed",
                                              "revoked",     "unavailable", "internal", "busy"};
#define REASONS (sizeof refusal_reasons / sizeof refusal_reasons[0])

static _Atomic int64_t keys_held, next_expiry, broker_up = 1, renewals[3], expiries, served[2], refusals[REASONS];

static struct vd_family families[] = {
    {"veil_cache_keys_held", "Model keys held under a valid lease.", VD_GAUGE, NULL, NULL, 1, &keys_held},
    {"veil_cache_next_lease_expiry_seconds", "Time until the first held lease expires unless renewed (-1: none).",
     VD_GAUGE, NULL, NULL, 1, &next_expiry},
    {"veil_cache_broker_reachable", "1 when the last exchange with the key broker got an answer, 0 after an outage.",
     VD_GAUGE, NULL, NULL, 1, &broker_up},
    {"veil_cache_renewals_total", "Lease renewals with the key broker, by result (failed: broker unreachable).",
     VD_COUNTER, "result", renewal_results, 3, renewals},
    {"veil_cache_lease_expiries_total", "Keys wiped because their lease ended without a renewal.", VD_COUNTER, NULL,
     NULL, 1, &expiries},
    {"veil_cache_local_served_total", "Keys (key) and lease renewals (lease) granted to local runtimes.", VD_COUNTER,
     "kind", served_kinds, 2, served},
    {"veil_cache_local_refusals_total", "Local requests refused, by reason.", VD_COUNTER, "reason", refusal_reasons,
     REASONS, refusals},
};
enum { F_KEYS, F_EXPIRY, F_BROKER, F_RENEWALS, F_EXPIRIES, F_SERVED, F_REFUSALS };

VEIL_RESULT cc_metrics_init(void)
{
    atomic_store(&next_expiry, -1);
    VEIL_GUARD(vd_metrics_init("veil_cache", "key cache", VEIL_CACHE_VERSION, route_labels,
                               sizeof route_labels / sizeof route_labels[0]));
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        VEIL_GUARD(vd_metrics_register(&families[i]));
    return VEIL_RESULT_OK;
}

void cc_metrics_renewal(enum cc_renewal r)
{
    vd_metrics_add(&families[F_RENEWALS], (size_t)r, 1);
}

void cc_metrics_expired(size_t n)
{
    vd_metrics_add(&families[F_EXPIRIES], 0, (int64_t)n);
}

void cc_metrics_keys(size_t held, int64_t next_expiry_ms)
{
    atomic_store(&keys_held, (int64_t)held);
    atomic_store(&next_expiry, next_expiry_ms < 0 ? -1 : next_expiry_ms / 1000);
}

void cc_metrics_broker_reachable(int up)
{
    atomic_store(&broker_up, up ? 1 : 0);
}

void cc_metrics_served(int lease_only)
{
    vd_metrics_add(&families[F_SERVED], lease_only ? 1 : 0, 1);
}

void cc_metrics_refused(uint16_t code)
{
    size_t i = code >= 1 && code <= REASONS - 1 ? (size_t)code - 1 : REASONS - 2;
    vd_metrics_add(&families[F_REFUSALS], i, 1);
}

void cc_metrics_busy(void)
{
    vd_metrics_add(&families[F_REFUSALS], REASONS - 1, 1);
}

/* ---- routes ------------------------------------------------------------------------------------------------ */

static void respond_error(struct vd_response *rs, unsigned status, const char *message)
{
    vd_respond_json(rs, status, json_pack("{s:s}", "error", message));
    rs->status = status;
}

static void metrics_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    if (!veil_ok(vd_metrics_respond(rs))) {
        vd_log("error", "metrics-failed", "{s:s}", "detail", veil_last_error());
        respond_error(rs, 500, "internal error (see the cache's log)");
    }
}

static void live_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    vd_respond_json(rs, 200, json_pack("{s:b}", "live", 1));
}

/* Ready once the socket is open (keys are fetched on demand or were preloaded). */
static void ready_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)rq;
    struct cc_ctx *c = ctx;
    if (c->acceptor_started)
        vd_respond_json(rs, 200, json_pack("{s:b}", "ready", 1));
    else
        respond_error(rs, 503, "the key cache is not ready");
}

static const struct vd_route routes[] = {
    {"GET", "/metrics", metrics_get, 0, L_METRICS},
    {"GET", "/health/live", live_get, 0, L_HEALTH},
    {"GET", "/health/ready", ready_get, 0, L_HEALTH},
};

static void not_found(void *ctx, const struct vd_request *rq, int path_known, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    respond_error(rs, path_known ? 405 : 404, path_known ? "Method Not Allowed" : "Not Found");
}

static size_t fallback_label(const char *path)
{
    (void)path;
    return L_OTHER;
}

size_t cc_body_limit(void *ctx, const char *path)
{
    (void)ctx, (void)path;
    return 1024; /* every route is a GET */
}

void cc_too_large(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    respond_error(rs, 413, "the request body exceeds the limit");
}

const struct vd_router cc_router = {
    .routes = routes,
    .route_count = sizeof routes / sizeof routes[0],
    .not_found = not_found,
    .admit = NULL,
    .fallback_label = fallback_label,
};
