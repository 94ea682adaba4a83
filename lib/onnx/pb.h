/* SPDX-License-Identifier: Apache-2.0 */
/* A small bounded reader and writer for the protobuf wire format, enough to walk ONNX messages field by field
 * and copy fields verbatim. It knows nothing about message schemas: the caller decides which LEN fields are
 * sub-messages and descends into them with the field's payload cursor, so nesting depth is the caller's.
 * Every malformed input fails with VEIL_ERR_ONNX, naming the message being read ("what"). */
#ifndef VEIL_ONNX_PB_H
#define VEIL_ONNX_PB_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/cursor.h"
#include "core/result.h"

/* Wire types Veil accepts; groups (3, 4) and the unused 6, 7 are refused. */
enum veil_pb_wire { VEIL_PB_VARINT = 0, VEIL_PB_I64 = 1, VEIL_PB_LEN = 2, VEIL_PB_I32 = 5 };

/* A bit mask of wire types, for veil_pb_expect_wire. */
#define VEIL_PB_WIRE_BIT(w) (1u << (w))
#define VEIL_PB_ANY_WIRE                                                                                       \
    (VEIL_PB_WIRE_BIT(VEIL_PB_VARINT) | VEIL_PB_WIRE_BIT(VEIL_PB_I64) | VEIL_PB_WIRE_BIT(VEIL_PB_LEN) |       \
     VEIL_PB_WIRE_BIT(VEIL_PB_I32))

#define VEIL_PB_MAX_FIELD_NUMBER ((UINT32_C(1) << 29) - 1)

/* One field of a message. */
struct veil_pb_field {
    uint32_t number;             /* 1 .. VEIL_PB_MAX_FIELD_NUMBER */
    uint32_t wire;               /* enum veil_pb_wire */
    uint64_t value;              /* VARINT, I64 and I32: the value; LEN: the payload size */
    struct veil_cursor payload;  /* LEN: a cursor over the payload; empty otherwise */
    const uint8_t *raw;          /* the whole field as it appears in the input, key included */
    size_t raw_size;
};

/* Reads the next field of the message under c. On failure c's position is unspecified.
 * Iterate with: while (veil_cursor_left(&c) > 0) { VEIL_GUARD(veil_pb_next(&c, what, &f)); ... } */
VEIL_RESULT veil_pb_next(struct veil_cursor *c, const char *what, struct veil_pb_field *f);
/* Fails unless mask (VEIL_PB_WIRE_BIT(...) | ...) holds the field's wire type. */
VEIL_RESULT veil_pb_expect_wire(const struct veil_pb_field *f, uint32_t mask, const char *what);

/* Scalar reads, for the elements of packed repeated fields. */
VEIL_RESULT veil_pb_read_varint(struct veil_cursor *c, const char *what, uint64_t *out);
VEIL_RESULT veil_pb_read_fixed32(struct veil_cursor *c, const char *what, uint64_t *out);
VEIL_RESULT veil_pb_read_fixed64(struct veil_cursor *c, const char *what, uint64_t *out);
/* Counts the varints of a packed payload, checking that it holds whole varints only. */
VEIL_RESULT veil_pb_count_varints(struct veil_cursor payload, const char *what, uint64_t *count);

/* Writer. */
size_t veil_pb_varint_size(uint64_t v);
/* The encoded size of a LEN field (key, length, payload) with a payload of size bytes. */
VEIL_RESULT veil_pb_len_field_size(uint32_t number, uint64_t size, uint64_t *out);
VEIL_RESULT veil_pb_append_key(struct veil_buf *b, uint32_t number, uint32_t wire);
/* Appends the key and length of a LEN field whose size-byte payload the caller appends next. */
VEIL_RESULT veil_pb_append_len_header(struct veil_buf *b, uint32_t number, uint64_t size);
VEIL_RESULT veil_pb_append_len(struct veil_buf *b, uint32_t number, const void *data, size_t size);
VEIL_RESULT veil_pb_append_varint_field(struct veil_buf *b, uint32_t number, uint64_t v);

#endif
