/* SPDX-License-Identifier: Apache-2.0 */
/* lib/serve/binding.c: the runtime attestation binding (docs/spec/runtime-attestation.md). The report data of a
 * fixed binding against a vector computed independently; the runtime's answer round-trips through the client's
 * verifier with sim evidence; every documented verification failure has its expected status. Failures that a
 * later step would also catch are forged with valid evidence (the test holds the sim platform key), so that only
 * the check under test can refuse them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/base64.h"
#include "core/cursor.h"
#include "core/hex.h"
#include "protocol/protocol.h"
#include "serve/binding.h"
#include "testutil.h"
#include "veil/client.h"

/* ---- the fixed vector ------------------------------------------------------------------------------------- */

/* Inputs of the worked example of docs/spec/runtime-attestation.md, section 8: nonce 00 01 .. 1f, the key hash
 * SHA-256("veil example tls key"), two models given out of name order. */
static const struct veil_binding_model vector_models[] = {
    {"resnet50", "acme.resnet50", 7, 2, {0}},
    {"mobilenet", "acme.mobilenet-v2", 3, 1, {0}},
};

/* Computed independently with Python's rfc8785 and hashlib (a one-off, not with libveil):
 *   b = {"domain": "veil-runtime-attestation/v1", "nonce": bytes(range(32)).hex(),
 *        "tls_spki_sha256": hashlib.sha256(b"veil example tls key").hexdigest(),
 *        "models": [{"name": "mobilenet", "model_id": "acme.mobilenet-v2", "model_version": 3, "key_version": 1,
 *                    "header_sha256": "dd" * 32},
 *                   {"name": "resnet50", "model_id": "acme.resnet50", "model_version": 7, "key_version": 2,
 *                    "header_sha256": "cc" * 32}]}
 *   rfc8785.dumps(b); hashlib.sha512(rfc8785.dumps(b)).hexdigest() */
static const char vector_jcs[] =
    "{\"domain\":\"veil-runtime-attestation/v1\",\"models\":[{\"header_sha256\":\"dddddddddddddddddddddddddddddddddddd"
    "dddddddddddddddddddddddddddd\",\"key_version\":1,\"model_id\":\"acme.mobilenet-v2\",\"model_version\":3,\"name"
    "\":\"mobilenet\"},{\"header_sha256\":\"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\",\"key_"
    "version\":2,\"model_id\":\"acme.resnet50\",\"model_version\":7,\"name\":\"resnet50\"}],\"nonce\":\"000102030405"
    "060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\",\"tls_spki_sha256\":\"2658ebb769c3b3a55190099c9d554d010c"
    "969c49b8a3d84f55de864600eb7005\"}";
static const char vector_report_data[] = "6d1ad055a0dd7a60e8e343e07a6b614aaa5bee7dd35e4d3552940fe20c0ef2d0060948546610"
                                         "997739bcd2f2bb48dc8b8e72d4a59780781175326f8ab2128653";

static void vector_inputs(uint8_t nonce[32], uint8_t spki[32], struct veil_binding_model models[2])
{
    for (size_t i = 0; i < 32; i++)
        nonce[i] = (uint8_t)i;
    assert_int_equal(EVP_Digest("veil example tls key", 20, spki, NULL, EVP_sha256(), NULL), 1);
    memcpy(models, vector_models, sizeof vector_models);
    memset(models[0].header_sha256, 0xcc, 32);
    memset(models[1].header_sha256, 0xdd, 32);
}

static void test_report_data_vector(void **state)
{
    (void)state;
    uint8_t nonce[32], spki[32], rd[VEIL_REPORT_DATA_SIZE], want[VEIL_REPORT_DATA_SIZE];
    struct veil_binding_model models[2];
    vector_inputs(nonce, spki, models);
    json_t *b = NULL;
    assert_true(veil_ok(veil_binding_build(nonce, sizeof nonce, spki, models, 2, &b)));
    struct veil_buf jcs = {0};
    assert_true(veil_ok(veil_jcs_serialize(b, &jcs)));
    assert_int_equal(jcs.size, strlen(vector_jcs));
    assert_memory_equal(jcs.data, vector_jcs, jcs.size);
    assert_true(veil_ok(veil_binding_report_data(b, rd)));
    assert_true(veil_ok(veil_hex_decode(VEIL_HEX_LOWER, vector_report_data, 128, want, 64, VEIL_ERR_ARG, "v")));
    assert_memory_equal(rd, want, sizeof want);
    veil_buf_cleanup(&jcs);
    json_decref(b);

    char pin[VEIL_SPKI_PIN_SIZE];
    assert_int_equal(veil_spki_pin(spki, pin), VEIL_OK);
    assert_string_equal(pin, "sha256//Jljrt2nDs6VRkAmcnVVNAQyWnEm4o9hPVd6GRgDrcAU="); /* base64 of the hash above */
}

static void test_nonce_parse(void **state)
{
    (void)state;
    uint8_t out[VEIL_RUNTIME_NONCE_MAX_SIZE];
    size_t n = 0;
    const char *lower = "000102030405060708090a0b0c0d0e0f", *upper = "000102030405060708090A0B0C0D0E0F";
    assert_true(veil_ok(veil_binding_nonce_parse(lower, 32, out, &n)));
    assert_int_equal(n, 16);
    assert_int_equal(out[15], 0x0f);
    assert_true(veil_ok(veil_binding_nonce_parse(upper, 32, out, &n)));
    char long_hex[2 * 65 + 1];
    memset(long_hex, 'a', sizeof long_hex - 1);
    long_hex[sizeof long_hex - 1] = '\0';
    assert_true(veil_ok(veil_binding_nonce_parse(long_hex, 128, out, &n)));
    assert_int_equal(n, 64);
    assert_int_equal(veil_binding_nonce_parse(long_hex, 130, out, &n).status, VEIL_ERR_ARG); /* 65 bytes */
    assert_int_equal(veil_binding_nonce_parse(lower, 30, out, &n).status, VEIL_ERR_ARG);     /* 15 bytes */
    assert_int_equal(veil_binding_nonce_parse(lower, 31, out, &n).status, VEIL_ERR_ARG);     /* odd */
    assert_int_equal(veil_binding_nonce_parse("000102030405060708090a0b0c0d0e0g", 32, out, &n).status, VEIL_ERR_ARG);
}

static void test_build_refusals(void **state)
{
    (void)state;
    uint8_t nonce[32], spki[32];
    struct veil_binding_model m[2];
    vector_inputs(nonce, spki, m);
    json_t *b = NULL;
    assert_int_equal(veil_binding_build(nonce, 15, spki, m, 2, &b).status, VEIL_ERR_ARG);
    assert_int_equal(veil_binding_build(nonce, 65, spki, m, 2, &b).status, VEIL_ERR_ARG);
    m[1].name = "resnet50";
    assert_int_equal(veil_binding_build(nonce, 32, spki, m, 2, &b).status, VEIL_ERR_ARG); /* duplicate names */
    m[1].name = "mobile/net";
    assert_int_equal(veil_binding_build(nonce, 32, spki, m, 2, &b).status, VEIL_ERR_ARG);
    m[1].name = "-mobilenet";
    assert_int_equal(veil_binding_build(nonce, 32, spki, m, 2, &b).status, VEIL_ERR_ARG);
    char long_name[VEIL_RUNTIME_NAME_MAX + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    m[1].name = long_name;
    assert_int_equal(veil_binding_build(nonce, 32, spki, m, 2, &b).status, VEIL_ERR_LIMIT);
    long_name[VEIL_RUNTIME_NAME_MAX] = '\0'; /* exactly the maximum */
    assert_true(veil_ok(veil_binding_build(nonce, 32, spki, m, 2, &b)));
    json_decref(b);
    b = NULL;
    m[1].model_version = VEIL_BINDING_MAX_SAFE_INTEGER + 1;
    assert_int_equal(veil_binding_build(nonce, 32, spki, m, 2, &b).status, VEIL_ERR_ARG);
    assert_int_equal(veil_binding_build(nonce, 32, spki, m, VEIL_RUNTIME_MAX_MODELS + 1, &b).status, VEIL_ERR_LIMIT);
    assert_null(b);
}

/* ---- a simulated runtime ------------------------------------------------------------------------------------ */

struct fx {
    char *dir;
    char *pub;              /* the sim platform's public key: what the client trusts */
    char plat[512], exe[512];
    struct veil_provider_config pc;
    uint8_t nonce[32], spki[32];
    char measurement[97];   /* hex, recomputed from docs/spec/evidence.md */
    struct veil_binding_model models[2];
};

static void measurement_hex(const char *content, char out[97])
{
    uint8_t len[8], md[48];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestInit_ex(c, EVP_sha384(), NULL), 1);
    EVP_DigestUpdate(c, "VEIL-SIM-MEASUREMENT-V1", 24);
    veil_store_u64le(len, strlen(content));
    EVP_DigestUpdate(c, len, 8);
    EVP_DigestUpdate(c, content, strlen(content));
    veil_store_u64le(len, 0);
    EVP_DigestUpdate(c, len, 8);
    assert_int_equal(EVP_DigestFinal_ex(c, md, NULL), 1);
    EVP_MD_CTX_free(c);
    veil_hex_encode(md, sizeof md, out);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    snprintf(f->plat, sizeof f->plat, "%s/plat", f->dir);
    snprintf(f->exe, sizeof f->exe, "%s/veil-runtime", f->dir);
    assert_int_equal(veil_sim_init(f->plat, &f->pub), VEIL_OK);
    tu_write(f->exe, "pretend runtime image", 21);
    measurement_hex("pretend runtime image", f->measurement);
    f->pc = (struct veil_provider_config){.sim_dir = f->plat, .sim_executable = f->exe};
    vector_inputs(f->nonce, f->spki, f->models);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    tu_rmdir(f->dir);
    free(f->dir);
    veil_free(f->pub);
    free(f);
    return 0;
}

static char *answer(const struct fx *f, const uint8_t *nonce)
{
    char *a = NULL;
    assert_int_equal(veil_runtime_attestation_answer(VEIL_TEE_SIM, &f->pc, nonce, 32, f->spki, f->models, 2, &a),
                     VEIL_OK);
    return a;
}

/* Signs any binding (valid or not) as the runtime would and returns the whole answer. binding is consumed. A
 * binding that has no JCS form (an integer above 2^53 - 1) gets evidence for 64 zero bytes: the client must refuse
 * it while parsing, before it looks at the evidence. */
static char *forge(const struct fx *f, json_t *binding, const char *tee)
{
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0};
    if (!veil_ok(veil_binding_report_data(binding, rd)))
        memset(rd, 0, sizeof rd);
    char *ev = NULL, *b64 = NULL;
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SIM, &f->pc, rd, &ev), VEIL_OK);
    assert_true(veil_ok(veil_b64_encode(VEIL_B64_URL, (const uint8_t *)ev, strlen(ev), &b64)));
    json_t *a = json_pack("{s:s, s:s, s:o}", "tee", tee, "evidence", b64, "binding", binding);
    assert_non_null(a);
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    veil_free(ev);
    free(b64);
    return text;
}

/* The fixture's valid binding, for forge() to alter. */
static json_t *good_binding(const struct fx *f)
{
    json_t *b = NULL;
    assert_true(veil_ok(veil_binding_build(f->nonce, 32, f->spki, f->models, 2, &b)));
    return b;
}

/* A client policy admitting the fixture's sim measurement; extra: more top-level members (or ""). */
static veil_client_policy *policy(const struct fx *f, const char *measurement, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"version\":1,\"attestation\":{\"version\":1,\"allow_sim\":true,\"sim\":{\"measurements\":[\"%s\"]}}%s}",
             measurement != NULL ? measurement : f->measurement, extra);
    veil_client_policy *p = NULL;
    assert_int_equal(veil_client_policy_parse(text, strlen(text), &p), VEIL_OK);
    return p;
}

struct check {
    const uint8_t *nonce;  /* default: the fixture's */
    const uint8_t *spki;   /* default: the fixture's */
    int insecure;
    const char *trusted;   /* default: the fixture's platform key */
    const char *const *required;
    size_t required_count;
};

static veil_status verify_with(const struct fx *f, const char *ans, size_t size, const veil_client_policy *p,
                               const struct check *c, char **report)
{
    const char *keys[1] = {c->trusted != NULL ? c->trusted : f->pub};
    struct veil_verify_options vo = {.now = 1700000000, .sim_trusted_keys = keys, .sim_trusted_key_count = 1};
    struct veil_runtime_verify_options o = {
        .nonce = c->nonce != NULL ? c->nonce : f->nonce, .nonce_size = 32, .verify = &vo,
        .tls_spki_sha256 = c->insecure ? NULL : c->spki != NULL ? c->spki : f->spki,
        .insecure_no_channel_binding = c->insecure, .required_model_ids = c->required,
        .required_model_count = c->required_count};
    return veil_runtime_verify(ans, size, p, &o, report);
}

/* Verifies with the default policy and options; expects status and, on failure, needle in the message. */
static void expect(const struct fx *f, const char *ans, const struct check *c, veil_status want, const char *needle)
{
    veil_client_policy *p = policy(f, NULL, "");
    char *report = (char *)"untouched";
    veil_status st = verify_with(f, ans, strlen(ans), p, c, &report);
    if (st != want || (needle != NULL && strstr(veil_last_error(), needle) == NULL))
        fail_msg("got %d \"%s\", want %d \"%s\"", st, veil_last_error(), want, needle ? needle : "");
    if (want != VEIL_OK)
        assert_null(report);
    veil_free(report);
    veil_client_policy_free(p);
}

/* ---- round trip ----------------------------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    char *a = answer(f, f->nonce);
    veil_client_policy *p = policy(f, NULL, ",\"models\":{\"acme.resnet50\":{\"min_model_version\":7}},"
                                            "\"require_all_models_listed\":false");
    char *report = NULL;
    const char *req[] = {"acme.resnet50", "acme.mobilenet-v2"};
    struct check c = {.required = req, .required_count = 2};
    assert_int_equal(verify_with(f, a, strlen(a), p, &c, &report), VEIL_OK);
    json_t *r = json_loads(report, 0, NULL);
    assert_non_null(r);
    assert_true(json_is_true(json_object_get(r, "verified")));
    assert_string_equal(json_string_value(json_object_get(r, "tee")), "sim");
    json_t *ch = json_object_get(r, "channel");
    assert_string_equal(json_string_value(json_object_get(ch, "binding")), "tls-spki-sha256");
    assert_true(json_is_true(json_object_get(ch, "checked")));
    assert_string_equal(json_string_value(json_object_get(ch, "curl_pin")),
                        "sha256//Jljrt2nDs6VRkAmcnVVNAQyWnEm4o9hPVd6GRgDrcAU=");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "claims"), "measurement")),
                        f->measurement);
    json_t *models = json_object_get(r, "models");
    assert_int_equal(json_array_size(models), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(models, 0), "name")), "mobilenet");
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(r, "warnings"), 0)), "SIMULATION"));
    json_decref(r);
    veil_free(report);
    veil_client_policy_free(p);

    /* The answer's binding member is the binding whose JCS the evidence binds. */
    json_t *j = json_loads(a, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "binding"), "nonce")),
                        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    struct veil_buf jcs = {0};
    assert_true(veil_ok(veil_jcs_serialize(json_object_get(j, "binding"), &jcs)));
    assert_non_null(strstr(vector_jcs, "\"models\":")); /* same models, same key hash, same nonce as the vector */
    assert_memory_equal(jcs.data, vector_jcs, jcs.size);
    veil_buf_cleanup(&jcs);
    json_decref(j);
    veil_free(a);
}

static void test_insecure_mode(void **state)
{
    struct fx *f = *state;
    char *a = answer(f, f->nonce);
    veil_client_policy *p = policy(f, NULL, "");
    char *report = NULL;
    struct check c = {.insecure = 1};
    assert_int_equal(verify_with(f, a, strlen(a), p, &c, &report), VEIL_OK);
    assert_non_null(strstr(report, "\"binding\":\"none\""));
    assert_non_null(strstr(report, "\"checked\":false"));
    assert_non_null(strstr(report, "NO CHANNEL BINDING"));
    assert_null(strstr(report, "curl_pin"));
    veil_free(report);
    /* Both a key hash and insecure, or neither: a usage error. */
    const char *keys[1] = {f->pub};
    struct veil_verify_options vo = {.now = 1, .sim_trusted_keys = keys, .sim_trusted_key_count = 1};
    struct veil_runtime_verify_options o = {.nonce = f->nonce, .nonce_size = 32, .verify = &vo,
                                            .tls_spki_sha256 = f->spki, .insecure_no_channel_binding = 1};
    assert_int_equal(veil_runtime_verify(a, strlen(a), p, &o, &report), VEIL_ERR_ARG);
    o.tls_spki_sha256 = NULL;
    o.insecure_no_channel_binding = 0;
    assert_int_equal(veil_runtime_verify(a, strlen(a), p, &o, &report), VEIL_ERR_ARG);
    o.insecure_no_channel_binding = 1;
    o.nonce_size = 15;
    assert_int_equal(veil_runtime_verify(a, strlen(a), p, &o, &report), VEIL_ERR_ARG);
    assert_null(report);
    veil_client_policy_free(p);
    veil_free(a);
}

/* ---- every check, in the spec's order --------------------------------------------------------------------- */

static void test_wrong_nonce(void **state)
{
    struct fx *f = *state;
    uint8_t other[32];
    memcpy(other, f->nonce, 32);
    other[31] ^= 1;
    char *old = answer(f, other); /* a genuine answer, for another client's nonce: a replay */
    expect(f, old, &(struct check){0}, VEIL_ERR_VERIFY, "binding.nonce is not the nonce this client sent");
    veil_free(old);
}

static void test_wrong_spki(void **state)
{
    struct fx *f = *state;
    char *a = answer(f, f->nonce);
    uint8_t proxy[32];
    memcpy(proxy, f->spki, 32);
    proxy[0] ^= 0x80; /* the certificate a TLS-terminating proxy would show */
    expect(f, a, &(struct check){.spki = proxy}, VEIL_ERR_VERIFY, "binding.tls_spki_sha256 is not the key");
    expect(f, a, &(struct check){0}, VEIL_OK, NULL);
    veil_free(a);
}

static void test_wrong_domain(void **state)
{
    struct fx *f = *state;
    json_t *b = good_binding(f);
    json_object_set_new(b, "domain", json_string("veil-runtime-attestation/v2"));
    char *a = forge(f, b, "sim"); /* signed evidence: only the domain check can refuse it */
    expect(f, a, &(struct check){0}, VEIL_ERR_VERIFY, "binding.domain");
    free(a);
}

static void test_tampered_evidence(void **state)
{
    struct fx *f = *state;
    char *a = answer(f, f->nonce);
    json_t *j = json_loads(a, 0, NULL);
    struct veil_buf ev = {0};
    const char *b64 = json_string_value(json_object_get(j, "evidence"));
    assert_true(veil_ok(veil_b64_decode(VEIL_B64_URL, b64, strlen(b64), 1u << 20, &ev)));
    char *rd = strstr((char *)ev.data, "\"report_data\":\"");
    assert_non_null(rd);
    rd[15] = rd[15] == '0' ? '1' : '0'; /* one report-data digit: the signature no longer verifies */
    char *t = NULL;
    assert_true(veil_ok(veil_b64_encode(VEIL_B64_URL, ev.data, ev.size, &t)));
    json_object_set_new(j, "evidence", json_string(t));
    char *bad = json_dumps(j, JSON_COMPACT);
    expect(f, bad, &(struct check){0}, VEIL_ERR_VERIFY, "runtime attestation: evidence:");
    free(bad);
    free(t);

    /* Genuine evidence of another binding (another nonce), under this client's binding. */
    uint8_t other[32];
    memset(other, 0x5a, sizeof other);
    char *o = answer(f, other);
    json_t *oj = json_loads(o, 0, NULL);
    json_object_set(j, "evidence", json_object_get(oj, "evidence"));
    bad = json_dumps(j, JSON_COMPACT);
    expect(f, bad, &(struct check){0}, VEIL_ERR_VERIFY, "report data is not SHA-512(JCS(binding))");
    free(bad);

    /* Evidence from a platform the client does not trust. */
    char *other_pub = NULL;
    assert_int_equal(veil_sim_init(tu_path(0, f->dir, "plat2"), &other_pub), VEIL_OK);
    expect(f, a, &(struct check){.trusted = other_pub}, VEIL_ERR_VERIFY, "evidence");
    veil_free(other_pub);

    /* The answer names another TEE than its evidence. */
    json_decref(j);
    j = json_loads(a, 0, NULL);
    json_object_set_new(j, "tee", json_string("sgx"));
    bad = json_dumps(j, JSON_COMPACT);
    expect(f, bad, &(struct check){0}, VEIL_ERR_VERIFY, "the answer says tee sgx, the evidence is sim");
    free(bad);
    json_decref(oj);
    json_decref(j);
    veil_buf_cleanup(&ev);
    veil_free(o);
    veil_free(a);
}

static void test_policy_refusals(void **state)
{
    struct fx *f = *state;
    char *a = answer(f, f->nonce);
    char *report = NULL;
    struct check c = {0};
    struct {
        const char *measurement, *extra, *needle;
    } cases[] = {
        {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "",
         "measurement"},
        {NULL, ",\"models\":{\"acme.resnet50\":{\"min_model_version\":8}}",
         "model resnet50 (model id acme.resnet50) has model_version 7, below the policy's minimum 8"},
        {NULL, ",\"models\":{\"acme.resnet50\":{\"min_model_version\":1}},\"require_all_models_listed\":true",
         "model mobilenet (model id acme.mobilenet-v2) is served but not listed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        veil_client_policy *p = policy(f, cases[i].measurement, cases[i].extra);
        assert_int_equal(verify_with(f, a, strlen(a), p, &c, &report), VEIL_ERR_POLICY);
        if (strstr(veil_last_error(), cases[i].needle) == NULL)
            fail_msg("case %zu: \"%s\"", i, veil_last_error());
        assert_null(report);
        veil_client_policy_free(p);
    }
    /* A model listed with a minimum but not served is fine; unless the caller requires it. */
    veil_client_policy *p = policy(f, NULL, ",\"models\":{\"acme.other\":{\"min_model_version\":9}}");
    assert_int_equal(verify_with(f, a, strlen(a), p, &c, &report), VEIL_OK);
    veil_free(report);
    const char *req[] = {"acme.other"};
    c.required = req;
    c.required_count = 1;
    assert_int_equal(verify_with(f, a, strlen(a), p, &c, &report), VEIL_ERR_POLICY);
    assert_non_null(strstr(veil_last_error(), "no model with the required model id acme.other"));
    veil_client_policy_free(p);
    /* A policy that does not allow sim. */
    const char *nosim = "{\"attestation\":{\"version\":1}}";
    assert_int_equal(veil_client_policy_parse(nosim, strlen(nosim), &p), VEIL_OK);
    c.required_count = 0;
    assert_int_equal(verify_with(f, a, strlen(a), p, &c, &report), VEIL_ERR_POLICY);
    veil_client_policy_free(p);
    veil_free(a);
}

/* A forged answer whose binding differs from the good one by fn; expects status/needle. */
static void expect_forged(const struct fx *f, void (*fn)(json_t *b), veil_status want, const char *needle)
{
    json_t *b = good_binding(f);
    fn(b);
    char *a = forge(f, b, "sim");
    expect(f, a, &(struct check){0}, want, needle);
    free(a);
}

static void add_unknown(json_t *b) { json_object_set_new(b, "expires", json_integer(1)); }
static void model_unknown(json_t *b)
{
    json_object_set_new(json_array_get(json_object_get(b, "models"), 0), "labels", json_string("x"));
}
static void models_unsorted(json_t *b)
{
    json_t *m = json_object_get(b, "models");
    json_t *first = json_incref(json_array_get(m, 0));
    json_array_remove(m, 0);
    json_array_append_new(m, first);
}
static void models_duplicate(json_t *b)
{
    json_t *m = json_object_get(b, "models");
    json_array_append_new(m, json_deep_copy(json_array_get(m, 1)));
}
static void nonce_upper(json_t *b)
{
    json_object_set_new(b, "nonce", json_string("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"));
}
static void nonce_oversized(json_t *b)
{
    char hex[2 * 65 + 1];
    memset(hex, 'a', sizeof hex - 1);
    hex[sizeof hex - 1] = '\0';
    json_object_set_new(b, "nonce", json_string(hex));
}
static void spki_short(json_t *b) { json_object_set_new(b, "tls_spki_sha256", json_string("abcd")); }
static void name_oversized(json_t *b)
{
    char name[VEIL_RUNTIME_NAME_MAX + 2];
    memset(name, 'z', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    json_object_set_new(json_array_get(json_object_get(b, "models"), 1), "name", json_string(name));
}
static void name_slash(json_t *b)
{
    json_object_set_new(json_array_get(json_object_get(b, "models"), 1), "name", json_string("zz/../x"));
}
static void version_real(json_t *b)
{
    json_object_set_new(json_array_get(json_object_get(b, "models"), 0), "model_version", json_real(3.0));
}
static void version_huge(json_t *b)
{
    json_object_set_new(json_array_get(json_object_get(b, "models"), 0), "model_version",
                        json_integer((json_int_t)VEIL_BINDING_MAX_SAFE_INTEGER + 1));
}
static void too_many_models(json_t *b)
{
    json_t *m = json_array();
    for (unsigned i = 0; i <= VEIL_RUNTIME_MAX_MODELS; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%04u", i);
        json_array_append_new(m, json_pack("{s:s, s:s, s:i, s:i, s:s}", "name", name, "model_id", name,
                                           "model_version", 1, "key_version", 1, "header_sha256",
                                           "0000000000000000000000000000000000000000000000000000000000000000"));
    }
    json_object_set_new(b, "models", m);
}

static void test_malformed_bindings(void **state)
{
    struct fx *f = *state;
    expect_forged(f, add_unknown, VEIL_ERR_EVIDENCE, "binding: unknown member \"expires\"");
    expect_forged(f, model_unknown, VEIL_ERR_EVIDENCE, "unknown member \"labels\"");
    expect_forged(f, models_unsorted, VEIL_ERR_EVIDENCE, "not sorted by name");
    expect_forged(f, models_duplicate, VEIL_ERR_EVIDENCE, "not sorted by name, or a name repeats");
    expect_forged(f, nonce_upper, VEIL_ERR_EVIDENCE, "nonce");
    expect_forged(f, nonce_oversized, VEIL_ERR_LIMIT, "\"nonce\" is longer than 64 bytes");
    expect_forged(f, spki_short, VEIL_ERR_EVIDENCE, "tls_spki_sha256");
    expect_forged(f, name_oversized, VEIL_ERR_LIMIT, "longer than 128 bytes");
    expect_forged(f, name_slash, VEIL_ERR_EVIDENCE, "a name holds a character");
    expect_forged(f, version_real, VEIL_ERR_EVIDENCE, "model_version");
    expect_forged(f, version_huge, VEIL_ERR_EVIDENCE, "model_version");
    expect_forged(f, too_many_models, VEIL_ERR_LIMIT, "more than 256 models");
}

static void test_malformed_answers(void **state)
{
    struct fx *f = *state;
    char *a = answer(f, f->nonce);
    json_t *j = json_loads(a, 0, NULL);
    json_object_set_new(j, "note", json_string("hi"));
    char *bad = json_dumps(j, JSON_COMPACT);
    expect(f, bad, &(struct check){0}, VEIL_ERR_EVIDENCE, "answer: unknown member \"note\"");
    free(bad);
    json_object_del(j, "note");
    const char *b64 = json_string_value(json_object_get(j, "evidence"));
    char *padded = malloc(strlen(b64) + 3);
    snprintf(padded, strlen(b64) + 3, "%s==", b64); /* padding, or standard base64: not base64url */
    json_object_set_new(j, "evidence", json_string(padded));
    bad = json_dumps(j, JSON_COMPACT);
    expect(f, bad, &(struct check){0}, VEIL_ERR_EVIDENCE, "evidence");
    free(bad);
    free(padded);
    json_object_set_new(j, "tee", json_string("auto"));
    bad = json_dumps(j, JSON_COMPACT);
    expect(f, bad, &(struct check){0}, VEIL_ERR_EVIDENCE, "unknown tee");
    free(bad);
    json_decref(j);
    expect(f, "{\"tee\":\"sim\",\"tee\":\"sim\"}", &(struct check){0}, VEIL_ERR_EVIDENCE, "not valid JSON");
    expect(f, "[]", &(struct check){0}, VEIL_ERR_EVIDENCE, NULL);

    /* Evidence over 1 MiB, and an answer over 2 MiB. */
    size_t big = (1u << 20) + 1;
    uint8_t *zeros = calloc(big, 1);
    char *t = NULL;
    assert_true(veil_ok(veil_b64_encode(VEIL_B64_URL, zeros, big, &t)));
    j = json_loads(a, 0, NULL);
    json_object_set_new(j, "evidence", json_string(t));
    bad = json_dumps(j, JSON_COMPACT);
    expect(f, bad, &(struct check){0}, VEIL_ERR_LIMIT, "larger than");
    free(bad);
    size_t huge = VEIL_RUNTIME_ANSWER_MAX_SIZE + 1;
    char *h = malloc(huge + 1);
    memset(h, ' ', huge);
    h[huge] = '\0';
    memcpy(h, a, strlen(a));
    veil_client_policy *p = policy(f, NULL, "");
    char *report = NULL;
    assert_int_equal(verify_with(f, h, huge, p, &(struct check){0}, &report), VEIL_ERR_LIMIT);
    veil_client_policy_free(p);
    free(h);
    free(t);
    free(zeros);
    json_decref(j);
    veil_free(a);
}

/* ---- the client policy ---------------------------------------------------------------------------------------- */

static void test_client_policy_parse(void **state)
{
    (void)state;
    const char *good[] = {
        "{\"attestation\":{}}",
        "{\"version\":1,\"attestation\":{\"allow_sim\":true},\"models\":{},\"require_all_models_listed\":true}",
        "{\"attestation\":{},\"models\":{\"a.b-c_d\":{\"min_model_version\":9007199254740991}}}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        veil_client_policy *p = NULL;
        if (veil_client_policy_parse(good[i], strlen(good[i]), &p) != VEIL_OK)
            fail_msg("%s: %s", good[i], veil_last_error());
        veil_client_policy_free(p);
    }
    const char *bad[] = {
        "{}",                                                        /* no attestation */
        "{\"attestation\":[]}",
        "{\"attestation\":{},\"extra\":1}",                          /* unknown member */
        "{\"attestation\":{\"allow_simm\":true}}",                   /* unknown member of the release policy */
        "{\"version\":2,\"attestation\":{}}",
        "{\"attestation\":{},\"models\":[]}",
        "{\"attestation\":{},\"models\":{\".x\":{\"min_model_version\":1}}}",
        "{\"attestation\":{},\"models\":{\"x\":{}}}",                /* min_model_version is required */
        "{\"attestation\":{},\"models\":{\"x\":{\"min_model_version\":\"1\"}}}",
        "{\"attestation\":{},\"models\":{\"x\":{\"min_model_version\":-1}}}",
        "{\"attestation\":{},\"models\":{\"x\":{\"min_model_version\":9007199254740992}}}",
        "{\"attestation\":{},\"models\":{\"x\":{\"min_model_version\":1,\"max\":2}}}",
        "{\"attestation\":{},\"require_all_models_listed\":1}",
        "{\"attestation\":{},\"attestation\":{}}",                   /* duplicate */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        veil_client_policy *p = (veil_client_policy *)(uintptr_t)1;
        if (veil_client_policy_parse(bad[i], strlen(bad[i]), &p) != VEIL_ERR_ARG)
            fail_msg("accepted or wrong status: %s", bad[i]);
        assert_null(p);
    }
}

/* ---- the certificate's key ------------------------------------------------------------------------------------ */

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"veil-runtime", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static void test_cert_spki(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = self_signed(key);
    /* Expected: SHA-256 of the key's own SubjectPublicKeyInfo, taken from the key, not from the certificate. */
    unsigned char *spki = NULL;
    int spki_size = i2d_PUBKEY(key, &spki);
    assert_true(spki_size > 0);
    uint8_t want[32], got[32];
    assert_int_equal(EVP_Digest(spki, (size_t)spki_size, want, NULL, EVP_sha256(), NULL), 1);
    unsigned char *der = NULL;
    int der_size = i2d_X509(x, &der);
    assert_int_equal(veil_cert_spki_sha256(der, (size_t)der_size, got), VEIL_OK);
    assert_memory_equal(got, want, 32);
    BIO *bio = BIO_new(BIO_s_mem());
    BIO_puts(bio, "\n");
    PEM_write_bio_X509(bio, x);
    PEM_write_bio_X509(bio, x); /* a chain file: the first block counts */
    char *pem = NULL;
    long pem_size = BIO_get_mem_data(bio, &pem);
    memset(got, 0, sizeof got);
    assert_int_equal(veil_cert_spki_sha256((const uint8_t *)pem, (size_t)pem_size, got), VEIL_OK);
    assert_memory_equal(got, want, 32);

    uint8_t *longer = malloc((size_t)der_size + 1);
    memcpy(longer, der, (size_t)der_size);
    longer[der_size] = 0;
    assert_int_equal(veil_cert_spki_sha256(longer, (size_t)der_size + 1, got), VEIL_ERR_FORMAT); /* trailing byte */
    assert_int_equal(veil_cert_spki_sha256(der, (size_t)der_size - 1, got), VEIL_ERR_FORMAT);    /* truncated */
    assert_int_equal(veil_cert_spki_sha256(spki, (size_t)spki_size, got), VEIL_ERR_FORMAT);      /* a key, no cert */
    const char *junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_int_equal(veil_cert_spki_sha256((const uint8_t *)junk, strlen(junk), got), VEIL_ERR_FORMAT);
    assert_int_equal(veil_cert_spki_sha256(der, 0, got), VEIL_ERR_ARG);
    uint8_t *huge = calloc(VEIL_CERT_MAX_SIZE + 1, 1);
    assert_int_equal(veil_cert_spki_sha256(huge, VEIL_CERT_MAX_SIZE + 1, got), VEIL_ERR_LIMIT);
    assert_memory_equal(got, want, 32); /* untouched on failure */
    free(huge);
    free(longer);
    BIO_free(bio);
    OPENSSL_free(der);
    OPENSSL_free(spki);
    X509_free(x);
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_data_vector),
        cmocka_unit_test(test_nonce_parse),
        cmocka_unit_test(test_build_refusals),
        cmocka_unit_test_setup_teardown(test_round_trip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_insecure_mode, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_nonce, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_spki, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_domain, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_evidence, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_policy_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_bindings, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_answers, fx_setup, fx_teardown),
        cmocka_unit_test(test_client_policy_parse),
        cmocka_unit_test(test_cert_spki),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
