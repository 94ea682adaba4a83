/* SPDX-License-Identifier: Apache-2.0 */
/* The one routing table, and the response helpers. */
#include <stdlib.h>
#include <string.h>

#include "kbsd.h"

#define TRUSTEE_ERROR_PREFIX "https://github.com/confidential-containers/kbs/errors/"

typedef void (*kbs_handler)(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);

enum route_kind { ROUTE_PROTOCOL, ROUTE_ADMIN };

struct route {
    const char *method;
    const char *pattern;   /* '/'-separated; "*" matches one non-empty segment */
    enum route_kind kind;
    int rate_limited;      /* /auth and /attest: per-client token bucket */
    kbs_handler handler;
};

static const struct route routes[] = {
    {"POST", "/kbs/v0/auth", ROUTE_PROTOCOL, 1, kbs_rcar_auth},
    {"POST", "/kbs/v0/attest", ROUTE_PROTOCOL, 1, kbs_rcar_attest},
    {"GET", "/kbs/v0/resource/*/*/*", ROUTE_PROTOCOL, 0, kbs_rcar_resource},
    {"GET", "/admin/v1/models", ROUTE_ADMIN, 0, kbs_admin_models_list},
    {"POST", "/admin/v1/models", ROUTE_ADMIN, 0, kbs_admin_model_create},
    {"GET", "/admin/v1/models/*", ROUTE_ADMIN, 0, kbs_admin_model_get},
    {"POST", "/admin/v1/models/*/rotate", ROUTE_ADMIN, 0, kbs_admin_key_rotate},
    {"POST", "/admin/v1/models/*/versions/*/revoke", ROUTE_ADMIN, 0, kbs_admin_key_revoke},
    {"GET", "/admin/v1/models/*/policy", ROUTE_ADMIN, 0, kbs_admin_policy_get},
    {"PUT", "/admin/v1/models/*/policy", ROUTE_ADMIN, 0, kbs_admin_policy_set},
    {"GET", "/admin/v1/audit", ROUTE_ADMIN, 0, kbs_admin_audit_read},
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

static const struct route *find_route(const char *method, char *const segs[], size_t n,
                                      const char *captures[KBS_MAX_CAPTURES], int *path_known)
{
    *path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const char *caps[KBS_MAX_CAPTURES] = {0};
        if (!match(routes[i].pattern, segs, n, caps))
            continue;
        *path_known = 1;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        memcpy(captures, caps, sizeof caps);
        return &routes[i];
    }
    return NULL;
}

void kbs_dispatch(struct kbs_ctx *k, struct kbs_request *rq, struct kbs_response *rs)
{
    char buf[KBS_MAX_PATH_SIZE];
    char *segs[KBS_MAX_SEGMENTS];
    int admin = kbs_path_is_admin(rq->path), known = 0;
    const struct route *r = NULL;
    size_t n = 0;
    if (strlen(rq->path) < sizeof buf) {
        strcpy(buf, rq->path);
        n = split(buf, segs);
    }
    if (n > 0)
        r = find_route(rq->method, segs, n, rq->captures, &known);
    if (r == NULL) {
        kbs_log("info", "no-route", "{s:s, s:s, s:s}", "method", rq->method, "path", "(not logged)", "client",
                rq->client);
        if (admin)
            kbs_respond_admin_error(rs, known ? 405 : 404, "not_found", "no such endpoint");
        else
            kbs_respond_protocol_error(rs, 404, "InvalidRequestPath");
        return;
    }
    if (r->rate_limited && !veil_kbs_ratelimit_take(&k->ratelimit, rq->client, kbs_now_ms())) {
        kbs_log("warn", "rate-limited", "{s:s, s:s}", "client", rq->client, "path", r->pattern);
        kbs_respond_protocol_error(rs, 429, "TooManyRequests");
        rs->retry_after = 1;
        return;
    }
    if (r->kind == ROUTE_ADMIN && !kbs_admin_authorized(k, rq)) {
        kbs_respond_admin_error(rs, 401, "unauthorized", "a valid admin bearer token is required");
        return;
    }
    r->handler(k, rq, rs);
}
