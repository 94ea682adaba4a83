/* SPDX-License-Identifier: Apache-2.0 */
/* The Trustee KBS attestation protocol (RCAR 0.4.0) and the JOSE/JCS pieces it is built from, shared by the
 * broker (veil-kbs) and the TEE-side client. Facts and sources: shared/reference/attestation.md section 1.
 *
 *   jcs.c    RFC 8785 canonical JSON of a jansson value
 *   jwk.c    EC P-256/P-384/P-521 and RSA public JWKs: strict parse, export, ephemeral key generation
 *   jwe.c    flattened JWE: ECDH-ES+A256KW or RSA-OAEP-256 with A256GCM (encrypt: broker; decrypt: TEE)
 *   jwt.c    compact ES256 JWTs: sign, verify against an explicit `now`
 *   rcar.c   Request / Challenge / Attestation messages and the report_data binding (section 1.3)
 *
 * Nothing here reads the clock, the environment or the network. Every function that can fail raises through
 * the guard macros; out-parameters are untouched (or NULL) on failure unless documented otherwise. */
#ifndef VEIL_PROTOCOL_PROTOCOL_H
#define VEIL_PROTOCOL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/result.h"

struct evp_pkey_st; /* OpenSSL's EVP_PKEY */

/* ---- jcs.c ------------------------------------------------------------------------------------------------ */

/* Appends the RFC 8785 serialization of v to out (no terminating NUL): object members sorted by their UTF-16
 * code units, no whitespace, strings escaped as in RFC 8785 section 3.2.2.2, numbers as ECMAScript's
 * Number.prototype.toString. Integers must lie within +-(2^53 - 1) (they are IEEE doubles in JCS), reals
 * must be finite: VEIL_ERR_UNSUPPORTED otherwise. Deeper than VEIL_JSON_MAX_DEPTH: VEIL_ERR_LIMIT. */
VEIL_RESULT veil_jcs_serialize(const json_t *v, struct veil_buf *out);
/* ECMAScript formatting of one finite double into buf (at least 32 bytes), NUL-terminated. */
VEIL_RESULT veil_jcs_number(double d, char *buf, size_t buf_size);

/* ---- jwk.c ------------------------------------------------------------------------------------------------ */

enum veil_jwk_type {
    VEIL_JWK_EC_P256 = 1,
    VEIL_JWK_EC_P384,
    VEIL_JWK_EC_P521,
    VEIL_JWK_RSA
};

/* A public key, or a key pair (TEE side, broker signing key). Caller-owned: _init / _cleanup. */
struct veil_jwk {
    enum veil_jwk_type type;
    struct evp_pkey_st *pkey;
};

void veil_jwk_init(struct veil_jwk *k);
/* Frees the key (OpenSSL wipes private key material). Accepts an initialised, empty struct. */
void veil_jwk_cleanup(struct veil_jwk *k);
/* A fresh key pair: EC on the named curve, or RSA-2048 for VEIL_JWK_RSA. */
VEIL_RESULT veil_jwk_generate(enum veil_jwk_type type, struct veil_jwk *out);
/* Takes ownership of a TRUSTED OpenSSL key (EC P-256/384/521 or RSA of VEIL_JWK_RSA_MIN_BITS..MAX_BITS), e.g. one
 * loaded from the caller's own key file: it is not checked as veil_jwk_parse checks a peer's key, and JWE uses it
 * without re-validation. On failure the key is freed too. */
VEIL_RESULT veil_jwk_adopt(struct evp_pkey_st *pkey, struct veil_jwk *out);
/* Parses an untrusted public JWK. EC: kty "EC", crv "P-256"|"P-384"|"P-521", x and y base64url of exactly the
 * field size, the point on the curve. RSA: kty "RSA", n without leading zero bytes, VEIL_JWK_RSA_MIN_BITS to
 * MAX_BITS, e odd and at least 3. "alg", when present, must be one this library can use with the key
 * (ECDH-ES+A256KW or ES256 for EC, RSA-OAEP-256 for RSA); private members ("d", "p", ...) are refused.
 * Errors: VEIL_ERR_FORMAT (shape), VEIL_ERR_UNSUPPORTED (unknown kty/crv/alg), VEIL_ERR_LIMIT (RSA size). */
VEIL_RESULT veil_jwk_parse(const json_t *jwk, struct veil_jwk *out);
/* The public JWK as a new object in Trustee's member order: {"kty","crv","alg","x","y"} or {"kty","alg","n","e"}.
 * alg may be NULL (no "alg" member). Caller owns *out (json_decref). */
VEIL_RESULT veil_jwk_export(const struct veil_jwk *k, const char *alg, json_t **out);

/* ---- jwe.c ------------------------------------------------------------------------------------------------ */

/* Encrypts plaintext to recipient as a flattened JWE {"protected","encrypted_key","iv","ciphertext","tag"}:
 * alg ECDH-ES+A256KW for EC keys (ephemeral key on the recipient's curve, Concat KDF with empty apu/apv,
 * AES-256 key wrap) or RSA-OAEP-256 for RSA keys; enc A256GCM with a random CEK and IV. The protected header
 * is serialized exactly as Rust clients rebuild it (reference section 0.3):
 *   {"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":"…","y":"…"}}
 *   {"alg":"RSA-OAEP-256","enc":"A256GCM"}
 * Caller owns *out. */
VEIL_RESULT veil_jwe_encrypt(const struct veil_jwk *recipient, const uint8_t *plaintext, size_t size,
                             json_t **out);
/* Decrypts a flattened JWE with the recipient's private key. Header: alg must match the key type, enc A256GCM,
 * no "zip" or "crit"; an optional "aad" member is authenticated as RFC 7516 section 5.2 says. The plaintext is
 * appended to out, which should be a secret buffer (veil_buf_init_secret); out is unchanged on failure.
 * Errors: VEIL_ERR_FORMAT (shape), VEIL_ERR_UNSUPPORTED (alg/enc), VEIL_ERR_KEY (key unwrap failed),
 * VEIL_ERR_AUTH (GCM tag), VEIL_ERR_LIMIT. */
VEIL_RESULT veil_jwe_decrypt(const struct veil_jwk *recipient, const json_t *jwe, struct veil_buf *out);

/* ---- jwt.c ------------------------------------------------------------------------------------------------ */

/* Signs claims (a JSON object, serialized compactly in its own member order) as a compact JWT with header
 * {"alg":"ES256","typ":"JWT"} or {"alg":"ES256","typ":"JWT","kid":kid}. key must be a P-256 key pair.
 * *out is a malloc'd NUL-terminated string (caller frees). */
VEIL_RESULT veil_jwt_sign_es256(const struct veil_jwk *key, const char *kid, const json_t *claims, char **out);
/* Verifies a compact ES256 JWT with a P-256 public key and checks its times against now (Unix seconds) with
 * leeway_s seconds of tolerance: "exp" is required and must be > now - leeway; "nbf" and "iat", when present,
 * must be <= now + leeway; all three must be integers. The header alg must be exactly "ES256", typ (if any)
 * "JWT", no "crit". *claims receives the payload object (caller owns) only on success.
 * Errors: VEIL_ERR_FORMAT (shape), VEIL_ERR_UNSUPPORTED (alg), VEIL_ERR_VERIFY (signature),
 * VEIL_ERR_EXPIRED (time), VEIL_ERR_LIMIT (size). */
VEIL_RESULT veil_jwt_verify_es256(const struct veil_jwk *key, const char *token, int64_t now, int64_t leeway_s,
                                  json_t **claims);
/* The ECDSA signature format conversion JOSE needs: DER ECDSA-Sig-Value <-> raw r||s of 2 * field_size bytes. */
VEIL_RESULT veil_ecdsa_der_to_raw(const uint8_t *der, size_t der_size, size_t field_size, uint8_t *raw);
VEIL_RESULT veil_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_size, struct veil_buf *der);

/* ---- rcar.c ----------------------------------------------------------------------------------------------- */

#define VEIL_RCAR_VERSION "0.4.0"
#define VEIL_KBS_REPORT_DATA_SIZE 64u
#define VEIL_KBS_MAX_DIGEST_SIZE 64u

enum veil_kbs_hash {
    VEIL_KBS_HASH_SHA256 = 1,
    VEIL_KBS_HASH_SHA384,
    VEIL_KBS_HASH_SHA512
};

/* "sha256" | "sha384" | "sha512" -> the enum; VEIL_ERR_UNSUPPORTED otherwise. */
VEIL_RESULT veil_kbs_hash_parse(const char *name, enum veil_kbs_hash *out);
const char *veil_kbs_hash_name(enum veil_kbs_hash h);
size_t veil_kbs_hash_size(enum veil_kbs_hash h);

/* The report_data binding of section 1.3: HASH(JCS({"tee-pubkey": jwk, "nonce": nonce,
 * "additional-evidence": additional_evidence})). With additional_evidence NULL the member is left out: that is
 * the device form {"nonce","tee-pubkey"}. tee_pubkey is the JWK object exactly as sent. Writes
 * veil_kbs_hash_size(hash) bytes to digest (the unpadded form the sample TEE compares). */
VEIL_RESULT veil_kbs_runtime_digest(const char *nonce, const json_t *tee_pubkey, const char *additional_evidence,
                                    enum veil_kbs_hash hash, uint8_t digest[VEIL_KBS_MAX_DIGEST_SIZE]);
/* The same digest zero-padded (SHA-512: exactly) to the 64 bytes TDX, SNP and SGX put in REPORTDATA. */
VEIL_RESULT veil_kbs_report_data(const char *nonce, const json_t *tee_pubkey, const char *additional_evidence,
                                 enum veil_kbs_hash hash, uint8_t report_data[VEIL_KBS_REPORT_DATA_SIZE]);

/* Is name one of kbs-types' Tee values ("sample", "tdx", "snp", ...)? VEIL_ERR_UNSUPPORTED if not. */
VEIL_RESULT veil_rcar_tee_check(const char *name);

/* Request {"version":"0.4.0","tee":…,"extra-params":…}. */
struct veil_rcar_request {
    char tee[VEIL_RCAR_MAX_TEE_NAME_SIZE];
    json_t *extra_params; /* owned; JSON null when the member was absent */
};
/* Builds a Request with extra-params {"supported-hash-algorithms":["sha256","sha384","sha512"]}. */
VEIL_RESULT veil_rcar_request_build(const char *tee, json_t **out);
/* Parses an untrusted body: exactly the members version (must be "0.4.0"), tee (a known name) and
 * extra-params (any JSON, optional). Errors: VEIL_ERR_FORMAT, VEIL_ERR_VERSION, VEIL_ERR_UNSUPPORTED,
 * VEIL_ERR_LIMIT. On success the caller calls veil_rcar_request_cleanup. */
VEIL_RESULT veil_rcar_request_parse(const uint8_t *body, size_t size, struct veil_rcar_request *out);
void veil_rcar_request_cleanup(struct veil_rcar_request *r);

/* Challenge {"nonce":…,"extra-params":…}. */
struct veil_rcar_challenge {
    char nonce[VEIL_RCAR_MAX_NONCE_SIZE + 1];
    enum veil_kbs_hash hash; /* extra-params.selected-hash-algorithm, SHA-384 by default */
    json_t *extra_params;    /* owned */
};
/* {"nonce":nonce,"extra-params":""} (broker side). */
VEIL_RESULT veil_rcar_challenge_build(const char *nonce, json_t **out);
/* 32 fresh random bytes as padded standard base64 (44 characters + NUL), as Trustee makes its nonces. */
VEIL_RESULT veil_rcar_nonce_generate(char out[45]);
/* Parses an untrusted body (client side): nonce a non-empty printable-ASCII string of at most
 * VEIL_RCAR_MAX_NONCE_SIZE characters, extra-params "" or an object whose optional
 * "selected-hash-algorithm" names a supported hash. */
VEIL_RESULT veil_rcar_challenge_parse(const uint8_t *body, size_t size, struct veil_rcar_challenge *out);
void veil_rcar_challenge_cleanup(struct veil_rcar_challenge *c);

/* Attestation {"init-data"?, "runtime-data":{"nonce","tee-pubkey"}, "runtime-data-hash-algorithm"?,
 * "tee-evidence":{"primary_evidence","additional_evidence"}}. */
struct veil_rcar_attestation {
    const char *nonce;            /* points into root */
    const json_t *tee_pubkey_json;/* the JWK exactly as sent (for the binding), borrowed from root */
    struct veil_jwk tee_pubkey;   /* parsed and validated */
    const json_t *primary_evidence;     /* borrowed from root */
    const char *additional_evidence;    /* "" when absent */
    const json_t *init_data;      /* borrowed; NULL when absent or null */
    enum veil_kbs_hash hash;      /* runtime-data-hash-algorithm, SHA-384 by default */
    json_t *root;                 /* owned */
};
/* Builds an Attestation (client side). tee_pubkey and primary_evidence are copied by reference (incref);
 * additional_evidence NULL means "". */
VEIL_RESULT veil_rcar_attestation_build(const char *nonce, const json_t *tee_pubkey, const json_t *primary_evidence,
                                        const char *additional_evidence, json_t **out);
/* Parses an untrusted body (broker side): only the members above, runtime-data exactly {nonce, tee-pubkey},
 * tee-pubkey a valid public JWK (veil_jwk_parse), primary_evidence an object, additional_evidence a string,
 * init-data null or {"format":"toml","body":string}. On success the caller calls
 * veil_rcar_attestation_cleanup. */
VEIL_RESULT veil_rcar_attestation_parse(const uint8_t *body, size_t size, struct veil_rcar_attestation *out);
void veil_rcar_attestation_cleanup(struct veil_rcar_attestation *a);

#endif
