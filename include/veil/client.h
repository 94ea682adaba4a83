/* SPDX-License-Identifier: Apache-2.0 */
/* Runtime attestation (docs/spec/runtime-attestation.md): an inference client checks, before it sends any data,
 * that it talks to a veil-runtime inside an attested TEE over a TLS connection whose key that TEE holds.
 *
 *   GET /v2/veil/attestation?nonce=HEX   ->  {"tee": T, "evidence": base64url, "binding": {...}}
 *   report_data = SHA-512(JCS(binding)),  binding = {domain, nonce, tls_spki_sha256, models[]}
 *
 * The runtime side builds the answer (veil_runtime_attestation_answer); the client side verifies it
 * (veil_runtime_verify) against the nonce it chose, the SHA-256 of the SubjectPublicKeyInfo of the certificate
 * it saw on the very TLS connection that carried the answer (veil_cert_spki_sha256), the evidence verifiers of
 * veil/attest.h and a client policy (veil_client_policy_parse). Nothing here touches the network or the clock:
 * the caller fetches the answer and passes `now` in. */
#ifndef VEIL_CLIENT_H
#define VEIL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "veil/attest.h"
#include "veil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes, also exported as functions so bindings never hard-code them. */
#define VEIL_SPKI_SHA256_SIZE 32u
#define VEIL_RUNTIME_NONCE_MIN_SIZE 16u
#define VEIL_RUNTIME_NONCE_MAX_SIZE 64u
#define VEIL_RUNTIME_MAX_MODELS 256u          /* models in one binding */
#define VEIL_RUNTIME_NAME_MAX 128u            /* bytes of a served model's name */
#define VEIL_RUNTIME_ANSWER_MAX_SIZE (2u << 20) /* one attestation answer (evidence of up to 1 MiB inside) */
#define VEIL_CERT_MAX_SIZE (64u << 10)        /* one certificate, DER or PEM */
#define VEIL_SPKI_PIN_SIZE 53u                /* "sha256//" + 44 base64 characters + NUL */
VEIL_API size_t veil_runtime_nonce_min_size(void);
VEIL_API size_t veil_runtime_nonce_max_size(void);
VEIL_API size_t veil_runtime_answer_max_size(void);
VEIL_API size_t veil_spki_pin_size(void);

/* ---- the TLS key ----------------------------------------------------------------------------------------- */

/* SHA-256 of the DER SubjectPublicKeyInfo of a certificate given as DER (exactly one certificate, no trailing
 * bytes) or PEM (the first CERTIFICATE block; the leaf of a chain file). At most VEIL_CERT_MAX_SIZE bytes.
 * Errors: VEIL_ERR_FORMAT (not a certificate), VEIL_ERR_LIMIT. out is untouched on failure. */
VEIL_API VEIL_WUR veil_status veil_cert_spki_sha256(const uint8_t *cert, size_t size,
                                                    uint8_t out[VEIL_SPKI_SHA256_SIZE]);
/* The pin curl's --pinnedpubkey takes: "sha256//" and the standard padded base64 of the 32 bytes, NUL-terminated
 * in out (VEIL_SPKI_PIN_SIZE bytes). VEIL_ERR_ARG for NULL arguments; VEIL_ERR_NOMEM. */
VEIL_API VEIL_WUR veil_status veil_spki_pin(const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE],
                                            char out[VEIL_SPKI_PIN_SIZE]);

/* ---- the runtime side ------------------------------------------------------------------------------------ */

/* One served model as the binding lists it (the runtime has it from the sealed header). */
struct veil_binding_model {
    const char *name;           /* the KServe name clients use: 1..128 of [A-Za-z0-9._-], not starting with . or - */
    const char *model_id;       /* the sealed header's model id: the same syntax */
    uint64_t model_version;     /* at most 2^53 - 1 (an exact JSON number) */
    uint32_t key_version;
    uint8_t header_sha256[32];  /* SHA-256 of the model's authenticated sealed header */
};

/* The whole answer of GET /v2/veil/attestation?nonce=HEX, as a NUL-terminated JSON text in *answer_json (caller
 * frees with veil_free; NULL on failure): builds the binding of nonce (16..64 bytes), the SHA-256 of the TLS
 * certificate's SubjectPublicKeyInfo and the models (any order; sorted by name here, names unique), computes
 * report_data = SHA-512(JCS(binding)) and collects evidence for it with veil_evidence_collect(tee, config, ...)
 * (VEIL_TEE_AUTO detects the TEE first). Errors: VEIL_ERR_ARG (nonce size, a model's name, id or version,
 * duplicate names, more than VEIL_RUNTIME_MAX_MODELS models) and whatever the evidence provider raises. */
VEIL_API VEIL_WUR veil_status veil_runtime_attestation_answer(veil_tee tee, const struct veil_provider_config *config,
                                                              const uint8_t *nonce, size_t nonce_size,
                                                              const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE],
                                                              const struct veil_binding_model *models, size_t count,
                                                              char **answer_json);

/* ---- the client side ------------------------------------------------------------------------------------- */

/* A client policy (docs/spec/runtime-attestation.md, "Client policy"):
 *   {"version": 1, "attestation": <a policy of docs/spec/policy.md>,
 *    "models": {"<model_id>": {"min_model_version": N}}, "require_all_models_listed": false}
 * Parsed strictly (unknown members, duplicates, wrong types: VEIL_ERR_ARG; over the size caps: VEIL_ERR_LIMIT).
 * Opaque; *out is the caller's (veil_client_policy_free), NULL on failure. */
typedef struct veil_client_policy veil_client_policy;
VEIL_API VEIL_WUR veil_status veil_client_policy_parse(const char *json, size_t size, veil_client_policy **out);
VEIL_API void veil_client_policy_free(veil_client_policy *policy);

/* Zero-initialise, then set nonce, the channel and verify. Everything is borrowed. */
struct veil_runtime_verify_options {
    const uint8_t *nonce;                /* the nonce this client put in its request (16..64 bytes) */
    size_t nonce_size;
    const uint8_t *tls_spki_sha256;      /* 32 bytes: veil_cert_spki_sha256 of the certificate the server presented
                                          * on the TLS connection that carried the answer. NULL only with
                                          * insecure_no_channel_binding. */
    int insecure_no_channel_binding;     /* nonzero: the answer came over plain HTTP (loopback, simulation TEE
                                          * only): no channel is bound, anyone on the path may read and alter the
                                          * traffic; accepted for sim evidence only and reported loudly */
    const struct veil_verify_options *verify; /* now, DCAP collateral, SNP certificate, trusted sim keys */
    const char *const *required_model_ids;    /* model ids that must be served (may be NULL) */
    size_t required_model_count;
};

/* Verifies an answer, in the order of the spec's section "Verification": parse it strictly, binding.domain,
 * binding.nonce equals options->nonce, binding.tls_spki_sha256 equals options->tls_spki_sha256, recompute
 * report_data, verify the evidence (veil_evidence_verify), its report data equals the recomputed one and its TEE
 * the answer's "tee", judge the claims with the policy's "attestation" member, then the models. On success
 * *report_json (caller frees with veil_free) holds a JSON report: {"verified", "tee", "claims", "channel",
 * "nonce", "models", "warnings"}. On failure *report_json is NULL and the status and veil_last_error() name the
 * failed check: VEIL_ERR_EVIDENCE (malformed answer or evidence, an unknown member), VEIL_ERR_LIMIT (a size cap),
 * VEIL_ERR_VERIFY (domain, nonce, TLS key, report data, TEE type, evidence signature or chain),
 * VEIL_ERR_EXPIRED, VEIL_ERR_POLICY (the attestation policy, a model below its minimum or not listed, a required
 * model not served, plain HTTP with a hardware TEE), VEIL_ERR_ARG (options). */
VEIL_API VEIL_WUR veil_status veil_runtime_verify(const char *answer, size_t answer_size,
                                                  const veil_client_policy *policy,
                                                  const struct veil_runtime_verify_options *options,
                                                  char **report_json);

#ifdef __cplusplus
}
#endif
#endif
