/* SPDX-License-Identifier: Apache-2.0 */
/* The TLS channel of kind SGX (local.h, "the TLS channel"): TLS 1.3 only, an ephemeral self-signed certificate on
 * the cache's side, no certificate verification on the runtime's, and the exporter value X the EREPORTs bind. */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cache/local.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"

static void ctx_done(SSL_CTX **p) { SSL_CTX_free(*p); }

/* The cache's identity on the channel: a key and certificate made now, in memory, never verified by anyone. */
static VEIL_RESULT server_identity(SSL_CTX *ctx)
{
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = NULL;
    VEIL_DEFER(veil_ossl_x509_done) X509 *cert = NULL;
    VEIL_GUARD(veil_selfsigned_create("veil-cache", &key, &cert));
    VEIL_GUARD_OSSL(SSL_CTX_use_certificate(ctx, cert), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(SSL_CTX_use_PrivateKey(ctx, key), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(SSL_CTX_check_private_key(ctx), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_la_tls_ctx_new(int server, SSL_CTX **out)
{
    VEIL_DEFER(ctx_done) SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_CRYPTO, "cannot create a TLS context");
    VEIL_GUARD_OSSL(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION), VEIL_ERR_CRYPTO);
    /* No resumption: every connection is a full handshake, attested afresh. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    if (server)
        VEIL_GUARD(server_identity(ctx));
    else
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* the identity is the cache's REPORT, not a certificate */
    *out = ctx;
    ctx = NULL;
    return VEIL_RESULT_OK;
}

void veil_la_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

VEIL_RESULT veil_la_tls_open(SSL_CTX *ctx, int fd, struct veil_la_conn *c)
{
    SSL *ssl = SSL_new(ctx);
    VEIL_ENSURE(ssl != NULL, VEIL_ERR_NOMEM, "cannot create a TLS session");
    int ok = SSL_set_fd(ssl, fd) == 1;
    int server = SSL_is_server(ssl);
    ok = ok && (server ? SSL_accept(ssl) : SSL_connect(ssl)) == 1 && SSL_version(ssl) == TLS1_3_VERSION;
    if (!ok) {
        unsigned long e = ERR_get_error();
        char why[256];
        ERR_error_string_n(e, why, sizeof why);
        ERR_clear_error();
        SSL_free(ssl);
        VEIL_BAIL(VEIL_ERR_IO, "no TLS 1.3 session with the local peer (%s)", e != 0 ? why : "closed or timed out");
    }
    *c = (struct veil_la_conn){.fd = fd, .ssl = ssl};
    return VEIL_RESULT_OK;
}

void veil_la_tls_close(struct veil_la_conn *c)
{
    if (c->ssl == NULL)
        return;
    SSL_shutdown(c->ssl);
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
}

VEIL_RESULT veil_la_tls_exporter(const struct veil_la_conn *c, uint8_t out[VEIL_LA_EXPORTER_SIZE])
{
    VEIL_ENSURE(c->ssl != NULL, VEIL_ERR_ARG, "SGX local attestation runs only inside a TLS session");
    VEIL_GUARD_OSSL(SSL_export_keying_material(c->ssl, out, VEIL_LA_EXPORTER_SIZE, VEIL_LA_EXPORTER_LABEL,
                                               sizeof VEIL_LA_EXPORTER_LABEL - 1, NULL, 0, 0),
                    VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}
