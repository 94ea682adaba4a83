/* SPDX-License-Identifier: Apache-2.0 */
/* libmicrohttpd glue: listen address, optional TLS (GnuTLS inside libmicrohttpd) with optional client certificates
 * for the admin API (admin_client_ca), request bodies capped by the configured limits before they are buffered, one
 * dispatch per request into routes.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "core/file.h"
#include "kbsd.h"
#include "metrics.h"

#define TLS_FILE_MAX_SIZE (256u << 10)
#define CLIENT_SUBJECT_MAX 256u /* longest client certificate subject logged */

struct kbs_http {
    struct MHD_Daemon *daemon;
    struct kbs_ctx *k;
    struct veil_buf cert, key, client_ca; /* NUL-terminated PEM, alive as long as the daemon */
    int mtls;                             /* admin_client_ca is set: client certificates are requested */
};

/* Per-request state, from the first call of the access handler to the completion callback. */
struct conn_state {
    struct veil_buf body;
    size_t limit;
    int too_big;
    int answered;
};

static const char *lookup(void *conn, enum kbs_lookup_kind kind, const char *key)
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

static enum MHD_Result send_response(struct MHD_Connection *c, struct kbs_response *rs)
{
    struct MHD_Response *r =
        rs->body != NULL ? MHD_create_response_from_buffer(rs->body_size, rs->body, MHD_RESPMEM_MUST_FREE)
                         : MHD_create_response_from_buffer(0, (void *)(uintptr_t)"", MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(rs->body);
        return MHD_NO;
    }
    rs->body = NULL;
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
    enum MHD_Result ret = MHD_queue_response(c, rs->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result too_large(struct MHD_Connection *c, const char *url, const char *client)
{
    uint64_t start = kbs_metrics_clock_ns();
    struct kbs_response rs = {0};
    kbs_log("warn", "body-too-large", "{s:s}", "client", client);
    if (kbs_path_is_admin(url))
        kbs_respond_admin_error(&rs, 413, "too_large", "the request body exceeds the configured limit");
    else
        kbs_respond_protocol_error(&rs, 401, "SerdeError");
    kbs_metrics_request(kbs_route_label_of(url), rs.status, kbs_metrics_clock_ns() - start);
    return send_response(c, &rs);
}

static enum MHD_Result first_call(struct kbs_http *h, struct MHD_Connection *c, const char *url, void **con_cls)
{
    struct conn_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return MHD_NO;
    s->limit = kbs_path_is_admin(url) ? h->k->cfg->admin_max_body_size : h->k->cfg->max_body_size;
    *con_cls = s;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > s->limit) {
        char client[VEIL_KBS_CLIENT_MAX];
        client_address(c, client, sizeof client);
        s->answered = 1;
        return too_large(c, url, client); /* answered before the body is read */
    }
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
    kbs_log("warn", "client-cert-rejected", "{s:s, s:s, s:s%}", "client", client, "subject", subject, "reason", text,
            n);
    gnutls_free(why.data);
}

/* Mutual TLS: 1 when the connection presented a client certificate that verifies against admin_client_ca (chain,
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct kbs_http *h = cls;
    if (*con_cls == NULL)
        return first_call(h, c, url, con_cls);
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
    char client[VEIL_KBS_CLIENT_MAX];
    client_address(c, client, sizeof client);
    if (s->too_big)
        return too_large(c, url, client);
    struct kbs_request rq = {.method = method, .path = url, .client = client, .body = s->body.data,
                             .body_size = s->body.size, .lookup = lookup, .conn = c};
    char subject[CLIENT_SUBJECT_MAX];
    if (h->mtls && client_cert_verified(c, client, subject, sizeof subject)) {
        rq.client_cert_ok = 1;
        rq.client_cert_subject = subject;
    }
    struct kbs_response rs = {0};
    kbs_dispatch(h->k, &rq, &rs);
    return send_response(c, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct conn_state *s = *con_cls;
    if (s == NULL)
        return;
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
    kbs_log("warn", "http", "{s:s}", "detail", msg);
}

/* "A.B.C.D:PORT" or "[v6]:PORT"; *loopback says whether the address is 127.0.0.0/8 or ::1. */
static VEIL_RESULT listen_parse(const char *text, struct sockaddr_storage *ss, int *loopback)
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

static VEIL_RESULT tls_load(struct kbs_http *h)
{
    VEIL_ENSURE(MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES, VEIL_ERR_UNSUPPORTED,
                "this libmicrohttpd has no TLS support: terminate TLS in front of veil-kbs on loopback");
    VEIL_GUARD(veil_file_read_all(h->k->cfg->tls_cert, TLS_FILE_MAX_SIZE, &h->cert));
    VEIL_GUARD(veil_buf_append_u8(&h->cert, 0));
    VEIL_GUARD(veil_file_read_all(h->k->cfg->tls_key, TLS_FILE_MAX_SIZE, &h->key));
    return veil_buf_append_u8(&h->key, 0);
}

/* admin_client_ca: a PEM bundle of at least one certificate (GnuTLS would take a file of none silently). */
static VEIL_RESULT client_ca_load(struct kbs_http *h)
{
    const char *path = h->k->cfg->admin_client_ca;
    VEIL_GUARD(veil_file_read_all(path, TLS_FILE_MAX_SIZE, &h->client_ca));
    gnutls_datum_t pem = {h->client_ca.data, (unsigned)h->client_ca.size};
    gnutls_x509_crt_t *certs = NULL;
    unsigned n = 0;
    int rc = gnutls_x509_crt_list_import2(&certs, &n, &pem, GNUTLS_X509_FMT_PEM, 0);
    for (unsigned i = 0; rc >= 0 && i < n; i++)
        gnutls_x509_crt_deinit(certs[i]);
    gnutls_free(certs);
    VEIL_ENSURE(rc >= 0 && n > 0, VEIL_ERR_FORMAT, "admin_client_ca %s: no PEM certificate could be read (%s)", path,
                rc < 0 ? gnutls_strerror(rc) : "none found");
    h->mtls = 1;
    return veil_buf_append_u8(&h->client_ca, 0);
}

static VEIL_RESULT daemon_start(struct kbs_http *h, const struct sockaddr_storage *ss, int tls)
{
    const struct kbs_config *c = h->k->cfg;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_EPOLL;
    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert.data},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, h->key.data},
        /* A trust list makes libmicrohttpd request (not require) a client certificate: RCAR clients have none. */
        {h->mtls ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, h->client_ca.data},
        {MHD_OPTION_END, 0, NULL},
    };
    if (tls)
        flags |= MHD_USE_TLS;
    else
        tls_opts[0].option = MHD_OPTION_END;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_SOCK_ADDR, ss,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)c->connection_timeout_s, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    VEIL_ENSURE(h->daemon != NULL, VEIL_ERR_IO, "cannot listen on %s (in use, or not allowed)", c->listen);
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_http_start(struct kbs_ctx *k, struct kbs_http **out)
{
    struct sockaddr_storage ss;
    int loopback = 0, tls = k->cfg->tls_cert[0] != '\0';
    VEIL_GUARD(listen_parse(k->cfg->listen, &ss, &loopback));
    VEIL_ENSURE(tls || loopback, VEIL_ERR_ARG,
                "refusing plain HTTP on the non-loopback address %s: set tls_cert and tls_key", k->cfg->listen);
    struct kbs_http *h = calloc(1, sizeof *h);
    VEIL_ENSURE(h != NULL, VEIL_ERR_NOMEM, "out of memory");
    h->k = k;
    veil_buf_init_secret(&h->key);
    struct veil_result r = tls ? tls_load(h) : VEIL_RESULT_OK;
    if (veil_ok(r) && k->cfg->admin_client_ca[0] != '\0')
        r = client_ca_load(h);
    if (veil_ok(r))
        r = daemon_start(h, &ss, tls);
    if (!veil_ok(r)) {
        kbs_http_stop(h);
        return r;
    }
    kbs_metrics_started(kbs_now());
    *out = h;
    return VEIL_RESULT_OK;
}

void kbs_http_stop(struct kbs_http *h)
{
    if (h == NULL)
        return;
    if (h->daemon != NULL)
        MHD_stop_daemon(h->daemon);
    veil_buf_cleanup(&h->cert);
    veil_buf_cleanup(&h->key);
    veil_buf_cleanup(&h->client_ca);
    free(h);
}
