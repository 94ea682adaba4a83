/* SPDX-License-Identifier: Apache-2.0 */
/* The one routing table, and the response helpers. */
#include <stdlib.h>
#include <string.h>

#include "kbsd.h"
#include "metrics.h"

#define TRUSTEE_ERROR_PREFIX "https://github.com/confidential-containers/kbs/errors/"

typedef void (*kbs_handler)(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);

enum route_kind { ROUTE_PROTOCOL, ROUTE_ADMIN, ROUTE_METRICS };

struct route {
    const char *method;
    const char *pattern;   /* '/'-separated; "*" matches one non-empty segment */
    enum route_kind kind;
    int rate_limited;      /* /auth and /attest: per-client token bucket */
    kbs_handler handler;
    enum kbs_route_label label; /* of the request metrics */
};

static const struct route routes[] = {
    {"POST", "/kbs/v0/auth", ROUTE_PROTOCOL, 1, kbs_rcar_auth, KBS_ROUTE_AUTH},
    {"POST", "/kbs/v0/attest", ROUTE_PROTOCOL, 1, kbs_rcar_attest, KBS_ROUTE_ATTEST},
    {"GET", "/kbs/v0/resource/*/*/*", ROUTE_PROTOCOL, 0, kbs_rcar_resource, KBS_ROUTE_RESOURCE},
    {"GET", "/admin/v1/models", ROUTE_ADMIN, 0, kbs_admin_models_list, KBS_ROUTE_ADMIN},
    {"POST", "/admin/v1/models", ROUTE_ADMIN, 0, kbs_admin_model_create, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/models/*", ROUTE_ADMIN, 0, kbs_admin_model_get, KBS_ROUTE_ADMIN},
    {"POST", "/admin/v1/models/*/rotate", ROUTE_ADMIN, 0, kbs_admin_key_rotate, KBS_ROUTE_ADMIN},
    {"POST", "/admin/v1/models/*/versions/*/revoke", ROUTE_ADMIN, 0, kbs_admin_key_revoke, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/models/*/policy", ROUTE_ADMIN, 0, kbs_admin_policy_get, KBS_ROUTE_ADMIN},
    {"PUT", "/admin/v1/models/*/policy", ROUTE_ADMIN, 0, kbs_admin_policy_set, KBS_ROUTE_ADMIN},
    {"GET", "/admin/v1/audit", ROUTE_ADMIN, 0, kbs_admin_audit_read, KBS_ROUTE_ADMIN},
    {"GET", "/metrics", ROUTE_METRICS, 0, kbs_metrics_get, KBS_ROUTE_METRICS},
};

const char *kbs_request_get(const struct kbs_request *rq, enum kbs_lookup_kind kind, const char *key)
{
    return rq->lookup != NULL ? rq->lookup(rq->conn, kind, key) : NULL;
}

int kbs_path_is_admin(const char *path)
{
    return strncmp(path, "/admin/", 7) == 0;
}

void kbs_respond_json(struct kbs_response *rs, unsigned status, json_t *body)
{
    free(rs->body);
    rs->body = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    rs->status = status;
    rs->body_size = rs->body != NULL ? strlen(rs->body) : 0;
    if (rs->body == NULL)
        rs->status = status >= 400 ? status : 401;
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

void kbs_respond_protocol_error(struct kbs_response *rs, unsigned status, const char *type)
{
    char url[128];
    snprintf(url, sizeof url, TRUSTEE_ERROR_PREFIX "%s", type);
    kbs_respond_json(rs, status, json_pack("{s:s, s:s}", "type", url, "detail", error_detail(type)));
}

void kbs_respond_admin_error(struct kbs_response *rs, unsigned status, const char *code, const char *message)
{
    kbs_respond_json(rs, status, json_pack("{s:s, s:s}", "error", code, "message", message));
}

#define KBS_MAX_SEGMENTS 16u

/* Splits a copy of the path ("/a/b/c") into its segments; 0 when it does not start with '/' or has too many. */
static size_t split(char *buf, char *segs[KBS_MAX_SEGMENTS])
{
    if (buf[0] != '/')
        return 0;
    size_t n = 0;
    for (char *p = buf + 1;;) {
        if (n == KBS_MAX_SEGMENTS)
            return 0;
        segs[n++] = p;
        char *slash = strchr(p, '/');
        if (slash == NULL)
            return n;
        *slash = '\0';
        p = slash + 1;
    }
}

/* Matches the segments against a pattern; "*" matches one non-empty segment and is captured. */
static int match(const char *pattern, char *const segs[], size_t n, const char *caps[KBS_MAX_CAPTURES])
{
    const char *q = pattern + 1;
    size_t i = 0, ncap = 0;
    for (;;) {
        size_t plen = strcspn(q, "/");
        if (i == n)
            return 0;
        if (plen == 1 && q[0] == '*') {
            if (segs[i][0] == '\0' || ncap == KBS_MAX_CAPTURES)
                return 0;
            caps[ncap++] = segs[i];
        } else if (strlen(segs[i]) != plen || memcmp(q, segs[i], plen) != 0) {
            return 0;
        }
        i++;
        q += plen;
        if (*q == '\0')
            return i == n;
        q++;
    }
}

/* A copy of the path in buf, split; 0 segments when it is too long or malformed. */
static size_t split_path(const char *path, char buf[KBS_MAX_PATH_SIZE], char *segs[KBS_MAX_SEGMENTS])
{
    if (strlen(path) >= KBS_MAX_PATH_SIZE)
        return 0;
    strcpy(buf, path);
    return split(buf, segs);
}

/* The route of method and path, or NULL; *path_match: the first route whose pattern matches, whatever its method
 * (NULL: the path names nothing). */
static const struct route *find_route(const char *method, char *const segs[], size_t n,
                                      const char *captures[KBS_MAX_CAPTURES], const struct route **path_match)
{
    *path_match = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const char *caps[KBS_MAX_CAPTURES] = {0};
        if (!match(routes[i].pattern, segs, n, caps))
            continue;
        if (*path_match == NULL)
            *path_match = &routes[i];
        if (strcmp(routes[i].method, method) != 0)
            continue;
        memcpy(captures, caps, sizeof caps);
        return &routes[i];
    }
    return NULL;
}

/* The metrics label: that of the route the path names (any method), else admin or other by prefix. */
static enum kbs_route_label label_of(const char *path, const struct route *path_match)
{
    if (path_match != NULL)
        return path_match->label;
    return kbs_path_is_admin(path) ? KBS_ROUTE_ADMIN : KBS_ROUTE_OTHER;
}

enum kbs_route_label kbs_route_label_of(const char *path)
{
    char buf[KBS_MAX_PATH_SIZE];
    char *segs[KBS_MAX_SEGMENTS];
    const char *caps[KBS_MAX_CAPTURES];
    const struct route *path_match = NULL;
    size_t n = split_path(path, buf, segs);
    (void)find_route("", segs, n, caps, &path_match);
    return label_of(path, path_match);
}

/* Is the request allowed to reach the route's handler? Answers the refusal when not. */
static int admitted(struct kbs_ctx *k, const struct route *r, struct kbs_request *rq, struct kbs_response *rs)
{
    if (r->rate_limited && !veil_kbs_ratelimit_take(&k->ratelimit, rq->client, kbs_now_ms())) {
        kbs_log("warn", "rate-limited", "{s:s, s:s}", "client", rq->client, "path", r->pattern);
        kbs_metrics_rate_limited();
        kbs_respond_protocol_error(rs, 429, "TooManyRequests");
        rs->retry_after = 1;
        return 0;
    }
    int needs_admin =
        r->kind == ROUTE_ADMIN || (r->kind == ROUTE_METRICS && strcmp(k->cfg->metrics_auth, "none") != 0);
    if (needs_admin && !kbs_admin_authorized(k, rq)) {
        kbs_respond_admin_error(rs, 401, "unauthorized", "a valid admin bearer token or client certificate is "
                                                         "required");
        return 0;
    }
    return 1;
}

static void route(struct kbs_ctx *k, struct kbs_request *rq, struct kbs_response *rs, enum kbs_route_label *label)
{
    char buf[KBS_MAX_PATH_SIZE];
    char *segs[KBS_MAX_SEGMENTS];
    const struct route *path_match = NULL;
    size_t n = split_path(rq->path, buf, segs);
    const struct route *r = find_route(rq->method, segs, n, rq->captures, &path_match);
    *label = label_of(rq->path, path_match);
    if (r == NULL) {
        kbs_log("info", "no-route", "{s:s, s:s, s:s}", "method", rq->method, "path", "(not logged)", "client",
                rq->client);
        if (kbs_path_is_admin(rq->path))
            kbs_respond_admin_error(rs, path_match != NULL ? 405 : 404, "not_found", "no such endpoint");
        else
            kbs_respond_protocol_error(rs, 404, "InvalidRequestPath");
        return;
    }
    if (admitted(k, r, rq, rs))
        r->handler(k, rq, rs);
}

/* Routes the request, and counts and times it for the metrics. */
void kbs_dispatch(struct kbs_ctx *k, struct kbs_request *rq, struct kbs_response *rs)
{
    uint64_t start = kbs_metrics_clock_ns();
    enum kbs_route_label label = KBS_ROUTE_OTHER;
    route(k, rq, rs, &label);
    kbs_metrics_request(label, rs->status, kbs_metrics_clock_ns() - start);
}
