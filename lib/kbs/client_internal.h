/* SPDX-License-Identifier: Apache-2.0 */
/* The steps of veil_kbs_fetch_key (include/veil/kbs_client.h), for callers that time or repeat them: the load
 * generator bench/bench_kbs.c keeps one connection per thread and measures each phase.
 *
 *   veil_kbs_conn_init       one libcurl handle: keep-alive connection, cookie engine, bounded answers
 *   veil_kbs_client_auth     POST /kbs/v0/auth                      -> challenge (nonce, hash)
 *   veil_kbs_client_tee_key  a fresh P-256 key pair and its JWK (ECDH-ES+A256KW)
 *   veil_kbs_client_evidence report data over {nonce, tee-pubkey}, evidence collected for it -> Attestation
 *   veil_kbs_client_attest   POST /kbs/v0/attest                    (the token stays in the session)
 *   veil_kbs_client_resource GET  /kbs/v0/resource/veil/model-key/<model_id>[@version] -> JWE in conn->body
 *   veil_kbs_client_decrypt  the JWE of the last answer, decrypted with the TEE key into a secret buffer
 *   veil_kbs_client_usage    GET  /kbs/v0/resource/veil/usage-policy/<model_id> -> the owner's usage policy
 *   veil_kbs_client_usage_counts  POST /kbs/v0/veil-usage/<model_id> -> a usage report added, the counters back
 *
 * A refusal raises a one-line error naming the step, the HTTP status and the broker's error type. */
#ifndef VEIL_KBS_CLIENT_INTERNAL_H
#define VEIL_KBS_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/result.h"
#include "protocol/protocol.h"
#include "veil/kbs_client.h"

/* A numeric header of the last answer (Veil-Min-Model-Version, Veil-Lease-TTL). */
struct veil_kbs_header_u64 {
    uint64_t value;        /* 0: absent */
    int seen;              /* how many times it came */
    int bad;               /* one was not a strict decimal 0..2^63-1 */
};

struct veil_kbs_conn {
    void *curl;            /* CURL * */
    char base[2048];       /* the broker's URL without a trailing '/' */
    struct veil_buf body;  /* the last answer, NUL-terminated (not counted in body.size) */
    int overflow;          /* the last answer exceeded VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE */
    struct veil_kbs_header_u64 min_version; /* the last answer's Veil-Min-Model-Version */
    struct veil_kbs_header_u64 lease_ttl;   /* the last answer's Veil-Lease-TTL */
    long http;             /* the last answer's HTTP status (0: none) */
};

/* The transport rule of include/veil/kbs_client.h for the TEE that will attest: every TEE but sim needs https://
 * and a pinned CA or TLS key. veil_kbs_fetch_key applies it; the load generator (bench/bench_kbs.c), which
 * drives the steps itself against a test broker, does not. VEIL_ERR_ARG. */
VEIL_RESULT veil_kbs_transport_check(const struct veil_kbs_fetch_options *o, veil_tee tee);
/* The usual cause of a failed transfer to url (libcurl's CURLcode curl_code) and the way out, as "; ..." to append
 * after libcurl's reason (https:// to a plain-HTTP broker, the reverse, nobody listening, a certificate or pin that
 * does not match, ...), or "". Shared with the admin CLI (veil kbs). */
const char *veil_kbs_transport_hint(int curl_code, const char *url);
/* Checks the URL (scheme, loopback rule) and sets up the handle (CA bundle in place of the system's store, TLS
 * key pin). On failure the struct is left empty. */
VEIL_RESULT veil_kbs_conn_init(struct veil_kbs_conn *c, const struct veil_kbs_fetch_options *o);
/* Accepts an initialised or zeroed struct. */
void veil_kbs_conn_cleanup(struct veil_kbs_conn *c);

/* Starts a session for tee (not AUTO). On success the caller calls veil_rcar_challenge_cleanup(ch). */
VEIL_RESULT veil_kbs_client_auth(struct veil_kbs_conn *c, veil_tee tee, struct veil_rcar_challenge *ch);
/* key must be initialised (veil_jwk_init); *jwk is the caller's (json_decref). */
VEIL_RESULT veil_kbs_client_tee_key(struct veil_jwk *key, json_t **jwk);
/* The Attestation body for the challenge, binding jwk. *attestation is the caller's (json_decref). */
VEIL_RESULT veil_kbs_client_evidence(veil_tee tee, const struct veil_provider_config *provider,
                                     const struct veil_rcar_challenge *ch, const json_t *jwk, json_t **attestation);
VEIL_RESULT veil_kbs_client_attest(struct veil_kbs_conn *c, const json_t *attestation);
/* With o->broker_pubkey_pem: the token of the last answer (c->body, {"token": JWT}) must verify with that key at
 * o->now and carry ch's nonce and jwk (VEIL_ERR_VERIFY, VEIL_ERR_EXPIRED). Without it: nothing. */
VEIL_RESULT veil_kbs_client_check_token(const struct veil_kbs_conn *c, const struct veil_kbs_fetch_options *o,
                                        const struct veil_rcar_challenge *ch, const json_t *jwk);
/* key_version 0: the newest non-revoked version. The JWE is left in c->body, the answer's minimum model version
 * in c->min_version and its lease TTL in c->lease_ttl (VEIL_ERR_FORMAT when either header is malformed or
 * repeated). */
VEIL_RESULT veil_kbs_client_resource(struct veil_kbs_conn *c, const char *model_id, uint32_t key_version);
/* The model's usage policy (docs/kbs.md, "Usage policies"), in the same attested session as its key, decrypted
 * with the TEE key: *json is the policy's JSON text (malloc'd) or NULL when the owner set none (the broker sends
 * "null"; a broker without the resource, such as a plain Trustee KBS, answers 404, which counts as none). */
VEIL_RESULT veil_kbs_client_usage(struct veil_kbs_conn *c, const struct veil_jwk *key, const char *model_id,
                                  char **json);
/* POST /kbs/v0/veil-usage/<model_id> {"report": report} -> the model's usage counters after it (*json: malloc'd
 * {client: count} text; NULL when the broker has no counters: 404). report: a count document (lib/serve/usage.h). */
VEIL_RESULT veil_kbs_client_usage_counts(struct veil_kbs_conn *c, const struct veil_jwk *key, const char *model_id,
                                         const char *report, char **json);
/* Appends the plaintext to plain (a secret buffer); plain is unchanged on failure. */
VEIL_RESULT veil_kbs_client_decrypt(const struct veil_kbs_conn *c, const struct veil_jwk *key,
                                    struct veil_buf *plain);

#endif
