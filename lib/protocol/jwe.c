/* SPDX-License-Identifier: Apache-2.0 */
/* Flattened JWE (RFC 7516 section 7.2.2) as the Trustee KBS sends resources (reference section 1.4):
 * alg ECDH-ES+A256KW (RFC 7518 section 4.6) or RSA-OAEP-256 (section 4.3), enc A256GCM (section 5.3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rsa.h>

#include "core/base64.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"
#include "protocol/jose.h"

#define JWE_IV_SIZE 12u
#define JWE_TAG_SIZE 16u
#define JWE_MAX_Z_SIZE 66u /* P-521 */
#define JWE_MAX_PARTY_INFO 256u

static void cek_wipe(uint8_t (*k)[VEIL_JWE_CEK_SIZE])
{
    veil_wipe(*k, sizeof *k);
}

static void z_wipe(uint8_t (*z)[JWE_MAX_Z_SIZE])
{
    veil_wipe(*z, sizeof *z);
}

static void str_done(char **s)
{
    free(*s);
}

/* ---- ECDH-ES+A256KW key agreement and key wrap ------------------------------------------------------------ */

/* Z: the x-coordinate of own_private * peer, padded to the field size (RFC 7518 section 4.6.2). */
static VEIL_RESULT ecdh(EVP_PKEY *own, EVP_PKEY *peer, uint8_t z[JWE_MAX_Z_SIZE], size_t *z_size)
{
    VEIL_DEFER(veil_ossl_pkey_ctx_done) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, own, NULL);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_PKEY_derive_init(ctx), VEIL_ERR_CRYPTO);
    /* The peer key was checked when it was imported (veil_jwk_parse: on the curve, not infinity, cofactor 1) or
     * made here: checking it again on every derivation would double the cost of an ECDH. */
    VEIL_GUARD_OSSL(EVP_PKEY_derive_set_peer_ex(ctx, peer, 0), VEIL_ERR_KEY);
    *z_size = JWE_MAX_Z_SIZE;
    VEIL_GUARD_OSSL(EVP_PKEY_derive(ctx, z, z_size), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT digest_be32(EVP_MD_CTX *md, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, b, 4), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

/* A length-prefixed datum of the Concat KDF's OtherInfo (NIST SP 800-56A section 5.8.1). */
static VEIL_RESULT digest_datum(EVP_MD_CTX *md, const uint8_t *data, size_t size)
{
    VEIL_GUARD(digest_be32(md, (uint32_t)size));
    if (size > 0)
        VEIL_GUARD_OSSL(EVP_DigestUpdate(md, data, size), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

struct party_info {
    struct veil_buf apu, apv;
};

/* KEK = SHA-256(be32(1) || Z || AlgorithmID || PartyUInfo || PartyVInfo || be32(256)): one round is enough for
 * the 256-bit key A256KW needs. */
static VEIL_RESULT concat_kdf(const uint8_t *z, size_t z_size, const struct party_info *pi,
                              uint8_t kek[VEIL_JWE_CEK_SIZE])
{
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestInit_ex(md, EVP_sha256(), NULL), VEIL_ERR_CRYPTO);
    VEIL_GUARD(digest_be32(md, 1));
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, z, z_size), VEIL_ERR_CRYPTO);
    VEIL_GUARD(digest_datum(md, (const uint8_t *)VEIL_JWE_ALG_ECDH, strlen(VEIL_JWE_ALG_ECDH)));
    VEIL_GUARD(digest_datum(md, pi->apu.data, pi->apu.size));
    VEIL_GUARD(digest_datum(md, pi->apv.data, pi->apv.size));
    VEIL_GUARD(digest_be32(md, 256));
    unsigned int n = 0;
    VEIL_GUARD_OSSL(EVP_DigestFinal_ex(md, kek, &n), VEIL_ERR_CRYPTO);
    VEIL_ENSURE(n == VEIL_JWE_CEK_SIZE, VEIL_ERR_INTERNAL, "SHA-256 gave %u bytes", n);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT derive_kek(EVP_PKEY *own, EVP_PKEY *peer, const struct party_info *pi,
                              uint8_t kek[VEIL_JWE_CEK_SIZE])
{
    VEIL_DEFER(z_wipe) uint8_t z[JWE_MAX_Z_SIZE];
    size_t z_size = 0;
    VEIL_GUARD(ecdh(own, peer, z, &z_size));
    return concat_kdf(z, z_size, pi, kek);
}

/* RFC 3394 AES-256 key wrap of the CEK (encrypt) or unwrap (decrypt). VEIL_ERR_KEY when the unwrap check fails. */
static VEIL_RESULT aes_kw(const uint8_t kek[VEIL_JWE_CEK_SIZE], int encrypt, const uint8_t *in, size_t in_size,
                          uint8_t *out, size_t out_size)
{
    VEIL_DEFER(veil_ossl_cipher_ctx_done) EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    VEIL_GUARD_OSSL(EVP_CipherInit_ex(ctx, EVP_aes_256_wrap(), NULL, kek, NULL, encrypt), VEIL_ERR_CRYPTO);
    int n = 0, fin = 0;
    if (EVP_CipherUpdate(ctx, out, &n, in, (int)in_size) != 1 || EVP_CipherFinal_ex(ctx, out + n, &fin) != 1 ||
        (size_t)n + (size_t)fin != out_size) {
        veil_wipe(out, out_size);
        return veil_error_raise_ossl(encrypt ? VEIL_ERR_CRYPTO : VEIL_ERR_KEY, __FILE__, __LINE__,
                                     "AES key wrap of the JWE content key");
    }
    return VEIL_RESULT_OK;
}

/* ---- RSA-OAEP-256 ------------------------------------------------------------------------------------------ */

static VEIL_RESULT oaep_ctx(EVP_PKEY *pkey, int encrypt, EVP_PKEY_CTX **out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = ctx;
    VEIL_GUARD_OSSL(encrypt ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT oaep_encrypt(EVP_PKEY *pkey, const uint8_t cek[VEIL_JWE_CEK_SIZE], struct veil_buf *out)
{
    VEIL_DEFER(veil_ossl_pkey_ctx_done) EVP_PKEY_CTX *ctx = NULL;
    VEIL_GUARD(oaep_ctx(pkey, 1, &ctx));
    size_t n = 0;
    VEIL_GUARD_OSSL(EVP_PKEY_encrypt(ctx, NULL, &n, cek, VEIL_JWE_CEK_SIZE), VEIL_ERR_CRYPTO);
    VEIL_GUARD(veil_buf_reserve(out, n));
    VEIL_GUARD_OSSL(EVP_PKEY_encrypt(ctx, out->data + out->size, &n, cek, VEIL_JWE_CEK_SIZE), VEIL_ERR_CRYPTO);
    out->size += n;
    return VEIL_RESULT_OK;
}

/* Any failure, including a well-formed plaintext of the wrong size, is the same VEIL_ERR_KEY. */
static VEIL_RESULT oaep_decrypt(EVP_PKEY *pkey, const struct veil_buf *wrapped, uint8_t cek[VEIL_JWE_CEK_SIZE])
{
    VEIL_DEFER(veil_ossl_pkey_ctx_done) EVP_PKEY_CTX *ctx = NULL;
    VEIL_GUARD(oaep_ctx(pkey, 0, &ctx));
    VEIL_ENSURE(wrapped->size == (size_t)EVP_PKEY_get_size(pkey), VEIL_ERR_FORMAT,
                "JWE encrypted_key must be %d bytes for this RSA key", EVP_PKEY_get_size(pkey));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf out = {.wipe = 1};
    VEIL_GUARD(veil_buf_reserve(&out, wrapped->size));
    size_t n = wrapped->size;
    int ok = EVP_PKEY_decrypt(ctx, out.data, &n, wrapped->data, wrapped->size) == 1 && n == VEIL_JWE_CEK_SIZE;
    if (!ok)
        return veil_error_raise_ossl(VEIL_ERR_KEY, __FILE__, __LINE__, "RSA-OAEP-256 unwrap of the JWE content key");
    memcpy(cek, out.data, VEIL_JWE_CEK_SIZE);
    return VEIL_RESULT_OK;
}

/* ---- encrypt ---------------------------------------------------------------------------------------------- */

struct jwe_parts {
    char header[512];           /* the protected header JSON */
    struct veil_buf encrypted_key;
};

static void parts_done(struct jwe_parts *p)
{
    veil_buf_cleanup(&p->encrypted_key);
}

/* The exact serialization Rust clients rebuild (reference section 0.3): keys alg, enc, epk{crv,kty,x,y}. */
static VEIL_RESULT ecdh_header(const struct veil_jwk *epk, char *header, size_t size)
{
    const struct veil_jwk_curve *c = veil_jwk_curve_of(epk->type);
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf xy = {0};
    VEIL_GUARD(veil_jwk_ec_point(epk, &xy));
    VEIL_DEFER(str_done) char *x = NULL;
    VEIL_DEFER(str_done) char *y = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_URL, xy.data, c->field_size, &x));
    VEIL_GUARD(veil_b64_encode(VEIL_B64_URL, xy.data + c->field_size, c->field_size, &y));
    int n = snprintf(header, size,
                     "{\"alg\":\"" VEIL_JWE_ALG_ECDH "\",\"enc\":\"" VEIL_JWE_ENC "\",\"epk\":{\"crv\":\"%s\","
                     "\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}}", c->jose_name, x, y);
    VEIL_ENSURE(n > 0 && (size_t)n < size, VEIL_ERR_INTERNAL, "JWE header buffer too small");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT wrap_ecdh(const struct veil_jwk *recipient, const uint8_t cek[VEIL_JWE_CEK_SIZE],
                             struct jwe_parts *p)
{
    VEIL_DEFER(veil_jwk_cleanup) struct veil_jwk epk = {0};
    VEIL_GUARD(veil_jwk_generate(recipient->type, &epk));
    VEIL_GUARD(ecdh_header(&epk, p->header, sizeof p->header));
    const struct party_info none = {{0}, {0}};
    VEIL_DEFER(cek_wipe) uint8_t kek[VEIL_JWE_CEK_SIZE];
    VEIL_GUARD(derive_kek(epk.pkey, recipient->pkey, &none, kek));
    VEIL_GUARD(veil_buf_reserve(&p->encrypted_key, VEIL_JWE_WRAPPED_CEK_SIZE));
    VEIL_GUARD(aes_kw(kek, 1, cek, VEIL_JWE_CEK_SIZE, p->encrypted_key.data, VEIL_JWE_WRAPPED_CEK_SIZE));
    p->encrypted_key.size = VEIL_JWE_WRAPPED_CEK_SIZE;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT wrap_rsa(const struct veil_jwk *recipient, const uint8_t cek[VEIL_JWE_CEK_SIZE],
                            struct jwe_parts *p)
{
    snprintf(p->header, sizeof p->header, "{\"alg\":\"" VEIL_JWE_ALG_RSA "\",\"enc\":\"" VEIL_JWE_ENC "\"}");
    return oaep_encrypt(recipient->pkey, cek, &p->encrypted_key);
}

static VEIL_RESULT set_b64url(json_t *obj, const char *key, const uint8_t *data, size_t size)
{
    VEIL_DEFER(str_done) char *s = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_URL, data, size, &s));
    VEIL_ENSURE(json_object_set_new(obj, key, json_string(s)) == 0, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

/* GCM over the plaintext with AAD = ASCII(protected); fills ciphertext, iv and tag members of obj. */
static VEIL_RESULT seal_content(const uint8_t cek[VEIL_JWE_CEK_SIZE], const char *protected_b64,
                                const uint8_t *plaintext, size_t size, json_t *obj)
{
    uint8_t iv[JWE_IV_SIZE], tag[JWE_TAG_SIZE];
    VEIL_GUARD(veil_random(iv, sizeof iv));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf ct = {0};
    VEIL_GUARD(veil_buf_reserve(&ct, size + 1));
    VEIL_DEFER(veil_gcm_cleanup) struct veil_gcm g = {0};
    VEIL_GUARD(veil_gcm_init(&g, cek, 1));
    VEIL_GUARD(veil_gcm_seal(&g, iv, (const uint8_t *)protected_b64, strlen(protected_b64), plaintext, ct.data, size,
                             tag));
    VEIL_GUARD(set_b64url(obj, "iv", iv, sizeof iv));
    VEIL_GUARD(set_b64url(obj, "ciphertext", ct.data, size));
    return set_b64url(obj, "tag", tag, sizeof tag);
}

VEIL_RESULT veil_jwe_encrypt(const struct veil_jwk *recipient, const uint8_t *plaintext, size_t size, json_t **out)
{
    VEIL_ENSURE(recipient != NULL && recipient->pkey != NULL, VEIL_ERR_ARG, "no recipient key");
    VEIL_ENSURE(plaintext != NULL || size == 0, VEIL_ERR_ARG, "no plaintext");
    VEIL_ENSURE(size <= VEIL_JWE_MAX_SIZE, VEIL_ERR_LIMIT, "JWE plaintext larger than %u bytes", VEIL_JWE_MAX_SIZE);
    VEIL_DEFER(cek_wipe) uint8_t cek[VEIL_JWE_CEK_SIZE];
    VEIL_GUARD(veil_random(cek, sizeof cek));
    VEIL_DEFER(parts_done) struct jwe_parts p = {.encrypted_key = {0}};
    if (recipient->type == VEIL_JWK_RSA)
        VEIL_GUARD(wrap_rsa(recipient, cek, &p));
    else
        VEIL_GUARD(wrap_ecdh(recipient, cek, &p));
    VEIL_DEFER(veil_json_done) json_t *obj = json_object();
    VEIL_ENSURE(obj != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(set_b64url(obj, "protected", (const uint8_t *)p.header, strlen(p.header)));
    VEIL_GUARD(set_b64url(obj, "encrypted_key", p.encrypted_key.data, p.encrypted_key.size));
    VEIL_GUARD(seal_content(cek, json_string_value(json_object_get(obj, "protected")), plaintext, size, obj));
    *out = obj;
    obj = NULL;
    return VEIL_RESULT_OK;
}

/* ---- decrypt ---------------------------------------------------------------------------------------------- */

struct jwe_header {
    json_t *json;          /* owned */
    int ecdh;              /* alg: ECDH-ES+A256KW (1) or RSA-OAEP-256 (0) */
    struct veil_jwk epk;   /* ECDH only */
    struct party_info pi;  /* ECDH only: decoded apu / apv, empty when absent */
};

static void header_done(struct jwe_header *h)
{
    json_decref(h->json);
    veil_jwk_cleanup(&h->epk);
    veil_buf_cleanup(&h->pi.apu);
    veil_buf_cleanup(&h->pi.apv);
}

static VEIL_RESULT header_alg(struct jwe_header *h, const struct veil_jwk *recipient)
{
    const char *alg = NULL, *enc = NULL;
    VEIL_GUARD(veil_json_string(h->json, "alg", 1, VEIL_ERR_FORMAT, "JWE header", &alg));
    VEIL_GUARD(veil_json_string(h->json, "enc", 1, VEIL_ERR_FORMAT, "JWE header", &enc));
    VEIL_ENSURE(strcmp(enc, VEIL_JWE_ENC) == 0, VEIL_ERR_UNSUPPORTED, "JWE enc \"%.32s\" is not A256GCM", enc);
    const char *want = recipient->type == VEIL_JWK_RSA ? VEIL_JWE_ALG_RSA : VEIL_JWE_ALG_ECDH;
    VEIL_ENSURE(strcmp(alg, want) == 0, VEIL_ERR_UNSUPPORTED, "JWE alg \"%.32s\" is not %s (what this key uses)", alg,
                want);
    h->ecdh = recipient->type != VEIL_JWK_RSA;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT party_info(const json_t *hdr, const char *key, struct veil_buf *out)
{
    if (json_object_get(hdr, key) == NULL)
        return VEIL_RESULT_OK;
    return veil_json_b64(hdr, key, VEIL_B64_URL, 1, 1, JWE_MAX_PARTY_INFO, VEIL_ERR_FORMAT, "JWE header", out, NULL);
}

static VEIL_RESULT header_epk(struct jwe_header *h, const struct veil_jwk *recipient)
{
    const json_t *epk = json_object_get(h->json, "epk");
    VEIL_ENSURE(epk != NULL, VEIL_ERR_FORMAT, "JWE header: \"epk\" is missing");
    VEIL_GUARD(veil_jwk_parse(epk, &h->epk));
    VEIL_ENSURE(h->epk.type == recipient->type, VEIL_ERR_FORMAT, "JWE header: epk is not on the recipient's curve");
    VEIL_GUARD(party_info(h->json, "apu", &h->pi.apu));
    return party_info(h->json, "apv", &h->pi.apv);
}

/* RFC 7516 section 7.2.1: the JOSE header is the union of "protected", "unprotected" and the per-recipient
 * "header", with no name in two of them. RFC 7516 libraries (joserfc) put epk in "header"; Trustee puts it in
 * "protected". Only key-agreement inputs may come unprotected; alg, enc, zip and crit must be protected. */
static VEIL_RESULT merge_unprotected(const json_t *jwe, const char *member, json_t *merged)
{
    static const char *const allowed[] = {"epk", "apu", "apv", "kid", NULL};
    json_t *u = json_object_get(jwe, member);
    if (u == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(u), VEIL_ERR_FORMAT, "JWE \"%s\" must be an object", member);
    VEIL_GUARD(veil_json_only_keys(u, allowed, VEIL_ERR_FORMAT, "JWE unprotected header"));
    const char *key = NULL;
    json_t *v;
    json_object_foreach(u, key, v) {
        VEIL_ENSURE(json_object_get(merged, key) == NULL, VEIL_ERR_FORMAT, "JWE header parameter \"%s\" appears twice",
                    key);
        VEIL_ENSURE(json_object_set(merged, key, v) == 0, VEIL_ERR_NOMEM, "out of memory");
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_header(const json_t *jwe, const char *protected_b64, const struct veil_jwk *recipient,
                                struct jwe_header *h)
{
    static const char *const members[] = {"alg", "enc", "epk", "apu", "apv", "kid", "typ", "cty", NULL};
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf raw = {0};
    VEIL_GUARD(veil_b64_decode(VEIL_B64_URL, protected_b64, strlen(protected_b64), VEIL_JOSE_MAX_HEADER_SIZE, &raw));
    VEIL_GUARD(veil_json_load_object(raw.data, raw.size, VEIL_JOSE_MAX_HEADER_SIZE, VEIL_ERR_FORMAT,
                                     "JWE protected header", &h->json));
    VEIL_ENSURE(json_object_get(h->json, "zip") == NULL, VEIL_ERR_UNSUPPORTED, "JWE header: \"zip\" is not supported");
    VEIL_ENSURE(json_object_get(h->json, "crit") == NULL, VEIL_ERR_UNSUPPORTED, "JWE header: \"crit\" is not supported");
    VEIL_GUARD(veil_json_only_keys(h->json, members, VEIL_ERR_FORMAT, "JWE protected header"));
    VEIL_GUARD(merge_unprotected(jwe, "unprotected", h->json));
    VEIL_GUARD(merge_unprotected(jwe, "header", h->json));
    VEIL_GUARD(header_alg(h, recipient));
    if (!h->ecdh) {
        VEIL_ENSURE(json_object_get(h->json, "epk") == NULL, VEIL_ERR_FORMAT, "JWE header: epk with RSA-OAEP-256");
        return VEIL_RESULT_OK;
    }
    return header_epk(h, recipient);
}

static VEIL_RESULT unwrap_cek(const struct jwe_header *h, const struct veil_jwk *recipient, const json_t *jwe,
                              uint8_t cek[VEIL_JWE_CEK_SIZE])
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf wrapped = {0};
    if (!h->ecdh) {
        VEIL_GUARD(veil_json_b64(jwe, "encrypted_key", VEIL_B64_URL, 1, 1, VEIL_JWK_RSA_MAX_BITS / 8, VEIL_ERR_FORMAT,
                                 "JWE", &wrapped, NULL));
        return oaep_decrypt(recipient->pkey, &wrapped, cek);
    }
    VEIL_GUARD(veil_json_b64(jwe, "encrypted_key", VEIL_B64_URL, 1, VEIL_JWE_WRAPPED_CEK_SIZE,
                             VEIL_JWE_WRAPPED_CEK_SIZE, VEIL_ERR_FORMAT, "JWE", &wrapped, NULL));
    VEIL_DEFER(cek_wipe) uint8_t kek[VEIL_JWE_CEK_SIZE];
    VEIL_GUARD(derive_kek(recipient->pkey, h->epk.pkey, &h->pi, kek));
    return aes_kw(kek, 0, wrapped.data, wrapped.size, cek, VEIL_JWE_CEK_SIZE);
}

/* AAD = ASCII(protected), or ASCII(protected || '.' || aad) when the "aad" member is present (RFC 7516 5.1). */
static VEIL_RESULT build_aad(const json_t *jwe, const char *protected_b64, struct veil_buf *aad)
{
    VEIL_GUARD(veil_buf_append(aad, protected_b64, strlen(protected_b64)));
    if (json_object_get(jwe, "aad") == NULL)
        return VEIL_RESULT_OK;
    const char *extra = NULL;
    VEIL_GUARD(veil_json_string(jwe, "aad", 1, VEIL_ERR_FORMAT, "JWE", &extra));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf check = {0};
    VEIL_GUARD(veil_b64_decode(VEIL_B64_URL, extra, strlen(extra), VEIL_JOSE_MAX_HEADER_SIZE, &check));
    VEIL_GUARD(veil_buf_append_u8(aad, '.'));
    return veil_buf_append(aad, extra, strlen(extra));
}

struct jwe_content {
    uint8_t iv[JWE_IV_SIZE], tag[JWE_TAG_SIZE];
    struct veil_buf ct, aad;
};

static void content_done(struct jwe_content *c)
{
    veil_buf_cleanup(&c->ct);
    veil_buf_cleanup(&c->aad);
}

static VEIL_RESULT parse_content(const json_t *jwe, const char *protected_b64, struct jwe_content *c)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_json_b64(jwe, "iv", VEIL_B64_URL, 1, JWE_IV_SIZE, JWE_IV_SIZE, VEIL_ERR_FORMAT, "JWE", &b, NULL));
    memcpy(c->iv, b.data, JWE_IV_SIZE);
    b.size = 0;
    VEIL_GUARD(veil_json_b64(jwe, "tag", VEIL_B64_URL, 1, JWE_TAG_SIZE, JWE_TAG_SIZE, VEIL_ERR_FORMAT, "JWE", &b,
                             NULL));
    memcpy(c->tag, b.data, JWE_TAG_SIZE);
    const char *ct = NULL;
    VEIL_GUARD(veil_json_string(jwe, "ciphertext", 1, VEIL_ERR_FORMAT, "JWE", &ct));
    VEIL_GUARD(veil_b64_decode(VEIL_B64_URL, ct, strlen(ct), VEIL_JWE_MAX_SIZE, &c->ct));
    return build_aad(jwe, protected_b64, &c->aad);
}

static VEIL_RESULT open_content(const uint8_t cek[VEIL_JWE_CEK_SIZE], const struct jwe_content *c,
                                struct veil_buf *out)
{
    VEIL_GUARD(veil_buf_reserve(out, c->ct.size + 1));
    VEIL_DEFER(veil_gcm_cleanup) struct veil_gcm g = {0};
    VEIL_GUARD(veil_gcm_init(&g, cek, 0));
    VEIL_GUARD(veil_gcm_open(&g, c->iv, c->aad.data, c->aad.size, c->ct.data, out->data + out->size, c->ct.size,
                             c->tag));
    out->size += c->ct.size;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_jwe_decrypt(const struct veil_jwk *recipient, const json_t *jwe, struct veil_buf *out)
{
    static const char *const members[] = {"protected", "unprotected", "header", "encrypted_key", "iv",
                                          "ciphertext", "tag", "aad", NULL};
    VEIL_ENSURE(recipient != NULL && recipient->pkey != NULL && out != NULL, VEIL_ERR_ARG, "no recipient key");
    VEIL_ENSURE(json_is_object(jwe), VEIL_ERR_FORMAT, "JWE is not a JSON object");
    VEIL_GUARD(veil_json_only_keys(jwe, members, VEIL_ERR_FORMAT, "flattened JWE"));
    const char *protected_b64 = NULL;
    VEIL_GUARD(veil_json_string(jwe, "protected", 1, VEIL_ERR_FORMAT, "JWE", &protected_b64));
    VEIL_DEFER(header_done) struct jwe_header h = {0};
    VEIL_GUARD(parse_header(jwe, protected_b64, recipient, &h));
    VEIL_DEFER(content_done) struct jwe_content c = {.ct = {0}};
    VEIL_GUARD(parse_content(jwe, protected_b64, &c));
    VEIL_DEFER(cek_wipe) uint8_t cek[VEIL_JWE_CEK_SIZE];
    VEIL_GUARD(unwrap_cek(&h, recipient, jwe, cek));
    return open_content(cek, &c, out);
}
