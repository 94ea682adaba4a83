/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime's TLS identity, created inside the TEE at every start and never written anywhere: a fresh P-256 key and
 * a self-signed certificate for it (veil_selfsigned_create, lib/crypto/cert.c). Clients do not trust it through a CA:
 * they pin the certificate's public key after checking that the runtime's attestation binds its SHA-256
 * (docs/spec/runtime-attestation.md). */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"
#include "runtime.h"

/* The BIO's contents, NUL-terminated, appended to out. */
static VEIL_RESULT bio_take(BIO *bio, struct veil_buf *out)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    VEIL_ENSURE(n > 0 && data != NULL, VEIL_ERR_INTERNAL, "PEM encoding failed");
    VEIL_GUARD(veil_buf_append(out, data, (size_t)n));
    return veil_buf_append_u8(out, 0);
}

static VEIL_RESULT spki_hash(X509 *x, uint8_t out[VEIL_SPKI_SHA256_SIZE])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    VEIL_ENSURE(n > 0, VEIL_ERR_INTERNAL, "cannot encode the public key");
    SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pem_write(struct rt_tls *t, X509 *x, EVP_PKEY *key)
{
    VEIL_DEFER(veil_ossl_bio_done) BIO *cert = BIO_new(BIO_s_mem());
    VEIL_DEFER(veil_ossl_bio_done) BIO *priv = BIO_new(BIO_s_secmem());
    VEIL_ENSURE(cert != NULL && priv != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(PEM_write_bio_X509(cert, x) == 1 &&
                    PEM_write_bio_PrivateKey(priv, key, NULL, NULL, 0, NULL, NULL) == 1,
                VEIL_ERR_INTERNAL, "PEM encoding failed");
    VEIL_GUARD(bio_take(cert, &t->cert_pem));
    return bio_take(priv, &t->key_pem);
}

VEIL_RESULT rt_tls_create(struct rt_tls *t)
{
    veil_buf_init(&t->cert_pem);
    veil_buf_init_secret(&t->key_pem);
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = NULL;
    VEIL_DEFER(veil_ossl_x509_done) X509 *x = NULL;
    VEIL_GUARD(veil_selfsigned_create("veil-runtime", &key, &x));
    VEIL_GUARD(spki_hash(x, t->spki_sha256));
    return pem_write(t, x, key);
}

void rt_tls_cleanup(struct rt_tls *t)
{
    veil_buf_cleanup(&t->cert_pem);
    veil_buf_cleanup(&t->key_pem);
}
