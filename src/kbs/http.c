/* SPDX-License-Identifier: Apache-2.0 */
/* The shared HTTP server (src/daemon/http.h) set up for the broker: TLS certificate and key from files, the admin
 * client CA for mutual TLS, body limits (admin API or protocol), and the answer to an oversized body in the shape of
 * the route it was sent to. */
#include <stdlib.h>
#include <string.h>

#include "kbsd.h"
#include "metrics.h"

struct kbs_http {
    struct vd_http *server;
    struct veil_buf cert, key, client_ca; /* NUL-terminated PEM, alive as long as the server */
};

static size_t body_limit(void *ctx, const char *path)
{
    struct kbs_ctx *k = ctx;
    return kbs_path_is_admin(path) ? k->cfg->admin_max_body_size : k->cfg->max_body_size;
}

static void too_large(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx;
    if (kbs_path_is_admin(rq->path))
        kbs_respond_admin_error(rs, 413, "too_large", "the request body exceeds the configured limit");
    else
        kbs_respond_protocol_error(rs, 401, "SerdeError");
}

static VEIL_RESULT files_load(struct kbs_http *h, const struct kbs_config *c)
{
    if (c->tls_cert[0] != '\0') {
        VEIL_GUARD(vd_pem_load(c->tls_cert, &h->cert));
        VEIL_GUARD(vd_pem_load(c->tls_key, &h->key));
    }
    if (c->admin_client_ca[0] != '\0') {
        VEIL_GUARD(vd_pem_load(c->admin_client_ca, &h->client_ca));
        VEIL_GUARD(vd_pem_check_certs((const char *)h->client_ca.data, "admin_client_ca"));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT server_start(struct kbs_ctx *k, struct kbs_http *h)
{
    const struct kbs_config *c = k->cfg;
    VEIL_GUARD(files_load(h, c));
    struct vd_http_options o = {
        .listen = c->listen,
        .tls_cert_pem = c->tls_cert[0] != '\0' ? (const char *)h->cert.data : NULL,
        .tls_key_pem = c->tls_cert[0] != '\0' ? (const char *)h->key.data : NULL,
        .client_ca_pem = c->admin_client_ca[0] != '\0' ? (const char *)h->client_ca.data : NULL,
        .threads = (unsigned)c->threads,
        .max_connections = (unsigned)c->max_connections,
        .connection_timeout_s = (unsigned)c->connection_timeout_s,
        .router = &kbs_router,
        .ctx = k,
        .body_limit = body_limit,
        .too_large = too_large,
    };
    VEIL_GUARD(kbs_metrics_init());
    return vd_http_start(&o, &h->server);
}

VEIL_RESULT kbs_http_start(struct kbs_ctx *k, struct kbs_http **out)
{
    struct kbs_http *h = calloc(1, sizeof *h);
    VEIL_ENSURE(h != NULL, VEIL_ERR_NOMEM, "out of memory");
    veil_buf_init_secret(&h->key);
    struct veil_result r = server_start(k, h);
    if (!veil_ok(r)) {
        kbs_http_stop(h);
        return r;
    }
    *out = h;
    return VEIL_RESULT_OK;
}

void kbs_http_stop(struct kbs_http *h)
{
    if (h == NULL)
        return;
    vd_http_stop(h->server);
    veil_buf_cleanup(&h->cert);
    veil_buf_cleanup(&h->key);
    veil_buf_cleanup(&h->client_ca);
    free(h);
}
