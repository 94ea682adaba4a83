/* SPDX-License-Identifier: Apache-2.0 */
/* The one routing table (rows of the shared router, src/daemon/router.h), the broker's admission rules and its two
 * error shapes. */
#include <stdlib.h>
#include <string.h>

#include "kbsd.h"
#include "metrics.h"

#define TRUSTEE_ERROR_PREFIX "https://github.com/confidential-containers/kbs/errors/"

/* Route flags. */
enum {
    ROUTE_PROTOCOL = 0,      /* RCAR: no admin authentication */
    ROUTE_ADMIN = 1u << 0,   /* the admin bearer token or client certificate */
    ROUTE_METRICS = 1u << 1, /* as metrics_auth says */
    ROUTE_RATE = 1u << 2,    /* /auth, /attest, /resource, /veil-usage: per-client token bucket */
};

static const struct vd_route routes[] = {
    {"POST", "/kbs/v0/auth", kbs_rcar_auth, ROUTE_PROTOCOL | ROUTE_RATE, KBS_ROUTE_AUTH},
    {"POST", "/kbs/v0/attest", kbs_rcar_attest, ROUTE_PROTOCOL | ROUTE_RATE, KBS_ROUTE_ATTEST},
    {"GET", "/kbs/v0/resource/*/*/*", kbs_rcar_resource, ROUTE_PROTOCOL | ROUTE_RATE, KBS_ROUTE_RESOURCE},
    {"POST", "/kbs/v0/veil-usage/*", kbs_rcar_usage_counts, ROUTE_PROTOCOL | ROUTE_RATE, KBS_ROUTE_RESOURCE},
    {"GET", "/admin/v1/models", kbs_admin_models_list, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"POST", "/admin/v1/models", kbs_admin_model_create, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/models/*", kbs_admin_model_get, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"POST", "/admin/v1/models/*/rotate", kbs_admin_key_rotate, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"POST", "/admin/v1/models/*/versions/*/revoke", kbs_admin_key_revoke, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/models/*/policy", kbs_admin_policy_get, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"PUT", "/admin/v1/models/*/policy", kbs_admin_policy_set, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/models/*/usage", kbs_admin_usage_get, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"PUT", "/admin/v1/models/*/usage", kbs_admin_usage_set, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"DELETE", "/admin/v1/models/*/usage", kbs_admin_usage_clear, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/models/*/usage/counters", kbs_admin_usage_counters, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/audit", kbs_admin_audit_read, ROUTE_ADMIN, KBS_ROUTE_ADMIN},
    {"GET", "/metrics", kbs_metrics_get, ROUTE_METRICS, KBS_ROUTE_METRICS},
};

int kbs_path_is_admin(const char *path)
{
    return strncmp(path, "/admin/", 7) == 0;
}

/* The fixed, client-visible detail of each error type. */
static const char *error_detail(const char *type)
{
    static const struct {
        const char *type, *detail;
    } details[] = {
        {"SerdeError", "The request could not be parsed"},
        {"AttestationError", "Attestation failed"},
        {"TokenNotFound", "No attestation token or session cookie"},
        {"TokenVerifierError", "The attestation token or session is not valid"},
        {"PolicyDeny", "Access denied by policy"},
        {"InvalidRequestPath", "Invalid request path"},
        {"ResourceNotFound", "Resource not found"},
        {"PluginInternalError", "Internal error"},
        {"TooManyRequests", "Too many requests, retry later"},
    };
    for (size_t i = 0; i < sizeof details / sizeof details[0]; i++)
        if (strcmp(details[i].type, type) == 0)
            return details[i].detail;
    return "Error";
}

/* A JSON error body; when it cannot be made, the status stays (a protocol refusal must not turn into a success). */
static void respond_error(struct vd_response *rs, unsigned status, json_t *body)
{
    vd_respond_json(rs, status, body);
    rs->status = status;
}

void kbs_respond_protocol_error(struct vd_response *rs, unsigned status, const char *type)
{
    char url[128];
    snprintf(url, sizeof url, TRUSTEE_ERROR_PREFIX "%s", type);
    respond_error(rs, status, json_pack("{s:s, s:s}", "type", url, "detail", error_detail(type)));
}

void kbs_respond_admin_error(struct vd_response *rs, unsigned status, const char *code, const char *message)
{
    respond_error(rs, status, json_pack("{s:s, s:s}", "error", code, "message", message));
}

/* Is the request allowed to reach the route's handler? Answers the refusal when not. */
static int admit(void *ctx, const struct vd_route *r, struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    if ((r->flags & ROUTE_RATE) && !veil_kbs_ratelimit_take(&k->ratelimit, rq->client, vd_now_ms())) {
        vd_log("warn", "rate-limited", "{s:s, s:s}", "client", rq->client, "path", r->pattern);
        kbs_metrics_rate_limited();
        kbs_respond_protocol_error(rs, 429, "TooManyRequests");
        rs->retry_after = 1;
        return 0;
    }
    int needs_admin =
        (r->flags & ROUTE_ADMIN) || ((r->flags & ROUTE_METRICS) && strcmp(k->cfg->metrics_auth, "none") != 0);
    if (needs_admin && !kbs_admin_authorized(k, rq)) {
        kbs_respond_admin_error(rs, 401, "unauthorized", "a valid admin bearer token or client certificate is "
                                                         "required");
        return 0;
    }
    return 1;
}

static void not_found(void *ctx, const struct vd_request *rq, int path_known, struct vd_response *rs)
{
    (void)ctx;
    vd_log("info", "no-route", "{s:s, s:s, s:s}", "method", rq->method, "path", "(not logged)", "client", rq->client);
    if (kbs_path_is_admin(rq->path))
        kbs_respond_admin_error(rs, path_known ? 405 : 404, "not_found", "no such endpoint");
    else
        kbs_respond_protocol_error(rs, 404, "InvalidRequestPath");
}

/* The metrics label of a path no route names: admin or other by prefix. */
static size_t fallback_label(const char *path)
{
    return kbs_path_is_admin(path) ? KBS_ROUTE_ADMIN : KBS_ROUTE_OTHER;
}

const struct vd_router kbs_router = {
    .routes = routes,
    .route_count = sizeof routes / sizeof routes[0],
    .not_found = not_found,
    .admit = admit,
    .fallback_label = fallback_label,
};

void kbs_dispatch(struct kbs_ctx *k, struct vd_request *rq, struct vd_response *rs)
{
    vd_dispatch(&kbs_router, k, rq, rs);
}
