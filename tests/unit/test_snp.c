/* SPDX-License-Identifier: Apache-2.0 */
/* lib/attest/snp_*.c: the SEV-SNP verifier against real reports (tests/vectors/attest/snp, from trustee), with an
 * expected status for every documented failure: damaged reports (every byte), foreign certificates, expiry. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "attest/snp.h"
#include "attest/verifiers.h"
#include "core/limits.h"
#include "testutil.h"

/* Inside every certificate's validity window: [2025-05-27T17:57:03Z, 2025-12-10T22:14:21Z]. */
#define NOW_VALID UINT64_C(1756684800)     /* 2025-09-01T00:00:00Z */
#define NOW_VLEK_EXPIRED UINT64_C(1765411200) /* 2025-12-11T00:00:00Z */
#define NOW_GENOA_EARLY UINT64_C(1704067200)  /* 2024-01-01T00:00:00Z, before the Genoa VCEK */

struct vec {
    uint8_t *data;
    size_t size;
};

static struct vec load(const char *name)
{
    const char *root = getenv("VEIL_TEST_DATA");
    assert_non_null(root);
    char path[4096];
    snprintf(path, sizeof path, "%s/vectors/attest/snp/%s", root, name);
    struct vec v;
    v.data = tu_read(path, &v.size);
    return v;
}

static veil_status verify_at(const struct vec *report, const struct vec *cert, uint64_t now,
                             struct veil_claims *claims)
{
    struct veil_verify_options opt;
    memset(&opt, 0, sizeof opt);
    opt.now = now;
    return veil_snp_verify(report->data, report->size, cert ? cert->data : NULL, cert ? cert->size : 0, &opt, claims)
        .status;
}

static veil_status verify(const struct vec *report, const struct vec *cert)
{
    struct veil_claims claims;
    veil_status s = verify_at(report, cert, NOW_VALID, &claims);
    if (s != VEIL_OK)
        assert_int_equal(claims.tee, 0); /* zeroed on failure */
    return s;
}

static void expect_ok(const char *report_name, const char *cert_name, struct veil_claims *claims)
{
    struct vec r = load(report_name), c = load(cert_name);
    veil_status s = verify_at(&r, &c, NOW_VALID, claims);
    if (s != VEIL_OK)
        fail_msg("%s + %s: %s (%s)", report_name, cert_name, veil_status_str(s), veil_last_error());
    free(r.data);
    free(c.data);
}

static void expect_status(const char *report_name, const char *cert_name, uint64_t now, veil_status want)
{
    struct vec r = load(report_name), c = load(cert_name);
    struct veil_claims claims;
    veil_status s = verify_at(&r, &c, now, &claims);
    if (s != want)
        fail_msg("%s + %s: got %s (%s), want %s", report_name, cert_name, veil_status_str(s), veil_last_error(),
                 veil_status_str(want));
    assert_int_equal(claims.tee, 0);
    free(r.data);
    free(c.data);
}

static void test_milan_vcek_v2_valid(void **state)
{
    (void)state;
    struct veil_claims c;
    expect_ok("test-report.bin", "test-vcek.der", &c);
    struct vec r = load("test-report.bin");
    assert_int_equal(c.tee, VEIL_TEE_SNP);
    assert_memory_equal(c.report_data, r.data + 0x50, 64);
    assert_int_equal(c.measurement_size, 48);
    assert_memory_equal(c.measurement, r.data + 0x90, 48);
    assert_int_equal(c.signer_size, 48); /* ID_KEY_DIGEST is set in this report */
    assert_memory_equal(c.signer, r.data + 0xE0, 48);
    assert_int_equal(c.config_id_size, 32);
    assert_memory_equal(c.config_id, r.data + 0xC0, 32);
    assert_int_equal(c.svn, 4);
    assert_int_equal(c.debug, 0); /* POLICY 0x3001f */
    assert_int_equal(c.vmpl, 0);
    /* High 2: the verifier no longer calls every report "UpToDate"; it reports the TCBs for min_tcb to judge.
     * REPORTED_TCB = COMMITTED_TCB = 03 00 00 00 00 00 08 73 (Milan: BL, TEE, -, -, -, -, SNP, UCODE). */
    assert_string_equal(c.tcb_status, "NotJudged");
    assert_memory_equal(r.data + 0x180, "\x03\x00\x00\x00\x00\x00\x08\x73", 8);
    const struct veil_snp_tcb want = {.bootloader = 3, .tee = 0, .snp = 8, .microcode = 0x73, .fmc = 0};
    assert_memory_equal(&c.reported_tcb, &want, sizeof want);
    assert_memory_equal(&c.committed_tcb, &want, sizeof want);
    assert_int_equal(c.advisory_count, 0);
    free(r.data);
}

static void test_milan_vlek_v3_valid_vmpl1(void **state)
{
    (void)state;
    struct veil_claims c;
    expect_ok("test-vlek-report.bin", "test-vlek.der", &c);
    assert_int_equal(c.tee, VEIL_TEE_SNP);
    assert_int_equal(c.vmpl, 1); /* reported, not refused: the policy judges VMPL */
    assert_int_equal(c.signer_size, 0); /* no ID key */
    assert_string_equal(c.tcb_status, "NotJudged");
    /* REPORTED_TCB 04 .. 18 d9, COMMITTED_TCB 04 .. 18 db: the host reports an older TCB than it committed. */
    assert_int_equal(c.reported_tcb.bootloader, 4);
    assert_int_equal(c.reported_tcb.snp, 0x18);
    assert_int_equal(c.reported_tcb.microcode, 0xd9);
    assert_int_equal(c.committed_tcb.microcode, 0xdb);
}

static void test_genoa_vcek_v3_valid(void **state)
{
    (void)state;
    struct veil_claims c;
    expect_ok("report-from-evidence.bin", "vcek-from-evidence.der", &c);
    assert_int_equal(c.vmpl, 0);
    assert_int_equal(c.debug, 0);
    assert_string_equal(c.tcb_status, "NotJudged");
    const struct veil_snp_tcb want = {.bootloader = 0x0a, .tee = 0, .snp = 0x17, .microcode = 0x19, .fmc = 0};
    assert_memory_equal(&c.reported_tcb, &want, sizeof want);
    assert_memory_equal(&c.committed_tcb, &want, sizeof want);
}

static veil_status judge(const struct veil_claims *c, const char *min_tcb)
{
    char hex[97], json[512];
    for (int k = 0; k < 48; k++)
        snprintf(hex + 2 * k, 3, "%02x", c->measurement[k]);
    snprintf(json, sizeof json, "{\"snp\":{\"measurements\":[\"%s\"],\"max_vmpl\":1,\"min_tcb\":%s}}", hex,
             min_tcb);
    veil_policy *p = NULL;
    assert_int_equal(veil_policy_parse(json, strlen(json), &p), VEIL_OK);
    veil_status s = veil_policy_check(p, c, NULL);
    veil_policy_free(p);
    return s;
}

/* High 2 end to end on real reports: min_tcb is judged against REPORTED_TCB and COMMITTED_TCB. */
static void test_min_tcb_real_reports(void **state)
{
    (void)state;
    struct veil_claims c;
    expect_ok("test-report.bin", "test-vcek.der", &c);
    assert_int_equal(judge(&c, "{\"bootloader\":3,\"tee\":0,\"snp\":8,\"microcode\":115}"), VEIL_OK);
    assert_int_equal(judge(&c, "{\"bootloader\":3,\"tee\":0,\"snp\":8,\"microcode\":116}"), VEIL_ERR_POLICY);
    assert_non_null(strstr(veil_last_error(), "REPORTED_TCB microcode 115 is below the minimum 116"));
    assert_int_equal(judge(&c, "{\"bootloader\":3,\"tee\":0,\"snp\":9,\"microcode\":0}"), VEIL_ERR_POLICY);
    assert_int_equal(judge(&c, "{\"bootloader\":0,\"tee\":0,\"snp\":0,\"microcode\":0,\"fmc\":1}"),
                     VEIL_ERR_POLICY); /* a Milan has no FMC: a nonzero fmc minimum refuses it */
    /* The VLEK report's host reports microcode 0xd9 but committed 0xdb: both are judged. */
    expect_ok("test-vlek-report.bin", "test-vlek.der", &c);
    assert_int_equal(judge(&c, "{\"bootloader\":4,\"tee\":0,\"snp\":24,\"microcode\":217}"), VEIL_OK);
    assert_int_equal(judge(&c, "{\"bootloader\":4,\"tee\":0,\"snp\":24,\"microcode\":218}"), VEIL_ERR_POLICY);
    assert_non_null(strstr(veil_last_error(), "REPORTED_TCB microcode 217"));
    c.reported_tcb.microcode = 0xff; /* had REPORTED_TCB been higher, COMMITTED_TCB would still be judged */
    assert_int_equal(judge(&c, "{\"bootloader\":4,\"tee\":0,\"snp\":24,\"microcode\":220}"), VEIL_ERR_POLICY);
    assert_non_null(strstr(veil_last_error(), "COMMITTED_TCB microcode 219"));
}

static void test_invalid_vceks(void **state)
{
    (void)state;
    expect_status("test-report.bin", "test-vcek-invalid-legacy.der", NOW_VALID, VEIL_ERR_VERIFY);
    expect_status("test-report.bin", "test-vcek-invalid-new.der", NOW_VALID, VEIL_ERR_VERIFY);
}

static void test_validity_window(void **state)
{
    (void)state;
    expect_status("test-vlek-report.bin", "test-vlek.der", NOW_VLEK_EXPIRED, VEIL_ERR_EXPIRED);
    expect_status("report-from-evidence.bin", "vcek-from-evidence.der", NOW_GENOA_EARLY, VEIL_ERR_EXPIRED);
    expect_status("test-report.bin", "test-vcek.der", UINT64_C(1577836800), VEIL_ERR_EXPIRED); /* 2020 */
    expect_status("test-report.bin", "test-vcek.der", UINT64_C(4102444800), VEIL_ERR_EXPIRED); /* 2100 */
    expect_status("test-report.bin", "test-vcek.der", 0, VEIL_ERR_ARG); /* now must be given */
}

/* A certificate that is valid, but not this report's: another chip, another product line, another key type. */
static void test_foreign_certificates(void **state)
{
    (void)state;
    expect_status("test-report.bin", "vcek-from-evidence.der", NOW_VALID, VEIL_ERR_VERIFY); /* other chip */
    expect_status("report-from-evidence.bin", "test-vcek.der", NOW_VALID, VEIL_ERR_VERIFY); /* Genoa CPU, Milan */
    expect_status("test-vlek-report.bin", "test-vcek.der", NOW_VALID, VEIL_ERR_VERIFY);     /* VLEK report */
    expect_status("test-report.bin", "test-vlek.der", NOW_VALID, VEIL_ERR_VERIFY);          /* VCEK report */
}

/* Every single-byte change anywhere in the report (signed region, signature, reserved tail) is refused. */
static void mutate_all(const char *report_name, const char *cert_name)
{
    struct vec r = load(report_name), c = load(cert_name);
    static const uint8_t masks[] = {0x01, 0x80}; /* the lowest and the highest bit of every byte */
    for (size_t i = 0; i < r.size; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            r.data[i] ^= masks[m];
            veil_status s = verify(&r, &c);
            if (s == VEIL_OK)
                fail_msg("%s: byte 0x%zx ^ 0x%02x accepted", report_name, i, masks[m]);
            r.data[i] ^= masks[m];
        }
    }
    assert_int_equal(verify(&r, &c), VEIL_OK);
    free(r.data);
    free(c.data);
}

static void test_every_byte_mutation_rejected(void **state)
{
    (void)state;
    mutate_all("test-report.bin", "test-vcek.der");
    mutate_all("test-vlek-report.bin", "test-vlek.der");
}

static void test_sizes(void **state)
{
    (void)state;
    struct vec r = load("test-report.bin"), c = load("test-vcek.der");
    static const size_t sizes[] = {0, 1, 0x29F, 0x2A0, VEIL_SNP_REPORT_SIZE - 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct vec t = {r.data, sizes[i]};
        assert_int_equal(verify(&t, &c), VEIL_ERR_EVIDENCE);
    }
    uint8_t *big = calloc(1, VEIL_SNP_REPORT_SIZE + 1);
    assert_non_null(big);
    memcpy(big, r.data, r.size);
    struct vec t = {big, VEIL_SNP_REPORT_SIZE + 1};
    assert_int_equal(verify(&t, &c), VEIL_ERR_EVIDENCE);
    free(big);
    free(r.data);
    free(c.data);
}

static veil_status parse_with(const struct vec *r, size_t off, uint8_t value)
{
    uint8_t copy[VEIL_SNP_REPORT_SIZE];
    memcpy(copy, r->data, sizeof copy);
    copy[off] = value;
    struct veil_snp_report out;
    return veil_snp_report_parse(copy, sizeof copy, &out).status;
}

static void test_header_fields(void **state)
{
    (void)state;
    struct vec r = load("test-report.bin");
    assert_int_equal(parse_with(&r, 0x34, 2), VEIL_ERR_UNSUPPORTED); /* SIGNATURE_ALGO */
    assert_int_equal(parse_with(&r, 0x34, 0), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(parse_with(&r, 0x00, 1), VEIL_ERR_VERSION);
    assert_int_equal(parse_with(&r, 0x00, 4), VEIL_ERR_VERSION);
    assert_int_equal(parse_with(&r, 0x00, 6), VEIL_ERR_VERSION);
    assert_int_equal(parse_with(&r, 0x48, 7 << 2), VEIL_ERR_UNSUPPORTED); /* SIGNING_KEY none */
    assert_int_equal(parse_with(&r, 0x48, 2 << 2), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(parse_with(&r, 0x4C, 1), VEIL_ERR_EVIDENCE);   /* reserved */
    assert_int_equal(parse_with(&r, 0x188, 0x19), VEIL_ERR_EVIDENCE); /* CPUID in a v2 report */
    assert_int_equal(parse_with(&r, 0x1F8, 1), VEIL_ERR_EVIDENCE);  /* LAUNCH_MIT_VECTOR before v5 */
    assert_int_equal(parse_with(&r, 0x2A0 + 48, 1), VEIL_ERR_EVIDENCE); /* R longer than 48 bytes */
    assert_int_equal(parse_with(&r, 0x49F, 1), VEIL_ERR_EVIDENCE);  /* signature reserved */
    /* The unmodified report parses field by field. */
    struct veil_snp_report p;
    assert_true(veil_ok(veil_snp_report_parse(r.data, r.size, &p)));
    assert_int_equal(p.version, 2);
    assert_int_equal(p.guest_svn, 4);
    assert_int_equal(p.policy, 0x3001f);
    assert_int_equal(p.signing_key, VEIL_SNP_KEY_VCEK);
    assert_int_equal(p.reported_tcb, UINT64_C(0x7308000000000003));
    assert_int_equal(p.current_major, 1);
    assert_int_equal(p.current_minor, 0x34);
    assert_int_equal(p.current_build, 4);
    assert_int_equal(veil_snp_product_from_cpuid(&p), VEIL_SNP_PRODUCT_UNKNOWN);
    free(r.data);
}

/* A version 5 report: the mitigation vectors are fields, not reserved. (The signature no longer verifies.) */
static void test_version_5_layout(void **state)
{
    (void)state;
    struct vec r = load("report-from-evidence.bin");
    r.data[0] = 5;
    r.data[0x1F8] = 0x11;
    r.data[0x200] = 0x22;
    struct veil_snp_report p;
    assert_true(veil_ok(veil_snp_report_parse(r.data, r.size, &p)));
    assert_int_equal(p.launch_mit_vector, 0x11);
    assert_int_equal(p.current_mit_vector, 0x22);
    assert_int_equal(p.cpuid_fam_id, 0x19);
    assert_int_equal(p.cpuid_mod_id, 0xA0);
    assert_int_equal(p.cpuid_step, 2);
    assert_int_equal(veil_snp_product_from_cpuid(&p), VEIL_SNP_PRODUCT_GENOA);
    free(r.data);
}

static void test_tcb_decode(void **state)
{
    (void)state;
    uint8_t spl[VEIL_SNP_SPL_COUNT];
    veil_snp_tcb_decode(UINT64_C(0x7308000000000003), VEIL_SNP_PRODUCT_MILAN, spl);
    assert_int_equal(spl[VEIL_SNP_SPL_BOOTLOADER], 3);
    assert_int_equal(spl[VEIL_SNP_SPL_TEE], 0);
    assert_int_equal(spl[VEIL_SNP_SPL_SNP], 8);
    assert_int_equal(spl[VEIL_SNP_SPL_MICROCODE], 0x73);
    assert_int_equal(spl[VEIL_SNP_SPL_FMC], 0);
    veil_snp_tcb_decode(UINT64_C(0x4800000000040301), VEIL_SNP_PRODUCT_TURIN, spl);
    assert_int_equal(spl[VEIL_SNP_SPL_FMC], 1);
    assert_int_equal(spl[VEIL_SNP_SPL_BOOTLOADER], 3);
    assert_int_equal(spl[VEIL_SNP_SPL_TEE], 4);
    assert_int_equal(spl[VEIL_SNP_SPL_SNP], 0);
    assert_int_equal(spl[VEIL_SNP_SPL_MICROCODE], 0x48);
}

static void load_parsed(const char *report_name, const char *cert_name, struct veil_snp_report *r,
                        struct veil_snp_cert_ext *ext)
{
    struct vec rv = load(report_name), cv = load(cert_name);
    X509 *cert = NULL;
    assert_true(veil_ok(veil_snp_report_parse(rv.data, rv.size, r)));
    assert_true(veil_ok(veil_snp_cert_parse(cv.data, cv.size, &cert)));
    assert_true(veil_ok(veil_snp_cert_ext_read(cert, ext)));
    X509_free(cert);
    free(rv.data);
    free(cv.data);
}

/* Step 5 on its own: the report is parsed, then its decoded fields are changed (a changed byte would already
 * fail the signature). */
static void test_tcb_and_chip_binding(void **state)
{
    (void)state;
    struct veil_snp_report r;
    struct veil_snp_cert_ext ext;
    load_parsed("test-report.bin", "test-vcek.der", &r, &ext);
    assert_int_equal(ext.hwid_size, 64);
    assert_true(veil_ok(veil_snp_tcb_check(&r, VEIL_SNP_PRODUCT_MILAN, &ext)));
    struct veil_snp_report t = r;
    t.chip_id[63] ^= 1; /* a VCEK from another chip */
    assert_int_equal(veil_snp_tcb_check(&t, VEIL_SNP_PRODUCT_MILAN, &ext).status, VEIL_ERR_VERIFY);
    t = r;
    t.mask_chip_key = 1;
    assert_int_equal(veil_snp_tcb_check(&t, VEIL_SNP_PRODUCT_MILAN, &ext).status, VEIL_ERR_VERIFY);
    for (unsigned byte = 0; byte < 8; byte++) {
        t = r;
        t.reported_tcb ^= UINT64_C(1) << (8 * byte);
        veil_status want = (byte >= 2 && byte <= 5) ? VEIL_OK : VEIL_ERR_VERIFY; /* bytes 2..5 are reserved */
        assert_int_equal(veil_snp_tcb_check(&t, VEIL_SNP_PRODUCT_MILAN, &ext).status, want);
    }
    struct veil_snp_cert_ext e = ext;
    e.has_spl[VEIL_SNP_SPL_MICROCODE] = 0;
    assert_int_equal(veil_snp_tcb_check(&r, VEIL_SNP_PRODUCT_MILAN, &e).status, VEIL_ERR_VERIFY);
    e = ext;
    e.hwid_size = 0;
    assert_int_equal(veil_snp_tcb_check(&r, VEIL_SNP_PRODUCT_MILAN, &e).status, VEIL_ERR_VERIFY);
    e = ext;
    e.hwid_size = 8; /* a Turin-style hwID on a Milan VCEK */
    assert_int_equal(veil_snp_tcb_check(&r, VEIL_SNP_PRODUCT_MILAN, &e).status, VEIL_ERR_VERIFY);
    /* Turin needs fmcSPL, which a Milan certificate does not have. */
    assert_int_equal(veil_snp_tcb_check(&r, VEIL_SNP_PRODUCT_TURIN, &ext).status, VEIL_ERR_VERIFY);

    /* A VLEK has no hwID and is not bound to CHIP_ID (the report's is zero). */
    load_parsed("test-vlek-report.bin", "test-vlek.der", &r, &ext);
    assert_int_equal(ext.hwid_size, 0);
    assert_true(veil_ok(veil_snp_tcb_check(&r, VEIL_SNP_PRODUCT_MILAN, &ext)));
    r.signing_key = VEIL_SNP_KEY_VCEK; /* claimed to be a VCEK: the hwID is missing */
    assert_int_equal(veil_snp_tcb_check(&r, VEIL_SNP_PRODUCT_MILAN, &ext).status, VEIL_ERR_VERIFY);
}

static void test_certificate_forms(void **state)
{
    (void)state;
    struct vec r = load("test-report.bin"), c = load("test-vcek.der");
    struct veil_claims claims;
    struct veil_verify_options opt;
    memset(&opt, 0, sizeof opt);
    opt.now = NOW_VALID;

    /* From options->snp_cert_path, DER and PEM. */
    char *dir = tu_tmpdir();
    const char *der_path = tu_path(0, dir, "vcek.der");
    tu_write(der_path, c.data, c.size);
    opt.snp_cert_path = der_path;
    assert_int_equal(veil_snp_verify(r.data, r.size, NULL, 0, &opt, &claims).status, VEIL_OK);
    X509 *x = NULL;
    assert_true(veil_ok(veil_snp_cert_parse(c.data, c.size, &x)));
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    char *pem = NULL;
    long pem_size = BIO_get_mem_data(bio, &pem);
    const char *pem_path = tu_path(1, dir, "vcek.pem");
    tu_write(pem_path, pem, (size_t)pem_size);
    opt.snp_cert_path = pem_path;
    assert_int_equal(veil_snp_verify(r.data, r.size, NULL, 0, &opt, &claims).status, VEIL_OK);
    assert_int_equal(veil_snp_verify(r.data, r.size, (const uint8_t *)pem, (size_t)pem_size, &opt, &claims).status,
                     VEIL_OK);
    BIO_free(bio);
    X509_free(x);

    /* Missing, empty, oversized, garbage, trailing bytes. */
    opt.snp_cert_path = tu_path(2, dir, "missing.der");
    assert_int_not_equal(veil_snp_verify(r.data, r.size, NULL, 0, &opt, &claims).status, VEIL_OK);
    opt.snp_cert_path = NULL;
    assert_int_equal(veil_snp_verify(r.data, r.size, NULL, 0, &opt, &claims).status, VEIL_ERR_ARG);
    uint8_t *big = calloc(1, VEIL_SNP_CERT_MAX_SIZE + 2);
    assert_non_null(big);
    memcpy(big, c.data, c.size);
    assert_int_equal(veil_snp_verify(r.data, r.size, big, c.size + 1, &opt, &claims).status, VEIL_ERR_EVIDENCE);
    assert_int_equal(veil_snp_verify(r.data, r.size, big, VEIL_SNP_CERT_MAX_SIZE + 1, &opt, &claims).status,
                     VEIL_ERR_LIMIT);
    assert_int_equal(veil_snp_verify(r.data, r.size, c.data, c.size - 1, &opt, &claims).status, VEIL_ERR_EVIDENCE);
    assert_int_equal(veil_snp_verify(r.data, r.size, r.data, 16, &opt, &claims).status, VEIL_ERR_EVIDENCE);
    assert_int_equal(veil_snp_verify(r.data, r.size, (const uint8_t *)"-----BEGIN x", 12, &opt, &claims).status,
                     VEIL_ERR_EVIDENCE);
    free(big);
    tu_rmdir(dir);
    free(dir);
    free(r.data);
    free(c.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_milan_vcek_v2_valid),
        cmocka_unit_test(test_milan_vlek_v3_valid_vmpl1),
        cmocka_unit_test(test_genoa_vcek_v3_valid),
        cmocka_unit_test(test_min_tcb_real_reports),
        cmocka_unit_test(test_invalid_vceks),
        cmocka_unit_test(test_validity_window),
        cmocka_unit_test(test_foreign_certificates),
        cmocka_unit_test(test_every_byte_mutation_rejected),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_version_5_layout),
        cmocka_unit_test(test_tcb_decode),
        cmocka_unit_test(test_tcb_and_chip_binding),
        cmocka_unit_test(test_certificate_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
