/* SPDX-License-Identifier: Apache-2.0 */
#include <inttypes.h>

#include "core/checked.h"
#include "onnx/pb.h"

VEIL_RESULT veil_pb_read_varint(struct veil_cursor *c, const char *what, uint64_t *out)
{
    VEIL_ENSURE(veil_ok(veil_cursor_varint(c, out)), VEIL_ERR_ONNX, "malformed %s: truncated or overlong varint",
                what);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_pb_read_fixed32(struct veil_cursor *c, const char *what, uint64_t *out)
{
    uint32_t v = 0;
    VEIL_ENSURE(veil_ok(veil_cursor_u32le(c, &v)), VEIL_ERR_ONNX, "malformed %s: truncated fixed32", what);
    *out = v;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_pb_read_fixed64(struct veil_cursor *c, const char *what, uint64_t *out)
{
    VEIL_ENSURE(veil_ok(veil_cursor_u64le(c, out)), VEIL_ERR_ONNX, "malformed %s: truncated fixed64", what);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pb_read_key(struct veil_cursor *c, const char *what, struct veil_pb_field *f)
{
    uint64_t key = 0;
    VEIL_GUARD(veil_pb_read_varint(c, what, &key));
    uint64_t number = key >> 3;
    VEIL_ENSURE(number >= 1 && number <= VEIL_PB_MAX_FIELD_NUMBER, VEIL_ERR_ONNX,
                "malformed %s: field number %" PRIu64 " is out of range", what, number);
    f->number = (uint32_t)number;
    f->wire = (uint32_t)(key & 7);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pb_read_len(struct veil_cursor *c, const char *what, struct veil_pb_field *f)
{
    VEIL_GUARD(veil_pb_read_varint(c, what, &f->value));
    VEIL_ENSURE(f->value <= veil_cursor_left(c), VEIL_ERR_ONNX,
                "malformed %s: field %" PRIu32 " claims %" PRIu64 " bytes, only %zu are left", what, f->number,
                f->value, veil_cursor_left(c));
    return veil_cursor_sub(c, (size_t)f->value, &f->payload);
}

static VEIL_RESULT pb_read_value(struct veil_cursor *c, const char *what, struct veil_pb_field *f)
{
    switch (f->wire) {
    case VEIL_PB_VARINT:
        return veil_pb_read_varint(c, what, &f->value);
    case VEIL_PB_I64:
        return veil_pb_read_fixed64(c, what, &f->value);
    case VEIL_PB_LEN:
        return pb_read_len(c, what, f);
    case VEIL_PB_I32:
        return veil_pb_read_fixed32(c, what, &f->value);
    default:
        break;
    }
    VEIL_BAIL(VEIL_ERR_ONNX, "malformed %s: field %" PRIu32 " has wire type %" PRIu32 "%s", what, f->number,
              f->wire, f->wire == 3 || f->wire == 4 ? " (groups are not supported)" : " (invalid)");
}

VEIL_RESULT veil_pb_next(struct veil_cursor *c, const char *what, struct veil_pb_field *f)
{
    size_t start = c->off;
    *f = (struct veil_pb_field){0};
    VEIL_GUARD(pb_read_key(c, what, f));
    VEIL_GUARD(pb_read_value(c, what, f));
    f->raw = c->data + start;
    f->raw_size = c->off - start;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_pb_expect_wire(const struct veil_pb_field *f, uint32_t mask, const char *what)
{
    VEIL_ENSURE((mask & VEIL_PB_WIRE_BIT(f->wire)) != 0, VEIL_ERR_ONNX,
                "malformed %s: field %" PRIu32 " has the wrong wire type (%" PRIu32 ")", what, f->number, f->wire);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_pb_count_varints(struct veil_cursor payload, const char *what, uint64_t *count)
{
    uint64_t n = 0, v = 0;
    while (veil_cursor_left(&payload) > 0) {
        VEIL_GUARD(veil_pb_read_varint(&payload, what, &v));
        n++;
    }
    *count = n;
    return VEIL_RESULT_OK;
}

size_t veil_pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

VEIL_RESULT veil_pb_len_field_size(uint32_t number, uint64_t size, uint64_t *out)
{
    uint64_t head = veil_pb_varint_size((uint64_t)number << 3) + veil_pb_varint_size(size);
    return veil_add_u64(head, size, out);
}

VEIL_RESULT veil_pb_append_key(struct veil_buf *b, uint32_t number, uint32_t wire)
{
    VEIL_ENSURE(number >= 1 && number <= VEIL_PB_MAX_FIELD_NUMBER && wire <= 7, VEIL_ERR_INTERNAL,
                "protobuf writer: bad key %" PRIu32 "/%" PRIu32, number, wire);
    return veil_buf_append_varint(b, (uint64_t)number << 3 | wire);
}

VEIL_RESULT veil_pb_append_len_header(struct veil_buf *b, uint32_t number, uint64_t size)
{
    VEIL_GUARD(veil_pb_append_key(b, number, VEIL_PB_LEN));
    return veil_buf_append_varint(b, size);
}

VEIL_RESULT veil_pb_append_len(struct veil_buf *b, uint32_t number, const void *data, size_t size)
{
    VEIL_GUARD(veil_pb_append_len_header(b, number, size));
    return veil_buf_append(b, data, size);
}

VEIL_RESULT veil_pb_append_varint_field(struct veil_buf *b, uint32_t number, uint64_t v)
{
    VEIL_GUARD(veil_pb_append_key(b, number, VEIL_PB_VARINT));
    return veil_buf_append_varint(b, v);
}
