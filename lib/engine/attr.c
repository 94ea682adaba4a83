/* SPDX-License-Identifier: Apache-2.0 */
/* Typed access to a node's attributes (AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, type 20).
 * Each operator's parse function asks for the attributes it understands; eng_attr_check_used then refuses any
 * other, by name, so an attribute the engine would ignore can never change the meaning of a model silently. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/pb.h"

enum { A_FLOAT = 1, A_INT = 2, A_STRING = 3, A_TENSOR = 4, A_FLOATS = 6, A_INTS = 7 };

struct eng_attr *eng_attr_get(struct eng_node *n, const char *name)
{
    size_t len = strlen(name);
    for (uint32_t i = 0; i < n->attr_count; i++) {
        struct eng_attr *a = &n->attrs[i];
        if (a->name_size == len && memcmp(a->name, name, len) == 0) {
            a->used = 1;
            return a;
        }
    }
    return NULL;
}

static VEIL_RESULT check_type(const struct eng_node *n, const struct eng_attr *a, const char *name, uint64_t type)
{
    char label[160];
    VEIL_ENSURE(a->type == 0 || a->type == type, VEIL_ERR_ONNX, "%s: attribute '%s' has type %" PRIu64
                ", expected %" PRIu64, eng_node_label(n, label, sizeof label), name, a->type, type);
    return VEIL_RESULT_OK;
}

/* The last occurrence of a scalar field of the attribute; *found 0 when absent. */
static VEIL_RESULT scalar_field(const struct eng_attr *a, uint32_t number, uint32_t wire, uint64_t *out, int *found)
{
    struct veil_cursor c = a->body;
    struct veil_pb_field f;
    *found = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "AttributeProto", &f));
        if (f.number != number)
            continue;
        VEIL_GUARD(veil_pb_expect_wire(&f, VEIL_PB_WIRE_BIT(wire), "AttributeProto"));
        *out = f.value;
        *found = 1;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT missing(const struct eng_node *n, const char *name)
{
    char label[160];
    VEIL_BAIL(VEIL_ERR_ONNX, "%s: attribute '%s' has no value", eng_node_label(n, label, sizeof label), name);
}

/* The raw scalar (AttributeProto field number, wire type) of attribute name when the node sets it, checked to be
 * of the given type; *present is 0 when the node does not set it. */
static VEIL_RESULT scalar_attr(struct eng_node *n, const char *name, uint64_t type, uint32_t field, uint32_t wire,
                               uint64_t *v, int *present)
{
    struct eng_attr *a = eng_attr_get(n, name);
    *present = a != NULL;
    if (a == NULL)
        return VEIL_RESULT_OK;
    VEIL_GUARD(check_type(n, a, name, type));
    int found = 0;
    VEIL_GUARD(scalar_field(a, field, wire, v, &found));
    return found ? VEIL_RESULT_OK : missing(n, name);
}

VEIL_RESULT eng_attr_int(struct eng_node *n, const char *name, int64_t def, int64_t *out)
{
    uint64_t v = 0;
    int present = 0;
    *out = def;
    VEIL_GUARD(scalar_attr(n, name, A_INT, 3, VEIL_PB_VARINT, &v, &present));
    if (present)
        *out = (int64_t)v;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_attr_float(struct eng_node *n, const char *name, float def, float *out)
{
    uint64_t v = 0;
    int present = 0;
    *out = def;
    VEIL_GUARD(scalar_attr(n, name, A_FLOAT, 2, VEIL_PB_I32, &v, &present));
    if (!present)
        return VEIL_RESULT_OK;
    uint32_t bits = (uint32_t)v;
    memcpy(out, &bits, sizeof *out);
    char label[160];
    VEIL_ENSURE(*out == *out, VEIL_ERR_ONNX, "%s: attribute '%s' is NaN", eng_node_label(n, label, sizeof label),
                name);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT push_int(const struct eng_node *n, const char *name, int64_t *out, uint32_t max, uint32_t *count,
                            uint64_t v)
{
    char label[160];
    VEIL_ENSURE(*count < max, VEIL_ERR_UNSUPPORTED, "%s: attribute '%s' has more than %" PRIu32 " values",
                eng_node_label(n, label, sizeof label), name, max);
    out[(*count)++] = (int64_t)v;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_attr_ints(struct eng_node *n, const char *name, int64_t *out, uint32_t max, uint32_t *count)
{
    struct eng_attr *a = eng_attr_get(n, name);
    *count = 0;
    if (a == NULL)
        return VEIL_RESULT_OK;
    VEIL_GUARD(check_type(n, a, name, A_INTS));
    struct veil_cursor c = a->body;
    struct veil_pb_field f;
    uint64_t v = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "AttributeProto", &f));
        if (f.number != 8)
            continue;
        VEIL_GUARD(veil_pb_expect_wire(&f, VEIL_PB_WIRE_BIT(VEIL_PB_VARINT) | VEIL_PB_WIRE_BIT(VEIL_PB_LEN),
                                       "AttributeProto"));
        if (f.wire == VEIL_PB_VARINT) {
            VEIL_GUARD(push_int(n, name, out, max, count, f.value));
            continue;
        }
        while (veil_cursor_left(&f.payload) > 0) {
            VEIL_GUARD(veil_pb_read_varint(&f.payload, "AttributeProto", &v));
            VEIL_GUARD(push_int(n, name, out, max, count, v));
        }
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_attr_string_is(struct eng_node *n, const char *name, const char *allowed)
{
    struct eng_attr *a = eng_attr_get(n, name);
    if (a == NULL)
        return VEIL_RESULT_OK;
    VEIL_GUARD(check_type(n, a, name, A_STRING));
    struct veil_cursor c = a->body;
    struct veil_pb_field f;
    struct veil_cursor s = {0};
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "AttributeProto", &f));
        if (f.number == 4) {
            VEIL_GUARD(veil_pb_expect_wire(&f, VEIL_PB_WIRE_BIT(VEIL_PB_LEN), "AttributeProto"));
            s = f.payload;
        }
    }
    char label[160];
    VEIL_ENSURE(s.size == strlen(allowed) && memcmp(s.data, allowed, s.size) == 0, VEIL_ERR_UNSUPPORTED,
                "%s: attribute %s='%.*s' is not supported (only %s)", eng_node_label(n, label, sizeof label), name,
                s.size > 32 ? 32 : (int)s.size, s.data != NULL ? (const char *)s.data : "", allowed);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_attr_string(struct eng_node *n, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    struct eng_attr *a = eng_attr_get(n, name);
    if (a == NULL)
        return VEIL_RESULT_OK;
    VEIL_GUARD(check_type(n, a, name, A_STRING));
    struct veil_cursor c = a->body;
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "AttributeProto", &f));
        if (f.number != 4)
            continue;
        VEIL_GUARD(veil_pb_expect_wire(&f, VEIL_PB_WIRE_BIT(VEIL_PB_LEN), "AttributeProto"));
        char label[160];
        VEIL_ENSURE(f.payload.size < size && memchr(f.payload.data, 0, f.payload.size) == NULL, VEIL_ERR_UNSUPPORTED,
                    "%s: attribute %s is too long or holds a NUL", eng_node_label(n, label, sizeof label), name);
        memcpy(out, f.payload.data, f.payload.size);
        out[f.payload.size] = '\0';
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_attr_auto_pad(struct eng_node *n, enum eng_auto_pad *out)
{
    static const char *const names[] = {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"};
    char v[16];
    VEIL_GUARD(eng_attr_string(n, "auto_pad", v, sizeof v));
    *out = PAD_NOTSET;
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0)
            *out = (enum eng_auto_pad)i;
    char label[160];
    VEIL_ENSURE(v[0] == '\0' || strcmp(v, names[*out]) == 0, VEIL_ERR_ONNX, "%s: auto_pad '%s' is not one of NOTSET, "
                "VALID, SAME_UPPER, SAME_LOWER", eng_node_label(n, label, sizeof label), v);
    VEIL_ENSURE(*out == PAD_NOTSET || eng_attr_get(n, "pads") == NULL, VEIL_ERR_ONNX, "%s: auto_pad %s and explicit "
                "pads together", eng_node_label(n, label, sizeof label), v);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_attr_check_used(const struct eng_node *n)
{
    for (uint32_t i = 0; i < n->attr_count; i++) {
        const struct eng_attr *a = &n->attrs[i];
        if (a->used)
            continue;
        char label[160], name[64];
        size_t k = 0;
        for (size_t j = 0; j < a->name_size && k + 1 < sizeof name; j++)
            name[k++] = a->name[j] >= 0x20 && a->name[j] < 0x7f ? (char)a->name[j] : '?';
        name[k] = '\0';
        VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "%s: unsupported attribute '%s'", eng_node_label(n, label, sizeof label),
                  name);
    }
    return VEIL_RESULT_OK;
}
