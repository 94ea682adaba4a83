/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime attestation binding, both halves (docs/spec/runtime-attestation.md; lib/serve/binding.h). The
 * verifier is a coordinator whose steps carry the numbers of the spec's section 6, "Verification". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "attest/tee.h"
#include "core/base64.h"
#include "core/hex.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"
#include "protocol/protocol.h"
#include "serve/binding.h"
#include "veil/sealed.h"

#define WHAT_ANSWER "runtime attestation"

static void str_done(char **s) { free(*s); }

/* Re-raises st with "what: <the message just raised>" (copied first: the message buffer is the one written). */
static VEIL_RESULT fail_with(veil_status st, const char *what)
{
    char detail[400];
    snprintf(detail, sizeof detail, "%s", veil_last_error());
    VEIL_BAIL(st, "%s: %s", what, detail);
}

/* ---- names and model ids --------------------------------------------------------------------------------- */

static int id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

/* 1..max bytes of [A-Za-z0-9._-], not starting with '.' or '-' (the sealed format's model id rule). */
static VEIL_RESULT id_check(const char *s, size_t max, veil_status err, const char *what, const char *field)
{
    VEIL_ENSURE(s != NULL, err, "%s: no %s", what, field);
    size_t n = strnlen(s, max + 1);
    VEIL_ENSURE(n <= max, VEIL_ERR_LIMIT, "%s: a %s is longer than %zu bytes", what, field, max);
    VEIL_ENSURE(n >= 1 && s[0] != '.' && s[0] != '-', err, "%s: a %s must be non-empty and not start with '.' or '-'",
                what, field);
    for (size_t i = 0; i < n; i++)
        VEIL_ENSURE(id_char(s[i]), err, "%s: a %s holds a character other than A-Z a-z 0-9 . _ -", what, field);
    return VEIL_RESULT_OK;
}

/* ---- nonce ------------------------------------------------------------------------------------------------ */

static int nonce_size_ok(size_t n)
{
    return n >= VEIL_RUNTIME_NONCE_MIN_SIZE && n <= VEIL_RUNTIME_NONCE_MAX_SIZE;
}

VEIL_RESULT veil_binding_nonce_parse(const char *hex, size_t len, uint8_t out[VEIL_RUNTIME_NONCE_MAX_SIZE],
                                     size_t *size)
{
    VEIL_ENSURE(hex != NULL && len % 2 == 0 && nonce_size_ok(len / 2), VEIL_ERR_ARG,
                "the nonce must be %u to %u bytes in hex (%u to %u digits, an even number)",
                VEIL_RUNTIME_NONCE_MIN_SIZE, VEIL_RUNTIME_NONCE_MAX_SIZE, 2 * VEIL_RUNTIME_NONCE_MIN_SIZE,
                2 * VEIL_RUNTIME_NONCE_MAX_SIZE);
    VEIL_GUARD(veil_hex_decode(VEIL_HEX_ANY_CASE, hex, len, out, len / 2, VEIL_ERR_ARG, "nonce"));
    *size = len / 2;
    return VEIL_RESULT_OK;
}

/* ---- building the binding (runtime side) ------------------------------------------------------------------ */

static VEIL_RESULT set_hex(json_t *obj, const char *key, const uint8_t *data, size_t size)
{
    char hex[2 * VEIL_RUNTIME_NONCE_MAX_SIZE + 1];
    VEIL_ENSURE(size <= VEIL_RUNTIME_NONCE_MAX_SIZE, VEIL_ERR_INTERNAL, "hex member too long");
    veil_hex_encode(data, size, hex);
    return veil_json_set(obj, key, json_string(hex));
}

static VEIL_RESULT model_check(const struct veil_binding_model *m)
{
    const char *what = "binding model";
    VEIL_GUARD(id_check(m->name, VEIL_RUNTIME_NAME_MAX, VEIL_ERR_ARG, what, "name"));
    VEIL_GUARD(id_check(m->model_id, VEIL_MODEL_ID_MAX, VEIL_ERR_ARG, what, "model id"));
    VEIL_ENSURE(m->model_version <= VEIL_BINDING_MAX_SAFE_INTEGER, VEIL_ERR_ARG,
                "binding model %s: model_version above 2^53 - 1 has no exact JSON form", m->name);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT model_append(json_t *array, const struct veil_binding_model *m)
{
    json_t *o = json_object();
    VEIL_ENSURE(o != NULL && json_array_append_new(array, o) == 0, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_json_set(o, "name", json_string(m->name)));
    VEIL_GUARD(veil_json_set(o, "model_id", json_string(m->model_id)));
    VEIL_GUARD(veil_json_set(o, "model_version", json_integer((json_int_t)m->model_version)));
    VEIL_GUARD(veil_json_set(o, "key_version", json_integer((json_int_t)m->key_version)));
    return set_hex(o, "header_sha256", m->header_sha256, sizeof m->header_sha256);
}

static int model_order(const void *a, const void *b)
{
    const struct veil_binding_model *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static void models_done(const struct veil_binding_model ***p) { free(*p); }

/* The models, checked, in name order (byte order: names are ASCII, so it is also JCS's UTF-16 order). */
static VEIL_RESULT models_sorted(const struct veil_binding_model *models, size_t count, json_t *array)
{
    VEIL_ENSURE(count <= VEIL_RUNTIME_MAX_MODELS, VEIL_ERR_LIMIT, "a binding lists at most %u models",
                VEIL_RUNTIME_MAX_MODELS);
    VEIL_ENSURE(count == 0 || models != NULL, VEIL_ERR_ARG, "no models given");
    const struct veil_binding_model **order VEIL_DEFER(models_done) = calloc(count != 0 ? count : 1, sizeof *order);
    VEIL_ENSURE(order != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        VEIL_GUARD(model_check(&models[i]));
        order[i] = &models[i];
    }
    qsort(order, count, sizeof *order, model_order);
    for (size_t i = 0; i < count; i++) {
        VEIL_ENSURE(i == 0 || strcmp(order[i - 1]->name, order[i]->name) != 0, VEIL_ERR_ARG,
                    "two served models are named %s", order[i]->name);
        VEIL_GUARD(model_append(array, order[i]));
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_binding_build(const uint8_t *nonce, size_t nonce_size,
                               const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE],
                               const struct veil_binding_model *models, size_t count, json_t **out)
{
    VEIL_ENSURE(nonce != NULL && nonce_size_ok(nonce_size), VEIL_ERR_ARG, "the nonce must be %u to %u bytes",
                VEIL_RUNTIME_NONCE_MIN_SIZE, VEIL_RUNTIME_NONCE_MAX_SIZE);
    VEIL_ENSURE(spki_sha256 != NULL && out != NULL, VEIL_ERR_ARG, "no TLS key hash or output given");
    json_t *b VEIL_DEFER(veil_json_done) = json_object();
    VEIL_ENSURE(b != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_json_set(b, "domain", json_string(VEIL_BINDING_DOMAIN)));
    VEIL_GUARD(set_hex(b, "nonce", nonce, nonce_size));
    VEIL_GUARD(set_hex(b, "tls_spki_sha256", spki_sha256, VEIL_SPKI_SHA256_SIZE));
    json_t *array = json_array();
    VEIL_GUARD(veil_json_set(b, "models", array));
    VEIL_GUARD(models_sorted(models, count, array));
    *out = b;
    b = NULL;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_binding_report_data(const json_t *binding, uint8_t report_data[VEIL_REPORT_DATA_SIZE])
{
    struct veil_buf jcs VEIL_DEFER(veil_buf_cleanup) = {0};
    VEIL_GUARD(veil_jcs_serialize(binding, &jcs));
    unsigned int n = 0;
    VEIL_GUARD_OSSL(EVP_Digest(jcs.data, jcs.size, report_data, &n, EVP_sha512(), NULL), VEIL_ERR_CRYPTO);
    VEIL_ENSURE(n == VEIL_REPORT_DATA_SIZE, VEIL_ERR_CRYPTO, "SHA-512 gave %u bytes", n);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT evidence_for(veil_tee *tee, const struct veil_provider_config *pc,
                                const uint8_t rd[VEIL_REPORT_DATA_SIZE], char **evidence)
{
    veil_status st = VEIL_OK;
    if (*tee == VEIL_TEE_AUTO && (st = veil_tee_detect(pc, tee)) != VEIL_OK)
        return fail_with(st, "runtime attestation: no TEE found");
    if ((st = veil_evidence_collect(*tee, pc, rd, evidence)) != VEIL_OK)
        return fail_with(st, "runtime attestation: cannot collect evidence");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_binding_answer(veil_tee tee, const struct veil_provider_config *pc, const uint8_t *nonce,
                                size_t nonce_size, const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE],
                                const struct veil_binding_model *models, size_t count, char **answer_json)
{
    VEIL_ENSURE(answer_json != NULL, VEIL_ERR_ARG, "no output given");
    VEIL_ENSURE(tee == VEIL_TEE_AUTO || veil_tee_find(tee) != NULL, VEIL_ERR_ARG, "unknown TEE type %d", (int)tee);
    json_t *binding VEIL_DEFER(veil_json_done) = NULL;
    VEIL_GUARD(veil_binding_build(nonce, nonce_size, spki_sha256, models, count, &binding));
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    VEIL_GUARD(veil_binding_report_data(binding, rd));
    char *evidence VEIL_DEFER(str_done) = NULL;
    VEIL_GUARD(evidence_for(&tee, pc, rd, &evidence));
    char *b64 VEIL_DEFER(str_done) = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_URL, (const uint8_t *)evidence, strlen(evidence), &b64));
    json_t *answer VEIL_DEFER(veil_json_done) = json_object();
    VEIL_ENSURE(answer != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_json_set(answer, "tee", json_string(veil_tee_name(tee))));
    VEIL_GUARD(veil_json_set(answer, "evidence", json_string(b64)));
    VEIL_GUARD(veil_json_set(answer, "binding", json_incref(binding)));
    *answer_json = json_dumps(answer, JSON_COMPACT);
    VEIL_ENSURE(*answer_json != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

/* ---- the TLS certificate's key ---------------------------------------------------------------------------- */

static int looks_like_pem(const uint8_t *p, size_t size)
{
    static const char begin[] = "-----BEGIN";
    size_t i = 0;
    while (i < size && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return size - i >= sizeof begin - 1 && memcmp(p + i, begin, sizeof begin - 1) == 0;
}

static VEIL_RESULT cert_parse(const uint8_t *cert, size_t size, X509 **out)
{
    if (looks_like_pem(cert, size)) {
        BIO *bio VEIL_DEFER(veil_ossl_bio_done) = BIO_new_mem_buf(cert, (int)size);
        VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
        *out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    } else {
        const unsigned char *p = cert;
        *out = d2i_X509(NULL, &p, (long)size);
        if (*out != NULL && p != cert + size) {
            X509_free(*out);
            *out = NULL;
        }
    }
    ERR_clear_error();
    VEIL_ENSURE(*out != NULL, VEIL_ERR_FORMAT,
                "not a certificate (one DER certificate, or PEM with a CERTIFICATE block)");
    return VEIL_RESULT_OK;
}

static void ossl_bytes_done(unsigned char **p) { OPENSSL_free(*p); }

VEIL_RESULT veil_binding_cert_spki_sha256(const uint8_t *cert, size_t size, uint8_t out[VEIL_SPKI_SHA256_SIZE])
{
    VEIL_ENSURE(cert != NULL && size > 0 && out != NULL, VEIL_ERR_ARG, "no certificate given");
    VEIL_ENSURE(size <= VEIL_CERT_MAX_SIZE, VEIL_ERR_LIMIT, "a certificate is larger than %u bytes",
                VEIL_CERT_MAX_SIZE);
    X509 *x VEIL_DEFER(veil_ossl_x509_done) = NULL;
    VEIL_GUARD(cert_parse(cert, size, &x));
    unsigned char *der VEIL_DEFER(ossl_bytes_done) = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    VEIL_ENSURE(n > 0, VEIL_ERR_FORMAT, "the certificate's public key cannot be encoded");
    return veil_sha256(der, (size_t)n, out);
}

/* ---- the client policy ------------------------------------------------------------------------------------ */

struct model_rule {
    char model_id[VEIL_MODEL_ID_MAX + 1];
    uint64_t min_model_version;
};

struct veil_client_policy {
    veil_policy *attestation;
    struct model_rule *rules;
    size_t rule_count;
    int require_all_models_listed;
};

static VEIL_RESULT policy_attestation(const json_t *root, struct veil_client_policy *p)
{
    const json_t *a = json_object_get(root, "attestation");
    VEIL_ENSURE(json_is_object(a), VEIL_ERR_ARG,
                "client policy: member \"attestation\" (a policy of docs/spec/policy.md) is missing or not an object");
    char *text VEIL_DEFER(str_done) = json_dumps(a, JSON_COMPACT);
    VEIL_ENSURE(text != NULL, VEIL_ERR_NOMEM, "out of memory");
    veil_status st = veil_policy_parse(text, strlen(text), &p->attestation);
    return st == VEIL_OK ? VEIL_RESULT_OK : fail_with(st, "client policy: attestation");
}

static VEIL_RESULT policy_rule(const char *id, const json_t *v, struct model_rule *r)
{
    static const char *const keys[] = {"min_model_version", NULL};
    const char *what = "client policy: models";
    VEIL_GUARD(id_check(id, VEIL_MODEL_ID_MAX, VEIL_ERR_ARG, what, "model id"));
    VEIL_ENSURE(json_is_object(v), VEIL_ERR_ARG, "%s: the entry of %s must be an object", what, id);
    VEIL_GUARD(veil_json_only_keys(v, keys, VEIL_ERR_ARG, what));
    VEIL_GUARD(veil_json_uint(v, "min_model_version", 1, VEIL_BINDING_MAX_SAFE_INTEGER, VEIL_ERR_ARG, what,
                              &r->min_model_version));
    snprintf(r->model_id, sizeof r->model_id, "%s", id);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT policy_models(const json_t *root, struct veil_client_policy *p)
{
    json_t *m = json_object_get(root, "models");
    if (m == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(m), VEIL_ERR_ARG, "client policy: member \"models\" must be an object");
    size_t n = json_object_size(m);
    VEIL_ENSURE(n <= VEIL_POLICY_MAX_LIST, VEIL_ERR_LIMIT, "client policy: more than %u models",
                VEIL_POLICY_MAX_LIST);
    p->rules = calloc(n != 0 ? n : 1, sizeof *p->rules);
    VEIL_ENSURE(p->rules != NULL, VEIL_ERR_NOMEM, "out of memory");
    const char *id;
    json_t *v;
    json_object_foreach(m, id, v) {
        VEIL_GUARD(policy_rule(id, v, &p->rules[p->rule_count]));
        p->rule_count++;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT policy_fill(const json_t *root, struct veil_client_policy *p)
{
    static const char *const keys[] = {"version", "attestation", "models", "require_all_models_listed", NULL};
    VEIL_GUARD(veil_json_only_keys(root, keys, VEIL_ERR_ARG, "client policy"));
    uint64_t version = 1;
    VEIL_GUARD(veil_json_uint(root, "version", 0, UINT32_MAX, VEIL_ERR_ARG, "client policy", &version));
    VEIL_ENSURE(version == 1, VEIL_ERR_ARG, "client policy: version must be 1");
    VEIL_GUARD(veil_json_bool(root, "require_all_models_listed", VEIL_ERR_ARG, "client policy",
                              &p->require_all_models_listed));
    VEIL_GUARD(policy_attestation(root, p));
    return policy_models(root, p);
}

static void policy_done(struct veil_client_policy **p) { veil_client_policy_free(*p); }

static VEIL_RESULT client_policy_parse(const char *json, size_t size, veil_client_policy **out)
{
    VEIL_ENSURE(out != NULL, VEIL_ERR_ARG, "no output given");
    json_t *root VEIL_DEFER(veil_json_done) = NULL;
    VEIL_GUARD(veil_json_load_object((const uint8_t *)json, size, VEIL_POLICY_MAX_SIZE, VEIL_ERR_ARG, "client policy",
                                     &root));
    struct veil_client_policy *p VEIL_DEFER(policy_done) = calloc(1, sizeof *p);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(policy_fill(root, p));
    *out = p;
    p = NULL;
    return VEIL_RESULT_OK;
}

/* ---- parsing an answer (client side) ---------------------------------------------------------------------- */

struct served_model {
    const char *name, *model_id; /* borrowed from the answer's JSON */
    uint64_t model_version;
};

struct answer {
    json_t *root;           /* owned */
    const json_t *binding;  /* borrowed from root */
    veil_tee tee;
    struct veil_buf evidence;
    const char *domain;
    uint8_t nonce[VEIL_RUNTIME_NONCE_MAX_SIZE];
    size_t nonce_size;
    uint8_t spki[VEIL_SPKI_SHA256_SIZE];
    struct served_model *models;
    size_t model_count;
};

static void answer_done(struct answer *a)
{
    json_decref(a->root);
    veil_buf_cleanup(&a->evidence);
    free(a->models);
}

/* A lower-case hex member of min..max bytes; over max is VEIL_ERR_LIMIT unless the size is fixed. */
static VEIL_RESULT hex_member(const json_t *obj, const char *key, size_t min, size_t max, const char *what,
                              uint8_t *out, size_t *size)
{
    const char *s = NULL;
    VEIL_GUARD(veil_json_string(obj, key, 1, VEIL_ERR_EVIDENCE, what, &s));
    size_t len = strlen(s);
    VEIL_ENSURE(len <= 2 * max || min == max, VEIL_ERR_LIMIT, "%s: member \"%s\" is longer than %zu bytes", what,
                key, max);
    VEIL_ENSURE(len % 2 == 0 && len >= 2 * min && len <= 2 * max, VEIL_ERR_EVIDENCE,
                "%s: member \"%s\" must be %zu to %zu bytes in lower-case hex", what, key, min, max);
    VEIL_GUARD(veil_hex_decode(VEIL_HEX_LOWER, s, len, out, len / 2, VEIL_ERR_EVIDENCE, key));
    if (size != NULL)
        *size = len / 2;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_model(const json_t *m, struct served_model *out)
{
    static const char *const keys[] = {"name", "model_id", "model_version", "key_version", "header_sha256", NULL};
    const char *what = "binding.models[]";
    VEIL_ENSURE(json_is_object(m), VEIL_ERR_EVIDENCE, "%s: a model must be an object", what);
    VEIL_GUARD(veil_json_only_keys(m, keys, VEIL_ERR_EVIDENCE, what));
    VEIL_GUARD(veil_json_string(m, "name", 1, VEIL_ERR_EVIDENCE, what, &out->name));
    VEIL_GUARD(id_check(out->name, VEIL_RUNTIME_NAME_MAX, VEIL_ERR_EVIDENCE, what, "name"));
    VEIL_GUARD(veil_json_string(m, "model_id", 1, VEIL_ERR_EVIDENCE, what, &out->model_id));
    VEIL_GUARD(id_check(out->model_id, VEIL_MODEL_ID_MAX, VEIL_ERR_EVIDENCE, what, "model id"));
    VEIL_GUARD(veil_json_uint(m, "model_version", 1, VEIL_BINDING_MAX_SAFE_INTEGER, VEIL_ERR_EVIDENCE, what,
                              &out->model_version));
    uint64_t key_version = 0;
    VEIL_GUARD(veil_json_uint(m, "key_version", 1, UINT32_MAX, VEIL_ERR_EVIDENCE, what, &key_version));
    uint8_t header[32];
    return hex_member(m, "header_sha256", sizeof header, sizeof header, what, header, NULL);
}

static VEIL_RESULT parse_models(const json_t *binding, struct answer *a)
{
    const json_t *models = json_object_get(binding, "models");
    VEIL_ENSURE(json_is_array(models), VEIL_ERR_EVIDENCE, "binding: member \"models\" is missing or not an array");
    size_t n = json_array_size(models);
    VEIL_ENSURE(n <= VEIL_RUNTIME_MAX_MODELS, VEIL_ERR_LIMIT, "binding: more than %u models",
                VEIL_RUNTIME_MAX_MODELS);
    a->models = calloc(n != 0 ? n : 1, sizeof *a->models);
    VEIL_ENSURE(a->models != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        VEIL_GUARD(parse_model(json_array_get(models, i), &a->models[i]));
        VEIL_ENSURE(i == 0 || strcmp(a->models[i - 1].name, a->models[i].name) < 0, VEIL_ERR_EVIDENCE,
                    "binding: models are not sorted by name, or a name repeats");
        a->model_count++;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_binding(const json_t *b, struct answer *a)
{
    static const char *const keys[] = {"domain", "nonce", "tls_spki_sha256", "models", NULL};
    VEIL_ENSURE(json_is_object(b), VEIL_ERR_EVIDENCE, "answer: member \"binding\" is missing or not an object");
    VEIL_GUARD(veil_json_only_keys(b, keys, VEIL_ERR_EVIDENCE, "binding"));
    VEIL_GUARD(veil_json_string(b, "domain", 1, VEIL_ERR_EVIDENCE, "binding", &a->domain));
    VEIL_GUARD(hex_member(b, "nonce", VEIL_RUNTIME_NONCE_MIN_SIZE, VEIL_RUNTIME_NONCE_MAX_SIZE, "binding", a->nonce,
                          &a->nonce_size));
    VEIL_GUARD(hex_member(b, "tls_spki_sha256", VEIL_SPKI_SHA256_SIZE, VEIL_SPKI_SHA256_SIZE, "binding", a->spki,
                          NULL));
    a->binding = b;
    return parse_models(b, a);
}

static VEIL_RESULT parse_answer(const char *text, size_t size, struct answer *a)
{
    static const char *const keys[] = {"tee", "evidence", "binding", NULL};
    VEIL_ENSURE(size <= VEIL_RUNTIME_ANSWER_MAX_SIZE, VEIL_ERR_LIMIT, "the attestation answer is larger than %u bytes",
                VEIL_RUNTIME_ANSWER_MAX_SIZE);
    VEIL_GUARD(veil_json_load_object((const uint8_t *)text, size, VEIL_RUNTIME_ANSWER_MAX_SIZE, VEIL_ERR_EVIDENCE,
                                     "answer", &a->root));
    VEIL_GUARD(veil_json_only_keys(a->root, keys, VEIL_ERR_EVIDENCE, "answer"));
    const char *tee = NULL;
    VEIL_GUARD(veil_json_string(a->root, "tee", 1, VEIL_ERR_EVIDENCE, "answer", &tee));
    VEIL_ENSURE(veil_tee_from_name(tee, &a->tee) == VEIL_OK && a->tee != VEIL_TEE_AUTO, VEIL_ERR_EVIDENCE,
                "answer: unknown tee \"%.16s\"", tee);
    VEIL_GUARD(veil_json_b64(a->root, "evidence", VEIL_B64_URL, 1, 1, VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_EVIDENCE,
                             "answer", &a->evidence, NULL));
    return parse_binding(json_object_get(a->root, "binding"), a);
}

/* ---- verifying an answer (client side) -------------------------------------------------------------------- */

static VEIL_RESULT options_check(const struct veil_runtime_verify_options *o)
{
    VEIL_ENSURE(o != NULL && o->verify != NULL, VEIL_ERR_ARG, "no verification options given");
    VEIL_ENSURE(o->nonce != NULL && nonce_size_ok(o->nonce_size), VEIL_ERR_ARG,
                "the client's nonce must be %u to %u bytes", VEIL_RUNTIME_NONCE_MIN_SIZE, VEIL_RUNTIME_NONCE_MAX_SIZE);
    VEIL_ENSURE((o->tls_spki_sha256 != NULL) != (o->insecure_no_channel_binding != 0), VEIL_ERR_ARG,
                "give the TLS certificate's key hash, or (plain HTTP only) insecure_no_channel_binding, not both");
    VEIL_ENSURE(o->required_model_count == 0 || o->required_model_ids != NULL, VEIL_ERR_ARG,
                "no required model ids given");
    return VEIL_RESULT_OK;
}

/* Steps 2-4: domain, nonce, channel. */
static VEIL_RESULT check_binding(const struct answer *a, const struct veil_runtime_verify_options *o)
{
    VEIL_ENSURE(strcmp(a->domain, VEIL_BINDING_DOMAIN) == 0, VEIL_ERR_VERIFY,
                WHAT_ANSWER ": binding.domain is not \"" VEIL_BINDING_DOMAIN "\"");
    VEIL_ENSURE(a->nonce_size == o->nonce_size && veil_ct_compare(a->nonce, o->nonce, o->nonce_size) == 0,
                VEIL_ERR_VERIFY,
                WHAT_ANSWER ": binding.nonce is not the nonce this client sent (a replayed or foreign answer)");
    if (o->insecure_no_channel_binding)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(veil_ct_compare(a->spki, o->tls_spki_sha256, VEIL_SPKI_SHA256_SIZE) == 0, VEIL_ERR_VERIFY,
                WHAT_ANSWER ": binding.tls_spki_sha256 is not the key of the certificate on this TLS connection "
                            "(a TLS-terminating proxy or another server answered)");
    return VEIL_RESULT_OK;
}

/* Steps 5-9: report data, evidence, its binding and TEE. */
static VEIL_RESULT check_evidence(const struct answer *a, const struct veil_runtime_verify_options *o,
                                  struct veil_claims *claims, uint8_t rd[VEIL_REPORT_DATA_SIZE])
{
    VEIL_GUARD(veil_binding_report_data(a->binding, rd));
    veil_status st = veil_evidence_verify(a->evidence.data, a->evidence.size, VEIL_TEE_AUTO, o->verify, claims);
    if (st != VEIL_OK)
        return fail_with(st, WHAT_ANSWER ": evidence");
    VEIL_ENSURE(veil_ct_compare(claims->report_data, rd, VEIL_REPORT_DATA_SIZE) == 0, VEIL_ERR_VERIFY,
                WHAT_ANSWER ": the evidence's report data is not SHA-512(JCS(binding)): it binds another binding");
    VEIL_ENSURE(claims->tee == a->tee, VEIL_ERR_VERIFY, WHAT_ANSWER ": the answer says tee %s, the evidence is %s",
                veil_tee_name(a->tee), veil_tee_name(claims->tee));
    VEIL_ENSURE(!o->insecure_no_channel_binding || claims->tee == VEIL_TEE_SIM, VEIL_ERR_POLICY,
                WHAT_ANSWER ": plain HTTP without channel binding is allowed for the simulation TEE only, not %s",
                veil_tee_name(claims->tee));
    return VEIL_RESULT_OK;
}

static const struct model_rule *rule_for(const veil_client_policy *p, const char *model_id)
{
    for (size_t i = 0; i < p->rule_count; i++)
        if (strcmp(p->rules[i].model_id, model_id) == 0)
            return &p->rules[i];
    return NULL;
}

/* Step 11: every served model against the policy, then the models the caller requires. */
static VEIL_RESULT check_models(const struct answer *a, const veil_client_policy *p,
                                const struct veil_runtime_verify_options *o)
{
    for (size_t i = 0; i < a->model_count; i++) {
        const struct served_model *m = &a->models[i];
        const struct model_rule *r = rule_for(p, m->model_id);
        VEIL_ENSURE(r != NULL || !p->require_all_models_listed, VEIL_ERR_POLICY,
                    WHAT_ANSWER ": model %s (model id %s) is served but not listed in the client policy", m->name,
                    m->model_id);
        VEIL_ENSURE(r == NULL || m->model_version >= r->min_model_version, VEIL_ERR_POLICY,
                    WHAT_ANSWER ": model %s (model id %s) has model_version %llu, below the policy's minimum %llu",
                    m->name, m->model_id, (unsigned long long)m->model_version,
                    (unsigned long long)(r != NULL ? r->min_model_version : 0));
    }
    for (size_t k = 0; k < o->required_model_count; k++) {
        const char *id = o->required_model_ids[k];
        size_t i = 0;
        while (id != NULL && i < a->model_count && strcmp(a->models[i].model_id, id) != 0)
            i++;
        VEIL_ENSURE(id != NULL && i < a->model_count, VEIL_ERR_POLICY,
                    WHAT_ANSWER ": the runtime serves no model with the required model id %.128s",
                    id != NULL ? id : "(null)");
    }
    return VEIL_RESULT_OK;
}

/* ---- the report --------------------------------------------------------------------------------------------- */

static VEIL_RESULT report_claims(json_t *report, const struct veil_claims *claims)
{
    char *text VEIL_DEFER(str_done) = NULL;
    veil_status st = veil_claims_to_json(claims, &text);
    if (st != VEIL_OK)
        return fail_with(st, "claims");
    json_t *j = json_loads(text, 0, NULL);
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    return veil_json_set(report, "claims", j);
}

static VEIL_RESULT report_channel(json_t *report, const struct answer *a, int insecure)
{
    json_t *c = json_object();
    VEIL_GUARD(veil_json_set(report, "channel", c));
    VEIL_GUARD(set_hex(c, "tls_spki_sha256", a->spki, sizeof a->spki));
    if (insecure) {
        VEIL_GUARD(veil_json_set(c, "binding", json_string("none")));
        return veil_json_set(c, "checked", json_false());
    }
    char pin[VEIL_SPKI_PIN_SIZE];
    VEIL_ENSURE(veil_spki_pin(a->spki, pin) == VEIL_OK, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_json_set(c, "binding", json_string("tls-spki-sha256")));
    VEIL_GUARD(veil_json_set(c, "checked", json_true()));
    return veil_json_set(c, "curl_pin", json_string(pin));
}

static VEIL_RESULT report_warnings(json_t *report, veil_tee tee, int insecure)
{
    json_t *w = json_array();
    VEIL_GUARD(veil_json_set(report, "warnings", w));
    if (insecure)
        VEIL_ENSURE(json_array_append_new(w, json_string("NO CHANNEL BINDING: the answer came over plain HTTP; it is "
                                                         "not bound to any connection, and anyone on the path can "
                                                         "read and change requests and answers")) == 0,
                    VEIL_ERR_NOMEM, "out of memory");
    if (tee == VEIL_TEE_SIM)
        VEIL_ENSURE(json_array_append_new(w, json_string("SIMULATION TEE: the evidence is signed by a key on an "
                                                         "ordinary machine; it protects nothing")) == 0,
                    VEIL_ERR_NOMEM, "out of memory");
    if (tee == VEIL_TEE_SAMPLE)
        VEIL_ENSURE(json_array_append_new(w, json_string("SAMPLE TEE: unsigned evidence; it proves nothing")) == 0,
                    VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT report_build(const struct answer *a, const struct veil_claims *claims, int insecure,
                                char **report_json)
{
    json_t *r VEIL_DEFER(veil_json_done) = json_object();
    VEIL_ENSURE(r != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_json_set(r, "verified", json_true()));
    VEIL_GUARD(veil_json_set(r, "tee", json_string(veil_tee_name(claims->tee))));
    VEIL_GUARD(report_claims(r, claims));
    VEIL_GUARD(report_channel(r, a, insecure));
    VEIL_GUARD(set_hex(r, "nonce", a->nonce, a->nonce_size));
    VEIL_GUARD(veil_json_set(r, "models", json_deep_copy(json_object_get(a->binding, "models"))));
    VEIL_GUARD(report_warnings(r, claims->tee, insecure));
    *report_json = json_dumps(r, JSON_COMPACT);
    VEIL_ENSURE(*report_json != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_binding_verify(const char *answer, size_t answer_size, const veil_client_policy *policy,
                                const struct veil_runtime_verify_options *options, char **report_json)
{
    VEIL_ENSURE(report_json != NULL && policy != NULL, VEIL_ERR_ARG, "no client policy or report output given");
    *report_json = NULL;
    VEIL_GUARD(options_check(options));
    VEIL_ENSURE(answer != NULL || answer_size == 0, VEIL_ERR_ARG, "no answer given");
    struct answer a VEIL_DEFER(answer_done) = {0};
    VEIL_GUARD(parse_answer(answer, answer_size, &a));                     /* 1 */
    VEIL_GUARD(check_binding(&a, options));                                /* 2-4 */
    struct veil_claims claims;
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    VEIL_GUARD(check_evidence(&a, options, &claims, rd));                  /* 5-9 */
    veil_status st = veil_policy_check(policy->attestation, &claims, rd);  /* 10 */
    if (st != VEIL_OK)
        return fail_with(st, WHAT_ANSWER);
    VEIL_GUARD(check_models(&a, policy, options));                         /* 11 */
    return report_build(&a, &claims, options->insecure_no_channel_binding != 0, report_json); /* 12 */
}

/* ---- public API (include/veil/client.h) --------------------------------------------------------------------- */

size_t veil_runtime_nonce_min_size(void) { return VEIL_RUNTIME_NONCE_MIN_SIZE; }
size_t veil_runtime_nonce_max_size(void) { return VEIL_RUNTIME_NONCE_MAX_SIZE; }
size_t veil_runtime_answer_max_size(void) { return VEIL_RUNTIME_ANSWER_MAX_SIZE; }
size_t veil_spki_pin_size(void) { return VEIL_SPKI_PIN_SIZE; }

veil_status veil_cert_spki_sha256(const uint8_t *cert, size_t size, uint8_t out[VEIL_SPKI_SHA256_SIZE])
{
    veil_error_clear();
    return veil_binding_cert_spki_sha256(cert, size, out).status;
}

static VEIL_RESULT spki_pin(const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE], char out[VEIL_SPKI_PIN_SIZE])
{
    VEIL_ENSURE(spki_sha256 != NULL && out != NULL, VEIL_ERR_ARG, "no key hash or output given");
    char *b64 VEIL_DEFER(str_done) = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, spki_sha256, VEIL_SPKI_SHA256_SIZE, &b64));
    snprintf(out, VEIL_SPKI_PIN_SIZE, "sha256//%s", b64);
    return VEIL_RESULT_OK;
}

veil_status veil_spki_pin(const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE], char out[VEIL_SPKI_PIN_SIZE])
{
    veil_error_clear();
    return spki_pin(spki_sha256, out).status;
}

veil_status veil_runtime_attestation_answer(veil_tee tee, const struct veil_provider_config *config,
                                            const uint8_t *nonce, size_t nonce_size,
                                            const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE],
                                            const struct veil_binding_model *models, size_t count, char **answer_json)
{
    veil_error_clear();
    if (answer_json != NULL)
        *answer_json = NULL;
    return veil_binding_answer(tee, config, nonce, nonce_size, spki_sha256, models, count, answer_json).status;
}

veil_status veil_client_policy_parse(const char *json, size_t size, veil_client_policy **out)
{
    veil_error_clear();
    if (out != NULL)
        *out = NULL;
    return client_policy_parse(json, size, out).status;
}

void veil_client_policy_free(veil_client_policy *policy)
{
    if (policy == NULL)
        return;
    veil_policy_free(policy->attestation);
    free(policy->rules);
    free(policy);
}

veil_status veil_runtime_verify(const char *answer, size_t answer_size, const veil_client_policy *policy,
                                const struct veil_runtime_verify_options *options, char **report_json)
{
    veil_error_clear();
    if (report_json != NULL)
        *report_json = NULL;
    return veil_binding_verify(answer, answer_size, policy, options, report_json).status;
}
