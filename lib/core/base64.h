/* SPDX-License-Identifier: Apache-2.0 */
/* Strict base64 (RFC 4648 section 4, padded) and base64url (section 5, unpadded, as JOSE uses it).
 * Decoding accepts exactly one spelling of each byte string: no whitespace, no characters from the other
 * alphabet, padding only where the variant requires it, and unused trailing bits zero. */
#ifndef VEIL_CORE_BASE64_H
#define VEIL_CORE_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/result.h"

enum veil_b64 {
    VEIL_B64_STD, /* A-Z a-z 0-9 + /, padded with '=' to a multiple of 4 */
    VEIL_B64_URL  /* A-Z a-z 0-9 - _, never padded */
};

/* The encoded length (without a terminating NUL) of size bytes; VEIL_ERR_LIMIT on overflow. */
VEIL_RESULT veil_b64_encoded_size(enum veil_b64 kind, size_t size, size_t *out);
/* A malloc'd NUL-terminated encoding of in[0..size) in *out (caller frees). */
VEIL_RESULT veil_b64_encode(enum veil_b64 kind, const uint8_t *in, size_t size, char **out);
/* Decodes text[0..len) and appends the bytes to out. VEIL_ERR_FORMAT for anything non-canonical,
 * VEIL_ERR_LIMIT when more than max_size bytes would result; out is unchanged on failure. */
VEIL_RESULT veil_b64_decode(enum veil_b64 kind, const char *text, size_t len, size_t max_size, struct veil_buf *out);

#endif
