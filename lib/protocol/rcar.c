/* SPDX-License-Identifier: Apache-2.0 */
/* RCAR 0.4.0 messages (reference section 1.2) and the report_data binding (section 1.3). */
#include <string.h>

#include <openssl/evp.h>

#include "core/base64.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "protocol/protocol.h"

/* ---- hashes and the binding ------------------------------------------------------------------------------- */

static const struct {
    enum veil_kbs_hash id;
    const char *name;
    size_t size;
} hashes[] = {
    {VEIL_KBS_HASH_SHA256, "sha256", 32},
    {VEIL_KBS_HASH_SHA384, "sha384", 48},
    {VEIL_KBS_HASH_SHA512, "sha512", 64},
};

VEIL_RESULT veil_kbs_hash_parse(const char *name, enum veil_kbs_hash *out)
{
    for (size_t i = 0; name != NULL && i < sizeof hashes / sizeof hashes[0]; i++) {
        if (strcmp(hashes[i].name, name) == 0) {
            *out = hashes[i].id;
            return VEIL_RESULT_OK;
        }
    }
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "hash algorithm \"%.16s\" is not sha256, sha384 or sha512", name ? name : "");
}

const char *veil_kbs_hash_name(enum veil_kbs_hash h)
{
    for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++)
        if (hashes[i].id == h)
            return hashes[i].name;
    return "unknown";
}

size_t veil_kbs_hash_size(enum veil_kbs_hash h)
{
    for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++)
        if (hashes[i].id == h)
            return hashes[i].size;
    return 0;
}

static const EVP_MD *hash_md(enum veil_kbs_hash h)
{
    return h == VEIL_KBS_HASH_SHA256 ? EVP_sha256() : h == VEIL_KBS_HASH_SHA384 ? EVP_sha384() : EVP_sha512();
}

static VEIL_RESULT runtime_object(const char *nonce, const json_t *tee_pubkey, const char *additional, json_t **out)
{
    VEIL_ENSURE(nonce != NULL && json_is_object(tee_pubkey), VEIL_ERR_ARG, "binding needs a nonce and a JWK object");
    json_t *o = json_pack("{s:s, s:O}", "nonce", nonce, "tee-pubkey", (json_t *)(uintptr_t)tee_pubkey);
    VEIL_ENSURE(o != NULL, VEIL_ERR_ARG, "nonce is not valid UTF-8");
    if (additional != NULL && json_object_set_new(o, "additional-evidence", json_string(additional)) != 0) {
        json_decref(o);
        VEIL_BAIL(VEIL_ERR_ARG, "additional evidence is not valid UTF-8");
    }
    *out = o;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_runtime_digest(const char *nonce, const json_t *tee_pubkey, const char *additional_evidence,
                                    enum veil_kbs_hash hash, uint8_t digest[VEIL_KBS_MAX_DIGEST_SIZE])
{
    VEIL_ENSURE(veil_kbs_hash_size(hash) != 0, VEIL_ERR_ARG, "unknown hash %d", (int)hash);
    VEIL_DEFER(veil_json_done) json_t *rd = NULL;
    VEIL_GUARD(runtime_object(nonce, tee_pubkey, additional_evidence, &rd));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf jcs = {0};
    VEIL_GUARD(veil_jcs_serialize(rd, &jcs));
    unsigned int n = 0;
    VEIL_GUARD_OSSL(EVP_Digest(jcs.data, jcs.size, digest, &n, hash_md(hash), NULL), VEIL_ERR_CRYPTO);
    VEIL_ENSURE(n == veil_kbs_hash_size(hash), VEIL_ERR_INTERNAL, "digest size %u", n);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_report_data(const char *nonce, const json_t *tee_pubkey, const char *additional_evidence,
                                 enum veil_kbs_hash hash, uint8_t report_data[VEIL_KBS_REPORT_DATA_SIZE])
{
    uint8_t d[VEIL_KBS_MAX_DIGEST_SIZE] = {0};
    VEIL_GUARD(veil_kbs_runtime_digest(nonce, tee_pubkey, additional_evidence, hash, d));
    memcpy(report_data, d, VEIL_KBS_REPORT_DATA_SIZE); /* zero-padded: d was zeroed past the digest */
    return VEIL_RESULT_OK;
}

/* ---- shared ----------------------------------------------------------------------------------------------- */

static const char *const tee_names[] = {"az-snp-vtpm", "az-tdx-vtpm", "nvidia", "sgx", "snp", "tdx", "cca",
                                        "csv", "se", "hygondcu", "tpm", "sample", "sampledevice", NULL};

VEIL_RESULT veil_rcar_tee_check(const char *name)
{
    for (const char *const *t = tee_names; name != NULL && *t != NULL; t++)
        if (strcmp(*t, name) == 0)
            return VEIL_RESULT_OK;
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "unknown tee \"%.32s\"", name != NULL ? name : "");
}

/* An optional member of any type: a new reference, or JSON null when absent. */
static VEIL_RESULT any_member(const json_t *obj, const char *key, json_t **out)
{
    json_t *v = json_object_get(obj, key);
    *out = v != NULL ? json_incref(v) : json_null();
    return VEIL_RESULT_OK;
}

/* ---- Request ---------------------------------------------------------------------------------------------- */

VEIL_RESULT veil_rcar_request_build(const char *tee, json_t **out)
{
    VEIL_GUARD(veil_rcar_tee_check(tee));
    json_t *j = json_pack("{s:s, s:s, s:{s:[s,s,s]}}", "version", VEIL_RCAR_VERSION, "tee", tee, "extra-params",
                          "supported-hash-algorithms", "sha256", "sha384", "sha512");
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = j;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_rcar_request_parse(const uint8_t *body, size_t size, struct veil_rcar_request *out)
{
    static const char *const members[] = {"version", "tee", "extra-params", NULL};
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(body, size, VEIL_RCAR_MAX_BODY_SIZE, VEIL_ERR_FORMAT, "RCAR Request", &j));
    VEIL_GUARD(veil_json_only_keys(j, members, VEIL_ERR_FORMAT, "RCAR Request"));
    const char *version = NULL, *tee = NULL;
    VEIL_GUARD(veil_json_string(j, "version", 1, VEIL_ERR_FORMAT, "RCAR Request", &version));
    VEIL_ENSURE(strcmp(version, VEIL_RCAR_VERSION) == 0, VEIL_ERR_VERSION,
                "RCAR Request: protocol version \"%.16s\" is not " VEIL_RCAR_VERSION, version);
    VEIL_GUARD(veil_json_string(j, "tee", 1, VEIL_ERR_FORMAT, "RCAR Request", &tee));
    VEIL_GUARD(veil_rcar_tee_check(tee));
    memset(out->tee, 0, sizeof out->tee);
    memcpy(out->tee, tee, strlen(tee)); /* a known name: shorter than the field */
    return any_member(j, "extra-params", &out->extra_params);
}

void veil_rcar_request_cleanup(struct veil_rcar_request *r)
{
    json_decref(r->extra_params);
    r->extra_params = NULL;
}

/* ---- Challenge -------------------------------------------------------------------------------------------- */

VEIL_RESULT veil_rcar_nonce_generate(char out[45])
{
    uint8_t raw[32];
    VEIL_GUARD(veil_random(raw, sizeof raw));
    char *s = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, raw, sizeof raw, &s));
    memcpy(out, s, 45);
    free(s);
    return VEIL_RESULT_OK;
}

/* Non-empty printable ASCII of bounded length: the nonce is echoed and hashed verbatim. */
static VEIL_RESULT nonce_check(const char *nonce)
{
    size_t n = strnlen(nonce, VEIL_RCAR_MAX_NONCE_SIZE + 1);
    VEIL_ENSURE(n > 0 && n <= VEIL_RCAR_MAX_NONCE_SIZE, VEIL_ERR_FORMAT, "nonce is empty or longer than %u",
                VEIL_RCAR_MAX_NONCE_SIZE);
    for (size_t i = 0; i < n; i++)
        VEIL_ENSURE(nonce[i] > 0x20 && nonce[i] < 0x7f, VEIL_ERR_FORMAT, "nonce is not printable ASCII");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_rcar_challenge_build(const char *nonce, json_t **out)
{
    VEIL_ENSURE(nonce != NULL, VEIL_ERR_ARG, "no nonce");
    VEIL_GUARD(nonce_check(nonce));
    json_t *j = json_pack("{s:s, s:s}", "nonce", nonce, "extra-params", "");
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = j;
    return VEIL_RESULT_OK;
}

/* extra-params: "" (Trustee), null/absent, or an object with an optional selected-hash-algorithm (SE). */
static VEIL_RESULT challenge_hash(const json_t *extra, enum veil_kbs_hash *hash)
{
    *hash = VEIL_KBS_HASH_SHA384;
    if (extra == NULL || json_is_null(extra) || (json_is_string(extra) && json_string_length(extra) == 0))
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(extra), VEIL_ERR_FORMAT, "RCAR Challenge: extra-params must be \"\" or an object");
    const json_t *sel = json_object_get(extra, "selected-hash-algorithm");
    if (sel == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_string(sel), VEIL_ERR_FORMAT, "RCAR Challenge: selected-hash-algorithm must be a string");
    return veil_kbs_hash_parse(json_string_value(sel), hash);
}

VEIL_RESULT veil_rcar_challenge_parse(const uint8_t *body, size_t size, struct veil_rcar_challenge *out)
{
    static const char *const members[] = {"nonce", "extra-params", NULL};
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(body, size, VEIL_RCAR_MAX_BODY_SIZE, VEIL_ERR_FORMAT, "RCAR Challenge", &j));
    VEIL_GUARD(veil_json_only_keys(j, members, VEIL_ERR_FORMAT, "RCAR Challenge"));
    const char *nonce = NULL;
    VEIL_GUARD(veil_json_string(j, "nonce", 1, VEIL_ERR_FORMAT, "RCAR Challenge", &nonce));
    VEIL_GUARD(nonce_check(nonce));
    enum veil_kbs_hash hash = 0;
    VEIL_GUARD(challenge_hash(json_object_get(j, "extra-params"), &hash));
    memset(out->nonce, 0, sizeof out->nonce);
    memcpy(out->nonce, nonce, strlen(nonce));
    out->hash = hash;
    return any_member(j, "extra-params", &out->extra_params);
}

void veil_rcar_challenge_cleanup(struct veil_rcar_challenge *c)
{
    json_decref(c->extra_params);
    c->extra_params = NULL;
}

/* ---- Attestation ------------------------------------------------------------------------------------------ */

VEIL_RESULT veil_rcar_attestation_build(const char *nonce, const json_t *tee_pubkey, const json_t *primary_evidence,
                                        const char *additional_evidence, json_t **out)
{
    VEIL_ENSURE(nonce != NULL && json_is_object(tee_pubkey) && json_is_object(primary_evidence), VEIL_ERR_ARG,
                "Attestation needs a nonce, a JWK and evidence objects");
    VEIL_GUARD(nonce_check(nonce));
    json_t *j = json_pack("{s:n, s:{s:s, s:O}, s:{s:O, s:s}}", "init-data", "runtime-data", "nonce", nonce,
                          "tee-pubkey", (json_t *)(uintptr_t)tee_pubkey, "tee-evidence", "primary_evidence",
                          (json_t *)(uintptr_t)primary_evidence, "additional_evidence",
                          additional_evidence != NULL ? additional_evidence : "");
    VEIL_ENSURE(j != NULL, VEIL_ERR_ARG, "additional evidence is not valid UTF-8");
    *out = j;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_runtime_data(const json_t *rd, struct veil_rcar_attestation *a)
{
    static const char *const members[] = {"nonce", "tee-pubkey", NULL};
    VEIL_ENSURE(json_is_object(rd), VEIL_ERR_FORMAT, "RCAR Attestation: runtime-data must be an object");
    VEIL_GUARD(veil_json_only_keys(rd, members, VEIL_ERR_FORMAT, "RCAR Attestation runtime-data"));
    VEIL_GUARD(veil_json_string(rd, "nonce", 1, VEIL_ERR_FORMAT, "RCAR Attestation runtime-data", &a->nonce));
    VEIL_GUARD(nonce_check(a->nonce));
    a->tee_pubkey_json = json_object_get(rd, "tee-pubkey");
    VEIL_ENSURE(a->tee_pubkey_json != NULL, VEIL_ERR_FORMAT, "RCAR Attestation: tee-pubkey is missing");
    return veil_jwk_parse(a->tee_pubkey_json, &a->tee_pubkey);
}

static VEIL_RESULT parse_evidence(const json_t *ev, struct veil_rcar_attestation *a)
{
    static const char *const members[] = {"primary_evidence", "additional_evidence", NULL};
    VEIL_ENSURE(json_is_object(ev), VEIL_ERR_FORMAT, "RCAR Attestation: tee-evidence must be an object");
    VEIL_GUARD(veil_json_only_keys(ev, members, VEIL_ERR_FORMAT, "RCAR Attestation tee-evidence"));
    a->primary_evidence = json_object_get(ev, "primary_evidence");
    VEIL_ENSURE(json_is_object(a->primary_evidence), VEIL_ERR_FORMAT,
                "RCAR Attestation: tee-evidence.primary_evidence must be an object");
    const char *extra = NULL;
    VEIL_GUARD(veil_json_string(ev, "additional_evidence", 0, VEIL_ERR_FORMAT, "RCAR Attestation tee-evidence",
                                &extra));
    a->additional_evidence = extra != NULL ? extra : "";
    return VEIL_RESULT_OK;
}

/* init-data: absent, null, or {"format":"toml","body":string} (the builtin AS rejects other formats). */
static VEIL_RESULT parse_init_data(const json_t *id, struct veil_rcar_attestation *a)
{
    static const char *const members[] = {"format", "body", NULL};
    a->init_data = NULL;
    if (id == NULL || json_is_null(id))
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(id), VEIL_ERR_FORMAT, "RCAR Attestation: init-data must be null or an object");
    VEIL_GUARD(veil_json_only_keys(id, members, VEIL_ERR_FORMAT, "RCAR Attestation init-data"));
    const char *format = NULL, *body = NULL;
    VEIL_GUARD(veil_json_string(id, "format", 1, VEIL_ERR_FORMAT, "RCAR Attestation init-data", &format));
    VEIL_ENSURE(strcmp(format, "toml") == 0, VEIL_ERR_UNSUPPORTED, "init-data format \"%.16s\" is not toml", format);
    VEIL_GUARD(veil_json_string(id, "body", 1, VEIL_ERR_FORMAT, "RCAR Attestation init-data", &body));
    a->init_data = id;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_hash_alg(const json_t *j, struct veil_rcar_attestation *a)
{
    a->hash = VEIL_KBS_HASH_SHA384;
    if (json_object_get(j, "runtime-data-hash-algorithm") == NULL)
        return VEIL_RESULT_OK;
    const char *name = NULL;
    VEIL_GUARD(veil_json_string(j, "runtime-data-hash-algorithm", 1, VEIL_ERR_FORMAT, "RCAR Attestation", &name));
    return veil_kbs_hash_parse(name, &a->hash);
}

static VEIL_RESULT attestation_fields(const json_t *j, struct veil_rcar_attestation *a)
{
    static const char *const members[] = {"init-data", "runtime-data", "runtime-data-hash-algorithm",
                                          "tee-evidence", NULL};
    VEIL_GUARD(veil_json_only_keys(j, members, VEIL_ERR_FORMAT, "RCAR Attestation"));
    const json_t *rd = json_object_get(j, "runtime-data"), *ev = json_object_get(j, "tee-evidence");
    VEIL_ENSURE(rd != NULL, VEIL_ERR_FORMAT, "RCAR Attestation: runtime-data is missing");
    VEIL_ENSURE(ev != NULL, VEIL_ERR_FORMAT, "RCAR Attestation: tee-evidence is missing");
    VEIL_GUARD(parse_hash_alg(j, a));
    VEIL_GUARD(parse_init_data(json_object_get(j, "init-data"), a));
    VEIL_GUARD(parse_evidence(ev, a));
    return parse_runtime_data(rd, a);
}

VEIL_RESULT veil_rcar_attestation_parse(const uint8_t *body, size_t size, struct veil_rcar_attestation *out)
{
    VEIL_DEFER(veil_rcar_attestation_cleanup) struct veil_rcar_attestation a = {.root = NULL};
    VEIL_GUARD(veil_json_load_object(body, size, VEIL_RCAR_MAX_BODY_SIZE, VEIL_ERR_FORMAT, "RCAR Attestation",
                                     &a.root));
    VEIL_GUARD(attestation_fields(a.root, &a));
    *out = a;
    memset(&a, 0, sizeof a); /* ownership moved to *out */
    return VEIL_RESULT_OK;
}

void veil_rcar_attestation_cleanup(struct veil_rcar_attestation *a)
{
    veil_jwk_cleanup(&a->tee_pubkey);
    json_decref(a->root);
    memset(a, 0, sizeof *a);
}
