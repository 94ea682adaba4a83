/* SPDX-License-Identifier: Apache-2.0 */
/* veil_snp_verify: the SEV-SNP verifier, a coordinator whose steps follow the order of AMD's verification flow
 * (SEV-SNP ABI 56860 section 7.3 "Attestation"; VCEK specification 57230):
 *   1 parse the ATTESTATION_REPORT                          (snp_report.c)
 *   2 parse the VCEK/VLEK, DER or PEM                       (snp_cert.c)
 *   3 chain: VCEK -> ASK or VLEK -> ASVK -> ARK, embedded roots, validity at options->now (snp_cert.c)
 *   4 "The signature is computed over bytes 0h to 29Fh" with ECDSA P-384/SHA-384 by the VCEK/VLEK (here)
 *   5 REPORTED_TCB against the certificate's SPL extensions, CHIP_ID against its hwID (snp_cert.c)
 *   6 claims: REPORTED_TCB and COMMITTED_TCB decoded, tcb_status "NotJudged"
 * VMPL, debug, measurements and the TCB's minimum (min_tcb) are reported in the claims and judged by the policy,
 * not here. */
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "attest/snp.h"
#include "attest/verifiers.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/limits.h"

static void x509_freep(X509 **p) { X509_free(*p); }
static void buf_cleanupp(struct veil_buf *b) { veil_buf_cleanup(b); }
static void sig_freep(ECDSA_SIG **p) { ECDSA_SIG_free(*p); }
static void bn_freep(BIGNUM **p) { BN_free(*p); }
static void md_ctx_freep(EVP_MD_CTX **p) { EVP_MD_CTX_free(*p); }
static void der_freep(unsigned char **p) { OPENSSL_free(*p); }

/* Step 2: the certificate passed in, or else the one at options->snp_cert_path. */
static VEIL_RESULT load_cert(const uint8_t *cert, size_t cert_size, const struct veil_verify_options *options,
                             X509 **out)
{
    if (cert != NULL)
        return veil_snp_cert_parse(cert, cert_size, out);
    VEIL_ENSURE(options->snp_cert_path != NULL, VEIL_ERR_ARG,
                "SEV-SNP: no VCEK/VLEK in the evidence and no certificate path given");
    struct veil_buf b VEIL_DEFER(buf_cleanupp);
    veil_buf_init(&b);
    VEIL_GUARD(veil_file_read_all(options->snp_cert_path, VEIL_SNP_CERT_MAX_SIZE, &b));
    VEIL_ENSURE(b.size > 0, VEIL_ERR_EVIDENCE, "SEV-SNP certificate file %s is empty", options->snp_cert_path);
    return veil_snp_cert_parse(b.data, b.size, out);
}

/* A report names its CPU from version 3 on; it must be the product line whose AMD chain the certificate has. */
static VEIL_RESULT check_product(const struct veil_snp_report *r, enum veil_snp_product chain_product)
{
    enum veil_snp_product cpu = veil_snp_product_from_cpuid(r);
    VEIL_ENSURE(cpu == VEIL_SNP_PRODUCT_UNKNOWN || cpu == chain_product, VEIL_ERR_VERIFY,
                "SEV-SNP report comes from a %s CPU but its certificate chains to the %s ARK",
                veil_snp_product_name(cpu), veil_snp_product_name(chain_product));
    return VEIL_RESULT_OK;
}

/* The report's R and S (little-endian) as a DER ECDSA-Sig-Value. *der is freed with OPENSSL_free. */
static VEIL_RESULT signature_der(const struct veil_snp_report *r, unsigned char **der, size_t *der_size)
{
    BIGNUM *bn_r VEIL_DEFER(bn_freep) = BN_lebin2bn(r->sig_r, (int)VEIL_SNP_SIG_COMPONENT_SIZE, NULL);
    BIGNUM *bn_s VEIL_DEFER(bn_freep) = BN_lebin2bn(r->sig_s, (int)VEIL_SNP_SIG_COMPONENT_SIZE, NULL);
    ECDSA_SIG *sig VEIL_DEFER(sig_freep) = ECDSA_SIG_new();
    VEIL_ENSURE(bn_r != NULL && bn_s != NULL && sig != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(ECDSA_SIG_set0(sig, bn_r, bn_s), VEIL_ERR_CRYPTO);
    bn_r = bn_s = NULL; /* owned by sig now */
    int n = i2d_ECDSA_SIG(sig, der);
    VEIL_ENSURE(n > 0, VEIL_ERR_CRYPTO, "cannot encode the SEV-SNP report signature");
    *der_size = (size_t)n;
    return VEIL_RESULT_OK;
}

/* The VCEK/VLEK must be a P-384 key: the only one SIGNATURE_ALGO 1 allows. */
static VEIL_RESULT check_key(EVP_PKEY *key)
{
    char group[32] = {0};
    size_t len = 0;
    VEIL_ENSURE(key != NULL && EVP_PKEY_get_base_id(key) == EVP_PKEY_EC, VEIL_ERR_VERIFY,
                "SEV-SNP certificate key is not an EC key");
    VEIL_ENSURE(EVP_PKEY_get_group_name(key, group, sizeof group, &len) == 1 && strcmp(group, "secp384r1") == 0,
                VEIL_ERR_VERIFY, "SEV-SNP certificate key is not on P-384");
    return VEIL_RESULT_OK;
}

/* Step 4. */
static VEIL_RESULT check_signature(const uint8_t *report, const struct veil_snp_report *r, X509 *cert)
{
    EVP_PKEY *key = X509_get0_pubkey(cert);
    VEIL_GUARD(check_key(key));
    unsigned char *der VEIL_DEFER(der_freep) = NULL;
    size_t der_size = 0;
    VEIL_GUARD(signature_der(r, &der, &der_size));
    EVP_MD_CTX *md VEIL_DEFER(md_ctx_freep) = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, key), VEIL_ERR_CRYPTO);
    int ok = EVP_DigestVerify(md, der, der_size, report, VEIL_SNP_SIGNED_SIZE);
    ERR_clear_error();
    VEIL_ENSURE(ok == 1, VEIL_ERR_VERIFY, "SEV-SNP report signature does not verify with the %s",
                r->signing_key == VEIL_SNP_KEY_VCEK ? "VCEK" : "VLEK");
    return VEIL_RESULT_OK;
}

static int nonzero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc != 0;
}

static struct veil_snp_tcb tcb_claim(uint64_t tcb, enum veil_snp_product product)
{
    uint8_t spl[VEIL_SNP_SPL_COUNT];
    veil_snp_tcb_decode(tcb, product, spl);
    return (struct veil_snp_tcb){.bootloader = spl[VEIL_SNP_SPL_BOOTLOADER], .tee = spl[VEIL_SNP_SPL_TEE],
                                 .snp = spl[VEIL_SNP_SPL_SNP], .microcode = spl[VEIL_SNP_SPL_MICROCODE],
                                 .fmc = spl[VEIL_SNP_SPL_FMC]};
}

/* Step 6. */
static void fill_claims(const struct veil_snp_report *r, enum veil_snp_product product, struct veil_claims *c)
{
    memset(c, 0, sizeof *c);
    c->tee = VEIL_TEE_SNP;
    memcpy(c->report_data, r->report_data, sizeof r->report_data);
    memcpy(c->measurement, r->measurement, sizeof r->measurement);
    c->measurement_size = sizeof r->measurement;
    if (nonzero(r->id_key_digest, sizeof r->id_key_digest)) {
        memcpy(c->signer, r->id_key_digest, sizeof r->id_key_digest);
        c->signer_size = sizeof r->id_key_digest;
    }
    memcpy(c->config_id, r->host_data, sizeof r->host_data);
    c->config_id_size = sizeof r->host_data;
    c->svn = r->guest_svn;
    c->debug = (r->policy & VEIL_SNP_POLICY_DEBUG) != 0;
    c->vmpl = r->vmpl;
    /* Step 5 refused any difference between REPORTED_TCB and the certificate's TCB; whether that TCB is recent
     * enough is the policy's min_tcb to judge (AMD publishes no TCB status), so the verifier says so. */
    c->reported_tcb = tcb_claim(r->reported_tcb, product);
    c->committed_tcb = tcb_claim(r->committed_tcb, product);
    snprintf(c->tcb_status, sizeof c->tcb_status, "%s", "NotJudged");
}

static VEIL_RESULT verify_steps(const uint8_t *report, size_t size, const uint8_t *cert_der, size_t cert_size,
                                const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_ENSURE(options->now != 0, VEIL_ERR_ARG, "SEV-SNP: options->now (the verification time) is not set");

    struct veil_snp_report r; /* 1 */
    VEIL_GUARD(veil_snp_report_parse(report, size, &r));

    X509 *cert VEIL_DEFER(x509_freep) = NULL; /* 2 */
    VEIL_GUARD(load_cert(cert_der, cert_size, options, &cert));

    enum veil_snp_product product = VEIL_SNP_PRODUCT_UNKNOWN; /* 3 */
    VEIL_GUARD(veil_snp_chain_verify(cert, r.signing_key, options->now, &product));
    VEIL_GUARD(check_product(&r, product));

    VEIL_GUARD(check_signature(report, &r, cert)); /* 4 */

    struct veil_snp_cert_ext ext; /* 5 */
    VEIL_GUARD(veil_snp_cert_ext_read(cert, &ext));
    VEIL_GUARD(veil_snp_tcb_check(&r, product, &ext));

    fill_claims(&r, product, claims); /* 6 */
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_snp_verify(const uint8_t *report, size_t size, const uint8_t *cert_der, size_t cert_size,
                            const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_ENSURE(report != NULL && options != NULL && claims != NULL, VEIL_ERR_ARG, "SEV-SNP: NULL argument");
    memset(claims, 0, sizeof *claims);
    struct veil_result result = verify_steps(report, size, cert_der, cert_size, options, claims);
    ERR_clear_error(); /* a failed parse or chain leaves OpenSSL's queue filled: do not leak it to the next call */
    if (!veil_ok(result))
        memset(claims, 0, sizeof *claims);
    return result;
}
