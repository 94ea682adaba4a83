/* SPDX-License-Identifier: Apache-2.0 */
/* The TEE side of key release: fetch a model key from a key broker (veil-kbs, or a Trustee KBS holding Veil keys)
 * over Trustee's KBS attestation protocol, RCAR 0.4.0 (docs/kbs.md, "The TEE side: fetching a key").
 *
 *   POST /kbs/v0/auth     {"version":"0.4.0","tee":T,...}      -> nonce, session cookie
 *   (a fresh ephemeral P-256 key; report data = HASH(JCS({"nonce","tee-pubkey"})) zero-padded to 64 bytes;
 *    evidence collected for it by the provider of T)
 *   POST /kbs/v0/attest   {runtime-data, tee-evidence}         -> attestation token
 *   GET  /kbs/v0/resource/veil/model-key/<model_id>[@version]  -> JWE, decrypted with the ephemeral key
 *
 * This is the one libveil call that uses the network: the caller passes the broker's URL in. */
#ifndef VEIL_KBS_CLIENT_H
#define VEIL_KBS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "veil/attest.h"
#include "veil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Zero-initialise, then set url and tee; every zero field takes its default. Everything is borrowed.
 *
 * Transport rule. Inside SGX the loopback interface and the whole network belong to the untrusted host (and,
 * unless the image measures it, so may the system's CA store), and the key arrives as an ECDH-ES JWE, which
 * anyone can make for the TEE's public key: only a pinned, authenticated channel tells the TEE that the key
 * comes from the owner's broker. So for every TEE but sim
 * (sgx, tdx, snp, sample, and what auto detects) the URL must be https:// AND the broker must be pinned: by
 * cacert (a CA bundle that replaces the system's store) or tls_pinned_pubkey (the broker's TLS key), or both.
 * Plain http:// is accepted only with tee sim, to a loopback host (or anywhere with allow_insecure_http): sim
 * protects nothing anyway. Refusals are VEIL_ERR_ARG, before any connection. */
struct veil_kbs_fetch_options {
    const char *url;                          /* the broker: "https://host[:port]"; "http://..." only with tee sim
                                               * (see above); a path prefix is kept ("https://h/kbs-proxy" ->
                                               * .../kbs-proxy/kbs/v0/...) */
    const char *cacert;                       /* https: PEM CA bundle that verifies the broker, used INSTEAD of the
                                               * system's store (a pin); NULL: the system's store, accepted for sim
                                               * only unless tls_pinned_pubkey is set */
    int allow_insecure_http;                  /* nonzero, tee sim only: allow http:// to a non-loopback host (tests:
                                               * the session cookie then travels in clear) */
    veil_tee tee;                             /* the evidence provider; VEIL_TEE_AUTO detects sgx, tdx or snp */
    const struct veil_provider_config *provider; /* where the provider looks (NULL: defaults; sim needs sim_dir) */
    unsigned timeout_s;                       /* whole-request timeout of each HTTP exchange (0: 30 s) */
    const char *tls_pinned_pubkey;            /* https: the broker's TLS public key, in libcurl's
                                               * CURLOPT_PINNEDPUBLICKEY form: a PEM or DER file, or
                                               * "sha256//<base64>[;sha256//<base64>...]"; checked on top of the
                                               * certificate chain (cacert or the system's store) */
    const char *broker_pubkey_pem;            /* the broker's token-signing key (PEM SubjectPublicKeyInfo, P-256:
                                               * the public half of veil-kbs's signing_key_file). When set, the
                                               * attestation token must verify with it (ES256, exp judged at now)
                                               * and carry this session's nonce and TEE public key before the
                                               * resource is requested: VEIL_ERR_VERIFY otherwise. It proves the
                                               * owner's broker attested this TEE; the pinned TLS channel is what
                                               * authenticates the released key itself. */
    uint64_t now;                             /* seconds since the epoch; required with broker_pubkey_pem */
};

/* Runs the whole RCAR exchange and writes the released key of model_id to key[0..*key_size).
 * key_version 0 asks for the newest non-revoked version. key is the caller's (ideally locked, see
 * veil_secure_*); the plaintext exists only there and in a buffer wiped before return; the ephemeral TEE key is
 * freed (OpenSSL wipes it) on every path. On failure key[0..key_capacity) is wiped, *key_size is 0, and
 * veil_last_error() names the step, the broker's HTTP status and its error type, never the key. Errors:
 * VEIL_ERR_ARG (options, URL, transport rule, model id), VEIL_ERR_IO (cannot reach the broker, TLS or pin
 * failure, unexpected HTTP status), VEIL_ERR_VERIFY (401 AttestationError: the broker did not accept the
 * evidence; or the token does not verify with broker_pubkey_pem), VEIL_ERR_POLICY (401 PolicyDeny: the model's
 * policy refuses this TEE, the version is revoked, or no usable version exists), VEIL_ERR_ARG (also 404
 * ResourceNotFound: no such model or key version), VEIL_ERR_FORMAT (a malformed answer), VEIL_ERR_LIMIT (an
 * answer over VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE, or a key over key_capacity), and what the evidence provider
 * raises (VEIL_ERR_UNSUPPORTED: no TEE found). */
VEIL_API VEIL_WUR veil_status veil_kbs_fetch_key(const struct veil_kbs_fetch_options *options, const char *model_id,
                                                 uint32_t key_version, uint8_t *key, size_t key_capacity,
                                                 size_t *key_size);

/* The HTTP response header with which a broker sends, along with a released model key, the minimum model
 * version the model's policy demands (anti-rollback): "Veil-Min-Model-Version: <decimal 0..2^63-1>" on the 200
 * answer to GET /kbs/v0/resource/veil/model-key/<model_id>[@version]. Absent: 0 (no minimum). It is as
 * authentic as the key itself (the same pinned TLS answer). */
#define VEIL_KBS_MIN_MODEL_VERSION_HEADER "Veil-Min-Model-Version"

/* The HTTP response header with which a broker sends, along with a released model key, the lease the model's owner
 * grants on it: "Veil-Lease-TTL: <decimal seconds>" (veil-kbs: the release policy's lease_ttl_s, 1..86400, default
 * 300; docs/cache.md). A key cache keeps the key at most that long after the release began, and must renew it with
 * fresh evidence before then; a revoked version or a policy that no longer admits the TEE makes the renewal fail.
 * Absent (a Trustee KBS): 0, the holder's own default applies. */
#define VEIL_KBS_LEASE_TTL_HEADER "Veil-Lease-TTL"

/* veil_kbs_fetch_key, also returning the release's minimum model version (0 when the broker sent none; at most
 * once per answer, strict decimal: VEIL_ERR_FORMAT otherwise) in *min_model_version (may be NULL). Pass it to
 * veil_model_open as veil_open_options.min_model_version. */
VEIL_API VEIL_WUR veil_status veil_kbs_fetch_release(const struct veil_kbs_fetch_options *options,
                                                     const char *model_id, uint32_t key_version, uint8_t *key,
                                                     size_t key_capacity, size_t *key_size,
                                                     uint64_t *min_model_version);

/* Everything the TEE needs of one model, from one attested session. Zero-initialise, then set key and
 * key_capacity (and with_usage_policy). */
struct veil_kbs_model_release {
    uint8_t *key;                 /* in: where the key goes (the caller's, ideally locked: veil_secure_*) */
    size_t key_capacity;          /* in */
    size_t key_size;              /* out: bytes of key written */
    uint64_t min_model_version;   /* out: the broker's Veil-Min-Model-Version (0: none) */
    int with_usage_policy;        /* in: nonzero also fetches GET /kbs/v0/resource/veil/usage-policy/<model_id> */
    char *usage_policy;           /* out: the owner's usage policy, JSON text (free with veil_free), or NULL when the
                                   * owner set none (the broker sent "null", or a broker without usage policies,
                                   * such as a plain Trustee KBS, answered 404) */
    uint64_t lease_ttl_s;         /* out: the broker's Veil-Lease-TTL in seconds (0: none sent) */
    const char *usage_report;     /* in: with with_usage_policy, a usage report to add to the broker's counters in
                                   * the same session (POST /kbs/v0/veil-usage/<model_id>): JSON text
                                   * {"client name": admitted requests, ...}, "{}" to read them only; NULL: none
                                   * (docs/spec/usage-policy.md section 5) */
    char *usage_counts;           /* out: the broker's counters after the report, JSON text {"client name": count}
                                   * (free with veil_free); NULL when no report was given, or a broker without
                                   * counters (such as a plain Trustee KBS) answered 404 */
};

/* veil_kbs_fetch_release, and with with_usage_policy the model's usage policy (docs/spec/usage-policy.md) and, with
 * usage_report, its usage counters, in the same session: a TEE the model's release policy refuses gets none. On failure the key is wiped and every out
 * field is zero / NULL. Errors: those of veil_kbs_fetch_key, and VEIL_ERR_FORMAT for a usage policy that is
 * neither null nor a JSON object of at most 1 MiB. */
VEIL_API VEIL_WUR veil_status veil_kbs_fetch_model(const struct veil_kbs_fetch_options *options,
                                                   const char *model_id, uint32_t key_version,
                                                   struct veil_kbs_model_release *out);

#ifdef __cplusplus
}
#endif
#endif
