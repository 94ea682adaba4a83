/* SPDX-License-Identifier: Apache-2.0 */
/* lib/attest/policy.c: strict parsing, every check with the message that names it, default deny. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/attest.h"

#define M32 "1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d"
#define S32 "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
#define M48 "abababababababababababababababababababababababababababababababababababababababababababababababab"

static veil_policy *parse(const char *json)
{
    veil_policy *p = NULL;
    veil_status st = veil_policy_parse(json, strlen(json), &p);
    if (st != VEIL_OK)
        fail_msg("policy refused: %s", veil_last_error());
    return p;
}

static void sgx_claims(struct veil_claims *c)
{
    *c = (struct veil_claims){.tee = VEIL_TEE_SGX, .measurement_size = 32, .signer_size = 32, .product_id = 7,
                              .svn = 3};
    memset(c->measurement, 0, sizeof c->measurement);
    for (size_t i = 0; i < 32; i += 4) {
        c->measurement[i] = 0x1a, c->measurement[i + 1] = 0x2b, c->measurement[i + 2] = 0x3c;
        c->measurement[i + 3] = 0x4d;
    }
    memset(c->signer, 0x5e, 32);
    memset(c->report_data, 0x11, sizeof c->report_data);
    strcpy(c->tcb_status, "UpToDate");
}

static const char sgx_policy[] = "{\"version\":1,\"sgx\":{\"measurements\":[\"" M32 "\"],\"signers\":[\"" S32
                                 "\"],\"product_id\":7,\"min_svn\":3,\"tcb_statuses\":[\"UpToDate\","
                                 "\"SWHardeningNeeded\"],\"deny_advisories\":[\"INTEL-SA-00334\"]}}";

static void expect_refused(const veil_policy *p, const struct veil_claims *c, const uint8_t *rd, const char *needle)
{
    assert_int_equal(veil_policy_check(p, c, rd), VEIL_ERR_POLICY);
    if (strstr(veil_last_error(), needle) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", needle, veil_last_error());
}

static void test_sgx_every_check(void **state)
{
    (void)state;
    veil_policy *p = parse(sgx_policy);
    struct veil_claims c;
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    memset(rd, 0x11, sizeof rd);
    sgx_claims(&c);
    assert_int_equal(veil_policy_check(p, &c, rd), VEIL_OK);
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.debug = 1;
    expect_refused(p, &c, rd, "debug sgx");
    sgx_claims(&c);
    c.measurement[0] ^= 1;
    expect_refused(p, &c, rd, "measurement 1b2b3c4d");
    expect_refused(p, &c, rd, "is not allowed for sgx");
    sgx_claims(&c);
    c.measurement_size = 0;
    expect_refused(p, &c, rd, "no 32-byte measurement");
    sgx_claims(&c);
    c.signer[31] ^= 1;
    expect_refused(p, &c, rd, "signer 5e5e");
    sgx_claims(&c);
    c.product_id = 8;
    expect_refused(p, &c, rd, "product id 8");
    sgx_claims(&c);
    c.svn = 2;
    expect_refused(p, &c, rd, "svn 2 is below the minimum 3");
    sgx_claims(&c);
    strcpy(c.tcb_status, "OutOfDate");
    expect_refused(p, &c, rd, "TCB status OutOfDate");
    strcpy(c.tcb_status, "SWHardeningNeeded");
    assert_int_equal(veil_policy_check(p, &c, rd), VEIL_OK);
    c.advisory_count = 2;
    strcpy(c.advisories[0], "INTEL-SA-00615");
    strcpy(c.advisories[1], "INTEL-SA-00334");
    expect_refused(p, &c, rd, "advisory INTEL-SA-00334 is denied");
    sgx_claims(&c);
    rd[63] ^= 1;
    expect_refused(p, &c, rd, "report data");
    c.tee = VEIL_TEE_TDX;
    expect_refused(p, &c, NULL, "tee tdx is not allowed");
    c.tee = VEIL_TEE_SIM;
    expect_refused(p, &c, NULL, "allow_sim is false");
    c.tee = VEIL_TEE_SAMPLE;
    expect_refused(p, &c, NULL, "allow_sample is false");
    c.tee = VEIL_TEE_AUTO;
    expect_refused(p, &c, NULL, "tee auto is not allowed");
    c.tee = (veil_tee)77;
    expect_refused(p, &c, NULL, "not allowed");
    veil_policy_free(p);
}

#define R1 "010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101"
#define R2 "020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202"
#define MIN_TCB "\"min_tcb\":{\"bootloader\":3,\"tee\":0,\"snp\":8,\"microcode\":115}"

static void snp_claims(struct veil_claims *c)
{
    *c = (struct veil_claims){.tee = VEIL_TEE_SNP, .measurement_size = 48, .vmpl = 1, .debug = 1,
                              .reported_tcb = {.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115},
                              .committed_tcb = {.bootloader = 3, .tee = 1, .snp = 8, .microcode = 200}};
    memset(c->measurement, 0xab, 48);
    strcpy(c->tcb_status, "NotJudged");
}

static void tdx_claims(struct veil_claims *c)
{
    *c = (struct veil_claims){.tee = VEIL_TEE_TDX, .measurement_size = 48, .rtmr_count = 4, .config_id_size = 48,
                              .mr_owner_size = 48, .mr_owner_config_size = 48};
    memset(c->measurement, 0xab, 48);
    for (int i = 0; i < 4; i++)
        memset(c->rtmr[i], i, 48);
    memset(c->config_id, 0xc0, 48);
    memset(c->mr_owner, 0x0e, 48);
    memset(c->mr_owner_config, 0x0c, 48);
    strcpy(c->tcb_status, "UpToDate");
}

static void test_snp_and_tdx(void **state)
{
    (void)state;
    veil_policy *p = parse("{\"snp\":{\"measurements\":[\"" M48 "\"],\"max_vmpl\":1,\"allow_debug\":true," MIN_TCB "},"
                           "\"tdx\":{\"measurements\":[\"" M48 "\"],\"rtmr1\":[\"" R1 "\"],\"rtmr2\":[\"" R2 "\"]}}");
    struct veil_claims c;
    snp_claims(&c);
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.vmpl = 2;
    expect_refused(p, &c, NULL, "VMPL 2 is above the maximum 1");
    tdx_claims(&c);
    c.debug = 1;
    expect_refused(p, &c, NULL, "debug tdx");
    c.debug = 0;
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.tcb_status[0] = '\0';
    expect_refused(p, &c, NULL, "TCB status (none)");
    veil_policy_free(p);
}

/* High 1: a tdx section must pin the workload (rtmr1) unless it says allow_unpinned_workload; every allow-list
 * (rtmr0..3, mrconfigid, mrowner, mrownerconfig) is judged against the claims. */
static void test_tdx_workload_pins(void **state)
{
    (void)state;
    const char *unpinned[] = {
        "{\"tdx\":{\"measurements\":[\"" M48 "\"]}}",
        "{\"tdx\":{\"measurements\":[\"" M48 "\"],\"rtmr1\":[]}}",
        /* host-chosen (MRCONFIGID, MROWNER*), firmware-config (RTMR0) or guest-extended (RTMR2, RTMR3) values
         * alone do not identify the kernel */
        "{\"tdx\":{\"measurements\":[\"" M48 "\"],\"rtmr0\":[\"" R1 "\"],\"rtmr2\":[\"" R2 "\"],\"rtmr3\":[\"" R2 "\"],"
        "\"mrconfigid\":[\"" M48 "\"],\"mrowner\":[\"" M48 "\"],\"mrownerconfig\":[\"" M48 "\"]}}",
        "{\"tdx\":{\"measurements\":[\"" M48 "\"],\"allow_unpinned_workload\":false}}",
    };
    for (size_t i = 0; i < sizeof unpinned / sizeof unpinned[0]; i++) {
        veil_policy *p = (veil_policy *)1;
        assert_int_equal(veil_policy_parse(unpinned[i], strlen(unpinned[i]), &p), VEIL_ERR_ARG);
        assert_null(p);
        assert_non_null(strstr(veil_last_error(), "pins no workload"));
    }
    struct veil_claims c;
    /* The explicit, dangerous opt-out: MRTD alone. */
    veil_policy *p = parse("{\"tdx\":{\"measurements\":[\"" M48 "\"],\"allow_unpinned_workload\":true}}");
    tdx_claims(&c);
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    veil_policy_free(p);
    /* Every register pinned: each mismatch is named. */
    char hex[7][97];
    for (int i = 0; i < 7; i++) {
        tdx_claims(&c);
        const uint8_t *v = i < 4 ? c.rtmr[i] : i == 4 ? c.config_id : i == 5 ? c.mr_owner : c.mr_owner_config;
        for (int k = 0; k < 48; k++)
            snprintf(hex[i] + 2 * k, 3, "%02x", v[k]);
    }
    char json[2048];
    snprintf(json, sizeof json,
             "{\"tdx\":{\"measurements\":[\"" M48 "\"],\"rtmr0\":[\"%s\"],\"rtmr1\":[\"" R2 "\",\"%s\"],"
             "\"rtmr2\":[\"%s\"],\"rtmr3\":[\"%s\"],\"mrconfigid\":[\"%s\"],\"mrowner\":[\"%s\"],"
             "\"mrownerconfig\":[\"%s\"]}}",
             hex[0], hex[1], hex[2], hex[3], hex[4], hex[5], hex[6]);
    p = parse(json);
    tdx_claims(&c);
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    static const char *const names[] = {"rtmr0 ", "rtmr1 ", "rtmr2 ", "rtmr3 ", "mrconfigid ", "mrowner ",
                                        "mrownerconfig "};
    for (int i = 0; i < 7; i++) {
        tdx_claims(&c);
        uint8_t *v = i < 4 ? c.rtmr[i] : i == 4 ? c.config_id : i == 5 ? c.mr_owner : c.mr_owner_config;
        v[47] ^= 0x80;
        expect_refused(p, &c, NULL, names[i]);
        expect_refused(p, &c, NULL, "is not allowed for tdx");
    }
    /* Claims without the registers (e.g. decoded from an older record) are refused, not waved through. */
    tdx_claims(&c);
    c.rtmr_count = 1;
    expect_refused(p, &c, NULL, "no 48-byte rtmr1");
    tdx_claims(&c);
    c.mr_owner_size = 0;
    expect_refused(p, &c, NULL, "no 48-byte mrowner");
    veil_policy_free(p);
    /* Hex of the wrong size in a pin list. */
    const char *bad = "{\"tdx\":{\"rtmr1\":[\"" M32 "\"]}}";
    assert_int_equal(veil_policy_parse(bad, strlen(bad), &p), VEIL_ERR_ARG);
    bad = "{\"tdx\":{\"rtmr4\":[]}}";
    assert_int_equal(veil_policy_parse(bad, strlen(bad), &p), VEIL_ERR_ARG);
}

/* High 2: an snp section demands min_tcb (or says allow_any_tcb), judged against REPORTED_TCB and COMMITTED_TCB,
 * component by component. */
static void test_snp_min_tcb(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"snp\":{\"measurements\":[\"" M48 "\"]}}",
        "{\"snp\":{\"measurements\":[\"" M48 "\"],\"allow_any_tcb\":false}}",
        "{\"snp\":{\"min_tcb\":{\"bootloader\":3,\"tee\":0,\"snp\":8}}}",
        "{\"snp\":{\"min_tcb\":{\"bootloader\":3,\"tee\":0,\"snp\":8,\"microcode\":256}}}",
        "{\"snp\":{\"min_tcb\":{\"bootloader\":3,\"tee\":0,\"snp\":8,\"microcode\":1,\"ucode\":1}}}",
        "{\"snp\":{\"min_tcb\":[3,0,8,115]}}",
        "{\"snp\":{" MIN_TCB ",\"allow_any_tcb\":true}}",
        "{\"snp\":{" MIN_TCB ",\"tcb_statuses\":[\"UpToDate\"]}}", /* SNP has no vendor TCB status */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        veil_policy *p = (veil_policy *)1;
        veil_status st = veil_policy_parse(bad[i], strlen(bad[i]), &p);
        if (st != VEIL_ERR_ARG)
            fail_msg("snp policy %zu accepted or wrong status %d: %s", i, st, bad[i]);
        assert_null(p);
    }
    veil_policy *p = parse("{\"snp\":{\"measurements\":[\"" M48 "\"],\"max_vmpl\":1,\"allow_debug\":true,"
                           "\"min_tcb\":{\"bootloader\":3,\"tee\":0,\"snp\":8,\"microcode\":115,\"fmc\":0}}}");
    struct veil_claims c;
    snp_claims(&c);
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.reported_tcb.microcode = 114;
    expect_refused(p, &c, NULL, "snp REPORTED_TCB microcode 114 is below the minimum 115");
    snp_claims(&c);
    c.reported_tcb.bootloader = 2;
    expect_refused(p, &c, NULL, "REPORTED_TCB bootloader 2");
    snp_claims(&c);
    c.reported_tcb.snp = 7;
    expect_refused(p, &c, NULL, "REPORTED_TCB snp 7");
    snp_claims(&c);
    c.committed_tcb.snp = 7;
    expect_refused(p, &c, NULL, "COMMITTED_TCB snp 7");
    snp_claims(&c);
    c.committed_tcb.bootloader = 0;
    expect_refused(p, &c, NULL, "COMMITTED_TCB bootloader 0");
    veil_policy_free(p);
    /* fmc (Turin) and tee. */
    p = parse("{\"snp\":{\"measurements\":[\"" M48 "\"],\"allow_debug\":true,\"max_vmpl\":1,"
              "\"min_tcb\":{\"bootloader\":0,\"tee\":1,\"snp\":0,\"microcode\":0,\"fmc\":2}}}");
    snp_claims(&c);
    expect_refused(p, &c, NULL, "REPORTED_TCB tee 0 is below the minimum 1");
    c.reported_tcb.tee = 1;
    expect_refused(p, &c, NULL, "REPORTED_TCB fmc 0 is below the minimum 2");
    c.reported_tcb.fmc = 2;
    c.committed_tcb.fmc = 1;
    expect_refused(p, &c, NULL, "COMMITTED_TCB fmc 1");
    c.committed_tcb.fmc = 3;
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    veil_policy_free(p);
    /* The explicit, dangerous opt-out. */
    p = parse("{\"snp\":{\"measurements\":[\"" M48 "\"],\"allow_debug\":true,\"max_vmpl\":1,\"allow_any_tcb\":true}}");
    snp_claims(&c);
    c.reported_tcb = (struct veil_snp_tcb){0};
    c.committed_tcb = (struct veil_snp_tcb){0};
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    veil_policy_free(p);
    /* The default policy demands a minimum too. */
    assert_int_equal(veil_policy_default(&p), VEIL_OK);
    snp_claims(&c);
    c.debug = 0;
    c.vmpl = 0;
    expect_refused(p, &c, NULL, "snp has no min_tcb");
    veil_policy_free(p);
}

static void test_min_model_version(void **state)
{
    (void)state;
    veil_policy *p = parse("{\"min_model_version\":42}");
    assert_int_equal(veil_policy_min_model_version(p), 42);
    veil_policy_free(p);
    p = parse("{}");
    assert_int_equal(veil_policy_min_model_version(p), 0);
    veil_policy_free(p);
    assert_int_equal(veil_policy_min_model_version(NULL), 0);
}

/* lease_ttl_s: the lease a key cache holds a released key under (docs/cache.md); bounds 1..86400, default 300. */
static void test_lease_ttl(void **state)
{
    (void)state;
    veil_policy *p = parse("{\"lease_ttl_s\":2}");
    assert_int_equal(veil_policy_lease_ttl_s(p), 2);
    veil_policy_free(p);
    p = parse("{\"lease_ttl_s\":86400}");
    assert_int_equal(veil_policy_lease_ttl_s(p), VEIL_POLICY_LEASE_TTL_MAX_S);
    veil_policy_free(p);
    p = parse("{}");
    assert_int_equal(veil_policy_lease_ttl_s(p), VEIL_POLICY_LEASE_TTL_DEFAULT_S);
    veil_policy_free(p);
    assert_int_equal(veil_policy_lease_ttl_s(NULL), VEIL_POLICY_LEASE_TTL_DEFAULT_S);
    static const char *const bad[] = {"{\"lease_ttl_s\":0}", "{\"lease_ttl_s\":86401}", "{\"lease_ttl_s\":-1}",
                                      "{\"lease_ttl_s\":1.5}", "{\"lease_ttl_s\":\"2\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        veil_policy *q = NULL;
        assert_int_equal(veil_policy_parse(bad[i], strlen(bad[i]), &q), VEIL_ERR_ARG);
        assert_null(q);
    }
}

static void test_default_and_empty(void **state)
{
    (void)state;
    veil_policy *p = NULL;
    assert_int_equal(veil_policy_default(&p), VEIL_OK);
    struct veil_claims c;
    sgx_claims(&c);
    expect_refused(p, &c, NULL, "no measurement is allowed for sgx");
    c.tee = VEIL_TEE_SIM;
    expect_refused(p, &c, NULL, "allow_sim");
    veil_policy_free(p);
    p = parse("{}");
    sgx_claims(&c);
    expect_refused(p, &c, NULL, "tee sgx is not allowed");
    veil_policy_free(p);
    veil_policy_free(NULL);
}

static void test_sim_and_sample(void **state)
{
    (void)state;
    veil_policy *p = parse("{\"allow_sim\":true,\"allow_sample\":true}");
    struct veil_claims c = {.tee = VEIL_TEE_SIM, .measurement_size = 48};
    strcpy(c.tcb_status, "Simulated");
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.tee = VEIL_TEE_SAMPLE;
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {1};
    expect_refused(p, &c, rd, "report data");
    veil_policy_free(p);
    p = parse("{\"allow_sim\":true,\"sim\":{\"measurements\":[\"" M48 "\"],\"min_svn\":2}}");
    c.tee = VEIL_TEE_SIM;
    expect_refused(p, &c, NULL, "measurement 0000");
    memset(c.measurement, 0xab, 48);
    expect_refused(p, &c, NULL, "svn 0 is below the minimum 2 for sim");
    c.svn = 2;
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    veil_policy_free(p);
    p = parse("{\"sim\":{\"measurements\":[\"" M48 "\"]}}"); /* a section is not enough without allow_sim */
    expect_refused(p, &c, NULL, "allow_sim is false");
    veil_policy_free(p);
}

static void test_strict_parsing(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "not json",
        "[]",
        "{\"allow_sim\":true} {}",
        "{\"allow_sim\":true,\"allow_sim\":false}",
        "{\"allow_sims\":true}",
        "{\"allow_sim\":1}",
        "{\"version\":2}",
        "{\"version\":\"1\"}",
        "{\"min_model_version\":-1}",
        "{\"sgx\":[]}",
        "{\"sgx\":{\"measurement\":[]}}",
        "{\"sgx\":{\"measurements\":\"" M32 "\"}}",
        "{\"sgx\":{\"measurements\":[\"" M48 "\"]}}",
        "{\"sgx\":{\"measurements\":[\"xyz\"]}}",
        "{\"sgx\":{\"measurements\":[1]}}",
        "{\"tdx\":{\"measurements\":[\"" M32 "\"]}}",
        "{\"tdx\":{\"product_id\":1}}",
        "{\"tdx\":{\"signers\":[]}}",
        "{\"tdx\":{\"max_vmpl\":0}}",
        "{\"tdx\":{\"min_tcb\":{}}}",
        "{\"snp\":{\"max_vmpl\":4}}",
        "{\"sgx\":{\"rtmr1\":[]}}",
        "{\"sgx\":{\"allow_any_tcb\":true}}",
        "{\"sgx\":{\"product_id\":65536}}",
        "{\"sgx\":{\"min_svn\":4294967296}}",
        "{\"sgx\":{\"tcb_statuses\":[\"Revoked\"]}}",
        ("{\"sgx\":{\"tcb_statuses\":[\"UpToDate\",\"UpToDate\",\"UpToDate\",\"UpToDate\",\"UpToDate\",\"UpToDate\","
         "\"UpToDate\",\"UpToDate\",\"UpToDate\"]}}"),
        "{\"sgx\":{\"deny_advisories\":[\"\"]}}",
        "{\"sgx\":{\"deny_advisories\":[\"INTEL-SA-0000000000000000000000000001\"]}}",
        "{\"sgx\":{\"allow_debug\":\"no\"}}",
        "{\"sim\":{\"tcb_statuses\":[]}}",
        "{\"sample\":{}}",
        "{\"allow_sim\":true,\"x\":\"\\u0000\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        veil_policy *p = (veil_policy *)1;
        veil_status st = veil_policy_parse(bad[i], strlen(bad[i]), &p);
        if (st != VEIL_ERR_ARG && st != VEIL_ERR_LIMIT)
            fail_msg("policy %zu accepted or wrong status %d: %s", i, st, bad[i]);
        assert_null(p);
        assert_true(strncmp(veil_last_error(), "policy", 6) == 0);
    }
    /* list cap */
    size_t n = 300;
    char *big = malloc(n * 70 + 64);
    strcpy(big, "{\"sgx\":{\"measurements\":[");
    for (size_t i = 0; i < n; i++)
        strcat(strcat(strcat(big, i ? ",\"" : "\""), M32), "\"");
    strcat(big, "]}}");
    veil_policy *p = NULL;
    assert_int_equal(veil_policy_parse(big, strlen(big), &p), VEIL_ERR_LIMIT);
    free(big);
    assert_int_equal(veil_policy_parse(NULL, 0, &p), VEIL_ERR_ARG);
    assert_int_equal(veil_policy_parse("{}", 2, NULL), VEIL_ERR_ARG);
    /* upper-case hex is fine in a policy */
    p = parse("{\"sgx\":{\"measurements\":[\"1A2B3C4D1A2B3C4D1A2B3C4D1A2B3C4D1A2B3C4D1A2B3C4D1A2B3C4D1A2B3C4D\"],"
              "\"min_svn\":3}}");
    struct veil_claims c;
    sgx_claims(&c);
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    veil_policy_free(p);
    assert_int_equal(veil_policy_check(NULL, &c, NULL), VEIL_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgx_every_check), cmocka_unit_test(test_snp_and_tdx),
        cmocka_unit_test(test_tdx_workload_pins), cmocka_unit_test(test_snp_min_tcb),
        cmocka_unit_test(test_min_model_version), cmocka_unit_test(test_lease_ttl),
        cmocka_unit_test(test_default_and_empty), cmocka_unit_test(test_sim_and_sample),
        cmocka_unit_test(test_strict_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
