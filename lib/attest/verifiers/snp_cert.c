/* SPDX-License-Identifier: Apache-2.0 */
/* The VCEK/VLEK: parsing (DER or PEM), its AMD extensions ("Versioned Chip Endorsement Key (VCEK) Certificate and
 * KDS Interface Specification" 57230, Table 8 "VCEK Certificate Extensions"), the chain up to the embedded ARK,
 * and the comparison of the reported TCB with the certificate's. */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "attest/amd_roots.h"
#include "attest/snp.h"
#include "core/limits.h"
#include "crypto/ossl_defer.h"

/* ---- cleanup helpers for VEIL_DEFER ---- */
static void int_freep(ASN1_INTEGER **p) { ASN1_INTEGER_free(*p); }
static void ostr_freep(ASN1_OCTET_STRING **p) { ASN1_OCTET_STRING_free(*p); }
static void stack_freep(STACK_OF(X509) **p) { sk_X509_free(*p); }

/* ---- parsing ---- */

static int looks_like_pem(const uint8_t *data, size_t size)
{
    static const char prefix[] = "-----BEGIN ";
    return size >= sizeof prefix - 1 && memcmp(data, prefix, sizeof prefix - 1) == 0;
}

static VEIL_RESULT cert_parse_der(const uint8_t *data, size_t size, X509 **out)
{
    const unsigned char *p = data;
    X509 *cert = d2i_X509(NULL, &p, (long)size);
    VEIL_ENSURE(cert != NULL, VEIL_ERR_EVIDENCE, "SEV-SNP certificate is neither DER nor PEM X.509");
    if (p != data + size) {
        X509_free(cert);
        VEIL_BAIL(VEIL_ERR_EVIDENCE, "SEV-SNP certificate has trailing bytes after its DER encoding");
    }
    *out = cert;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT cert_parse_pem(const uint8_t *data, size_t size, X509 **out)
{
    BIO *bio VEIL_DEFER(veil_ossl_bio_done) = BIO_new_mem_buf(data, (int)size);
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    VEIL_ENSURE(cert != NULL, VEIL_ERR_EVIDENCE, "SEV-SNP certificate: PEM does not hold an X.509 certificate");
    *out = cert;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_snp_cert_parse(const uint8_t *data, size_t size, X509 **out)
{
    VEIL_ENSURE(data != NULL && out != NULL, VEIL_ERR_ARG, "SEV-SNP certificate: NULL argument");
    VEIL_ENSURE(size > 0, VEIL_ERR_EVIDENCE, "SEV-SNP certificate is empty");
    VEIL_ENSURE(size <= VEIL_SNP_CERT_MAX_SIZE, VEIL_ERR_LIMIT, "SEV-SNP certificate is larger than %u bytes",
                VEIL_SNP_CERT_MAX_SIZE);
    if (looks_like_pem(data, size))
        return cert_parse_pem(data, size, out);
    return cert_parse_der(data, size, out);
}

/* ---- extensions ---- */

#define AMD_OID_PREFIX "1.3.6.1.4.1.3704.1."

static const char *const spl_oids[VEIL_SNP_SPL_COUNT] = {
    [VEIL_SNP_SPL_BOOTLOADER] = AMD_OID_PREFIX "3.1", /* blSPL */
    [VEIL_SNP_SPL_TEE] = AMD_OID_PREFIX "3.2",        /* teeSPL */
    [VEIL_SNP_SPL_SNP] = AMD_OID_PREFIX "3.3",        /* snpSPL */
    [VEIL_SNP_SPL_MICROCODE] = AMD_OID_PREFIX "3.8",  /* ucodeSPL */
    [VEIL_SNP_SPL_FMC] = AMD_OID_PREFIX "3.9",        /* fmcSPL (Turin) */
};
static const char *const spl_names[VEIL_SNP_SPL_COUNT] = {"blSPL", "teeSPL", "snpSPL", "ucodeSPL", "fmcSPL"};
#define AMD_OID_HWID AMD_OID_PREFIX "4"

/* The value (extnValue contents) of the extension with this OID, or NULL when absent; present twice is an error. */
static VEIL_RESULT ext_find(const X509 *cert, const char *oid, const ASN1_OCTET_STRING **out)
{
    ASN1_OBJECT *obj VEIL_DEFER(veil_ossl_asn1_object_done) = OBJ_txt2obj(oid, 1);
    VEIL_ENSURE(obj != NULL, VEIL_ERR_CRYPTO, "cannot build OID %s", oid);
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    *out = NULL;
    if (idx < 0)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(X509_get_ext_by_OBJ(cert, obj, idx) < 0, VEIL_ERR_EVIDENCE,
                "SEV-SNP certificate: extension %s appears twice", oid);
    *out = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    VEIL_ENSURE(*out != NULL, VEIL_ERR_EVIDENCE, "SEV-SNP certificate: extension %s has no value", oid);
    return VEIL_RESULT_OK;
}

/* An SPL: the extension value is a complete DER INTEGER in 0..255. */
static VEIL_RESULT ext_spl(const ASN1_OCTET_STRING *value, const char *name, uint8_t *out)
{
    const unsigned char *p = ASN1_STRING_get0_data(value);
    long len = ASN1_STRING_length(value);
    ASN1_INTEGER *n VEIL_DEFER(int_freep) = d2i_ASN1_INTEGER(NULL, &p, len);
    VEIL_ENSURE(n != NULL && p == ASN1_STRING_get0_data(value) + len, VEIL_ERR_EVIDENCE,
                "SEV-SNP certificate: %s is not a DER INTEGER", name);
    int64_t v = -1;
    VEIL_ENSURE(ASN1_INTEGER_get_int64(&v, n) == 1 && v >= 0 && v <= 255, VEIL_ERR_EVIDENCE,
                "SEV-SNP certificate: %s is not in 0..255", name);
    *out = (uint8_t)v;
    return VEIL_RESULT_OK;
}

/* hwID: AMD's VCEKs carry the 64 CHIP_ID bytes raw in extnValue (KDS specification); a DER OCTET STRING
 * around them is accepted too. Turin VCEKs are keyed by the first 8 bytes of CHIP_ID. */
static VEIL_RESULT ext_hwid(const ASN1_OCTET_STRING *value, struct veil_snp_cert_ext *out)
{
    const unsigned char *data = ASN1_STRING_get0_data(value);
    int len = ASN1_STRING_length(value);
    if (len == (int)VEIL_SNP_CHIP_ID_SIZE || len == 8) {
        memcpy(out->hwid, data, (size_t)len);
        out->hwid_size = (size_t)len;
        return VEIL_RESULT_OK;
    }
    const unsigned char *p = data;
    ASN1_OCTET_STRING *inner VEIL_DEFER(ostr_freep) = d2i_ASN1_OCTET_STRING(NULL, &p, len);
    VEIL_ENSURE(inner != NULL && p == data + len, VEIL_ERR_EVIDENCE,
                "SEV-SNP certificate: hwID is neither 64 raw bytes nor an OCTET STRING");
    int inner_len = ASN1_STRING_length(inner);
    VEIL_ENSURE(inner_len == (int)VEIL_SNP_CHIP_ID_SIZE || inner_len == 8, VEIL_ERR_EVIDENCE,
                "SEV-SNP certificate: hwID is %d bytes, not 64 (or 8 on Turin)", inner_len);
    memcpy(out->hwid, ASN1_STRING_get0_data(inner), (size_t)inner_len);
    out->hwid_size = (size_t)inner_len;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_snp_cert_ext_read(const X509 *cert, struct veil_snp_cert_ext *out)
{
    struct veil_snp_cert_ext e;
    memset(&e, 0, sizeof e);
    for (int i = 0; i < VEIL_SNP_SPL_COUNT; i++) {
        const ASN1_OCTET_STRING *value = NULL;
        VEIL_GUARD(ext_find(cert, spl_oids[i], &value));
        if (value != NULL) {
            VEIL_GUARD(ext_spl(value, spl_names[i], &e.spl[i]));
            e.has_spl[i] = 1;
        }
    }
    const ASN1_OCTET_STRING *hwid = NULL;
    VEIL_GUARD(ext_find(cert, AMD_OID_HWID, &hwid));
    if (hwid != NULL)
        VEIL_GUARD(ext_hwid(hwid, &e));
    *out = e;
    return VEIL_RESULT_OK;
}

/* ---- step 5: reported TCB and chip against the certificate ---- */

static VEIL_RESULT check_hwid(const struct veil_snp_report *r, enum veil_snp_product p,
                              const struct veil_snp_cert_ext *ext)
{
    VEIL_ENSURE(ext->hwid_size != 0, VEIL_ERR_VERIFY, "SEV-SNP VCEK has no hwID extension");
    VEIL_ENSURE(ext->hwid_size == VEIL_SNP_CHIP_ID_SIZE || p == VEIL_SNP_PRODUCT_TURIN, VEIL_ERR_VERIFY,
                "SEV-SNP VCEK: an 8-byte hwID is only valid on Turin");
    VEIL_ENSURE(!r->mask_chip_key, VEIL_ERR_VERIFY,
                "SEV-SNP report masks CHIP_ID (MASK_CHIP_KEY): it cannot be bound to a VCEK");
    VEIL_ENSURE(memcmp(ext->hwid, r->chip_id, ext->hwid_size) == 0, VEIL_ERR_VERIFY,
                "SEV-SNP VCEK belongs to another chip (hwID != CHIP_ID)");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_snp_tcb_check(const struct veil_snp_report *r, enum veil_snp_product p,
                               const struct veil_snp_cert_ext *ext)
{
    uint8_t reported[VEIL_SNP_SPL_COUNT];
    veil_snp_tcb_decode(r->reported_tcb, p, reported);
    int count = p == VEIL_SNP_PRODUCT_TURIN ? VEIL_SNP_SPL_COUNT : VEIL_SNP_SPL_FMC;
    for (int i = 0; i < count; i++) {
        VEIL_ENSURE(ext->has_spl[i], VEIL_ERR_VERIFY, "SEV-SNP certificate has no %s extension", spl_names[i]);
        VEIL_ENSURE(ext->spl[i] == reported[i], VEIL_ERR_VERIFY,
                    "SEV-SNP REPORTED_TCB %s is %u but the certificate is for %u", spl_names[i], reported[i],
                    ext->spl[i]);
    }
    if (r->signing_key == VEIL_SNP_KEY_VCEK)
        return check_hwid(r, p, ext);
    return VEIL_RESULT_OK;
}

/* ---- step 3: the chain ---- */

struct amd_chain {
    enum veil_snp_product product;
    const char *ark_pem;
    const char *ask_pem;  /* signs VCEKs */
    const char *asvk_pem; /* signs VLEKs */
};

static const struct amd_chain amd_chains[] = {
    {VEIL_SNP_PRODUCT_MILAN, veil_amd_milan_ark_pem, veil_amd_milan_ask_pem, veil_amd_milan_asvk_pem},
    {VEIL_SNP_PRODUCT_GENOA, veil_amd_genoa_ark_pem, veil_amd_genoa_ask_pem, veil_amd_genoa_asvk_pem},
    {VEIL_SNP_PRODUCT_TURIN, veil_amd_turin_ark_pem, veil_amd_turin_ask_pem, veil_amd_turin_asvk_pem},
};

static VEIL_RESULT root_load(const char *pem, X509 **out)
{
    BIO *bio VEIL_DEFER(veil_ossl_bio_done) = BIO_new_mem_buf(pem, -1);
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_INTERNAL, "an embedded AMD certificate does not parse");
    return VEIL_RESULT_OK;
}

/* The embedded chain whose ASK (VCEK) or ASVK (VLEK) is named as cert's issuer; *intermediate is owned by the
 * caller. The signatures are checked afterwards by X509_verify_cert: the name only selects the product line. */
static VEIL_RESULT chain_select(const X509 *cert, enum veil_snp_key key, const struct amd_chain **chain,
                                X509 **intermediate)
{
    for (size_t i = 0; i < sizeof amd_chains / sizeof amd_chains[0]; i++) {
        X509 *candidate = NULL;
        VEIL_GUARD(root_load(key == VEIL_SNP_KEY_VCEK ? amd_chains[i].ask_pem : amd_chains[i].asvk_pem,
                             &candidate));
        if (X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(candidate)) == 0) {
            *chain = &amd_chains[i];
            *intermediate = candidate;
            return VEIL_RESULT_OK;
        }
        X509_free(candidate);
    }
    VEIL_BAIL(VEIL_ERR_VERIFY, "SEV-SNP %s is not issued by any AMD %s Veil trusts (Milan, Genoa, Turin)",
              key == VEIL_SNP_KEY_VCEK ? "VCEK" : "VLEK", key == VEIL_SNP_KEY_VCEK ? "ASK" : "ASVK");
}

static VEIL_RESULT chain_error(int err)
{
    if (err == X509_V_ERR_CERT_NOT_YET_VALID || err == X509_V_ERR_CERT_HAS_EXPIRED)
        VEIL_BAIL(VEIL_ERR_EXPIRED, "SEV-SNP certificate chain: %s at the verification time",
                  X509_verify_cert_error_string(err));
    VEIL_BAIL(VEIL_ERR_VERIFY, "SEV-SNP certificate chain: %s", X509_verify_cert_error_string(err));
}

/* X509_verify_cert with the ARK as the only trust anchor (its self-signature checked too), the intermediate as
 * the only untrusted certificate, and validity judged at now. */
static VEIL_RESULT chain_run(X509 *cert, X509 *ark, X509 *intermediate, uint64_t now)
{
    VEIL_ENSURE(now <= (uint64_t)INT64_MAX, VEIL_ERR_ARG, "verification time out of range");
    X509_STORE *store VEIL_DEFER(veil_ossl_x509_store_done) = X509_STORE_new();
    X509_STORE_CTX *ctx VEIL_DEFER(veil_ossl_x509_store_ctx_done) = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted VEIL_DEFER(stack_freep) = sk_X509_new_null();
    VEIL_ENSURE(store != NULL && ctx != NULL && untrusted != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(X509_STORE_add_cert(store, ark), VEIL_ERR_CRYPTO);
    VEIL_ENSURE(sk_X509_push(untrusted, intermediate) > 0, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(X509_STORE_CTX_init(ctx, store, cert, untrusted), VEIL_ERR_CRYPTO);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, (time_t)now);
    VEIL_GUARD_OSSL(X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CHECK_SS_SIGNATURE), VEIL_ERR_CRYPTO);
    X509_VERIFY_PARAM_set_depth(param, 2);
    if (X509_verify_cert(ctx) != 1)
        return chain_error(X509_STORE_CTX_get_error(ctx));
    STACK_OF(X509) *built = X509_STORE_CTX_get0_chain(ctx);
    VEIL_ENSURE(built != NULL && sk_X509_num(built) == 3 && X509_cmp(sk_X509_value(built, 1), intermediate) == 0 &&
                    X509_cmp(sk_X509_value(built, 2), ark) == 0,
                VEIL_ERR_VERIFY, "SEV-SNP certificate chain is not certificate -> ASK/ASVK -> ARK");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_snp_chain_verify(X509 *cert, enum veil_snp_key key, uint64_t now, enum veil_snp_product *product)
{
    const struct amd_chain *chain = NULL;
    X509 *intermediate VEIL_DEFER(veil_ossl_x509_done) = NULL;
    X509 *ark VEIL_DEFER(veil_ossl_x509_done) = NULL;
    VEIL_GUARD(chain_select(cert, key, &chain, &intermediate));
    VEIL_GUARD(root_load(chain->ark_pem, &ark));
    VEIL_GUARD(chain_run(cert, ark, intermediate, now));
    *product = chain->product;
    return VEIL_RESULT_OK;
}
