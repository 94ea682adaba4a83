/* SPDX-License-Identifier: Apache-2.0 */
/* lib/protocol and lib/core/base64: RFC 4648 and RFC 8785 examples, the reference notes' section 1.3 vectors,
 * known-answer JWE/JWT made by joserfc, round trips, and an expected error for every documented failure. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "core/base64.h"
#include "core/secret.h"
#include "protocol/protocol.h"

#define ST(expr) ((expr).status)

/* ---- helpers ---------------------------------------------------------------------------------------------- */

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (uint8_t)v;
    }
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (j == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return j;
}

static char *jcs_text(const json_t *j)
{
    struct veil_buf b = {0};
    assert_int_equal(ST(veil_jcs_serialize(j, &b)), VEIL_OK);
    assert_int_equal(ST(veil_buf_append_u8(&b, 0)), VEIL_OK);
    return (char *)b.data;
}

/* The section 1.3 deterministic key: d = SHA256("kbs-test-vector-tee-key"). */
#define VEC_D "0ad03ac9cdaee77523038775caa511caf7e89d44fea3363946f0a1c4e4e401cf"
#define VEC_X "a_cLHk1O51CNzekSTdnXhcFRf6aa3pTAjHg5j4VTuuk"
#define VEC_Y "qWtHvGT_q8opJeYqxTiNO1OCsr77qRKpL-94G_wUfr0"
#define VEC_JWK "{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ECDH-ES+A256KW\",\"x\":\"" VEC_X "\",\"y\":\"" VEC_Y "\"}"
#define VEC_NONCE "nQSoI5AzvDif7aNKX9GjGoTkmwLsfqzqovrpFJJwibk="

static void vector_keypair(struct veil_jwk *out)
{
    uint8_t d[32], pub[65] = {4};
    unhex(VEC_D, d, 32);
    struct veil_buf xy = {0};
    assert_int_equal(ST(veil_b64_decode(VEIL_B64_URL, VEC_X, strlen(VEC_X), 32, &xy)), VEIL_OK);
    assert_int_equal(ST(veil_b64_decode(VEIL_B64_URL, VEC_Y, strlen(VEC_Y), 32, &xy)), VEIL_OK);
    memcpy(pub + 1, xy.data, 64);
    veil_buf_cleanup(&xy);
    BIGNUM *bn = BN_bin2bn(d, 32, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    assert_int_equal(ST(veil_jwk_adopt(pkey, out)), VEIL_OK);
}

/* ---- base64 ----------------------------------------------------------------------------------------------- */

static void test_b64_rfc4648(void **state)
{
    (void)state;
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *s;
        assert_int_equal(ST(veil_b64_encode(VEIL_B64_STD, (const uint8_t *)plain[i], strlen(plain[i]), &s)), VEIL_OK);
        assert_string_equal(s, std[i]);
        free(s);
        assert_int_equal(ST(veil_b64_encode(VEIL_B64_URL, (const uint8_t *)plain[i], strlen(plain[i]), &s)), VEIL_OK);
        assert_string_equal(s, url[i]);
        free(s);
        struct veil_buf b = {0};
        assert_int_equal(ST(veil_b64_decode(VEIL_B64_STD, std[i], strlen(std[i]), 100, &b)), VEIL_OK);
        assert_int_equal(ST(veil_b64_decode(VEIL_B64_URL, url[i], strlen(url[i]), 100, &b)), VEIL_OK);
        assert_int_equal(b.size, 2 * strlen(plain[i]));
        assert_memory_equal(b.data, plain[i], strlen(plain[i]));
        veil_buf_cleanup(&b);
    }
    uint8_t all[3] = {0xfb, 0xff, 0xbf};
    char *s;
    assert_int_equal(ST(veil_b64_encode(VEIL_B64_URL, all, 3, &s)), VEIL_OK);
    assert_string_equal(s, "-_-_");
    free(s);
    assert_int_equal(ST(veil_b64_encode(VEIL_B64_STD, all, 3, &s)), VEIL_OK);
    assert_string_equal(s, "+/+/");
    free(s);
}

static void test_b64_strict(void **state)
{
    (void)state;
    static const struct {
        enum veil_b64 kind;
        const char *text;
        veil_status want;
    } bad[] = {
        {VEIL_B64_STD, "Zg=", VEIL_ERR_FORMAT},      /* not a multiple of 4 */
        {VEIL_B64_STD, "Zg", VEIL_ERR_FORMAT},       /* padding required */
        {VEIL_B64_STD, "Zh==", VEIL_ERR_FORMAT},     /* unused bits set */
        {VEIL_B64_STD, "Zm9=", VEIL_ERR_FORMAT},     /* unused bits set */
        {VEIL_B64_STD, "Z===", VEIL_ERR_FORMAT},     /* three pads */
        {VEIL_B64_STD, "====", VEIL_ERR_FORMAT},
        {VEIL_B64_STD, "Zg==Zg==", VEIL_ERR_FORMAT}, /* padding in the middle */
        {VEIL_B64_STD, "Zm9v\n", VEIL_ERR_FORMAT},   /* whitespace */
        {VEIL_B64_STD, "-_-_", VEIL_ERR_FORMAT},     /* url alphabet */
        {VEIL_B64_URL, "+/+/", VEIL_ERR_FORMAT},     /* std alphabet */
        {VEIL_B64_URL, "Zg==", VEIL_ERR_FORMAT},     /* padding */
        {VEIL_B64_URL, "Z", VEIL_ERR_FORMAT},        /* impossible length */
        {VEIL_B64_URL, "Zh", VEIL_ERR_FORMAT},       /* unused bits set */
        {VEIL_B64_URL, "Zm9vYg.", VEIL_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct veil_buf b = {0};
        assert_int_equal(ST(veil_buf_append(&b, "x", 1)), VEIL_OK);
        assert_int_equal(ST(veil_b64_decode(bad[i].kind, bad[i].text, strlen(bad[i].text), 100, &b)), bad[i].want);
        assert_int_equal(b.size, 1); /* unchanged on failure */
        veil_buf_cleanup(&b);
    }
    struct veil_buf b = {0};
    assert_int_equal(ST(veil_b64_decode(VEIL_B64_STD, "Zm9vYmFy", 8, 5, &b)), VEIL_ERR_LIMIT);
    assert_int_equal(ST(veil_b64_decode(VEIL_B64_URL, "Zm9vYmFy", 8, 6, &b)), VEIL_OK);
    /* A NUL inside the given length is a bad character, not an end. */
    assert_int_equal(ST(veil_b64_decode(VEIL_B64_URL, "Zm\0v", 4, 6, &b)), VEIL_ERR_FORMAT);
    veil_buf_cleanup(&b);
}

/* ---- JCS -------------------------------------------------------------------------------------------------- */

/* RFC 8785 section 3.2.2 (whitespace, literals, numbers and string escapes). */
static void test_jcs_rfc8785_example(void **state)
{
    (void)state;
    json_t *j = parse("{\"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],"
                      " \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\","
                      " \"literals\": [null, true, false]}");
    char *s = jcs_text(j);
    assert_string_equal(s, "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
                           "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
    free(s);
    json_decref(j);
}

/* RFC 8785 section 3.2.3: members sorted by UTF-16 code units (U+1F600 sorts before U+FB33). */
static void test_jcs_rfc8785_sorting(void **state)
{
    (void)state;
    json_t *j = parse("{\"\\u20ac\": \"Euro Sign\", \"\\r\": \"Carriage Return\", \"\\ufb33\": \"Hebrew\","
                      " \"1\": \"One\", \"\\ud83d\\ude00\": \"Emoji\", \"\\u0080\": \"Control\","
                      " \"\\u00f6\": \"o\"}");
    char *s = jcs_text(j);
    assert_string_equal(s, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\",\"\xc3\xb6\":\"o\","
                           "\"\xe2\x82\xac\":\"Euro Sign\",\"\xf0\x9f\x98\x80\":\"Emoji\",\"\xef\xac\xb3\":\"Hebrew\"}");
    free(s);
    json_decref(j);
}

/* RFC 8785 appendix B: IEEE 754 bit patterns and their ECMAScript text. */
static void test_jcs_numbers(void **state)
{
    (void)state;
    static const struct {
        uint64_t bits;
        const char *text;
    } v[] = {
        {0x0000000000000000, "0"},
        {0x8000000000000000, "0"},
        {0x0000000000000001, "5e-324"},
        {0x8000000000000001, "-5e-324"},
        {0x7fefffffffffffff, "1.7976931348623157e+308"},
        {0xffefffffffffffff, "-1.7976931348623157e+308"},
        {0x4340000000000000, "9007199254740992"},
        {0xc340000000000000, "-9007199254740992"},
        {0x4430000000000000, "295147905179352830000"},
        {0x44b52d02c7e14af5, "9.999999999999997e+22"},
        {0x44b52d02c7e14af6, "1e+23"},
        {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
        {0x444b1ae4d6e2ef4e, "999999999999999700000"},
        {0x444b1ae4d6e2ef4f, "999999999999999900000"},
        {0x444b1ae4d6e2ef50, "1e+21"},
        {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
        {0x3eb0c6f7a0b5ed8d, "0.000001"},
        {0x41b3de4355555553, "333333333.3333332"},
        {0x41b3de4355555554, "333333333.33333325"},
        {0x41b3de4355555555, "333333333.3333333"},
        {0x41b3de4355555556, "333333333.3333334"},
        {0x41b3de4355555557, "333333333.33333343"},
        {0xbecbf647612f3696, "-0.0000033333333333333333"},
        {0x43143ff3c1cb0959, "1424953923781206.2"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        double d;
        memcpy(&d, &v[i].bits, sizeof d);
        char buf[40];
        assert_int_equal(ST(veil_jcs_number(d, buf, sizeof buf)), VEIL_OK);
        assert_string_equal(buf, v[i].text);
    }
    char buf[40];
    assert_int_equal(ST(veil_jcs_number(0.0 / 0.0, buf, sizeof buf)), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(ST(veil_jcs_number(1.0 / 0.0, buf, sizeof buf)), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(ST(veil_jcs_number(1.0, buf, 8)), VEIL_ERR_ARG);
}

/* Trustee's unit test (attestation-service/src/lib.rs), reference section 1.3. */
static void test_jcs_trustee_vector(void **state)
{
    (void)state;
    json_t *j = parse("{\"b\":1,\"a\":\"test\",\"c\":{\"d\":\"e\"}}");
    char *s = jcs_text(j);
    assert_string_equal(s, "{\"a\":\"test\",\"b\":1,\"c\":{\"d\":\"e\"}}");
    uint8_t got[48], want[48];
    EVP_Digest(s, strlen(s), got, NULL, EVP_sha384(), NULL);
    unhex("e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3", want, 48);
    assert_memory_equal(got, want, 48);
    free(s);
    json_decref(j);
}

static void test_jcs_errors(void **state)
{
    (void)state;
    struct veil_buf b = {0};
    json_t *big = json_integer(9007199254740992LL);
    assert_int_equal(ST(veil_jcs_serialize(big, &b)), VEIL_ERR_UNSUPPORTED);
    json_decref(big);
    json_t *ok = json_integer(-9007199254740991LL);
    assert_int_equal(ST(veil_jcs_serialize(ok, &b)), VEIL_OK);
    json_decref(ok);
    assert_int_equal(b.size, strlen("-9007199254740991"));
    b.size = 0;
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < 70; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    assert_int_equal(ST(veil_jcs_serialize(deep, &b)), VEIL_ERR_LIMIT);
    assert_int_equal(b.size, 0); /* nothing half-written */
    json_decref(deep);
    json_t *bad = json_stringn_nocheck("\xc0\xaf", 2); /* overlong '/' */
    assert_int_equal(ST(veil_jcs_serialize(bad, &b)), VEIL_ERR_FORMAT);
    json_decref(bad);
    json_t *ctl = json_stringn("a\0\x1f\x7f", 4);
    assert_int_equal(ST(veil_jcs_serialize(ctl, &b)), VEIL_OK);
    assert_int_equal(ST(veil_buf_append_u8(&b, 0)), VEIL_OK);
    assert_string_equal((char *)b.data, "\"a\\u0000\\u001f\x7f\"");
    json_decref(ctl);
    veil_buf_cleanup(&b);
}

/* ---- report_data (reference section 1.3) ------------------------------------------------------------------ */

static void test_report_data_vectors(void **state)
{
    (void)state;
    json_t *jwk = parse(VEC_JWK);
    json_t *rd = json_pack("{s:O, s:s, s:s}", "tee-pubkey", jwk, "nonce", VEC_NONCE, "additional-evidence", "");
    char *s = jcs_text(rd);
    assert_string_equal(s, "{\"additional-evidence\":\"\",\"nonce\":\"" VEC_NONCE "\",\"tee-pubkey\":{\"alg\":"
                           "\"ECDH-ES+A256KW\",\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"" VEC_X "\",\"y\":\"" VEC_Y "\"}}");
    free(s);
    json_decref(rd);

    uint8_t want[48], digest[64], report[64];
    unhex("2a2ec23f833906e7ed2adf76866bd1116e1378223f4f388c86d1c3784aedca65e176c7feb1591cb6811b4c0d8a012056", want, 48);
    assert_int_equal(ST(veil_kbs_runtime_digest(VEC_NONCE, jwk, "", VEIL_KBS_HASH_SHA384, digest)), VEIL_OK);
    assert_memory_equal(digest, want, 48);
    char *b64;
    assert_int_equal(ST(veil_b64_encode(VEIL_B64_STD, digest, 48, &b64)), VEIL_OK);
    assert_string_equal(b64, "Ki7CP4M5BuftKt92hmvREW4TeCI/TziMhtHDeErtymXhdsf+sVkctoEbTA2KASBW"); /* sample evidence */
    free(b64);
    memset(report, 0xee, sizeof report);
    assert_int_equal(ST(veil_kbs_report_data(VEC_NONCE, jwk, "", VEIL_KBS_HASH_SHA384, report)), VEIL_OK);
    assert_memory_equal(report, want, 48);
    static const uint8_t zero[16];
    assert_memory_equal(report + 48, zero, 16);

    /* The device form: nonce and tee-pubkey only. */
    unhex("c33c8d5812da0dc09f6321d6675edfef3ff604ff9503964930018867dd68435395d01e739a12740c1985e6d7cd8db992", want, 48);
    assert_int_equal(ST(veil_kbs_runtime_digest(VEC_NONCE, jwk, NULL, VEIL_KBS_HASH_SHA384, digest)), VEIL_OK);
    assert_memory_equal(digest, want, 48);

    /* SHA-512 fills all 64 bytes; SHA-256 is padded. */
    assert_int_equal(ST(veil_kbs_report_data(VEC_NONCE, jwk, "", VEIL_KBS_HASH_SHA512, report)), VEIL_OK);
    assert_int_equal(ST(veil_kbs_report_data(VEC_NONCE, jwk, "", VEIL_KBS_HASH_SHA256, report)), VEIL_OK);
    assert_memory_equal(report + 32, zero, 16);
    assert_int_equal(ST(veil_kbs_report_data(VEC_NONCE, jwk, "", (enum veil_kbs_hash)9, report)), VEIL_ERR_ARG);
    assert_int_equal(ST(veil_kbs_report_data(NULL, jwk, "", VEIL_KBS_HASH_SHA384, report)), VEIL_ERR_ARG);
    json_t *notobj = json_string("x");
    assert_int_equal(ST(veil_kbs_report_data(VEC_NONCE, notobj, "", VEIL_KBS_HASH_SHA384, report)), VEIL_ERR_ARG);
    json_decref(notobj);
    json_decref(jwk);

    enum veil_kbs_hash h;
    assert_int_equal(ST(veil_kbs_hash_parse("sha512", &h)), VEIL_OK);
    assert_int_equal(h, VEIL_KBS_HASH_SHA512);
    assert_string_equal(veil_kbs_hash_name(h), "sha512");
    assert_int_equal(ST(veil_kbs_hash_parse("sm3", &h)), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(ST(veil_kbs_hash_parse("SHA384", &h)), VEIL_ERR_UNSUPPORTED);
}

/* ---- JWK -------------------------------------------------------------------------------------------------- */

static veil_status jwk_status(const char *text)
{
    json_t *j = parse(text);
    struct veil_jwk k = {0};
    veil_status st = ST(veil_jwk_parse(j, &k));
    veil_jwk_cleanup(&k);
    json_decref(j);
    return st;
}

static void test_jwk_parse_export(void **state)
{
    (void)state;
    json_t *j = parse(VEC_JWK);
    struct veil_jwk k = {0};
    assert_int_equal(ST(veil_jwk_parse(j, &k)), VEIL_OK);
    assert_int_equal(k.type, VEIL_JWK_EC_P256);
    json_t *out = NULL;
    assert_int_equal(ST(veil_jwk_export(&k, "ECDH-ES+A256KW", &out)), VEIL_OK);
    char *s = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(s, VEC_JWK); /* Trustee's member order */
    free(s);
    json_decref(out);
    veil_jwk_cleanup(&k);
    veil_jwk_cleanup(&k); /* idempotent */
    json_decref(j);

    static const enum veil_jwk_type types[] = {VEIL_JWK_EC_P256, VEIL_JWK_EC_P384, VEIL_JWK_EC_P521, VEIL_JWK_RSA};
    for (size_t i = 0; i < 4; i++) {
        struct veil_jwk g = {0}, p = {0};
        assert_int_equal(ST(veil_jwk_generate(types[i], &g)), VEIL_OK);
        assert_int_equal(g.type, types[i]);
        assert_int_equal(ST(veil_jwk_export(&g, NULL, &out)), VEIL_OK);
        assert_null(json_object_get(out, "alg"));
        assert_int_equal(ST(veil_jwk_parse(out, &p)), VEIL_OK);
        assert_int_equal(p.type, types[i]);
        assert_int_equal(EVP_PKEY_eq(g.pkey, p.pkey), 1);
        json_decref(out);
        veil_jwk_cleanup(&g);
        veil_jwk_cleanup(&p);
    }
    assert_int_equal(ST(veil_jwk_generate((enum veil_jwk_type)0, &k)), VEIL_ERR_ARG);
    assert_int_equal(ST(veil_jwk_adopt(NULL, &k)), VEIL_ERR_ARG);
    assert_int_equal(ST(veil_jwk_export(&k, NULL, &out)), VEIL_ERR_ARG);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_int_equal(ST(veil_jwk_adopt(ed, &k)), VEIL_ERR_UNSUPPORTED); /* and freed */
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    assert_int_equal(ST(veil_jwk_adopt(k1, &k)), VEIL_ERR_UNSUPPORTED);
}

static void test_jwk_rejects(void **state)
{
    (void)state;
    /* The section 1.3 point with y changed: not on the curve. */
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" VEC_X "\","
                                "\"y\":\"qWtHvGT_q8opJeYqxTiNO1OCsr77qRKpL-94G_wUfr1\"}"), VEIL_ERR_FORMAT);
    /* Coordinates of the wrong size, not base64url, missing. */
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"" VEC_X "\",\"y\":\"" VEC_Y "\"}"),
                     VEIL_ERR_FORMAT);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAEC\",\"y\":\"" VEC_Y "\"}"),
                     VEIL_ERR_FORMAT);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" VEC_X "=\",\"y\":\"" VEC_Y "\"}"),
                     VEIL_ERR_FORMAT);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" VEC_X "\"}"), VEIL_ERR_FORMAT);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":1,\"y\":\"" VEC_Y "\"}"),
                     VEIL_ERR_FORMAT);
    /* The identity-ish all-zero point. */
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                                "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}"), VEIL_ERR_FORMAT);
    /* Unknown kty / crv / alg; a private member; an unexpected member. */
    assert_int_equal(jwk_status("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"}"), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"secp256k1\",\"x\":\"" VEC_X "\",\"y\":\"" VEC_Y "\"}"),
                     VEIL_ERR_UNSUPPORTED);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"RSA-OAEP-256\",\"x\":\"" VEC_X "\","
                                "\"y\":\"" VEC_Y "\"}"), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":\"AA\",\"x\":\"" VEC_X "\","
                                "\"y\":\"" VEC_Y "\"}"), VEIL_ERR_FORMAT);
    assert_int_equal(jwk_status("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x5c\":[],\"x\":\"" VEC_X "\","
                                "\"y\":\"" VEC_Y "\"}"), VEIL_ERR_FORMAT);
    assert_int_equal(jwk_status("[1]"), VEIL_ERR_FORMAT);
    assert_int_equal(jwk_status("{\"crv\":\"P-256\"}"), VEIL_ERR_FORMAT);
    /* RSA: too small, leading zero, even or tiny exponent, RSA1_5. */
    struct veil_jwk g = {0};
    assert_int_equal(ST(veil_jwk_generate(VEIL_JWK_RSA, &g)), VEIL_OK);
    json_t *rsa = NULL;
    assert_int_equal(ST(veil_jwk_export(&g, "RSA-OAEP-256", &rsa)), VEIL_OK);
    const char *n = json_string_value(json_object_get(rsa, "n"));
    char text[1024];
    snprintf(text, sizeof text, "{\"kty\":\"RSA\",\"n\":\"AA%s\",\"e\":\"AQAB\"}", n); /* not a multiple of 4: */
    assert_int_equal(jwk_status(text), VEIL_ERR_FORMAT);                             /* leading zero after decode */
    snprintf(text, sizeof text, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAC\"}", n);
    assert_int_equal(jwk_status(text), VEIL_ERR_FORMAT);
    snprintf(text, sizeof text, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQ\"}", n);
    assert_int_equal(jwk_status(text), VEIL_ERR_FORMAT);
    snprintf(text, sizeof text, "{\"kty\":\"RSA\",\"alg\":\"RSA1_5\",\"n\":\"%s\",\"e\":\"AQAB\"}", n);
    assert_int_equal(jwk_status(text), VEIL_ERR_UNSUPPORTED);
    snprintf(text, sizeof text, "{\"kty\":\"RSA\",\"n\":\"%.300s\",\"e\":\"AQAB\"}", n); /* 1800 bits */
    assert_int_equal(jwk_status(text), VEIL_ERR_LIMIT);
    snprintf(text, sizeof text, "{\"kty\":\"RSA\",\"alg\":\"RSA-OAEP-256\",\"n\":\"%s\",\"e\":\"AQAB\"}", n);
    assert_int_equal(jwk_status(text), VEIL_OK);
    json_decref(rsa);
    veil_jwk_cleanup(&g);
}

/* ---- JWE -------------------------------------------------------------------------------------------------- */

/* Made by joserfc 1.8.0 for the section 1.3 key (epk in the per-recipient "header", as RFC 7516 libraries do). */
#define KAT_JWE                                                                                                    \
    "{\"protected\": \"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ\", \"iv\": \"ab0SnTIiKVB0FwWv\", "      \
    "\"ciphertext\": \"SvVDpTAHcmg\", \"tag\": \"lAvhfW21aRKsApXDwImaOw\", \"header\": {\"epk\": {\"crv\": \"P-256\", " \
    "\"x\": \"rH6fvMAfWwTWgl_WBol_D5ujpZ1-r0_mVNhs2D54QRA\", \"y\": \"WU35f6mWWsy4eErnpMjPaBLZHyaeU-1miGa7lqv--ps\", "  \
    "\"kty\": \"EC\"}}, \"encrypted_key\": \"-gnQar8yihjl-uJssOSiPbDJrhVGLCZSH_w1dJaRdat2QwmUskFgbQ\"}"

static veil_status jwe_status(const struct veil_jwk *k, const json_t *jwe)
{
    struct veil_buf out = {.wipe = 1};
    veil_status st = ST(veil_jwe_decrypt(k, jwe, &out));
    if (st != VEIL_OK)
        assert_int_equal(out.size, 0);
    veil_buf_cleanup(&out);
    return st;
}

static void test_jwe_kat(void **state)
{
    (void)state;
    struct veil_jwk k = {0};
    vector_keypair(&k);
    json_t *jwe = parse(KAT_JWE);
    struct veil_buf out = {.wipe = 1};
    assert_int_equal(ST(veil_jwe_decrypt(&k, jwe, &out)), VEIL_OK);
    assert_int_equal(out.size, 8);
    assert_memory_equal(out.data, "veil-kat", 8);
    veil_buf_cleanup(&out);
    /* The same epk also in "protected" would be a duplicate parameter. */
    json_t *dup = json_deep_copy(jwe);
    json_object_set_new(dup, "unprotected", json_pack("{s:s}", "kid", "a"));
    assert_int_equal(jwe_status(&k, dup), VEIL_OK);
    json_object_set_new(json_object_get(dup, "unprotected"), "epk", json_object());
    assert_int_equal(jwe_status(&k, dup), VEIL_ERR_FORMAT);
    json_object_set_new(dup, "unprotected", json_pack("{s:s}", "alg", "ECDH-ES+A256KW")); /* alg must be protected */
    assert_int_equal(jwe_status(&k, dup), VEIL_ERR_FORMAT);
    json_decref(dup);
    json_decref(jwe);
    veil_jwk_cleanup(&k);
}

static json_t *header_of(const json_t *jwe)
{
    const char *p = json_string_value(json_object_get(jwe, "protected"));
    struct veil_buf raw = {0};
    assert_int_equal(ST(veil_b64_decode(VEIL_B64_URL, p, strlen(p), 4096, &raw)), VEIL_OK);
    assert_int_equal(ST(veil_buf_append_u8(&raw, 0)), VEIL_OK);
    json_t *h = parse((char *)raw.data);
    /* The exact text Rust clients rebuild: compact, keys alg, enc, epk{crv,kty,x,y}. */
    char *again = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(again, (char *)raw.data);
    free(again);
    veil_buf_cleanup(&raw);
    return h;
}

static void test_jwe_round_trip(void **state)
{
    (void)state;
    static const enum veil_jwk_type types[] = {VEIL_JWK_EC_P256, VEIL_JWK_EC_P384, VEIL_JWK_EC_P521, VEIL_JWK_RSA};
    static const char *const crv[] = {"P-256", "P-384", "P-521", NULL};
    const uint8_t msg[32] = "0123456789abcdef0123456789abcdef";
    for (size_t i = 0; i < 4; i++) {
        struct veil_jwk k = {0}, pub = {0};
        assert_int_equal(ST(veil_jwk_generate(types[i], &k)), VEIL_OK);
        json_t *pj = NULL;
        assert_int_equal(ST(veil_jwk_export(&k, NULL, &pj)), VEIL_OK);
        assert_int_equal(ST(veil_jwk_parse(pj, &pub)), VEIL_OK);
        json_t *jwe = NULL;
        assert_int_equal(ST(veil_jwe_encrypt(&pub, msg, sizeof msg, &jwe)), VEIL_OK);
        char *order = NULL;
        const char *key;
        json_t *v;
        size_t n = 0;
        static const char *const want_order[] = {"protected", "encrypted_key", "iv", "ciphertext", "tag"};
        json_object_foreach(jwe, key, v) {
            assert_string_equal(key, want_order[n]);
            n++;
        }
        assert_int_equal(n, 5);
        (void)order;
        json_t *h = header_of(jwe);
        char *hs = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (crv[i] != NULL) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "{\"alg\":\"ECDH-ES+A256KW\",\"enc\":\"A256GCM\",\"epk\":{\"crv\":\"%s\","
                     "\"kty\":\"EC\",\"x\":\"", crv[i]);
            assert_memory_equal(hs, prefix, strlen(prefix));
        } else {
            assert_string_equal(hs, "{\"alg\":\"RSA-OAEP-256\",\"enc\":\"A256GCM\"}");
        }
        free(hs);
        json_decref(h);
        struct veil_buf out = {.wipe = 1};
        assert_int_equal(ST(veil_jwe_decrypt(&k, jwe, &out)), VEIL_OK);
        assert_int_equal(out.size, sizeof msg);
        assert_memory_equal(out.data, msg, sizeof msg);
        veil_buf_cleanup(&out);
        /* Decrypting needs the private key. */
        assert_int_not_equal(jwe_status(&pub, jwe), VEIL_OK);
        json_decref(jwe);
        json_decref(pj);
        veil_jwk_cleanup(&k);
        veil_jwk_cleanup(&pub);
    }
    /* An empty plaintext is a valid JWE. */
    struct veil_jwk k = {0};
    assert_int_equal(ST(veil_jwk_generate(VEIL_JWK_EC_P256, &k)), VEIL_OK);
    json_t *jwe = NULL;
    assert_int_equal(ST(veil_jwe_encrypt(&k, NULL, 0, &jwe)), VEIL_OK);
    assert_int_equal(jwe_status(&k, jwe), VEIL_OK);
    json_decref(jwe);
    assert_int_equal(ST(veil_jwe_encrypt(NULL, msg, 1, &jwe)), VEIL_ERR_ARG);
    assert_int_equal(ST(veil_jwe_encrypt(&k, msg, VEIL_JWE_MAX_SIZE + 1u, &jwe)), VEIL_ERR_LIMIT);
    veil_jwk_cleanup(&k);
}

/* Replaces member key of a copy of jwe with a string, or removes it (value NULL). */
static json_t *with(const json_t *jwe, const char *key, const char *value)
{
    json_t *c = json_deep_copy(jwe);
    if (value == NULL)
        json_object_del(c, key);
    else
        json_object_set_new(c, key, json_string(value));
    return c;
}

static char *b64url(const char *text)
{
    char *s;
    assert_int_equal(ST(veil_b64_encode(VEIL_B64_URL, (const uint8_t *)text, strlen(text), &s)), VEIL_OK);
    return s;
}

/* Flips one bit of the decoded member key (keeps the encoding canonical). */
static json_t *flip(const json_t *jwe, const char *key, size_t byte)
{
    const char *s = json_string_value(json_object_get(jwe, key));
    struct veil_buf b = {0};
    assert_int_equal(ST(veil_b64_decode(VEIL_B64_URL, s, strlen(s), 1 << 20, &b)), VEIL_OK);
    b.data[byte % b.size] ^= 1;
    char *e;
    assert_int_equal(ST(veil_b64_encode(VEIL_B64_URL, b.data, b.size, &e)), VEIL_OK);
    json_t *c = with(jwe, key, e);
    free(e);
    veil_buf_cleanup(&b);
    return c;
}

static void check_tampering(const struct veil_jwk *k, const json_t *jwe, int ecdh)
{
    static const struct {
        const char *key;
        veil_status want;
    } flips[] = {{"ciphertext", VEIL_ERR_AUTH}, {"tag", VEIL_ERR_AUTH}, {"iv", VEIL_ERR_AUTH},
                 {"encrypted_key", VEIL_ERR_KEY}};
    for (size_t i = 0; i < 4; i++) {
        json_t *c = flip(jwe, flips[i].key, 3);
        assert_int_equal(jwe_status(k, c), flips[i].want);
        json_decref(c);
    }
    /* The same header with another key order or spacing: the AAD differs, GCM refuses. */
    json_t *h = header_of(jwe);
    char *reordered = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS | JSON_INDENT(1));
    char *p = b64url(reordered);
    json_t *c = with(jwe, "protected", p);
    assert_int_equal(jwe_status(k, c), VEIL_ERR_AUTH);
    json_decref(c);
    free(p);
    free(reordered);
    static const struct {
        const char *key;
        const char *value;
        veil_status want;
    } members[] = {
        {"enc", "\"A128GCM\"", VEIL_ERR_UNSUPPORTED},
        {"alg", "\"dir\"", VEIL_ERR_UNSUPPORTED},
        {"alg", "\"RSA1_5\"", VEIL_ERR_UNSUPPORTED},
        {"zip", "\"DEF\"", VEIL_ERR_UNSUPPORTED},
        {"crit", "[\"exp\"]", VEIL_ERR_UNSUPPORTED},
        {"x5u", "\"http://x\"", VEIL_ERR_FORMAT},
        {"enc", "7", VEIL_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        json_t *h2 = json_deep_copy(h);
        json_object_set_new(h2, members[i].key, parse(members[i].value));
        char *t = json_dumps(h2, JSON_COMPACT);
        char *pp = b64url(t);
        json_t *c2 = with(jwe, "protected", pp);
        assert_int_equal(jwe_status(k, c2), members[i].want);
        json_decref(c2);
        free(pp);
        free(t);
        json_decref(h2);
    }
    if (ecdh) { /* epk on another curve, epk not a point */
        json_t *h2 = json_deep_copy(h);
        json_object_set_new(h2, "epk", parse("{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}"));
        char *t = json_dumps(h2, JSON_COMPACT);
        char *pp = b64url(t);
        json_t *c2 = with(jwe, "protected", pp);
        assert_int_equal(jwe_status(k, c2), VEIL_ERR_FORMAT);
        json_decref(c2);
        free(pp);
        free(t);
        json_object_del(h2, "epk");
        t = json_dumps(h2, JSON_COMPACT);
        pp = b64url(t);
        c2 = with(jwe, "protected", pp);
        assert_int_equal(jwe_status(k, c2), VEIL_ERR_FORMAT);
        json_decref(c2);
        free(pp);
        free(t);
        json_decref(h2);
    }
    json_decref(h);
}

static void test_jwe_errors(void **state)
{
    (void)state;
    for (int ecdh = 0; ecdh <= 1; ecdh++) {
        struct veil_jwk k = {0}, other = {0};
        enum veil_jwk_type t = ecdh ? VEIL_JWK_EC_P256 : VEIL_JWK_RSA;
        assert_int_equal(ST(veil_jwk_generate(t, &k)), VEIL_OK);
        assert_int_equal(ST(veil_jwk_generate(t, &other)), VEIL_OK);
        json_t *jwe = NULL;
        assert_int_equal(ST(veil_jwe_encrypt(&k, (const uint8_t *)"secret", 6, &jwe)), VEIL_OK);
        assert_int_equal(jwe_status(&k, jwe), VEIL_OK);
        assert_int_equal(jwe_status(&other, jwe), VEIL_ERR_KEY); /* wrong recipient */
        check_tampering(&k, jwe, ecdh);
        static const char *const required[] = {"protected", "encrypted_key", "iv", "ciphertext", "tag"};
        for (size_t i = 0; i < 5; i++) {
            json_t *c = with(jwe, required[i], NULL);
            assert_int_equal(jwe_status(&k, c), VEIL_ERR_FORMAT);
            json_decref(c);
        }
        json_t *c = with(jwe, "iv", "AAAA"); /* 3 bytes */
        assert_int_equal(jwe_status(&k, c), VEIL_ERR_FORMAT);
        json_decref(c);
        c = with(jwe, "tag", "AAAAAAAAAAAAAAAAAAAAAA=="); /* padded */
        assert_int_equal(jwe_status(&k, c), VEIL_ERR_FORMAT);
        json_decref(c);
        c = with(jwe, "recipients", "x");
        assert_int_equal(jwe_status(&k, c), VEIL_ERR_FORMAT);
        json_decref(c);
        c = with(jwe, "protected", "bm90IGpzb24"); /* "not json" */
        assert_int_equal(jwe_status(&k, c), VEIL_ERR_FORMAT);
        json_decref(c);
        c = with(jwe, "aad", "YWFk"); /* extra AAD that was not authenticated */
        assert_int_equal(jwe_status(&k, c), VEIL_ERR_AUTH);
        json_decref(c);
        json_t *arr = json_array();
        assert_int_equal(jwe_status(&k, arr), VEIL_ERR_FORMAT);
        json_decref(arr);
        /* An EC JWE offered to an RSA key (and vice versa): alg mismatch. */
        struct veil_jwk cross = {0};
        assert_int_equal(ST(veil_jwk_generate(ecdh ? VEIL_JWK_RSA : VEIL_JWK_EC_P256, &cross)), VEIL_OK);
        assert_int_equal(jwe_status(&cross, jwe), VEIL_ERR_UNSUPPORTED);
        /* A P-384 recipient gets a P-256 epk. */
        if (ecdh) {
            struct veil_jwk p384 = {0};
            assert_int_equal(ST(veil_jwk_generate(VEIL_JWK_EC_P384, &p384)), VEIL_OK);
            assert_int_equal(jwe_status(&p384, jwe), VEIL_ERR_FORMAT);
            veil_jwk_cleanup(&p384);
        }
        veil_jwk_cleanup(&cross);
        json_decref(jwe);
        veil_jwk_cleanup(&k);
        veil_jwk_cleanup(&other);
    }
}

/* ---- JWT -------------------------------------------------------------------------------------------------- */

/* Made by joserfc 1.8.0 with the section 1.3 key: header {"typ":"JWT","alg":"ES256"},
 * claims {"iss":"kat","iat":1700000000,"exp":2000000000}. */
#define KAT_JWT                                                                                                    \
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJrYXQiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MjAwMDAwMDAwMH0."       \
    "YHUCoqIVpdjVsOvyJZJP8L4Nxf71YQi_od5UzER3BC6jHlbsWmegMwUhT2bAthjqG_DnloSL08HnqTc05zsx4A"

static veil_status jwt_status(const struct veil_jwk *k, const char *token, int64_t now, int64_t leeway)
{
    json_t *claims = NULL;
    veil_status st = ST(veil_jwt_verify_es256(k, token, now, leeway, &claims));
    assert_true((st == VEIL_OK) == (claims != NULL));
    json_decref(claims);
    return st;
}

/* A token with the given header text and claims text, signed properly by k. */
static char *forge(const struct veil_jwk *k, const char *header, const char *claims)
{
    char *h = b64url(header), *c = b64url(claims);
    size_t n = strlen(h) + strlen(c) + 2;
    char *msg = malloc(n + 100);
    snprintf(msg, n, "%s.%s", h, c);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[80], raw[64];
    size_t der_size = sizeof der;
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->pkey), 1);
    assert_int_equal(EVP_DigestSign(md, der, &der_size, (const uint8_t *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(md);
    assert_int_equal(ST(veil_ecdsa_der_to_raw(der, der_size, 32, raw)), VEIL_OK);
    char *s;
    assert_int_equal(ST(veil_b64_encode(VEIL_B64_URL, raw, 64, &s)), VEIL_OK);
    strcat(msg, ".");
    strcat(msg, s);
    free(s);
    free(h);
    free(c);
    return msg;
}

static void test_jwt_kat(void **state)
{
    (void)state;
    struct veil_jwk k = {0};
    vector_keypair(&k);
    json_t *claims = NULL;
    assert_int_equal(ST(veil_jwt_verify_es256(&k, KAT_JWT, 1800000000, 0, &claims)), VEIL_OK);
    assert_string_equal(json_string_value(json_object_get(claims, "iss")), "kat");
    json_decref(claims);
    assert_int_equal(jwt_status(&k, KAT_JWT, 2000000000, 0), VEIL_ERR_EXPIRED); /* exp is exclusive */
    assert_int_equal(jwt_status(&k, KAT_JWT, 1999999999, 0), VEIL_OK);
    assert_int_equal(jwt_status(&k, KAT_JWT, 2000000009, 10), VEIL_OK);
    assert_int_equal(jwt_status(&k, KAT_JWT, 1699999999, 0), VEIL_ERR_EXPIRED); /* iat in the future */
    assert_int_equal(jwt_status(&k, KAT_JWT, 1699999999, 1), VEIL_OK);
    veil_jwk_cleanup(&k);
}

static void test_jwt_sign_verify(void **state)
{
    (void)state;
    struct veil_jwk k = {0}, other = {0}, p384 = {0};
    assert_int_equal(ST(veil_jwk_generate(VEIL_JWK_EC_P256, &k)), VEIL_OK);
    assert_int_equal(ST(veil_jwk_generate(VEIL_JWK_EC_P256, &other)), VEIL_OK);
    assert_int_equal(ST(veil_jwk_generate(VEIL_JWK_EC_P384, &p384)), VEIL_OK);
    json_t *c = parse("{\"eat_profile\":\"x\",\"iat\":100,\"nbf\":100,\"exp\":400}");
    char *t = NULL;
    assert_int_equal(ST(veil_jwt_sign_es256(&k, "key-1", c, &t)), VEIL_OK);
    char *dot = strchr(t, '.');
    char *hb = b64url("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"key-1\"}");
    assert_memory_equal(t, hb, (size_t)(dot - t));
    free(hb);
    json_t *got = NULL;
    assert_int_equal(ST(veil_jwt_verify_es256(&k, t, 200, 0, &got)), VEIL_OK);
    assert_true(json_equal(got, c));
    json_decref(got);
    assert_int_equal(jwt_status(&other, t, 200, 0), VEIL_ERR_VERIFY);
    assert_int_equal(jwt_status(&p384, t, 200, 0), VEIL_ERR_ARG);
    assert_int_equal(jwt_status(&k, t, 99, 0), VEIL_ERR_EXPIRED);  /* nbf */
    assert_int_equal(jwt_status(&k, t, 400, 0), VEIL_ERR_EXPIRED); /* exp */
    assert_int_equal(jwt_status(&k, t, 200, -1), VEIL_ERR_ARG);
    /* Tampering: payload, signature, header. */
    char *tt = strdup(t);
    tt[strlen(tt) - 5] ^= 1;
    assert_int_not_equal(jwt_status(&k, tt, 200, 0), VEIL_OK);
    free(tt);
    tt = strdup(t);
    dot = strchr(tt, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    assert_int_not_equal(jwt_status(&k, tt, 200, 0), VEIL_OK);
    free(tt);
    free(t);
    assert_int_equal(ST(veil_jwt_sign_es256(&p384, NULL, c, &t)), VEIL_ERR_ARG);
    json_t *arr = json_array();
    assert_int_equal(ST(veil_jwt_sign_es256(&k, NULL, arr, &t)), VEIL_ERR_ARG);
    json_decref(arr);
    json_decref(c);

    /* Headers and claims signed with the right key but refused. */
    static const struct {
        const char *header, *claims;
        veil_status want;
    } forged[] = {
        {"{\"alg\":\"ES256\"}", "{\"exp\":400}", VEIL_OK},
        {"{\"alg\":\"none\"}", "{\"exp\":400}", VEIL_ERR_UNSUPPORTED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"exp\":400}", VEIL_ERR_UNSUPPORTED},
        {"{\"alg\":\"es256\"}", "{\"exp\":400}", VEIL_ERR_UNSUPPORTED},
        {"{\"typ\":\"JWT\"}", "{\"exp\":400}", VEIL_ERR_FORMAT},
        {"{\"alg\":\"ES256\",\"typ\":\"JOSE\"}", "{\"exp\":400}", VEIL_ERR_FORMAT},
        {"{\"alg\":\"ES256\",\"crit\":[\"b64\"],\"b64\":false}", "{\"exp\":400}", VEIL_ERR_UNSUPPORTED},
        {"{\"alg\":\"ES256\",\"alg\":\"ES256\"}", "{\"exp\":400}", VEIL_ERR_FORMAT},
        {"{\"alg\":\"ES256\"}", "{}", VEIL_ERR_FORMAT},
        {"{\"alg\":\"ES256\"}", "{\"exp\":\"400\"}", VEIL_ERR_FORMAT},
        {"{\"alg\":\"ES256\"}", "{\"exp\":400.5}", VEIL_ERR_FORMAT},
        {"{\"alg\":\"ES256\"}", "{\"exp\":-9223372036854775807}", VEIL_ERR_EXPIRED},
        {"{\"alg\":\"ES256\"}", "{\"exp\":400,\"nbf\":9223372036854775807}", VEIL_ERR_EXPIRED},
        {"{\"alg\":\"ES256\"}", "[1]", VEIL_ERR_FORMAT},
        {"{\"alg\":\"ES256\"}", "{\"exp\":400", VEIL_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        char *f = forge(&k, forged[i].header, forged[i].claims);
        assert_int_equal(jwt_status(&k, f, 200, 0), forged[i].want);
        free(f);
    }
    /* Shapes. */
    static const char *const shapes[] = {"", "abc", "a.b", "a.b.c.d", "..", "eyJhbGciOiJFUzI1NiJ9..AAAA",
                                         "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        assert_int_equal(jwt_status(&k, shapes[i], 200, 0), VEIL_ERR_FORMAT);
    char *huge = malloc(VEIL_JWT_MAX_SIZE + 2);
    memset(huge, 'A', VEIL_JWT_MAX_SIZE + 1);
    huge[VEIL_JWT_MAX_SIZE + 1] = '\0';
    assert_int_equal(jwt_status(&k, huge, 200, 0), VEIL_ERR_LIMIT);
    free(huge);
    veil_jwk_cleanup(&k);
    veil_jwk_cleanup(&other);
    veil_jwk_cleanup(&p384);
}

static void test_ecdsa_conversion(void **state)
{
    (void)state;
    uint8_t raw[64], raw2[64];
    for (int i = 0; i < 64; i++)
        raw[i] = (uint8_t)(i < 32 ? (i == 0 ? 0 : i) : 0xff - i); /* r with a leading zero byte */
    struct veil_buf der = {0};
    assert_int_equal(ST(veil_ecdsa_raw_to_der(raw, 64, &der)), VEIL_OK);
    assert_int_equal(der.data[0], 0x30);
    assert_int_equal(ST(veil_ecdsa_der_to_raw(der.data, der.size, 32, raw2)), VEIL_OK);
    assert_memory_equal(raw, raw2, 64);
    assert_int_equal(ST(veil_ecdsa_der_to_raw(der.data, der.size - 1, 32, raw2)), VEIL_ERR_FORMAT);
    assert_int_equal(ST(veil_ecdsa_der_to_raw(der.data, der.size, 16, raw2)), VEIL_ERR_FORMAT); /* too big */
    uint8_t trailing[128];
    memcpy(trailing, der.data, der.size);
    trailing[der.size] = 0;
    assert_int_equal(ST(veil_ecdsa_der_to_raw(trailing, der.size + 1, 32, raw2)), VEIL_ERR_FORMAT);
    assert_int_equal(ST(veil_ecdsa_raw_to_der(raw, 63, &der)), VEIL_ERR_FORMAT);
    assert_int_equal(ST(veil_ecdsa_raw_to_der(raw, 0, &der)), VEIL_ERR_FORMAT);
    veil_buf_cleanup(&der);
}

/* ---- RCAR ------------------------------------------------------------------------------------------------- */

static veil_status request_status(const char *body)
{
    struct veil_rcar_request r = {0};
    veil_status st = ST(veil_rcar_request_parse((const uint8_t *)body, strlen(body), &r));
    veil_rcar_request_cleanup(&r);
    return st;
}

static void test_rcar_request(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(ST(veil_rcar_request_build("tdx", &j)), VEIL_OK);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(s, "{\"version\":\"0.4.0\",\"tee\":\"tdx\",\"extra-params\":{\"supported-hash-algorithms\":"
                           "[\"sha256\",\"sha384\",\"sha512\"]}}");
    struct veil_rcar_request r = {0};
    assert_int_equal(ST(veil_rcar_request_parse((const uint8_t *)s, strlen(s), &r)), VEIL_OK);
    assert_string_equal(r.tee, "tdx");
    assert_true(json_is_object(r.extra_params));
    veil_rcar_request_cleanup(&r);
    free(s);
    json_decref(j);
    assert_int_equal(ST(veil_rcar_request_build("x86", &j)), VEIL_ERR_UNSUPPORTED);
    /* guest-components' exact body; Trustee's "" extra-params; absent extra-params. */
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"sample\",\"extra-params\":{\"supported-hash-"
                                    "algorithms\":[\"sha256\",\"sha384\",\"sha512\",\"sm3\"]}}"), VEIL_OK);
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"az-snp-vtpm\",\"extra-params\":\"\"}"), VEIL_OK);
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"snp\"}"), VEIL_OK);
    assert_int_equal(request_status("{\"version\":\"0.1.1\",\"tee\":\"snp\"}"), VEIL_ERR_VERSION);
    assert_int_equal(request_status("{\"version\":\"0.4.0 \",\"tee\":\"snp\"}"), VEIL_ERR_VERSION);
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"SNP\"}"), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"snp\",\"x\":1}"), VEIL_ERR_FORMAT);
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"snp\",\"tee\":\"tdx\"}"), VEIL_ERR_FORMAT);
    assert_int_equal(request_status("{\"version\":4,\"tee\":\"snp\"}"), VEIL_ERR_FORMAT);
    assert_int_equal(request_status("{\"tee\":\"snp\"}"), VEIL_ERR_FORMAT);
    assert_int_equal(request_status("[]"), VEIL_ERR_FORMAT);
    assert_int_equal(request_status(""), VEIL_ERR_FORMAT);
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"snp\"} x"), VEIL_ERR_FORMAT);
    assert_int_equal(request_status("{\"version\":\"0.4.0\",\"tee\":\"sn\\u0000p\"}"), VEIL_ERR_FORMAT);
    uint8_t dummy = '{';
    assert_int_equal(ST(veil_rcar_request_parse(&dummy, VEIL_RCAR_MAX_BODY_SIZE + 1u, &r)), VEIL_ERR_LIMIT);
    assert_int_equal(ST(veil_rcar_tee_check(NULL)), VEIL_ERR_UNSUPPORTED);
}

static veil_status challenge_status(const char *body, enum veil_kbs_hash *hash)
{
    struct veil_rcar_challenge c = {0};
    veil_status st = ST(veil_rcar_challenge_parse((const uint8_t *)body, strlen(body), &c));
    if (st == VEIL_OK && hash != NULL)
        *hash = c.hash;
    veil_rcar_challenge_cleanup(&c);
    return st;
}

static void test_rcar_challenge(void **state)
{
    (void)state;
    char nonce[45], nonce2[45];
    assert_int_equal(ST(veil_rcar_nonce_generate(nonce)), VEIL_OK);
    assert_int_equal(ST(veil_rcar_nonce_generate(nonce2)), VEIL_OK);
    assert_int_equal(strlen(nonce), 44);
    assert_string_not_equal(nonce, nonce2);
    json_t *j = NULL;
    assert_int_equal(ST(veil_rcar_challenge_build(nonce, &j)), VEIL_OK);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char want[128];
    snprintf(want, sizeof want, "{\"nonce\":\"%s\",\"extra-params\":\"\"}", nonce);
    assert_string_equal(s, want);
    struct veil_rcar_challenge c = {0};
    assert_int_equal(ST(veil_rcar_challenge_parse((const uint8_t *)s, strlen(s), &c)), VEIL_OK);
    assert_string_equal(c.nonce, nonce);
    assert_int_equal(c.hash, VEIL_KBS_HASH_SHA384);
    veil_rcar_challenge_cleanup(&c);
    free(s);
    json_decref(j);
    assert_int_equal(ST(veil_rcar_challenge_build("", &j)), VEIL_ERR_FORMAT);
    assert_int_equal(ST(veil_rcar_challenge_build(NULL, &j)), VEIL_ERR_ARG);
    enum veil_kbs_hash h = 0;
    assert_int_equal(challenge_status("{\"nonce\":\"abc\",\"extra-params\":{\"selected-hash-algorithm\":\"sha512\"}}",
                                      &h), VEIL_OK);
    assert_int_equal(h, VEIL_KBS_HASH_SHA512);
    assert_int_equal(challenge_status("{\"nonce\":\"abc\",\"extra-params\":{}}", &h), VEIL_OK);
    assert_int_equal(h, VEIL_KBS_HASH_SHA384);
    assert_int_equal(challenge_status("{\"nonce\":\"abc\"}", NULL), VEIL_OK);
    assert_int_equal(challenge_status("{\"nonce\":\"abc\",\"extra-params\":{\"selected-hash-algorithm\":\"md5\"}}",
                                      NULL), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(challenge_status("{\"nonce\":\"abc\",\"extra-params\":{\"selected-hash-algorithm\":1}}", NULL),
                     VEIL_ERR_FORMAT);
    assert_int_equal(challenge_status("{\"nonce\":\"abc\",\"extra-params\":\"x\"}", NULL), VEIL_ERR_FORMAT);
    assert_int_equal(challenge_status("{\"nonce\":\"\"}", NULL), VEIL_ERR_FORMAT);
    assert_int_equal(challenge_status("{\"nonce\":\"a b\"}", NULL), VEIL_ERR_FORMAT);
    assert_int_equal(challenge_status("{\"nonce\":\"\\u00e9\"}", NULL), VEIL_ERR_FORMAT);
    assert_int_equal(challenge_status("{\"nonce\":7}", NULL), VEIL_ERR_FORMAT);
    assert_int_equal(challenge_status("{\"extra-params\":\"\"}", NULL), VEIL_ERR_FORMAT);
    assert_int_equal(challenge_status("{\"nonce\":\"a\",\"x\":1}", NULL), VEIL_ERR_FORMAT);
    char *long_nonce = malloc(VEIL_RCAR_MAX_NONCE_SIZE + 32);
    snprintf(long_nonce, 13, "{\"nonce\":\"");
    memset(long_nonce + 10, 'a', VEIL_RCAR_MAX_NONCE_SIZE + 1);
    strcpy(long_nonce + 11 + VEIL_RCAR_MAX_NONCE_SIZE, "\"}");
    assert_int_equal(challenge_status(long_nonce, NULL), VEIL_ERR_FORMAT);
    long_nonce[11 + VEIL_RCAR_MAX_NONCE_SIZE - 1] = '"';
    strcpy(long_nonce + 11 + VEIL_RCAR_MAX_NONCE_SIZE, "}");
    assert_int_equal(challenge_status(long_nonce, NULL), VEIL_OK);
    free(long_nonce);
}

static veil_status attestation_status(const char *body)
{
    struct veil_rcar_attestation a = {0};
    veil_status st = ST(veil_rcar_attestation_parse((const uint8_t *)body, strlen(body), &a));
    veil_rcar_attestation_cleanup(&a);
    return st;
}

#define ATT_RD "\"runtime-data\":{\"nonce\":\"" VEC_NONCE "\",\"tee-pubkey\":" VEC_JWK "}"
#define ATT_EV "\"tee-evidence\":{\"primary_evidence\":{\"svn\":\"1\"},\"additional_evidence\":\"\"}"

static void test_rcar_attestation(void **state)
{
    (void)state;
    json_t *jwk = parse(VEC_JWK), *ev = parse("{\"svn\":\"1\",\"report_data\":\"x\"}"), *j = NULL;
    assert_int_equal(ST(veil_rcar_attestation_build(VEC_NONCE, jwk, ev, NULL, &j)), VEIL_OK);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    struct veil_rcar_attestation a = {0};
    assert_int_equal(ST(veil_rcar_attestation_parse((const uint8_t *)s, strlen(s), &a)), VEIL_OK);
    assert_string_equal(a.nonce, VEC_NONCE);
    assert_string_equal(a.additional_evidence, "");
    assert_int_equal(a.hash, VEIL_KBS_HASH_SHA384);
    assert_int_equal(a.tee_pubkey.type, VEIL_JWK_EC_P256);
    assert_null(a.init_data);
    assert_true(json_equal(a.primary_evidence, ev));
    /* The broker's binding from the parsed message equals the section 1.3 vector. */
    uint8_t digest[64], want[48];
    assert_int_equal(ST(veil_kbs_runtime_digest(a.nonce, a.tee_pubkey_json, a.additional_evidence, a.hash, digest)),
                     VEIL_OK);
    unhex("2a2ec23f833906e7ed2adf76866bd1116e1378223f4f388c86d1c3784aedca65e176c7feb1591cb6811b4c0d8a012056", want, 48);
    assert_memory_equal(digest, want, 48);
    veil_rcar_attestation_cleanup(&a);
    veil_rcar_attestation_cleanup(&a);
    free(s);
    json_decref(j);
    assert_int_equal(ST(veil_rcar_attestation_build("", jwk, ev, NULL, &j)), VEIL_ERR_FORMAT);
    assert_int_equal(ST(veil_rcar_attestation_build(VEC_NONCE, ev, NULL, NULL, &j)), VEIL_ERR_ARG);
    json_decref(jwk);
    json_decref(ev);

    static const struct {
        const char *body;
        veil_status want;
    } cases[] = {
        {"{" ATT_RD "," ATT_EV "}", VEIL_OK},
        {"{\"init-data\":null," ATT_RD "," ATT_EV "}", VEIL_OK},
        {"{\"init-data\":{\"format\":\"toml\",\"body\":\"a=1\"}," ATT_RD "," ATT_EV "}", VEIL_OK},
        {"{\"runtime-data-hash-algorithm\":\"sha512\"," ATT_RD "," ATT_EV "}", VEIL_OK},
        {"{" ATT_RD ",\"tee-evidence\":{\"primary_evidence\":{}}}", VEIL_OK},
        {"{\"init-data\":{\"format\":\"json\",\"body\":\"{}\"}," ATT_RD "," ATT_EV "}", VEIL_ERR_UNSUPPORTED},
        {"{\"init-data\":{\"format\":\"toml\"}," ATT_RD "," ATT_EV "}", VEIL_ERR_FORMAT},
        {"{\"init-data\":\"x\"," ATT_RD "," ATT_EV "}", VEIL_ERR_FORMAT},
        {"{\"runtime-data-hash-algorithm\":\"sm3\"," ATT_RD "," ATT_EV "}", VEIL_ERR_UNSUPPORTED},
        {"{" ATT_EV "}", VEIL_ERR_FORMAT},
        {"{" ATT_RD "}", VEIL_ERR_FORMAT},
        {"{" ATT_RD "," ATT_EV ",\"tee-pubkey\":{}}", VEIL_ERR_FORMAT}, /* the obsolete top-level shape */
        {"{\"runtime-data\":{\"nonce\":\"" VEC_NONCE "\"}," ATT_EV "}", VEIL_ERR_FORMAT},
        {"{\"runtime-data\":{\"nonce\":\"" VEC_NONCE "\",\"tee-pubkey\":" VEC_JWK ",\"x\":1}," ATT_EV "}",
         VEIL_ERR_FORMAT},
        {"{\"runtime-data\":{\"nonce\":\"\",\"tee-pubkey\":" VEC_JWK "}," ATT_EV "}", VEIL_ERR_FORMAT},
        {"{\"runtime-data\":{\"nonce\":\"n\",\"tee-pubkey\":{\"kty\":\"EC\"}}," ATT_EV "}", VEIL_ERR_FORMAT},
        {"{\"runtime-data\":\"x\"," ATT_EV "}", VEIL_ERR_FORMAT},
        {"{" ATT_RD ",\"tee-evidence\":\"{}\"}", VEIL_ERR_FORMAT},
        {"{" ATT_RD ",\"tee-evidence\":{\"primary_evidence\":\"q\"}}", VEIL_ERR_FORMAT},
        {"{" ATT_RD ",\"tee-evidence\":{\"primary_evidence\":{},\"additional_evidence\":{}}}", VEIL_ERR_FORMAT},
        {"{" ATT_RD ",\"tee-evidence\":{\"primary_evidence\":{},\"extra\":1}}", VEIL_ERR_FORMAT},
        {"{" ATT_RD "," ATT_EV "," ATT_EV "}", VEIL_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (attestation_status(cases[i].body) != cases[i].want)
            fail_msg("case %zu: got %d want %d (%s)", i, attestation_status(cases[i].body), cases[i].want,
                     veil_last_error());
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_rfc4648),       cmocka_unit_test(test_b64_strict),
        cmocka_unit_test(test_jcs_rfc8785_example), cmocka_unit_test(test_jcs_rfc8785_sorting),
        cmocka_unit_test(test_jcs_numbers),       cmocka_unit_test(test_jcs_trustee_vector),
        cmocka_unit_test(test_jcs_errors),        cmocka_unit_test(test_report_data_vectors),
        cmocka_unit_test(test_jwk_parse_export),  cmocka_unit_test(test_jwk_rejects),
        cmocka_unit_test(test_jwe_kat),           cmocka_unit_test(test_jwe_round_trip),
        cmocka_unit_test(test_jwe_errors),        cmocka_unit_test(test_jwt_kat),
        cmocka_unit_test(test_jwt_sign_verify),   cmocka_unit_test(test_ecdsa_conversion),
        cmocka_unit_test(test_rcar_request),      cmocka_unit_test(test_rcar_challenge),
        cmocka_unit_test(test_rcar_attestation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
