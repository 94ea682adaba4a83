/* SPDX-License-Identifier: Apache-2.0 */
/* lib/serve: the KServe v2 codec (request parser, response builder, metadata) and the owner's usage policy. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/kserve.h"
#include "serve/usage.h"

/* ---- fixtures --------------------------------------------------------------------------------------------- */

/* "m": x [-1,2,3] and y [-1,4] in; probs [-1,5] and feat [2,2] (no batch dim) out; batches of 1..4. */
static const struct veil_serve_io m_inputs[] = {{"x", 3, {-1, 2, 3}, 1}, {"y", 2, {-1, 4}, 1}};
static const struct veil_serve_io m_outputs[] = {{"probs", 2, {-1, 5}, 1}, {"feat", 2, {2, 2}, 1}};
static const struct veil_serve_model model_m = {"m", "1", m_inputs, m_outputs, 2, 2, 4, 0};

/* "resnet" as in shared/reference/serving.md §6. */
static const struct veil_serve_io r_inputs[] = {{"input__0", 4, {-1, 3, 224, 224}, 1}};
static const struct veil_serve_io r_outputs[] = {{"probs", 2, {-1, 1000}, 1}};
static const struct veil_serve_model model_r = {"resnet", "1", r_inputs, r_outputs, 1, 1, 8, 0};

static const struct veil_serve_shaping no_shaping = {0, 0, -1};

/* Parses json followed by tail (Inference-Header-Content-Length = strlen(json) when a tail is given; ihcl
 * overrides it when not NULL, "-" meaning absent). Returns the HTTP status; the result must agree with it. */
static int parse_ex(const struct veil_serve_model *m, const char *json, const void *tail, size_t tail_size,
                    const char *ihcl, const struct veil_serve_shaping *s, struct veil_serve_request *req,
                    char msg[VEIL_SERVE_MSG_SIZE])
{
    size_t json_size = strlen(json), size = json_size + tail_size;
    uint8_t *body = malloc(size + 1);
    assert_non_null(body);
    memcpy(body, json, json_size);
    if (tail_size > 0)
        memcpy(body + json_size, tail, tail_size);
    char auto_ihcl[32];
    snprintf(auto_ihcl, sizeof auto_ihcl, "%zu", json_size);
    const char *header = ihcl != NULL ? (strcmp(ihcl, "-") == 0 ? NULL : ihcl) : tail_size > 0 ? auto_ihcl : NULL;
    int status = 0;
    struct veil_result r = veil_serve_request_parse(m, body, size, header, s, req, &status, msg, VEIL_SERVE_MSG_SIZE);
    free(body);
    assert_int_equal(veil_ok(r), status == 200);
    for (const char *p = msg; *p != '\0'; p++)
        assert_true(*p >= 0x20 && *p <= 0x7e); /* messages are printable ASCII */
    if (status != 200)
        for (size_t i = 0; i < VEIL_SERVE_MAX_INPUTS; i++)
            assert_null(req->inputs[i]); /* nothing left to free after a failure */
    return status;
}

static int parse(const struct veil_serve_model *m, const char *json, const void *tail, size_t tail_size,
                 struct veil_serve_request *req, char msg[VEIL_SERVE_MSG_SIZE])
{
    return parse_ex(m, json, tail, tail_size, NULL, &no_shaping, req, msg);
}

/* A refusal with this status and a message containing needle. */
static void refused_ex(const struct veil_serve_model *m, const char *json, const void *tail, size_t tail_size,
                       const char *ihcl, const struct veil_serve_shaping *s, int status, const char *needle)
{
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    int got = parse_ex(m, json, tail, tail_size, ihcl, s, &req, msg);
    if (got != status || strstr(msg, needle) == NULL)
        fail_msg("request %.120s: got %d \"%s\", expected %d with \"%s\"", json, got, msg, status, needle);
    veil_serve_request_cleanup(&req);
}

static void refused(const char *json, const char *needle)
{
    refused_ex(&model_m, json, NULL, 0, NULL, &no_shaping, 400, needle);
}

static void refused_tail(const char *json, const void *tail, size_t tail_size, const char *needle)
{
    refused_ex(&model_m, json, tail, tail_size, NULL, &no_shaping, 400, needle);
}

#define X_JSON(shape, data) "{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":" shape ",\"data\":" data "}"
#define Y_JSON(shape, data) "{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":" shape ",\"data\":" data "}"
#define X1 X_JSON("[1,2,3]", "[1,2,3,4,5,6]")
#define Y1 Y_JSON("[1,4]", "[7,8,9,10]")

static void fill(float *v, size_t n, float start, float step)
{
    for (size_t i = 0; i < n; i++)
        v[i] = start + step * (float)i;
}

/* Builds the response; returns the body as a NUL-terminated string (binary bytes included) and its size. */
static char *build(const struct veil_serve_model *m, const struct veil_serve_request *req, const float *const *outs,
                   const struct veil_serve_shaping *s, size_t *size, size_t *json_size)
{
    struct veil_buf out;
    veil_buf_init(&out);
    struct veil_result r = veil_serve_response_build(m, req, outs, s, &out, json_size);
    if (!veil_ok(r))
        fail_msg("response: %s", veil_last_error());
    assert_true(veil_ok(veil_buf_append_u8(&out, 0)));
    uint8_t *data = NULL;
    size_t n = 0;
    veil_buf_release(&out, &data, &n);
    *size = n - 1;
    return (char *)data;
}

/* ---- request: successes ----------------------------------------------------------------------------------- */

static void test_json_flat_and_nested(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    /* x flat, y nested as [[..]]; unknown top-level keys (KServe's client adds model_name) are ignored. */
    assert_int_equal(parse(&model_m, "{\"model_name\":\"m\",\"inputs\":[" Y_JSON("[1,4]", "[[7,8,9,10.5]]") "," X1
                                     "]}", NULL, 0, &req, msg), 200);
    assert_string_equal(msg, "");
    assert_int_equal(req.batch, 1);
    assert_int_equal(req.input_count, 2);
    assert_int_equal(req.input_sizes[0], 6 * sizeof(float));
    assert_int_equal(req.input_sizes[1], 4 * sizeof(float));
    for (size_t i = 0; i < 2; i++)
        assert_int_equal((uintptr_t)req.inputs[i] % 64, 0);
    for (int i = 0; i < 6; i++)
        assert_true(req.inputs[0][i] == (float)(i + 1)); /* model order: x first */
    assert_true(req.inputs[1][3] == 10.5f);
    assert_int_equal(req.has_id, 0);
    /* No "outputs": every model output, JSON. */
    assert_int_equal(req.output_count, 2);
    assert_int_equal(req.outputs[0].index, 0);
    assert_int_equal(req.outputs[1].index, 1);
    assert_int_equal(req.outputs[0].binary, 0);
    assert_int_equal(req.outputs[0].top_k, 0);
    veil_serve_request_cleanup(&req);
    veil_serve_request_cleanup(&req); /* idempotent */

    /* Batch 2, nested three levels deep; integers and reals; negative zero. */
    assert_int_equal(parse(&model_m, "{\"inputs\":[" X_JSON("[2,2,3]", "[[[1,2,3],[4,5,6]],[[7,8,9],[10,11,-0.0]]]")
                                     "," Y_JSON("[2,4]", "[1e-3,2,3,4,5,6,7,8.25]") "]}", NULL, 0, &req, msg), 200);
    assert_int_equal(req.batch, 2);
    assert_int_equal(req.input_sizes[0], 12 * sizeof(float));
    assert_true(req.inputs[0][10] == 11.0f);
    assert_true(req.inputs[1][0] == 1e-3f && req.inputs[1][7] == 8.25f);
    veil_serve_request_cleanup(&req);
}

/* The request tritonclient sent, byte for byte (shared/reference/serving.md §6.1). */
static void test_binary_request_from_tritonclient(void **state)
{
    (void)state;
    static const char json[] = "{\"inputs\":[{\"name\":\"input__0\",\"shape\":[1,3,224,224],\"datatype\":\"FP32\","
                               "\"parameters\":{\"binary_data_size\":602112}}],\"outputs\":[{\"name\":\"probs\","
                               "\"parameters\":{\"binary_data\":true}}]}";
    assert_int_equal(strlen(json), 176);
    size_t n = 3 * 224 * 224;
    uint8_t *tail = malloc(n * 4);
    assert_non_null(tail);
    for (size_t i = 0; i < n; i++)
        memcpy(tail + 4 * i, "\x00\x00\x00\x3f", 4); /* 0.5f little-endian */
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse_ex(&model_r, json, tail, n * 4, "176", &no_shaping, &req, msg), 200);
    assert_int_equal(req.input_sizes[0], 602112);
    assert_true(req.inputs[0][0] == 0.5f && req.inputs[0][n - 1] == 0.5f);
    assert_int_equal(req.output_count, 1);
    assert_int_equal(req.outputs[0].binary, 1);
    veil_serve_request_cleanup(&req);

    /* The variant without "outputs" (154 bytes): binary_data_output applies to every output. */
    static const char json2[] = "{\"inputs\":[{\"name\":\"input__0\",\"shape\":[1,3,224,224],\"datatype\":\"FP32\","
                                "\"parameters\":{\"binary_data_size\":602112}}],\"parameters\":{\"binary_data_output\""
                                ":true}}";
    assert_int_equal(strlen(json2), 154);
    assert_int_equal(parse_ex(&model_r, json2, tail, n * 4, " 154 ", &no_shaping, &req, msg), 200);
    assert_int_equal(req.outputs[0].binary, 1);
    veil_serve_request_cleanup(&req);
    free(tail);
}

static void test_mixed_json_and_binary(void **state)
{
    (void)state;
    float y[8];
    fill(y, 8, -1.5f, 0.25f);
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_m, "{\"id\":\"r-7\",\"inputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":"
                                     "[2,4],\"parameters\":{\"binary_data_size\":32}}," X_JSON("[2,2,3]", "[0,1,2,3,4,"
                                     "5,6,7,8,9,10,11]") "]}", y, sizeof y, &req, msg), 200);
    assert_int_equal(req.batch, 2);
    assert_memory_equal(req.inputs[1], y, sizeof y);
    assert_true(req.inputs[0][11] == 11.0f);
    assert_int_equal(req.has_id, 1);
    assert_string_equal(req.id, "r-7");
    veil_serve_request_cleanup(&req);

    /* Two binary inputs: their blobs follow in the order of the JSON "inputs" array. */
    float tail[6 + 4];
    fill(tail, 10, 1, 1);
    assert_int_equal(parse(&model_m, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],"
                                     "\"parameters\":{\"binary_data_size\":24}},{\"name\":\"y\",\"datatype\":\"FP32\","
                                     "\"shape\":[1,4],\"parameters\":{\"binary_data_size\":16}}]}",
                           tail, sizeof tail, &req, msg), 200);
    assert_true(req.inputs[0][5] == 6.0f && req.inputs[1][0] == 7.0f);
    veil_serve_request_cleanup(&req);
}

static void test_request_parameters(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    /* Ignored: priority, timeout, headers, custom keys. */
    assert_int_equal(parse(&model_m, "{\"parameters\":{\"priority\":1,\"timeout\":5,\"headers\":{},\"my\":\"x\"},"
                                     "\"inputs\":[" X1 "," Y1 "]}", NULL, 0, &req, msg), 200);
    veil_serve_request_cleanup(&req);
    refused("{\"parameters\":{\"triton_enable_empty_final_response\":true},\"inputs\":[" X1 "," Y1 "]}",
            "reserved for Triton");
    refused("{\"parameters\":{\"veil_top_k_clamped\":1},\"inputs\":[" X1 "," Y1 "]}", "reserved");
    refused("{\"parameters\":{\"sequence_id\":3},\"inputs\":[" X1 "," Y1 "]}", "not a sequence model");
    refused("{\"parameters\":{\"binary_data_output\":1},\"inputs\":[" X1 "," Y1 "]}", "must be a boolean");
    refused("{\"parameters\":[],\"inputs\":[" X1 "," Y1 "]}", "must be an object");
}

static void test_id_echo(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_m, "{\"id\":\"caf\\u00e9 \\\"q\\\"\",\"inputs\":[" X1 "," Y1 "]}", NULL, 0, &req,
                           msg), 200);
    assert_string_equal(req.id, "caf\xc3\xa9 \"q\"");
    float probs[5] = {0}, feat[4] = {0};
    const float *outs[] = {probs, feat};
    size_t size = 0, json_size = 0;
    char *body = build(&model_m, &req, outs, NULL, &size, &json_size);
    /* Echoed, JSON-escaped, ASCII only. */
    assert_non_null(strstr(body, "\"id\":\"caf\\u00E9 \\\"q\\\"\""));
    free(body);
    veil_serve_request_cleanup(&req);

    char json[600];
    char id[VEIL_SERVE_MAX_ID_SIZE + 2];
    memset(id, 'a', sizeof id - 1);
    id[VEIL_SERVE_MAX_ID_SIZE] = '\0';
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"inputs\":[" X1 "," Y1 "]}", id);
    assert_int_equal(parse(&model_m, json, NULL, 0, &req, msg), 200); /* exactly the maximum */
    veil_serve_request_cleanup(&req);
    id[VEIL_SERVE_MAX_ID_SIZE] = 'a', id[VEIL_SERVE_MAX_ID_SIZE + 1] = '\0';
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"inputs\":[" X1 "," Y1 "]}", id);
    refused(json, "longer than 256 bytes");
    refused("{\"id\":7,\"inputs\":[" X1 "," Y1 "]}", "'id' must be a string");
}

/* ---- request: refusals ------------------------------------------------------------------------------------ */

static void test_framing(void **state)
{
    (void)state;
    float x[6] = {0};
    const char *json = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"parameters\":"
                       "{\"binary_data_size\":24}}," Y1 "]}";
    char big[32];
    snprintf(big, sizeof big, "%zu", strlen(json) + sizeof x + 1);
    refused_ex(&model_m, json, x, sizeof x, big, &no_shaping, 400, "should be in range");     /* IHCL > CL */
    refused_ex(&model_m, json, x, sizeof x, "0", &no_shaping, 400, "raw binary requests");     /* §4.6 */
    refused_ex(&model_m, json, x, sizeof x, "12a", &no_shaping, 400, "not a decimal number");
    refused_ex(&model_m, json, x, sizeof x, "", &no_shaping, 400, "is empty");
    refused_ex(&model_m, json, x, sizeof x, "99999999999999999999999", &no_shaping, 400, "too large");
    refused_ex(&model_m, json, x, sizeof x, "-", &no_shaping, 400, "failed to parse the request JSON"); /* no IHCL */
    refused_ex(&model_m, "", NULL, 0, NULL, &no_shaping, 400, "empty request body");

    /* Sizes are refused before a byte is read (the buffer here is far smaller than the size claimed). */
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    int status = 0;
    static const uint8_t tiny[1] = {'{'};
    assert_int_equal(veil_serve_request_parse(&model_m, tiny, (size_t)VEIL_SERVE_MAX_REQUEST_SIZE + 1, NULL, NULL,
                                              &req, &status, msg, sizeof msg).status, VEIL_ERR_ARG);
    assert_int_equal(status, 413);
    assert_int_equal(veil_serve_request_parse(&model_m, tiny, (size_t)VEIL_SERVE_MAX_JSON_SIZE + 1, NULL, NULL,
                                              &req, &status, msg, sizeof msg).status, VEIL_ERR_ARG);
    assert_int_equal(status, 400);
    assert_non_null(strstr(msg, "binary data"));
    /* A short message buffer truncates. */
    assert_int_equal(veil_serve_request_parse(&model_m, tiny, 1, "0", NULL, &req, &status, msg, 8).status,
                     VEIL_ERR_ARG);
    assert_int_equal(strlen(msg), 7);
}

static void test_binary_length_lies(void **state)
{
    (void)state;
    float x[7];
    fill(x, 7, 0, 1);
    const char *x_bin = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"parameters\":"
                        "{\"binary_data_size\":24}}," Y1 "]}";
    refused_tail(x_bin, x, 20, "expecting 24 additional bytes for model 'm'");          /* too short */
    refused_tail(x_bin, x, 28, "unexpected additional input data for model 'm'");       /* too long */
    refused_ex(&model_m, x_bin, NULL, 0, "-", &no_shaping, 400, "expecting 24 additional bytes"); /* no tail */
    refused_tail("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"parameters\":"
                 "{\"binary_data_size\":20}}," Y1 "]}", x, 20, "input byte size mismatch for input 'x' for model "
                 "'m'. Expected 24, got 20");
    refused_tail("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"parameters\":"
                 "{\"binary_data_size\":-24}}," Y1 "]}", x, 24, "non-negative integer");
    /* JSON inputs take no tail bytes: a tail after an all-JSON request is left over. */
    refused_tail("{\"inputs\":[" X1 "," Y1 "]}", x, 4, "unexpected additional input data");
}

static void test_dtype_and_shape(void **state)
{
    (void)state;
    refused("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT64\",\"shape\":[1,2,3],\"data\":[1,2,3,4,5,6]}," Y1 "]}",
            "input 'x' takes FP32, not INT64");
    refused("{\"inputs\":[{\"name\":\"x\",\"shape\":[1,2,3],\"data\":[1,2,3,4,5,6]}," Y1 "]}", "no 'datatype'");
    refused("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6]}," Y1 "]}", "no 'shape'");
    refused("{\"inputs\":[" X_JSON("[1,3,2]", "[1,2,3,4,5,6]") "," Y1 "]}",
            "unexpected shape for input 'x' for model 'm'. Expected [-1,2,3], got [1,3,2]");
    refused("{\"inputs\":[" X_JSON("[1,6]", "[1,2,3,4,5,6]") "," Y1 "]}", "unexpected shape for input 'x'");
    refused("{\"inputs\":[" X_JSON("[1,2,3,1]", "[1,2,3,4,5,6]") "," Y1 "]}", "unexpected shape for input 'x'");
    refused("{\"inputs\":[" X_JSON("[1,2,-3]", "[1,2,3,4,5,6]") "," Y1 "]}", "non-negative integers");
    refused("{\"inputs\":[" X_JSON("[1,2,3.0]", "[1,2,3,4,5,6]") "," Y1 "]}", "non-negative integers");
    refused("{\"inputs\":[" X_JSON("[1,1,1,1,1,1,1]", "[1]") "," Y1 "]}", "7 dimensions");
    /* Huge dims: the element count overflows 64 bits. */
    refused("{\"inputs\":[" X_JSON("[4611686018427387904,4611686018427387904,3]", "[1]") "," Y1 "]}",
            "too many elements");
    refused("{\"inputs\":[" X_JSON("[1099511627776,2,3]", "[1]") "," Y1 "]}", "batch-size must be <= 4 for 'm'");
    /* Batch 0 (an empty tensor), over the maximum, disagreeing inputs. */
    refused("{\"inputs\":[" X_JSON("[0,2,3]", "[]") "," Y1 "]}", "input 'x' is empty (shape [0,2,3])");
    refused("{\"inputs\":[" X_JSON("[5,2,3]", "[1]") "," Y1 "]}", "batch-size must be <= 4");
    refused("{\"inputs\":[" X_JSON("[2,2,3]", "[0,1,2,3,4,5,6,7,8,9,10,11]") "," Y1 "]}",
            "inputs 'x' and 'y' disagree on the batch size (2 and 1)");
    /* Data count must match the shape, flat or nested. */
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5]") "," Y1 "]}", "has 5 data elements, but its shape holds 6");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[[1,2,3],[4,5,6],[7]]") "," Y1 "]}", "has 7 data elements");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,\"6\"]") "," Y1 "]}", "must hold only numbers");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,true]") "," Y1 "]}", "must hold only numbers");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "7") "," Y1 "]}", "must be an array");
}

static void test_inputs_unknown_duplicate_missing(void **state)
{
    (void)state;
    refused("{\"inputs\":[" X1 "," Y1 ",{\"name\":\"z\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
            "unexpected inference input 'z' for model 'm'");
    refused("{\"inputs\":[" X1 "," X1 "," Y1 "]}", "input 'x' already exists in request");
    refused("{\"inputs\":[" X1 "]}", "expected 2 inputs but got 1 inputs for model 'm'; missing input 'y'");
    refused("{\"inputs\":[]}", "missing input 'x'");
    refused("{\"id\":\"a\"}", "no 'inputs' array");
    refused("{\"inputs\":{}}", "no 'inputs' array");
    refused("{\"inputs\":[7]}", "must be an object");
    refused("{\"inputs\":[{\"datatype\":\"FP32\"}]}", "no 'name' string");
}

static void test_data_sources(void **state)
{
    (void)state;
    float x[6] = {0};
    refused_tail("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"data\":[1,2,3,4,5,6],"
                 "\"parameters\":{\"binary_data_size\":24}}," Y1 "]}", x, sizeof x,
                 "Input must set only one of the following fields");
    refused("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3]}," Y1 "]}", "sets none");
    refused("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"parameters\":"
            "{\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":24}}," Y1 "]}", "shared memory is not "
            "supported");
    refused("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"parameters\":7}," Y1 "]}",
            "must be an object");
}

static void test_malformed_json(void **state)
{
    (void)state;
    refused("{", "failed to parse the request JSON");
    refused("[]", "must be an object");
    refused("{\"inputs\":[" X1 "," Y1 "]} x", "failed to parse the request JSON");
    refused("{\"inputs\":[" X1 "," Y1 "],\"inputs\":[]}", "failed to parse the request JSON"); /* duplicate key */
    refused("{\"id\":\"\xff\xfe\",\"inputs\":[" X1 "," Y1 "]}", "failed to parse the request JSON"); /* not UTF-8 */
    refused("{\"id\":\"a\\u0000b\",\"inputs\":[" X1 "," Y1 "]}", "failed to parse the request JSON");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,99999999999999999999]") "," Y1 "]}", "too big integer");
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char json[512];
    size_t n = 0;
    n += (size_t)snprintf(json + n, sizeof json - n, "{\"a\":");
    for (int i = 0; i < 100; i++)
        json[n++] = '[';
    for (int i = 0; i < 100; i++)
        json[n++] = ']';
    snprintf(json + n, sizeof json - n, ",\"inputs\":[" X1 "," Y1 "]}");
    refused(json, "nested deeper than 100 levels"); /* 101 with the outer object */
    /* 100 levels are fine; brackets inside strings do not count. */
    n = (size_t)snprintf(json, sizeof json, "{\"id\":\"[[[[{{{{\",\"a\":");
    for (int i = 0; i < 99; i++)
        json[n++] = '[';
    for (int i = 0; i < 99; i++)
        json[n++] = ']';
    snprintf(json + n, sizeof json - n, ",\"inputs\":[" X1 "," Y1 "]}");
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_m, json, NULL, 0, &req, msg), 200);
    veil_serve_request_cleanup(&req);
}

static void test_non_finite(void **state)
{
    (void)state;
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,NaN]") "," Y1 "]}", "NaN or Infinity");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,-Infinity]") "," Y1 "]}",
            "the engine accepts only finite numbers");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,nan]") "," Y1 "]}", "NaN or Infinity");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,1e39]") "," Y1 "]}",
            "element 5 of input 'x' (1e+39) is outside the float32 range; the engine accepts only finite numbers");
    refused("{\"inputs\":[" X_JSON("[1,2,3]", "[1,2,3,4,5,1e999]") "," Y1 "]}", "failed to parse");
    /* The words inside strings are fine. */
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_m, "{\"id\":\"NaN Infinity\",\"inputs\":[" X1 "," Y1 "]}", NULL, 0, &req, msg), 200);
    veil_serve_request_cleanup(&req);
    /* Binary NaN and infinity bits. */
    float x[6] = {1, 2, 3, 4, 5, 6};
    const char *x_bin = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],\"parameters\":"
                        "{\"binary_data_size\":24}}," Y1 "]}";
    x[4] = NAN;
    refused_tail(x_bin, x, sizeof x, "input 'x' holds a NaN or an infinity (element 4); the engine accepts only "
                 "finite numbers");
    x[4] = -INFINITY;
    refused_tail(x_bin, x, sizeof x, "NaN or an infinity");
}

static void test_outputs_requested(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    /* Order of the response = order asked; per-output binary_data and classification. */
    assert_int_equal(parse(&model_m, "{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"feat\"},{\"name\":"
                                     "\"probs\",\"parameters\":{\"classification\":3,\"binary_data\":true}}]}",
                           NULL, 0, &req, msg), 200);
    assert_int_equal(req.output_count, 2);
    assert_int_equal(req.outputs[0].index, 1);
    assert_int_equal(req.outputs[0].binary, 0);
    assert_int_equal(req.outputs[1].index, 0);
    assert_int_equal(req.outputs[1].binary, 1);
    assert_int_equal(req.outputs[1].top_k, 3);
    veil_serve_request_cleanup(&req);
    /* Triton: binary_data_output covers the outputs not listed only; a listed one without binary_data is JSON. */
    assert_int_equal(parse(&model_m, "{\"parameters\":{\"binary_data_output\":true},\"inputs\":[" X1 "," Y1 "],"
                                     "\"outputs\":[{\"name\":\"probs\"}]}", NULL, 0, &req, msg), 200);
    assert_int_equal(req.output_count, 1);
    assert_int_equal(req.outputs[0].binary, 0);
    veil_serve_request_cleanup(&req);
    assert_int_equal(parse(&model_m, "{\"parameters\":{\"binary_data_output\":true},\"inputs\":[" X1 "," Y1 "],"
                                     "\"outputs\":[]}", NULL, 0, &req, msg), 200);
    assert_int_equal(req.output_count, 2);
    assert_int_equal(req.outputs[0].binary && req.outputs[1].binary, 1);
    veil_serve_request_cleanup(&req);

    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"logits\"}]}",
            "unexpected inference output 'logits' for model 'm'");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\"},{\"name\":\"probs\",\"parameters\":"
            "{\"binary_data\":true}}]}", "output 'probs' is requested more than once");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":{\"classification\":0}}]}",
            "must be an integer from 1 to 1000000");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":{\"classification\":"
            "\"5\"}}]}", "'classification' of output 'probs'");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":{\"classification\":"
            "1000001}}]}", "from 1 to 1000000");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":{\"binary_data\":1}}]}",
            "'binary_data' of output 'probs' must be a boolean");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":{\"shared_memory_region\":"
            "\"r\"}}]}", "shared memory");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"parameters\":{}}]}", "no 'name' string");
    refused("{\"inputs\":[" X1 "," Y1 "],\"outputs\":{}}", "'outputs' must be an array");
}

static void test_model_check(void **state)
{
    (void)state;
    assert_true(veil_ok(veil_serve_model_check(&model_m)));
    assert_true(veil_ok(veil_serve_model_check(&model_r)));
    const struct veil_serve_io bad_dim[] = {{"x", 2, {2, -1}, 1}};
    const struct veil_serve_io dup[] = {{"x", 1, {2}, 1}, {"x", 1, {2}, 1}};
    const struct veil_serve_io rank[] = {{"x", VEIL_ENGINE_MAX_RANK + 1, {1}, 1}};
    const struct veil_serve_io zero[] = {{"x", 1, {0}, 1}};
    const struct veil_serve_io noname[] = {{NULL, 1, {1}, 1}};
    const struct veil_serve_io ok[] = {{"x", 1, {2}, 1}};
    const struct veil_serve_model bad[] = {
        {"m", "1", bad_dim, ok, 1, 1, 4, 0}, {"m", "1", dup, ok, 2, 1, 4, 0},   {"m", "1", rank, ok, 1, 1, 4, 0},
        {"m", "1", zero, ok, 1, 1, 4, 0},    {"m", "1", noname, ok, 1, 1, 4, 0}, {NULL, "1", ok, ok, 1, 1, 4, 0},
        {"m", "1", m_inputs, ok, 2, 1, 0, 0}, /* a batch dim needs max_batch >= 1 */
        {"m", "1", m_inputs, ok, 2, 1, VEIL_ENGINE_MAX_BATCH + 1, 0},
        {"m", "1", ok, ok, 0, 1, 1, 0},      {"m", "\xff", ok, ok, 1, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(veil_serve_model_check(&bad[i]).status, VEIL_ERR_ARG);
    /* A misdescribed model is the server's fault. */
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&bad[0], "{\"inputs\":[]}", NULL, 0, &req, msg), 500);
    /* No batch dim anywhere: batch 1, max_batch irrelevant. */
    const struct veil_serve_model fixed = {"f", NULL, ok, ok, 1, 1, 0, 0};
    assert_int_equal(parse(&fixed, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,2]}]}",
                           NULL, 0, &req, msg), 200);
    assert_int_equal(req.batch, 1);
    veil_serve_request_cleanup(&req);
}

/* ---- response --------------------------------------------------------------------------------------------- */

static void test_response_json(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_m, "{\"id\":\"r1\",\"inputs\":[" X1 "," Y1 "]}", NULL, 0, &req, msg), 200);
    float probs[5] = {0.1f, 1.0f / 3.0f, -0.0f, 1234567.0f, 1e-45f}, feat[4] = {1, 2, 3, 4.5f};
    const float *outs[] = {probs, feat};
    size_t size = 0, json_size = 99;
    char *body = build(&model_m, &req, outs, NULL, &size, &json_size);
    assert_int_equal(json_size, 0); /* all JSON: no Inference-Header-Content-Length */
    /* Shortest text that reads back as the same float32. */
    assert_string_equal(body, "{\"model_name\":\"m\",\"model_version\":\"1\",\"id\":\"r1\",\"outputs\":["
                              "{\"name\":\"probs\",\"datatype\":\"FP32\",\"shape\":[1,5],\"data\":[0.1,0.33333334,"
                              "-0,1234567,1.4013e-45]},{\"name\":\"feat\",\"datatype\":\"FP32\",\"shape\":[2,2],"
                              "\"data\":[1,2,3,4.5]}]}");
    assert_int_equal(size, strlen(body));
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    assert_non_null(j);
    json_t *v = json_array_get(json_object_get(json_array_get(json_object_get(j, "outputs"), 0), "data"), 1);
    assert_true((float)json_real_value(v) == 1.0f / 3.0f);
    json_decref(j);
    free(body);

    /* A NaN cannot go into JSON: refused with a hint; as binary it passes. */
    probs[2] = NAN;
    struct veil_buf out;
    veil_buf_init(&out);
    assert_true(veil_ok(veil_buf_append(&out, "junk", 4)));
    assert_int_equal(veil_serve_response_build(&model_m, &req, outs, NULL, &out, &json_size).status, VEIL_ERR_ARG);
    assert_non_null(strstr(veil_last_error(), "output 'probs' holds a NaN or an infinity"));
    assert_non_null(strstr(veil_last_error(), "binary_data"));
    assert_int_equal(out.size, 0);
    veil_buf_cleanup(&out);
    req.outputs[0].binary = 1;
    body = build(&model_m, &req, outs, NULL, &size, &json_size);
    assert_int_equal(size, json_size + 20);
    float back;
    memcpy(&back, body + json_size + 8, 4);
    assert_true(isnan(back));
    free(body);
    /* Missing output buffer. */
    const float *missing[] = {probs, NULL};
    veil_buf_init(&out);
    assert_int_equal(veil_serve_response_build(&model_m, &req, missing, NULL, &out, &json_size).status, VEIL_ERR_ARG);
    veil_serve_request_cleanup(&req);
}

/* shared/reference/serving.md §6.2: the exact response for binary probs [1,1000]. */
static void test_response_binary_exact(void **state)
{
    (void)state;
    struct veil_serve_request req = {.batch = 1, .input_count = 1, .output_count = 1};
    req.outputs[0] = (struct veil_serve_output_req){.index = 0, .binary = 1};
    float probs[1000];
    fill(probs, 1000, 0.5f, 0.001f);
    const float *outs[] = {probs};
    size_t size = 0, json_size = 0;
    char *body = build(&model_r, &req, outs, &no_shaping, &size, &json_size);
    static const char header[] = "{\"model_name\":\"resnet\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"probs\","
                                 "\"datatype\":\"FP32\",\"shape\":[1,1000],\"parameters\":{\"binary_data_size\":4000}}]}";
    assert_int_equal(json_size, 146);
    assert_int_equal(size, 4146);
    assert_memory_equal(body, header, 146);
    assert_memory_equal(body + 146, "\x00\x00\x00\x3f", 4);
    for (size_t i = 0; i < 1000; i++) {
        float v;
        memcpy(&v, body + 146 + 4 * i, 4);
        assert_true(v == probs[i]);
    }
    free(body);
}

/* §6.3: the same output asked as top-5 classification, binary: BYTES, u32 LE length then text. */
static void test_classification_binary_exact(void **state)
{
    (void)state;
    static const char json[] = "{\"inputs\":[{\"name\":\"input__0\",\"shape\":[1,3,224,224],\"datatype\":\"FP32\","
                               "\"parameters\":{\"binary_data_size\":602112}}],\"outputs\":[{\"name\":\"probs\","
                               "\"parameters\":{\"classification\":5,\"binary_data\":true}}]}";
    assert_int_equal(strlen(json), 195);
    size_t n = 3 * 224 * 224;
    float *tail = calloc(n, sizeof *tail);
    assert_non_null(tail);
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_r, json, tail, n * 4, &req, msg), 200);
    free(tail);
    float probs[1000];
    fill(probs, 1000, 0.5f, 0.001f);
    const float *outs[] = {probs};
    size_t size = 0, json_size = 0;
    char *body = build(&model_r, &req, outs, NULL, &size, &json_size);
    static const char header[] = "{\"model_name\":\"resnet\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"probs\","
                                 "\"datatype\":\"BYTES\",\"shape\":[1,5],\"parameters\":{\"binary_data_size\":80}}]}";
    assert_int_equal(json_size, 142);
    assert_int_equal(size, 222);
    assert_memory_equal(body, header, 142);
    static const char blob[] = "\x0c\x00\x00\x00" "1.499000:999" "\x0c\x00\x00\x00" "1.498000:998"
                               "\x0c\x00\x00\x00" "1.497000:997" "\x0c\x00\x00\x00" "1.496000:996"
                               "\x0c\x00\x00\x00" "1.495000:995";
    assert_memory_equal(body + 142, blob, 80);
    free(body);
    veil_serve_request_cleanup(&req);
}

static void test_classification_json(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_m, "{\"inputs\":[" X_JSON("[2,2,3]", "[0,1,2,3,4,5,6,7,8,9,10,11]") ","
                                     Y_JSON("[2,4]", "[1,2,3,4,5,6,7,8]") "],\"outputs\":[{\"name\":\"probs\","
                                     "\"parameters\":{\"classification\":3,\"binary_data\":false}},{\"name\":\"feat\","
                                     "\"parameters\":{\"classification\":10}}]}", NULL, 0, &req, msg), 200);
    /* Row 0: a tie (lower index first) and a NaN (ranked last); row 1: negative values. feat has no batch dim:
     * one row of 4, K clamped to the element count, shape [4]. */
    float probs[10] = {0.1f, 0.7f, 0.7f, 0.2f, NAN, -3, -1, -2, -5, -4}, feat[4] = {0.25f, NAN, 2, -INFINITY};
    const float *outs[] = {probs, feat};
    size_t size = 0, json_size = 0;
    char *body = build(&model_m, &req, outs, NULL, &size, &json_size);
    assert_int_equal(json_size, 0);
    assert_string_equal(body, "{\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"probs\","
                              "\"datatype\":\"BYTES\",\"shape\":[2,3],\"data\":[\"0.700000:1\",\"0.700000:2\","
                              "\"0.200000:3\",\"-1.000000:1\",\"-2.000000:2\",\"-3.000000:0\"]},{\"name\":\"feat\","
                              "\"datatype\":\"BYTES\",\"shape\":[4],\"data\":[\"2.000000:2\",\"0.250000:0\","
                              "\"-inf:3\",\"nan:1\"]}]}");
    free(body);
    veil_serve_request_cleanup(&req);
}

/* A brute-force check of the heap top-k against a full ranking, on many sizes. */
static void test_classification_top_k_order(void **state)
{
    (void)state;
    static const struct veil_serve_io in[] = {{"x", 1, {1}, 1}};
    for (int64_t n = 1; n <= 40; n++)
        for (uint32_t k = 1; k <= (uint32_t)n + 1; k += 3) {
            struct veil_serve_io out[] = {{"o", 2, {-1, n}, 1}};
            struct veil_serve_model m = {"t", NULL, in, out, 1, 1, 2, 0};
            struct veil_serve_request req = {.batch = 1, .output_count = 1};
            req.outputs[0] = (struct veil_serve_output_req){.index = 0, .binary = 0, .top_k = k};
            float v[40];
            uint32_t seed = (uint32_t)(n * 7919 + k);
            for (int64_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                v[i] = (float)((seed >> 16) % 7); /* many ties */
            }
            const float *outs[] = {v};
            size_t size = 0, json_size = 0;
            char *body = build(&m, &req, outs, NULL, &size, &json_size);
            json_t *j = json_loads(body, 0, NULL);
            assert_non_null(j);
            json_t *data = json_object_get(json_array_get(json_object_get(j, "outputs"), 0), "data");
            size_t expect = k < (uint32_t)n ? k : (size_t)n;
            assert_int_equal(json_array_size(data), expect);
            /* Expected: by value descending, then index ascending. */
            int used[40] = {0};
            for (size_t r = 0; r < expect; r++) {
                int64_t best = -1;
                for (int64_t i = 0; i < n; i++)
                    if (!used[i] && (best < 0 || v[i] > v[best]))
                        best = i;
                used[best] = 1;
                char want[64];
                snprintf(want, sizeof want, "%f:%lld", (double)v[best], (long long)best);
                assert_string_equal(json_string_value(json_array_get(data, r)), want);
            }
            json_decref(j);
            free(body);
        }
}

static void test_shaping(void **state)
{
    (void)state;
    const struct veil_serve_shaping s = {.classification_only = 1, .max_top_k = 2, .round_decimals = 3};
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    /* §7 (b): raw outputs refused, whether listed or implied. */
    refused_ex(&model_m, "{\"inputs\":[" X1 "," Y1 "]}", NULL, 0, NULL, &s, 400,
               "output 'probs' is only available as classification (top-k); set parameters.classification");
    refused_ex(&model_m, "{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":"
               "{\"classification\":1}},{\"name\":\"feat\",\"parameters\":{\"binary_data\":true}}]}", NULL, 0, NULL,
               &s, 400, "output 'feat' is only available as classification");
    /* K clamped to 2 and said so; scores rounded to 3 decimals. */
    assert_int_equal(parse_ex(&model_m, "{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":"
                                        "{\"classification\":5}}]}", NULL, 0, NULL, &s, &req, msg), 200);
    assert_int_equal(req.outputs[0].top_k, 2);
    assert_int_equal(req.top_k_clamped, 2);
    float probs[5] = {0.912345f, 0.05f, 0.0123456f, 0.02f, 0.0053f};
    const float *outs[] = {probs, NULL};
    size_t size = 0, json_size = 0;
    char *body = build(&model_m, &req, outs, &s, &size, &json_size);
    assert_string_equal(body, "{\"model_name\":\"m\",\"model_version\":\"1\",\"parameters\":{\"veil_top_k_clamped\":2,"
                              "\"veil_round_decimals\":3},\"outputs\":[{\"name\":\"probs\",\"datatype\":\"BYTES\","
                              "\"shape\":[1,2],\"data\":[\"0.912000:0\",\"0.050000:1\"]}]}");
    free(body);
    veil_serve_request_cleanup(&req);
    /* K under the clamp: untouched, no clamp parameter. */
    assert_int_equal(parse_ex(&model_m, "{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\",\"parameters\":"
                                        "{\"classification\":1}}]}", NULL, 0, NULL, &s, &req, msg), 200);
    assert_int_equal(req.outputs[0].top_k, 1);
    assert_int_equal(req.top_k_clamped, 0);
    veil_serve_request_cleanup(&req);

    /* Rounding alone applies to raw floats, JSON and binary alike. */
    const struct veil_serve_shaping round_only = {0, 0, 3};
    assert_int_equal(parse_ex(&model_m, "{\"inputs\":[" X1 "," Y1 "],\"outputs\":[{\"name\":\"probs\"},{\"name\":"
                                        "\"feat\",\"parameters\":{\"binary_data\":true}}]}", NULL, 0, NULL,
                              &round_only, &req, msg), 200);
    float feat[4] = {0.12345f, -2.71828f, 100000000.0f, 0.0005f};
    outs[1] = feat;
    body = build(&model_m, &req, outs, &round_only, &size, &json_size);
    assert_non_null(strstr(body, "\"parameters\":{\"veil_round_decimals\":3}"));
    assert_non_null(strstr(body, "\"data\":[0.912,0.05,0.012,0.02,0.005]"));
    float back[4];
    assert_int_equal(size, json_size + 16);
    memcpy(back, body + json_size, 16);
    assert_true(back[0] == 0.123f && back[1] == -2.718f && back[2] == 100000000.0f && back[3] == 0.001f);
    free(body);
    veil_serve_request_cleanup(&req);
}

static void test_mixed_outputs_tail_order(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_int_equal(parse(&model_m, "{\"inputs\":[" X_JSON("[2,2,3]", "[0,1,2,3,4,5,6,7,8,9,10,11]") ","
                                     Y_JSON("[2,4]", "[1,2,3,4,5,6,7,8]") "],\"outputs\":[{\"name\":\"feat\","
                                     "\"parameters\":{\"binary_data\":true}},{\"name\":\"probs\",\"parameters\":"
                                     "{\"classification\":1,\"binary_data\":true}}]}", NULL, 0, &req, msg), 200);
    float probs[10], feat[4] = {1, 2, 3, 4};
    fill(probs, 10, 0, 1);
    const float *outs[] = {probs, feat};
    size_t size = 0, json_size = 0;
    char *body = build(&model_m, &req, outs, NULL, &size, &json_size);
    json_t *j = json_loadb(body, json_size, 0, NULL);
    assert_non_null(j);
    json_t *o = json_object_get(j, "outputs");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(json_array_get(o, 0), "parameters"),
                                                        "binary_data_size")), 16);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(json_array_get(o, 1), "parameters"),
                                                        "binary_data_size")), 2 * (4 + 10));
    json_decref(j);
    assert_int_equal(size, json_size + 16 + 28);
    assert_memory_equal(body + json_size, feat, 16); /* feat first, as in "outputs" */
    assert_memory_equal(body + json_size + 16, "\x0a\x00\x00\x00" "4.000000:4" "\x0a\x00\x00\x00" "9.000000:4", 28);
    free(body);
    veil_serve_request_cleanup(&req);
}

static void test_metadata(void **state)
{
    (void)state;
    json_t *meta = NULL;
    assert_true(veil_ok(veil_serve_model_metadata_json(&model_r, NULL, &meta)));
    char *text = json_dumps(meta, JSON_COMPACT);
    assert_string_equal(text, "{\"name\":\"resnet\",\"versions\":[\"1\"],\"platform\":\"veil_onnx\",\"inputs\":"
                              "[{\"name\":\"input__0\",\"datatype\":\"FP32\",\"shape\":[-1,3,224,224]}],\"outputs\":"
                              "[{\"name\":\"probs\",\"datatype\":\"FP32\",\"shape\":[-1,1000]}]}");
    free(text);
    json_decref(meta);
    json_t *extra = json_pack("{s:{s:s}}", "parameters", "access", "open");
    assert_true(veil_ok(veil_serve_model_metadata_json(&model_m, extra, &meta)));
    assert_string_equal(json_string_value(json_object_get(json_object_get(meta, "parameters"), "access")), "open");
    assert_int_equal(json_array_size(json_object_get(meta, "outputs")), 2);
    json_decref(meta);
    json_decref(extra);
    extra = json_pack("{s:s}", "platform", "other");
    meta = NULL;
    assert_int_equal(veil_serve_model_metadata_json(&model_m, extra, &meta).status, VEIL_ERR_ARG);
    assert_null(meta);
    json_decref(extra);
}

/* ---- usage policy ----------------------------------------------------------------------------------------- */

#define ALICE_KEY "alice-secret-key"
#define ALICE_HASH "d85cc5e31c65548b64632af4304e20eb0f792b7280b1cf6fd73ffa0d9c745f5b" /* sha256sum */
#define BOB_KEY "bob-secret-key"
#define BOB_HASH "2656fecc42e5ed2e72a2a5f2d92068d8c7bfe8f9af4c62895a25dcb6f5bbb64b"

static struct veil_usage_policy *policy(const char *json)
{
    struct veil_usage_policy *p = NULL;
    struct veil_result r = veil_usage_parse(json, strlen(json), &p);
    if (!veil_ok(r))
        fail_msg("policy %s: %s", json, veil_last_error());
    return p;
}

static struct veil_usage_decision admit(struct veil_usage_policy *p, const char *auth, uint64_t now_ms)
{
    struct veil_usage_decision d;
    assert_true(veil_ok(veil_usage_admit(p, auth, now_ms, &d)));
    return d;
}

static void test_usage_parse_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "{}",                                                          /* version is required */
        "{\"version\":2}",
        "{\"version\":1,\"clientz\":[]}",                             /* a typo must not open the model */
        "{\"version\":1,\"clients\":[]}",                             /* empty: ambiguous, refused */
        "{\"version\":1,\"precisions\":[]}",
        "{\"version\":1,\"precisions\":[\"fp16\"]}",
        "{\"version\":1,\"precisions\":[\"bf16\",\"bf16\"]}",
        "{\"version\":1,\"precisions\":\"fp32\"}",
        "{\"version\":1,\"clients\":{}}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "\",\"budjet\":3}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\"}]}",
        "{\"version\":1,\"clients\":[{\"api_key_sha256\":\"" ALICE_HASH "\"}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a b\",\"api_key_sha256\":\"" ALICE_HASH "\"}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"\",\"api_key_sha256\":\"" ALICE_HASH "\"}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "\"},"
        "{\"name\":\"a\",\"api_key_sha256\":\"" BOB_HASH "\"}]}",     /* duplicate name */
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "\"},"
        "{\"name\":\"b\",\"api_key_sha256\":\"" ALICE_HASH "\"}]}",   /* duplicate hash */
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"0\"}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"D85CC5E31C65548B64632AF4304E20EB0F792B7280"
        "B1CF6FD73FFA0D9C745F5B\"}]}",                                /* upper case */
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "0\"}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "\",\"budget\":-1}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "\",\"budget\":1.5}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "\",\"rate_per_s\":0}]}",
        "{\"version\":1,\"clients\":[{\"name\":\"a\",\"api_key_sha256\":\"" ALICE_HASH "\",\"burst\":5}]}",
        "{\"version\":1,\"global\":{\"rate_per_s\":10,\"burst\":0.5}}",
        "{\"version\":1,\"global\":{\"rate_per_s\":2000000}}",
        "{\"version\":1,\"global\":{\"rate_per_s\":\"10\"}}",
        "{\"version\":1,\"global\":{\"rate\":10}}",
        "{\"version\":1,\"output\":{\"max_top_k\":0}}",
        "{\"version\":1,\"output\":{\"round_decimals\":10}}",
        "{\"version\":1,\"output\":{\"classification_only\":1}}",
        "{\"version\":1,\"output\":{\"top_k\":5}}",
        "{\"version\":1,\"version\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct veil_usage_policy *p = (struct veil_usage_policy *)(uintptr_t)1;
        struct veil_result r = veil_usage_parse(bad[i], strlen(bad[i]), &p);
        if (r.status != VEIL_ERR_ARG)
            fail_msg("policy %zu (%s) gave %d", i, bad[i], r.status);
        assert_null(p);
        assert_null(strstr(veil_last_error(), "d85cc5e3")); /* never a hash in a message */
        assert_null(strstr(veil_last_error(), "D85CC5E3"));
    }
    /* Over the client cap: VEIL_ERR_LIMIT. */
    struct veil_buf big;
    veil_buf_init(&big);
    assert_true(veil_ok(veil_buf_append(&big, "{\"version\":1,\"clients\":[", 24)));
    for (unsigned i = 0; i <= VEIL_USAGE_MAX_CLIENTS; i++) {
        char c[160];
        snprintf(c, sizeof c, "%s{\"name\":\"c%u\",\"api_key_sha256\":\"%064x\"}", i ? "," : "", i, i);
        assert_true(veil_ok(veil_buf_append(&big, c, strlen(c))));
    }
    assert_true(veil_ok(veil_buf_append(&big, "]}", 2)));
    struct veil_usage_policy *p = NULL;
    assert_int_equal(veil_usage_parse((const char *)big.data, big.size, &p).status, VEIL_ERR_LIMIT);
    veil_buf_cleanup(&big);
    veil_usage_free(NULL);
}

static void test_usage_open(void **state)
{
    (void)state;
    struct veil_usage_policy *p = policy("{\"version\":1}");
    for (int i = 0; i < 100; i++) {
        struct veil_usage_decision d = admit(p, i % 2 ? NULL : "Bearer whatever", 0);
        assert_int_equal(d.status, 0);
        assert_null(d.reason);
        assert_string_equal(d.client, "");
    }
    const struct veil_serve_shaping *s = veil_usage_shaping(p);
    assert_int_equal(s->classification_only, 0);
    assert_int_equal(s->max_top_k, 0);
    assert_int_equal(s->round_decimals, -1);
    json_t *j = NULL;
    assert_true(veil_ok(veil_usage_summary_json(p, &j)));
    char *text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, "{\"access\":\"open\",\"classification_only\":false}");
    free(text);
    json_decref(j);
    veil_usage_free(p);

    /* An open policy can still cap the global rate. */
    p = policy("{\"version\":1,\"global\":{\"rate_per_s\":1,\"burst\":2}}");
    assert_int_equal(admit(p, NULL, 5000).status, 0);
    assert_int_equal(admit(p, NULL, 5000).status, 0);
    struct veil_usage_decision d = admit(p, NULL, 5000);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.reason, VEIL_USAGE_GLOBAL_RATE);
    assert_int_equal(d.retry_after_s, 1);
    assert_int_equal(admit(p, NULL, 5999).status, 429);
    assert_int_equal(admit(p, NULL, 6000).status, 0);
    veil_usage_free(p);
}

static void test_usage_api_keys(void **state)
{
    (void)state;
    struct veil_usage_policy *p = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\""
                                         ALICE_HASH "\"},{\"name\":\"bob@example.com\",\"api_key_sha256\":\"" BOB_HASH
                                         "\"}],\"output\":{\"classification_only\":true,\"max_top_k\":5,"
                                         "\"round_decimals\":3}}");
    static const char *const missing[] = {NULL, "", "Bearer", "Bearer ", "Bearer \t ", "Basic YWxpY2U6eA==",
                                          "Bearer" ALICE_KEY, ALICE_KEY, "Bearerx " ALICE_KEY};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        struct veil_usage_decision d = admit(p, missing[i], 0);
        assert_int_equal(d.status, 401);
        assert_string_equal(d.reason, VEIL_USAGE_MISSING_API_KEY);
        assert_string_equal(d.client, "");
    }
    char huge[VEIL_USAGE_MAX_API_KEY_SIZE + 16];
    memset(huge, 'k', sizeof huge - 1);
    memcpy(huge, "Bearer ", 7);
    huge[sizeof huge - 1] = '\0';
    static const char *const unknown[] = {"Bearer wrong", ("Bearer " ALICE_KEY "x"), ("Bearer " ALICE_HASH),
                                          "Bearer alice-secret-kez"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0] + 1; i++) {
        struct veil_usage_decision d = admit(p, i < 4 ? unknown[i] : huge, 0);
        assert_int_equal(d.status, 401);
        assert_string_equal(d.reason, VEIL_USAGE_UNKNOWN_API_KEY);
        assert_string_equal(d.client, "");
    }
    static const char *const good[] = {"Bearer " ALICE_KEY, "bearer " ALICE_KEY, "  BEARER   " ALICE_KEY " \t"};
    for (size_t i = 0; i < 3; i++) {
        struct veil_usage_decision d = admit(p, good[i], 0);
        assert_int_equal(d.status, 0);
        assert_string_equal(d.client, "alice");
    }
    assert_string_equal(admit(p, "Bearer " BOB_KEY, 0).client, "bob@example.com");
    const struct veil_serve_shaping *s = veil_usage_shaping(p);
    assert_int_equal(s->classification_only, 1);
    assert_int_equal(s->max_top_k, 5);
    assert_int_equal(s->round_decimals, 3);
    json_t *j = NULL;
    assert_true(veil_ok(veil_usage_summary_json(p, &j)));
    char *text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, "{\"access\":\"restricted\",\"classification_only\":true,\"max_top_k\":5,"
                              "\"round_decimals\":3}");
    free(text);
    json_decref(j);

    /* The policy's shaping drives the codec. */
    refused_ex(&model_m, "{\"inputs\":[" X1 "," Y1 "]}", NULL, 0, NULL, s, 400, "only available as classification");
    veil_usage_free(p);
}

static void test_usage_budget(void **state)
{
    (void)state;
    struct veil_usage_policy *p = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\""
                                         ALICE_HASH "\",\"budget\":3},{\"name\":\"bob\",\"api_key_sha256\":\"" BOB_HASH
                                         "\",\"budget\":0}]}");
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit(p, "Bearer " ALICE_KEY, (uint64_t)i).status, 0);
    for (int i = 0; i < 3; i++) {
        struct veil_usage_decision d = admit(p, "Bearer " ALICE_KEY, 1000000u * (uint64_t)i);
        assert_int_equal(d.status, 429);
        assert_string_equal(d.reason, VEIL_USAGE_BUDGET_EXHAUSTED);
        assert_string_equal(d.client, "alice");
        assert_int_equal(d.retry_after_s, 0); /* waiting will not help */
    }
    assert_string_equal(admit(p, "Bearer " BOB_KEY, 0).reason, VEIL_USAGE_BUDGET_EXHAUSTED); /* budget 0 */
    assert_int_equal(p->clients[0].used, 3);
    veil_usage_free(p);
}

/* A transformer's inputs: token ids (INT64) and a mask (BOOL or INT32) of [batch, sequence], the sequence dynamic;
 * its output [batch, sequence, 3] shaped by the plan that ran. */
static const struct veil_serve_io t_inputs[] = {{"ids", 2, {-1, -1}, 7}, {"mask", 2, {-1, -1}, 9},
                                                {"pos", 2, {1, -1}, 6}};
static const struct veil_serve_io t_outputs[] = {{"logits", 3, {-1, -1, 3}, 1}};
static const struct veil_serve_model model_t = {"bert", NULL, t_inputs, t_outputs, 3, 1, 4, 16};

#define T_IDS(shape, data) "{\"name\":\"ids\",\"datatype\":\"INT64\",\"shape\":" shape ",\"data\":" data "}"
#define T_MASK(shape, data) "{\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":" shape ",\"data\":" data "}"
#define T_POS(shape, data) "{\"name\":\"pos\",\"datatype\":\"INT32\",\"shape\":" shape ",\"data\":" data "}"
#define T_REQ(ids, mask, pos) "{\"inputs\":[" ids "," mask "," pos "]}"

static void t_refused(const char *json, const void *tail, size_t tail_size, const char *needle)
{
    refused_ex(&model_t, json, tail, tail_size, NULL, &no_shaping, 400, needle);
}

static void test_typed_and_dynamic_inputs(void **state)
{
    (void)state;
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    assert_true(veil_ok(veil_serve_model_check(&model_t)));
    assert_int_equal(parse(&model_t, T_REQ(T_IDS("[2,3]", "[[101,7,-16777216],[0,16777216,5]]"),
                                           T_MASK("[2,3]", "[true,true,false,true,false,true]"),
                                           T_POS("[1,5]", "[0,1,2,3,4]")), NULL, 0, &req, msg), 200);
    assert_int_equal(req.batch, 2);
    assert_int_equal(req.input_shapes[0].rank, 2);
    assert_int_equal(req.input_shapes[0].dims[1], 3);
    assert_int_equal(req.input_shapes[2].dims[1], 5); /* per input: the engine checks that they agree when it plans */
    assert_int_equal(req.input_sizes[0], 6 * 8);
    assert_int_equal(req.input_sizes[1], 6);
    assert_int_equal(req.input_sizes[2], 5 * 4);
    const int64_t *ids = (const int64_t *)(const void *)req.inputs[0];
    const uint8_t *mask = (const uint8_t *)req.inputs[1];
    const int32_t *pos = (const int32_t *)(const void *)req.inputs[2];
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[2], -16777216);
    assert_int_equal(ids[4], 16777216);
    assert_int_equal(mask[2], 0);
    assert_int_equal(mask[5], 1);
    assert_int_equal(pos[4], 4);

    /* the response takes the shapes of the plan that ran */
    float logits[2 * 3 * 3];
    fill(logits, 18, 0.5f, 1.0f);
    const float *outs[] = {logits};
    req.output_count = 1;
    req.outputs[0] = (struct veil_serve_output_req){0, 0, 0};
    req.output_shapes_set = 1;
    req.output_shapes[0] = (struct veil_serve_shape){3, {2, 3, 3}};
    size_t size = 0, json_size = 0;
    char *body = build(&model_t, &req, outs, &no_shaping, &size, &json_size);
    assert_non_null(strstr(body, "\"shape\":[2,3,3]"));
    assert_non_null(strstr(body, "17.5]"));
    free(body);
    veil_serve_request_cleanup(&req);

    /* binary: INT64 little-endian, BOOL bytes */
    uint8_t tail[2 * 8 + 2 + 2 * 4] = {0};
    tail[0] = 5, tail[8] = 0xff, tail[9] = 0xff, tail[10] = 0xff, tail[11] = 0xff, tail[12] = 0xff, tail[13] = 0xff,
    tail[14] = 0xff, tail[15] = 0xff; /* 5, -1 */
    tail[16] = 1, tail[17] = 0, tail[18] = 3;
    const char *bin = "{\"inputs\":[{\"name\":\"ids\",\"datatype\":\"INT64\",\"shape\":[1,2],\"parameters\":"
                      "{\"binary_data_size\":16}},{\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":[1,2],"
                      "\"parameters\":{\"binary_data_size\":2}},{\"name\":\"pos\",\"datatype\":\"INT32\","
                      "\"shape\":[1,2],\"parameters\":{\"binary_data_size\":8}}]}";
    assert_int_equal(parse(&model_t, bin, tail, sizeof tail, &req, msg), 200);
    ids = (const int64_t *)(const void *)req.inputs[0];
    assert_int_equal(ids[1], -1);
    assert_int_equal(((const int32_t *)(const void *)req.inputs[2])[0], 3);
    veil_serve_request_cleanup(&req);
    tail[17] = 2; /* a BOOL byte of 2 */
    t_refused(bin, tail, sizeof tail, "not 0 or 1");
    tail[17] = 0, tail[7] = 0x01; /* 2^56 + 5 */
    t_refused(bin, tail, sizeof tail, "outside +-16777216");

    /* refusals: the datatype, the range, the element kind, the dynamic bound, the rank */
    t_refused(T_REQ(T_IDS("[1,2]", "[1,2]"), T_MASK("[1,2]", "[true,false]"),
                    "{\"name\":\"pos\",\"datatype\":\"INT64\",\"shape\":[1,2],\"data\":[0,1]}"), NULL, 0,
              "input 'pos' takes INT32, not INT64");
    t_refused(T_REQ(T_IDS("[1,2]", "[1,16777217]"), T_MASK("[1,2]", "[true,false]"), T_POS("[1,2]", "[0,1]")), NULL, 0,
              "outside +-16777216");
    t_refused(T_REQ(T_IDS("[1,2]", "[1,2.5]"), T_MASK("[1,2]", "[true,false]"), T_POS("[1,2]", "[0,1]")), NULL, 0,
              "must hold only integers");
    t_refused(T_REQ(T_IDS("[1,2]", "[1,2]"), T_MASK("[1,2]", "[1,0]"), T_POS("[1,2]", "[0,1]")), NULL, 0,
              "only true and false");
    t_refused(T_REQ(T_IDS("[1,17]", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]"), T_MASK("[1,2]", "[true,false]"),
                    T_POS("[1,2]", "[0,1]")), NULL, 0, "takes at most 16 there");
    t_refused(T_REQ(T_IDS("[1,2,1]", "[1,2]"), T_MASK("[1,2]", "[true,false]"), T_POS("[1,2]", "[0,1]")), NULL, 0,
              "unexpected shape for input 'ids'");

    /* the model's description: a dynamic dim needs max_dim; the metadata shows -1 and each input's datatype */
    struct veil_serve_model no_max = model_t;
    no_max.max_dim = 0;
    assert_int_equal(veil_serve_model_check(&no_max).status, VEIL_ERR_ARG);
    struct veil_serve_io odd_out[] = {{"o", 1, {2}, 7}};
    struct veil_serve_model int_out = model_t;
    int_out.outputs = odd_out, int_out.output_count = 1;
    assert_int_equal(veil_serve_model_check(&int_out).status, VEIL_ERR_ARG); /* outputs are FP32 */
    json_t *meta = NULL;
    assert_true(veil_ok(veil_serve_model_metadata_json(&model_t, NULL, &meta)));
    char *text = json_dumps(json_object_get(meta, "inputs"), JSON_COMPACT);
    assert_string_equal(text, "[{\"name\":\"ids\",\"datatype\":\"INT64\",\"shape\":[-1,-1]},{\"name\":\"mask\","
                              "\"datatype\":\"BOOL\",\"shape\":[-1,-1]},{\"name\":\"pos\",\"datatype\":\"INT32\","
                              "\"shape\":[1,-1]}]");
    free(text);
    json_decref(meta);
}

/* Counts kept upstream (usage.h): the budget is judged against upstream + what this process admitted since its
 * last acknowledged report; a report lost on the way is sent again. */
static void test_usage_counts(void **state)
{
    (void)state;
    struct veil_usage_policy *pinned = policy("{\"version\":1,\"precisions\":[\"fp32\",\"bf16\"]}");
    assert_int_equal(pinned->precisions, VEIL_USAGE_PRECISION_FP32 | VEIL_USAGE_PRECISION_BF16);
    json_t *summary = NULL;
    assert_true(veil_ok(veil_usage_summary_json(pinned, &summary)));
    char *st = json_dumps(json_object_get(summary, "precisions"), JSON_COMPACT);
    assert_string_equal(st, "[\"fp32\",\"bf16\"]");
    free(st);
    json_decref(summary);
    veil_usage_free(pinned);
    struct veil_usage_policy *p = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\""
                                         ALICE_HASH "\",\"budget\":5},{\"name\":\"bob\",\"api_key_sha256\":\"" BOB_HASH
                                         "\"}]}");
    json_t *counts = NULL, *sent = NULL;
    assert_true(veil_ok(veil_usage_counts_parse("{\"alice\":3,\"zed\":1}", strlen("{\"alice\":3,\"zed\":1}"), 0, &counts)));
    veil_usage_acknowledge(p, NULL, counts); /* other processes admitted 3 of alice's 5 */
    json_decref(counts);
    assert_int_equal(admit(p, "Bearer " ALICE_KEY, 0).status, 0);
    char *report = NULL;
    assert_true(veil_ok(veil_usage_unreported(p, &report)));
    assert_string_equal(report, "{\"alice\":1}");
    /* the report was lost: nothing acknowledged, the same one goes again, with what came since */
    assert_int_equal(admit(p, "Bearer " ALICE_KEY, 1).status, 0);
    assert_string_equal(admit(p, "Bearer " ALICE_KEY, 2).reason, VEIL_USAGE_BUDGET_EXHAUSTED);
    free(report);
    assert_true(veil_ok(veil_usage_unreported(p, &report)));
    assert_string_equal(report, "{\"alice\":2}");
    assert_true(veil_ok(veil_usage_counts_parse(report, strlen(report), 1, &sent)));
    assert_true(veil_ok(veil_usage_counts_parse("{\"alice\":5}", strlen("{\"alice\":5}"), 0, &counts)));
    veil_usage_acknowledge(p, sent, counts);
    free(report);
    assert_true(veil_ok(veil_usage_unreported(p, &report)));
    assert_string_equal(report, "{}");
    free(report);
    assert_string_equal(admit(p, "Bearer " ALICE_KEY, 3).reason, VEIL_USAGE_BUDGET_EXHAUSTED);
    assert_int_equal(admit(p, "Bearer " BOB_KEY, 3).status, 0); /* no budget: counted, never refused */
    json_decref(sent), json_decref(counts);
    /* the owner raised the budget upstream's count did not: alice's 5 stay counted */
    veil_usage_free(p);

    /* restricted to a policy's clients: a made-up name goes; an open policy (or none) has no clients */
    json_t *mixed = NULL;
    assert_true(veil_ok(veil_usage_counts_parse("{\"alice\":2,\"mallory\":9}", 23, 0, &mixed)));
    struct veil_usage_policy *two = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\""
                                           ALICE_HASH "\"}]}");
    veil_usage_counts_restrict(mixed, two);
    char *kept = json_dumps(mixed, JSON_COMPACT);
    assert_string_equal(kept, "{\"alice\":2}");
    free(kept);
    assert_true(veil_ok(veil_usage_counts_restrict_text(mixed, NULL)));
    assert_int_equal(json_object_size(mixed), 0);
    assert_int_equal(veil_usage_counts_restrict_text(mixed, "{\"version\":9}").status, VEIL_ERR_ARG);
    json_decref(mixed);
    veil_usage_free(two);

    /* the documents: strict, sorted, zeros dropped on request, sums capped at 2^53, differences floored at 0 */
    assert_true(veil_ok(veil_usage_counts_parse("{\"b\":0,\"a\":2}", strlen("{\"b\":0,\"a\":2}"), 1, &counts)));
    char *text = json_dumps(counts, JSON_COMPACT);
    assert_string_equal(text, "{\"a\":2}");
    free(text);
    assert_true(veil_ok(veil_usage_counts_parse("{\"a\":9007199254740992}", strlen("{\"a\":9007199254740992}"), 0, &sent)));
    assert_true(veil_ok(veil_usage_counts_add(counts, sent, 1)));
    assert_int_equal(json_integer_value(json_object_get(counts, "a")), 9007199254740992LL);
    assert_true(veil_ok(veil_usage_counts_add(counts, sent, 1)));
    assert_int_equal(json_integer_value(json_object_get(counts, "a")), 9007199254740992LL);
    assert_true(veil_ok(veil_usage_counts_add(counts, sent, -1)));
    assert_true(veil_ok(veil_usage_counts_add(counts, sent, -1)));
    assert_int_equal(json_integer_value(json_object_get(counts, "a")), 0);
    json_decref(counts), json_decref(sent);
    static const char *const bad[] = {"[]", "{\"a\":-1}", "{\"a\":1.5}", "{\"a\":9007199254740993}",
                                      "{\"a b\":1}", "{\"\":1}", "{\"a\":\"1\"}", "{\"a\":1,\"a\":2}", "null",
                                      "{\"a\":true}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        counts = (json_t *)1;
        assert_int_equal(veil_usage_counts_parse(bad[i], strlen(bad[i]), 0, &counts).status, VEIL_ERR_FORMAT);
        assert_null(counts);
    }
}

static void test_usage_rates(void **state)
{
    (void)state;
    /* alice: 2/s, burst 3, budget 5. */
    struct veil_usage_policy *p = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\""
                                         ALICE_HASH "\",\"budget\":5,\"rate_per_s\":2,\"burst\":3},{\"name\":\"bob\","
                                         "\"api_key_sha256\":\"" BOB_HASH "\"}]}");
    const char *a = "Bearer " ALICE_KEY;
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit(p, a, 10000).status, 0);
    struct veil_usage_decision d = admit(p, a, 10000);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.reason, VEIL_USAGE_CLIENT_RATE);
    assert_int_equal(d.retry_after_s, 1);
    assert_int_equal(admit(p, a, 9000).status, 429);                 /* a clock going back refills nothing */
    assert_int_equal(admit(p, "Bearer " BOB_KEY, 10000).status, 0); /* per client */
    assert_int_equal(admit(p, a, 10400).status, 429);
    assert_int_equal(admit(p, a, 10500).status, 0); /* 2/s: one token per 500 ms */
    assert_int_equal(p->clients[0].used, 4);        /* rate refusals spend no budget */
    assert_int_equal(admit(p, a, 99999).status, 0);
    assert_string_equal(admit(p, a, 999999).reason, VEIL_USAGE_BUDGET_EXHAUSTED);
    veil_usage_free(p);

    /* The global bucket refusing spends no client token; slow rates give long waits. */
    p = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\"" ALICE_HASH "\",\"rate_per_s\""
               ":1,\"burst\":1},{\"name\":\"bob\",\"api_key_sha256\":\"" BOB_HASH "\",\"rate_per_s\":1}],\"global\":"
               "{\"rate_per_s\":0.1}}");
    assert_int_equal(admit(p, a, 0).status, 0);
    d = admit(p, "Bearer " BOB_KEY, 0);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.reason, VEIL_USAGE_GLOBAL_RATE);
    assert_int_equal(d.retry_after_s, 10);
    assert_int_equal(admit(p, "Bearer " BOB_KEY, 10000).status, 0); /* bob's own bucket was never touched */
    assert_string_equal(admit(p, a, 10000).reason, VEIL_USAGE_GLOBAL_RATE);
    veil_usage_free(p);
}

#define HAMMER_THREADS 4
#define HAMMER_CALLS 20000

struct hammer {
    struct veil_usage_policy *policy;
    pthread_barrier_t *start;
    int admitted, rate_refused, budget_refused;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    pthread_barrier_wait(h->start); /* all threads at once, so that a missing lock shows */
    for (int i = 0; i < HAMMER_CALLS; i++) {
        struct veil_usage_decision d;
        if (!veil_ok(veil_usage_admit(h->policy, "Bearer " ALICE_KEY, (uint64_t)i / 10, &d)))
            abort();
        if (d.status == 0)
            h->admitted++;
        else if (strcmp(d.reason, VEIL_USAGE_BUDGET_EXHAUSTED) == 0)
            h->budget_refused++;
        else
            h->rate_refused++;
    }
    return NULL;
}

/* Runs HAMMER_THREADS threads of HAMMER_CALLS admissions each; returns the number admitted. */
static int hammer(struct veil_usage_policy *p, int *refused)
{
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, HAMMER_THREADS), 0);
    struct hammer h[HAMMER_THREADS];
    pthread_t t[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        h[i] = (struct hammer){.policy = p, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
    }
    int admitted = 0;
    refused[0] = refused[1] = 0;
    for (int i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        admitted += h[i].admitted;
        refused[0] += h[i].budget_refused;
        refused[1] += h[i].rate_refused;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(admitted + refused[0] + refused[1], HAMMER_THREADS * HAMMER_CALLS);
    return admitted;
}

static void test_usage_concurrency(void **state)
{
    (void)state;
    /* A budget of 61234 against 80000 concurrent requests: exactly 61234 pass, and the counter agrees. */
    struct veil_usage_policy *p = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\""
                                         ALICE_HASH "\",\"budget\":61234}]}");
    int refused[2];
    assert_int_equal(hammer(p, refused), 61234);
    assert_int_equal(refused[1], 0);
    assert_int_equal(p->clients[0].used, 61234);
    veil_usage_free(p);

    /* A global rate of 1000/s, burst 50, clocks of every thread within 0..1999 ms: at most 50 + 1999 tokens, each
     * admitted request counted once. */
    p = policy("{\"version\":1,\"clients\":[{\"name\":\"alice\",\"api_key_sha256\":\"" ALICE_HASH "\",\"budget\":"
               "100000}],\"global\":{\"rate_per_s\":1000,\"burst\":50}}");
    int admitted = hammer(p, refused);
    assert_true(admitted >= 50 && admitted <= 50 + 1999);
    assert_int_equal(refused[0], 0);
    assert_int_equal((int)p->clients[0].used, admitted);
    veil_usage_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_flat_and_nested),
        cmocka_unit_test(test_binary_request_from_tritonclient),
        cmocka_unit_test(test_mixed_json_and_binary),
        cmocka_unit_test(test_request_parameters),
        cmocka_unit_test(test_id_echo),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_binary_length_lies),
        cmocka_unit_test(test_dtype_and_shape),
        cmocka_unit_test(test_inputs_unknown_duplicate_missing),
        cmocka_unit_test(test_data_sources),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_non_finite),
        cmocka_unit_test(test_outputs_requested),
        cmocka_unit_test(test_model_check),
        cmocka_unit_test(test_response_json),
        cmocka_unit_test(test_response_binary_exact),
        cmocka_unit_test(test_classification_binary_exact),
        cmocka_unit_test(test_classification_json),
        cmocka_unit_test(test_classification_top_k_order),
        cmocka_unit_test(test_shaping),
        cmocka_unit_test(test_mixed_outputs_tail_order),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_usage_parse_errors),
        cmocka_unit_test(test_usage_open),
        cmocka_unit_test(test_usage_api_keys),
        cmocka_unit_test(test_usage_budget),
        cmocka_unit_test(test_usage_counts),
        cmocka_unit_test(test_typed_and_dynamic_inputs),
        cmocka_unit_test(test_usage_rates),
        cmocka_unit_test(test_usage_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
