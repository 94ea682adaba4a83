/* SPDX-License-Identifier: Apache-2.0 */
/* lib/kbs: claims codec, keys at rest, the audit chain, resource tags, rate limiting. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kbs/client_internal.h"
#include "kbs/kbs.h"

static void test_claims_round_trip(void **state)
{
    (void)state;
    struct veil_claims c, back;
    memset(&c, 0, sizeof c);
    c.tee = VEIL_TEE_SGX;
    memset(c.report_data, 0x11, sizeof c.report_data);
    memset(c.measurement, 0xab, 32), c.measurement_size = 32;
    memset(c.signer, 0x5e, 32), c.signer_size = 32;
    c.product_id = 7, c.svn = 3, c.debug = 1;
    strcpy(c.tcb_status, "SWHardeningNeeded");
    strcpy(c.advisories[0], "INTEL-SA-00334"), c.advisory_count = 1;
    json_t *j = NULL;
    assert_true(veil_ok(veil_kbs_claims_to_json(&c, &j)));
    assert_true(veil_ok(veil_kbs_claims_from_json(j, &back)));
    assert_int_equal(memcmp(&c, &back, sizeof c), 0);
    json_object_set_new(j, "extra", json_true());
    assert_int_equal(veil_kbs_claims_from_json(j, &back).status, VEIL_ERR_FORMAT);
    json_object_del(j, "extra");
    json_object_set_new(j, "measurement", json_string("zz"));
    assert_int_equal(veil_kbs_claims_from_json(j, &back).status, VEIL_ERR_FORMAT);
    json_decref(j);
}

/* TDX registers and SNP TCB values survive the broker's claims records, where veil_policy_check reads them. */
static void test_claims_round_trip_tdx_snp(void **state)
{
    (void)state;
    struct veil_claims c, back;
    memset(&c, 0, sizeof c);
    c.tee = VEIL_TEE_TDX;
    memset(c.measurement, 0xab, 48), c.measurement_size = 48;
    for (int i = 0; i < 4; i++)
        memset(c.rtmr[i], 0x10 + i, 48);
    c.rtmr_count = 4;
    memset(c.config_id, 0xc0, 48), c.config_id_size = 48;
    memset(c.mr_owner, 0x0e, 48), c.mr_owner_size = 48;
    memset(c.mr_owner_config, 0x0c, 48), c.mr_owner_config_size = 48;
    strcpy(c.tcb_status, "UpToDate");
    json_t *j = NULL;
    assert_true(veil_ok(veil_kbs_claims_to_json(&c, &j)));
    assert_non_null(json_object_get(j, "mrowner"));
    assert_true(veil_ok(veil_kbs_claims_from_json(j, &back)));
    assert_int_equal(memcmp(&c, &back, sizeof c), 0);
    json_decref(j);

    memset(&c, 0, sizeof c);
    c.tee = VEIL_TEE_SNP;
    memset(c.measurement, 0xab, 48), c.measurement_size = 48;
    c.vmpl = 1;
    c.reported_tcb = (struct veil_snp_tcb){.bootloader = 3, .tee = 1, .snp = 8, .microcode = 115, .fmc = 2};
    c.committed_tcb = (struct veil_snp_tcb){.bootloader = 4, .tee = 2, .snp = 9, .microcode = 200, .fmc = 3};
    strcpy(c.tcb_status, "NotJudged");
    assert_true(veil_ok(veil_kbs_claims_to_json(&c, &j)));
    assert_true(veil_ok(veil_kbs_claims_from_json(j, &back)));
    assert_int_equal(memcmp(&c, &back, sizeof c), 0);
    json_object_set_new(json_object_get(j, "reported_tcb"), "microcode", json_integer(256));
    assert_int_equal(veil_kbs_claims_from_json(j, &back).status, VEIL_ERR_FORMAT);
    json_object_set_new(json_object_get(j, "reported_tcb"), "microcode", json_integer(1));
    json_object_set_new(json_object_get(j, "reported_tcb"), "x", json_integer(1));
    assert_int_equal(veil_kbs_claims_from_json(j, &back).status, VEIL_ERR_FORMAT);
    json_decref(j);
}

/* Medium 5: plain http only for sim; every other TEE needs https:// and a pinned CA or TLS key. */
static void test_transport_rule(void **state)
{
    (void)state;
    static const veil_tee others[] = {VEIL_TEE_SAMPLE, VEIL_TEE_SGX, VEIL_TEE_TDX, VEIL_TEE_SNP};
    struct veil_kbs_fetch_options o = {.url = "http://127.0.0.1:8080"};
    assert_true(veil_ok(veil_kbs_transport_check(&o, VEIL_TEE_SIM)));
    o.url = "https://kbs.example:8443";
    assert_true(veil_ok(veil_kbs_transport_check(&o, VEIL_TEE_SIM))); /* sim: the system's store is fine */
    o.url = "http://192.0.2.1:8080";
    assert_int_equal(veil_kbs_transport_check(&o, VEIL_TEE_SIM).status, VEIL_ERR_ARG);
    o.allow_insecure_http = 1;
    assert_true(veil_ok(veil_kbs_transport_check(&o, VEIL_TEE_SIM)));
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        struct veil_kbs_fetch_options t = {.url = "http://127.0.0.1:8080", .allow_insecure_http = 1,
                                           .cacert = "ca.pem"};
        assert_int_equal(veil_kbs_transport_check(&t, others[i]).status, VEIL_ERR_ARG);
        assert_non_null(strstr(veil_last_error(), "only for the simulation TEE"));
        t.url = "http://[::1]:8080";
        assert_int_equal(veil_kbs_transport_check(&t, others[i]).status, VEIL_ERR_ARG);
        t = (struct veil_kbs_fetch_options){.url = "https://127.0.0.1:8443"};
        assert_int_equal(veil_kbs_transport_check(&t, others[i]).status, VEIL_ERR_ARG);
        assert_non_null(strstr(veil_last_error(), "must be pinned"));
        t.cacert = "";
        assert_int_equal(veil_kbs_transport_check(&t, others[i]).status, VEIL_ERR_ARG);
        t.cacert = "ca.pem";
        assert_true(veil_ok(veil_kbs_transport_check(&t, others[i])));
        t = (struct veil_kbs_fetch_options){.url = "HTTPS://kbs.example", .tls_pinned_pubkey = "sha256//AAAA"};
        assert_true(veil_ok(veil_kbs_transport_check(&t, others[i])));
        t.url = "ftp://kbs.example";
        assert_int_equal(veil_kbs_transport_check(&t, others[i]).status, VEIL_ERR_ARG);
    }
    /* The public call refuses before any network I/O: a key buffer stays wiped, nothing is returned. */
    uint8_t key[32];
    memset(key, 0xaa, sizeof key);
    size_t size = 1;
    uint64_t min_version = 9;
    struct veil_kbs_fetch_options t = {.url = "http://127.0.0.1:1", .tee = VEIL_TEE_TDX};
    assert_int_equal(veil_kbs_fetch_release(&t, "m", 0, key, sizeof key, &size, &min_version), VEIL_ERR_ARG);
    assert_int_equal(size, 0);
    assert_int_equal(min_version, 0);
    static const uint8_t zero[32];
    assert_memory_equal(key, zero, sizeof key);
    /* A pinned broker key needs the time. */
    struct veil_provider_config pc = {.sim_dir = "/nonexistent"};
    t = (struct veil_kbs_fetch_options){.url = "http://127.0.0.1:1", .tee = VEIL_TEE_SIM, .provider = &pc,
                                        .broker_pubkey_pem = "-----BEGIN PUBLIC KEY-----"};
    assert_int_equal(veil_kbs_fetch_key(&t, "m", 0, key, sizeof key, &size), VEIL_ERR_ARG);
    assert_non_null(strstr(veil_last_error(), "options->now"));
}

static void test_key_seal_open(void **state)
{
    (void)state;
    uint8_t master[32], key[32];
    memset(master, 7, sizeof master);
    memset(key, 0xee, sizeof key);
    struct veil_buf sealed = {0}, out = {0};
    assert_true(veil_ok(veil_kbs_key_seal(master, "m", 3, key, sizeof key, &sealed)));
    assert_int_equal(sealed.size, VEIL_KBS_SEALED_KEY_OVERHEAD + 32);
    assert_null(memmem(sealed.data, sealed.size, key, sizeof key));
    assert_true(veil_ok(veil_kbs_key_open(master, "m", 3, sealed.data, sealed.size, &out)));
    assert_memory_equal(out.data, key, 32);
    /* Another row, another master key, a flipped bit: refused. */
    assert_int_equal(veil_kbs_key_open(master, "m", 4, sealed.data, sealed.size, &out).status, VEIL_ERR_AUTH);
    assert_int_equal(veil_kbs_key_open(master, "n", 3, sealed.data, sealed.size, &out).status, VEIL_ERR_AUTH);
    sealed.data[20] ^= 1;
    assert_int_equal(veil_kbs_key_open(master, "m", 3, sealed.data, sealed.size, &out).status, VEIL_ERR_AUTH);
    assert_int_equal(veil_kbs_key_open(master, "m", 3, sealed.data, 10, &out).status, VEIL_ERR_FORMAT);
    assert_int_equal(veil_kbs_key_seal(master, "m", 1, key, 8, &sealed).status, VEIL_ERR_ARG);
    veil_buf_cleanup(&sealed);
    veil_buf_cleanup(&out);
}

static void test_audit_chain(void **state)
{
    (void)state;
    char h1[VEIL_KBS_AUDIT_HASH_HEX_SIZE], h2[VEIL_KBS_AUDIT_HASH_HEX_SIZE];
    assert_true(veil_ok(veil_kbs_audit_hash(VEIL_KBS_AUDIT_GENESIS, 1, "{}", 2, h1)));
    /* SHA-256("veil-kbs-audit-v1\0" || 64 x '0' || u64le(1) || "{}"), computed independently in Python. */
    assert_string_equal(h1, "ffc92982539cdcb6c5174431a848dd20a5b768808fd27684e10a9abdeb393ddc");
    assert_true(veil_ok(veil_kbs_audit_hash(h1, 2, "{\"a\":1}", 7, h2)));
    assert_true(veil_ok(veil_kbs_audit_check(VEIL_KBS_AUDIT_GENESIS, 1, 1, VEIL_KBS_AUDIT_GENESIS, "{}", 2, h1)));
    assert_true(veil_ok(veil_kbs_audit_check(h1, 2, 2, h1, "{\"a\":1}", 7, h2)));
    assert_int_equal(veil_kbs_audit_check(h1, 2, 3, h1, "{\"a\":1}", 7, h2).status, VEIL_ERR_AUTH); /* gap */
    assert_int_equal(veil_kbs_audit_check(h1, 2, 2, h2, "{\"a\":1}", 7, h2).status, VEIL_ERR_AUTH); /* link */
    assert_int_equal(veil_kbs_audit_check(h1, 2, 2, h1, "{\"a\":2}", 7, h2).status, VEIL_ERR_AUTH); /* edit */
}

static void test_resource_tag(void **state)
{
    (void)state;
    char id[VEIL_KBS_MODEL_ID_MAX + 1];
    uint32_t v = 9;
    assert_true(veil_ok(veil_kbs_resource_tag_parse("test-0", id, &v)));
    assert_string_equal(id, "test-0");
    assert_int_equal(v, 0);
    assert_true(veil_ok(veil_kbs_resource_tag_parse("resnet.v2_a@4294967295", id, &v)));
    assert_int_equal(v, 4294967295u);
    static const char *const bad[] = {"", "@1", "m@", "m@0", "m@01", "m@4294967296", "m@1@2", "../x", ".hidden",
                                      "a/b", "m@-1", "m@1a", "sp ace"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(veil_kbs_resource_tag_parse(bad[i], id, &v).status, VEIL_ERR_ARG);
    char longid[VEIL_KBS_MODEL_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(veil_kbs_resource_tag_parse(longid, id, &v).status, VEIL_ERR_ARG);
}

static void test_ratelimit(void **state)
{
    (void)state;
    struct veil_kbs_ratelimit rl;
    assert_true(veil_ok(veil_kbs_ratelimit_init(&rl, 2.0, 3.0)));
    for (int i = 0; i < 3; i++)
        assert_true(veil_kbs_ratelimit_take(&rl, "10.0.0.1", 1000));
    assert_false(veil_kbs_ratelimit_take(&rl, "10.0.0.1", 1000));
    assert_true(veil_kbs_ratelimit_take(&rl, "10.0.0.2", 1000)); /* per client */
    assert_false(veil_kbs_ratelimit_take(&rl, "10.0.0.1", 1400));
    assert_true(veil_kbs_ratelimit_take(&rl, "10.0.0.1", 1500)); /* 2/s refills one token in 500 ms */
    veil_kbs_ratelimit_cleanup(&rl);
    assert_true(veil_ok(veil_kbs_ratelimit_init(&rl, 0, 1)));
    for (int i = 0; i < 100; i++)
        assert_true(veil_kbs_ratelimit_take(&rl, "x", 0)); /* 0 disables */
    veil_kbs_ratelimit_cleanup(&rl);
    assert_int_equal(veil_kbs_ratelimit_init(&rl, 1, 0).status, VEIL_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claims_round_trip), cmocka_unit_test(test_claims_round_trip_tdx_snp),
        cmocka_unit_test(test_transport_rule), cmocka_unit_test(test_key_seal_open),
        cmocka_unit_test(test_audit_chain),       cmocka_unit_test(test_resource_tag),
        cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
