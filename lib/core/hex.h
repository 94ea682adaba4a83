/* SPDX-License-Identifier: Apache-2.0 */
/* Hex for fixed-size binary fields. Encoding is always lower case. Decoding takes exactly 2*size digits, no
 * prefix, no whitespace, in one of two alphabets: lower case only (the one canonical spelling Veil's own
 * evidence uses) or any case (Intel's PCS serves upper case; policies and command lines are written by people). */
#ifndef VEIL_CORE_HEX_H
#define VEIL_CORE_HEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"

enum veil_hex_case {
    VEIL_HEX_LOWER,   /* 0-9 a-f */
    VEIL_HEX_ANY_CASE /* 0-9 a-f A-F */
};

/* Lower-case hex of in[0..size) into out (2*size + 1 bytes, NUL-terminated). */
void veil_hex_encode(const uint8_t *in, size_t size, char *out);
/* Decodes text[0..len), which must be exactly 2*size digits of the given case, into out[0..size).
 * Anything else (text NULL, another length, another character) fails with err, the message naming the field
 * by what. out may be partly written on failure. */
VEIL_RESULT veil_hex_decode(enum veil_hex_case hex_case, const char *text, size_t len, uint8_t *out, size_t size,
                            veil_status err, const char *what);

#endif
