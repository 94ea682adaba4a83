/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/cursor.h"
#include "core/secret.h"

void veil_buf_init(struct veil_buf *b)
{
    *b = (struct veil_buf){0};
}

void veil_buf_init_secret(struct veil_buf *b)
{
    *b = (struct veil_buf){.wipe = 1};
}

void veil_buf_cleanup(struct veil_buf *b)
{
    if (b->data != NULL && b->wipe)
        veil_wipe(b->data, b->cap);
    free(b->data);
    int wipe = b->wipe;
    *b = (struct veil_buf){.wipe = wipe};
}

VEIL_RESULT veil_buf_reserve(struct veil_buf *b, size_t extra)
{
    VEIL_ENSURE(extra <= SIZE_MAX - b->size, VEIL_ERR_LIMIT, "buffer size overflow");
    size_t need = b->size + extra;
    if (need <= b->cap)
        return VEIL_RESULT_OK;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = malloc(cap);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory (%zu bytes)", cap);
    if (b->size > 0)
        memcpy(p, b->data, b->size);
    if (b->data != NULL && b->wipe)
        veil_wipe(b->data, b->cap);
    free(b->data);
    b->data = p;
    b->cap = cap;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_buf_append(struct veil_buf *b, const void *data, size_t size)
{
    VEIL_GUARD(veil_buf_reserve(b, size));
    if (size > 0)
        memcpy(b->data + b->size, data, size);
    b->size += size;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_buf_append_u8(struct veil_buf *b, uint8_t v)
{
    return veil_buf_append(b, &v, 1);
}

VEIL_RESULT veil_buf_append_u16le(struct veil_buf *b, uint16_t v)
{
    uint8_t p[2];
    veil_store_u16le(p, v);
    return veil_buf_append(b, p, sizeof p);
}

VEIL_RESULT veil_buf_append_u32le(struct veil_buf *b, uint32_t v)
{
    uint8_t p[4];
    veil_store_u32le(p, v);
    return veil_buf_append(b, p, sizeof p);
}

VEIL_RESULT veil_buf_append_u64le(struct veil_buf *b, uint64_t v)
{
    uint8_t p[8];
    veil_store_u64le(p, v);
    return veil_buf_append(b, p, sizeof p);
}

VEIL_RESULT veil_buf_append_varint(struct veil_buf *b, uint64_t v)
{
    uint8_t p[10];
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            p[n] |= 0x80;
        n++;
    } while (v != 0);
    return veil_buf_append(b, p, n);
}

void veil_buf_release(struct veil_buf *b, uint8_t **out, size_t *size)
{
    *out = b->data;
    *size = b->size;
    int wipe = b->wipe;
    *b = (struct veil_buf){.wipe = wipe};
}
