/* SPDX-License-Identifier: Apache-2.0 */
/* Hex encoding and strict decoding; see hex.h. */
#include "core/hex.h"

/* The value of one digit, or -1. */
static int digit(char c, enum veil_hex_case hex_case)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (hex_case == VEIL_HEX_ANY_CASE && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void veil_hex_encode(const uint8_t *in, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * size] = '\0';
}

VEIL_RESULT veil_hex_decode(enum veil_hex_case hex_case, const char *text, size_t len, uint8_t *out, size_t size,
                            veil_status err, const char *what)
{
    VEIL_ENSURE(text != NULL, err, "%s is missing", what);
    VEIL_ENSURE(size <= SIZE_MAX / 2 && len == 2 * size, err, "%s must be %zu hex digits", what, 2 * size);
    for (size_t i = 0; i < size; i++) {
        int hi = digit(text[2 * i], hex_case), lo = digit(text[2 * i + 1], hex_case);
        VEIL_ENSURE(hi >= 0 && lo >= 0, err, "%s is not %shex", what, hex_case == VEIL_HEX_LOWER ? "lower-case " : "");
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return VEIL_RESULT_OK;
}
