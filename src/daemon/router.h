/* SPDX-License-Identifier: Apache-2.0 */
/* Requests, responses and the one routing table of a daemon. A daemon declares its routes as rows (method, path
 * pattern, handler, flags of its own, metrics label); the layer matches the path, lets the daemon admit the request
 * (authentication, rate limits: the daemon's own rules, by the route's flags), calls the handler, and counts and times
 * every answer under the route's label. Handlers get a parsed request and fill a response; they never touch
 * libmicrohttpd. */
#ifndef VEIL_DAEMON_ROUTER_H
#define VEIL_DAEMON_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define VD_MAX_CAPTURES 4u
#define VD_MAX_SEGMENTS 16u
#define VD_MAX_PATH_SIZE 1024u    /* longest request path routed */
#define VD_MAX_EXTRA_HEADERS 2u
#define VD_CLIENT_MAX 64u         /* the peer address as text */

enum vd_lookup_kind { VD_HEADER, VD_COOKIE, VD_QUERY };

struct vd_route;

struct vd_request {
    const char *method;
    const char *path;                        /* without the query string */
    const char *client;                      /* the peer's address, as text */
    const uint8_t *body;
    size_t body_size;
    const char *captures[VD_MAX_CAPTURES];   /* the path segments matched by '*' in the route pattern */
    const struct vd_route *route;            /* the matched route, for the handler */
    const char *(*lookup)(void *conn, enum vd_lookup_kind kind, const char *key);
    void *conn;
    int client_cert_ok;                      /* 1: a client certificate verified against the configured CA */
    const char *client_cert_subject;         /* its subject DN (logging only); NULL when none verified */
};

struct vd_header {
    const char *name;                        /* static text; NULL: unused slot */
    char value[64];
};

struct vd_response {
    unsigned status;
    char *body;                              /* malloc'd */
    size_t body_size;
    const char *content_type;                /* static text; NULL: application/json */
    char set_cookie[192];                    /* empty: none */
    unsigned retry_after;                    /* seconds; 0: no header */
    struct vd_header extra[VD_MAX_EXTRA_HEADERS];
};

typedef void (*vd_handler)(void *ctx, const struct vd_request *rq, struct vd_response *rs);

struct vd_route {
    const char *method;
    const char *pattern;   /* '/'-separated; "*" matches one non-empty segment and is captured */
    vd_handler handler;
    unsigned flags;        /* the daemon's own (which authentication, rate limited ...) */
    size_t label;          /* index into the router's metrics labels */
};

struct vd_router {
    const struct vd_route *routes;
    size_t route_count;
    /* Answers a request whose path matches no route (path_known 0) or no route of its method (path_known 1). */
    void (*not_found)(void *ctx, const struct vd_request *rq, int path_known, struct vd_response *rs);
    /* May the request reach its handler? Fills the refusal and returns 0 when not. NULL: always. */
    int (*admit)(void *ctx, const struct vd_route *route, struct vd_request *rq, struct vd_response *rs);
    /* The label of a path that matches no route. */
    size_t (*fallback_label)(const char *path);
};

/* A header, cookie or query argument of the request; NULL when absent. Header names are case-insensitive. */
const char *vd_request_get(const struct vd_request *rq, enum vd_lookup_kind kind, const char *key);
/* status with a JSON body (stolen). Out of memory leaves no body: the status becomes 500 for a success. */
void vd_respond_json(struct vd_response *rs, unsigned status, json_t *body);
/* status with a body of size bytes (copied) and a static content type. */
void vd_respond_bytes(struct vd_response *rs, unsigned status, const char *content_type, const void *body,
                      size_t size);
/* Adds a response header (name static, value copied, truncated to fit). */
void vd_response_header(struct vd_response *rs, const char *name, const char *value);

/* Routes one request, and counts and times it under its route's label. */
void vd_dispatch(const struct vd_router *router, void *ctx, struct vd_request *rq, struct vd_response *rs);
/* The metrics label of a path, by the routing table (for requests answered before routing). */
size_t vd_route_label_of(const struct vd_router *router, const char *path);

#endif
