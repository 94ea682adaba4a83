/* SPDX-License-Identifier: Apache-2.0 */
/* The route matcher and dispatcher (router.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "metrics.h"
#include "router.h"

const char *vd_request_get(const struct vd_request *rq, enum vd_lookup_kind kind, const char *key)
{
    return rq->lookup != NULL ? rq->lookup(rq->conn, kind, key) : NULL;
}

void vd_respond_json(struct vd_response *rs, unsigned status, json_t *body)
{
    free(rs->body);
    rs->body = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    rs->status = status;
    rs->content_type = NULL;
    rs->body_size = rs->body != NULL ? strlen(rs->body) : 0;
    if (rs->body == NULL && status < 400)
        rs->status = 500;
}

void vd_respond_bytes(struct vd_response *rs, unsigned status, const char *content_type, const void *body,
                      size_t size)
{
    free(rs->body);
    rs->body = malloc(size > 0 ? size : 1);
    rs->body_size = rs->body != NULL ? size : 0;
    rs->status = rs->body != NULL ? status : 500;
    rs->content_type = content_type;
    if (rs->body != NULL && size > 0)
        memcpy(rs->body, body, size);
}

void vd_response_header(struct vd_response *rs, const char *name, const char *value)
{
    for (size_t i = 0; i < VD_MAX_EXTRA_HEADERS; i++) {
        if (rs->extra[i].name == NULL || strcasecmp(rs->extra[i].name, name) == 0) {
            rs->extra[i].name = name;
            snprintf(rs->extra[i].value, sizeof rs->extra[i].value, "%s", value);
            return;
        }
    }
}

/* Splits a copy of the path ("/a/b/c") into its segments; 0 when it does not start with '/' or has too many. */
static size_t split(char *buf, char *segs[VD_MAX_SEGMENTS])
{
    if (buf[0] != '/')
        return 0;
    size_t n = 0;
    for (char *p = buf + 1;;) {
        if (n == VD_MAX_SEGMENTS)
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
static int match(const char *pattern, char *const segs[], size_t n, const char *caps[VD_MAX_CAPTURES])
{
    const char *q = pattern + 1;
    size_t i = 0, ncap = 0;
    for (;;) {
        size_t plen = strcspn(q, "/");
        if (i == n)
            return 0;
        if (plen == 1 && q[0] == '*') {
            if (segs[i][0] == '\0' || ncap == VD_MAX_CAPTURES)
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
static size_t split_path(const char *path, char buf[VD_MAX_PATH_SIZE], char *segs[VD_MAX_SEGMENTS])
{
    if (strlen(path) >= VD_MAX_PATH_SIZE)
        return 0;
    strcpy(buf, path);
    return split(buf, segs);
}

/* The route of method and path, or NULL; *path_match: the first route whose pattern matches, whatever its method
 * (NULL: the path names nothing). */
static const struct vd_route *find_route(const struct vd_router *router, const char *method, char *const segs[],
                                         size_t n, const char *captures[VD_MAX_CAPTURES],
                                         const struct vd_route **path_match)
{
    *path_match = NULL;
    for (size_t i = 0; i < router->route_count; i++) {
        const struct vd_route *r = &router->routes[i];
        const char *caps[VD_MAX_CAPTURES] = {0};
        if (!match(r->pattern, segs, n, caps))
            continue;
        if (*path_match == NULL)
            *path_match = r;
        if (strcmp(r->method, method) != 0)
            continue;
        memcpy(captures, caps, sizeof caps);
        return r;
    }
    return NULL;
}

static size_t label_of(const struct vd_router *router, const char *path, const struct vd_route *path_match)
{
    return path_match != NULL ? path_match->label : router->fallback_label(path);
}

size_t vd_route_label_of(const struct vd_router *router, const char *path)
{
    char buf[VD_MAX_PATH_SIZE];
    char *segs[VD_MAX_SEGMENTS];
    const char *caps[VD_MAX_CAPTURES];
    const struct vd_route *path_match = NULL;
    size_t n = split_path(path, buf, segs);
    (void)find_route(router, "", segs, n, caps, &path_match);
    return label_of(router, path, path_match);
}

static void route(const struct vd_router *router, void *ctx, struct vd_request *rq, struct vd_response *rs,
                  size_t *label)
{
    char buf[VD_MAX_PATH_SIZE];
    char *segs[VD_MAX_SEGMENTS];
    const struct vd_route *path_match = NULL;
    size_t n = split_path(rq->path, buf, segs);
    const struct vd_route *r = find_route(router, rq->method, segs, n, rq->captures, &path_match);
    *label = label_of(router, rq->path, path_match);
    if (r == NULL) {
        router->not_found(ctx, rq, path_match != NULL, rs);
        return;
    }
    rq->route = r;
    if (router->admit == NULL || router->admit(ctx, r, rq, rs))
        r->handler(ctx, rq, rs);
}

void vd_dispatch(const struct vd_router *router, void *ctx, struct vd_request *rq, struct vd_response *rs)
{
    uint64_t start = vd_clock_ns();
    size_t label = 0;
    route(router, ctx, rq, rs, &label);
    vd_metrics_request(label, rs->status, vd_clock_ns() - start);
}
