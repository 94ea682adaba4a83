/* SPDX-License-Identifier: Apache-2.0 */
/* The daemons' one HTTP(S) server, on libmicrohttpd (TLS through its GnuTLS): listen address, optional TLS with
 * optional client certificates, request bodies capped per path before they are buffered, one dispatch per request
 * into the daemon's routing table, in-flight accounting for a draining shutdown. */
#ifndef VEIL_DAEMON_HTTP_H
#define VEIL_DAEMON_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/result.h"
#include "router.h"

#define VD_TLS_FILE_MAX_SIZE (256u << 10)

struct vd_http_options {
    const char *listen;             /* "A.B.C.D:PORT" or "[v6]:PORT" */
    const char *tls_cert_pem;       /* NUL-terminated PEM chain; NULL: plain HTTP, refused off loopback. Borrowed
                                     * until vd_http_stop. */
    const char *tls_key_pem;        /* NUL-terminated PEM private key (keep it in secret memory); borrowed too */
    const char *client_ca_pem;      /* NULL, or a PEM bundle: client certificates are requested (not required)
                                     * and verified against it (vd_request.client_cert_ok) */
    unsigned threads;               /* worker threads polling connections; 0: one thread per connection, for
                                     * handlers that block (inference) */
    unsigned max_connections;
    unsigned connection_timeout_s;  /* idle connections closed after this */
    const struct vd_router *router;
    void *ctx;                      /* handed to the router's callbacks and handlers */
    /* The largest body accepted for a path (a Content-Length over it is answered before the body is read). */
    size_t (*body_limit)(void *ctx, const char *path);
    /* Fills the answer to a body over its limit. */
    void (*too_large)(void *ctx, const struct vd_request *rq, struct vd_response *rs);
};

struct vd_http;

VEIL_RESULT vd_http_start(const struct vd_http_options *options, struct vd_http **out);
/* Stops accepting connections; requests under way and open keep-alive connections go on. */
void vd_http_quiesce(struct vd_http *h);
/* Requests received and not yet answered. */
size_t vd_http_in_flight(struct vd_http *h);
/* Closes every connection and frees the server. Accepts NULL. */
void vd_http_stop(struct vd_http *h);

/* "A.B.C.D:PORT" or "[v6]:PORT"; *loopback says whether the address is 127.0.0.0/8 or ::1. */
VEIL_RESULT vd_listen_parse(const char *text, struct sockaddr_storage *ss, int *loopback);
/* Reads a PEM file (at most VD_TLS_FILE_MAX_SIZE) NUL-terminated into out (initialised by the caller: secret for a
 * private key). */
VEIL_RESULT vd_pem_load(const char *path, struct veil_buf *out);
/* Checks that a PEM bundle holds at least one certificate GnuTLS can read (it would take none silently). */
VEIL_RESULT vd_pem_check_certs(const char *pem, const char *what);

#endif
