/* SPDX-License-Identifier: Apache-2.0 */
/* ONNX split, tensor table and join (docs/spec/sealed-format.md, section 9).
 *
 * All three run the same two phases over ModelProto -> graph (GraphProto) -> initializer (TensorProto):
 *   parse  validates the framing of every field of the model, of its graph and of each initializer, checks each
 *          initializer (name, type, shape, data) and collects the extracted ones;
 *   write  copies the model again, field by field, rewriting the graph and each extracted initializer: data
 *          fields dropped (split) or a raw_data field appended (join), lengths re-encoded.
 * Nesting is fixed at three messages deep and nothing recurses, well inside VEIL_ONNX_MAX_DEPTH: nodes, value
 * infos and the other sub-messages are copied verbatim after their outer framing is checked. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/cursor.h"
#include "core/secret.h"
#include "onnx/onnx.h"
#include "onnx/pb.h"

enum { MODEL_IR_VERSION = 1, MODEL_GRAPH = 7, MODEL_OPSET_IMPORT = 8 };
enum { GRAPH_INITIALIZER = 5, GRAPH_SPARSE_INITIALIZER = 15 };
enum {
    T_DIMS = 1, T_DATA_TYPE = 2, T_SEGMENT = 3, T_FLOAT_DATA = 4, T_INT32_DATA = 5, T_STRING_DATA = 6,
    T_INT64_DATA = 7, T_NAME = 8, T_RAW_DATA = 9, T_DOUBLE_DATA = 10, T_UINT64_DATA = 11, T_DOC_STRING = 12,
    T_EXTERNAL_DATA = 13, T_DATA_LOCATION = 14, T_METADATA_PROPS = 16
};
enum { LOCATION_DEFAULT = 0, LOCATION_EXTERNAL = 1 };

#define W_VARINT VEIL_PB_WIRE_BIT(VEIL_PB_VARINT)
#define W_I64 VEIL_PB_WIRE_BIT(VEIL_PB_I64)
#define W_LEN VEIL_PB_WIRE_BIT(VEIL_PB_LEN)
#define W_I32 VEIL_PB_WIRE_BIT(VEIL_PB_I32)

/* ---- data types ------------------------------------------------------------------------------------------ */

static const char *const dtype_names[] = {
    "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING", "BOOL", "FLOAT16",
    "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ",
    "FLOAT8E5M2", "FLOAT8E5M2FNUZ"};

size_t veil_onnx_dtype_size(int32_t dtype)
{
    static const uint8_t sizes[] = {0, 4, 1, 1, 2, 2, 4, 8, 0, 1, 2, 8, 4, 8, 8, 16, 2, 1, 1, 1, 1};
    if (dtype < 0 || (size_t)dtype >= sizeof sizes)
        return 0;
    return sizes[dtype];
}

static const char *dtype_name(int32_t dtype)
{
    if (dtype < 0 || (size_t)dtype >= sizeof dtype_names / sizeof dtype_names[0])
        return "unknown";
    return dtype_names[dtype];
}

static int is_data_field(uint32_t number)
{
    return number == T_FLOAT_DATA || number == T_INT32_DATA || number == T_INT64_DATA || number == T_RAW_DATA ||
           number == T_DOUBLE_DATA || number == T_UINT64_DATA;
}

/* The fields a split drops from an extracted initializer: its data, inline or external. */
static int is_stripped_field(uint32_t number)
{
    return is_data_field(number) || number == T_EXTERNAL_DATA || number == T_DATA_LOCATION;
}

static const char *data_field_name(uint32_t number)
{
    switch (number) {
    case T_FLOAT_DATA: return "float_data";
    case T_INT32_DATA: return "int32_data";
    case T_INT64_DATA: return "int64_data";
    case T_RAW_DATA: return "raw_data";
    case T_DOUBLE_DATA: return "double_data";
    case T_UINT64_DATA: return "uint64_data";
    default: return "no data field";
    }
}

/* The typed field ONNX stores an extractable data type in. */
static uint32_t typed_field(int32_t dtype)
{
    switch (dtype) {
    case VEIL_ONNX_FLOAT: case VEIL_ONNX_COMPLEX64: return T_FLOAT_DATA;
    case VEIL_ONNX_DOUBLE: case VEIL_ONNX_COMPLEX128: return T_DOUBLE_DATA;
    case VEIL_ONNX_INT64: return T_INT64_DATA;
    case VEIL_ONNX_UINT32: case VEIL_ONNX_UINT64: return T_UINT64_DATA;
    default: return T_INT32_DATA;
    }
}

/* Bytes of raw data one element of the typed field becomes. */
static size_t typed_width(uint32_t field, int32_t dtype)
{
    switch (field) {
    case T_FLOAT_DATA: return 4;
    case T_DOUBLE_DATA: case T_INT64_DATA: return 8;
    default: return veil_onnx_dtype_size(dtype);
    }
}

/* ---- tensors --------------------------------------------------------------------------------------------- */

static void tensor_cleanup(struct veil_onnx_tensor *t)
{
    free(t->name);
    free(t->location);
    if (t->owned != NULL)
        veil_wipe(t->owned, (size_t)t->size);
    free(t->owned);
    *t = (struct veil_onnx_tensor){0};
}

void veil_onnx_tensors_free(struct veil_onnx_tensor *tensors, size_t count)
{
    if (tensors == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        tensor_cleanup(&tensors[i]);
    free(tensors);
}

void veil_onnx_split_cleanup(struct veil_onnx_split *s)
{
    if (s == NULL)
        return;
    veil_buf_cleanup(&s->graph);
    veil_onnx_tensors_free(s->tensors, s->tensor_count);
    s->tensors = NULL;
    s->tensor_count = 0;
}

/* ---- scanning one initializer ---------------------------------------------------------------------------- */

/* What one pass over a TensorProto's fields saw; checked afterwards, when the name is known. */
struct tensor_scan {
    char what[48];             /* "initializer #N", for framing errors */
    char label[80];            /* the name, printable, for every later error */
    const uint8_t *name;
    size_t name_size;
    uint32_t name_seen, dtype_seen;
    int64_t dtype;
    uint64_t rank;
    int64_t dims[VEIL_ONNX_MAX_RANK];
    uint32_t data_field;       /* the data field present, 0 when none */
    int data_mixed;            /* more than one kind of data field */
    uint32_t raw_seen;
    uint64_t data_count;       /* elements of the typed field, or bytes of raw_data */
    const uint8_t *raw;
    int string_data, segment;
    uint64_t location;
    uint32_t external;         /* external_data entries */
    struct veil_cursor ext_location;
    uint64_t ext_offset, ext_length;
    int ext_location_seen, ext_offset_seen, ext_length_seen;
};

static uint32_t tensor_wires(uint32_t number)
{
    switch (number) {
    case T_DIMS: case T_INT32_DATA: case T_INT64_DATA: case T_UINT64_DATA: return W_VARINT | W_LEN;
    case T_DATA_TYPE: case T_DATA_LOCATION: return W_VARINT;
    case T_FLOAT_DATA: return W_I32 | W_LEN;
    case T_DOUBLE_DATA: return W_I64 | W_LEN;
    case T_SEGMENT: case T_STRING_DATA: case T_NAME: case T_RAW_DATA: case T_DOC_STRING: case T_EXTERNAL_DATA:
    case T_METADATA_PROPS: return W_LEN;
    default: return VEIL_PB_ANY_WIRE;
    }
}

static VEIL_RESULT scan_dim(struct tensor_scan *s, uint64_t v)
{
    VEIL_ENSURE(s->rank < VEIL_ONNX_MAX_RANK, VEIL_ERR_LIMIT, "%s has more than %u dims", s->what,
                VEIL_ONNX_MAX_RANK);
    VEIL_ENSURE(v <= INT64_MAX, VEIL_ERR_ONNX, "%s has a negative dim (%" PRId64 ")", s->what, (int64_t)v);
    s->dims[s->rank++] = (int64_t)v;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_dims(struct tensor_scan *s, const struct veil_pb_field *f)
{
    if (f->wire == VEIL_PB_VARINT)
        return scan_dim(s, f->value);
    struct veil_cursor c = f->payload;
    uint64_t v = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_read_varint(&c, s->what, &v));
        VEIL_GUARD(scan_dim(s, v));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_dtype(struct tensor_scan *s, const struct veil_pb_field *f)
{
    int64_t v = (int64_t)f->value;
    VEIL_ENSURE(!s->dtype_seen++, VEIL_ERR_ONNX, "%s has two data_type fields", s->what);
    VEIL_ENSURE(v >= INT32_MIN && v <= INT32_MAX, VEIL_ERR_ONNX, "%s: data_type %" PRId64 " is not an int32",
                s->what, v);
    s->dtype = v;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_name(struct tensor_scan *s, const struct veil_pb_field *f)
{
    VEIL_ENSURE(!s->name_seen++, VEIL_ERR_ONNX, "%s has two name fields", s->what);
    s->name = f->payload.data;
    s->name_size = f->payload.size;
    return VEIL_RESULT_OK;
}

/* Elements in one occurrence of a data field (bytes for raw_data). */
static VEIL_RESULT data_elements(const struct tensor_scan *s, const struct veil_pb_field *f, uint64_t *n)
{
    size_t size = f->payload.size;
    if (f->number == T_RAW_DATA || f->wire != VEIL_PB_LEN) {
        *n = f->number == T_RAW_DATA ? size : 1;
        return VEIL_RESULT_OK;
    }
    if (f->number == T_FLOAT_DATA || f->number == T_DOUBLE_DATA) {
        size_t width = f->number == T_FLOAT_DATA ? 4 : 8;
        VEIL_ENSURE(size % width == 0, VEIL_ERR_ONNX, "malformed %s: packed %s is %zu bytes, not a multiple of %zu",
                    s->what, data_field_name(f->number), size, width);
        *n = size / width;
        return VEIL_RESULT_OK;
    }
    return veil_pb_count_varints(f->payload, s->what, n);
}

static VEIL_RESULT scan_data(struct tensor_scan *s, const struct veil_pb_field *f)
{
    if (s->data_field != 0 && s->data_field != f->number)
        s->data_mixed = 1;
    s->data_field = f->number;
    if (f->number == T_RAW_DATA) {
        VEIL_ENSURE(!s->raw_seen++, VEIL_ERR_ONNX, "%s has two raw_data fields", s->what);
        s->raw = f->payload.data;
    }
    uint64_t n = 0;
    VEIL_GUARD(data_elements(s, f, &n));
    return veil_add_u64(s->data_count, n, &s->data_count);
}

/* A non-negative decimal integer written as a string, as ONNX writes external data offsets and lengths. */
static VEIL_RESULT parse_decimal(const struct tensor_scan *s, const char *key, struct veil_cursor v, uint64_t *out)
{
    VEIL_ENSURE(v.size > 0 && v.size <= 20, VEIL_ERR_ONNX, "%s: external data %s is not a decimal number", s->what,
                key);
    uint64_t n = 0;
    for (size_t i = 0; i < v.size; i++) {
        uint8_t ch = v.data[i];
        VEIL_ENSURE(ch >= '0' && ch <= '9', VEIL_ERR_ONNX, "%s: external data %s is not a decimal number", s->what,
                    key);
        VEIL_ENSURE(veil_ok(veil_mul_u64(n, 10, &n)) && veil_ok(veil_add_u64(n, ch - '0', &n)), VEIL_ERR_ONNX,
                    "%s: external data %s is out of range", s->what, key);
    }
    *out = n;
    return VEIL_RESULT_OK;
}

static int key_is(struct veil_cursor key, const char *want)
{
    size_t n = strlen(want);
    return key.size == n && memcmp(key.data, want, n) == 0;
}

/* One external_data entry (StringStringEntryProto: key = 1, value = 2). Keys ONNX defines but Veil does not need
 * (checksum, basepath) and unknown keys are ignored, as onnx does; each known key may appear once. */
static VEIL_RESULT scan_external(struct tensor_scan *s, const struct veil_pb_field *f)
{
    struct veil_cursor c = f->payload, key = {0}, value = {0};
    struct veil_pb_field e;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, s->what, &e));
        if (e.number == 1 || e.number == 2)
            VEIL_GUARD(veil_pb_expect_wire(&e, W_LEN, s->what));
        if (e.number == 1)
            key = e.payload;
        else if (e.number == 2)
            value = e.payload;
    }
    s->external++;
    int *seen = key_is(key, "location") ? &s->ext_location_seen : key_is(key, "offset") ? &s->ext_offset_seen
              : key_is(key, "length") ? &s->ext_length_seen : NULL;
    if (seen == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(!(*seen)++, VEIL_ERR_ONNX, "%s: external data key '%.*s' appears twice", s->what, (int)key.size,
                (const char *)key.data);
    if (seen == &s->ext_location_seen) {
        s->ext_location = value;
        return VEIL_RESULT_OK;
    }
    return parse_decimal(s, seen == &s->ext_offset_seen ? "offset" : "length", value,
                         seen == &s->ext_offset_seen ? &s->ext_offset : &s->ext_length);
}

static VEIL_RESULT scan_field(struct tensor_scan *s, const struct veil_pb_field *f)
{
    VEIL_GUARD(veil_pb_expect_wire(f, tensor_wires(f->number), s->what));
    if (is_data_field(f->number))
        return scan_data(s, f);
    switch (f->number) {
    case T_DIMS: return scan_dims(s, f);
    case T_DATA_TYPE: return scan_dtype(s, f);
    case T_NAME: return scan_name(s, f);
    case T_SEGMENT: s->segment = 1; break;
    case T_EXTERNAL_DATA: return scan_external(s, f);
    case T_DATA_LOCATION: s->location = f->value; break;
    case T_STRING_DATA: s->string_data = 1; break;
    default: break;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scan_tensor(struct tensor_scan *s, struct veil_cursor body)
{
    struct veil_pb_field f;
    while (veil_cursor_left(&body) > 0) {
        VEIL_GUARD(veil_pb_next(&body, s->what, &f));
        VEIL_GUARD(scan_field(s, &f));
    }
    return VEIL_RESULT_OK;
}

/* ---- checking one initializer ---------------------------------------------------------------------------- */

/* A quoted, printable, shortened copy of the name for messages. */
static void make_label(struct tensor_scan *s)
{
    size_t n = 0, max = sizeof s->label - 6;
    s->label[n++] = '\'';
    for (size_t i = 0; i < s->name_size && n < max; i++) {
        uint8_t ch = s->name[i];
        s->label[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (s->name_size > max - 1) {
        memcpy(s->label + n, "...", 3);
        n += 3;
    }
    s->label[n++] = '\'';
    s->label[n] = '\0';
}

static VEIL_RESULT check_name(struct tensor_scan *s)
{
    VEIL_ENSURE(s->name_seen && s->name_size > 0, VEIL_ERR_ONNX, "%s has no name", s->what);
    VEIL_ENSURE(s->name_size <= VEIL_ONNX_MAX_NAME_SIZE, VEIL_ERR_LIMIT, "%s: name is %zu bytes, more than %u",
                s->what, s->name_size, VEIL_ONNX_MAX_NAME_SIZE);
    VEIL_ENSURE(memchr(s->name, 0, s->name_size) == NULL, VEIL_ERR_ONNX, "%s: name contains a NUL byte", s->what);
    make_label(s);
    return VEIL_RESULT_OK;
}

/* A location ONNX allows: a relative path inside the model's directory (the file itself is opened beneath that
 * directory, without following links out of it, by the reader of the data). */
static VEIL_RESULT check_location(const struct tensor_scan *s)
{
    struct veil_cursor l = s->ext_location;
    VEIL_ENSURE(s->ext_location_seen && l.size > 0, VEIL_ERR_ONNX, "tensor %s: external data without a location",
                s->label);
    VEIL_ENSURE(l.size < VEIL_ONNX_MAX_LOCATION_SIZE && memchr(l.data, 0, l.size) == NULL, VEIL_ERR_ONNX,
                "tensor %s: external data location is not a path (too long, or a NUL byte)", s->label);
    VEIL_ENSURE(l.data[0] != '/', VEIL_ERR_ONNX, "tensor %s: external data location is an absolute path; ONNX "
                "locations are relative to the model's directory", s->label);
    for (size_t i = 0; i < l.size;) {
        size_t end = i;
        while (end < l.size && l.data[end] != '/')
            end++;
        VEIL_ENSURE(!(end - i == 2 && l.data[i] == '.' && l.data[i + 1] == '.'), VEIL_ERR_ONNX,
                    "tensor %s: external data location leaves the model's directory ('..')", s->label);
        i = end + 1;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_external(const struct tensor_scan *s)
{
    VEIL_ENSURE(s->location == LOCATION_EXTERNAL && s->external > 0, VEIL_ERR_ONNX, "tensor %s: data_location "
                "and external_data disagree (one says external, the other does not)", s->label);
    VEIL_ENSURE(s->data_field == 0, VEIL_ERR_ONNX, "tensor %s has both external data and %s", s->label,
                data_field_name(s->data_field));
    return check_location(s);
}

static VEIL_RESULT check_storage(const struct tensor_scan *s)
{
    VEIL_ENSURE(s->location == LOCATION_DEFAULT || s->location == LOCATION_EXTERNAL, VEIL_ERR_ONNX,
                "initializer %s: data_location %" PRIu64 " is neither DEFAULT nor EXTERNAL", s->label, s->location);
    VEIL_ENSURE(!s->segment, VEIL_ERR_UNSUPPORTED, "tensor %s is segmented (TensorProto.segment); Veil does not "
                "support segmented tensors", s->label);
    if (s->external > 0 || s->location == LOCATION_EXTERNAL)
        return check_external(s);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_dtype(const struct tensor_scan *s)
{
    VEIL_ENSURE(s->dtype_seen && s->dtype != 0, VEIL_ERR_ONNX, "initializer %s has no data_type", s->label);
    VEIL_ENSURE(s->dtype == VEIL_ONNX_STRING || veil_onnx_dtype_size((int32_t)s->dtype) > 0, VEIL_ERR_UNSUPPORTED,
                "initializer %s: data type %" PRId64 " is not supported (sub-byte and unknown types are not)",
                s->label, s->dtype);
    return VEIL_RESULT_OK;
}

/* product(dims) * element size, checked and capped. */
static VEIL_RESULT check_size(const struct tensor_scan *s, uint64_t *size)
{
    uint64_t n = veil_onnx_dtype_size((int32_t)s->dtype);
    for (uint64_t i = 0; i < s->rank; i++)
        VEIL_ENSURE(veil_ok(veil_mul_u64(n, (uint64_t)s->dims[i], &n)), VEIL_ERR_LIMIT,
                    "initializer %s: dims overflow", s->label);
    VEIL_ENSURE(n <= VEIL_SEALED_MAX_SECTION_SIZE && n <= SIZE_MAX, VEIL_ERR_LIMIT,
                "initializer %s: %" PRIu64 " bytes, more than the %" PRIu64 "-byte tensor limit", s->label, n,
                (uint64_t)VEIL_SEALED_MAX_SECTION_SIZE);
    *size = n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_data_fields(const struct tensor_scan *s)
{
    VEIL_ENSURE(!s->data_mixed, VEIL_ERR_ONNX, "initializer %s has several data fields", s->label);
    VEIL_ENSURE(!s->string_data, VEIL_ERR_ONNX, "initializer %s: string_data on a %s tensor", s->label,
                dtype_name((int32_t)s->dtype));
    return VEIL_RESULT_OK;
}

/* Every check that does not depend on the mode; for a STRING tensor, size stays 0. */
static VEIL_RESULT check_tensor(struct tensor_scan *s, uint64_t *size)
{
    VEIL_GUARD(check_name(s));
    VEIL_GUARD(check_storage(s));
    VEIL_GUARD(check_dtype(s));
    *size = 0;
    VEIL_ENSURE(s->dtype != VEIL_ONNX_STRING || s->external == 0, VEIL_ERR_UNSUPPORTED, "string initializer %s "
                "has external data; Veil reads external data for numeric tensors only", s->label);
    if (s->dtype == VEIL_ONNX_STRING)
        return VEIL_RESULT_OK;
    VEIL_GUARD(check_size(s, size));
    VEIL_ENSURE(!s->ext_length_seen || s->ext_length == *size, VEIL_ERR_ONNX, "tensor %s: external data length is "
                "%" PRIu64 " bytes, dims say %" PRIu64, s->label, s->ext_length, *size);
    VEIL_ENSURE(s->ext_offset <= UINT64_MAX - *size, VEIL_ERR_ONNX, "tensor %s: external data offset is out of "
                "range", s->label);
    return check_data_fields(s);
}

/* ---- extracting the data of one initializer -------------------------------------------------------------- */

struct sink {
    uint8_t *p;
    size_t size, off, width;
};

static VEIL_RESULT sink_put(struct sink *k, uint64_t v)
{
    VEIL_ENSURE(k->width <= k->size - k->off, VEIL_ERR_INTERNAL, "typed data overruns its tensor");
    for (size_t i = 0; i < k->width; i++)
        k->p[k->off + i] = (uint8_t)(v >> (8 * i));
    k->off += k->width;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT read_element(struct veil_cursor *c, uint32_t field, const char *what, uint64_t *v)
{
    if (field == T_FLOAT_DATA)
        return veil_pb_read_fixed32(c, what, v);
    if (field == T_DOUBLE_DATA)
        return veil_pb_read_fixed64(c, what, v);
    return veil_pb_read_varint(c, what, v);
}

static VEIL_RESULT decode_field(const struct veil_pb_field *f, const char *what, struct sink *k)
{
    if (f->wire != VEIL_PB_LEN)
        return sink_put(k, f->value);
    struct veil_cursor c = f->payload;
    uint64_t v = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(read_element(&c, f->number, what, &v));
        VEIL_GUARD(sink_put(k, v));
    }
    return VEIL_RESULT_OK;
}

/* Converts every occurrence of field, packed or not, to raw little-endian elements of k->width bytes. */
static VEIL_RESULT decode_typed(struct veil_cursor body, uint32_t field, const char *what, struct sink *k)
{
    struct veil_pb_field f;
    while (veil_cursor_left(&body) > 0) {
        VEIL_GUARD(veil_pb_next(&body, what, &f));
        if (f.number == field)
            VEIL_GUARD(decode_field(&f, what, k));
    }
    VEIL_ENSURE(k->off == k->size, VEIL_ERR_INTERNAL, "typed data does not fill its tensor");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT convert_typed(const struct tensor_scan *s, struct veil_cursor body, struct veil_onnx_tensor *t)
{
    uint32_t want = typed_field(t->dtype);
    VEIL_ENSURE(s->data_field == want, VEIL_ERR_ONNX, "initializer %s: %s cannot hold %s data", s->label,
                data_field_name(s->data_field), dtype_name(t->dtype));
    size_t width = typed_width(want, t->dtype);
    VEIL_ENSURE(s->data_count == t->size / width, VEIL_ERR_ONNX, "initializer %s: %s has %" PRIu64
                " values, dims say %" PRIu64, s->label, data_field_name(want), s->data_count, t->size / width);
    if (t->size == 0)
        return VEIL_RESULT_OK;
    t->owned = malloc((size_t)t->size);
    VEIL_ENSURE(t->owned != NULL, VEIL_ERR_NOMEM, "out of memory (%" PRIu64 " bytes)", t->size);
    t->data = t->owned;
    struct sink k = {.p = t->owned, .size = (size_t)t->size, .width = width};
    return decode_typed(body, want, s->what, &k);
}

static VEIL_RESULT extract_data(const struct tensor_scan *s, struct veil_cursor body, struct veil_onnx_tensor *t)
{
    if (s->data_field == 0) {
        VEIL_ENSURE(t->size == 0, VEIL_ERR_ONNX, "initializer %s has no data, dims say %" PRIu64 " bytes",
                    s->label, t->size);
        return VEIL_RESULT_OK;
    }
    if (s->data_field != T_RAW_DATA)
        return convert_typed(s, body, t);
    VEIL_ENSURE(s->data_count == t->size, VEIL_ERR_ONNX, "initializer %s: raw_data is %" PRIu64
                " bytes, dims say %" PRIu64, s->label, s->data_count, t->size);
    t->data = s->raw;
    return VEIL_RESULT_OK;
}

/* An external tensor keeps where its bytes are; whoever reads them (the sealer) opens the file. */
static VEIL_RESULT note_external(const struct tensor_scan *s, struct veil_onnx_tensor *t)
{
    t->location = malloc(s->ext_location.size + 1);
    VEIL_ENSURE(t->location != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(t->location, s->ext_location.data, s->ext_location.size);
    t->location[s->ext_location.size] = '\0';
    t->offset = s->ext_offset;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT fill_tensor(const struct tensor_scan *s, uint64_t size, struct veil_onnx_tensor *t)
{
    t->name = malloc(s->name_size + 1);
    VEIL_ENSURE(t->name != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(t->name, s->name, s->name_size);
    t->name[s->name_size] = '\0';
    t->dtype = (int32_t)s->dtype;
    t->rank = (uint32_t)s->rank;
    memcpy(t->dims, s->dims, sizeof t->dims);
    t->size = size;
    return VEIL_RESULT_OK;
}

/* ---- the parse phase ------------------------------------------------------------------------------------- */

enum walk_mode { WALK_SPLIT, WALK_SPLIT_EXTERNAL, WALK_TABLE };

struct name_ref {
    const uint8_t *p;
    size_t size;
};

struct walk {
    enum walk_mode mode;
    size_t initializers;                 /* seen so far */
    struct veil_onnx_tensor *tensors;    /* extracted ones */
    size_t count, cap;
    struct name_ref *names;              /* of every initializer */
    size_t name_count, name_cap;
};

static void walk_cleanup(struct walk *w)
{
    veil_onnx_tensors_free(w->tensors, w->count);
    free(w->names);
    *w = (struct walk){0};
}

/* Makes room for one more element in a growable array. */
static VEIL_RESULT grow(void **items, size_t *cap, size_t count, size_t item_size)
{
    if (count < *cap)
        return VEIL_RESULT_OK;
    size_t n = *cap < 16 ? 16 : *cap;
    VEIL_ENSURE(n <= SIZE_MAX / 2 / item_size, VEIL_ERR_LIMIT, "too many initializers");
    n *= 2;
    void *p = realloc(*items, n * item_size);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    *items = p;
    *cap = n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT walk_add_name(struct walk *w, const struct tensor_scan *s)
{
    void *items = w->names;
    struct veil_result r = grow(&items, &w->name_cap, w->name_count, sizeof *w->names);
    w->names = items;
    VEIL_GUARD(r);
    w->names[w->name_count++] = (struct name_ref){s->name, s->name_size};
    return VEIL_RESULT_OK;
}

/* Moves *t into the walk. */
static VEIL_RESULT walk_push(struct walk *w, struct veil_onnx_tensor *t)
{
    void *items = w->tensors;
    struct veil_result r = grow(&items, &w->cap, w->count, sizeof *w->tensors);
    w->tensors = items;
    VEIL_GUARD(r);
    w->tensors[w->count++] = *t;
    *t = (struct veil_onnx_tensor){0};
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_initializer(struct walk *w, struct veil_cursor body)
{
    struct tensor_scan s = {0};
    snprintf(s.what, sizeof s.what, "initializer #%zu", w->initializers++);
    VEIL_GUARD(scan_tensor(&s, body));
    uint64_t size = 0;
    VEIL_GUARD(check_tensor(&s, &size));
    VEIL_GUARD(walk_add_name(w, &s));
    if (s.dtype == VEIL_ONNX_STRING)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(w->mode != WALK_TABLE || (s.data_field == 0 && s.external == 0), VEIL_ERR_FORMAT,
                "initializer %s still has %s in the stripped graph", s.label,
                s.external > 0 ? "external data" : data_field_name(s.data_field));
    VEIL_ENSURE(w->mode != WALK_SPLIT || s.external == 0, VEIL_ERR_UNSUPPORTED, "tensor %s uses external data "
                "(its bytes are in a file beside the model); seal the model from its .onnx file so that its data "
                "files can be read (veil seal MODEL.onnx, veil.seal_onnx(path, ...))", s.label);
    VEIL_DEFER(tensor_cleanup) struct veil_onnx_tensor t = {0};
    VEIL_GUARD(fill_tensor(&s, size, &t));
    if (s.external > 0)
        VEIL_GUARD(note_external(&s, &t));
    else if (w->mode != WALK_TABLE)
        VEIL_GUARD(extract_data(&s, body, &t));
    return walk_push(w, &t);
}

static int name_compare(const void *a, const void *b)
{
    const struct name_ref *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->size < y->size ? x->size : y->size);
    if (c != 0)
        return c;
    return (x->size > y->size) - (x->size < y->size);
}

static VEIL_RESULT check_unique_names(struct walk *w)
{
    if (w->name_count < 2)
        return VEIL_RESULT_OK;
    qsort(w->names, w->name_count, sizeof *w->names, name_compare);
    for (size_t i = 1; i < w->name_count; i++) {
        const struct name_ref *n = &w->names[i];
        VEIL_ENSURE(name_compare(n - 1, n) != 0, VEIL_ERR_ONNX, "two initializers are named '%.*s'",
                    n->size > 64 ? 64 : (int)n->size, (const char *)n->p);
    }
    return VEIL_RESULT_OK;
}

static uint32_t graph_wires(uint32_t number)
{
    switch (number) {
    case 1: case 2: case 5: case 10: case 11: case 12: case 13: case 14: case 15: case 16: return W_LEN;
    default: return VEIL_PB_ANY_WIRE;
    }
}

static VEIL_RESULT parse_graph(struct walk *w, struct veil_cursor c)
{
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "GraphProto", &f));
        VEIL_GUARD(veil_pb_expect_wire(&f, graph_wires(f.number), "GraphProto"));
        VEIL_ENSURE(f.number != GRAPH_SPARSE_INITIALIZER, VEIL_ERR_UNSUPPORTED,
                    "the graph has a sparse_initializer; Veil does not support sparse initializers");
        if (f.number == GRAPH_INITIALIZER)
            VEIL_GUARD(parse_initializer(w, f.payload));
    }
    return check_unique_names(w);
}

static uint32_t model_wires(uint32_t number)
{
    switch (number) {
    case 1: case 5: return W_VARINT;
    case 2: case 3: case 4: case 6: case 7: case 8: case 14: case 20: case 25: case 26: return W_LEN;
    default: return VEIL_PB_ANY_WIRE;
    }
}

static VEIL_RESULT parse_model(struct walk *w, const uint8_t *model, size_t size)
{
    struct veil_cursor c = veil_cursor_make(model, size), graph = {0};
    struct veil_pb_field f;
    uint32_t ir_version = 0, opsets = 0, graphs = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "ModelProto", &f));
        VEIL_GUARD(veil_pb_expect_wire(&f, model_wires(f.number), "ModelProto"));
        ir_version |= f.number == MODEL_IR_VERSION;
        opsets |= f.number == MODEL_OPSET_IMPORT;
        if (f.number == MODEL_GRAPH && graphs++ == 0)
            graph = f.payload;
    }
    VEIL_ENSURE(ir_version, VEIL_ERR_ONNX, "not an ONNX model: ir_version missing");
    VEIL_ENSURE(opsets, VEIL_ERR_ONNX, "not an ONNX model: no opset_import");
    VEIL_ENSURE(graphs == 1, VEIL_ERR_ONNX, "not an ONNX model: graph field %s", graphs ? "repeated" : "missing");
    return parse_graph(w, graph);
}

static VEIL_RESULT check_input(const uint8_t *model, size_t size)
{
    VEIL_ENSURE(model != NULL || size == 0, VEIL_ERR_ARG, "no model given");
    VEIL_ENSURE(size <= VEIL_ONNX_MAX_MODEL_SIZE, VEIL_ERR_LIMIT, "the model is %zu bytes, more than the %"
                PRIu64 "-byte limit", size, (uint64_t)VEIL_ONNX_MAX_MODEL_SIZE);
    return VEIL_RESULT_OK;
}

/* ---- the write phase ------------------------------------------------------------------------------------- */

/* The data joined back, NULL when splitting. With a location, each tensor is written as a reference to its
 * offset in that file (ONNX external data) instead of as raw_data. */
struct joiner {
    const uint8_t *const *data;
    const uint64_t *sizes;
    size_t count;
    const char *location;
    const uint64_t *offsets;
};

static VEIL_RESULT append_entry(struct veil_buf *b, const char *key, const char *value)
{
    size_t k = strlen(key), v = strlen(value);
    uint64_t body = 0, kf = 0, vf = 0;
    VEIL_GUARD(veil_pb_len_field_size(1, k, &kf));
    VEIL_GUARD(veil_pb_len_field_size(2, v, &vf));
    VEIL_GUARD(veil_add_u64(kf, vf, &body));
    VEIL_GUARD(veil_pb_append_len_header(b, T_EXTERNAL_DATA, body));
    VEIL_GUARD(veil_pb_append_len(b, 1, key, k));
    return veil_pb_append_len(b, 2, value, v);
}

/* external_data {location, offset, length} and data_location = EXTERNAL, for the k-th tensor. */
static VEIL_RESULT external_fields(const struct joiner *j, size_t k, struct veil_buf *b)
{
    char offset[24], length[24];
    snprintf(offset, sizeof offset, "%" PRIu64, j->offsets[k]);
    snprintf(length, sizeof length, "%" PRIu64, j->sizes[k]);
    VEIL_GUARD(append_entry(b, "location", j->location));
    VEIL_GUARD(append_entry(b, "offset", offset));
    VEIL_GUARD(append_entry(b, "length", length));
    return veil_pb_append_varint_field(b, T_DATA_LOCATION, LOCATION_EXTERNAL);
}

struct writer {
    struct veil_buf *out;
    const struct joiner *j;
    size_t next;                         /* the next extracted initializer */
};

/* Whether an initializer (validated by the parse phase) is extracted, and the bytes of the fields it keeps. */
static VEIL_RESULT tensor_layout(struct veil_cursor body, int *extracted, uint64_t *kept)
{
    struct veil_pb_field f;
    uint64_t dtype = 0;
    *kept = 0;
    while (veil_cursor_left(&body) > 0) {
        VEIL_GUARD(veil_pb_next(&body, "TensorProto", &f));
        if (f.number == T_DATA_TYPE)
            dtype = f.value;
        if (!is_stripped_field(f.number))
            *kept += f.raw_size;
    }
    *extracted = dtype != VEIL_ONNX_STRING;
    return VEIL_RESULT_OK;
}

/* The payload size of the k-th extracted initializer as written. */
static VEIL_RESULT tensor_out_size(uint64_t kept, const struct joiner *j, size_t k, uint64_t *size)
{
    if (j == NULL) {
        *size = kept;
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(k < j->count, VEIL_ERR_FORMAT, "more extracted initializers than tensors");
    uint64_t raw = 0;
    if (j->location != NULL) {
        VEIL_DEFER(veil_buf_cleanup) struct veil_buf fields = {0};
        VEIL_GUARD(external_fields(j, k, &fields));
        raw = fields.size;
    } else {
        VEIL_GUARD(veil_pb_len_field_size(T_RAW_DATA, j->sizes[k], &raw));
    }
    return veil_add_u64(kept, raw, size);
}

/* The size of an initializer field as written; advances *k past an extracted one. */
static VEIL_RESULT initializer_out_size(const struct veil_pb_field *f, const struct joiner *j, size_t *k,
                                        uint64_t *size)
{
    int extracted = 0;
    uint64_t kept = 0, body = 0;
    VEIL_GUARD(tensor_layout(f->payload, &extracted, &kept));
    if (!extracted) {
        *size = f->raw_size;
        return VEIL_RESULT_OK;
    }
    VEIL_GUARD(tensor_out_size(kept, j, (*k)++, &body));
    return veil_pb_len_field_size(GRAPH_INITIALIZER, body, size);
}

static VEIL_RESULT graph_out_size(struct veil_cursor c, const struct joiner *j, size_t k, uint64_t *size)
{
    struct veil_pb_field f;
    *size = 0;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "GraphProto", &f));
        uint64_t n = f.raw_size;
        if (f.number == GRAPH_INITIALIZER)
            VEIL_GUARD(initializer_out_size(&f, j, &k, &n));
        VEIL_GUARD(veil_add_u64(*size, n, size));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT write_initializer(struct writer *w, const struct veil_pb_field *init)
{
    int extracted = 0;
    uint64_t kept = 0, body = 0;
    VEIL_GUARD(tensor_layout(init->payload, &extracted, &kept));
    if (!extracted)
        return veil_buf_append(w->out, init->raw, init->raw_size);
    VEIL_GUARD(tensor_out_size(kept, w->j, w->next, &body));
    VEIL_GUARD(veil_pb_append_len_header(w->out, GRAPH_INITIALIZER, body));
    struct veil_cursor c = init->payload;
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "TensorProto", &f));
        if (!is_stripped_field(f.number))
            VEIL_GUARD(veil_buf_append(w->out, f.raw, f.raw_size));
    }
    size_t k = w->next++;
    if (w->j == NULL)
        return VEIL_RESULT_OK;
    if (w->j->location != NULL)
        return external_fields(w->j, k, w->out);
    return veil_pb_append_len(w->out, T_RAW_DATA, w->j->data[k], (size_t)w->j->sizes[k]);
}

static VEIL_RESULT write_graph(struct writer *w, struct veil_cursor c)
{
    uint64_t size = 0;
    VEIL_GUARD(graph_out_size(c, w->j, w->next, &size));
    VEIL_GUARD(veil_pb_append_len_header(w->out, MODEL_GRAPH, size));
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "GraphProto", &f));
        if (f.number == GRAPH_INITIALIZER)
            VEIL_GUARD(write_initializer(w, &f));
        else
            VEIL_GUARD(veil_buf_append(w->out, f.raw, f.raw_size));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT write_model(struct writer *w, const uint8_t *model, size_t size)
{
    struct veil_cursor c = veil_cursor_make(model, size);
    struct veil_pb_field f;
    while (veil_cursor_left(&c) > 0) {
        VEIL_GUARD(veil_pb_next(&c, "ModelProto", &f));
        if (f.number == MODEL_GRAPH)
            VEIL_GUARD(write_graph(w, f.payload));
        else
            VEIL_GUARD(veil_buf_append(w->out, f.raw, f.raw_size));
    }
    VEIL_ENSURE(w->j == NULL || w->next == w->j->count, VEIL_ERR_FORMAT, "fewer extracted initializers than tensors");
    return VEIL_RESULT_OK;
}

/* ---- the three operations -------------------------------------------------------------------------------- */

static VEIL_RESULT split_impl(const uint8_t *model, size_t size, enum walk_mode mode, struct veil_onnx_split *out)
{
    VEIL_ENSURE(out != NULL, VEIL_ERR_ARG, "no output given");
    VEIL_GUARD(check_input(model, size));
    VEIL_DEFER(walk_cleanup) struct walk w = {.mode = mode};
    VEIL_GUARD(parse_model(&w, model, size));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf graph = {0};
    struct writer wr = {.out = &graph};
    VEIL_GUARD(write_model(&wr, model, size));
    out->graph = graph;
    graph = (struct veil_buf){0};
    out->tensors = w.tensors;
    out->tensor_count = w.count;
    w.tensors = NULL;
    w.count = 0;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_onnx_split(const uint8_t *model, size_t size, struct veil_onnx_split *out)
{
    return split_impl(model, size, WALK_SPLIT, out);
}

VEIL_RESULT veil_onnx_split_external(const uint8_t *model, size_t size, struct veil_onnx_split *out)
{
    return split_impl(model, size, WALK_SPLIT_EXTERNAL, out);
}

VEIL_RESULT veil_onnx_tensor_table(const uint8_t *graph, size_t size, struct veil_onnx_tensor **out,
                                   size_t *count)
{
    VEIL_ENSURE(out != NULL && count != NULL, VEIL_ERR_ARG, "no output given");
    VEIL_GUARD(check_input(graph, size));
    VEIL_DEFER(walk_cleanup) struct walk w = {.mode = WALK_TABLE};
    VEIL_GUARD(parse_model(&w, graph, size));
    *out = w.tensors;
    *count = w.count;
    w.tensors = NULL;
    w.count = 0;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_join_data(const struct walk *w, const struct joiner *j, uint64_t *total)
{
    VEIL_ENSURE(j->count == w->count, VEIL_ERR_FORMAT, "the graph has %zu extracted initializers, %zu tensors "
                "were given", w->count, j->count);
    *total = 0;
    for (size_t k = 0; k < j->count; k++) {
        const struct veil_onnx_tensor *t = &w->tensors[k];
        VEIL_ENSURE(j->sizes[k] == t->size, VEIL_ERR_FORMAT, "initializer '%s': tensor is %" PRIu64
                    " bytes, dims say %" PRIu64, t->name, j->sizes[k], t->size);
        VEIL_ENSURE(j->location != NULL || t->size == 0 || j->data[k] != NULL, VEIL_ERR_ARG,
                    "no data for initializer '%s'", t->name);
        VEIL_GUARD(veil_add_u64(*total, j->location != NULL ? 160 : t->size + 16, total));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT join_into(const uint8_t *graph, size_t size, const struct joiner *j, struct veil_buf *out)
{
    VEIL_DEFER(walk_cleanup) struct walk w = {.mode = WALK_TABLE};
    VEIL_GUARD(parse_model(&w, graph, size));
    uint64_t total = 0;  /* a close upper bound of the output, so a secret buffer is not copied as it grows */
    VEIL_GUARD(check_join_data(&w, j, &total));
    VEIL_GUARD(veil_add_u64(total, (uint64_t)size + 16, &total));
    VEIL_ENSURE(total <= SIZE_MAX, VEIL_ERR_LIMIT, "the joined model is too large");
    VEIL_GUARD(veil_buf_reserve(out, (size_t)total));
    struct writer wr = {.out = out, .j = j};
    return write_model(&wr, graph, size);
}

static VEIL_RESULT join_checked(const uint8_t *graph, size_t size, const struct joiner *jin, struct veil_buf *out)
{
    VEIL_ENSURE(out != NULL, VEIL_ERR_ARG, "no output given");
    VEIL_GUARD(check_input(graph, size));
    struct joiner j = *jin;
    size_t start = out->size;
    struct veil_result r = join_into(graph, size, &j, out);
    if (!veil_ok(r)) {
        if (out->size > start)
            veil_wipe(out->data + start, out->size - start);
        out->size = start;
    }
    return r;
}

VEIL_RESULT veil_onnx_join(const uint8_t *graph, size_t size, const uint8_t *const *data, const uint64_t *sizes,
                           size_t count, struct veil_buf *out)
{
    VEIL_ENSURE(count == 0 || (data != NULL && sizes != NULL), VEIL_ERR_ARG, "no tensors given");
    struct joiner j = {.data = data, .sizes = sizes, .count = count};
    return join_checked(graph, size, &j, out);
}

VEIL_RESULT veil_onnx_join_external(const uint8_t *graph, size_t size, const char *location,
                                    const uint64_t *offsets, const uint64_t *sizes, size_t count,
                                    struct veil_buf *out)
{
    VEIL_ENSURE(count == 0 || (offsets != NULL && sizes != NULL), VEIL_ERR_ARG, "no tensors given");
    VEIL_ENSURE(location != NULL && location[0] != '\0' && strchr(location, '/') == NULL &&
                strlen(location) < VEIL_ONNX_MAX_LOCATION_SIZE, VEIL_ERR_ARG,
                "the external data location must be a file name");
    struct joiner j = {.sizes = sizes, .count = count, .location = location, .offsets = offsets};
    return join_checked(graph, size, &j, out);
}
