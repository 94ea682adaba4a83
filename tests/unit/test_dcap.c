/* SPDX-License-Identifier: Apache-2.0 */
/* lib/attest/dcap_*.c: the DCAP verifier against real quotes and collateral (tests/vectors/attest/dcap, from
 * dcap-qvl and trustee), with the expected outcome of every vector (attestation.md section 6) and an expected
 * status for every documented failure: every single-byte change of a quote, tampered or foreign collateral,
 * time outside the windows, malformed input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest/dcap.h"
#include "attest/verifiers.h"
#include "core/limits.h"
#include "testutil.h"

/* Windows (attestation.md section 6). */
#define SGX_NOW UINT64_C(1752919277)
#define SGX_FIRST UINT64_C(1750330571)
#define SGX_LAST UINT64_C(1752919278)
#define TDX_NOW UINT64_C(1752919234)
#define TDX_FIRST UINT64_C(1750329147)
#define TDX_LAST UINT64_C(1752919234) /* the PCK CRL's nextUpdate, 1752919235, is already past for OpenSSL */
#define OUTDATED_NOW UINT64_C(1772000000) /* inside [1771412331, 1774003275] */
#define PCK_NOW UINT64_C(1752919277)      /* inside every PCK certificate of the collateral-less quotes */

struct vec {
    uint8_t *data;
    size_t size;
};

static const char *path_of(const char *name)
{
    static char path[4096];
    const char *root = getenv("VEIL_TEST_DATA");
    assert_non_null(root);
    snprintf(path, sizeof path, "%s/vectors/attest/dcap/%s", root, name);
    return path;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c - 'A' + 10;
}

static struct vec load(const char *name)
{
    struct vec v;
    v.data = tu_read(path_of(name), &v.size);
    size_t n = strlen(name);
    if (n > 4 && strcmp(name + n - 4, ".hex") == 0) { /* "0x"-prefixed hex text */
        size_t i = v.size >= 2 && v.data[0] == '0' && v.data[1] == 'x' ? 2 : 0, o = 0;
        for (; i + 1 < v.size && v.data[i] != '\n'; i += 2)
            v.data[o++] = (uint8_t)(hexval(v.data[i]) << 4 | hexval(v.data[i + 1]));
        v.size = o;
    }
    return v;
}

static void collateral_load(const char *name, struct veil_dcap_collateral *c)
{
    struct vec j = load(name);
    veil_dcap_collateral_init(c);
    struct veil_result r = veil_dcap_collateral_parse(j.data, j.size, c);
    if (!veil_ok(r))
        fail_msg("%s: %s", name, veil_last_error());
    free(j.data);
}

static veil_status verify_file(const char *quote, const char *collateral, uint64_t now, struct veil_claims *claims)
{
    struct vec q = load(quote);
    struct veil_verify_options o;
    memset(&o, 0, sizeof o);
    o.now = now;
    o.collateral_path = path_of(collateral);
    veil_status s = veil_dcap_verify(q.data, q.size, &o, claims).status;
    free(q.data);
    if (s != VEIL_OK)
        assert_int_equal(claims->tee, 0); /* zeroed on failure */
    return s;
}

static void test_sgx_sample(void **state)
{
    (void)state;
    struct veil_claims c;
    veil_status s = verify_file("dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", SGX_NOW, &c);
    if (s != VEIL_OK)
        fail_msg("%s", veil_last_error());
    assert_int_equal(c.tee, VEIL_TEE_SGX);
    assert_string_equal(c.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_int_equal(c.advisory_count, 2);
    assert_string_equal(c.advisories[0], "INTEL-SA-00289");
    assert_string_equal(c.advisories[1], "INTEL-SA-00615");
    assert_int_equal(c.measurement_size, 32);
    static const uint8_t mrenclave4[4] = {0x33, 0xd8, 0x73, 0x6d}, mrsigner4[4] = {0x81, 0x5f, 0x42, 0xf1};
    assert_memory_equal(c.measurement, mrenclave4, 4);
    assert_int_equal(c.signer_size, 32);
    assert_memory_equal(c.signer, mrsigner4, 4);
    assert_memory_equal(c.report_data, "Hello, world!", 13);
    assert_int_equal(c.report_data[13], 0);
    assert_int_equal(c.product_id, 0);
    assert_int_equal(c.svn, 0);
    assert_int_equal(c.debug, 0);
    assert_int_equal(c.config_id_size, 64);
    assert_int_equal(c.rtmr_count, 0);
}

static void test_tdx_sample(void **state)
{
    (void)state;
    struct veil_claims c;
    veil_status s = verify_file("dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW, &c);
    if (s != VEIL_OK)
        fail_msg("%s", veil_last_error());
    assert_int_equal(c.tee, VEIL_TEE_TDX);
    assert_string_equal(c.tcb_status, "UpToDate");
    assert_int_equal(c.advisory_count, 0);
    static const uint8_t mrtd4[4] = {0x91, 0xeb, 0x2b, 0x44};
    assert_int_equal(c.measurement_size, 48);
    assert_memory_equal(c.measurement, mrtd4, 4);
    assert_int_equal(c.rtmr_count, 4);
    assert_int_equal(c.config_id_size, 48);
    assert_int_equal(c.signer_size, 0);
    assert_int_equal(c.debug, 0);
    /* The TD report body's MRCONFIGID, MROWNER, MROWNERCONFIG and RTMRs (quote offsets 232, 280, 328, 376). */
    struct vec q = load("dcap-qvl/tdx_quote");
    assert_memory_equal(c.config_id, q.data + 232, 48);
    assert_int_equal(c.mr_owner_size, 48);
    assert_memory_equal(c.mr_owner, q.data + 280, 48);
    assert_int_equal(c.mr_owner_config_size, 48);
    assert_memory_equal(c.mr_owner_config, q.data + 328, 48);
    for (int i = 0; i < 4; i++)
        assert_memory_equal(c.rtmr[i], q.data + 376 + 48 * i, 48);
    /* A policy pinning this TD's MRTD and workload (RTMR1, RTMR2, MROWNER) accepts it; another RTMR1 does not. */
    char mrtd[97], rtmr1[97], rtmr2[97], owner[97], json[1024];
    for (int k = 0; k < 48; k++) {
        snprintf(mrtd + 2 * k, 3, "%02x", c.measurement[k]);
        snprintf(rtmr1 + 2 * k, 3, "%02x", c.rtmr[1][k]);
        snprintf(rtmr2 + 2 * k, 3, "%02x", c.rtmr[2][k]);
        snprintf(owner + 2 * k, 3, "%02x", c.mr_owner[k]);
    }
    snprintf(json, sizeof json, "{\"tdx\":{\"measurements\":[\"%s\"],\"rtmr1\":[\"%s\"],\"rtmr2\":[\"%s\"],"
             "\"mrowner\":[\"%s\"]}}", mrtd, rtmr1, rtmr2, owner);
    veil_policy *p = NULL;
    assert_int_equal(veil_policy_parse(json, strlen(json), &p), VEIL_OK);
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.rtmr[1][0] ^= 1;
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_ERR_POLICY);
    assert_non_null(strstr(veil_last_error(), "rtmr1"));
    veil_policy_free(p);
    free(q.data);
}

/* "Fails: No matching TCB level found: the platform is below every level." */
static void test_tdx_outdated(void **state)
{
    (void)state;
    struct veil_claims c;
    veil_status s = verify_file("dcap-qvl/tdx_quote_outdated", "dcap-qvl/tdx_quote_outdated_collateral.json",
                                OUTDATED_NOW, &c);
    assert_int_equal(s, VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "no matching TCB level"));
}

/* The window's ends are inclusive; one second outside is VEIL_ERR_EXPIRED. */
static void test_windows(void **state)
{
    (void)state;
    struct veil_claims c;
    const char *sq = "dcap-qvl/sgx_quote", *sc = "dcap-qvl/sgx_quote_collateral.json";
    const char *tq = "dcap-qvl/tdx_quote", *tc = "dcap-qvl/tdx_quote_collateral.json";
    assert_int_equal(verify_file(sq, sc, SGX_FIRST, &c), VEIL_OK);
    assert_int_equal(verify_file(sq, sc, SGX_LAST, &c), VEIL_OK);
    assert_int_equal(verify_file(sq, sc, SGX_FIRST - 1, &c), VEIL_ERR_EXPIRED);
    assert_int_equal(verify_file(sq, sc, SGX_LAST + 1, &c), VEIL_ERR_EXPIRED);
    assert_int_equal(verify_file(tq, tc, TDX_FIRST, &c), VEIL_OK);
    assert_int_equal(verify_file(tq, tc, TDX_LAST, &c), VEIL_OK);
    assert_int_equal(verify_file(tq, tc, TDX_FIRST - 1, &c), VEIL_ERR_EXPIRED);
    assert_int_equal(verify_file(tq, tc, TDX_LAST + 1, &c), VEIL_ERR_EXPIRED);
    assert_int_equal(verify_file(sq, sc, UINT64_C(4102444800), &c), VEIL_ERR_EXPIRED); /* 2100 */
    assert_int_equal(verify_file(sq, sc, 0, &c), VEIL_ERR_EXPIRED);
}

/* Quotes without matching collateral: steps 1-5 (the PCK chain without CRLs) and the claims. */
static veil_status signatures(const char *name, uint64_t now, struct veil_claims *c)
{
    struct vec q = load(name);
    struct veil_dcap_quote parsed;
    struct veil_dcap_pck_ext pck;
    veil_status s = veil_dcap_verify_signatures(q.data, q.size, now, NULL, &parsed, &pck, c).status;
    free(q.data);
    return s;
}

static void test_debug_quotes(void **state)
{
    (void)state;
    struct veil_claims c;
    /* Debug is reported in the claims, not refused: the policy refuses it. */
    assert_int_equal(signatures("trustee/occlum_quote.dat", PCK_NOW, &c), VEIL_OK);
    assert_int_equal(c.tee, VEIL_TEE_SGX);
    assert_int_equal(c.debug, 1);
    assert_memory_equal(c.report_data, "test", 4);
    assert_int_equal(signatures("trustee/tdx_quote_4.dat", PCK_NOW, &c), VEIL_OK);
    assert_int_equal(c.tee, VEIL_TEE_TDX);
    assert_int_equal(c.debug, 1);
}

static void test_collateral_less_quotes(void **state)
{
    (void)state;
    static const char *const names[] = {"trustee/tdx_quote_6.dat", "dcap-qvl/tdx-quote.hex",
                                        "dcap-qvl/quote-from-tappd.hex", "dcap-qvl/sgx_quote", "dcap-qvl/tdx_quote",
                                        "dcap-qvl/tdx_quote_outdated"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        struct veil_claims c;
        veil_status s = signatures(names[i], i == 5 ? OUTDATED_NOW : PCK_NOW, &c);
        if (s != VEIL_OK)
            fail_msg("%s: %s", names[i], veil_last_error());
        assert_int_equal(c.debug, 0);
        assert_string_equal(c.tcb_status, "");
    }
    struct veil_claims c;
    assert_int_equal(signatures("trustee/tdx_quote_6.dat", PCK_NOW, &c), VEIL_OK);
    static const uint8_t zero[16];
    assert_memory_not_equal(c.config_id, zero, 16);                /* MRCONFIGID set */
    assert_memory_equal(c.report_data + 48, zero, 16);             /* KBS-style padding */
    /* TD 1.5 with a service TD: steps 1-5 pass, then step 8 refuses what claims cannot carry (as dcap-qvl does
     * unless allow_service_td). */
    assert_int_equal(signatures("trustee/tdx_quote_5.dat", PCK_NOW, &c), VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "MRSERVICETD"));
    /* The PCK certificates are valid from 2023 to 2030 or later: 2000 is before every one. */
    assert_int_equal(signatures("trustee/tdx_quote_5.dat", UINT64_C(946684800), &c), VEIL_ERR_EXPIRED);
}

/* Every single-byte change anywhere in the quote (header, body, signature data, padding) is rejected. */
static void mutate_all(const char *quote, const char *collateral, uint64_t now)
{
    struct vec q = load(quote);
    struct veil_dcap_collateral col;
    struct veil_claims c;
    collateral_load(collateral, &col);
    assert_int_equal(veil_dcap_verify_collateral(q.data, q.size, &col, now, &c).status, VEIL_OK);
    for (size_t i = 0; i < q.size; i++) {
        uint8_t flip = (uint8_t)(1u << (i % 8)); /* every bit position, across neighbouring bytes */
        q.data[i] ^= flip;
        veil_status s = veil_dcap_verify_collateral(q.data, q.size, &col, now, &c).status;
        q.data[i] ^= flip;
        if (s == VEIL_OK)
            fail_msg("%s: changing byte %zu (^0x%02x) was accepted", quote, i, flip);
        assert_int_equal(c.tee, 0);
    }
    size_t end = q.size; /* truncation: anything shorter than the quote without its zero padding */
    while (end > 0 && q.data[end - 1] == 0)
        end--;
    for (size_t n = 0; n < end; n += 7)
        assert_int_not_equal(veil_dcap_verify_collateral(q.data, n, &col, now, &c).status, VEIL_OK);
    veil_dcap_collateral_cleanup(&col);
    free(q.data);
}

static void test_mutations_sgx(void **state)
{
    (void)state;
    mutate_all("dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", SGX_NOW);
}

static void test_mutations_tdx(void **state)
{
    (void)state;
    mutate_all("dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW);
}

/* ---- Bad collateral ------------------------------------------------------------------------------------- */

static veil_status verify_col(const char *quote, struct veil_dcap_collateral *col, uint64_t now)
{
    struct vec q = load(quote);
    struct veil_claims c;
    veil_status s = veil_dcap_verify_collateral(q.data, q.size, col, now, &c).status;
    free(q.data);
    return s;
}

/* Replaces the first occurrence of from by to (same length) in a signed JSON string and re-parses it. */
static void tamper_json(char *json, size_t size, const char *from, const char *to)
{
    char *p = strstr(json, from);
    assert_non_null(p);
    assert_int_equal(strlen(from), strlen(to));
    memcpy(p, to, strlen(to));
    (void)size;
}

static void test_tampered_tcb_info(void **state)
{
    (void)state;
    struct veil_dcap_collateral col;
    collateral_load("dcap-qvl/sgx_quote_collateral.json", &col);
    /* Still valid JSON, still parses: only the signature notices. */
    tamper_json(col.tcb_info_json, col.tcb_info_json_size, "\"tcbEvaluationDataNumber\":1", "\"tcbEvaluationDataNumber\":2");
    assert_int_equal(verify_col("dcap-qvl/sgx_quote", &col, SGX_NOW), VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "TCB info signature"));
    veil_dcap_collateral_cleanup(&col);

    collateral_load("dcap-qvl/sgx_quote_collateral.json", &col);
    tamper_json(col.qe_identity_json, col.qe_identity_json_size, "\"isvprodid\":1", "\"isvprodid\":2");
    assert_int_equal(verify_col("dcap-qvl/sgx_quote", &col, SGX_NOW), VEIL_ERR_VERIFY);
    veil_dcap_collateral_cleanup(&col);
}

static void test_wrong_signatures(void **state)
{
    (void)state;
    struct veil_dcap_collateral col;
    for (size_t i = 0; i < VEIL_DCAP_SIG_SIZE; i += 9) {
        collateral_load("dcap-qvl/tdx_quote_collateral.json", &col);
        col.tcb_info_sig[i] ^= 1;
        assert_int_equal(verify_col("dcap-qvl/tdx_quote", &col, TDX_NOW), VEIL_ERR_VERIFY);
        col.tcb_info_sig[i] ^= 1;
        col.qe_identity_sig[i] ^= 1;
        assert_int_equal(verify_col("dcap-qvl/tdx_quote", &col, TDX_NOW), VEIL_ERR_VERIFY);
        veil_dcap_collateral_cleanup(&col);
    }
    /* A CRL whose signature is broken. */
    collateral_load("dcap-qvl/tdx_quote_collateral.json", &col);
    col.pck_crl[col.pck_crl_size - 5] ^= 1;
    assert_int_equal(verify_col("dcap-qvl/tdx_quote", &col, TDX_NOW), VEIL_ERR_VERIFY);
    veil_dcap_collateral_cleanup(&col);
    collateral_load("dcap-qvl/tdx_quote_collateral.json", &col);
    col.root_ca_crl[col.root_ca_crl_size - 5] ^= 1;
    assert_int_equal(verify_col("dcap-qvl/tdx_quote", &col, TDX_NOW), VEIL_ERR_VERIFY);
    veil_dcap_collateral_cleanup(&col);
}

static void replace_chain(char **chain, const char *pem, size_t size)
{
    free(*chain);
    *chain = calloc(1, size + 1);
    assert_non_null(*chain);
    memcpy(*chain, pem, size);
}

/* Low 7: the TCB info and QE identity signer must be Intel's "Intel SGX TCB Signing" certificate, issued by the
 * root itself; another certificate that chains to the Intel root (the PCK Processor CA, a PCK leaf) is refused
 * before its signature is even looked at. */
static void test_collateral_signer_pinned(void **state)
{
    (void)state;
    struct veil_dcap_collateral col;
    struct vec q = load("dcap-qvl/sgx_quote");
    struct veil_dcap_quote parsed;
    assert_true(veil_ok(veil_dcap_quote_parse(q.data, q.size, &parsed)));
    for (int which = 0; which < 2; which++) {
        /* The PCK CRL issuer chain: "Intel SGX PCK Processor CA" -> root, both valid and covered by the CRLs. */
        collateral_load("dcap-qvl/sgx_quote_collateral.json", &col);
        char **target = which == 0 ? &col.tcb_info_issuer_chain : &col.qe_identity_issuer_chain;
        replace_chain(target, col.pck_crl_issuer_chain, strlen(col.pck_crl_issuer_chain));
        assert_int_equal(verify_col("dcap-qvl/sgx_quote", &col, SGX_NOW), VEIL_ERR_VERIFY);
        if (strstr(veil_last_error(), "was made by \"Intel SGX PCK Processor CA\"") == NULL)
            fail_msg("%d: %s", which, veil_last_error());
        veil_dcap_collateral_cleanup(&col);
        /* The quote's own PCK chain: "Intel SGX PCK Certificate" -> Platform CA -> root. */
        collateral_load("dcap-qvl/sgx_quote_collateral.json", &col);
        target = which == 0 ? &col.tcb_info_issuer_chain : &col.qe_identity_issuer_chain;
        replace_chain(target, (const char *)parsed.cert_data, parsed.cert_size);
        assert_int_equal(verify_col("dcap-qvl/sgx_quote", &col, SGX_NOW), VEIL_ERR_VERIFY);
        if (strstr(veil_last_error(), "was made by \"Intel SGX PCK Certificate\"") == NULL)
            fail_msg("%d: %s", which, veil_last_error());
        veil_dcap_collateral_cleanup(&col);
    }
    free(q.data);
    /* The genuine signer passes the check on its own. */
    collateral_load("dcap-qvl/tdx_quote_collateral.json", &col);
    struct veil_dcap_x509 *leaf = NULL;
    assert_true(veil_ok(veil_dcap_leaf_read(col.tcb_info_issuer_chain, strlen(col.tcb_info_issuer_chain), &leaf)));
    assert_true(veil_ok(veil_dcap_tcb_signer_check(leaf, "TCB info")));
    veil_dcap_x509_free(leaf);
    veil_dcap_collateral_cleanup(&col);
}

/* The right CN is not enough: a self-made "Intel SGX TCB Signing" certificate is not issued by the pinned root. */
static void test_collateral_signer_cn_alone(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    assert_non_null(key);
    assert_non_null(cert);
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)VEIL_DCAP_TCB_SIGNING_CN, -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Intel Corporation", -1, -1, 0);
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_set_subject_name(cert, name);
    X509_set_issuer_name(cert, name);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, cert);
    PEM_write_bio_X509(b, cert); /* a "chain" of two for the reader */
    char *pem = NULL;
    long n = BIO_get_mem_data(b, &pem);
    struct veil_dcap_x509 *leaf = NULL;
    assert_true(veil_ok(veil_dcap_leaf_read(pem, (size_t)n, &leaf)));
    assert_int_equal(veil_dcap_tcb_signer_check(leaf, "TCB info").status, VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "not issued by the Intel SGX Root CA itself"));
    veil_dcap_x509_free(leaf);
    BIO_free(b);
    X509_NAME_free(name);
    X509_free(cert);
    EVP_PKEY_free(key);
}

/* Collateral for another platform or another TEE. */
static void test_foreign_collateral(void **state)
{
    (void)state;
    struct veil_dcap_collateral col;
    collateral_load("dcap-qvl/tdx_quote_collateral.json", &col);
    assert_int_not_equal(verify_col("dcap-qvl/sgx_quote", &col, TDX_NOW), VEIL_OK); /* other CA, other TEE */
    veil_dcap_collateral_cleanup(&col);
    collateral_load("dcap-qvl/tdx_quote_collateral.json", &col);
    col.tcb_info.fmspc[5] ^= 1; /* as if the signed TCB info were for another FMSPC */
    assert_int_equal(verify_col("dcap-qvl/tdx_quote", &col, TDX_NOW), VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "FMSPC"));
    veil_dcap_collateral_cleanup(&col);
}

static void test_revoked_and_no_level(void **state)
{
    (void)state;
    struct veil_dcap_collateral col;
    collateral_load("dcap-qvl/sgx_quote_collateral.json", &col);
    for (size_t i = 0; i < col.tcb_info.level_count; i++)
        col.tcb_info.levels[i].status.status = VEIL_DCAP_REVOKED;
    assert_int_equal(verify_col("dcap-qvl/sgx_quote", &col, SGX_NOW), VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "Revoked"));
    for (size_t i = 0; i < col.tcb_info.level_count; i++)
        col.tcb_info.levels[i].pcesvn = UINT16_MAX;
    assert_int_equal(verify_col("dcap-qvl/sgx_quote", &col, SGX_NOW), VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "no matching TCB level"));
    veil_dcap_collateral_cleanup(&col);
}

static veil_status parse_collateral_text(const char *text)
{
    struct veil_dcap_collateral col;
    veil_dcap_collateral_init(&col);
    veil_status s = veil_dcap_collateral_parse((const uint8_t *)text, strlen(text), &col).status;
    veil_dcap_collateral_cleanup(&col);
    return s;
}

static void test_malformed_collateral(void **state)
{
    (void)state;
    assert_int_equal(parse_collateral_text("not json"), VEIL_ERR_EVIDENCE);
    assert_int_equal(parse_collateral_text("{}"), VEIL_ERR_EVIDENCE);
    assert_int_equal(parse_collateral_text("[1]"), VEIL_ERR_EVIDENCE);
    struct vec j = load("dcap-qvl/sgx_quote_collateral.json");
    char *text = malloc(j.size + 64);
    /* an unknown member */
    memcpy(text, "{\"x\":1,", 7);
    memcpy(text + 7, j.data + 1, j.size - 1);
    text[j.size + 6] = '\0';
    assert_int_equal(parse_collateral_text(text), VEIL_ERR_EVIDENCE);
    /* truncated anywhere */
    for (size_t n = 0; n < j.size; n += 97) {
        struct veil_dcap_collateral col;
        veil_dcap_collateral_init(&col);
        assert_int_not_equal(veil_dcap_collateral_parse(j.data, n, &col).status, VEIL_OK);
        veil_dcap_collateral_cleanup(&col);
    }
    free(text);
    free(j.data);
    struct veil_claims c;
    struct vec q = load("dcap-qvl/sgx_quote");
    struct veil_verify_options o;
    memset(&o, 0, sizeof o);
    assert_int_equal(veil_dcap_verify(q.data, q.size, &o, &c).status, VEIL_ERR_ARG); /* no collateral at all */
    free(q.data);
}

/* The collateral dump (the cache format) parses back to the same collateral. */
static void test_collateral_roundtrip(void **state)
{
    (void)state;
    struct veil_dcap_collateral a, b;
    char *json = NULL;
    collateral_load("dcap-qvl/tdx_quote_collateral.json", &a);
    assert_int_equal(veil_dcap_collateral_dump(&a, &json).status, VEIL_OK);
    veil_dcap_collateral_init(&b);
    assert_int_equal(veil_dcap_collateral_parse((const uint8_t *)json, strlen(json), &b).status, VEIL_OK);
    assert_int_equal(a.tcb_info_json_size, b.tcb_info_json_size);
    assert_memory_equal(a.tcb_info_json, b.tcb_info_json, a.tcb_info_json_size);
    assert_memory_equal(a.pck_crl, b.pck_crl, a.pck_crl_size);
    assert_int_equal(verify_col("dcap-qvl/tdx_quote", &b, TDX_NOW), VEIL_OK);
    free(json);
    veil_dcap_collateral_cleanup(&a);
    veil_dcap_collateral_cleanup(&b);
}

/* trustee's raw PCS bodies parse as tcbInfo / enclaveIdentity once the envelope is removed. */
static void test_trustee_bodies(void **state)
{
    (void)state;
    struct vec t = load("trustee/tcbInfo.json"), e = load("trustee/enclaveIdentity.json");
    const char *p = strstr((const char *)t.data, "{\"tcbInfo\":");
    assert_non_null(p);
    const char *end = strstr(p, ",\"signature\":");
    assert_non_null(end);
    struct veil_dcap_tcb_info ti;
    assert_int_equal(veil_dcap_tcb_info_parse(p + 11, (size_t)(end - p - 11), &ti).status, VEIL_OK);
    assert_int_equal(ti.tdx, 1);
    veil_dcap_tcb_info_cleanup(&ti);
    p = strstr((const char *)e.data, "{\"enclaveIdentity\":");
    assert_non_null(p);
    end = strstr(p, ",\"signature\":");
    struct veil_dcap_qe_identity qi;
    assert_int_equal(veil_dcap_qe_identity_parse(p + 19, (size_t)(end - p - 19), &qi).status, VEIL_OK);
    assert_int_equal(qi.td_qe, 1);
    veil_dcap_qe_identity_cleanup(&qi);
    free(t.data);
    free(e.data);
}

static void test_quote_parse_errors(void **state)
{
    (void)state;
    struct vec q = load("dcap-qvl/tdx_quote");
    struct veil_dcap_quote p;
    assert_int_equal(veil_dcap_quote_parse(q.data, q.size, &p).status, VEIL_OK);
    assert_int_equal(p.signed_size, 632);
    q.data[0] = 6; /* version */
    assert_int_equal(veil_dcap_quote_parse(q.data, q.size, &p).status, VEIL_ERR_UNSUPPORTED);
    q.data[0] = 4;
    q.data[2] = 3; /* P-384 attestation key */
    assert_int_equal(veil_dcap_quote_parse(q.data, q.size, &p).status, VEIL_ERR_UNSUPPORTED);
    q.data[2] = 2;
    q.data[4] = 0; /* v4 claiming SGX */
    assert_int_equal(veil_dcap_quote_parse(q.data, q.size, &p).status, VEIL_ERR_UNSUPPORTED);
    q.data[4] = 0x81;
    q.data[q.size - 1] = 1; /* non-zero padding */
    assert_int_equal(veil_dcap_quote_parse(q.data, q.size, &p).status, VEIL_ERR_EVIDENCE);
    q.data[q.size - 1] = 0;
    q.data[632] = 0xff; /* signature data length past the end */
    q.data[633] = 0xff;
    assert_int_equal(veil_dcap_quote_parse(q.data, q.size, &p).status, VEIL_ERR_EVIDENCE);
    for (size_t n = 0; n < 700; n++)
        assert_int_not_equal(veil_dcap_quote_parse(q.data, n, &p).status, VEIL_OK);
    free(q.data);
    struct vec o = load("dcap-qvl/tdx_quote_outdated");
    assert_int_equal(veil_dcap_quote_parse(o.data, o.size, &p).status, VEIL_OK);
    assert_int_equal(p.body_type, VEIL_DCAP_BODY_TD15);
    assert_int_equal(p.signed_size, 702);
    o.data[48] = 1; /* v5 body type SGX */
    assert_int_equal(veil_dcap_quote_parse(o.data, o.size, &p).status, VEIL_ERR_UNSUPPORTED);
    o.data[48] = 3;
    o.data[50] ^= 1; /* body size that does not match the type */
    assert_int_equal(veil_dcap_quote_parse(o.data, o.size, &p).status, VEIL_ERR_EVIDENCE);
    free(o.data);
}

static void test_time_parse(void **state)
{
    (void)state;
    uint64_t t = 0;
    assert_int_equal(veil_dcap_parse_time("2025-06-19T10:56:11Z", &t).status, VEIL_OK);
    assert_int_equal(t, SGX_FIRST);
    assert_int_equal(veil_dcap_parse_time("1970-01-01T00:00:00Z", &t).status, VEIL_OK);
    assert_int_equal(t, 0);
    assert_int_equal(veil_dcap_parse_time("2024-02-29T23:59:59Z", &t).status, VEIL_OK);
    assert_int_equal(t, UINT64_C(1709251199));
    static const char *const bad[] = {"2023-02-29T00:00:00Z", "2025-06-19T10:56:11", "2025-06-19T10:56:11+00:00",
                                      "2025-13-01T00:00:00Z", "2025-06-19T24:00:00Z", "2025-06-19 10:56:11Z",
                                      "2025-06-19T10:56:1xZ", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(veil_dcap_parse_time(bad[i], &t).status, VEIL_ERR_EVIDENCE);
}

static void test_status_merge(void **state)
{
    (void)state;
    struct veil_dcap_status a = {VEIL_DCAP_SW_HARDENING_NEEDED, {"INTEL-SA-1"}, 1};
    struct veil_dcap_status b = {VEIL_DCAP_OUT_OF_DATE, {"INTEL-SA-2", "INTEL-SA-1"}, 2};
    assert_int_equal(veil_dcap_status_merge(&a, &b).status, VEIL_OK);
    assert_int_equal(a.status, VEIL_DCAP_OUT_OF_DATE);
    assert_int_equal(a.advisory_count, 2);
    assert_string_equal(a.advisories[1], "INTEL-SA-2");
    assert_string_equal(veil_dcap_tcb_status_name(VEIL_DCAP_CONFIGURATION_AND_SW_HARDENING_NEEDED),
                        "ConfigurationAndSWHardeningNeeded");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgx_sample),
        cmocka_unit_test(test_tdx_sample),
        cmocka_unit_test(test_tdx_outdated),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_debug_quotes),
        cmocka_unit_test(test_collateral_less_quotes),
        cmocka_unit_test(test_mutations_sgx),
        cmocka_unit_test(test_mutations_tdx),
        cmocka_unit_test(test_tampered_tcb_info),
        cmocka_unit_test(test_wrong_signatures),
        cmocka_unit_test(test_foreign_collateral),
        cmocka_unit_test(test_revoked_and_no_level),
        cmocka_unit_test(test_malformed_collateral),
        cmocka_unit_test(test_collateral_roundtrip),
        cmocka_unit_test(test_trustee_bodies),
        cmocka_unit_test(test_quote_parse_errors),
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_status_merge),
        cmocka_unit_test(test_collateral_signer_pinned),
        cmocka_unit_test(test_collateral_signer_cn_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
