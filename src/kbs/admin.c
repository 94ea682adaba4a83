/* SPDX-License-Identifier: Apache-2.0 */
/* Veil's admin API (docs/kbs-admin.openapi.yaml): model keys, release policies, usage policies, the audit log.
 * Every request
 * carries the admin bearer token or comes with a verified admin client certificate (checked in routes.c before any
 * handler runs). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/hex.h"
#include "core/json.h"
#include "crypto/crypto.h"
#include "kbsd.h"
#include "serve/usage.h"

#define GENERATED_KEY_SIZE 32u

static int token_matches(const struct kbs_ctx *k, const char *h)
{
    size_t want = strlen(k->admin_token);
    return h != NULL && strncmp(h, "Bearer ", 7) == 0 && strlen(h + 7) == want &&
           veil_ct_compare(h + 7, k->admin_token, want) == 0;
}

/* A verified client certificate (mutual TLS, http.c) or the bearer token; the method is logged either way. */
int kbs_admin_authorized(struct kbs_ctx *k, const struct vd_request *rq)
{
    if (rq->client_cert_ok) {
        vd_log("info", "admin-auth", "{s:s, s:s, s:s}", "client", rq->client, "auth", "client-certificate",
                "subject", rq->client_cert_subject != NULL ? rq->client_cert_subject : "");
        return 1;
    }
    const char *h = vd_request_get(rq, VD_HEADER, "Authorization");
    if (token_matches(k, h)) {
        vd_log("info", "admin-auth", "{s:s, s:s}", "client", rq->client, "auth", "token");
        return 1;
    }
    vd_log("warn", "admin-denied", "{s:s, s:s}", "client", rq->client, "reason",
            h == NULL ? "no Authorization header and no verified client certificate" : "wrong admin token");
    return 0;
}

static void fail(struct vd_response *rs, unsigned status, const char *code)
{
    kbs_respond_admin_error(rs, status, code, veil_last_error());
}

static void internal(struct vd_response *rs)
{
    vd_log("error", "admin-internal", "{s:s}", "detail", veil_last_error());
    kbs_respond_admin_error(rs, 500, "internal", "internal error (see the broker's log)");
}

static VEIL_RESULT body_object(struct kbs_ctx *k, const struct vd_request *rq, int allow_empty, json_t **out)
{
    if (rq->body_size == 0 && allow_empty) {
        *out = json_object();
        VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
        return VEIL_RESULT_OK;
    }
    return veil_json_load_object(rq->body, rq->body_size, k->cfg->admin_max_body_size, VEIL_ERR_ARG, "request body",
                                 out);
}

/* A policy object validated by libveil's parser, as compact JSON (malloc'd). */
static VEIL_RESULT policy_text(const json_t *policy, char **out)
{
    VEIL_ENSURE(json_is_object(policy), VEIL_ERR_ARG, "\"policy\" must be an object (docs/spec/policy.md)");
    char *text = json_dumps(policy, JSON_COMPACT);
    VEIL_ENSURE(text != NULL, VEIL_ERR_NOMEM, "out of memory");
    veil_policy *p = NULL;
    veil_status st = veil_policy_parse(text, strlen(text), &p);
    veil_policy_free(p);
    if (st != VEIL_OK) {
        free(text);
        return (struct veil_result){st};
    }
    *out = text;
    return VEIL_RESULT_OK;
}

/* The "key" member (base64, 16..64 bytes), or a fresh 32-byte key when absent. */
static VEIL_RESULT key_member(const json_t *body, struct veil_buf *key, int *generated)
{
    int present = 0;
    /* Reserved first: veil_json_b64 computes out->data + size on a too-short value, undefined on a NULL buffer
     * (lib/core/json.c; reported). */
    VEIL_GUARD(veil_buf_reserve(key, VEIL_KBS_MODEL_KEY_MAX_SIZE));
    VEIL_GUARD(veil_json_b64(body, "key", VEIL_B64_STD, 0, VEIL_KBS_MODEL_KEY_MIN_SIZE, VEIL_KBS_MODEL_KEY_MAX_SIZE,
                             VEIL_ERR_ARG, "request body", key, &present));
    *generated = !present;
    if (present)
        return VEIL_RESULT_OK;
    uint8_t fresh[GENERATED_KEY_SIZE];
    struct veil_result r = veil_random(fresh, sizeof fresh);
    if (veil_ok(r))
        r = veil_buf_append(key, fresh, sizeof fresh);
    veil_wipe(fresh, sizeof fresh);
    return r;
}

/* {"model_id", "version", "key" (only when the broker generated it: the owner needs it to seal)}. */
static void key_created(struct vd_response *rs, const char *model_id, uint32_t version, const struct veil_buf *key,
                        int generated)
{
    json_t *o = json_pack("{s:s, s:I}", "model_id", model_id, "version", (json_int_t)version);
    char *b64 = NULL;
    if (o != NULL && generated && veil_ok(veil_b64_encode(VEIL_B64_STD, key->data, key->size, &b64))) {
        json_object_set_new(o, "key", json_string(b64));
        veil_wipe(b64, strlen(b64));
        free(b64);
    }
    vd_respond_json(rs, 201, o);
}

struct create_args {
    const char *model_id;
    char *policy;
    struct veil_buf key;
    int generated;
};

static VEIL_RESULT create_parse(struct kbs_ctx *k, const struct vd_request *rq, struct create_args *a,
                                json_t **body)
{
    static const char *const keys[] = {"model_id", "key", "policy", NULL};
    VEIL_GUARD(body_object(k, rq, 0, body));
    VEIL_GUARD(veil_json_only_keys(*body, keys, VEIL_ERR_ARG, "request body"));
    VEIL_GUARD(veil_json_string(*body, "model_id", 1, VEIL_ERR_ARG, "request body", &a->model_id));
    VEIL_GUARD(veil_kbs_model_id_check(a->model_id, strlen(a->model_id)));
    const json_t *p = json_object_get(*body, "policy");
    if (p != NULL)
        VEIL_GUARD(policy_text(p, &a->policy));
    else
        VEIL_ENSURE((a->policy = strdup(k->default_policy)) != NULL, VEIL_ERR_NOMEM, "out of memory");
    return key_member(*body, &a->key, &a->generated);
}

void kbs_admin_model_create(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    struct create_args a = {0};
    veil_buf_init_secret(&a.key);
    VEIL_DEFER(veil_json_done) json_t *body = NULL;
    if (!veil_ok(create_parse(k, rq, &a, &body))) {
        fail(rs, 400, "bad_request");
    } else {
        uint32_t version = 0;
        int outcome = 0;
        if (!veil_ok(kbs_keys_store(k, a.model_id, a.policy, 1, a.key.data, a.key.size, rq->client, &version,
                                    &outcome)))
            internal(rs);
        else if (outcome != 0)
            kbs_respond_admin_error(rs, 409, "conflict", "the model exists; rotate its key instead");
        else
            key_created(rs, a.model_id, version, &a.key, a.generated);
    }
    free(a.policy);
    veil_buf_cleanup(&a.key);
}

void kbs_admin_key_rotate(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    const char *model_id = rq->captures[0];
    VEIL_DEFER(veil_json_done) json_t *body = NULL;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf key;
    veil_buf_init_secret(&key);
    static const char *const keys[] = {"key", NULL};
    int generated = 0, outcome = 0;
    uint32_t version = 0;
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))) || !veil_ok(body_object(k, rq, 1, &body)) ||
        !veil_ok(veil_json_only_keys(body, keys, VEIL_ERR_ARG, "request body")) ||
        !veil_ok(key_member(body, &key, &generated)))
        fail(rs, 400, "bad_request");
    else if (!veil_ok(kbs_keys_store(k, model_id, NULL, 0, key.data, key.size, rq->client, &version, &outcome)))
        internal(rs);
    else if (outcome != 0)
        kbs_respond_admin_error(rs, 404, "not_found", "no such model");
    else
        key_created(rs, model_id, version, &key, generated);
}

static VEIL_RESULT version_parse(const char *s, uint32_t *out)
{
    char tag[VEIL_KBS_MODEL_ID_MAX + 16], id[VEIL_KBS_MODEL_ID_MAX + 1];
    VEIL_ENSURE(strlen(s) <= 10, VEIL_ERR_ARG, "bad key version");
    snprintf(tag, sizeof tag, "m@%s", s);
    VEIL_GUARD(veil_kbs_resource_tag_parse(tag, id, out));
    VEIL_ENSURE(*out != 0, VEIL_ERR_ARG, "bad key version");
    return VEIL_RESULT_OK;
}

void kbs_admin_key_revoke(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    const char *model_id = rq->captures[0];
    uint32_t version = 0;
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))) ||
        !veil_ok(version_parse(rq->captures[1], &version))) {
        fail(rs, 400, "bad_request");
        return;
    }
    struct kbs_audit_event e = {.event = "key-revoke", .decision = "allow", .reason = "admin revoked the version",
                                .client = rq->client, .model = model_id, .key_version = version};
    char *record = kbs_audit_record(&e);
    int found = 0;
    struct veil_result r = record != NULL ? k->store->ops->key_revoke(k->store, model_id, version, record, &found)
                                          : veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    free(record);
    if (!veil_ok(r))
        internal(rs);
    else if (!found)
        kbs_respond_admin_error(rs, 404, "not_found", "no such model or key version");
    else
        vd_respond_json(rs, 200, json_pack("{s:s, s:I, s:b}", "model_id", model_id, "version", (json_int_t)version,
                                            "revoked", 1));
}

void kbs_admin_models_list(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    (void)rq;
    json_t *models = NULL;
    if (!veil_ok(k->store->ops->model_list(k->store, &models)))
        internal(rs);
    else
        vd_respond_json(rs, 200, json_pack("{s:o}", "models", models));
}

static json_t *model_of(struct kbs_ctx *k, const struct vd_request *rq, struct vd_response *rs)
{
    const char *model_id = rq->captures[0];
    json_t *m = NULL;
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))))
        fail(rs, 400, "bad_request");
    else if (!veil_ok(k->store->ops->model_get(k->store, model_id, &m)))
        internal(rs);
    else if (m == NULL)
        kbs_respond_admin_error(rs, 404, "not_found", "no such model");
    return m;
}

void kbs_admin_model_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    json_t *m = model_of(k, rq, rs);
    if (m != NULL)
        vd_respond_json(rs, 200, m);
}

void kbs_admin_policy_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    json_t *m = model_of(k, rq, rs);
    if (m != NULL)
        vd_respond_json(rs, 200, json_incref(json_object_get(m, "policy")));
    json_decref(m);
}

void kbs_admin_policy_set(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    const char *model_id = rq->captures[0];
    VEIL_DEFER(veil_json_done) json_t *body = NULL;
    char *text = NULL;
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))) || !veil_ok(body_object(k, rq, 0, &body)) ||
        !veil_ok(policy_text(body, &text))) {
        fail(rs, 400, "bad_request");
        return;
    }
    struct kbs_audit_event e = {.event = "policy-set", .decision = "allow", .reason = text, .client = rq->client,
                                .model = model_id};
    char *record = kbs_audit_record(&e);
    int found = 0;
    struct veil_result r = record != NULL ? k->store->ops->policy_set(k->store, model_id, text, record, &found)
                                          : veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    free(record);
    if (!veil_ok(r))
        internal(rs);
    else if (!found)
        kbs_respond_admin_error(rs, 404, "not_found", "no such model");
    else
        vd_respond_json(rs, 200, json_loads(text, 0, NULL));
    free(text);
}

/* ---- usage policies (docs/spec/usage-policy.md, lib/serve/usage.h) --------------------------------------- */

/* A usage policy from the request body, validated by the parser veil-runtime uses (its message on failure), as
 * the compact JSON text the broker stores and releases (malloc'd), the number of its clients and the SHA-256 of
 * that text (hex). Neither the body nor the text is ever logged: they hold the clients' API-key hashes. */
struct usage_doc {
    char *text;
    size_t clients;
    char sha256[2 * VEIL_SHA256_SIZE + 1];
};

static VEIL_RESULT usage_check(const char *text, size_t size, size_t *clients)
{
    struct veil_usage_policy *p = NULL;
    VEIL_GUARD(veil_usage_parse(text, size, &p));
    *clients = p->client_count;
    veil_usage_free(p);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT usage_doc_parse(const struct vd_request *rq, struct usage_doc *d)
{
    VEIL_GUARD(usage_check((const char *)rq->body, rq->body_size, &d->clients));
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(rq->body, rq->body_size, VEIL_USAGE_MAX_SIZE, VEIL_ERR_ARG, "usage policy",
                                     &j));
    d->text = json_dumps(j, JSON_COMPACT);
    VEIL_ENSURE(d->text != NULL, VEIL_ERR_NOMEM, "out of memory");
    size_t size = strlen(d->text);
    VEIL_GUARD(usage_check(d->text, size, &d->clients)); /* what the TEE will parse */
    uint8_t digest[VEIL_SHA256_SIZE];
    VEIL_GUARD(veil_sha256((const uint8_t *)d->text, size, digest));
    veil_hex_encode(digest, sizeof digest, d->sha256);
    return VEIL_RESULT_OK;
}

/* {"usage": <the policy object> | null}; text NULL: null. */
static void usage_respond(struct vd_response *rs, const char *text)
{
    json_t *u = text != NULL ? json_loads(text, 0, NULL) : json_null();
    if (u == NULL) {
        vd_log("error", "admin-internal", "{s:s}", "detail", "store: a stored usage policy is not JSON");
        kbs_respond_admin_error(rs, 500, "internal", "internal error (see the broker's log)");
        return;
    }
    vd_respond_json(rs, 200, json_pack("{s:o}", "usage", u));
}

/* Stores (text) or clears (NULL) the model's usage policy with its audit record; answers as GET would. */
static void usage_store(struct kbs_ctx *k, const struct vd_request *rq, struct vd_response *rs,
                        const struct usage_doc *d)
{
    const char *model_id = rq->captures[0];
    char reason[160];
    if (d->text != NULL)
        snprintf(reason, sizeof reason, "usage policy with %zu client(s), sha256 %s", d->clients, d->sha256);
    else
        snprintf(reason, sizeof reason, "usage policy cleared: the model is open to every caller");
    struct kbs_audit_event e = {.event = d->text != NULL ? "usage-set" : "usage-clear", .decision = "allow",
                                .reason = reason, .client = rq->client, .model = model_id};
    char *record = kbs_audit_record(&e);
    int found = 0;
    struct veil_result r = record != NULL ? k->store->ops->usage_set(k->store, model_id, d->text, record, &found)
                                          : veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    free(record);
    if (!veil_ok(r)) {
        internal(rs);
    } else if (!found) {
        kbs_respond_admin_error(rs, 404, "not_found", "no such model");
    } else {
        if (d->text != NULL)
            vd_log("info", e.event, "{s:s, s:s, s:I, s:s}", "client", rq->client, "model", model_id, "clients",
                   (json_int_t)d->clients, "policy_sha256", d->sha256);
        else
            vd_log("info", e.event, "{s:s, s:s}", "client", rq->client, "model", model_id);
        usage_respond(rs, d->text);
    }
}

void kbs_admin_usage_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    const char *model_id = rq->captures[0];
    char *text = NULL;
    int found = 0;
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))))
        fail(rs, 400, "bad_request");
    else if (!veil_ok(k->store->ops->usage_get(k->store, model_id, &text, &found)))
        internal(rs);
    else if (!found)
        kbs_respond_admin_error(rs, 404, "not_found", "no such model");
    else
        usage_respond(rs, text);
    free(text);
}

void kbs_admin_usage_set(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    const char *model_id = rq->captures[0];
    struct usage_doc d = {0};
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))) || !veil_ok(usage_doc_parse(rq, &d)))
        fail(rs, 400, "bad_request");
    else
        usage_store(k, rq, rs, &d);
    free(d.text);
}

void kbs_admin_usage_clear(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    const char *model_id = rq->captures[0];
    struct usage_doc d = {0};
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))))
        fail(rs, 400, "bad_request");
    else
        usage_store(k, rq, rs, &d);
}

/* GET /admin/v1/models/<m>/usage/counters: {"used": {client: admitted requests}}, as veil-kbs keeps them from the
 * reports of key caches (docs/spec/usage-policy.md §5). */
void kbs_admin_usage_counters(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    const char *model_id = rq->captures[0];
    json_t *empty = json_object(), *totals = json_object();
    int found = 0;
    if (!veil_ok(veil_kbs_model_id_check(model_id, strlen(model_id))))
        fail(rs, 400, "bad_request");
    else if (empty == NULL || totals == NULL ||
             !veil_ok(k->store->ops->usage_count(k->store, model_id, empty, totals, &found)))
        internal(rs);
    else if (!found)
        kbs_respond_admin_error(rs, 404, "not_found", "no such model");
    else
        vd_respond_json(rs, 200, json_pack("{s:O}", "used", totals));
    json_decref(empty);
    json_decref(totals);
}

static int query_u64(const struct vd_request *rq, const char *key, uint64_t def, uint64_t max, uint64_t *out)
{
    const char *v = vd_request_get(rq, VD_QUERY, key);
    if (v == NULL) {
        *out = def;
        return 1;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || errno != 0 || *end != '\0' || n > max)
        return 0;
    *out = n;
    return 1;
}

void kbs_admin_audit_read(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    uint64_t from = 1, limit = 0, max = k->cfg->audit_page_max;
    if (!query_u64(rq, "from", 1, INT64_MAX, &from) || !query_u64(rq, "limit", max, max, &limit) || limit == 0) {
        kbs_respond_admin_error(rs, 400, "bad_request", "from and limit must be whole numbers (limit 1..page max)");
        return;
    }
    json_t *entries = NULL;
    if (!veil_ok(k->store->ops->audit_read(k->store, from, limit, &entries))) {
        internal(rs);
        return;
    }
    size_t n = json_array_size(entries);
    json_int_t next = n > 0 ? json_integer_value(json_object_get(json_array_get(entries, n - 1), "seq")) + 1
                            : (json_int_t)from;
    vd_respond_json(rs, 200, json_pack("{s:o, s:I}", "entries", entries, "next", next));
}
