/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between jwk.c, jwe.c and jwt.c only: curve table and OpenSSL glue. Includes openssl/evp.h. */
#ifndef VEIL_PROTOCOL_JOSE_H
#define VEIL_PROTOCOL_JOSE_H

#include <openssl/evp.h>

#include "protocol/protocol.h"

#define VEIL_JWE_ALG_ECDH "ECDH-ES+A256KW"
#define VEIL_JWE_ALG_RSA "RSA-OAEP-256"
#define VEIL_JWE_ENC "A256GCM"
#define VEIL_JWE_CEK_SIZE 32u
#define VEIL_JWE_WRAPPED_CEK_SIZE 40u /* AES key wrap adds 8 bytes */

struct veil_jwk_curve {
    enum veil_jwk_type type;
    const char *jose_name; /* "P-256" */
    const char *ossl_name; /* "prime256v1" */
    size_t field_size;     /* bytes of one coordinate */
};

/* NULL for RSA or an unknown type. */
const struct veil_jwk_curve *veil_jwk_curve_of(enum veil_jwk_type type);
/* Appends the affine x || y, each padded to the field size. */
VEIL_RESULT veil_jwk_ec_point(const struct veil_jwk *k, struct veil_buf *xy);

#endif
