/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "core/cursor.h"

VEIL_RESULT veil_cursor_bytes(struct veil_cursor *c, size_t n, const uint8_t **out)
{
    VEIL_ENSURE(n <= c->size - c->off, VEIL_ERR_TRUNCATED, "input ends early");
    *out = c->data + c->off;
    c->off += n;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_cursor_copy(struct veil_cursor *c, void *out, size_t n)
{
    const uint8_t *p = NULL;
    VEIL_GUARD(veil_cursor_bytes(c, n, &p));
    if (n > 0)
        memcpy(out, p, n);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_cursor_skip(struct veil_cursor *c, size_t n)
{
    const uint8_t *p = NULL;
    return veil_cursor_bytes(c, n, &p);
}

VEIL_RESULT veil_cursor_u8(struct veil_cursor *c, uint8_t *out)
{
    const uint8_t *p = NULL;
    VEIL_GUARD(veil_cursor_bytes(c, 1, &p));
    *out = p[0];
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_cursor_u16le(struct veil_cursor *c, uint16_t *out)
{
    const uint8_t *p = NULL;
    VEIL_GUARD(veil_cursor_bytes(c, 2, &p));
    *out = (uint16_t)(p[0] | (p[1] << 8));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_cursor_u32le(struct veil_cursor *c, uint32_t *out)
{
    const uint8_t *p = NULL;
    VEIL_GUARD(veil_cursor_bytes(c, 4, &p));
    *out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_cursor_u64le(struct veil_cursor *c, uint64_t *out)
{
    uint32_t lo = 0, hi = 0;
    size_t start = c->off;
    VEIL_GUARD(veil_cursor_u32le(c, &lo));
    struct veil_result r = veil_cursor_u32le(c, &hi);
    if (!veil_ok(r)) {
        c->off = start;
        return r;
    }
    *out = (uint64_t)hi << 32 | lo;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_cursor_varint(struct veil_cursor *c, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 10; i++) {
        VEIL_ENSURE(i < c->size - c->off, VEIL_ERR_TRUNCATED, "varint ends early");
        uint8_t b = c->data[c->off + i];
        VEIL_ENSURE(i < 9 || b <= 1, VEIL_ERR_FORMAT, "varint too long");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            c->off += i + 1;
            *out = v;
            return VEIL_RESULT_OK;
        }
    }
    VEIL_BAIL(VEIL_ERR_FORMAT, "varint too long");
}

VEIL_RESULT veil_cursor_sub(struct veil_cursor *c, size_t n, struct veil_cursor *sub)
{
    const uint8_t *p = NULL;
    VEIL_GUARD(veil_cursor_bytes(c, n, &p));
    *sub = veil_cursor_make(p, n);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_cursor_expect_end(const struct veil_cursor *c)
{
    VEIL_ENSURE(c->off == c->size, VEIL_ERR_TRUNCATED, "unexpected trailing bytes");
    return VEIL_RESULT_OK;
}
