/* SPDX-License-Identifier: Apache-2.0 */
/* The TEE side of key release: an RCAR 0.4.0 client over libcurl (include/veil/kbs_client.h; the steps are in
 * lib/kbs/client_internal.h). The model key exists in plaintext only in the secret buffer of
 * veil_kbs_fetch_key and in the caller's output; the ephemeral TEE key only in its OpenSSL object. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/limits.h"
#include "core/secret.h"
#include "core/url.h"
#include "kbs/client_internal.h"
#include "kbs/kbs.h"
#include "serve/usage.h"

#define CLIENT_DEFAULT_TIMEOUT_S 30u
#define RESOURCE_PATH "/kbs/v0/resource/veil/model-key/"
#define USAGE_PATH "/kbs/v0/resource/veil/usage-policy/"
#define COUNTS_PATH "/kbs/v0/veil-usage/"
#define USAGE_MAX_SIZE (1u << 20) /* the usage policy's plaintext (lib/serve/usage.h: VEIL_USAGE_MAX_SIZE) */
#define ERROR_TYPE_MAX 40u
#define TOKEN_LEEWAY_S 300 /* clock skew between the TEE and the broker */
#define BROKER_PUBKEY_PEM_MAX 4096u
#define ANNOTATED_EVIDENCE "ear.veraison.annotated-evidence" /* docs/kbs.md, "The attestation token" */

/* ---- the URL ------------------------------------------------------------------------------------------------ */

static void url_done(CURLU **u) { curl_url_cleanup(*u); }
static void curl_str_done(char **s) { curl_free(*s); }

static VEIL_RESULT url_check(const struct veil_kbs_fetch_options *o)
{
    VEIL_ENSURE(o->url != NULL && o->url[0] != '\0', VEIL_ERR_ARG, "no key broker URL given");
    CURLU *u VEIL_DEFER(url_done) = curl_url();
    VEIL_ENSURE(u != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(curl_url_set(u, CURLUPART_URL, o->url, 0) == CURLUE_OK, VEIL_ERR_ARG,
                "the key broker URL '%.200s' is not an http:// or https:// URL (e.g. http://127.0.0.1:8443)",
                o->url);
    char *scheme VEIL_DEFER(curl_str_done) = NULL;
    char *host VEIL_DEFER(curl_str_done) = NULL;
    VEIL_ENSURE(curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK,
                VEIL_ERR_ARG, "the key broker URL '%.200s' has no scheme or host", o->url);
    if (strcmp(scheme, "https") == 0)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(strcmp(scheme, "http") == 0, VEIL_ERR_ARG,
                "the key broker URL must be http:// or https://, not %.16s:// (e.g. http://127.0.0.1:8443)",
                scheme);
    VEIL_ENSURE(veil_url_host_is_loopback(host) || o->allow_insecure_http, VEIL_ERR_ARG,
                "refusing plain http:// to the key broker at %.200s: it is not a loopback address; use https://",
                o->url);
    return VEIL_RESULT_OK;
}

/* Every TEE but sim: https:// with a pinned CA or a pinned TLS key (include/veil/kbs_client.h, "Transport rule").
 * The scheme is compared the way libcurl parses it. */
VEIL_RESULT veil_kbs_transport_check(const struct veil_kbs_fetch_options *o, veil_tee tee)
{
    if (tee == VEIL_TEE_SIM)
        return url_check(o);
    VEIL_ENSURE(o->url != NULL && o->url[0] != '\0', VEIL_ERR_ARG, "no key broker URL given");
    CURLU *u VEIL_DEFER(url_done) = curl_url();
    char *scheme VEIL_DEFER(curl_str_done) = NULL;
    VEIL_ENSURE(u != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(curl_url_set(u, CURLUPART_URL, o->url, 0) == CURLUE_OK &&
                    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK,
                VEIL_ERR_ARG, "the key broker URL '%.200s' has no scheme", o->url);
    VEIL_ENSURE(strcmp(scheme, "https") == 0, VEIL_ERR_ARG,
                "refusing plain http:// to the key broker with tee %s: http is only for the simulation TEE on a "
                "loopback address (a TEE's loopback and network belong to the untrusted host); use https:// with a "
                "pinned CA (--kbs-cacert) or a pinned broker TLS key",
                veil_tee_name(tee));
    VEIL_ENSURE((o->cacert != NULL && o->cacert[0] != '\0') ||
                    (o->tls_pinned_pubkey != NULL && o->tls_pinned_pubkey[0] != '\0'),
                VEIL_ERR_ARG,
                "the key broker must be pinned for tee %s: give its CA bundle (cacert, --kbs-cacert) or its TLS "
                "public key (tls_pinned_pubkey, --kbs-pinned-pubkey); the system's CA store is not enough",
                veil_tee_name(tee));
    return url_check(o);
}

/* ---- the connection ---------------------------------------------------------------------------------------- */

/* "NAME: N", a strict decimal 0..2^63-1, into one of the answer's numeric headers. */
static void decimal_header(struct veil_kbs_header_u64 *h, const char *name, const char *line, size_t len)
{
    size_t name_size = strlen(name);
    if (len < name_size + 1 || strncasecmp(line, name, name_size) != 0 || line[name_size] != ':')
        return;
    size_t i = name_size + 1;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t end = len;
    while (end > i && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' ' || line[end - 1] == '\t'))
        end--;
    uint64_t v = 0;
    int ok = end > i && end - i <= 19 && !(line[i] == '0' && end - i > 1);
    for (size_t k = i; ok && k < end; k++) {
        ok = line[k] >= '0' && line[k] <= '9';
        v = v * 10 + (uint64_t)(line[k] - '0');
    }
    ok = ok && v <= (UINT64_MAX >> 1);
    h->seen++;
    h->bad |= !ok;
    h->value = ok ? v : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    struct veil_kbs_conn *c = ctx;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new answer (or an interim one): start over */
        c->min_version = (struct veil_kbs_header_u64){0};
        c->lease_ttl = (struct veil_kbs_header_u64){0};
    }
    decimal_header(&c->min_version, VEIL_KBS_MIN_MODEL_VERSION_HEADER, data, len);
    decimal_header(&c->lease_ttl, VEIL_KBS_LEASE_TTL_HEADER, data, len);
    return len;
}

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

/* A CA bundle replaces the system's store entirely (no default CA path next to it): that is the pin. */
static VEIL_RESULT tls_pins(CURL *h, const struct veil_kbs_fetch_options *o)
{
    VEIL_ENSURE(o->cacert == NULL || o->cacert[0] == '\0' || access(o->cacert, R_OK) == 0, VEIL_ERR_IO,
                "cannot read the key broker's CA bundle %.200s: %s", o->cacert, strerror(errno));
    if (o->cacert != NULL && o->cacert[0] != '\0')
        VEIL_ENSURE(curl_easy_setopt(h, CURLOPT_CAINFO, o->cacert) == CURLE_OK &&
                        curl_easy_setopt(h, CURLOPT_CAPATH, NULL) == CURLE_OK,
                    VEIL_ERR_INTERNAL, "libcurl refused the CA bundle option");
    if (o->tls_pinned_pubkey != NULL && o->tls_pinned_pubkey[0] != '\0')
        VEIL_ENSURE(curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, o->tls_pinned_pubkey) == CURLE_OK,
                    VEIL_ERR_UNSUPPORTED, "this libcurl cannot pin a TLS public key");
    return VEIL_RESULT_OK;
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
                    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_WRITEDATA, c) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
                    curl_easy_setopt(h, CURLOPT_HEADERDATA, c) == CURLE_OK,
                VEIL_ERR_INTERNAL, "libcurl refused an option (is it older than 7.85?)");
    return tls_pins(h, o);
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

/* What to do about a transfer that failed (libcurl's code), after libcurl's own reason: the usual causes. */
const char *veil_kbs_transport_hint(int curl_code, const char *url)
{
    int https = url != NULL && strncasecmp(url, "https://", 8) == 0;
    switch ((CURLcode)curl_code) {
    case CURLE_SSL_CONNECT_ERROR:
        return https ? "; if the broker serves plain HTTP (no tls_cert, e.g. veil-kbs --dev), use http://" : "";
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
        return https ? "" : "; if the broker serves HTTPS (tls_cert set), use https:// and trust its CA";
    case CURLE_COULDNT_CONNECT:
        return "; is the broker running and listening on that address and port?";
    case CURLE_COULDNT_RESOLVE_HOST:
        return "; check the host name";
    case CURLE_PEER_FAILED_VERIFICATION:
        return "; the broker's certificate does not verify against the trusted CAs (give the CA that issued its "
               "tls_cert: --cacert, --kbs-cacert) or does not name this host";
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return "; the broker's TLS key is not the pinned one";
    case CURLE_OPERATION_TIMEDOUT:
        return "; the broker did not answer in time";
    default:
        return "";
    }
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

/* What a refusal at each step means, for the one-line error: text goes before "(HTTP Type)", hint (what to do)
 * after it; model is the model asked for ("" when none). */
static void refusal_text(const char *step, const char *type, const char *model, char text[256], char hint[256])
{
    hint[0] = '\0';
    if (strcmp(step, "resource") == 0 && strcmp(type, "PolicyDeny") == 0) {
        snprintf(text, 256, "model key not released for '%.64s': the model's policy does not accept this TEE, or the "
                            "model has no usable key version (unknown or revoked)", model);
        snprintf(hint, 256, "; check the file's model id (veil inspect FILE) against the broker's (veil kbs show "
                            "%.64s)", model);
    } else if (strcmp(step, "resource") == 0 && strcmp(type, "ResourceNotFound") == 0) {
        snprintf(text, 256, "model key not released for '%.64s': the broker has no such model or key version", model);
        snprintf(hint, 256, "; 'veil kbs show %.64s' lists the model's key versions", model);
    } else if (strcmp(step, "attest") == 0) {
        snprintf(text, 256, "the key broker refused the attestation");
    } else if (strcmp(step, "auth") == 0) {
        snprintf(text, 256, "the key broker refused to start a session");
        snprintf(hint, 256, "; does the broker accept this TEE type (its allowed_tees setting)?");
    } else {
        snprintf(text, 256, "the key broker refused the key request");
    }
}

/* Sends one request (POST body when not NULL, else GET) and requires HTTP 200. The answer is in c->body,
 * NUL-terminated. */
static VEIL_RESULT exchange(struct veil_kbs_conn *c, const char *step, const char *path, const json_t *body,
                            const char *model)
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
    VEIL_ENSURE(rc == CURLE_OK, VEIL_ERR_IO, "cannot reach the key broker at %.200s: %s%s", c->base,
                curl_easy_strerror(rc), veil_kbs_transport_hint((int)rc, c->base));
    VEIL_GUARD(veil_buf_append_u8(&c->body, 0));
    c->body.size--;
    long http = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
    c->http = http;
    if (http == 200)
        return VEIL_RESULT_OK;
    char type[ERROR_TYPE_MAX + 1], what[256], hint[256];
    error_type(c, type);
    refusal_text(step, type, model != NULL ? model : "", what, hint);
    VEIL_BAIL(refusal_status(http, type), "%s (%ld %s)%s", what, http, type, hint);
}

/* ---- the steps ---------------------------------------------------------------------------------------------- */

/* Raises st with "what: <the error just raised>" (copied first: the message buffer is the one written). */
static VEIL_RESULT wrap(veil_status st, const char *what)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s", veil_last_error());
    VEIL_BAIL(st, "%s: %s", what, detail);
}

/* Raises st with "<the error just raised><hint>". */
static VEIL_RESULT wrap_after(veil_status st, const char *hint)
{
    char detail[320];
    snprintf(detail, sizeof detail, "%s", veil_last_error());
    VEIL_BAIL(st, "%s%s", detail, hint);
}

VEIL_RESULT veil_kbs_client_auth(struct veil_kbs_conn *c, veil_tee tee, struct veil_rcar_challenge *ch)
{
    VEIL_ENSURE(tee != VEIL_TEE_AUTO, VEIL_ERR_ARG, "detect the TEE before starting a session");
    json_t *req VEIL_DEFER(veil_json_done) = NULL;
    /* The builder knows kbs-types' names only; "sim" is Veil's extra name, so the tee member is set after. */
    VEIL_GUARD(veil_rcar_request_build("sample", &req));
    VEIL_GUARD(veil_json_set(req, "tee", json_string(veil_tee_name(tee))));
    VEIL_GUARD(exchange(c, "auth", "/kbs/v0/auth", req, NULL));
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
    return exchange(c, "attest", "/kbs/v0/attest", attestation, NULL);
}

/* The broker's token-signing key from PEM: P-256 only (ES256). */
static VEIL_RESULT broker_key_load(const char *pem, struct veil_jwk *out)
{
    size_t n = strnlen(pem, BROKER_PUBKEY_PEM_MAX + 1);
    VEIL_ENSURE(n > 0 && n <= BROKER_PUBKEY_PEM_MAX, VEIL_ERR_ARG, "the pinned broker key is empty or too long");
    BIO *b = BIO_new_mem_buf(pem, (int)n);
    VEIL_ENSURE(b != NULL, VEIL_ERR_NOMEM, "out of memory");
    EVP_PKEY *k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    ERR_clear_error();
    VEIL_ENSURE(k != NULL, VEIL_ERR_ARG, "the pinned broker key is not a PEM public key");
    char group[32] = {0};
    size_t glen = 0;
    int p256 = EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
               EVP_PKEY_get_group_name(k, group, sizeof group, &glen) == 1 && strcmp(group, "prime256v1") == 0;
    if (!p256) {
        EVP_PKEY_free(k);
        VEIL_BAIL(VEIL_ERR_ARG, "the pinned broker key is not a P-256 key (veil-kbs signs tokens with ES256)");
    }
    return veil_jwk_adopt(k, out);
}

/* The token's annotated evidence must carry this session's nonce and exactly the TEE key we sent. */
static VEIL_RESULT token_binds(const json_t *claims, const char *nonce, const json_t *jwk)
{
    const json_t *ae = json_object_get(json_object_get(json_object_get(claims, "submods"), "cpu0"),
                                       ANNOTATED_EVIDENCE);
    const json_t *rd = json_object_get(ae, "runtime_data_claims");
    const char *n = json_string_value(json_object_get(rd, "nonce"));
    VEIL_ENSURE(n != NULL && strcmp(n, nonce) == 0, VEIL_ERR_VERIFY,
                "the key broker's token does not carry this session's nonce");
    VEIL_ENSURE(json_equal(json_object_get(rd, "tee-pubkey"), (json_t *)(uintptr_t)jwk), VEIL_ERR_VERIFY,
                "the key broker's token does not carry this TEE's public key");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_client_check_token(const struct veil_kbs_conn *c, const struct veil_kbs_fetch_options *o,
                                        const struct veil_rcar_challenge *ch, const json_t *jwk)
{
    if (o->broker_pubkey_pem == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(o->now != 0 && o->now <= (uint64_t)INT64_MAX, VEIL_ERR_ARG,
                "a pinned broker key needs the current time (options->now)");
    json_t *answer VEIL_DEFER(veil_json_done) = NULL;
    VEIL_GUARD(veil_json_load_object(c->body.data, c->body.size, VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE, VEIL_ERR_FORMAT,
                                     "the key broker's attestation answer", &answer));
    const char *token = NULL;
    VEIL_GUARD(veil_json_string(answer, "token", 1, VEIL_ERR_FORMAT, "the key broker's attestation answer",
                                &token));
    struct veil_jwk key VEIL_DEFER(veil_jwk_cleanup);
    veil_jwk_init(&key);
    VEIL_GUARD(broker_key_load(o->broker_pubkey_pem, &key));
    json_t *claims VEIL_DEFER(veil_json_done) = NULL;
    struct veil_result r = veil_jwt_verify_es256(&key, token, (int64_t)o->now, TOKEN_LEEWAY_S, &claims);
    if (!veil_ok(r))
        return wrap(r.status == VEIL_ERR_EXPIRED ? VEIL_ERR_EXPIRED : VEIL_ERR_VERIFY,
                    "the attestation token is not the pinned key broker's");
    return token_binds(claims, ch->nonce, jwk);
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
    VEIL_GUARD(exchange(c, "resource", path, NULL, model_id));
    VEIL_ENSURE(c->min_version.seen <= 1 && !c->min_version.bad, VEIL_ERR_FORMAT,
                "the key broker's " VEIL_KBS_MIN_MODEL_VERSION_HEADER " header is malformed or repeated");
    VEIL_ENSURE(c->lease_ttl.seen <= 1 && !c->lease_ttl.bad, VEIL_ERR_FORMAT,
                "the key broker's " VEIL_KBS_LEASE_TTL_HEADER " header is malformed or repeated");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_client_decrypt(const struct veil_kbs_conn *c, const struct veil_jwk *key, struct veil_buf *plain)
{
    json_t *jwe VEIL_DEFER(veil_json_done) = NULL;
    VEIL_GUARD(veil_json_load_object(c->body.data, c->body.size, VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE, VEIL_ERR_FORMAT,
                                     "key broker's JWE", &jwe));
    struct veil_result r = veil_jwe_decrypt(key, jwe, plain);
    return veil_ok(r) ? r : wrap(r.status, "cannot decrypt the released key");
}

static void plain_done(struct veil_buf *b) { veil_buf_cleanup(b); }

/* "null", or a JSON object of at most USAGE_MAX_SIZE bytes, copied out. */
static VEIL_RESULT usage_text(const struct veil_buf *plain, char **json)
{
    if (plain->size == 4 && memcmp(plain->data, "null", 4) == 0)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(plain->size > 0 && plain->size <= USAGE_MAX_SIZE && plain->data[0] == '{' &&
                    memchr(plain->data, 0, plain->size) == NULL,
                VEIL_ERR_FORMAT, "the key broker's usage policy is neither null nor a JSON object");
    *json = malloc(plain->size + 1);
    VEIL_ENSURE(*json != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(*json, plain->data, plain->size);
    (*json)[plain->size] = '\0';
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_client_usage(struct veil_kbs_conn *c, const struct veil_jwk *key, const char *model_id,
                                  char **json)
{
    *json = NULL;
    VEIL_GUARD(veil_kbs_model_id_check(model_id, strlen(model_id)));
    char path[sizeof USAGE_PATH + VEIL_KBS_MODEL_ID_MAX + 1];
    snprintf(path, sizeof path, "%s%s", USAGE_PATH, model_id);
    struct veil_result r = exchange(c, "usage policy", path, NULL, model_id);
    if (!veil_ok(r) && c->http == 404) { /* a broker without usage policies: none */
        veil_error_clear();
        return VEIL_RESULT_OK;
    }
    VEIL_GUARD(r);
    VEIL_DEFER(plain_done) struct veil_buf plain;
    veil_buf_init(&plain);
    VEIL_GUARD(veil_kbs_client_decrypt(c, key, &plain));
    return usage_text(&plain, json);
}

/* {"used": {client: count}} from the broker: the inner object, checked, as text. */
static VEIL_RESULT counts_text(const struct veil_buf *plain, char **json)
{
    static const char *const keys[] = {"used", NULL};
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(plain->data, plain->size, VEIL_USAGE_COUNTS_MAX_SIZE + 64, VEIL_ERR_FORMAT,
                                     "the key broker's usage counters", &j));
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_FORMAT, "the key broker's usage counters"));
    VEIL_DEFER(veil_json_done) json_t *counts = NULL;
    char *text = json_dumps(json_object_get(j, "used"), JSON_COMPACT);
    VEIL_ENSURE(text != NULL, VEIL_ERR_FORMAT, "the key broker's usage counters lack \"used\"");
    struct veil_result r = veil_usage_counts_parse(text, strlen(text), 0, &counts);
    if (!veil_ok(r)) {
        free(text);
        return r;
    }
    *json = text;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_client_usage_counts(struct veil_kbs_conn *c, const struct veil_jwk *key, const char *model_id,
                                         const char *report, char **json)
{
    *json = NULL;
    VEIL_GUARD(veil_kbs_model_id_check(model_id, strlen(model_id)));
    VEIL_DEFER(veil_json_done) json_t *deltas = NULL;
    VEIL_GUARD(veil_usage_counts_parse(report, strlen(report), 1, &deltas));
    VEIL_DEFER(veil_json_done) json_t *body = json_pack("{s:O}", "report", deltas);
    VEIL_ENSURE(body != NULL, VEIL_ERR_NOMEM, "out of memory");
    char path[sizeof COUNTS_PATH + VEIL_KBS_MODEL_ID_MAX + 1];
    snprintf(path, sizeof path, "%s%s", COUNTS_PATH, model_id);
    struct veil_result r = exchange(c, "usage report", path, body, model_id);
    if (!veil_ok(r) && c->http == 404) {
        veil_error_clear(); /* a broker without usage counters (a plain Trustee KBS) */
        return VEIL_RESULT_OK;
    }
    VEIL_GUARD(r);
    VEIL_DEFER(plain_done) struct veil_buf plain;
    veil_buf_init(&plain);
    VEIL_GUARD(veil_kbs_client_decrypt(c, key, &plain));
    return counts_text(&plain, json);
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
                               uint32_t key_version, struct veil_kbs_model_release *out)
{
    VEIL_GUARD(veil_kbs_model_id_check(model_id, strlen(model_id)));
    veil_tee tee = o->tee;
    if (tee == VEIL_TEE_AUTO) {
        veil_status st = veil_tee_detect(o->provider, &tee);
        if (st != VEIL_OK)
            return wrap(st, "cannot detect the TEE");
    }
    VEIL_GUARD(veil_kbs_transport_check(o, tee));
    VEIL_ENSURE(o->broker_pubkey_pem == NULL || o->now != 0, VEIL_ERR_ARG,
                "a pinned broker key needs the current time (options->now)");
    VEIL_GUARD(veil_kbs_conn_init(&f->conn, o));
    VEIL_GUARD(veil_kbs_client_auth(&f->conn, tee, &f->ch));
    VEIL_GUARD(veil_kbs_client_tee_key(&f->key, &f->jwk));
    VEIL_GUARD(veil_kbs_client_evidence(tee, o->provider, &f->ch, f->jwk, &f->attestation));
    struct veil_result r = veil_kbs_client_attest(&f->conn, f->attestation);
    if (!veil_ok(r) && tee == VEIL_TEE_SIM && f->conn.http == 401)
        return wrap_after(r.status, "; with tee sim, most likely the broker does not trust this simulation platform: "
                                    "start veil-kbs with --sim-key SIM_DIR/platform.pub (or list it in "
                                    "sim_trusted_keys)");
    VEIL_GUARD(r);
    VEIL_GUARD(veil_kbs_client_check_token(&f->conn, o, &f->ch, f->jwk));
    VEIL_GUARD(veil_kbs_client_resource(&f->conn, model_id, key_version));
    out->min_model_version = f->conn.min_version.value;
    out->lease_ttl_s = f->conn.lease_ttl.value;
    VEIL_GUARD(veil_kbs_client_decrypt(&f->conn, &f->key, &f->plain));
    VEIL_ENSURE(f->plain.size > 0 && f->plain.size <= out->key_capacity, VEIL_ERR_LIMIT,
                "the released key has %zu bytes; room was given for %zu", f->plain.size, out->key_capacity);
    memcpy(out->key, f->plain.data, f->plain.size);
    out->key_size = f->plain.size;
    if (out->with_usage_policy)
        VEIL_GUARD(veil_kbs_client_usage(&f->conn, &f->key, model_id, &out->usage_policy));
    if (out->with_usage_policy && out->usage_report != NULL)
        VEIL_GUARD(veil_kbs_client_usage_counts(&f->conn, &f->key, model_id, out->usage_report,
                                                &out->usage_counts));
    return VEIL_RESULT_OK;
}

/* Clears what a failed fetch may have produced: the key wiped, nothing handed out. */
static void release_clear(struct veil_kbs_model_release *out)
{
    if (out->key != NULL)
        veil_wipe(out->key, out->key_capacity);
    out->key_size = 0;
    out->min_model_version = 0;
    out->lease_ttl_s = 0;
    free(out->usage_policy);
    out->usage_policy = NULL;
    free(out->usage_counts);
    out->usage_counts = NULL;
}

veil_status veil_kbs_fetch_model(const struct veil_kbs_fetch_options *options, const char *model_id,
                                 uint32_t key_version, struct veil_kbs_model_release *out)
{
    veil_error_clear();
    if (options == NULL || model_id == NULL || out == NULL || out->key == NULL) {
        if (out != NULL)
            out->key_size = 0, out->min_model_version = 0, out->lease_ttl_s = 0, out->usage_policy = NULL,
            out->usage_counts = NULL;
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "veil_kbs_fetch_model: NULL argument").status;
    }
    out->key_size = 0, out->min_model_version = 0, out->lease_ttl_s = 0, out->usage_policy = NULL;
    out->usage_counts = NULL;
    struct fetch f;
    memset(&f, 0, sizeof f);
    veil_jwk_init(&f.key);
    veil_buf_init_secret(&f.plain);
    struct veil_result r = fetch_steps(&f, options, model_id, key_version, out);
    fetch_done(&f);
    if (!veil_ok(r))
        release_clear(out);
    return r.status;
}

veil_status veil_kbs_fetch_key(const struct veil_kbs_fetch_options *options, const char *model_id,
                               uint32_t key_version, uint8_t *key, size_t key_capacity, size_t *key_size)
{
    return veil_kbs_fetch_release(options, model_id, key_version, key, key_capacity, key_size, NULL);
}

veil_status veil_kbs_fetch_release(const struct veil_kbs_fetch_options *options, const char *model_id,
                                   uint32_t key_version, uint8_t *key, size_t key_capacity, size_t *key_size,
                                   uint64_t *min_model_version)
{
    if (key_size != NULL)
        *key_size = 0;
    if (min_model_version != NULL)
        *min_model_version = 0;
    if (key_size == NULL) {
        veil_error_clear();
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "veil_kbs_fetch_key: NULL argument").status;
    }
    struct veil_kbs_model_release out = {.key = key, .key_capacity = key_capacity};
    veil_status st = veil_kbs_fetch_model(options, model_id, key_version, &out);
    *key_size = out.key_size;
    if (min_model_version != NULL)
        *min_model_version = out.min_model_version;
    return st;
}
