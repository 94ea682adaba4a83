/* SPDX-License-Identifier: Apache-2.0 */
/* Strict base64 and base64url; see base64.h. */
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/cursor.h"
#include "core/secret.h"

static const char std_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char *alphabet(enum veil_b64 kind)
{
    return kind == VEIL_B64_URL ? url_alphabet : std_alphabet;
}

VEIL_RESULT veil_b64_encoded_size(enum veil_b64 kind, size_t size, size_t *out)
{
    VEIL_ENSURE(size <= (SIZE_MAX - 4) / 4 * 3, VEIL_ERR_LIMIT, "input too large for base64");
    size_t full = size / 3 * 4, rest = size % 3;
    if (kind == VEIL_B64_STD)
        *out = full + (rest != 0 ? 4 : 0);
    else
        *out = full + (rest != 0 ? rest + 1 : 0);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_b64_encode(enum veil_b64 kind, const uint8_t *in, size_t size, char **out)
{
    VEIL_ENSURE(in != NULL || size == 0, VEIL_ERR_ARG, "no input to encode");
    size_t n = 0;
    VEIL_GUARD(veil_b64_encoded_size(kind, size, &n));
    char *s = malloc(n + 1);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    const char *a = alphabet(kind);
    char *p = s;
    for (size_t i = 0; i < size; i += 3) {
        size_t left = size - i;
        uint32_t v = (uint32_t)in[i] << 16 | (left > 1 ? (uint32_t)in[i + 1] << 8 : 0) | (left > 2 ? in[i + 2] : 0);
        *p++ = a[v >> 18 & 63];
        *p++ = a[v >> 12 & 63];
        if (left > 1)
            *p++ = a[v >> 6 & 63];
        else if (kind == VEIL_B64_STD)
            *p++ = '=';
        if (left > 2)
            *p++ = a[v & 63];
        else if (kind == VEIL_B64_STD)
            *p++ = '=';
    }
    *p = '\0';
    *out = s;
    return VEIL_RESULT_OK;
}

/* The 6-bit value of c in the alphabet, or -1 (NUL and '=' are never in an alphabet). */
static int sextet(const char *a, uint8_t c)
{
    const char *p = c != 0 ? memchr(a, c, 64) : NULL;
    return p == NULL ? -1 : (int)(p - a);
}

/* Decodes n (2, 3 or 4) characters into n - 1 bytes; the unused low bits of a short group must be zero. */
static VEIL_RESULT decode_group(const char *a, const uint8_t *g, size_t n, uint8_t *out)
{
    uint32_t w = 0;
    for (size_t i = 0; i < 4; i++) {
        int v = i < n ? sextet(a, g[i]) : 0;
        VEIL_ENSURE(v >= 0, VEIL_ERR_FORMAT, "invalid base64 character");
        w = w << 6 | (uint32_t)v;
    }
    VEIL_ENSURE(n != 2 || (w & 0xffff) == 0, VEIL_ERR_FORMAT, "non-canonical base64 (unused bits set)");
    VEIL_ENSURE(n != 3 || (w & 0xff) == 0, VEIL_ERR_FORMAT, "non-canonical base64 (unused bits set)");
    for (size_t i = 0; i + 1 < n; i++)
        out[i] = (uint8_t)(w >> (16 - 8 * i));
    return VEIL_RESULT_OK;
}

/* The number of data characters once the padding the variant requires is taken off. */
static VEIL_RESULT data_length(enum veil_b64 kind, const char *text, size_t len, size_t *out)
{
    if (kind == VEIL_B64_URL) {
        VEIL_ENSURE(len % 4 != 1, VEIL_ERR_FORMAT, "base64url has an impossible length");
        *out = len;
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(len % 4 == 0, VEIL_ERR_FORMAT, "base64 is not padded to a multiple of 4");
    size_t pad = 0;
    while (pad < 2 && pad < len && text[len - 1 - pad] == '=')
        pad++;
    *out = len - pad;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT decode_all(const char *a, struct veil_cursor *c, uint8_t *out)
{
    while (veil_cursor_left(c) > 0) {
        size_t n = veil_cursor_left(c) < 4 ? veil_cursor_left(c) : 4;
        const uint8_t *g;
        VEIL_GUARD(veil_cursor_bytes(c, n, &g));
        VEIL_GUARD(decode_group(a, g, n, out));
        out += n - 1;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_b64_decode(enum veil_b64 kind, const char *text, size_t len, size_t max_size, struct veil_buf *out)
{
    VEIL_ENSURE(text != NULL || len == 0, VEIL_ERR_ARG, "no base64 text given");
    size_t n = 0;
    VEIL_GUARD(data_length(kind, text, len, &n));
    VEIL_ENSURE(n % 4 != 1, VEIL_ERR_FORMAT, "base64 has an impossible length");
    size_t bytes = n / 4 * 3 + (n % 4 != 0 ? n % 4 - 1 : 0);
    VEIL_ENSURE(bytes <= max_size, VEIL_ERR_LIMIT, "base64 value is larger than %zu bytes", max_size);
    if (bytes == 0)
        return VEIL_RESULT_OK;
    VEIL_GUARD(veil_buf_reserve(out, bytes));
    struct veil_cursor c = veil_cursor_make((const uint8_t *)text, n);
    struct veil_result r = decode_all(alphabet(kind), &c, out->data + out->size);
    if (!veil_ok(r)) {
        veil_wipe(out->data + out->size, bytes); /* out may be a secret buffer */
        return r;
    }
    out->size += bytes;
    return VEIL_RESULT_OK;
}
