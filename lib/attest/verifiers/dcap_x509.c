/* SPDX-License-Identifier: Apache-2.0 */
/* OpenSSL for DCAP: PEM chains verified up to the pinned Intel SGX Root CA with CRLs at a given time, ECDSA
 * P-256 signatures given as raw r || s, and the PCK certificate's SGX extension read with OpenSSL's ASN.1
 * decoder. All crypto and X.509 is OpenSSL's; only matching is written here. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "attest/dcap.h"
#include "attest/intel_root.h"
#include "core/limits.h"
#include "crypto/ossl_defer.h"

struct veil_dcap_x509 {
    X509 *cert;
};

void veil_dcap_x509_free(struct veil_dcap_x509 *x)
{
    if (x == NULL)
        return;
    X509_free(x->cert);
    OPENSSL_free(x);
}

static void chain_done(STACK_OF(X509) **s) { sk_X509_pop_free(*s, X509_free); }
static void crls_done(STACK_OF(X509_CRL) **s) { sk_X509_CRL_pop_free(*s, X509_CRL_free); }
static void der_done(unsigned char **p) { OPENSSL_free(*p); }
static void seq_done(ASN1_SEQUENCE_ANY **s) { sk_ASN1_TYPE_pop_free(*s, ASN1_TYPE_free); }

static VEIL_RESULT pinned_root(X509 **out)
{
    const unsigned char *p = veil_intel_sgx_root_ca_der;
    *out = d2i_X509(NULL, &p, (long)sizeof veil_intel_sgx_root_ca_der);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_INTERNAL, "the pinned Intel root does not parse");
    return VEIL_RESULT_OK;
}

/* The canonical PEM of one certificate (what OpenSSL writes) appended to b. */
static VEIL_RESULT pem_append(X509 *cert, BIO *b)
{
    VEIL_GUARD_OSSL(PEM_write_bio_X509(b, cert), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

/* Reads every certificate of a PEM text, leaf first. When strict, the text must be exactly the canonical PEM of
 * those certificates, so that no byte of it can change without changing a certificate. */
static VEIL_RESULT pem_chain_read(const char *pem, size_t size, int strict, STACK_OF(X509) **out)
{
    VEIL_ENSURE(size > 0 && size <= VEIL_DCAP_MAX_COLLATERAL_SIZE && size <= INT_MAX, VEIL_ERR_EVIDENCE,
                "DCAP: empty or oversized certificate chain");
    BIO *in VEIL_DEFER(veil_ossl_bio_done) = BIO_new_mem_buf(pem, (int)size);
    BIO *canon VEIL_DEFER(veil_ossl_bio_done) = BIO_new(BIO_s_mem());
    STACK_OF(X509) *chain VEIL_DEFER(chain_done) = sk_X509_new_null();
    VEIL_ENSURE(in != NULL && canon != NULL && chain != NULL, VEIL_ERR_NOMEM, "out of memory");
    X509 *cert;
    while ((cert = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(chain, cert) <= 0) {
            X509_free(cert);
            VEIL_BAIL(VEIL_ERR_NOMEM, "out of memory");
        }
        VEIL_ENSURE(sk_X509_num(chain) <= (int)VEIL_DCAP_MAX_CHAIN_CERTS, VEIL_ERR_LIMIT,
                    "DCAP: more than %u certificates in a chain", VEIL_DCAP_MAX_CHAIN_CERTS);
        VEIL_GUARD(pem_append(cert, canon));
    }
    ERR_clear_error(); /* the loop ends with "no start line" */
    VEIL_ENSURE(sk_X509_num(chain) >= 2, VEIL_ERR_EVIDENCE, "DCAP: a certificate chain needs at least 2 certificates");
    if (strict) {
        char *p = NULL;
        long n = BIO_get_mem_data(canon, &p);
        VEIL_ENSURE(n >= 0 && (size_t)n == size && memcmp(p, pem, size) == 0, VEIL_ERR_EVIDENCE,
                    "DCAP: the PCK chain is not canonical PEM");
    }
    *out = chain;
    chain = NULL;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT crl_push(STACK_OF(X509_CRL) *crls, const uint8_t *der, size_t size, const char *what)
{
    VEIL_ENSURE(der != NULL && size > 0 && size <= LONG_MAX, VEIL_ERR_EVIDENCE, "DCAP collateral: no %s", what);
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)size);
    VEIL_ENSURE(crl != NULL, VEIL_ERR_EVIDENCE, "DCAP collateral: %s is not a DER CRL", what);
    if (p != der + size || sk_X509_CRL_push(crls, crl) <= 0) {
        X509_CRL_free(crl);
        VEIL_BAIL(VEIL_ERR_EVIDENCE, "DCAP collateral: %s has trailing bytes", what);
    }
    return VEIL_RESULT_OK;
}

/* Time-window failures are VEIL_ERR_EXPIRED, everything else VEIL_ERR_VERIFY. */
static VEIL_RESULT chain_error(int err)
{
    switch (err) {
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
        VEIL_BAIL(VEIL_ERR_EXPIRED, "DCAP: certificate chain: %s", X509_verify_cert_error_string(err));
    default:
        VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: certificate chain: %s", X509_verify_cert_error_string(err));
    }
}

static VEIL_RESULT store_make(uint64_t now, int with_crls, X509_STORE **out)
{
    X509 *root VEIL_DEFER(veil_ossl_x509_done) = NULL;
    VEIL_ENSURE(now <= (uint64_t)INT64_MAX, VEIL_ERR_ARG, "DCAP: now is out of range");
    VEIL_GUARD(pinned_root(&root));
    X509_STORE *store = X509_STORE_new();
    VEIL_ENSURE(store != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = store;
    VEIL_GUARD_OSSL(X509_STORE_add_cert(store, root), VEIL_ERR_CRYPTO);
    X509_VERIFY_PARAM *param = X509_STORE_get0_param(store);
    X509_VERIFY_PARAM_set_time(param, (time_t)now);
    unsigned long flags = X509_V_FLAG_X509_STRICT;
    if (with_crls)
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    VEIL_GUARD_OSSL(X509_VERIFY_PARAM_set_flags(param, flags), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT crls_make(const struct veil_dcap_collateral *c, STACK_OF(X509_CRL) **out)
{
    *out = sk_X509_CRL_new_null();
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(crl_push(*out, c->root_ca_crl, c->root_ca_crl_size, "root CA CRL"));
    VEIL_GUARD(crl_push(*out, c->pck_crl, c->pck_crl_size, "PCK CRL"));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT x509_wrap(X509 *cert, struct veil_dcap_x509 **out)
{
    struct veil_dcap_x509 *x = OPENSSL_zalloc(sizeof *x);
    VEIL_ENSURE(x != NULL, VEIL_ERR_NOMEM, "out of memory");
    if (X509_up_ref(cert) != 1) {
        OPENSSL_free(x);
        VEIL_BAIL(VEIL_ERR_CRYPTO, "X509_up_ref failed");
    }
    x->cert = cert;
    *out = x;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_leaf_read(const char *pem, size_t pem_size, struct veil_dcap_x509 **out)
{
    STACK_OF(X509) *chain VEIL_DEFER(chain_done) = NULL;
    VEIL_GUARD(pem_chain_read(pem, pem_size, 0, &chain));
    return x509_wrap(sk_X509_value(chain, 0), out);
}

/* When strict, the chain's last certificate must be the pinned root itself. */
static VEIL_RESULT root_last_check(STACK_OF(X509) *chain)
{
    X509 *root VEIL_DEFER(veil_ossl_x509_done) = NULL;
    VEIL_GUARD(pinned_root(&root));
    VEIL_ENSURE(X509_cmp(sk_X509_value(chain, sk_X509_num(chain) - 1), root) == 0, VEIL_ERR_VERIFY,
                "DCAP: the PCK chain does not end in the Intel SGX Root CA");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_chain_verify(const char *pem, size_t pem_size, int strict, uint64_t now,
                                   const struct veil_dcap_collateral *c, struct veil_dcap_x509 **leaf_out)
{
    STACK_OF(X509) *chain VEIL_DEFER(chain_done) = NULL;
    STACK_OF(X509_CRL) *crls VEIL_DEFER(crls_done) = NULL;
    X509_STORE *store VEIL_DEFER(veil_ossl_x509_store_done) = NULL;
    X509_STORE_CTX *ctx VEIL_DEFER(veil_ossl_x509_store_ctx_done) = X509_STORE_CTX_new();
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(pem_chain_read(pem, pem_size, strict, &chain));
    if (strict)
        VEIL_GUARD(root_last_check(chain));
    VEIL_GUARD(store_make(now, c != NULL, &store));
    X509 *leaf = sk_X509_value(chain, 0);
    VEIL_GUARD_OSSL(X509_STORE_CTX_init(ctx, store, leaf, chain), VEIL_ERR_CRYPTO);
    if (c != NULL) {
        VEIL_GUARD(crls_make(c, &crls));
        X509_STORE_CTX_set0_crls(ctx, crls);
    }
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        ERR_clear_error();
        return chain_error(err);
    }
    return leaf_out == NULL ? VEIL_RESULT_OK : x509_wrap(leaf, leaf_out);
}

/* The subject's one commonName, NUL-terminated; "" when it has none or several. */
static void subject_cn(X509 *cert, char *out, size_t out_size)
{
    X509_NAME *name = X509_get_subject_name(cert);
    out[0] = '\0';
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
        return;
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    int n = ASN1_STRING_length(v);
    if (n <= 0 || (size_t)n >= out_size)
        return;
    memcpy(out, ASN1_STRING_get0_data(v), (size_t)n);
    out[n] = '\0';
    if (strlen(out) != (size_t)n)
        out[0] = '\0'; /* an embedded NUL */
}

/* Intel's QVL (TCBSigningChain::verify): the signer's CN is "Intel SGX TCB Signing", its issuer is the root's
 * subject and the root's key signed it. We also demand the exact CN and an end-entity certificate. */
VEIL_RESULT veil_dcap_tcb_signer_check(const struct veil_dcap_x509 *signer, const char *what)
{
    char cn[128];
    subject_cn(signer->cert, cn, sizeof cn);
    VEIL_ENSURE(strcmp(cn, VEIL_DCAP_TCB_SIGNING_CN) == 0, VEIL_ERR_VERIFY,
                "DCAP: %s was made by \"%.64s\", not by the \"" VEIL_DCAP_TCB_SIGNING_CN "\" certificate", what,
                cn);
    X509 *root VEIL_DEFER(veil_ossl_x509_done) = NULL;
    VEIL_GUARD(pinned_root(&root));
    int direct = X509_NAME_cmp(X509_get_issuer_name(signer->cert), X509_get_subject_name(root)) == 0 &&
                 X509_verify(signer->cert, X509_get0_pubkey(root)) == 1;
    int ca = X509_check_ca(signer->cert);
    ERR_clear_error();
    VEIL_ENSURE(direct, VEIL_ERR_VERIFY,
                "DCAP: the certificate behind %s is not issued by the Intel SGX Root CA itself", what);
    VEIL_ENSURE(ca == 0, VEIL_ERR_VERIFY, "DCAP: the certificate behind %s is a CA certificate", what);
    return VEIL_RESULT_OK;
}

/* Raw r || s (32 + 32, big-endian) as the DER ECDSA-Sig-Value OpenSSL verifies. */
static VEIL_RESULT sig_to_der(const uint8_t sig[VEIL_DCAP_SIG_SIZE], unsigned char **der, int *der_size)
{
    ECDSA_SIG *s VEIL_DEFER(veil_ossl_ecdsa_sig_done) = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    if (s == NULL || r == NULL || ss == NULL || ECDSA_SIG_set0(s, r, ss) != 1) {
        BN_free(r);
        BN_free(ss);
        VEIL_BAIL(VEIL_ERR_NOMEM, "out of memory");
    }
    *der = NULL;
    *der_size = i2d_ECDSA_SIG(s, der);
    VEIL_ENSURE(*der_size > 0, VEIL_ERR_CRYPTO, "ECDSA signature encoding failed");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT verify_with_key(EVP_PKEY *key, const uint8_t *data, size_t size,
                                   const uint8_t sig[VEIL_DCAP_SIG_SIZE], const char *what)
{
    unsigned char *der VEIL_DEFER(der_done) = NULL;
    int der_size = 0;
    VEIL_GUARD(sig_to_der(sig, &der, &der_size));
    VEIL_ENSURE(EVP_PKEY_get_base_id(key) == EVP_PKEY_EC && EVP_PKEY_get_bits(key) == 256, VEIL_ERR_VERIFY,
                "DCAP: the key for %s is not P-256", what);
    EVP_MD_CTX *md VEIL_DEFER(veil_ossl_md_ctx_done) = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), VEIL_ERR_CRYPTO);
    if (EVP_DigestVerify(md, der, (size_t)der_size, data, size) != 1) {
        ERR_clear_error();
        VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: %s does not verify", what);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_verify_sig_cert(const struct veil_dcap_x509 *leaf, const uint8_t *data, size_t size,
                                      const uint8_t sig[VEIL_DCAP_SIG_SIZE], const char *what)
{
    EVP_PKEY *key = X509_get0_pubkey(leaf->cert);
    VEIL_ENSURE(key != NULL, VEIL_ERR_VERIFY, "DCAP: the certificate for %s has no usable key", what);
    return verify_with_key(key, data, size, sig, what);
}

/* A P-256 public key from its raw point; VEIL_ERR_VERIFY when the point is not on the curve. */
static VEIL_RESULT raw_p256_key(const uint8_t xy[VEIL_DCAP_KEY_SIZE], EVP_PKEY **out)
{
    uint8_t point[1 + VEIL_DCAP_KEY_SIZE];
    point[0] = 0x04;
    memcpy(point + 1, xy, VEIL_DCAP_KEY_SIZE);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)(uintptr_t)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    int ok = EVP_PKEY_fromdata_init(ctx) == 1 && EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: the attestation key is not a P-256 point");
    }
    return VEIL_RESULT_OK;
}

/* OpenSSL's fromdata does not always check that the point is on the curve; the public check does. */
static VEIL_RESULT key_check(EVP_PKEY *key)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    int ok = EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: the attestation key is not a valid P-256 point");
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_verify_sig_raw(const uint8_t key[VEIL_DCAP_KEY_SIZE], const uint8_t *data, size_t size,
                                     const uint8_t sig[VEIL_DCAP_SIG_SIZE], const char *what)
{
    EVP_PKEY *pkey VEIL_DEFER(veil_ossl_pkey_done) = NULL;
    VEIL_GUARD(raw_p256_key(key, &pkey));
    VEIL_GUARD(key_check(pkey));
    return verify_with_key(pkey, data, size, sig, what);
}

/* ---- The PCK certificate's SGX extension --------------------------------------------------------------- */

#define SGX_EXT_OID "1.2.840.113741.1.13.1"

/* DER bytes as a SEQUENCE of ASN1_TYPEs, every byte consumed. */
static VEIL_RESULT seq_read(const unsigned char *der, long size, ASN1_SEQUENCE_ANY **out)
{
    const unsigned char *p = der;
    *out = d2i_ASN1_SEQUENCE_ANY(NULL, &p, size);
    VEIL_ENSURE(*out != NULL && p == der + size, VEIL_ERR_EVIDENCE, "PCK certificate: malformed SGX extension");
    return VEIL_RESULT_OK;
}

/* An ASN1_TYPE holding a SEQUENCE, decoded in turn. */
static VEIL_RESULT seq_of(const ASN1_TYPE *t, ASN1_SEQUENCE_ANY **out)
{
    VEIL_ENSURE(t != NULL && ASN1_TYPE_get(t) == V_ASN1_SEQUENCE, VEIL_ERR_EVIDENCE,
                "PCK certificate: SGX extension entry is not a SEQUENCE");
    return seq_read(t->value.sequence->data, t->value.sequence->length, out);
}

/* One entry: SEQUENCE { OID, value }. Returns the OID's last arc under `base` (or 0 when it is not below it). */
static VEIL_RESULT entry_read(const ASN1_TYPE *t, const char *base, ASN1_SEQUENCE_ANY **pair, unsigned *arc)
{
    char oid[80];
    VEIL_GUARD(seq_of(t, pair));
    VEIL_ENSURE(sk_ASN1_TYPE_num(*pair) == 2, VEIL_ERR_EVIDENCE, "PCK certificate: SGX extension entry size");
    ASN1_TYPE *o = sk_ASN1_TYPE_value(*pair, 0);
    VEIL_ENSURE(ASN1_TYPE_get(o) == V_ASN1_OBJECT, VEIL_ERR_EVIDENCE, "PCK certificate: SGX extension entry OID");
    int n = OBJ_obj2txt(oid, sizeof oid, o->value.object, 1);
    VEIL_ENSURE(n > 0 && (size_t)n < sizeof oid, VEIL_ERR_EVIDENCE, "PCK certificate: SGX extension OID too long");
    size_t blen = strlen(base);
    *arc = 0;
    if (strncmp(oid, base, blen) == 0 && oid[blen] == '.') {
        char *end = NULL;
        unsigned long v = strtoul(oid + blen + 1, &end, 10);
        if (*end == '\0' && v > 0 && v < 64)
            *arc = (unsigned)v;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT octets(const ASN1_TYPE *v, uint8_t *out, size_t size, const char *what)
{
    VEIL_ENSURE(ASN1_TYPE_get(v) == V_ASN1_OCTET_STRING && (size_t)v->value.octet_string->length == size,
                VEIL_ERR_EVIDENCE, "PCK certificate: %s must be %zu octets", what, size);
    memcpy(out, v->value.octet_string->data, size);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT integer(const ASN1_TYPE *v, uint64_t max, uint64_t *out, const char *what)
{
    VEIL_ENSURE(ASN1_TYPE_get(v) == V_ASN1_INTEGER, VEIL_ERR_EVIDENCE, "PCK certificate: %s is not an INTEGER",
                what);
    VEIL_ENSURE(ASN1_INTEGER_get_uint64(out, v->value.integer) == 1 && *out <= max, VEIL_ERR_EVIDENCE,
                "PCK certificate: %s is out of range", what);
    return VEIL_RESULT_OK;
}

/* Marks an arc seen; every arc the verifier needs must appear exactly once. */
static VEIL_RESULT seen_once(uint64_t *seen, unsigned arc)
{
    VEIL_ENSURE(!(*seen & (UINT64_C(1) << arc)), VEIL_ERR_EVIDENCE, "PCK certificate: duplicate SGX extension entry");
    *seen |= UINT64_C(1) << arc;
    return VEIL_RESULT_OK;
}

/* .2: TCB = SEQUENCE of { .2.1 .. .2.16 component SVN, .2.17 PCESVN, .2.18 CPUSVN }. */
static VEIL_RESULT tcb_read(const ASN1_TYPE *t, struct veil_dcap_pck_ext *out)
{
    ASN1_SEQUENCE_ANY *seq VEIL_DEFER(seq_done) = NULL;
    uint64_t seen = 0;
    VEIL_GUARD(seq_of(t, &seq));
    for (int i = 0; i < sk_ASN1_TYPE_num(seq); i++) {
        ASN1_SEQUENCE_ANY *pair VEIL_DEFER(seq_done) = NULL;
        unsigned arc = 0;
        uint64_t v = 0;
        VEIL_GUARD(entry_read(sk_ASN1_TYPE_value(seq, i), SGX_EXT_OID ".2", &pair, &arc));
        if (arc == 0 || arc > 18)
            continue;
        VEIL_GUARD(seen_once(&seen, arc));
        ASN1_TYPE *value = sk_ASN1_TYPE_value(pair, 1);
        if (arc == 18) {
            VEIL_GUARD(octets(value, out->cpusvn, 16, "CPUSVN"));
        } else if (arc == 17) {
            VEIL_GUARD(integer(value, UINT16_MAX, &v, "PCESVN"));
            out->pcesvn = (uint16_t)v;
        } else {
            VEIL_GUARD(integer(value, UINT8_MAX, &v, "TCB component SVN"));
            out->comp_svn[arc - 1] = (uint8_t)v;
        }
    }
    VEIL_ENSURE(seen == (UINT64_C(0x7FFFF) & ~UINT64_C(1)), VEIL_ERR_EVIDENCE,
                "PCK certificate: the SGX TCB entry is incomplete");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT ext_entry(unsigned arc, const ASN1_TYPE *value, struct veil_dcap_pck_ext *out)
{
    switch (arc) {
    case 1: return octets(value, out->ppid, 16, "PPID");
    case 2: return tcb_read(value, out);
    case 3: return octets(value, out->pceid, VEIL_DCAP_PCEID_SIZE, "PCE-ID");
    case 4: return octets(value, out->fmspc, VEIL_DCAP_FMSPC_SIZE, "FMSPC");
    default: return VEIL_RESULT_OK; /* SGX type, platform instance, configuration: not used */
    }
}

static VEIL_RESULT ext_der(const struct veil_dcap_x509 *leaf, const ASN1_OCTET_STRING **out)
{
    ASN1_OBJECT *oid VEIL_DEFER(veil_ossl_asn1_object_done) = OBJ_txt2obj(SGX_EXT_OID, 1);
    VEIL_ENSURE(oid != NULL, VEIL_ERR_NOMEM, "out of memory");
    int idx = X509_get_ext_by_OBJ(leaf->cert, oid, -1);
    VEIL_ENSURE(idx >= 0, VEIL_ERR_EVIDENCE, "PCK certificate: no SGX extension");
    VEIL_ENSURE(X509_get_ext_by_OBJ(leaf->cert, oid, idx) < 0, VEIL_ERR_EVIDENCE,
                "PCK certificate: two SGX extensions");
    *out = X509_EXTENSION_get_data(X509_get_ext(leaf->cert, idx));
    return VEIL_RESULT_OK;
}

/* The issuing CA is named in the leaf's issuer CN: "Intel SGX PCK Processor CA" or "... Platform CA". */
static VEIL_RESULT ca_kind(const struct veil_dcap_x509 *leaf, int *processor)
{
    char cn[128];
    int n = X509_NAME_get_text_by_NID(X509_get_issuer_name(leaf->cert), NID_commonName, cn, sizeof cn);
    VEIL_ENSURE(n > 0, VEIL_ERR_EVIDENCE, "PCK certificate: no issuer common name");
    *processor = strcmp(cn, "Intel SGX PCK Processor CA") == 0;
    VEIL_ENSURE(*processor || strcmp(cn, "Intel SGX PCK Platform CA") == 0, VEIL_ERR_EVIDENCE,
                "PCK certificate: issuer is not an Intel PCK CA");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_pck_ext_parse(const struct veil_dcap_x509 *leaf, struct veil_dcap_pck_ext *out)
{
    const ASN1_OCTET_STRING *der = NULL;
    ASN1_SEQUENCE_ANY *seq VEIL_DEFER(seq_done) = NULL;
    uint64_t seen = 0;
    memset(out, 0, sizeof *out);
    VEIL_GUARD(ca_kind(leaf, &out->processor_ca));
    VEIL_GUARD(ext_der(leaf, &der));
    VEIL_GUARD(seq_read(der->data, der->length, &seq));
    for (int i = 0; i < sk_ASN1_TYPE_num(seq); i++) {
        ASN1_SEQUENCE_ANY *pair VEIL_DEFER(seq_done) = NULL;
        unsigned arc = 0;
        VEIL_GUARD(entry_read(sk_ASN1_TYPE_value(seq, i), SGX_EXT_OID, &pair, &arc));
        if (arc == 0)
            continue;
        VEIL_GUARD(seen_once(&seen, arc));
        VEIL_GUARD(ext_entry(arc, sk_ASN1_TYPE_value(pair, 1), out));
    }
    VEIL_ENSURE((seen & 0x1E) == 0x1E, VEIL_ERR_EVIDENCE,
                "PCK certificate: the SGX extension lacks PPID, TCB, PCE-ID or FMSPC");
    return VEIL_RESULT_OK;
}
