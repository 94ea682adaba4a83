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

/* Zero-initialise, then set url and tee; every zero field takes its default. Everything is borrowed. */
struct veil_kbs_fetch_options {
    const char *url;                          /* the broker: "https://host[:port]" or, for a loopback host
                                               * (127.0.0.0/8, ::1, localhost) only, "http://..."; a path prefix
                                               * is kept ("https://h/kbs-proxy" -> .../kbs-proxy/kbs/v0/...) */
    const char *cacert;                       /* https: PEM CA bundle to verify the broker with (NULL: the
                                               * system's store) */
    int allow_insecure_http;                  /* nonzero: allow http:// to a non-loopback host (tests only: the
                                               * session cookie then travels in clear) */
    veil_tee tee;                             /* the evidence provider; VEIL_TEE_AUTO detects sgx, tdx or snp */
    const struct veil_provider_config *provider; /* where the provider looks (NULL: defaults; sim needs sim_dir) */
    unsigned timeout_s;                       /* whole-request timeout of each HTTP exchange (0: 30 s) */
};

/* Runs the whole RCAR exchange and writes the released key of model_id to key[0..*key_size).
 * key_version 0 asks for the newest non-revoked version. key is the caller's (ideally locked, see
 * veil_secure_*); the plaintext exists only there and in a buffer wiped before return; the ephemeral TEE key is
 * freed (OpenSSL wipes it) on every path. On failure key[0..key_capacity) is wiped, *key_size is 0, and
 * veil_last_error() names the step, the broker's HTTP status and its error type, never the key. Errors:
 * VEIL_ERR_ARG (options, URL, model id), VEIL_ERR_IO (cannot reach the broker, TLS, unexpected HTTP status),
 * VEIL_ERR_VERIFY (401 AttestationError: the broker did not accept the evidence), VEIL_ERR_POLICY (401
 * PolicyDeny: the model's policy refuses this TEE, the version is revoked, or no usable version exists),
 * VEIL_ERR_ARG (also 404 ResourceNotFound: no such model or key version), VEIL_ERR_FORMAT (a malformed answer),
 * VEIL_ERR_LIMIT (an answer over VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE, or a key over key_capacity), and what the
 * evidence provider raises (VEIL_ERR_UNSUPPORTED: no TEE found). */
VEIL_API VEIL_WUR veil_status veil_kbs_fetch_key(const struct veil_kbs_fetch_options *options, const char *model_id,
                                                 uint32_t key_version, uint8_t *key, size_t key_capacity,
                                                 size_t *key_size);

#ifdef __cplusplus
}
#endif
#endif
