/* SPDX-License-Identifier: Apache-2.0 */
/* Ephemeral TLS identities (crypto.h): a fresh P-256 key and a self-signed certificate for it, made in memory and
 * never written anywhere. Used by veil-runtime (its HTTPS identity, bound into its attestation) and by the local
 * TLS channel between veil-cache and veil-runtime under SGX (lib/cache/tls.c, where the certificate is not
 * verified at all: the peers' identities come from their EREPORTs). */
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"

#define CERT_DAYS 365

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

static VEIL_RESULT cert_fill(X509 *x, EVP_PKEY *key, const char *cn)
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
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) == 1 &&
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

VEIL_RESULT veil_selfsigned_create(const char *cn, struct evp_pkey_st **key_out, struct x509_st **cert_out)
{
    VEIL_ENSURE(cn != NULL && cn[0] != '\0', VEIL_ERR_ARG, "a certificate needs a common name");
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = EVP_EC_gen("P-256");
    VEIL_ENSURE(key != NULL, VEIL_ERR_CRYPTO, "cannot create the TLS key");
    VEIL_DEFER(veil_ossl_x509_done) X509 *x = X509_new();
    VEIL_ENSURE(x != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(cert_fill(x, key, cn));
    *key_out = key, *cert_out = x;
    key = NULL, x = NULL;
    return VEIL_RESULT_OK;
}
