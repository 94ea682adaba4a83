/* SPDX-License-Identifier: Apache-2.0 */
/* A growable byte buffer with checked growth. Caller-owned: _init / _cleanup. */
#ifndef VEIL_CORE_BUF_H
#define VEIL_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"

struct veil_buf {
    uint8_t *data;
    size_t size;
    size_t cap;
    int wipe;     /* nonzero: the contents are secret; wipe on growth and cleanup */
};

void veil_buf_init(struct veil_buf *b);
void veil_buf_init_secret(struct veil_buf *b);
/* Frees (wiping first for secret buffers) and resets to empty. */
void veil_buf_cleanup(struct veil_buf *b);
VEIL_RESULT veil_buf_reserve(struct veil_buf *b, size_t extra);
VEIL_RESULT veil_buf_append(struct veil_buf *b, const void *data, size_t size);
VEIL_RESULT veil_buf_append_u8(struct veil_buf *b, uint8_t v);
VEIL_RESULT veil_buf_append_u16le(struct veil_buf *b, uint16_t v);
VEIL_RESULT veil_buf_append_u32le(struct veil_buf *b, uint32_t v);
VEIL_RESULT veil_buf_append_u64le(struct veil_buf *b, uint64_t v);
/* Protobuf base-128 varint. */
VEIL_RESULT veil_buf_append_varint(struct veil_buf *b, uint64_t v);
/* Moves the contents out: *out owns them (free with free()/veil_free); the buffer becomes empty. */
void veil_buf_release(struct veil_buf *b, uint8_t **out, size_t *size);

#endif
