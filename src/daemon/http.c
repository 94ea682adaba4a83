/* SPDX-License-Identifier: Apache-2.0 */
/* libmicrohttpd glue (http.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "core/file.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

#define CLIENT_SUBJECT_MAX 256u /* longest client certificate subject logged */

struct vd_http {
    struct MHD_Daemon *daemon;
    struct vd_http_options o;
    _Atomic size_t in_flight;
};

/* Per-request state, from the first call of the access handler to the completion callback. */
struct conn_state {
    struct vd_http *h;
    struct veil_buf body;
    size_t limit;
    int too_big;
    int answered;
};

static const char *lookup(void *conn, enum vd_lookup_kind kind, const char *key)
{
    static const enum MHD_ValueKind kinds[] = {MHD_HEADER_KIND, MHD_COOKIE_KIND, MHD_GET_ARGUMENT_KIND};
    return MHD_lookup_connection_value(conn, kinds[kind], key);
}

static void client_address(struct MHD_Connection *c, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, size, "unknown");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, (socklen_t)size);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)size);
}

static void add_headers(struct MHD_Response *r, const struct vd_response *rs)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            rs->content_type != NULL ? rs->content_type : "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (rs->set_cookie[0] != '\0')
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, rs->set_cookie);
    if (rs->retry_after != 0) {
        char s[16];
        snprintf(s, sizeof s, "%u", rs->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    for (size_t i = 0; i < VD_MAX_EXTRA_HEADERS; i++)
        if (rs->extra[i].name != NULL)
            MHD_add_response_header(r, rs->extra[i].name, rs->extra[i].value);
}

static enum MHD_Result send_response(struct MHD_Connection *c, struct vd_response *rs)
{
    struct MHD_Response *r =
        rs->body != NULL ? MHD_create_response_from_buffer(rs->body_size, rs->body, MHD_RESPMEM_MUST_FREE)
                         : MHD_create_response_from_buffer(0, (void *)(uintptr_t)"", MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(rs->body);
        return MHD_NO;
    }
    rs->body = NULL;
    add_headers(r, rs);
    enum MHD_Result ret = MHD_queue_response(c, rs->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result too_large(struct vd_http *h, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *client)
{
    uint64_t start = vd_clock_ns();
    struct vd_request rq = {.method = method, .path = url, .client = client, .lookup = lookup, .conn = c};
    struct vd_response rs = {0};
    vd_log("warn", "body-too-large", "{s:s}", "client", client);
    h->o.too_large(h->o.ctx, &rq, &rs);
    vd_metrics_request(vd_route_label_of(h->o.router, url), rs.status, vd_clock_ns() - start);
    return send_response(c, &rs);
}

static enum MHD_Result first_call(struct vd_http *h, struct MHD_Connection *c, const char *url, const char *method,
                                  void **con_cls)
{
    struct conn_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return MHD_NO;
    s->h = h;
    s->limit = h->o.body_limit(h->o.ctx, url);
    *con_cls = s;
    atomic_fetch_add(&h->in_flight, 1);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared = cl != NULL ? strtoull(cl, NULL, 10) : 0;
    if (declared > s->limit) {
        char client[VD_CLIENT_MAX];
        client_address(c, client, sizeof client);
        s->answered = 1;
        return too_large(h, c, url, method, client); /* answered before the body is read */
    }
    if (declared > 0 && !veil_ok(veil_buf_reserve(&s->body, (size_t)declared)))
        veil_error_clear(); /* the body then grows as it comes */
    return MHD_YES;
}

static void accumulate(struct conn_state *s, const char *data, size_t size)
{
    if (s->too_big || size > s->limit - s->body.size) {
        s->too_big = 1;
        veil_buf_cleanup(&s->body);
        return;
    }
    if (!veil_ok(veil_buf_append(&s->body, data, size))) {
        s->too_big = 1;
        veil_buf_cleanup(&s->body);
    }
}

/* The subject DN of a DER certificate, printable ASCII only (the rest becomes '?'): it is logged, and an unverified
 * certificate's subject is whatever its sender wrote. */
static void cert_subject(const gnutls_datum_t *der, char *out, size_t size)
{
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t dn = {NULL, 0};
    snprintf(out, size, "(unreadable)");
    if (gnutls_x509_crt_init(&crt) == 0 && gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0 &&
        gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0) {
        size_t n = dn.size < size - 1 ? dn.size : size - 1;
        for (size_t i = 0; i < n; i++)
            out[i] = dn.data[i] >= 0x20 && dn.data[i] < 0x7f ? (char)dn.data[i] : '?';
        out[n] = '\0';
    }
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
}

/* Why a client certificate failed to verify, for the log. */
static void log_rejected(gnutls_session_t session, int rc, unsigned status, const char *client, const char *subject)
{
    gnutls_datum_t why = {NULL, 0};
    if (rc == 0)
        rc = gnutls_certificate_verification_status_print(status, gnutls_certificate_type_get(session), &why, 0);
    const char *text = rc == 0 && why.data != NULL ? (const char *)why.data : gnutls_strerror(rc);
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == ' ')
        n--;
    vd_log("warn", "client-cert-rejected", "{s:s, s:s, s:s%}", "client", client, "subject", subject, "reason", text,
           n);
    gnutls_free(why.data);
}

/* Mutual TLS: 1 when the connection presented a client certificate that verifies against the client CA (chain,
 * validity period, TLS client purpose when the certificate states purposes), with its subject in subject. One that
 * does not verify is logged and counts as absent. */
static int client_cert_verified(struct MHD_Connection *c, const char *client, char *subject, size_t size)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL)
        return 0;
    gnutls_session_t session = ci->tls_session;
    unsigned count = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(session, &count);
    if (chain == NULL || count == 0)
        return 0;
    cert_subject(&chain[0], subject, size);
    gnutls_typed_vdata_st purpose = {.type = GNUTLS_DT_KEY_PURPOSE_OID,
                                     .data = (unsigned char *)(uintptr_t)GNUTLS_KP_TLS_WWW_CLIENT};
    unsigned status = 0;
    int rc = gnutls_certificate_verify_peers(session, &purpose, 1, &status);
    if (rc == 0 && status == 0)
        return 1;
    log_rejected(session, rc, status, client, subject);
    return 0;
}

static enum MHD_Result answer(struct vd_http *h, struct MHD_Connection *c, struct conn_state *s, const char *url,
                              const char *method)
{
    char client[VD_CLIENT_MAX];
    client_address(c, client, sizeof client);
    if (s->too_big)
        return too_large(h, c, url, method, client);
    struct vd_request rq = {.method = method, .path = url, .client = client, .body = s->body.data,
                            .body_size = s->body.size, .lookup = lookup, .conn = c};
    char subject[CLIENT_SUBJECT_MAX];
    if (h->o.client_ca_pem != NULL && client_cert_verified(c, client, subject, sizeof subject)) {
        rq.client_cert_ok = 1;
        rq.client_cert_subject = subject;
    }
    struct vd_response rs = {0};
    vd_dispatch(h->o.router, h->o.ctx, &rq, &rs);
    return send_response(c, &rs);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct vd_http *h = cls;
    if (*con_cls == NULL)
        return first_call(h, c, url, method, con_cls);
    struct conn_state *s = *con_cls;
    if (*upload_data_size > 0) {
        if (!s->answered)
            accumulate(s, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (s->answered)
        return MHD_YES;
    s->answered = 1;
    return answer(h, c, s, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct conn_state *s = *con_cls;
    if (s == NULL)
        return;
    atomic_fetch_sub(&s->h->in_flight, 1);
    veil_buf_cleanup(&s->body);
    free(s);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    vd_log("warn", "http", "{s:s}", "detail", msg);
}

VEIL_RESULT vd_listen_parse(const char *text, struct sockaddr_storage *ss, int *loopback)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    VEIL_ENSURE(colon != NULL && (size_t)(colon - text) < sizeof host, VEIL_ERR_ARG,
                "listen: expected ADDRESS:PORT, not '%.64s'", text);
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    VEIL_ENSURE(colon[1] >= '0' && colon[1] <= '9' && *end == '\0' && port >= 1 && port <= 65535, VEIL_ERR_ARG,
                "listen: bad port in '%.64s'", text);
    memset(ss, 0, sizeof *ss);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        VEIL_ENSURE(inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1, VEIL_ERR_ARG, "listen: bad IPv6 address");
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        return VEIL_RESULT_OK;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    VEIL_ENSURE(inet_pton(AF_INET, host, &a4->sin_addr) == 1, VEIL_ERR_ARG,
                "listen: '%.64s' is not a numeric IPv4 address", host);
    *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    return VEIL_RESULT_OK;
}

VEIL_RESULT vd_pem_load(const char *path, struct veil_buf *out)
{
    VEIL_GUARD(veil_file_read_all(path, VD_TLS_FILE_MAX_SIZE, out));
    return veil_buf_append_u8(out, 0);
}

VEIL_RESULT vd_pem_check_certs(const char *pem, const char *what)
{
    gnutls_datum_t d = {(unsigned char *)(uintptr_t)pem, (unsigned)strlen(pem)};
    gnutls_x509_crt_t *certs = NULL;
    unsigned n = 0;
    int rc = gnutls_x509_crt_list_import2(&certs, &n, &d, GNUTLS_X509_FMT_PEM, 0);
    for (unsigned i = 0; rc >= 0 && i < n; i++)
        gnutls_x509_crt_deinit(certs[i]);
    gnutls_free(certs);
    VEIL_ENSURE(rc >= 0 && n > 0, VEIL_ERR_FORMAT, "%s: no PEM certificate could be read (%s)", what,
                rc < 0 ? gnutls_strerror(rc) : "none found");
    return VEIL_RESULT_OK;
}

static unsigned daemon_flags(const struct vd_http_options *o, const struct sockaddr_storage *ss)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    flags |= o->threads == 0 ? MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL : MHD_USE_EPOLL;
    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (o->tls_cert_pem != NULL)
        flags |= MHD_USE_TLS;
    return flags;
}

static void option(struct MHD_OptionItem *items, size_t *n, enum MHD_OPTION which, intptr_t value,
                   const void *ptr)
{
    items[(*n)++] = (struct MHD_OptionItem){which, value, (void *)(uintptr_t)ptr};
}

static VEIL_RESULT daemon_start(struct vd_http *h, const struct sockaddr_storage *ss)
{
    const struct vd_http_options *o = &h->o;
    struct MHD_OptionItem extra[5];
    size_t n = 0;
    if (o->tls_cert_pem != NULL) {
        option(extra, &n, MHD_OPTION_HTTPS_MEM_CERT, 0, o->tls_cert_pem);
        option(extra, &n, MHD_OPTION_HTTPS_MEM_KEY, 0, o->tls_key_pem);
    }
    if (o->client_ca_pem != NULL) /* a trust list makes libmicrohttpd request (not require) a client certificate */
        option(extra, &n, MHD_OPTION_HTTPS_MEM_TRUST, 0, o->client_ca_pem);
    if (o->threads > 0)
        option(extra, &n, MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)o->threads, NULL);
    option(extra, &n, MHD_OPTION_END, 0, NULL);
    h->daemon = MHD_start_daemon(daemon_flags(o, ss), 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                                 on_mhd_log, h, MHD_OPTION_SOCK_ADDR, ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                 MHD_OPTION_CONNECTION_LIMIT, o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                                 o->connection_timeout_s, MHD_OPTION_ARRAY, extra, MHD_OPTION_END);
    VEIL_ENSURE(h->daemon != NULL, VEIL_ERR_IO, "cannot listen on %s (in use, or not allowed)", o->listen);
    return VEIL_RESULT_OK;
}

VEIL_RESULT vd_http_start(const struct vd_http_options *options, struct vd_http **out)
{
    struct sockaddr_storage ss;
    int loopback = 0;
    VEIL_GUARD(vd_listen_parse(options->listen, &ss, &loopback));
    VEIL_ENSURE(options->tls_cert_pem != NULL || loopback, VEIL_ERR_ARG,
                "refusing plain HTTP on the non-loopback address %s: configure TLS", options->listen);
    VEIL_ENSURE(options->tls_cert_pem == NULL || MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES,
                VEIL_ERR_UNSUPPORTED, "this libmicrohttpd has no TLS support");
    if (options->client_ca_pem != NULL)
        VEIL_GUARD(vd_pem_check_certs(options->client_ca_pem, "client CA"));
    struct vd_http *h = calloc(1, sizeof *h);
    VEIL_ENSURE(h != NULL, VEIL_ERR_NOMEM, "out of memory");
    h->o = *options;
    struct veil_result r = daemon_start(h, &ss);
    if (!veil_ok(r)) {
        free(h);
        return r;
    }
    vd_metrics_started(vd_now());
    *out = h;
    return VEIL_RESULT_OK;
}

void vd_http_quiesce(struct vd_http *h)
{
    if (h != NULL && h->daemon != NULL) {
        MHD_socket fd = MHD_quiesce_daemon(h->daemon);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
}

size_t vd_http_in_flight(struct vd_http *h)
{
    return h != NULL ? atomic_load(&h->in_flight) : 0;
}

void vd_http_stop(struct vd_http *h)
{
    if (h == NULL)
        return;
    if (h->daemon != NULL)
        MHD_stop_daemon(h->daemon);
    free(h);
}
