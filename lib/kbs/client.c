/* SPDX-License-Identifier: Apache-2.0 */
/* The TEE side of key release: an RCAR 0.4.0 client over libcurl (include/veil/kbs_client.h; the steps are in
 * lib/kbs/client_internal.h). The model key exists in plaintext only in the secret buffer of
 * veil_kbs_fetch_key and in the caller's output; the ephemeral TEE key only in its OpenSSL object. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "core/limits.h"
#include "core/secret.h"
#include "kbs/client_internal.h"
#include "kbs/kbs.h"

#define CLIENT_DEFAULT_TIMEOUT_S 30u
#define RESOURCE_PATH "/kbs/v0/resource/veil/model-key/"
#define ERROR_TYPE_MAX 40u

/* ---- the URL ------------------------------------------------------------------------------------------------ */

static void url_done(CURLU **u) { curl_url_cleanup(*u); }
static void curl_str_done(char **s) { curl_free(*s); }

/* 127.0.0.0/8, ::1 or "localhost": where plain HTTP cannot be read by anyone but this machine. */
static int host_is_loopback(const char *host)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return strcmp(host, "[::1]") == 0 || strcasecmp(host, "localhost") == 0;
}

static VEIL_RESULT url_check(const struct veil_kbs_fetch_options *o)
{
    VEIL_ENSURE(o->url != NULL && o->url[0] != '\0', VEIL_ERR_ARG, "no key broker URL given");
    CURLU *u VEIL_DEFER(url_done) = curl_url();
    VEIL_ENSURE(u != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(curl_url_set(u, CURLUPART_URL, o->url, 0) == CURLUE_OK, VEIL_ERR_ARG,
                "the key broker URL '%.200s' is not an http:// or https:// URL", o->url);
    char *scheme VEIL_DEFER(curl_str_done) = NULL;
    char *host VEIL_DEFER(curl_str_done) = NULL;
    VEIL_ENSURE(curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK,
                VEIL_ERR_ARG, "the key broker URL '%.200s' has no scheme or host", o->url);
    if (strcmp(scheme, "https") == 0)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(strcmp(scheme, "http") == 0, VEIL_ERR_ARG,
                "the key broker URL must be http:// or https://, not %.16s://", scheme);
    VEIL_ENSURE(host_is_loopback(host) || o->allow_insecure_http, VEIL_ERR_ARG,
                "refusing plain http:// to the key broker at %.200s: it is not a loopback address; use https://",
                o->url);
    return VEIL_RESULT_OK;
}

/* ---- the connection ---------------------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    struct veil_kbs_conn *c = ctx;
    size_t len = size * n;
    if (len > VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE - c->body.size) {
        c->overflow = 1;
        return 0;
    }
    return veil_ok(veil_buf_append(&c->body, data, len)) ? len : 0;
}

static VEIL_RESULT conn_options(CURL *h, struct veil_kbs_conn *c, const struct veil_kbs_fetch_options *o)
{
    long timeout = (long)(o->timeout_s != 0 ? o->timeout_s : CLIENT_DEFAULT_TIMEOUT_S);
    VEIL_ENSURE(curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_COOKIEFILE, "") == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, timeout) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, 1L) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
                    (o->cacert == NULL || curl_easy_setopt(h, CURLOPT_CAINFO, o->cacert) == CURLE_OK) &&
                    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_WRITEDATA, c) == CURLE_OK,
                VEIL_ERR_INTERNAL, "libcurl refused an option (is it older than 7.85?)");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_conn_init(struct veil_kbs_conn *c, const struct veil_kbs_fetch_options *o)
{
    memset(c, 0, sizeof *c);
    veil_buf_init(&c->body);
    VEIL_GUARD(url_check(o));
    size_t n = strlen(o->url);
    while (n > 0 && o->url[n - 1] == '/')
        n--;
    VEIL_ENSURE(n < sizeof c->base, VEIL_ERR_LIMIT, "the key broker URL is longer than %zu bytes", sizeof c->base - 1);
    memcpy(c->base, o->url, n);
    c->base[n] = '\0';
    c->curl = curl_easy_init();
    VEIL_ENSURE(c->curl != NULL, VEIL_ERR_NOMEM, "cannot create a libcurl handle");
    struct veil_result r = conn_options(c->curl, c, o);
    if (!veil_ok(r))
        veil_kbs_conn_cleanup(c);
    return r;
}

void veil_kbs_conn_cleanup(struct veil_kbs_conn *c)
{
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
    veil_buf_cleanup(&c->body);
}

/* ---- one exchange ------------------------------------------------------------------------------------------- */

/* The last path segment of a Trustee error "type" URL, letters and digits only ("PolicyDeny"). */
static void error_type(const struct veil_kbs_conn *c, char out[ERROR_TYPE_MAX + 1])
{
    snprintf(out, ERROR_TYPE_MAX + 1, "no error type");
    json_t *j = c->overflow ? NULL : json_loadb((const char *)c->body.data, c->body.size, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "type"));
    const char *slash = t != NULL ? strrchr(t, '/') : NULL;
    t = slash != NULL ? slash + 1 : t;
    size_t n = 0;
    while (t != NULL && n < ERROR_TYPE_MAX && ((t[n] >= 'A' && t[n] <= 'Z') || (t[n] >= 'a' && t[n] <= 'z') ||
                                               (t[n] >= '0' && t[n] <= '9')))
        n++;
    if (n > 0 && t[n] == '\0')
        snprintf(out, ERROR_TYPE_MAX + 1, "%s", t);
    json_decref(j);
}

static veil_status refusal_status(long http, const char *type)
{
    if (strcmp(type, "PolicyDeny") == 0)
        return VEIL_ERR_POLICY;
    if (strcmp(type, "AttestationError") == 0 || strcmp(type, "TokenVerifierError") == 0 ||
        strcmp(type, "TokenNotFound") == 0)
        return VEIL_ERR_VERIFY;
    return http == 404 ? VEIL_ERR_ARG : VEIL_ERR_IO;
}

/* What a refusal at each step means, for the one-line error. */
static const char *refusal_text(const char *step, const char *type)
{
    if (strcmp(step, "resource") == 0 && strcmp(type, "PolicyDeny") == 0)
        return "model key not released: the model's policy does not accept this TEE, or the model has no usable "
               "key version (unknown or revoked)";
    if (strcmp(step, "resource") == 0 && strcmp(type, "ResourceNotFound") == 0)
        return "model key not released: the broker has no such model or key version";
    if (strcmp(step, "attest") == 0)
        return "the key broker refused the attestation";
    if (strcmp(step, "auth") == 0)
        return "the key broker refused to start a session";
    return "the key broker refused the key request";
}

/* Sends one request (POST body when not NULL, else GET) and requires HTTP 200. The answer is in c->body,
 * NUL-terminated. */
static VEIL_RESULT exchange(struct veil_kbs_conn *c, const char *step, const char *path, const json_t *body)
{
    char url[sizeof c->base + 512];
    VEIL_ENSURE((size_t)snprintf(url, sizeof url, "%s%s", c->base, path) < sizeof url, VEIL_ERR_LIMIT,
                "key broker URL too long");
    c->body.size = 0;
    c->overflow = 0;
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    VEIL_ENSURE(body == NULL || text != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct curl_slist *h = body != NULL ? curl_slist_append(NULL, "Content-Type: application/json") : NULL;
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    if (body == NULL || h != NULL) {
        curl_easy_setopt(c->curl, CURLOPT_URL, url);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
        if (body != NULL) {
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text);
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
        } else {
            curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        }
        rc = curl_easy_perform(c->curl);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    }
    curl_slist_free_all(h);
    free(text);
    VEIL_ENSURE(!c->overflow, VEIL_ERR_LIMIT, "the key broker's answer to %s exceeds %u bytes", step,
                VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE);
    VEIL_ENSURE(rc == CURLE_OK, VEIL_ERR_IO, "cannot reach the key broker at %.200s: %s", c->base,
                curl_easy_strerror(rc));
    VEIL_GUARD(veil_buf_append_u8(&c->body, 0));
    c->body.size--;
    long http = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
    if (http == 200)
        return VEIL_RESULT_OK;
    char type[ERROR_TYPE_MAX + 1];
    error_type(c, type);
    VEIL_BAIL(refusal_status(http, type), "%s (%ld %s)", refusal_text(step, type), http, type);
}

/* ---- the steps ---------------------------------------------------------------------------------------------- */

/* Raises st with "what: <the error just raised>" (copied first: the message buffer is the one written). */
static VEIL_RESULT wrap(veil_status st, const char *what)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s", veil_last_error());
    VEIL_BAIL(st, "%s: %s", what, detail);
}

VEIL_RESULT veil_kbs_client_auth(struct veil_kbs_conn *c, veil_tee tee, struct veil_rcar_challenge *ch)
{
    VEIL_ENSURE(tee != VEIL_TEE_AUTO, VEIL_ERR_ARG, "detect the TEE before starting a session");
    json_t *req VEIL_DEFER(veil_json_done) = NULL;
    /* The builder knows kbs-types' names only; "sim" is Veil's extra name, so the tee member is set after. */
    VEIL_GUARD(veil_rcar_request_build("sample", &req));
    VEIL_GUARD(veil_json_set(req, "tee", json_string(veil_tee_name(tee))));
    VEIL_GUARD(exchange(c, "auth", "/kbs/v0/auth", req));
    struct veil_result r = veil_rcar_challenge_parse(c->body.data, c->body.size, ch);
    return veil_ok(r) ? r : wrap(VEIL_ERR_FORMAT, "the key broker's challenge is malformed");
}

VEIL_RESULT veil_kbs_client_tee_key(struct veil_jwk *key, json_t **jwk)
{
    VEIL_GUARD(veil_jwk_generate(VEIL_JWK_EC_P256, key));
    return veil_jwk_export(key, "ECDH-ES+A256KW", jwk);
}

static void str_done(char **s) { veil_free(*s); }

VEIL_RESULT veil_kbs_client_evidence(veil_tee tee, const struct veil_provider_config *provider,
                                     const struct veil_rcar_challenge *ch, const json_t *jwk, json_t **attestation)
{
    uint8_t rd[VEIL_KBS_REPORT_DATA_SIZE];
    VEIL_GUARD(veil_kbs_report_data(ch->nonce, jwk, "", ch->hash, rd));
    char *text VEIL_DEFER(str_done) = NULL;
    veil_status st = veil_evidence_collect(tee, provider, rd, &text);
    if (st != VEIL_OK)
        return wrap(st, tee == VEIL_TEE_SIM ? "cannot collect sim evidence" : "cannot collect evidence");
    json_t *ev VEIL_DEFER(veil_json_done) = NULL;
    VEIL_GUARD(veil_json_load_object((const uint8_t *)text, strlen(text), VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_EVIDENCE,
                                     "evidence", &ev));
    return veil_rcar_attestation_build(ch->nonce, jwk, ev, NULL, attestation);
}

VEIL_RESULT veil_kbs_client_attest(struct veil_kbs_conn *c, const json_t *attestation)
{
    return exchange(c, "attest", "/kbs/v0/attest", attestation);
}

VEIL_RESULT veil_kbs_client_resource(struct veil_kbs_conn *c, const char *model_id, uint32_t key_version)
{
    VEIL_ENSURE(model_id != NULL, VEIL_ERR_ARG, "no model id given");
    VEIL_GUARD(veil_kbs_model_id_check(model_id, strlen(model_id)));
    char path[sizeof RESOURCE_PATH + VEIL_KBS_MODEL_ID_MAX + 16];
    if (key_version == 0)
        snprintf(path, sizeof path, "%s%s", RESOURCE_PATH, model_id);
    else
        snprintf(path, sizeof path, "%s%s@%u", RESOURCE_PATH, model_id, key_version);
    return exchange(c, "resource", path, NULL);
}

VEIL_RESULT veil_kbs_client_decrypt(const struct veil_kbs_conn *c, const struct veil_jwk *key, struct veil_buf *plain)
{
    json_t *jwe VEIL_DEFER(veil_json_done) = NULL;
    VEIL_GUARD(veil_json_load_object(c->body.data, c->body.size, VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE, VEIL_ERR_FORMAT,
                                     "key broker's JWE", &jwe));
    struct veil_result r = veil_jwe_decrypt(key, jwe, plain);
    return veil_ok(r) ? r : wrap(r.status, "cannot decrypt the released key");
}

/* ---- the whole exchange ------------------------------------------------------------------------------------- */

struct fetch {
    struct veil_kbs_conn conn;
    struct veil_rcar_challenge ch;
    struct veil_jwk key;
    json_t *jwk, *attestation;
    struct veil_buf plain; /* secret */
};

static void fetch_done(struct fetch *f)
{
    veil_buf_cleanup(&f->plain);
    json_decref(f->attestation);
    json_decref(f->jwk);
    veil_jwk_cleanup(&f->key);
    veil_rcar_challenge_cleanup(&f->ch);
    veil_kbs_conn_cleanup(&f->conn);
}

static VEIL_RESULT fetch_steps(struct fetch *f, const struct veil_kbs_fetch_options *o, const char *model_id,
                               uint32_t key_version, uint8_t *key, size_t key_capacity, size_t *key_size)
{
    VEIL_GUARD(veil_kbs_model_id_check(model_id, strlen(model_id)));
    veil_tee tee = o->tee;
    if (tee == VEIL_TEE_AUTO) {
        veil_status st = veil_tee_detect(o->provider, &tee);
        if (st != VEIL_OK)
            return wrap(st, "cannot detect the TEE");
    }
    VEIL_GUARD(veil_kbs_conn_init(&f->conn, o));
    VEIL_GUARD(veil_kbs_client_auth(&f->conn, tee, &f->ch));
    VEIL_GUARD(veil_kbs_client_tee_key(&f->key, &f->jwk));
    VEIL_GUARD(veil_kbs_client_evidence(tee, o->provider, &f->ch, f->jwk, &f->attestation));
    VEIL_GUARD(veil_kbs_client_attest(&f->conn, f->attestation));
    VEIL_GUARD(veil_kbs_client_resource(&f->conn, model_id, key_version));
    VEIL_GUARD(veil_kbs_client_decrypt(&f->conn, &f->key, &f->plain));
    VEIL_ENSURE(f->plain.size > 0 && f->plain.size <= key_capacity, VEIL_ERR_LIMIT,
                "the released key has %zu bytes; room was given for %zu", f->plain.size, key_capacity);
    memcpy(key, f->plain.data, f->plain.size);
    *key_size = f->plain.size;
    return VEIL_RESULT_OK;
}

veil_status veil_kbs_fetch_key(const struct veil_kbs_fetch_options *options, const char *model_id,
                               uint32_t key_version, uint8_t *key, size_t key_capacity, size_t *key_size)
{
    veil_error_clear();
    if (key_size != NULL)
        *key_size = 0;
    if (options == NULL || model_id == NULL || key == NULL || key_size == NULL) {
        struct veil_result r = veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "veil_kbs_fetch_key: NULL argument");
        return r.status;
    }
    struct fetch f;
    memset(&f, 0, sizeof f);
    veil_jwk_init(&f.key);
    veil_buf_init_secret(&f.plain);
    struct veil_result r = fetch_steps(&f, options, model_id, key_version, key, key_capacity, key_size);
    fetch_done(&f);
    if (!veil_ok(r)) {
        veil_wipe(key, key_capacity);
        *key_size = 0;
    }
    return r.status;
}
