/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime attestation binding (docs/spec/runtime-attestation.md), both halves, free of any HTTP code:
 *
 *   runtime   veil_binding_nonce_parse (the ?nonce= query), veil_binding_answer (the whole JSON answer)
 *   client    veil_binding_verify (strict parse, channel and nonce checks, evidence, client policy, report)
 *   both      veil_binding_build / veil_binding_report_data (SHA-512 of the JCS of the binding),
 *             veil_binding_cert_spki_sha256 (the TLS certificate's key)
 *
 * The public wrappers are in include/veil/client.h, which also defines struct veil_binding_model (the runtime
 * passes its models as an array of it). Every size cap is a named constant of client.h (VEIL_RUNTIME_*). */
#ifndef VEIL_SERVE_BINDING_H
#define VEIL_SERVE_BINDING_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/result.h"
#include "veil/attest.h"
#include "veil/client.h"

#define VEIL_BINDING_DOMAIN "veil-runtime-attestation/v1"
#define VEIL_BINDING_MAX_SAFE_INTEGER ((UINT64_C(1) << 53) - 1) /* JCS numbers are IEEE doubles */

/* The nonce of the query string: 32..128 hex digits (an even number), either case, into out
 * (VEIL_RUNTIME_NONCE_MAX_SIZE bytes); *size receives the byte count. VEIL_ERR_ARG otherwise. */
VEIL_RESULT veil_binding_nonce_parse(const char *hex, size_t len, uint8_t out[VEIL_RUNTIME_NONCE_MAX_SIZE],
                                     size_t *size);

/* The binding object {"domain","nonce","tls_spki_sha256","models"} with models sorted by name. Validates every
 * input (VEIL_ERR_ARG). Caller owns *out (json_decref). */
VEIL_RESULT veil_binding_build(const uint8_t *nonce, size_t nonce_size,
                               const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE],
                               const struct veil_binding_model *models, size_t count, json_t **out);

/* report_data = SHA-512(JCS(binding)): all 64 bytes. */
VEIL_RESULT veil_binding_report_data(const json_t *binding, uint8_t report_data[VEIL_REPORT_DATA_SIZE]);

/* The whole answer {"tee","evidence","binding"} as a malloc'd NUL-terminated JSON text (caller frees). */
VEIL_RESULT veil_binding_answer(veil_tee tee, const struct veil_provider_config *pc, const uint8_t *nonce,
                                size_t nonce_size, const uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE],
                                const struct veil_binding_model *models, size_t count, char **answer_json);

/* SHA-256 of the DER SubjectPublicKeyInfo of a DER or PEM certificate (include/veil/client.h). */
VEIL_RESULT veil_binding_cert_spki_sha256(const uint8_t *cert, size_t size,
                                          uint8_t out[VEIL_SPKI_SHA256_SIZE]);

/* Client side: see veil_runtime_verify in include/veil/client.h. *report_json is malloc'd (caller frees). */
VEIL_RESULT veil_binding_verify(const char *answer, size_t answer_size, const veil_client_policy *policy,
                                const struct veil_runtime_verify_options *options, char **report_json);

#endif
