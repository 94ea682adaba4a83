/* SPDX-License-Identifier: Apache-2.0 */
/* The bounded cursor: the only way Veil reads untrusted bytes. Every read checks n <= size - off before it
 * moves; on failure the cursor does not move. */
#ifndef VEIL_CORE_CURSOR_H
#define VEIL_CORE_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"

struct veil_cursor {
    const uint8_t *data;
    size_t size;
    size_t off;
};

static inline struct veil_cursor veil_cursor_make(const uint8_t *data, size_t size)
{
    return (struct veil_cursor){data, size, 0};
}

static inline size_t veil_cursor_left(const struct veil_cursor *c)
{
    return c->size - c->off;
}

VEIL_RESULT veil_cursor_bytes(struct veil_cursor *c, size_t n, const uint8_t **out);
VEIL_RESULT veil_cursor_copy(struct veil_cursor *c, void *out, size_t n);
VEIL_RESULT veil_cursor_skip(struct veil_cursor *c, size_t n);
VEIL_RESULT veil_cursor_u8(struct veil_cursor *c, uint8_t *out);
VEIL_RESULT veil_cursor_u16le(struct veil_cursor *c, uint16_t *out);
VEIL_RESULT veil_cursor_u32le(struct veil_cursor *c, uint32_t *out);
VEIL_RESULT veil_cursor_u64le(struct veil_cursor *c, uint64_t *out);
/* Protobuf base-128 varint, at most 10 bytes, the 10th carrying at most one bit. */
VEIL_RESULT veil_cursor_varint(struct veil_cursor *c, uint64_t *out);
/* A sub-cursor over the next n bytes; the parent moves past them. */
VEIL_RESULT veil_cursor_sub(struct veil_cursor *c, size_t n, struct veil_cursor *sub);
/* Every parser ends with this: fails with VEIL_ERR_TRUNCATED when bytes are left. */
VEIL_RESULT veil_cursor_expect_end(const struct veil_cursor *c);

/* Little-endian stores for writers. */
static inline void veil_store_u16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void veil_store_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void veil_store_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Little-endian loads from bytes already bounds-checked. */
static inline uint32_t veil_load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t veil_load_u64le(const uint8_t *p)
{
    return (uint64_t)veil_load_u32le(p) | (uint64_t)veil_load_u32le(p + 4) << 32;
}

#endif
