/* SPDX-License-Identifier: Apache-2.0 */
/* KServe v2 inference request parser and response builder; see kserve.h for the choices made. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/cursor.h"
#include "core/json.h"
#include "onnx/onnx.h"
#include "serve/kserve.h"

#define SHAPE_TEXT_SIZE 160u /* "[d0,...,d5]" with six 20-digit dims */
#define FLOAT_TEXT_SIZE 32u
#define CLASS_TEXT_SIZE 96u  /* "%f" of -FLT_MAX is 46 characters, ":" and a 20-digit index */

/* ---- model description ---------------------------------------------------------------------------------- */

static int has_batch(const struct veil_serve_io *io)
{
    return io->rank > 0 && io->dims[0] == -1;
}

static int dynamic(const struct veil_serve_io *io, uint32_t d)
{
    return d > 0 && io->dims[d] == -1;
}

/* The wire datatype of an ONNX data type the codec carries, NULL for another. */
static const char *datatype_name(int32_t dtype)
{
    switch (dtype) {
    case 0:
    case VEIL_ONNX_FLOAT: return "FP32";
    case VEIL_ONNX_INT64: return "INT64";
    case VEIL_ONNX_INT32: return "INT32";
    case VEIL_ONNX_BOOL: return "BOOL";
    default: return NULL;
    }
}

static size_t datatype_size(int32_t dtype)
{
    return dtype == VEIL_ONNX_INT64 ? 8u : dtype == VEIL_ONNX_BOOL ? 1u : 4u;
}

VEIL_RESULT veil_serve_io_count(const struct veil_serve_io *io, uint64_t batch, uint64_t *out)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < io->rank && d < VEIL_ENGINE_MAX_RANK; d++) {
        int64_t dim = io->dims[d];
        VEIL_ENSURE(dim >= 1 || (d == 0 && dim == -1), VEIL_ERR_ARG, "serve: '%.64s' has a bad dimension", io->name);
        VEIL_GUARD(veil_mul_u64(n, dim == -1 ? batch : (uint64_t)dim, &n));
    }
    *out = n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT shape_count(const struct veil_serve_shape *s, uint64_t *out)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < s->rank && d < VEIL_ENGINE_MAX_RANK; d++) {
        VEIL_ENSURE(s->dims[d] >= 1, VEIL_ERR_ARG, "serve: a shape has a bad dimension");
        VEIL_GUARD(veil_mul_u64(n, (uint64_t)s->dims[d], &n));
    }
    *out = n;
    return VEIL_RESULT_OK;
}

/* The largest element count of io: the batch at max_batch, every dynamic dim at max_dim. */
static VEIL_RESULT io_count_max(const struct veil_serve_io *io, uint64_t max_batch, uint64_t max_dim, uint64_t *out)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < io->rank && d < VEIL_ENGINE_MAX_RANK; d++) {
        int64_t dim = io->dims[d];
        VEIL_ENSURE(dim >= 1 || dim == -1, VEIL_ERR_ARG, "serve: '%.64s' has a bad dimension", io->name);
        VEIL_GUARD(veil_mul_u64(n, dim >= 1 ? (uint64_t)dim : d == 0 ? max_batch : max_dim, &n));
    }
    *out = n;
    return VEIL_RESULT_OK;
}

/* A name the JSON writer can carry: present, bounded, valid UTF-8. */
static VEIL_RESULT check_name(const char *name, const char *what)
{
    VEIL_ENSURE(name != NULL && name[0] != '\0', VEIL_ERR_ARG, "serve: %s without a name", what);
    VEIL_ENSURE(strlen(name) <= VEIL_SERVE_MAX_NAME_SIZE, VEIL_ERR_ARG, "serve: %s name is too long", what);
    json_t *s = json_string(name);
    json_decref(s);
    VEIL_ENSURE(s != NULL, VEIL_ERR_ARG, "serve: %s name is not UTF-8", what);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_io(const struct veil_serve_io *io, const struct veil_serve_model *m, int input)
{
    VEIL_GUARD(check_name(io->name, "an input or output"));
    VEIL_ENSURE(io->rank <= VEIL_ENGINE_MAX_RANK, VEIL_ERR_ARG, "serve: '%.64s' has too many dimensions", io->name);
    VEIL_ENSURE(datatype_name(io->dtype) != NULL && (input || datatype_size(io->dtype) == sizeof(float)),
                VEIL_ERR_ARG, "serve: '%.64s' has data type %d, which is not served", io->name, (int)io->dtype);
    uint64_t count = 0;
    VEIL_GUARD(io_count_max(io, m->max_batch, m->max_dim, &count));
    VEIL_ENSURE(count <= SIZE_MAX / sizeof(int64_t), VEIL_ERR_ARG, "serve: '%.64s' is too large", io->name);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_ios(const struct veil_serve_model *m, int input, int *batched, int *dynamic_dims)
{
    const struct veil_serve_io *ios = input ? m->inputs : m->outputs;
    size_t count = input ? m->input_count : m->output_count;
    size_t max = input ? VEIL_SERVE_MAX_INPUTS : VEIL_SERVE_MAX_OUTPUTS;
    VEIL_ENSURE(ios != NULL && count >= 1 && count <= max, VEIL_ERR_ARG, "serve: a model needs 1 to %zu inputs "
                "and outputs", max);
    for (size_t i = 0; i < count; i++) {
        VEIL_GUARD(check_io(&ios[i], m, input));
        for (size_t j = 0; j < i; j++)
            VEIL_ENSURE(strcmp(ios[i].name, ios[j].name) != 0, VEIL_ERR_ARG, "serve: '%.64s' appears twice",
                        ios[i].name);
        *batched |= has_batch(&ios[i]);
        for (uint32_t d = 1; d < ios[i].rank; d++)
            *dynamic_dims |= dynamic(&ios[i], d);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_serve_model_check(const struct veil_serve_model *model)
{
    VEIL_ENSURE(model != NULL, VEIL_ERR_ARG, "serve: no model");
    VEIL_GUARD(check_name(model->name, "a model"));
    if (model->version != NULL)
        VEIL_GUARD(check_name(model->version, "a model version"));
    int batched = 0, dynamic_dims = 0;
    VEIL_GUARD(check_ios(model, 1, &batched, &dynamic_dims));
    VEIL_GUARD(check_ios(model, 0, &batched, &dynamic_dims));
    VEIL_ENSURE(!batched || (model->max_batch >= 1 && model->max_batch <= VEIL_ENGINE_MAX_BATCH), VEIL_ERR_ARG,
                "serve: max_batch must be 1 to %u", VEIL_ENGINE_MAX_BATCH);
    VEIL_ENSURE(!dynamic_dims || (model->max_dim >= 1 && model->max_dim <= VEIL_SERVE_MAX_DIM), VEIL_ERR_ARG,
                "serve: max_dim must be 1 to %u", VEIL_SERVE_MAX_DIM);
    return VEIL_RESULT_OK;
}

/* "[1,3,224,224]" (a batch dim as -1) into out. */
static const char *shape_text(const int64_t *dims, uint32_t rank, char out[SHAPE_TEXT_SIZE])
{
    size_t n = 0;
    out[n++] = '[';
    for (uint32_t d = 0; d < rank && d < VEIL_ENGINE_MAX_RANK; d++)
        n += (size_t)snprintf(out + n, SHAPE_TEXT_SIZE - n, "%s%lld", d > 0 ? "," : "", (long long)dims[d]);
    snprintf(out + n, SHAPE_TEXT_SIZE - n, "]");
    return out;
}

/* ---- request: framing and JSON ---------------------------------------------------------------------------- */

struct parse {
    const struct veil_serve_model *model;
    const struct veil_serve_shaping *shaping;
    struct veil_serve_request *req;
    struct veil_cursor tail;   /* the binary tail after the JSON header */
    const char *batch_from;    /* the input that fixed req->batch, NULL until one did */
};

/* Inference-Header-Content-Length: decimal digits with optional surrounding blanks. */
static VEIL_RESULT parse_ihcl(const char *text, uint64_t *out)
{
    const char *s = text, *e = text + strlen(text);
    while (*s == ' ' || *s == '\t')
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    VEIL_ENSURE(e > s, VEIL_ERR_ARG, "Inference-Header-Content-Length is empty");
    uint64_t v = 0;
    for (const char *p = s; p < e; p++) {
        VEIL_ENSURE(*p >= '0' && *p <= '9', VEIL_ERR_ARG, "Inference-Header-Content-Length is not a decimal number");
        VEIL_ENSURE(!__builtin_mul_overflow(v, 10, &v) && !__builtin_add_overflow(v, (uint64_t)(*p - '0'), &v),
                    VEIL_ERR_ARG, "Inference-Header-Content-Length is too large");
    }
    *out = v;
    return VEIL_RESULT_OK;
}

/* §4.4: how many leading body bytes are JSON. */
static VEIL_RESULT frame(size_t body_size, const char *ihcl, size_t *json_size)
{
    VEIL_ENSURE(body_size > 0, VEIL_ERR_ARG, "empty request body: expected a JSON inference request");
    if (ihcl == NULL) {
        VEIL_ENSURE(body_size <= VEIL_SERVE_MAX_JSON_SIZE, VEIL_ERR_ARG, "the JSON request (%zu bytes) is larger "
                    "than %u bytes; send tensors as binary data", body_size, VEIL_SERVE_MAX_JSON_SIZE);
        *json_size = body_size;
        return VEIL_RESULT_OK;
    }
    uint64_t n = 0;
    VEIL_GUARD(parse_ihcl(ihcl, &n));
    VEIL_ENSURE(n != 0, VEIL_ERR_UNSUPPORTED, "raw binary requests (Inference-Header-Content-Length: 0) are not "
                "supported; send a JSON header first");
    VEIL_ENSURE(n <= body_size, VEIL_ERR_ARG, "inference header size %llu should be in range (0, %zu]",
                (unsigned long long)n, body_size);
    VEIL_ENSURE(n <= VEIL_SERVE_MAX_JSON_SIZE, VEIL_ERR_ARG, "the JSON header (%llu bytes) is larger than %u bytes",
                (unsigned long long)n, VEIL_SERVE_MAX_JSON_SIZE);
    *json_size = (size_t)n;
    return VEIL_RESULT_OK;
}

/* Case-insensitive "nan" or "inf" at s[i]: only a non-finite number spells these outside a JSON string. */
static int non_finite_at(const uint8_t *s, size_t n, size_t i)
{
    if (n - i < 3)
        return 0;
    char w[4] = {(char)(s[i] | 0x20), (char)(s[i + 1] | 0x20), (char)(s[i + 2] | 0x20), '\0'};
    return strcmp(w, "nan") == 0 || strcmp(w, "inf") == 0;
}

/* Before jansson builds anything: nesting depth, an upper bound on the number of values, NaN/Infinity. */
static VEIL_RESULT prescan(const uint8_t *s, size_t n)
{
    uint32_t depth = 0;
    size_t values = 1;
    int in_string = 0, escaped = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_string) {
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"')
            in_string = 1;
        else if (c == '[' || c == '{')
            VEIL_ENSURE(++depth <= VEIL_SERVE_MAX_DEPTH, VEIL_ERR_ARG, "the request JSON is nested deeper than %u "
                        "levels", VEIL_SERVE_MAX_DEPTH);
        else if ((c == ']' || c == '}') && depth > 0)
            depth--;
        else if ((c | 0x20) == 'n' || (c | 0x20) == 'i')
            VEIL_ENSURE(!non_finite_at(s, n, i), VEIL_ERR_ARG, "the request JSON holds NaN or Infinity, which "
                        "are not JSON numbers; the engine accepts only finite numbers");
        if (c == ',' || c == '[' || c == '{')
            VEIL_ENSURE(++values <= VEIL_SERVE_MAX_JSON_VALUES, VEIL_ERR_ARG, "the request JSON holds more than %u "
                        "values; send tensors as binary data", VEIL_SERVE_MAX_JSON_VALUES);
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT load_json(const uint8_t *s, size_t n, json_t **out)
{
    json_error_t e;
    json_t *j = json_loadb((const char *)s, n, JSON_REJECT_DUPLICATES, &e);
    VEIL_ENSURE(j != NULL, VEIL_ERR_ARG, "failed to parse the request JSON: %s (line %d, column %d)", e.text, e.line,
                e.column);
    if (!json_is_object(j)) {
        json_decref(j);
        VEIL_BAIL(VEIL_ERR_ARG, "the request JSON must be an object");
    }
    *out = j;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_id(struct parse *p, const json_t *root)
{
    const json_t *id = json_object_get(root, "id");
    if (id == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_string(id), VEIL_ERR_ARG, "the request 'id' must be a string");
    size_t len = json_string_length(id);
    VEIL_ENSURE(len <= VEIL_SERVE_MAX_ID_SIZE, VEIL_ERR_ARG, "the request 'id' is longer than %u bytes",
                VEIL_SERVE_MAX_ID_SIZE);
    memcpy(p->req->id, json_string_value(id), len + 1); /* jansson refuses "\u0000" without JSON_ALLOW_NUL */
    p->req->has_id = 1;
    return VEIL_RESULT_OK;
}

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Request-level "parameters" (§2.6): see kserve.h for what is honoured, refused and ignored. */
static VEIL_RESULT parse_request_parameters(struct parse *p, const json_t *root, int *default_binary)
{
    json_t *params = json_object_get(root, "parameters");
    if (params == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(params), VEIL_ERR_ARG, "the request 'parameters' must be an object");
    const char *key;
    json_t *value;
    json_object_foreach(params, key, value) {
        if (strcmp(key, "binary_data_output") == 0) {
            VEIL_ENSURE(json_is_boolean(value), VEIL_ERR_ARG, "parameter 'binary_data_output' must be a boolean");
            *default_binary = json_is_true(value);
        }
        VEIL_ENSURE(!has_prefix(key, "triton_"), VEIL_ERR_ARG, "parameter keys starting with 'triton_' are reserved "
                    "for Triton internal use");
        VEIL_ENSURE(!has_prefix(key, "veil_"), VEIL_ERR_ARG, "parameter keys starting with 'veil_' are reserved");
        VEIL_ENSURE(strcmp(key, "sequence_id") != 0 && strcmp(key, "sequence_start") != 0 &&
                        strcmp(key, "sequence_end") != 0,
                    VEIL_ERR_ARG, "model '%s' is not a sequence model; parameter '%s' is not supported",
                    p->model->name, key);
    }
    return VEIL_RESULT_OK;
}

/* ---- request: inputs -------------------------------------------------------------------------------------- */

static const char *string_member(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static VEIL_RESULT find_io(const struct veil_serve_io *ios, size_t count, const char *name, uint32_t *out)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(ios[i].name, name) == 0) {
            *out = (uint32_t)i;
            return VEIL_RESULT_OK;
        }
    return (struct veil_result){VEIL_ERR_ARG};
}

/* The client's "shape": non-negative integers, rank at most VEIL_ENGINE_MAX_RANK, element count without overflow. */
static VEIL_RESULT parse_shape(const json_t *in, const char *name, int64_t dims[VEIL_ENGINE_MAX_RANK],
                               uint32_t *rank, uint64_t *count)
{
    const json_t *shape = json_object_get(in, "shape");
    VEIL_ENSURE(json_is_array(shape), VEIL_ERR_ARG, "input '%.64s' has no 'shape' array", name);
    size_t r = json_array_size(shape);
    VEIL_ENSURE(r <= VEIL_ENGINE_MAX_RANK, VEIL_ERR_ARG, "input '%.64s' has %zu dimensions, more than any model "
                "takes (%u)", name, r, VEIL_ENGINE_MAX_RANK);
    uint64_t n = 1;
    for (size_t d = 0; d < r; d++) {
        const json_t *v = json_array_get(shape, d);
        VEIL_ENSURE(json_is_integer(v) && json_integer_value(v) >= 0, VEIL_ERR_ARG, "the shape of input '%.64s' "
                    "must hold non-negative integers", name);
        dims[d] = (int64_t)json_integer_value(v);
        VEIL_ENSURE(!__builtin_mul_overflow(n, (uint64_t)dims[d], &n), VEIL_ERR_ARG, "the shape of input '%.64s' "
                    "has too many elements", name);
    }
    *rank = (uint32_t)r;
    *count = n;
    return VEIL_RESULT_OK;
}

/* The client's shape against the model's: same rank, same fixed dims, a batch within 1..max_batch that every
 * batched input agrees on, no empty tensor. */
static VEIL_RESULT match_shape(struct parse *p, const struct veil_serve_io *io, const int64_t *dims, uint32_t rank,
                               uint64_t count)
{
    char got[SHAPE_TEXT_SIZE], want[SHAPE_TEXT_SIZE];
    VEIL_ENSURE(count > 0, VEIL_ERR_ARG, "input '%s' is empty (shape %s); the engine refuses empty tensors", io->name,
                shape_text(dims, rank, got));
    int same = rank == io->rank;
    for (uint32_t d = 0; same && d < rank; d++)
        same = dims[d] == io->dims[d] || (d == 0 && has_batch(io)) || dynamic(io, d);
    VEIL_ENSURE(same, VEIL_ERR_ARG, "unexpected shape for input '%s' for model '%s'. Expected %s, got %s", io->name,
                p->model->name, shape_text(io->dims, io->rank, want), shape_text(dims, rank, got));
    for (uint32_t d = 1; d < rank; d++)
        VEIL_ENSURE(!dynamic(io, d) || (uint64_t)dims[d] <= p->model->max_dim, VEIL_ERR_ARG, "dim %u of input '%s' is "
                    "%lld; model '%s' takes at most %llu there", d, io->name, (long long)dims[d], p->model->name,
                    (unsigned long long)p->model->max_dim);
    if (!has_batch(io))
        return VEIL_RESULT_OK;
    uint64_t batch = (uint64_t)dims[0];
    VEIL_ENSURE(batch <= p->model->max_batch, VEIL_ERR_ARG, "inference request batch-size must be <= %llu for '%s' "
                "(input '%s' has batch %llu)", (unsigned long long)p->model->max_batch, p->model->name, io->name,
                (unsigned long long)batch);
    VEIL_ENSURE(p->batch_from == NULL || p->req->batch == batch, VEIL_ERR_ARG, "inputs '%s' and '%s' disagree on the "
                "batch size (%llu and %llu)", p->batch_from, io->name, (unsigned long long)p->req->batch,
                (unsigned long long)batch);
    p->batch_from = io->name;
    p->req->batch = batch;
    return VEIL_RESULT_OK;
}

static float load_f32le(const uint8_t *b)
{
    uint32_t u = veil_load_u32le(b);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Binary input (§4.1): binary_data_size must be exactly count values of the input's type, and the tail must hold
 * them. */
static VEIL_RESULT binary_bytes(struct parse *p, const struct veil_serve_io *io, const json_t *size_value,
                                uint64_t count, const uint8_t **out)
{
    VEIL_ENSURE(json_is_integer(size_value) && json_integer_value(size_value) >= 0, VEIL_ERR_ARG,
                "'binary_data_size' of input '%s' must be a non-negative integer", io->name);
    uint64_t size = (uint64_t)json_integer_value(size_value), want = count * datatype_size(io->dtype);
    VEIL_ENSURE(size == want, VEIL_ERR_ARG, "input byte size mismatch for input '%s' for model '%s'. Expected %llu, "
                "got %llu", io->name, p->model->name, (unsigned long long)want, (unsigned long long)size);
    VEIL_ENSURE(veil_ok(veil_cursor_bytes(&p->tail, (size_t)size, out)), VEIL_ERR_ARG, "unexpected size for input "
                "'%s', expecting %llu additional bytes for model '%s'", io->name, (unsigned long long)size,
                p->model->name);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT int_check(const struct veil_serve_io *io, int64_t v, uint64_t i)
{
    VEIL_ENSURE(v >= -VEIL_SERVE_MAX_INT && v <= VEIL_SERVE_MAX_INT, VEIL_ERR_ARG, "element %llu of input '%s' (%lld) "
                "is outside +-%d, the range the engine computes integers exactly in", (unsigned long long)i, io->name,
                (long long)v, VEIL_SERVE_MAX_INT);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT decode_element(const struct veil_serve_io *io, const uint8_t *b, uint64_t i, void *dst)
{
    switch (io->dtype) {
    case VEIL_ONNX_INT64: {
        int64_t v = (int64_t)veil_load_u64le(b + 8 * i);
        VEIL_GUARD(int_check(io, v, i));
        ((int64_t *)dst)[i] = v;
        return VEIL_RESULT_OK;
    }
    case VEIL_ONNX_INT32: {
        int32_t v = (int32_t)veil_load_u32le(b + 4 * i);
        VEIL_GUARD(int_check(io, v, i));
        ((int32_t *)dst)[i] = v;
        return VEIL_RESULT_OK;
    }
    case VEIL_ONNX_BOOL:
        VEIL_ENSURE(b[i] <= 1, VEIL_ERR_ARG, "element %llu of BOOL input '%s' is the byte %u, not 0 or 1",
                    (unsigned long long)i, io->name, b[i]);
        ((uint8_t *)dst)[i] = b[i];
        return VEIL_RESULT_OK;
    default: {
        float f = load_f32le(b + 4 * i);
        VEIL_ENSURE(isfinite(f), VEIL_ERR_ARG, "input '%s' holds a NaN or an infinity (element %llu); the engine "
                    "accepts only finite numbers", io->name, (unsigned long long)i);
        ((float *)dst)[i] = f;
        return VEIL_RESULT_OK;
    }
    }
}

static VEIL_RESULT decode_binary(const struct veil_serve_io *io, const uint8_t *bytes, uint64_t count, void *dst)
{
    for (uint64_t i = 0; i < count; i++)
        VEIL_GUARD(decode_element(io, bytes, i, dst));
    return VEIL_RESULT_OK;
}

/* Leaves of JSON "data" (nesting bounded by prescan), counted before anything is allocated for them. */
static uint64_t leaf_count(const json_t *v)
{
    if (!json_is_array(v))
        return 1;
    uint64_t n = 0;
    for (size_t i = 0; i < json_array_size(v); i++)
        n += leaf_count(json_array_get(v, i));
    return n;
}

static VEIL_RESULT json_data_check(const struct veil_serve_io *io, const json_t *data, uint64_t count)
{
    VEIL_ENSURE(json_is_array(data), VEIL_ERR_ARG, "the 'data' of input '%s' must be an array", io->name);
    uint64_t n = leaf_count(data);
    VEIL_ENSURE(n == count, VEIL_ERR_ARG, "input '%s' has %llu data elements, but its shape holds %llu", io->name,
                (unsigned long long)n, (unsigned long long)count);
    return VEIL_RESULT_OK;
}

/* One JSON leaf of an input into dst[i], by the input's data type. */
static VEIL_RESULT json_element(const struct veil_serve_io *io, const json_t *v, uint64_t i, void *dst)
{
    switch (io->dtype) {
    case VEIL_ONNX_INT64:
    case VEIL_ONNX_INT32:
        VEIL_ENSURE(json_is_integer(v), VEIL_ERR_ARG, "the data of %s input '%s' must hold only integers",
                    datatype_name(io->dtype), io->name);
        VEIL_GUARD(int_check(io, json_integer_value(v), i));
        if (io->dtype == VEIL_ONNX_INT64)
            ((int64_t *)dst)[i] = json_integer_value(v);
        else
            ((int32_t *)dst)[i] = (int32_t)json_integer_value(v);
        return VEIL_RESULT_OK;
    case VEIL_ONNX_BOOL:
        VEIL_ENSURE(json_is_boolean(v), VEIL_ERR_ARG, "the data of BOOL input '%s' must hold only true and false",
                    io->name);
        ((uint8_t *)dst)[i] = json_is_true(v) ? 1 : 0;
        return VEIL_RESULT_OK;
    default: {
        VEIL_ENSURE(json_is_number(v), VEIL_ERR_ARG, "the data of input '%s' must hold only numbers", io->name);
        double d = json_number_value(v);
        VEIL_ENSURE(fabs(d) <= FLT_MAX, VEIL_ERR_ARG, "element %llu of input '%s' (%g) is outside the float32 range; "
                    "the engine accepts only finite numbers", (unsigned long long)i, io->name, d);
        ((float *)dst)[i] = (float)d;
        return VEIL_RESULT_OK;
    }
    }
}

/* JSON "data", flat or nested, flattened depth-first (C order) into dst[0..count). */
static VEIL_RESULT flatten(const json_t *v, const struct veil_serve_io *io, void *dst, uint64_t count, uint64_t *n)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            VEIL_GUARD(flatten(json_array_get(v, i), io, dst, count, n));
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(*n < count, VEIL_ERR_INTERNAL, "serve: data count changed");
    VEIL_GUARD(json_element(io, v, *n, dst));
    (*n)++;
    return VEIL_RESULT_OK;
}

/* A zeroed, 64-byte aligned buffer of size bytes (the size rounded up to 64 for aligned_alloc). */
static VEIL_RESULT alloc_input(uint64_t size, float **out)
{
    uint64_t rounded = 0;
    VEIL_GUARD(veil_align64_u64(size, &rounded));
    VEIL_ENSURE(rounded <= SIZE_MAX, VEIL_ERR_ARG, "input too large");
    *out = aligned_alloc(64, (size_t)rounded);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    memset(*out, 0, (size_t)rounded);
    return VEIL_RESULT_OK;
}

/* Triton: exactly one of data, binary_data_size, shared_memory_region. */
static VEIL_RESULT input_source(const json_t *in, const char *name, const json_t **data, const json_t **binary_size)
{
    const json_t *params = json_object_get(in, "parameters");
    VEIL_ENSURE(params == NULL || json_is_object(params), VEIL_ERR_ARG, "the 'parameters' of input '%s' must be an "
                "object", name);
    const json_t *shm = json_object_get(params, "shared_memory_region");
    *data = json_object_get(in, "data");
    *binary_size = json_object_get(params, "binary_data_size");
    int sources = (*data != NULL) + (*binary_size != NULL) + (shm != NULL);
    VEIL_ENSURE(sources == 1, VEIL_ERR_ARG, "Input must set only one of the following fields: 'data', "
                "'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But input '%s' sets %s",
                name, sources == 0 ? "none" : "several");
    VEIL_ENSURE(shm == NULL, VEIL_ERR_ARG, "input '%s': shared memory is not supported; send 'data' or binary data",
                name);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_input(struct parse *p, const json_t *in)
{
    VEIL_ENSURE(json_is_object(in), VEIL_ERR_ARG, "each request input must be an object");
    const char *name = string_member(in, "name");
    VEIL_ENSURE(name != NULL, VEIL_ERR_ARG, "a request input has no 'name' string");
    uint32_t idx = 0;
    VEIL_ENSURE(veil_ok(find_io(p->model->inputs, p->model->input_count, name, &idx)), VEIL_ERR_ARG,
                "unexpected inference input '%.64s' for model '%s'", name, p->model->name);
    const struct veil_serve_io *io = &p->model->inputs[idx];
    VEIL_ENSURE(p->req->inputs[idx] == NULL, VEIL_ERR_ARG, "input '%s' already exists in request", io->name);
    const char *datatype = string_member(in, "datatype");
    VEIL_ENSURE(datatype != NULL, VEIL_ERR_ARG, "input '%s' has no 'datatype' string", io->name);
    VEIL_ENSURE(strcmp(datatype, datatype_name(io->dtype)) == 0, VEIL_ERR_ARG, "input '%s' takes %s, not %.32s",
                io->name, datatype_name(io->dtype), datatype);
    int64_t dims[VEIL_ENGINE_MAX_RANK];
    uint32_t rank = 0;
    uint64_t count = 0;
    VEIL_GUARD(parse_shape(in, io->name, dims, &rank, &count));
    VEIL_GUARD(match_shape(p, io, dims, rank, count));
    p->req->input_shapes[idx].rank = rank;
    memcpy(p->req->input_shapes[idx].dims, dims, rank * sizeof dims[0]);
    const json_t *data = NULL, *binary_size = NULL;
    VEIL_GUARD(input_source(in, io->name, &data, &binary_size));
    const uint8_t *bytes = NULL; /* sizes are checked before anything is allocated */
    if (binary_size != NULL)
        VEIL_GUARD(binary_bytes(p, io, binary_size, count, &bytes));
    else
        VEIL_GUARD(json_data_check(io, data, count));
    uint64_t size = count * datatype_size(io->dtype);
    VEIL_GUARD(alloc_input(size, &p->req->inputs[idx])); /* req owns it: cleanup frees it */
    p->req->input_sizes[idx] = (size_t)size;
    if (bytes != NULL)
        return decode_binary(io, bytes, count, p->req->inputs[idx]);
    uint64_t n = 0;
    return flatten(data, io, p->req->inputs[idx], count, &n);
}

static VEIL_RESULT parse_inputs(struct parse *p, const json_t *inputs)
{
    VEIL_ENSURE(json_is_array(inputs), VEIL_ERR_ARG, "the request has no 'inputs' array");
    for (size_t i = 0; i < json_array_size(inputs); i++)
        VEIL_GUARD(parse_input(p, json_array_get(inputs, i)));
    const struct veil_serve_model *m = p->model;
    for (size_t i = 0; i < m->input_count; i++)
        VEIL_ENSURE(p->req->inputs[i] != NULL, VEIL_ERR_ARG, "expected %zu inputs but got %zu inputs for model '%s'; "
                    "missing input '%s'", m->input_count, json_array_size(inputs), m->name, m->inputs[i].name);
    p->req->input_count = m->input_count;
    VEIL_ENSURE(veil_cursor_left(&p->tail) == 0, VEIL_ERR_ARG, "unexpected additional input data for model '%s'",
                m->name);
    return VEIL_RESULT_OK;
}

/* ---- request: outputs ------------------------------------------------------------------------------------- */

/* One requested output, shaped by the usage policy (§7 (a), (b)). */
static VEIL_RESULT add_output(struct parse *p, uint32_t idx, int binary, uint32_t top_k)
{
    const struct veil_serve_shaping *s = p->shaping;
    const char *name = p->model->outputs[idx].name;
    VEIL_ENSURE(top_k > 0 || s == NULL || !s->classification_only, VEIL_ERR_ARG, "output '%s' is only available as "
                "classification (top-k); set parameters.classification", name);
    if (top_k > 0 && s != NULL && s->max_top_k > 0 && top_k > s->max_top_k) {
        top_k = s->max_top_k;
        p->req->top_k_clamped = s->max_top_k;
    }
    struct veil_serve_request *r = p->req;
    VEIL_ENSURE(r->output_count < VEIL_SERVE_MAX_OUTPUTS, VEIL_ERR_INTERNAL, "too many outputs");
    r->outputs[r->output_count++] = (struct veil_serve_output_req){.index = idx, .binary = binary, .top_k = top_k};
    return VEIL_RESULT_OK;
}

static VEIL_RESULT output_parameters(const json_t *o, const char *name, int *binary, uint32_t *top_k)
{
    const json_t *params = json_object_get(o, "parameters");
    if (params == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(params), VEIL_ERR_ARG, "the 'parameters' of output '%s' must be an object", name);
    VEIL_ENSURE(json_object_get(params, "shared_memory_region") == NULL, VEIL_ERR_ARG, "output '%s': shared memory "
                "is not supported", name);
    const json_t *b = json_object_get(params, "binary_data");
    VEIL_ENSURE(b == NULL || json_is_boolean(b), VEIL_ERR_ARG, "'binary_data' of output '%s' must be a boolean", name);
    *binary = json_is_true(b);
    const json_t *k = json_object_get(params, "classification");
    if (k == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_integer(k) && json_integer_value(k) >= 1 && json_integer_value(k) <= VEIL_SERVE_MAX_TOP_K,
                VEIL_ERR_ARG, "'classification' of output '%s' must be an integer from 1 to %u", name,
                VEIL_SERVE_MAX_TOP_K);
    *top_k = (uint32_t)json_integer_value(k);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_output(struct parse *p, const json_t *o)
{
    VEIL_ENSURE(json_is_object(o), VEIL_ERR_ARG, "each requested output must be an object");
    const char *name = string_member(o, "name");
    VEIL_ENSURE(name != NULL, VEIL_ERR_ARG, "a requested output has no 'name' string");
    uint32_t idx = 0;
    VEIL_ENSURE(veil_ok(find_io(p->model->outputs, p->model->output_count, name, &idx)), VEIL_ERR_ARG,
                "unexpected inference output '%.64s' for model '%s'", name, p->model->name);
    for (size_t i = 0; i < p->req->output_count; i++)
        VEIL_ENSURE(p->req->outputs[i].index != idx, VEIL_ERR_ARG, "output '%s' is requested more than once",
                    p->model->outputs[idx].name);
    int binary = 0; /* Triton: a listed output without binary_data is JSON, whatever binary_data_output says */
    uint32_t top_k = 0;
    VEIL_GUARD(output_parameters(o, p->model->outputs[idx].name, &binary, &top_k));
    return add_output(p, idx, binary, top_k);
}

static VEIL_RESULT parse_outputs(struct parse *p, const json_t *outputs, int default_binary)
{
    if (outputs == NULL || (json_is_array(outputs) && json_array_size(outputs) == 0)) {
        for (uint32_t i = 0; i < p->model->output_count; i++)
            VEIL_GUARD(add_output(p, i, default_binary, 0));
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(json_is_array(outputs), VEIL_ERR_ARG, "the request 'outputs' must be an array");
    for (size_t i = 0; i < json_array_size(outputs); i++)
        VEIL_GUARD(parse_output(p, json_array_get(outputs, i)));
    return VEIL_RESULT_OK;
}

/* ---- request: the whole body ------------------------------------------------------------------------------ */

static VEIL_RESULT parse_body(struct parse *p, const uint8_t *body, size_t body_size, const char *ihcl)
{
    size_t json_size = 0;
    VEIL_GUARD(frame(body_size, ihcl, &json_size));
    VEIL_ENSURE(body != NULL, VEIL_ERR_INTERNAL, "no body");
    VEIL_GUARD(prescan(body, json_size));
    VEIL_DEFER(veil_json_done) json_t *root = NULL;
    VEIL_GUARD(load_json(body, json_size, &root));
    p->tail = veil_cursor_make(body + json_size, body_size - json_size);
    VEIL_GUARD(parse_id(p, root));
    int default_binary = 0;
    VEIL_GUARD(parse_request_parameters(p, root, &default_binary));
    VEIL_GUARD(parse_inputs(p, json_object_get(root, "inputs")));
    return parse_outputs(p, json_object_get(root, "outputs"), default_binary);
}

/* Failures: VEIL_ERR_LIMIT for an oversized body (413), VEIL_ERR_INTERNAL / VEIL_ERR_NOMEM (500), others (400). */
static VEIL_RESULT parse_request(struct parse *p, const uint8_t *body, size_t body_size, const char *ihcl)
{
    VEIL_ENSURE(veil_ok(veil_serve_model_check(p->model)), VEIL_ERR_INTERNAL, "the served model is misdescribed");
    VEIL_ENSURE(body_size <= VEIL_SERVE_MAX_REQUEST_SIZE, VEIL_ERR_LIMIT, "the request body (%zu bytes) is larger "
                "than %u bytes", body_size, VEIL_SERVE_MAX_REQUEST_SIZE);
    struct veil_result r = parse_body(p, body, body_size, ihcl);
    if (r.status == VEIL_ERR_LIMIT) /* an overflow deep inside is a bad request, not a large body */
        r.status = VEIL_ERR_ARG;
    return r;
}

/* The message for the client: printable ASCII only (jansson's error text quotes input bytes). */
static void copy_message(const char *text, char *msg, size_t msg_size)
{
    if (msg == NULL || msg_size == 0)
        return;
    size_t n = 0;
    for (; text[n] != '\0' && n + 1 < msg_size; n++)
        msg[n] = text[n] >= 0x20 && text[n] <= 0x7e ? text[n] : '?';
    msg[n] = '\0';
}

VEIL_RESULT veil_serve_request_parse(const struct veil_serve_model *model, const uint8_t *body, size_t body_size,
                                     const char *ihcl, const struct veil_serve_shaping *shaping,
                                     struct veil_serve_request *req, int *http_status, char *msg, size_t msg_size)
{
    memset(req, 0, sizeof *req);
    req->batch = 1;
    struct parse p = {.model = model, .shaping = shaping, .req = req};
    struct veil_result r = parse_request(&p, body, body_size, ihcl);
    if (veil_ok(r)) {
        *http_status = 200;
        copy_message("", msg, msg_size);
        return r;
    }
    veil_serve_request_cleanup(req);
    copy_message(r.status == VEIL_ERR_NOMEM ? "out of memory" : veil_last_error(), msg, msg_size);
    if (r.status == VEIL_ERR_NOMEM || r.status == VEIL_ERR_INTERNAL) {
        *http_status = 500;
        return r;
    }
    *http_status = r.status == VEIL_ERR_LIMIT ? 413 : 400;
    return (struct veil_result){VEIL_ERR_ARG};
}

void veil_serve_request_cleanup(struct veil_serve_request *req)
{
    if (req == NULL)
        return;
    for (size_t i = 0; i < VEIL_SERVE_MAX_INPUTS; i++)
        free(req->inputs[i]);
    memset(req, 0, sizeof *req);
}

/* ---- response --------------------------------------------------------------------------------------------- */

struct build {
    const struct veil_serve_model *model;
    const struct veil_serve_request *req;
    const float *const *outputs;
    int decimals;                                /* -1: no rounding */
    struct veil_buf cls[VEIL_SERVE_MAX_OUTPUTS]; /* classification outputs, BYTES layout (u32le length, text) */
    uint64_t cls_count[VEIL_SERVE_MAX_OUTPUTS];  /* their element count */
};

static void build_done(struct build *b)
{
    for (size_t i = 0; i < VEIL_SERVE_MAX_OUTPUTS; i++)
        veil_buf_cleanup(&b->cls[i]);
}

static VEIL_RESULT put(struct veil_buf *b, const char *s)
{
    return veil_buf_append(b, s, strlen(s));
}

static VEIL_RESULT putf(struct veil_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static VEIL_RESULT putf(struct veil_buf *b, const char *fmt, ...)
{
    char text[CLASS_TEXT_SIZE];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    VEIL_ENSURE(n >= 0 && (size_t)n < sizeof text, VEIL_ERR_INTERNAL, "serve: formatting overflow");
    return veil_buf_append(b, text, (size_t)n);
}

/* A JSON string, ASCII-only (non-ASCII escaped as \uXXXX). */
static VEIL_RESULT put_string(struct veil_buf *b, const char *s)
{
    json_t *j = json_string(s);
    VEIL_ENSURE(j != NULL, VEIL_ERR_ARG, "serve: a name is not UTF-8");
    char *text = json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII | JSON_COMPACT);
    json_decref(j);
    VEIL_ENSURE(text != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = put(b, text);
    free(text);
    return r;
}

/* The policy's rounding (half away from zero); floats of 2^23 and more are integers already. */
static float shape_score(float v, int decimals)
{
    static const double scale[VEIL_SERVE_MAX_ROUND_DECIMALS + 1] = {1e0, 1e1, 1e2, 1e3, 1e4,
                                                                     1e5, 1e6, 1e7, 1e8, 1e9};
    if (decimals < 0 || decimals > VEIL_SERVE_MAX_ROUND_DECIMALS || !isfinite(v) || fabsf(v) >= 8388608.0f)
        return v;
    return (float)(round((double)v * scale[decimals]) / scale[decimals]);
}

/* The shortest "%.Ng" (N = 6..9) that reads back as the same float32; 9 digits always do. */
static VEIL_RESULT put_float(struct veil_buf *b, float v)
{
    char text[FLOAT_TEXT_SIZE];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)v);
        if (strtof(text, NULL) == v)
            break;
    }
    return put(b, text);
}

/* The shape of model output index as computed: the plan's, or the model's with the batch in place of -1. */
static void output_shape(const struct build *b, uint32_t index, struct veil_serve_shape *s)
{
    const struct veil_serve_io *io = &b->model->outputs[index];
    if (b->req->output_shapes_set) {
        *s = b->req->output_shapes[index];
        return;
    }
    s->rank = io->rank;
    memcpy(s->dims, io->dims, sizeof s->dims);
    if (has_batch(io))
        s->dims[0] = (int64_t)b->req->batch;
}

static VEIL_RESULT output_count(const struct build *b, uint32_t index, uint64_t *count)
{
    struct veil_serve_shape s;
    output_shape(b, index, &s);
    return shape_count(&s, count);
}

/* The shape of output io as returned: as computed, or [rows, k] for classification. */
static VEIL_RESULT put_shape(struct build *b, struct veil_buf *out, size_t j)
{
    const struct veil_serve_output_req *o = &b->req->outputs[j];
    const struct veil_serve_io *io = &b->model->outputs[o->index];
    struct veil_serve_shape s;
    output_shape(b, o->index, &s);
    int64_t *dims = s.dims;
    uint32_t rank = s.rank;
    if (o->top_k > 0) {
        uint64_t rows = has_batch(io) ? b->req->batch : 1;
        rank = has_batch(io) ? 2 : 1;
        dims[0] = (int64_t)rows;
        dims[rank - 1] = (int64_t)(b->cls_count[j] / rows);
    }
    char text[SHAPE_TEXT_SIZE];
    return put(out, shape_text(dims, rank, text));
}

/* Classification ranking (§7): by value descending, a NaN below every number, ties by lower index. */
static int ranks_above(const float *row, size_t a, size_t b)
{
    int na = isnan(row[a]), nb = isnan(row[b]);
    if (na != nb)
        return nb;
    if (!na && row[a] != row[b])
        return row[a] > row[b];
    return a < b;
}

/* heap[0..size) is a heap whose root ranks lowest. */
static void sift_down(const float *row, size_t *heap, size_t size, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < size && ranks_above(row, heap[m], heap[l]))
            m = l;
        if (r < size && ranks_above(row, heap[m], heap[r]))
            m = r;
        if (m == i)
            return;
        size_t t = heap[i];
        heap[i] = heap[m], heap[m] = t;
        i = m;
    }
}

static void sift_up(const float *row, size_t *heap, size_t i)
{
    while (i > 0 && ranks_above(row, heap[(i - 1) / 2], heap[i])) {
        size_t parent = (i - 1) / 2, t = heap[i];
        heap[i] = heap[parent], heap[parent] = t;
        i = parent;
    }
}

/* The indices of the k best elements of row[0..n), best first, into heap[0..k). */
static void top_k(const float *row, size_t n, size_t k, size_t *heap)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++) {
        if (size < k) {
            heap[size] = i;
            sift_up(row, heap, size++);
        } else if (ranks_above(row, i, heap[0])) {
            heap[0] = i;
            sift_down(row, heap, size, 0);
        }
    }
    for (size_t end = size; end > 1; end--) { /* pop the lowest to the back: best first */
        size_t t = heap[0];
        heap[0] = heap[end - 1], heap[end - 1] = t;
        sift_down(row, heap, end - 1, 0);
    }
}

/* Classification output j as BYTES elements "<value>:<index>" (Triton's "%f"), rows x min(K, n). */
static VEIL_RESULT classify(struct build *b, size_t j, const float *values, uint64_t count)
{
    const struct veil_serve_output_req *o = &b->req->outputs[j];
    uint64_t rows = has_batch(&b->model->outputs[o->index]) ? b->req->batch : 1, n = count / rows;
    size_t k = (size_t)(o->top_k < n ? o->top_k : n);
    size_t *heap = malloc(k * sizeof *heap);
    VEIL_ENSURE(heap != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = VEIL_RESULT_OK;
    for (uint64_t row = 0; row < rows && veil_ok(r); row++) {
        top_k(values + row * n, (size_t)n, k, heap);
        for (size_t i = 0; i < k && veil_ok(r); i++) {
            char text[CLASS_TEXT_SIZE];
            float v = shape_score(values[row * n + heap[i]], b->decimals);
            int len = snprintf(text, sizeof text, "%f:%zu", (double)v, heap[i]);
            r = veil_buf_append_u32le(&b->cls[j], (uint32_t)len);
            if (veil_ok(r))
                r = veil_buf_append(&b->cls[j], text, (size_t)len);
        }
    }
    free(heap);
    b->cls_count[j] = rows * k;
    return r;
}

/* "data":[...] of a raw output: shortest round-trip floats; JSON has no NaN or infinity. */
static VEIL_RESULT put_raw_data(struct build *b, struct veil_buf *out, const char *name, const float *values,
                                uint64_t count)
{
    VEIL_GUARD(put(out, ",\"data\":["));
    for (uint64_t i = 0; i < count; i++) {
        float v = shape_score(values[i], b->decimals);
        VEIL_ENSURE(isfinite(v), VEIL_ERR_ARG, "output '%s' holds a NaN or an infinity, which JSON cannot carry; "
                    "request it as binary data (parameters.binary_data)", name);
        if (i > 0)
            VEIL_GUARD(put(out, ","));
        VEIL_GUARD(put_float(out, v));
    }
    return put(out, "]");
}

/* "data":["0.912345:281",...] of a classification output, from its BYTES layout. */
static VEIL_RESULT put_class_data(struct veil_buf *out, const struct veil_buf *cls)
{
    VEIL_GUARD(put(out, ",\"data\":["));
    struct veil_cursor c = veil_cursor_make(cls->data, cls->size);
    for (size_t i = 0; veil_cursor_left(&c) > 0; i++) {
        uint32_t len = 0;
        const uint8_t *text = NULL;
        VEIL_GUARD(veil_cursor_u32le(&c, &len));
        VEIL_GUARD(veil_cursor_bytes(&c, len, &text));
        VEIL_GUARD(put(out, i > 0 ? ",\"" : "\""));
        VEIL_GUARD(veil_buf_append(out, text, len));
        VEIL_GUARD(put(out, "\""));
    }
    return put(out, "]");
}

static VEIL_RESULT put_output(struct build *b, struct veil_buf *out, size_t j)
{
    const struct veil_serve_output_req *o = &b->req->outputs[j];
    const struct veil_serve_io *io = &b->model->outputs[o->index];
    uint64_t count = 0;
    VEIL_GUARD(output_count(b, o->index, &count));
    VEIL_GUARD(put(out, j > 0 ? ",{\"name\":" : "{\"name\":"));
    VEIL_GUARD(put_string(out, io->name));
    VEIL_GUARD(put(out, o->top_k > 0 ? ",\"datatype\":\"BYTES\",\"shape\":" : ",\"datatype\":\"FP32\",\"shape\":"));
    VEIL_GUARD(put_shape(b, out, j));
    if (o->binary)
        VEIL_GUARD(putf(out, ",\"parameters\":{\"binary_data_size\":%llu}",
                        (unsigned long long)(o->top_k > 0 ? b->cls[j].size : count * sizeof(float))));
    else if (o->top_k > 0)
        VEIL_GUARD(put_class_data(out, &b->cls[j]));
    else
        VEIL_GUARD(put_raw_data(b, out, io->name, b->outputs[o->index], count));
    return put(out, "}");
}

static VEIL_RESULT put_header(struct build *b, struct veil_buf *out)
{
    VEIL_GUARD(put(out, "{\"model_name\":"));
    VEIL_GUARD(put_string(out, b->model->name));
    if (b->model->version != NULL) {
        VEIL_GUARD(put(out, ",\"model_version\":"));
        VEIL_GUARD(put_string(out, b->model->version));
    }
    if (b->req->has_id) {
        VEIL_GUARD(put(out, ",\"id\":"));
        VEIL_GUARD(put_string(out, b->req->id));
    }
    if (b->req->top_k_clamped > 0 && b->decimals >= 0)
        VEIL_GUARD(putf(out, ",\"parameters\":{\"veil_top_k_clamped\":%u,\"veil_round_decimals\":%d}",
                        b->req->top_k_clamped, b->decimals));
    else if (b->req->top_k_clamped > 0)
        VEIL_GUARD(putf(out, ",\"parameters\":{\"veil_top_k_clamped\":%u}", b->req->top_k_clamped));
    else if (b->decimals >= 0)
        VEIL_GUARD(putf(out, ",\"parameters\":{\"veil_round_decimals\":%d}", b->decimals));
    VEIL_GUARD(put(out, ",\"outputs\":["));
    for (size_t j = 0; j < b->req->output_count; j++)
        VEIL_GUARD(put_output(b, out, j));
    return put(out, "]}");
}

/* The binary tail of raw output values, float32 little-endian, rounded by the policy. */
static VEIL_RESULT put_raw_binary(struct build *b, struct veil_buf *out, const float *values, uint64_t count)
{
    VEIL_GUARD(veil_buf_reserve(out, (size_t)count * sizeof(float)));
    for (uint64_t i = 0; i < count; i++) {
        float v = shape_score(values[i], b->decimals);
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        veil_store_u32le(out->data + out->size, u);
        out->size += sizeof u;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_build(const struct build *b)
{
    VEIL_GUARD(veil_serve_model_check(b->model));
    const struct veil_serve_request *req = b->req;
    VEIL_ENSURE(req->output_count <= VEIL_SERVE_MAX_OUTPUTS && b->outputs != NULL, VEIL_ERR_ARG, "serve: bad request");
    for (size_t j = 0; j < req->output_count; j++) {
        uint32_t idx = req->outputs[j].index;
        VEIL_ENSURE(idx < b->model->output_count && b->outputs[idx] != NULL, VEIL_ERR_ARG, "serve: output %u missing",
                    idx);
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT build_response(struct build *b, struct veil_buf *out, size_t *json_size)
{
    VEIL_GUARD(check_build(b));
    const struct veil_serve_request *req = b->req;
    int any_binary = 0;
    for (size_t j = 0; j < req->output_count; j++) {
        const struct veil_serve_output_req *o = &req->outputs[j];
        any_binary |= o->binary;
        if (o->top_k == 0)
            continue;
        uint64_t count = 0;
        VEIL_GUARD(output_count(b, o->index, &count));
        VEIL_GUARD(classify(b, j, b->outputs[o->index], count));
    }
    size_t start = out->size;
    VEIL_GUARD(put_header(b, out));
    *json_size = any_binary ? out->size - start : 0;
    for (size_t j = 0; j < req->output_count; j++) {
        const struct veil_serve_output_req *o = &req->outputs[j];
        uint64_t count = 0;
        VEIL_GUARD(output_count(b, o->index, &count));
        if (o->binary && o->top_k > 0)
            VEIL_GUARD(veil_buf_append(out, b->cls[j].data, b->cls[j].size));
        else if (o->binary)
            VEIL_GUARD(put_raw_binary(b, out, b->outputs[o->index], count));
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_serve_response_build(const struct veil_serve_model *model, const struct veil_serve_request *req,
                                      const float *const *outputs, const struct veil_serve_shaping *shaping,
                                      struct veil_buf *out, size_t *json_size)
{
    VEIL_DEFER(build_done) struct build b = {.model = model, .req = req, .outputs = outputs, .decimals = -1};
    if (shaping != NULL && shaping->round_decimals >= 0)
        b.decimals = shaping->round_decimals > VEIL_SERVE_MAX_ROUND_DECIMALS ? VEIL_SERVE_MAX_ROUND_DECIMALS
                                                                              : shaping->round_decimals;
    *json_size = 0;
    struct veil_result r = build_response(&b, out, json_size);
    if (!veil_ok(r)) {
        veil_buf_cleanup(out);
        *json_size = 0;
    }
    return r;
}

/* ---- metadata --------------------------------------------------------------------------------------------- */

static VEIL_RESULT io_metadata(const struct veil_serve_io *ios, size_t count, json_t **out)
{
    VEIL_DEFER(veil_json_done) json_t *list = json_array();
    VEIL_ENSURE(list != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *o = json_object();
        VEIL_ENSURE(o != NULL && json_array_append_new(list, o) == 0, VEIL_ERR_NOMEM, "out of memory");
        VEIL_GUARD(veil_json_set(o, "name", json_string(ios[i].name)));
        VEIL_GUARD(veil_json_set(o, "datatype", json_string(datatype_name(ios[i].dtype))));
        VEIL_GUARD(veil_json_set(o, "shape", json_array()));
        json_t *shape = json_object_get(o, "shape");
        for (uint32_t d = 0; d < ios[i].rank; d++)
            VEIL_ENSURE(json_array_append_new(shape, json_integer((json_int_t)ios[i].dims[d])) == 0, VEIL_ERR_NOMEM,
                        "out of memory");
    }
    *out = list;
    list = NULL;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT add_extra(json_t *meta, const json_t *extra)
{
    if (extra == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(extra), VEIL_ERR_ARG, "serve: extra metadata must be an object");
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)(uintptr_t)extra, key, value) {
        VEIL_ENSURE(json_object_get(meta, key) == NULL, VEIL_ERR_ARG, "serve: extra metadata member '%.64s' clashes",
                    key);
        VEIL_GUARD(veil_json_set(meta, key, json_deep_copy(value)));
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_serve_model_metadata_json(const struct veil_serve_model *model, const json_t *extra, json_t **out)
{
    VEIL_GUARD(veil_serve_model_check(model));
    VEIL_DEFER(veil_json_done) json_t *meta = json_object();
    VEIL_ENSURE(meta != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_json_set(meta, "name", json_string(model->name)));
    if (model->version != NULL)
        VEIL_GUARD(veil_json_set(meta, "versions", json_pack("[s]", model->version)));
    VEIL_GUARD(veil_json_set(meta, "platform", json_string("veil_onnx")));
    json_t *list = NULL;
    VEIL_GUARD(io_metadata(model->inputs, model->input_count, &list));
    VEIL_GUARD(veil_json_set(meta, "inputs", list));
    VEIL_GUARD(io_metadata(model->outputs, model->output_count, &list));
    VEIL_GUARD(veil_json_set(meta, "outputs", list));
    VEIL_GUARD(add_extra(meta, extra));
    *out = meta;
    meta = NULL;
    return VEIL_RESULT_OK;
}
