/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime's TLS identity, created inside the TEE at every start and never written anywhere: a fresh P-256 key and
 * a self-signed certificate for it. Clients do not trust it through a CA: they pin the certificate's public key after
 * checking that the runtime's attestation binds its SHA-256 (docs/spec/runtime-attestation.md). */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/ossl_defer.h"
#include "runtime.h"

#define CERT_DAYS 365

/* The BIO's contents, NUL-terminated, appended to out. */
static VEIL_RESULT bio_take(BIO *bio, struct veil_buf *out)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    VEIL_ENSURE(n > 0 && data != NULL, VEIL_ERR_INTERNAL, "PEM encoding failed");
    VEIL_GUARD(veil_buf_append(out, data, (size_t)n));
    return veil_buf_append_u8(out, 0);
}

static VEIL_RESULT add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    VEIL_ENSURE(ext != NULL, VEIL_ERR_INTERNAL, "certificate extension %d", nid);
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    VEIL_ENSURE(ok == 1, VEIL_ERR_INTERNAL, "certificate extension %d", nid);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT cert_fill(X509 *x, EVP_PKEY *key)
{
    uint8_t serial[16];
    VEIL_ENSURE(RAND_bytes(serial, sizeof serial) == 1, VEIL_ERR_CRYPTO, "random serial");
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    VEIL_ENSURE(bn != NULL, VEIL_ERR_NOMEM, "out of memory");
    int ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    X509_NAME *name = X509_get_subject_name(x);
    ok = ok && X509_set_version(x, 2) == 1 &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"veil-runtime", -1, -1, 0) == 1 &&
         X509_set_issuer_name(x, name) == 1 && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), 60L * 60 * 24 * CERT_DAYS) != NULL && X509_set_pubkey(x, key) == 1;
    VEIL_ENSURE(ok, VEIL_ERR_INTERNAL, "cannot build the certificate");
    VEIL_GUARD(add_ext(x, NID_basic_constraints, "critical,CA:FALSE"));
    VEIL_GUARD(add_ext(x, NID_key_usage, "critical,digitalSignature"));
    VEIL_GUARD(add_ext(x, NID_ext_key_usage, "serverAuth"));
    VEIL_GUARD(add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1"));
    VEIL_ENSURE(X509_sign(x, key, EVP_sha256()) > 0, VEIL_ERR_CRYPTO, "cannot sign the certificate");
    return VEIL_RESULT_OK;
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
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = EVP_EC_gen("P-256");
    VEIL_ENSURE(key != NULL, VEIL_ERR_CRYPTO, "cannot create the TLS key");
    VEIL_DEFER(veil_ossl_x509_done) X509 *x = X509_new();
    VEIL_ENSURE(x != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(cert_fill(x, key));
    VEIL_GUARD(spki_hash(x, t->spki_sha256));
    return pem_write(t, x, key);
}

void rt_tls_cleanup(struct rt_tls *t)
{
    veil_buf_cleanup(&t->cert_pem);
    veil_buf_cleanup(&t->key_pem);
}
