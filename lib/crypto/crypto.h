/* SPDX-License-Identifier: Apache-2.0 */
/* Thin wrappers over OpenSSL 3 libcrypto: random bytes, SHA-256, HKDF-SHA256, AES-256-GCM, EC keys. */
#ifndef VEIL_CRYPTO_CRYPTO_H
#define VEIL_CRYPTO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"

#define VEIL_GCM_KEY_SIZE 32u
#define VEIL_GCM_NONCE_SIZE 12u
#define VEIL_GCM_TAG_SIZE 16u
#define VEIL_SHA256_SIZE 32u

VEIL_RESULT veil_random(uint8_t *out, size_t size);
VEIL_RESULT veil_sha256(const uint8_t *data, size_t size, uint8_t out[VEIL_SHA256_SIZE]);
/* HKDF-SHA256 (RFC 5869) with an empty salt. */
VEIL_RESULT veil_hkdf_sha256(const uint8_t *ikm, size_t ikm_size, const char *info, uint8_t *out,
                             size_t out_size);

/* One AES-256-GCM context, keyed once and reused for many messages; one per thread. */
struct veil_gcm {
    void *ctx; /* EVP_CIPHER_CTX */
    int encrypt;
};

VEIL_RESULT veil_gcm_init(struct veil_gcm *g, const uint8_t key[VEIL_GCM_KEY_SIZE], int encrypt);
/* Encrypts size bytes from in to out (which may be equal) and writes the tag. */
VEIL_RESULT veil_gcm_seal(struct veil_gcm *g, const uint8_t nonce[VEIL_GCM_NONCE_SIZE], const uint8_t *aad,
                          size_t aad_size, const uint8_t *in, uint8_t *out, size_t size,
                          uint8_t tag[VEIL_GCM_TAG_SIZE]);
/* Decrypts and verifies; VEIL_ERR_AUTH (with out wiped) when the tag does not verify. */
VEIL_RESULT veil_gcm_open(struct veil_gcm *g, const uint8_t nonce[VEIL_GCM_NONCE_SIZE], const uint8_t *aad,
                          size_t aad_size, const uint8_t *in, uint8_t *out, size_t size,
                          const uint8_t tag[VEIL_GCM_TAG_SIZE]);
void veil_gcm_cleanup(struct veil_gcm *g);

/* ---- EC keys on the NIST curves (ec.c) ---- */
enum veil_ec_curve { VEIL_EC_P256, VEIL_EC_P384, VEIL_EC_P521, VEIL_EC_CURVE_COUNT };
struct evp_pkey_st;

/* Bytes of one coordinate: 32, 48, 66 (0 for an unknown curve). */
size_t veil_ec_field_size(enum veil_ec_curve curve);
/* A public key from an untrusted uncompressed point (0x04 || x || y): VEIL_ERR_FORMAT unless the point is on the
 * curve and not the point at infinity, which on these curves (cofactor 1) puts it in the prime-order group. */
VEIL_RESULT veil_ec_public_from_point(enum veil_ec_curve curve, const uint8_t *point, size_t size,
                                      struct evp_pkey_st **out);
/* A fresh key pair. */
VEIL_RESULT veil_ec_generate(enum veil_ec_curve curve, struct evp_pkey_st **out);

/* ---- ephemeral TLS identities (cert.c) ---- */
struct x509_st;

/* A fresh P-256 key and a self-signed certificate for it (CN cn, valid from an hour ago for a year, CA:FALSE,
 * digitalSignature, serverAuth, SAN localhost, 127.0.0.1, ::1), in memory only. The caller owns both (EVP_PKEY_free,
 * X509_free); nothing is returned on error. */
VEIL_RESULT veil_selfsigned_create(const char *cn, struct evp_pkey_st **key, struct x509_st **cert);

#endif
