/* SPDX-License-Identifier: Apache-2.0 */
/* JWKs (RFC 7517/7518 section 6) for the keys RCAR uses: EC P-256/P-384/P-521 and RSA public keys. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "core/base64.h"
#include "core/json.h"
#include "core/limits.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"
#include "protocol/jose.h"

static const struct veil_jwk_curve curves[] = {
    {VEIL_JWK_EC_P256, "P-256", SN_X9_62_prime256v1, 32},
    {VEIL_JWK_EC_P384, "P-384", SN_secp384r1, 48},
    {VEIL_JWK_EC_P521, "P-521", SN_secp521r1, 66},
};

static enum veil_ec_curve ec_curve(const struct veil_jwk_curve *c)
{
    return (enum veil_ec_curve)(c - curves); /* the table's order is veil_ec_curve's */
}

const struct veil_jwk_curve *veil_jwk_curve_of(enum veil_jwk_type type)
{
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
        if (curves[i].type == type)
            return &curves[i];
    return NULL;
}

static const struct veil_jwk_curve *curve_by_jose_name(const char *crv)
{
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
        if (strcmp(curves[i].jose_name, crv) == 0)
            return &curves[i];
    return NULL;
}

static const struct veil_jwk_curve *curve_by_ossl_name(const char *name)
{
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
        if (strcmp(curves[i].ossl_name, name) == 0)
            return &curves[i];
    return NULL;
}

void veil_jwk_init(struct veil_jwk *k)
{
    k->type = 0;
    k->pkey = NULL;
}

void veil_jwk_cleanup(struct veil_jwk *k)
{
    EVP_PKEY_free(k->pkey);
    veil_jwk_init(k);
}

/* ---- adopt and generate ----------------------------------------------------------------------------------- */

static VEIL_RESULT classify(EVP_PKEY *pkey, enum veil_jwk_type *type)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        VEIL_ENSURE(bits >= (int)VEIL_JWK_RSA_MIN_BITS && bits <= (int)VEIL_JWK_RSA_MAX_BITS, VEIL_ERR_LIMIT,
                    "RSA key of %d bits (allowed: %u to %u)", bits, VEIL_JWK_RSA_MIN_BITS, VEIL_JWK_RSA_MAX_BITS);
        *type = VEIL_JWK_RSA;
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(EVP_PKEY_is_a(pkey, "EC"), VEIL_ERR_UNSUPPORTED, "key is neither EC nor RSA");
    char name[64];
    size_t len = 0;
    VEIL_GUARD_OSSL(EVP_PKEY_get_group_name(pkey, name, sizeof name, &len), VEIL_ERR_UNSUPPORTED);
    const struct veil_jwk_curve *c = curve_by_ossl_name(name);
    VEIL_ENSURE(c != NULL, VEIL_ERR_UNSUPPORTED, "EC curve %.32s is not P-256, P-384 or P-521", name);
    *type = c->type;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_jwk_adopt(EVP_PKEY *pkey, struct veil_jwk *out)
{
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *owned = pkey;
    VEIL_ENSURE(pkey != NULL, VEIL_ERR_ARG, "no key given");
    enum veil_jwk_type type = 0;
    VEIL_GUARD(classify(pkey, &type));
    out->type = type;
    out->pkey = owned;
    owned = NULL;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_jwk_generate(enum veil_jwk_type type, struct veil_jwk *out)
{
    EVP_PKEY *pkey;
    if (type == VEIL_JWK_RSA) {
        pkey = EVP_RSA_gen(2048);
    } else {
        const struct veil_jwk_curve *c = veil_jwk_curve_of(type);
        VEIL_ENSURE(c != NULL, VEIL_ERR_ARG, "unknown key type %d", (int)type);
        VEIL_GUARD(veil_ec_generate(ec_curve(c), &pkey));
    }
    VEIL_ENSURE(pkey != NULL, VEIL_ERR_CRYPTO, "key generation failed");
    return veil_jwk_adopt(pkey, out);
}

/* ---- parse ------------------------------------------------------------------------------------------------ */

static VEIL_RESULT pkey_fromdata(const char *kind, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
    VEIL_DEFER(veil_ossl_params_done) OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    VEIL_ENSURE(params != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_DEFER(veil_ossl_pkey_ctx_done) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, kind, NULL);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_CRYPTO, "no %s support", kind);
    VEIL_GUARD_OSSL(EVP_PKEY_fromdata_init(ctx), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params), VEIL_ERR_FORMAT);
    return VEIL_RESULT_OK;
}

/* OpenSSL's full public-key check (RSA). EC points are checked by veil_ec_public_from_point: on the curve and not
 * infinity, which with cofactor 1 is all the full check's extra scalar multiplication by the order proves. */
static VEIL_RESULT public_check(EVP_PKEY *pkey)
{
    VEIL_DEFER(veil_ossl_pkey_ctx_done) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_PKEY_public_check(ctx), VEIL_ERR_FORMAT);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_ec(const json_t *jwk, struct veil_jwk *out)
{
    static const char *const members[] = {"kty", "crv", "alg", "x", "y", "kid", "use", NULL};
    VEIL_GUARD(veil_json_only_keys(jwk, members, VEIL_ERR_FORMAT, "EC JWK"));
    const char *crv = NULL;
    VEIL_GUARD(veil_json_string(jwk, "crv", 1, VEIL_ERR_FORMAT, "EC JWK", &crv));
    const struct veil_jwk_curve *c = curve_by_jose_name(crv);
    VEIL_ENSURE(c != NULL, VEIL_ERR_UNSUPPORTED, "EC JWK: curve \"%.16s\" is not supported", crv);
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf point = {0};
    VEIL_GUARD(veil_buf_append_u8(&point, 0x04));
    size_t fs = c->field_size;
    VEIL_GUARD(veil_json_b64(jwk, "x", VEIL_B64_URL, 1, fs, fs, VEIL_ERR_FORMAT, "EC JWK", &point, NULL));
    VEIL_GUARD(veil_json_b64(jwk, "y", VEIL_B64_URL, 1, fs, fs, VEIL_ERR_FORMAT, "EC JWK", &point, NULL));
    struct veil_result r = veil_ec_public_from_point(ec_curve(c), point.data, point.size, &out->pkey);
    VEIL_ENSURE(veil_ok(r), VEIL_ERR_FORMAT, "EC JWK: the point is not on curve %s", c->jose_name);
    out->type = c->type;
    return VEIL_RESULT_OK;
}

/* A big-endian unsigned integer member: no leading zero byte (RFC 7518 section 6.3.1.1), at most max bytes. */
static VEIL_RESULT rsa_member(const json_t *jwk, const char *key, size_t max, BIGNUM **out)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_json_b64(jwk, key, VEIL_B64_URL, 1, 1, max, VEIL_ERR_FORMAT, "RSA JWK", &b, NULL));
    VEIL_ENSURE(b.data[0] != 0, VEIL_ERR_FORMAT, "RSA JWK: \"%s\" has a leading zero byte", key);
    *out = BN_bin2bn(b.data, (int)b.size, NULL);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT rsa_numbers(const json_t *jwk, BIGNUM **n, BIGNUM **e)
{
    VEIL_GUARD(rsa_member(jwk, "n", VEIL_JWK_RSA_MAX_BITS / 8 + 1, n));
    VEIL_GUARD(rsa_member(jwk, "e", 8, e));
    int bits = BN_num_bits(*n);
    VEIL_ENSURE(bits >= (int)VEIL_JWK_RSA_MIN_BITS && bits <= (int)VEIL_JWK_RSA_MAX_BITS, VEIL_ERR_LIMIT,
                "RSA JWK: modulus of %d bits (allowed: %u to %u)", bits, VEIL_JWK_RSA_MIN_BITS, VEIL_JWK_RSA_MAX_BITS);
    VEIL_ENSURE(BN_is_odd(*n), VEIL_ERR_FORMAT, "RSA JWK: even modulus");
    VEIL_ENSURE(BN_is_odd(*e) && !BN_is_one(*e), VEIL_ERR_FORMAT, "RSA JWK: exponent must be odd and >= 3");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_rsa(const json_t *jwk, struct veil_jwk *out)
{
    static const char *const members[] = {"kty", "alg", "n", "e", "kid", "use", NULL};
    VEIL_GUARD(veil_json_only_keys(jwk, members, VEIL_ERR_FORMAT, "RSA JWK"));
    VEIL_DEFER(veil_ossl_bn_done) BIGNUM *n = NULL;
    VEIL_DEFER(veil_ossl_bn_done) BIGNUM *e = NULL;
    VEIL_GUARD(rsa_numbers(jwk, &n, &e));
    VEIL_DEFER(veil_ossl_param_bld_done) OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    VEIL_ENSURE(bld != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), VEIL_ERR_NOMEM);
    VEIL_GUARD_OSSL(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), VEIL_ERR_NOMEM);
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *pkey = NULL;
    VEIL_GUARD(pkey_fromdata("RSA", bld, &pkey));
    VEIL_GUARD(public_check(pkey));
    out->type = VEIL_JWK_RSA;
    out->pkey = pkey;
    pkey = NULL;
    return VEIL_RESULT_OK;
}

/* "alg", when present, must be one this library uses with that key type. */
static VEIL_RESULT check_alg(const json_t *jwk, enum veil_jwk_type type)
{
    const json_t *v = json_object_get(jwk, "alg");
    if (v == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_string(v), VEIL_ERR_FORMAT, "JWK: \"alg\" must be a string");
    const char *alg = json_string_value(v);
    if (type == VEIL_JWK_RSA)
        VEIL_ENSURE(strcmp(alg, VEIL_JWE_ALG_RSA) == 0, VEIL_ERR_UNSUPPORTED,
                    "RSA JWK: alg \"%.32s\" is not RSA-OAEP-256", alg);
    else
        VEIL_ENSURE(strcmp(alg, VEIL_JWE_ALG_ECDH) == 0 || (type == VEIL_JWK_EC_P256 && strcmp(alg, "ES256") == 0),
                    VEIL_ERR_UNSUPPORTED, "EC JWK: alg \"%.32s\" is not ECDH-ES+A256KW", alg);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_jwk_parse(const json_t *jwk, struct veil_jwk *out)
{
    VEIL_ENSURE(json_is_object(jwk), VEIL_ERR_FORMAT, "JWK is not a JSON object");
    const char *kty = NULL;
    VEIL_GUARD(veil_json_string(jwk, "kty", 1, VEIL_ERR_FORMAT, "JWK", &kty));
    struct veil_jwk k;
    veil_jwk_init(&k);
    if (strcmp(kty, "EC") == 0)
        VEIL_GUARD(parse_ec(jwk, &k));
    else if (strcmp(kty, "RSA") == 0)
        VEIL_GUARD(parse_rsa(jwk, &k));
    else
        VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "JWK: kty \"%.16s\" is not EC or RSA", kty);
    struct veil_result r = check_alg(jwk, k.type);
    if (!veil_ok(r)) {
        veil_jwk_cleanup(&k);
        return r;
    }
    *out = k;
    return VEIL_RESULT_OK;
}

/* ---- export ----------------------------------------------------------------------------------------------- */

static VEIL_RESULT set_b64url(json_t *obj, const char *key, const uint8_t *data, size_t size)
{
    char *s = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_URL, data, size, &s));
    int rc = json_object_set_new(obj, key, json_string(s));
    free(s);
    VEIL_ENSURE(rc == 0, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT set_string(json_t *obj, const char *key, const char *value)
{
    VEIL_ENSURE(json_object_set_new(obj, key, json_string(value)) == 0, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

/* A BIGNUM parameter as big-endian bytes: padded to pad bytes, or minimal when pad is 0. */
static VEIL_RESULT bn_param(const EVP_PKEY *pkey, const char *name, size_t pad, struct veil_buf *out)
{
    VEIL_DEFER(veil_ossl_bn_done) BIGNUM *bn = NULL;
    VEIL_GUARD_OSSL(EVP_PKEY_get_bn_param(pkey, name, &bn), VEIL_ERR_CRYPTO);
    size_t size = pad != 0 ? pad : (size_t)BN_num_bytes(bn);
    VEIL_ENSURE(size > 0 && (size_t)BN_num_bytes(bn) <= size, VEIL_ERR_INTERNAL, "key parameter too large");
    VEIL_GUARD(veil_buf_reserve(out, size));
    VEIL_ENSURE(BN_bn2binpad(bn, out->data + out->size, (int)size) == (int)size, VEIL_ERR_CRYPTO, "BN_bn2binpad");
    out->size += size;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_jwk_ec_point(const struct veil_jwk *k, struct veil_buf *xy)
{
    const struct veil_jwk_curve *c = veil_jwk_curve_of(k->type);
    VEIL_ENSURE(c != NULL && k->pkey != NULL, VEIL_ERR_ARG, "not an EC key");
    uint8_t point[1 + 2 * 66];
    size_t n = 0;
    VEIL_GUARD_OSSL(EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, sizeof point,
                                                    &n),
                    VEIL_ERR_CRYPTO);
    VEIL_ENSURE(n == 1 + 2 * c->field_size && point[0] == 0x04, VEIL_ERR_INTERNAL, "EC point not uncompressed");
    return veil_buf_append(xy, point + 1, n - 1);
}

static VEIL_RESULT export_ec(const struct veil_jwk *k, const char *alg, json_t *obj)
{
    const struct veil_jwk_curve *c = veil_jwk_curve_of(k->type);
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf xy = {0};
    VEIL_GUARD(veil_jwk_ec_point(k, &xy));
    VEIL_GUARD(set_string(obj, "kty", "EC"));
    VEIL_GUARD(set_string(obj, "crv", c->jose_name));
    if (alg != NULL)
        VEIL_GUARD(set_string(obj, "alg", alg));
    VEIL_GUARD(set_b64url(obj, "x", xy.data, c->field_size));
    return set_b64url(obj, "y", xy.data + c->field_size, c->field_size);
}

static VEIL_RESULT export_rsa(const struct veil_jwk *k, const char *alg, json_t *obj)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf n = {0};
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf e = {0};
    VEIL_GUARD(bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_N, 0, &n));
    VEIL_GUARD(bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_E, 0, &e));
    VEIL_GUARD(set_string(obj, "kty", "RSA"));
    if (alg != NULL)
        VEIL_GUARD(set_string(obj, "alg", alg));
    VEIL_GUARD(set_b64url(obj, "n", n.data, n.size));
    return set_b64url(obj, "e", e.data, e.size);
}

VEIL_RESULT veil_jwk_export(const struct veil_jwk *k, const char *alg, json_t **out)
{
    VEIL_ENSURE(k != NULL && k->pkey != NULL, VEIL_ERR_ARG, "no key given");
    VEIL_DEFER(veil_json_done) json_t *obj = json_object();
    VEIL_ENSURE(obj != NULL, VEIL_ERR_NOMEM, "out of memory");
    if (k->type == VEIL_JWK_RSA)
        VEIL_GUARD(export_rsa(k, alg, obj));
    else
        VEIL_GUARD(export_ec(k, alg, obj));
    *out = obj;
    obj = NULL;
    return VEIL_RESULT_OK;
}
