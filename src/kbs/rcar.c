/* SPDX-License-Identifier: Apache-2.0 */
/* Trustee RCAR 0.4.0 (shared/reference/attestation.md section 1): /auth hands out a challenge and a session
 * cookie, /attest verifies evidence bound to that challenge and the TEE's public key and returns an EAR-shaped
 * ES256 token, /resource releases a model key encrypted to that key when the model's policy allows the claims,
 * and (veil/usage-policy/<model>) the model's usage policy under the same rules; /veil-usage/<model> adds a
 * usage report to the model's counters and answers them, to the same requesters (docs/spec/usage-policy.md §5).
 * Every refusal is 401 (404 for a path that names nothing) with a fixed body; the reason goes to the log and to
 * the audit log. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hex.h"
#include "core/json.h"
#include "crypto/crypto.h"
#include "kbsd.h"
#include "metrics.h"
#include "serve/usage.h"
#include "veil/kbs_client.h"

#define EAR_PROFILE "tag:github.com,2024:confidential-containers/Trustee"
#define ANNOTATED "ear.veraison.annotated-evidence"
#define REASON_SIZE 256u

/* What a refusal needs: the error type for the client, the reason for the log, the context for the audit, and
 * whether the request had authenticated (a challenged session for /attest, an attested session or a valid token for
 * /resource). Only decisions on authenticated requests are audited: anyone can send unauthenticated ones, which
 * would otherwise grow the durable audit log without bound; those are counted in the metrics and logged. */
struct refusal {
    const char *type;
    unsigned status;
    int authenticated;
    char reason[REASON_SIZE];
};

static void refuse(struct refusal *f, unsigned status, const char *type, const char *reason)
{
    f->status = status;
    f->type = type;
    snprintf(f->reason, sizeof f->reason, "%s", reason);
}

/* Answers with the refusal; audits it when the request had authenticated, else counts and logs it. */
static void deny(struct kbs_ctx *k, const struct vd_request *rq, struct vd_response *rs, struct kbs_audit_event *e,
                 const struct refusal *f)
{
    e->decision = "deny";
    e->reason = f->reason;
    e->client = rq->client;
    if (f->authenticated) {
        kbs_audit(k, e);
    } else {
        kbs_metrics_unauthenticated(e->event);
        vd_log("info", "refused-unauthenticated", "{s:s, s:s, s:s}", "event", e->event, "reason", f->reason,
               "client", rq->client);
    }
    kbs_respond_protocol_error(rs, f->status, f->type);
}

static int session_id_valid(const char *id)
{
    if (id == NULL || strlen(id) != KBS_SESSION_ID_SIZE)
        return 0;
    for (const char *p = id; *p != '\0'; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

/* ---- /kbs/v0/auth --------------------------------------------------------------------------------------- */

/* A Request: exactly version "0.4.0", tee (a kbs-types name, or Veil's "sim") and optional extra-params. */
static VEIL_RESULT request_parse(const uint8_t *body, size_t size, size_t max, char tee[KBS_TEE_NAME_SIZE + 1])
{
    static const char *const keys[] = {"version", "tee", "extra-params", NULL};
    static const char what[] = "request";
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(body, size, max, VEIL_ERR_FORMAT, what, &j));
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_FORMAT, what));
    const char *version = NULL, *name = NULL;
    VEIL_GUARD(veil_json_string(j, "version", 1, VEIL_ERR_FORMAT, what, &version));
    VEIL_ENSURE(strcmp(version, VEIL_RCAR_VERSION) == 0, VEIL_ERR_VERSION, "request: version \"%.16s\" is not %s",
                version, VEIL_RCAR_VERSION);
    VEIL_GUARD(veil_json_string(j, "tee", 1, VEIL_ERR_FORMAT, what, &name));
    VEIL_ENSURE(strlen(name) <= KBS_TEE_NAME_SIZE, VEIL_ERR_FORMAT, "request: tee name is too long");
    if (strcmp(name, "sim") != 0)
        VEIL_GUARD(veil_rcar_tee_check(name));
    strcpy(tee, name);
    return VEIL_RESULT_OK;
}

static int tee_allowed(const struct kbs_ctx *k, const char *name, veil_tee *tee)
{
    if (veil_tee_from_name(name, tee) != VEIL_OK)
        return 0;
    for (size_t i = 0; i < k->allowed_tee_count; i++)
        if (k->allowed_tees[i] == *tee)
            return 1;
    return 0;
}

static VEIL_RESULT session_new(struct kbs_ctx *k, const char *tee, struct kbs_session *s)
{
    uint8_t id[KBS_SESSION_ID_SIZE / 2];
    VEIL_GUARD(veil_random(id, sizeof id));
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* a version-4 UUID, as Trustee's cookies */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
    veil_hex_encode(id, sizeof id, s->id);
    snprintf(s->tee, sizeof s->tee, "%s", tee);
    VEIL_GUARD(veil_rcar_nonce_generate(s->nonce));
    int64_t now = vd_now();
    s->expires = now + (int64_t)k->cfg->session_ttl_s;
    return k->store->ops->session_create(k->store, s, now);
}

static void set_cookie(struct vd_response *rs, const char *id, int64_t expires)
{
    char date[64];
    time_t t = (time_t)expires;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(rs->set_cookie, sizeof rs->set_cookie, KBS_COOKIE_NAME "=%s; Expires=%s; Path=/kbs; HttpOnly", id, date);
}

void kbs_rcar_auth(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    struct kbs_audit_event e = {.event = "auth"};
    struct refusal f = {0};
    char tee[KBS_TEE_NAME_SIZE + 1];
    veil_tee t = VEIL_TEE_AUTO;
    if (!veil_ok(request_parse(rq->body, rq->body_size, k->cfg->max_body_size, tee))) {
        refuse(&f, 401, "SerdeError", veil_last_error());
        deny(k, rq, rs, &e, &f);
        return;
    }
    e.tee = tee;
    if (!tee_allowed(k, tee, &t)) {
        refuse(&f, 401, "AttestationError", "this broker does not accept the TEE type");
        deny(k, rq, rs, &e, &f);
        return;
    }
    struct kbs_session s = {0};
    if (!veil_ok(session_new(k, tee, &s))) {
        vd_log("error", "session-create-failed", "{s:s}", "detail", veil_last_error());
        kbs_respond_protocol_error(rs, 401, "PluginInternalError");
        return;
    }
    char tag[VD_TAG_SIZE];
    vd_log_tag(s.id, tag); /* the cookie is a bearer secret: the log holds a short hash of it */
    vd_log("info", "auth", "{s:s, s:s, s:s}", "client", rq->client, "tee", tee, "session", tag);
    set_cookie(rs, s.id, s.expires);
    json_t *challenge = NULL;
    if (!veil_ok(veil_rcar_challenge_build(s.nonce, &challenge))) {
        kbs_respond_protocol_error(rs, 401, "PluginInternalError");
        return;
    }
    vd_respond_json(rs, 200, challenge);
}

/* ---- /kbs/v0/attest ------------------------------------------------------------------------------------- */

static void attestation_done(struct veil_rcar_attestation *a)
{
    veil_rcar_attestation_cleanup(a);
}

static void session_done(struct kbs_session *s)
{
    kbs_session_cleanup(s);
}

/* The session of the cookie: it must exist, be unexpired and still wait for its evidence. */
static VEIL_RESULT challenged_session(struct kbs_ctx *k, const struct vd_request *rq, struct kbs_session *s)
{
    const char *id = vd_request_get(rq, VD_COOKIE, KBS_COOKIE_NAME);
    VEIL_ENSURE(id != NULL, VEIL_ERR_ARG, "no session cookie");
    VEIL_ENSURE(session_id_valid(id), VEIL_ERR_ARG, "malformed session cookie");
    int found = 0;
    VEIL_GUARD(k->store->ops->session_get(k->store, id, s, &found));
    VEIL_ENSURE(found, VEIL_ERR_ARG, "unknown session");
    VEIL_ENSURE(s->expires >= vd_now(), VEIL_ERR_EXPIRED, "the session expired");
    VEIL_ENSURE(!s->attested, VEIL_ERR_ARG, "the session is already attested (nonce replay)");
    return VEIL_RESULT_OK;
}

/* primary_evidence in Veil's format (docs/spec/evidence.md); "tee" may be left out (Trustee attesters): it is
 * then the session's. */
static VEIL_RESULT evidence_bytes(const json_t *primary, const char *tee, char **out)
{
    VEIL_DEFER(veil_json_done) json_t *copy = json_deep_copy(primary);
    VEIL_ENSURE(copy != NULL, VEIL_ERR_NOMEM, "out of memory");
    if (json_object_get(copy, "tee") == NULL)
        VEIL_GUARD(veil_json_set(copy, "tee", json_string(tee)));
    *out = json_dumps(copy, JSON_COMPACT);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static const char *nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

static VEIL_RESULT evidence_verify(struct kbs_ctx *k, const struct veil_rcar_attestation *a, const char *tee_name,
                                   struct veil_claims *claims)
{
    veil_tee tee = VEIL_TEE_AUTO;
    VEIL_ENSURE(veil_tee_from_name(tee_name, &tee) == VEIL_OK, VEIL_ERR_UNSUPPORTED, "unsupported tee");
    char *evidence = NULL;
    VEIL_GUARD(evidence_bytes(a->primary_evidence, tee_name, &evidence));
    const struct kbs_config *c = k->cfg;
    struct veil_verify_options o = {.now = (uint64_t)vd_now(),
                                    .collateral_path = nonempty(c->dcap_collateral),
                                    .pccs_url = nonempty(c->pccs_url),
                                    .collateral_cache_dir = nonempty(c->collateral_cache_dir),
                                    .sim_trusted_keys = (const char *const *)k->sim_keys,
                                    .sim_trusted_key_count = k->sim_key_count,
                                    .snp_cert_path = nonempty(c->snp_cert)};
    veil_status st = veil_evidence_verify((const uint8_t *)evidence, strlen(evidence), tee, &o, claims);
    free(evidence);
    return (struct veil_result){st};
}

/* The evidence must bind HASH(JCS({tee-pubkey, nonce, additional-evidence})) (reference section 1.3). */
static VEIL_RESULT binding_check(const struct veil_rcar_attestation *a, const struct veil_claims *claims)
{
    uint8_t expected[VEIL_KBS_REPORT_DATA_SIZE];
    VEIL_GUARD(veil_kbs_report_data(a->nonce, a->tee_pubkey_json, a->additional_evidence, a->hash, expected));
    VEIL_ENSURE(veil_ct_compare(expected, claims->report_data, sizeof expected) == 0, VEIL_ERR_VERIFY,
                "the evidence's report data does not bind this nonce and tee-pubkey");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT annotated_evidence(const struct veil_rcar_attestation *a, const struct veil_claims *claims,
                                      json_t **out)
{
    json_t *cj = NULL;
    VEIL_GUARD(veil_kbs_claims_to_json(claims, &cj));
    char rd[2 * VEIL_REPORT_DATA_SIZE + 1];
    veil_hex_encode(claims->report_data, sizeof claims->report_data, rd);
    json_t *ae = json_pack("{s:s, s:{s:s, s:O}, s:o}", "report_data", rd, "runtime_data_claims", "nonce", a->nonce,
                           "tee-pubkey", a->tee_pubkey_json, veil_tee_name(claims->tee), cj);
    VEIL_ENSURE(ae != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = ae;
    return VEIL_RESULT_OK;
}

/* An EAR-shaped token (reference section 1.5) signed with the broker's P-256 key. */
static VEIL_RESULT token_build(struct kbs_ctx *k, const struct veil_rcar_attestation *a,
                               const struct veil_claims *claims, char **out)
{
    json_t *ae = NULL;
    VEIL_GUARD(annotated_evidence(a, claims, &ae));
    int hardware = claims->tee != VEIL_TEE_SIM && claims->tee != VEIL_TEE_SAMPLE;
    const char *status = hardware && strcmp(claims->tcb_status, "UpToDate") == 0 ? "affirming" : "warning";
    int64_t now = vd_now();
    VEIL_DEFER(veil_json_done) json_t *t = json_pack(
        "{s:s, s:I, s:I, s:{s:s, s:s}, s:{s:{s:s, s:s, s:o}}}", "eat_profile", EAR_PROFILE, "iat", (json_int_t)now,
        "exp", (json_int_t)(now + (int64_t)k->cfg->token_ttl_s), "ear.verifier-id", "developer", "veil",
        "build", "veil-kbs " VEIL_KBS_VERSION, "submods", "cpu0", "ear.status", status, "ear.appraisal-policy-id",
        "veil-kbs", ANNOTATED, ae);
    VEIL_ENSURE(t != NULL, VEIL_ERR_NOMEM, "out of memory");
    return veil_jwt_sign_es256(&k->signer, k->signer_kid, t, out);
}

static VEIL_RESULT attest_steps(struct kbs_ctx *k, const struct vd_request *rq, struct kbs_session *s,
                                struct veil_claims *claims, char **token, struct refusal *f)
{
    refuse(f, 401, "AttestationError", "");
    VEIL_GUARD(challenged_session(k, rq, s));
    f->authenticated = 1;
    VEIL_DEFER(attestation_done) struct veil_rcar_attestation a = {0};
    refuse(f, 401, "SerdeError", "");
    VEIL_ENSURE(rq->body_size <= k->cfg->max_body_size, VEIL_ERR_LIMIT, "the body is too large");
    VEIL_GUARD(veil_rcar_attestation_parse(rq->body, rq->body_size, &a));
    refuse(f, 401, "AttestationError", "");
    VEIL_ENSURE(strcmp(a.nonce, s->nonce) == 0, VEIL_ERR_VERIFY, "the nonce is not this session's challenge");
    VEIL_GUARD(evidence_verify(k, &a, s->tee, claims));
    VEIL_GUARD(binding_check(&a, claims));
    VEIL_DEFER(veil_json_done) json_t *cj = NULL;
    VEIL_GUARD(veil_kbs_claims_to_json(claims, &cj));
    char *claims_text = json_dumps(cj, JSON_COMPACT), *pubkey_text = json_dumps(a.tee_pubkey_json, JSON_COMPACT);
    int done = 0;
    struct veil_result r = claims_text != NULL && pubkey_text != NULL
                               ? k->store->ops->session_attest(k->store, s->id, a.nonce, vd_now(), claims_text,
                                                               pubkey_text, &done)
                               : veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    free(claims_text);
    free(pubkey_text);
    VEIL_GUARD(r);
    VEIL_ENSURE(done, VEIL_ERR_VERIFY, "the nonce was already used or the session expired");
    return token_build(k, &a, claims, token);
}

void kbs_rcar_attest(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    VEIL_DEFER(session_done) struct kbs_session s = {0};
    struct veil_claims claims;
    memset(&claims, 0, sizeof claims);
    struct refusal f = {0};
    char *token = NULL;
    struct kbs_audit_event e = {.event = "attest"};
    if (!veil_ok(attest_steps(k, rq, &s, &claims, &token, &f))) {
        snprintf(f.reason, sizeof f.reason, "%s", veil_last_error());
        e.session = s.id[0] != '\0' ? s.id : NULL;
        e.tee = s.tee[0] != '\0' ? s.tee : NULL;
        e.claims = claims.measurement_size > 0 || claims.tcb_status[0] != '\0' ? &claims : NULL;
        deny(k, rq, rs, &e, &f);
        return;
    }
    char tag[VD_TAG_SIZE];
    vd_log_tag(s.id, tag);
    vd_log("info", "attest", "{s:s, s:s, s:s, s:s}", "client", rq->client, "session", tag, "tee", s.tee,
           "tcb_status", claims.tcb_status);
    set_cookie(rs, s.id, s.expires);
    vd_respond_json(rs, 200, json_pack("{s:s}", "token", token));
    free(token);
}

/* ---- /kbs/v0/resource/veil/model-key/<tag> -------------------------------------------------------------- */

/* Who asks: the verified claims and the TEE's public key, from the session cookie or the bearer token. */
struct requester {
    struct veil_claims claims;
    struct veil_jwk tee_pubkey;
    char session[KBS_SESSION_ID_SIZE + 1];
    char model[VEIL_KBS_MODEL_ID_MAX + 1];
    char report_summary[96];  /* a usage report's audit reason */
};

static void requester_done(struct requester *q)
{
    veil_jwk_cleanup(&q->tee_pubkey);
}

static VEIL_RESULT load_pubkey(const char *text, json_t *parsed, struct veil_jwk *out)
{
    VEIL_DEFER(veil_json_done) json_t *j = parsed != NULL ? json_incref(parsed) : json_loads(text, 0, NULL);
    VEIL_ENSURE(j != NULL, VEIL_ERR_FORMAT, "the stored tee-pubkey is not JSON");
    return veil_jwk_parse(j, out);
}

static VEIL_RESULT from_session(struct kbs_ctx *k, const char *id, struct requester *q)
{
    VEIL_DEFER(session_done) struct kbs_session s = {0};
    VEIL_ENSURE(session_id_valid(id), VEIL_ERR_ARG, "malformed session cookie");
    int found = 0;
    VEIL_GUARD(k->store->ops->session_get(k->store, id, &s, &found));
    VEIL_ENSURE(found, VEIL_ERR_ARG, "unknown session");
    VEIL_ENSURE(s.expires >= vd_now(), VEIL_ERR_EXPIRED, "the session expired");
    VEIL_ENSURE(s.attested && s.claims != NULL && s.tee_pubkey != NULL, VEIL_ERR_ARG, "the session is not attested");
    VEIL_DEFER(veil_json_done) json_t *cj = json_loads(s.claims, 0, NULL);
    VEIL_ENSURE(cj != NULL, VEIL_ERR_FORMAT, "stored claims are not JSON");
    VEIL_GUARD(veil_kbs_claims_from_json(cj, &q->claims));
    snprintf(q->session, sizeof q->session, "%s", s.id);
    return load_pubkey(s.tee_pubkey, NULL, &q->tee_pubkey);
}

/* The claims inside a verified token: the annotated evidence member named after a TEE. */
static VEIL_RESULT token_claims(const json_t *ae, struct veil_claims *out)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)(uintptr_t)ae, key, v) {
        veil_tee tee;
        if (veil_tee_from_name(key, &tee) == VEIL_OK && tee != VEIL_TEE_AUTO)
            return veil_kbs_claims_from_json(v, out);
    }
    VEIL_BAIL(VEIL_ERR_FORMAT, "the token carries no claims");
}

static VEIL_RESULT from_token(struct kbs_ctx *k, const char *authorization, struct requester *q)
{
    VEIL_ENSURE(strncmp(authorization, "Bearer ", 7) == 0, VEIL_ERR_ARG, "the Authorization header is not Bearer");
    VEIL_DEFER(veil_json_done) json_t *t = NULL;
    VEIL_GUARD(veil_jwt_verify_es256(&k->signer, authorization + 7, vd_now(), 0, &t));
    const json_t *ae = json_object_get(json_object_get(json_object_get(t, "submods"), "cpu0"), ANNOTATED);
    const json_t *pk = json_object_get(json_object_get(ae, "runtime_data_claims"), "tee-pubkey");
    VEIL_ENSURE(json_is_object(ae) && json_is_object(pk), VEIL_ERR_FORMAT, "the token lacks its claims");
    VEIL_GUARD(token_claims(ae, &q->claims));
    return load_pubkey(NULL, (json_t *)(uintptr_t)pk, &q->tee_pubkey);
}

/* Trustee checks the cookie first, then the bearer token. */
static VEIL_RESULT authenticate(struct kbs_ctx *k, const struct vd_request *rq, struct requester *q,
                                struct refusal *f)
{
    const char *cookie = vd_request_get(rq, VD_COOKIE, KBS_COOKIE_NAME);
    const char *auth = vd_request_get(rq, VD_HEADER, "Authorization");
    refuse(f, 401, "TokenNotFound", "");
    VEIL_ENSURE(cookie != NULL || auth != NULL, VEIL_ERR_ARG, "no session cookie and no bearer token");
    refuse(f, 401, "TokenVerifierError", "");
    if (cookie != NULL) {
        struct veil_result r = from_session(k, cookie, q);
        if (veil_ok(r) || auth == NULL)
            return r;
    }
    return from_token(k, auth, q);
}

static VEIL_RESULT release(struct kbs_ctx *k, const char *model_id, const struct kbs_key_row *row,
                           const struct requester *q, json_t **jwe)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf key;
    veil_buf_init_secret(&key);
    VEIL_GUARD(veil_kbs_key_open(k->master.data, model_id, row->version, row->sealed.data, row->sealed.size, &key));
    return veil_jwe_encrypt(&q->tee_pubkey, key.data, key.size, jwe);
}

/* What the release policy says about a released key besides who may have it, sent with the key. */
struct release_terms {
    uint64_t min_version;  /* min_model_version (anti-rollback: the TEE refuses an older sealed file) */
    uint64_t lease_ttl_s;  /* lease_ttl_s (how long a key cache may hold the key before renewing it) */
};

/* Judges the claims by the model's release policy; *terms (may be NULL) receives its release terms. */
static VEIL_RESULT policy_allows(const char *policy_text, const struct veil_claims *claims,
                                 struct release_terms *terms)
{
    veil_policy *p = NULL;
    veil_status st = veil_policy_parse(policy_text, strlen(policy_text), &p);
    if (st == VEIL_OK) {
        st = veil_policy_check(p, claims, NULL);
        if (terms != NULL)
            *terms = (struct release_terms){veil_policy_min_model_version(p), veil_policy_lease_ttl_s(p)};
        veil_policy_free(p);
    }
    return (struct veil_result){st};
}

static VEIL_RESULT resource_steps(struct kbs_ctx *k, const struct vd_request *rq, struct requester *q,
                                  struct kbs_audit_event *e, struct kbs_key_row *row, json_t **jwe, struct refusal *f,
                                  struct release_terms *terms)
{
    uint32_t version = 0;
    refuse(f, 404, "InvalidRequestPath", "");
    VEIL_ENSURE(strcmp(rq->captures[0], "veil") == 0 && strcmp(rq->captures[1], "model-key") == 0, VEIL_ERR_ARG,
                "no such resource repository/type");
    VEIL_GUARD(veil_kbs_resource_tag_parse(rq->captures[2], q->model, &version));
    e->model = q->model;
    e->key_version = version;
    VEIL_GUARD(authenticate(k, rq, q, f));
    f->authenticated = 1;
    e->claims = &q->claims;
    e->session = q->session[0] != '\0' ? q->session : NULL;
    int found = 0;
    refuse(f, 401, "PluginInternalError", "");
    VEIL_GUARD(k->store->ops->key_get(k->store, q->model, version, row, &found));
    refuse(f, version == 0 ? 401 : 404, version == 0 ? "PolicyDeny" : "ResourceNotFound", "");
    VEIL_ENSURE(found, VEIL_ERR_ARG, version == 0 ? "unknown model, or every key version is revoked"
                                                  : "unknown model or key version");
    e->key_version = row->version;
    refuse(f, 401, "PolicyDeny", "");
    VEIL_ENSURE(!row->revoked, VEIL_ERR_POLICY, "the key version is revoked");
    VEIL_GUARD(policy_allows(row->policy, &q->claims, terms));
    refuse(f, 401, "PluginInternalError", "");
    return release(k, q->model, row, q, jwe);
}

/* ---- /kbs/v0/resource/veil/usage-policy/<model_id> ----------------------------------------------------- */

/* The JWE's plaintext when the owner set no usage policy: the JSON text null (the model is open). */
#define USAGE_NONE "null"

static void text_done(char **s)
{
    free(*s);
    *s = NULL;
}

/* The release-policy check of the model key: a TEE that may not have the key may not have its usage policy. The
 * policy belongs to the model, not to a key version: it is released while the model has a key version that is not
 * revoked, whose release policy (the model's) accepts the claims. */
static VEIL_RESULT usage_allowed(struct kbs_ctx *k, const struct requester *q, struct refusal *f)
{
    struct kbs_key_row row = {0};
    int found = 0;
    refuse(f, 401, "PluginInternalError", "");
    struct veil_result r = k->store->ops->key_get(k->store, q->model, 0, &row, &found);
    if (veil_ok(r)) {
        refuse(f, 401, "PolicyDeny", "");
        r = found ? policy_allows(row.policy, &q->claims, NULL)
                  : veil_error_raise(VEIL_ERR_POLICY, __FILE__, __LINE__, "every key version of the model is revoked");
    }
    kbs_key_row_cleanup(&row);
    return r;
}

/* The JWE of the stored policy (or of USAGE_NONE) to the TEE's key; reason: the audit's, with its digest. */
static VEIL_RESULT usage_encrypt(const struct requester *q, const char *usage, char reason[REASON_SIZE], json_t **jwe)
{
    const char *plain = usage != NULL ? usage : USAGE_NONE;
    size_t size = strlen(plain);
    uint8_t digest[VEIL_SHA256_SIZE];
    char hex[2 * VEIL_SHA256_SIZE + 1];
    VEIL_GUARD(veil_sha256((const uint8_t *)plain, size, digest));
    veil_hex_encode(digest, sizeof digest, hex);
    if (usage != NULL)
        snprintf(reason, REASON_SIZE, "policy allows; usage policy sha256 %s", hex);
    else
        snprintf(reason, REASON_SIZE, "policy allows; no usage policy set (null: open)");
    return veil_jwe_encrypt(&q->tee_pubkey, (const uint8_t *)plain, size, jwe);
}

/* The path, the same session or token as for a model key, the model, the release policy, the JWE. */
static VEIL_RESULT usage_steps(struct kbs_ctx *k, const struct vd_request *rq, struct requester *q,
                               struct kbs_audit_event *e, char reason[REASON_SIZE], json_t **jwe, struct refusal *f)
{
    refuse(f, 404, "InvalidRequestPath", "");
    const char *model_id = rq->captures[2];
    VEIL_GUARD(veil_kbs_model_id_check(model_id, strlen(model_id)));
    snprintf(q->model, sizeof q->model, "%s", model_id);
    e->model = q->model;
    VEIL_GUARD(authenticate(k, rq, q, f));
    f->authenticated = 1;
    e->claims = &q->claims;
    e->session = q->session[0] != '\0' ? q->session : NULL;
    VEIL_DEFER(text_done) char *usage = NULL;
    int found = 0;
    refuse(f, 401, "PluginInternalError", "");
    VEIL_GUARD(k->store->ops->usage_get(k->store, q->model, &usage, &found));
    refuse(f, 404, "ResourceNotFound", "");
    VEIL_ENSURE(found, VEIL_ERR_ARG, "unknown model");
    VEIL_GUARD(usage_allowed(k, q, f));
    refuse(f, 401, "PluginInternalError", "");
    return usage_encrypt(q, usage, reason, jwe);
}

static void usage_resource(struct kbs_ctx *k, const struct vd_request *rq, struct vd_response *rs)
{
    VEIL_DEFER(requester_done) struct requester q;
    memset(&q, 0, sizeof q);
    veil_jwk_init(&q.tee_pubkey);
    struct kbs_audit_event e = {.event = "usage-release"};
    struct refusal f = {0};
    char reason[REASON_SIZE] = "";
    json_t *jwe = NULL;
    if (!veil_ok(usage_steps(k, rq, &q, &e, reason, &jwe, &f))) {
        snprintf(f.reason, sizeof f.reason, "%s", veil_last_error());
        deny(k, rq, rs, &e, &f);
        return;
    }
    e.decision = "release";
    e.reason = reason;
    e.client = rq->client;
    if (!kbs_audit(k, &e)) { /* as for keys: nothing leaves without its release record */
        json_decref(jwe);
        kbs_respond_protocol_error(rs, 401, "PluginInternalError");
        return;
    }
    vd_respond_json(rs, 200, jwe);
}

/* ---- POST /kbs/v0/veil-usage/<model_id>: usage counters (docs/spec/usage-policy.md §5) ------------------- */

/* The request body: {"report": {client: count}}; *deltas: the counts above 0, in byte order of the names. */
static VEIL_RESULT report_parse(const struct vd_request *rq, json_t **deltas)
{
    static const char *const keys[] = {"report", NULL};
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(rq->body, rq->body_size, VEIL_USAGE_COUNTS_MAX_SIZE + 64, VEIL_ERR_FORMAT,
                                     "usage report", &j));
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_FORMAT, "usage report"));
    const json_t *report = json_object_get(j, "report");
    VEIL_ENSURE(json_is_object(report), VEIL_ERR_FORMAT, "usage report: member \"report\" must be an object");
    VEIL_DEFER(text_done) char *text = json_dumps(report, JSON_COMPACT);
    VEIL_ENSURE(text != NULL, VEIL_ERR_NOMEM, "out of memory");
    return veil_usage_counts_parse(text, strlen(text), 1, deltas);
}

/* The counters of the model after the report, as a JWE to the TEE's key: {"used": {client: count}}. */
static VEIL_RESULT counts_encrypt(const struct requester *q, json_t *totals, json_t **jwe)
{
    json_t *doc = json_pack("{s:O}", "used", totals);
    VEIL_ENSURE(doc != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_DEFER(text_done) char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    VEIL_ENSURE(text != NULL, VEIL_ERR_NOMEM, "out of memory");
    return veil_jwe_encrypt(&q->tee_pubkey, (const uint8_t *)text, strlen(text), jwe);
}

/* The path, the body, the same session or token as for a model key, the release policy, the counters, the JWE. */
static VEIL_RESULT counts_steps(struct kbs_ctx *k, const struct vd_request *rq, struct requester *q,
                                struct kbs_audit_event *e, json_t **jwe, struct refusal *f, size_t *reported)
{
    refuse(f, 404, "InvalidRequestPath", "");
    const char *model_id = rq->captures[0];
    VEIL_GUARD(veil_kbs_model_id_check(model_id, strlen(model_id)));
    snprintf(q->model, sizeof q->model, "%s", model_id);
    e->model = q->model;
    VEIL_GUARD(authenticate(k, rq, q, f));
    f->authenticated = 1;
    e->claims = &q->claims;
    e->session = q->session[0] != '\0' ? q->session : NULL;
    refuse(f, 400, "SerdeError", "");
    VEIL_DEFER(veil_json_done) json_t *deltas = NULL;
    VEIL_GUARD(report_parse(rq, &deltas));
    VEIL_DEFER(text_done) char *usage = NULL;
    int known = 0;
    refuse(f, 401, "PluginInternalError", "");
    VEIL_GUARD(k->store->ops->usage_get(k->store, q->model, &usage, &known));
    refuse(f, 404, "ResourceNotFound", "");
    VEIL_ENSURE(known, VEIL_ERR_ARG, "unknown model");
    VEIL_GUARD(usage_allowed(k, q, f));
    VEIL_DEFER(veil_json_done) json_t *totals = json_object();
    refuse(f, 401, "PluginInternalError", "");
    VEIL_ENSURE(totals != NULL, VEIL_ERR_NOMEM, "out of memory");
    /* Only the clients of the policy in force are counted and answered (at most VEIL_USAGE_MAX_CLIENTS names):
     * a name the owner removed, or one a report made up, is dropped. */
    VEIL_GUARD(veil_usage_counts_restrict_text(deltas, usage));
    int found = 0;
    VEIL_GUARD(k->store->ops->usage_count(k->store, q->model, deltas, totals, &found));
    refuse(f, 404, "ResourceNotFound", "");
    VEIL_ENSURE(found, VEIL_ERR_ARG, "unknown model");
    VEIL_GUARD(veil_usage_counts_restrict_text(totals, usage));
    *reported = json_object_size(deltas);
    json_int_t requests = 0;
    const char *name;
    json_t *v;
    json_object_foreach(deltas, name, v) {
        requests += json_integer_value(v) < (json_int_t)VEIL_USAGE_MAX_BUDGET - requests ? json_integer_value(v) : 0;
    }
    snprintf(q->report_summary, sizeof q->report_summary, "%zu client counter(s) raised by %lld request(s)",
             *reported, (long long)requests);
    refuse(f, 401, "PluginInternalError", "");
    return counts_encrypt(q, totals, jwe);
}

void kbs_rcar_usage_counts(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    VEIL_DEFER(requester_done) struct requester q;
    memset(&q, 0, sizeof q);
    veil_jwk_init(&q.tee_pubkey);
    struct kbs_audit_event e = {.event = "usage-report"};
    struct refusal f = {0};
    json_t *jwe = NULL;
    size_t reported = 0;
    if (!veil_ok(counts_steps(k, rq, &q, &e, &jwe, &f, &reported))) {
        snprintf(f.reason, sizeof f.reason, "%s", veil_last_error());
        deny(k, rq, rs, &e, &f);
        return;
    }
    e.decision = "count";
    e.reason = q.report_summary;
    e.client = rq->client;
    if (reported > 0 && !kbs_audit(k, &e)) { /* who raised which budget's counts is on record */
        json_decref(jwe);
        kbs_respond_protocol_error(rs, 401, "PluginInternalError");
        return;
    }
    kbs_metrics_usage_report(reported);
    vd_respond_json(rs, 200, jwe);
}

static int is_usage_path(const struct vd_request *rq)
{
    return strcmp(rq->captures[0], "veil") == 0 && strcmp(rq->captures[1], "usage-policy") == 0;
}

void kbs_rcar_resource(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct kbs_ctx *k = ctx;
    if (is_usage_path(rq)) {
        usage_resource(k, rq, rs);
        return;
    }
    VEIL_DEFER(requester_done) struct requester q;
    memset(&q, 0, sizeof q);
    veil_jwk_init(&q.tee_pubkey);
    struct kbs_key_row row = {0};
    struct kbs_audit_event e = {.event = "release"};
    struct refusal f = {0};
    json_t *jwe = NULL;
    struct release_terms terms = {0, 0};
    struct veil_result r = resource_steps(k, rq, &q, &e, &row, &jwe, &f, &terms);
    kbs_key_row_cleanup(&row);
    if (!veil_ok(r)) {
        snprintf(f.reason, sizeof f.reason, "%s", veil_last_error());
        deny(k, rq, rs, &e, &f);
        return;
    }
    e.decision = "release";
    e.reason = "policy allows";
    e.client = rq->client;
    if (!kbs_audit(k, &e)) { /* no record, no key: the audit log must hold every release */
        json_decref(jwe);
        kbs_respond_protocol_error(rs, 401, "PluginInternalError");
        return;
    }
    vd_respond_json(rs, 200, jwe);
    char text[24];
    if (terms.min_version > 0) { /* the TEE opens no sealed file older than this (include/veil/kbs_client.h) */
        snprintf(text, sizeof text, "%" PRIu64, terms.min_version);
        vd_response_header(rs, VEIL_KBS_MIN_MODEL_VERSION_HEADER, text);
    }
    snprintf(text, sizeof text, "%" PRIu64, terms.lease_ttl_s); /* a key cache renews within this (docs/cache.md) */
    vd_response_header(rs, VEIL_KBS_LEASE_TTL_HEADER, text);
}
