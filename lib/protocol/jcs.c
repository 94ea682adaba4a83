/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 8785 JSON Canonicalization Scheme over jansson values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "protocol/protocol.h"

/* ---- UTF-8 ------------------------------------------------------------------------------------------------ */

/* Decodes one scalar value at s[*i] (strict: shortest form, no surrogates, <= U+10FFFF); -1 when malformed. */
static int32_t utf8_next(const uint8_t *s, size_t len, size_t *i)
{
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint8_t b = s[*i];
    size_t n = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || n > len - *i)
        return -1;
    uint32_t cp = n == 1 ? b : (uint32_t)(b & (0x7f >> n));
    for (size_t k = 1; k < n; k++) {
        if ((s[*i + k] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (s[*i + k] & 0x3f);
    }
    if (cp < min_for_len[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *i += n;
    return (int32_t)cp;
}

/* The first UTF-16 code unit of a scalar value: what RFC 8785 section 3.2.3 sorts by. */
static uint32_t utf16_lead(uint32_t cp)
{
    return cp < 0x10000 ? cp : 0xd800 + ((cp - 0x10000) >> 10);
}

struct jcs_key {
    const char *s;
    size_t len;
    json_t *value;
};

/* Compares two valid UTF-8 keys by UTF-16 code units. Within supplementary characters with the same lead
 * surrogate, the trail surrogates order as the code points do. */
static int key_compare(const void *pa, const void *pb)
{
    const struct jcs_key *a = pa, *b = pb;
    size_t i = 0, j = 0;
    while (i < a->len && j < b->len) {
        int32_t ca = utf8_next((const uint8_t *)a->s, a->len, &i), cb = utf8_next((const uint8_t *)b->s, b->len, &j);
        if (ca < 0 || cb < 0)
            return ca < 0 ? (cb < 0 ? 0 : -1) : 1; /* unreachable: keys are validated first */
        if (ca == cb)
            continue;
        uint32_t ua = utf16_lead((uint32_t)ca), ub = utf16_lead((uint32_t)cb);
        if (ua != ub)
            return ua < ub ? -1 : 1;
        return ca < cb ? -1 : 1;
    }
    return (i < a->len) - (j < b->len);
}

/* ---- strings ---------------------------------------------------------------------------------------------- */

static VEIL_RESULT utf8_check(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len)
        VEIL_ENSURE(utf8_next((const uint8_t *)s, len, &i) >= 0, VEIL_ERR_FORMAT, "JSON string is not valid UTF-8");
    return VEIL_RESULT_OK;
}

/* The escape of one byte below 0x20 or '"' or '\\' (RFC 8785 section 3.2.2.2); NULL when it is copied as is. */
static const char *short_escape(uint8_t c)
{
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\t': return "\\t";
    case '\n': return "\\n";
    case '\f': return "\\f";
    case '\r': return "\\r";
    default: return NULL;
    }
}

static VEIL_RESULT put_string(const char *s, size_t len, struct veil_buf *out)
{
    VEIL_GUARD(utf8_check(s, len));
    VEIL_GUARD(veil_buf_append_u8(out, '"'));
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        const char *e = short_escape(c);
        char hex[8];
        if (e == NULL && c < 0x20) {
            snprintf(hex, sizeof hex, "\\u%04x", c);
            e = hex;
        }
        if (e != NULL)
            VEIL_GUARD(veil_buf_append(out, e, strlen(e)));
        else
            VEIL_GUARD(veil_buf_append_u8(out, c));
    }
    return veil_buf_append_u8(out, '"');
}

/* ---- numbers ---------------------------------------------------------------------------------------------- */

/* The shortest decimal digits that round-trip d (> 0): digits without trailing zeros, and the decimal exponent
 * n such that d = 0.digits * 10^n (ECMA-262 Number::toString's k and n). */
static VEIL_RESULT shortest_digits(double d, char digits[20], int *n)
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) != d && prec < 17)
            continue;
        size_t k = 0;
        const char *p = tmp;
        for (; *p != 'e' && *p != '\0'; p++)
            if (*p >= '0' && *p <= '9')
                digits[k++] = *p;
        VEIL_ENSURE(*p == 'e' && k > 0 && k < 20, VEIL_ERR_INTERNAL, "unexpected printf output");
        while (k > 1 && digits[k - 1] == '0')
            k--;
        digits[k] = '\0';
        *n = atoi(p + 1) + 1;
        return VEIL_RESULT_OK;
    }
    VEIL_BAIL(VEIL_ERR_INTERNAL, "no round-tripping representation");
}

/* ECMA-262 section 6.1.6.1.20 Number::toString, radix 10, for finite d. */
VEIL_RESULT veil_jcs_number(double d, char *buf, size_t buf_size)
{
    VEIL_ENSURE(buf_size >= 32, VEIL_ERR_ARG, "number buffer too small");
    VEIL_ENSURE(isfinite(d), VEIL_ERR_UNSUPPORTED, "JSON cannot represent NaN or infinity");
    if (d == 0) { /* +0 and -0 */
        snprintf(buf, buf_size, "0");
        return VEIL_RESULT_OK;
    }
    const char *sign = d < 0 ? "-" : "";
    char digits[20];
    int n = 0;
    VEIL_GUARD(shortest_digits(fabs(d), digits, &n));
    int k = (int)strlen(digits);
    if (k <= n && n <= 21)
        snprintf(buf, buf_size, "%s%s%.*s", sign, digits, n - k, "000000000000000000000");
    else if (0 < n && n <= 21)
        snprintf(buf, buf_size, "%s%.*s.%s", sign, n, digits, digits + n);
    else if (-6 < n && n <= 0)
        snprintf(buf, buf_size, "%s0.%.*s%s", sign, -n, "000000", digits);
    else if (k == 1)
        snprintf(buf, buf_size, "%s%se%c%d", sign, digits, n - 1 < 0 ? '-' : '+', abs(n - 1));
    else
        snprintf(buf, buf_size, "%s%c.%se%c%d", sign, digits[0], digits + 1, n - 1 < 0 ? '-' : '+', abs(n - 1));
    return VEIL_RESULT_OK;
}

#define JCS_MAX_SAFE_INTEGER 9007199254740991LL /* 2^53 - 1 */

static VEIL_RESULT put_integer(json_int_t v, struct veil_buf *out)
{
    VEIL_ENSURE(v >= -JCS_MAX_SAFE_INTEGER && v <= JCS_MAX_SAFE_INTEGER, VEIL_ERR_UNSUPPORTED,
                "JSON integer outside +-(2^53 - 1) has no exact JCS form");
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    return veil_buf_append(out, buf, (size_t)n);
}

static VEIL_RESULT put_real(double d, struct veil_buf *out)
{
    char buf[40];
    VEIL_GUARD(veil_jcs_number(d, buf, sizeof buf));
    return veil_buf_append(out, buf, strlen(buf));
}

/* ---- structure -------------------------------------------------------------------------------------------- */

static VEIL_RESULT put_value(const json_t *v, unsigned depth, struct veil_buf *out);

static void keys_free(struct jcs_key **k)
{
    free(*k);
}

static VEIL_RESULT collect_keys(const json_t *obj, struct jcs_key *keys)
{
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)(uintptr_t)obj); it != NULL;
         it = json_object_iter_next((json_t *)(uintptr_t)obj, it), i++) {
        keys[i] = (struct jcs_key){json_object_iter_key(it), json_object_iter_key_len(it), json_object_iter_value(it)};
        VEIL_GUARD(utf8_check(keys[i].s, keys[i].len));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT put_object(const json_t *obj, unsigned depth, struct veil_buf *out)
{
    size_t count = json_object_size(obj);
    VEIL_DEFER(keys_free) struct jcs_key *keys = calloc(count != 0 ? count : 1, sizeof *keys);
    VEIL_ENSURE(keys != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(collect_keys(obj, keys));
    qsort(keys, count, sizeof *keys, key_compare);
    VEIL_GUARD(veil_buf_append_u8(out, '{'));
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            VEIL_GUARD(veil_buf_append_u8(out, ','));
        VEIL_GUARD(put_string(keys[i].s, keys[i].len, out));
        VEIL_GUARD(veil_buf_append_u8(out, ':'));
        VEIL_GUARD(put_value(keys[i].value, depth + 1, out));
    }
    return veil_buf_append_u8(out, '}');
}

static VEIL_RESULT put_array(const json_t *arr, unsigned depth, struct veil_buf *out)
{
    VEIL_GUARD(veil_buf_append_u8(out, '['));
    for (size_t i = 0; i < json_array_size(arr); i++) {
        if (i > 0)
            VEIL_GUARD(veil_buf_append_u8(out, ','));
        VEIL_GUARD(put_value(json_array_get(arr, i), depth + 1, out));
    }
    return veil_buf_append_u8(out, ']');
}

static VEIL_RESULT put_value(const json_t *v, unsigned depth, struct veil_buf *out)
{
    VEIL_ENSURE(v != NULL, VEIL_ERR_ARG, "no JSON value");
    VEIL_ENSURE(depth <= VEIL_JSON_MAX_DEPTH, VEIL_ERR_LIMIT, "JSON nested deeper than %u", VEIL_JSON_MAX_DEPTH);
    switch (json_typeof(v)) {
    case JSON_OBJECT: return put_object(v, depth, out);
    case JSON_ARRAY: return put_array(v, depth, out);
    case JSON_STRING: return put_string(json_string_value(v), json_string_length(v), out);
    case JSON_INTEGER: return put_integer(json_integer_value(v), out);
    case JSON_REAL: return put_real(json_real_value(v), out);
    case JSON_TRUE: return veil_buf_append(out, "true", 4);
    case JSON_FALSE: return veil_buf_append(out, "false", 5);
    case JSON_NULL: return veil_buf_append(out, "null", 4);
    }
    VEIL_BAIL(VEIL_ERR_INTERNAL, "unknown JSON type");
}

VEIL_RESULT veil_jcs_serialize(const json_t *v, struct veil_buf *out)
{
    size_t before = out->size;
    struct veil_result r = put_value(v, 0, out);
    if (!veil_ok(r))
        out->size = before;
    return r;
}
