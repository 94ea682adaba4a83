/* SPDX-License-Identifier: Apache-2.0 */
/* Compact JWTs (RFC 7519) signed ES256 (RFC 7518 section 3.4): the KBS attestation token. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include "core/base64.h"
#include "core/json.h"
#include "core/limits.h"
#include "crypto/ossl_defer.h"
#include "protocol/jose.h"

#define ES256_FIELD_SIZE 32u
#define ES256_SIG_SIZE 64u

static void str_done(char **s)
{
    free(*s);
}

/* ---- signature format ------------------------------------------------------------------------------------- */

VEIL_RESULT veil_ecdsa_der_to_raw(const uint8_t *der, size_t der_size, size_t field_size, uint8_t *raw)
{
    VEIL_ENSURE(der_size <= 256 && field_size > 0 && field_size <= 66, VEIL_ERR_ARG, "bad ECDSA signature sizes");
    const uint8_t *p = der;
    VEIL_DEFER(veil_ossl_ecdsa_sig_done) ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_size);
    VEIL_ENSURE(sig != NULL && p == der + der_size, VEIL_ERR_FORMAT, "not a DER ECDSA signature");
    const BIGNUM *r = ECDSA_SIG_get0_r(sig), *s = ECDSA_SIG_get0_s(sig);
    VEIL_ENSURE(BN_bn2binpad(r, raw, (int)field_size) == (int)field_size &&
                    BN_bn2binpad(s, raw + field_size, (int)field_size) == (int)field_size,
                VEIL_ERR_FORMAT, "ECDSA signature value larger than the field");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_size, struct veil_buf *der)
{
    VEIL_ENSURE(raw_size > 0 && raw_size % 2 == 0 && raw_size <= 132, VEIL_ERR_FORMAT,
                "raw ECDSA signature of %zu bytes", raw_size);
    size_t half = raw_size / 2;
    VEIL_DEFER(veil_ossl_ecdsa_sig_done) ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL), *s = BN_bin2bn(raw + half, (int)half, NULL);
    if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        VEIL_BAIL(VEIL_ERR_NOMEM, "out of memory");
    }
    int n = i2d_ECDSA_SIG(sig, NULL);
    VEIL_ENSURE(n > 0, VEIL_ERR_CRYPTO, "i2d_ECDSA_SIG");
    VEIL_GUARD(veil_buf_reserve(der, (size_t)n));
    uint8_t *p = der->data + der->size;
    VEIL_ENSURE(i2d_ECDSA_SIG(sig, &p) == n, VEIL_ERR_CRYPTO, "i2d_ECDSA_SIG");
    der->size += (size_t)n;
    return VEIL_RESULT_OK;
}

/* ---- sign ------------------------------------------------------------------------------------------------- */

static VEIL_RESULT append_b64url(struct veil_buf *out, const void *data, size_t size)
{
    VEIL_DEFER(str_done) char *s = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_URL, data, size, &s));
    return veil_buf_append(out, s, strlen(s));
}

static VEIL_RESULT append_json_b64url(struct veil_buf *out, const json_t *j)
{
    VEIL_DEFER(str_done) char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "cannot serialize JWT part");
    return append_b64url(out, s, strlen(s));
}

static VEIL_RESULT jwt_header(const char *kid, json_t **out)
{
    json_t *h = json_pack("{s:s, s:s}", "alg", "ES256", "typ", "JWT");
    VEIL_ENSURE(h != NULL, VEIL_ERR_NOMEM, "out of memory");
    if (kid != NULL && json_object_set_new(h, "kid", json_string(kid)) != 0) {
        json_decref(h);
        VEIL_BAIL(VEIL_ERR_ARG, "kid is not valid UTF-8");
    }
    *out = h;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT es256_sign(EVP_PKEY *pkey, const uint8_t *msg, size_t size, uint8_t raw[ES256_SIG_SIZE])
{
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey), VEIL_ERR_CRYPTO);
    uint8_t der[128];
    size_t der_size = sizeof der;
    VEIL_GUARD_OSSL(EVP_DigestSign(md, der, &der_size, msg, size), VEIL_ERR_CRYPTO);
    return veil_ecdsa_der_to_raw(der, der_size, ES256_FIELD_SIZE, raw);
}

VEIL_RESULT veil_jwt_sign_es256(const struct veil_jwk *key, const char *kid, const json_t *claims, char **out)
{
    VEIL_ENSURE(key != NULL && key->pkey != NULL && key->type == VEIL_JWK_EC_P256, VEIL_ERR_ARG,
                "ES256 needs a P-256 key");
    VEIL_ENSURE(json_is_object(claims), VEIL_ERR_ARG, "JWT claims must be a JSON object");
    VEIL_DEFER(veil_json_done) json_t *header = NULL;
    VEIL_GUARD(jwt_header(kid, &header));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf t = {0};
    VEIL_GUARD(append_json_b64url(&t, header));
    VEIL_GUARD(veil_buf_append_u8(&t, '.'));
    VEIL_GUARD(append_json_b64url(&t, claims));
    uint8_t sig[ES256_SIG_SIZE];
    VEIL_GUARD(es256_sign(key->pkey, t.data, t.size, sig));
    VEIL_GUARD(veil_buf_append_u8(&t, '.'));
    VEIL_GUARD(append_b64url(&t, sig, sizeof sig));
    VEIL_GUARD(veil_buf_append_u8(&t, '\0'));
    size_t size = 0;
    veil_buf_release(&t, (uint8_t **)out, &size);
    return VEIL_RESULT_OK;
}

/* ---- verify ----------------------------------------------------------------------------------------------- */

struct jwt_parts {
    const char *header, *payload, *sig; /* into the token */
    size_t header_len, payload_len, sig_len;
};

/* Exactly three non-empty dot-separated parts (the signature may not be empty for ES256 either). */
static VEIL_RESULT split(const char *token, size_t len, struct jwt_parts *p)
{
    const char *d1 = memchr(token, '.', len);
    VEIL_ENSURE(d1 != NULL, VEIL_ERR_FORMAT, "JWT has no '.'");
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    VEIL_ENSURE(d2 != NULL, VEIL_ERR_FORMAT, "JWT has only two parts");
    VEIL_ENSURE(memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) == NULL, VEIL_ERR_FORMAT,
                "JWT has more than three parts (a JWE?)");
    *p = (struct jwt_parts){token, d1 + 1, d2 + 1, (size_t)(d1 - token), (size_t)(d2 - d1 - 1),
                            len - (size_t)(d2 + 1 - token)};
    VEIL_ENSURE(p->header_len > 0 && p->payload_len > 0 && p->sig_len > 0, VEIL_ERR_FORMAT, "JWT has an empty part");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT decode_json(const char *b64, size_t len, size_t max, const char *what, json_t **out)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf raw = {0};
    VEIL_GUARD(veil_b64_decode(VEIL_B64_URL, b64, len, max, &raw));
    return veil_json_load_object(raw.data, raw.size, max, VEIL_ERR_FORMAT, what, out);
}

static VEIL_RESULT check_header(const json_t *h)
{
    static const char *const members[] = {"alg", "typ", "kid", "jwk", NULL};
    const char *alg = NULL;
    VEIL_GUARD(veil_json_string(h, "alg", 1, VEIL_ERR_FORMAT, "JWT header", &alg));
    VEIL_ENSURE(strcmp(alg, "ES256") == 0, VEIL_ERR_UNSUPPORTED, "JWT alg \"%.16s\" is not ES256", alg);
    VEIL_ENSURE(json_object_get(h, "crit") == NULL, VEIL_ERR_UNSUPPORTED, "JWT header: \"crit\" is not supported");
    VEIL_GUARD(veil_json_only_keys(h, members, VEIL_ERR_FORMAT, "JWT header"));
    const json_t *typ = json_object_get(h, "typ");
    VEIL_ENSURE(typ == NULL || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0), VEIL_ERR_FORMAT,
                "JWT header: typ must be \"JWT\"");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT es256_verify(EVP_PKEY *pkey, const struct jwt_parts *p)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf raw = {0};
    struct veil_result r = veil_b64_decode(VEIL_B64_URL, p->sig, p->sig_len, ES256_SIG_SIZE, &raw);
    VEIL_ENSURE(veil_ok(r) && raw.size == ES256_SIG_SIZE, VEIL_ERR_FORMAT, "JWT signature is not 64 bytes");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf der = {0};
    VEIL_GUARD(veil_ecdsa_raw_to_der(raw.data, raw.size, &der));
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey), VEIL_ERR_CRYPTO);
    size_t signed_len = p->header_len + 1 + p->payload_len;
    VEIL_GUARD_OSSL(EVP_DigestVerify(md, der.data, der.size, (const uint8_t *)p->header, signed_len), VEIL_ERR_VERIFY);
    return VEIL_RESULT_OK;
}

/* A NumericDate member as an integer; *present 0 when absent. */
static VEIL_RESULT numeric_date(const json_t *claims, const char *key, int64_t *out, int *present)
{
    const json_t *v = json_object_get(claims, key);
    *present = v != NULL;
    if (v == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_integer(v), VEIL_ERR_FORMAT, "JWT claim \"%s\" must be an integer", key);
    *out = (int64_t)json_integer_value(v);
    return VEIL_RESULT_OK;
}

/* Fails unless later - earlier < slack (strict) or <= slack, computed without overflow. */
static VEIL_RESULT within(int64_t later, int64_t earlier, int64_t slack, int strict, const char *what)
{
    if (later < earlier)
        return VEIL_RESULT_OK;
    int64_t d;
    VEIL_ENSURE(!__builtin_sub_overflow(later, earlier, &d) && (strict ? d < slack : d <= slack), VEIL_ERR_EXPIRED,
                "%s", what);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_times(const json_t *claims, int64_t now, int64_t leeway)
{
    int64_t exp = 0, nbf = 0, iat = 0;
    int has_exp, has_nbf, has_iat;
    VEIL_GUARD(numeric_date(claims, "exp", &exp, &has_exp));
    VEIL_GUARD(numeric_date(claims, "nbf", &nbf, &has_nbf));
    VEIL_GUARD(numeric_date(claims, "iat", &iat, &has_iat));
    VEIL_ENSURE(has_exp, VEIL_ERR_FORMAT, "JWT has no \"exp\" claim");
    /* RFC 7519 4.1.4: "the current date/time MUST be before the expiration date/time" (then: < exp + leeway). */
    VEIL_GUARD(within(now, exp, leeway, 1, "JWT expired"));
    if (has_nbf) /* 4.1.5: "MUST be after or equal to the not-before date/time" */
        VEIL_GUARD(within(nbf, now, leeway, 0, "JWT not valid yet (nbf)"));
    if (has_iat)
        VEIL_GUARD(within(iat, now, leeway, 0, "JWT issued in the future (iat)"));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_jwt_verify_es256(const struct veil_jwk *key, const char *token, int64_t now, int64_t leeway_s,
                                  json_t **claims)
{
    VEIL_ENSURE(key != NULL && key->pkey != NULL && key->type == VEIL_JWK_EC_P256, VEIL_ERR_ARG,
                "ES256 needs a P-256 key");
    VEIL_ENSURE(token != NULL && claims != NULL, VEIL_ERR_ARG, "no JWT given");
    VEIL_ENSURE(leeway_s >= 0 && leeway_s <= 86400, VEIL_ERR_ARG, "leeway out of range");
    size_t len = strnlen(token, VEIL_JWT_MAX_SIZE + 1);
    VEIL_ENSURE(len <= VEIL_JWT_MAX_SIZE, VEIL_ERR_LIMIT, "JWT longer than %u bytes", VEIL_JWT_MAX_SIZE);
    struct jwt_parts p = {0};
    VEIL_GUARD(split(token, len, &p));
    VEIL_DEFER(veil_json_done) json_t *header = NULL;
    VEIL_GUARD(decode_json(p.header, p.header_len, VEIL_JOSE_MAX_HEADER_SIZE, "JWT header", &header));
    VEIL_GUARD(check_header(header));
    VEIL_GUARD(es256_verify(key->pkey, &p));
    VEIL_DEFER(veil_json_done) json_t *payload = NULL;
    VEIL_GUARD(decode_json(p.payload, p.payload_len, VEIL_JWT_MAX_SIZE, "JWT claims", &payload));
    VEIL_GUARD(check_times(payload, now, leeway_s));
    *claims = payload;
    payload = NULL;
    return VEIL_RESULT_OK;
}
