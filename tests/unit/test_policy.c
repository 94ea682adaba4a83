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

static void test_snp_and_tdx(void **state)
{
    (void)state;
    veil_policy *p = parse("{\"snp\":{\"measurements\":[\"" M48 "\"],\"max_vmpl\":1,\"allow_debug\":true},"
                           "\"tdx\":{\"measurements\":[\"" M48 "\"]}}");
    struct veil_claims c = {.tee = VEIL_TEE_SNP, .measurement_size = 48, .vmpl = 1, .debug = 1};
    memset(c.measurement, 0xab, 48);
    strcpy(c.tcb_status, "UpToDate");
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.vmpl = 2;
    expect_refused(p, &c, NULL, "VMPL 2 is above the maximum 1");
    c.vmpl = 0;
    c.tee = VEIL_TEE_TDX;
    expect_refused(p, &c, NULL, "debug tdx");
    c.debug = 0;
    assert_int_equal(veil_policy_check(p, &c, NULL), VEIL_OK);
    c.tcb_status[0] = '\0';
    expect_refused(p, &c, NULL, "TCB status (none)");
    veil_policy_free(p);
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
        "{\"snp\":{\"max_vmpl\":4}}",
        "{\"sgx\":{\"product_id\":65536}}",
        "{\"sgx\":{\"min_svn\":4294967296}}",
        "{\"sgx\":{\"tcb_statuses\":[\"Revoked\"]}}",
        "{\"sgx\":{\"tcb_statuses\":[\"UpToDate\",\"UpToDate\",\"UpToDate\",\"UpToDate\",\"UpToDate\",\"UpToDate\","
        "\"UpToDate\",\"UpToDate\",\"UpToDate\"]}}",
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
        cmocka_unit_test(test_default_and_empty), cmocka_unit_test(test_sim_and_sample),
        cmocka_unit_test(test_strict_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
