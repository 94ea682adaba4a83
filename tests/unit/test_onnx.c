/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for lib/onnx: split, tensor table and join on hand-built ModelProtos, one expected error per
 * documented failure. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "onnx/onnx.h"
#include "onnx/pb.h"

/* ---- a tiny protobuf builder ----------------------------------------------------------------------------- */

static void ok(struct veil_result r)
{
    if (r.status != VEIL_OK)
        fail_msg("unexpected failure %d: %s", (int)r.status, veil_last_error());
}

static void pv(struct veil_buf *b, uint32_t number, uint64_t v)
{
    ok(veil_pb_append_varint_field(b, number, v));
}

static void pl(struct veil_buf *b, uint32_t number, const void *p, size_t n)
{
    ok(veil_pb_append_len(b, number, p, n));
}

static void ps(struct veil_buf *b, uint32_t number, const char *s)
{
    pl(b, number, s, strlen(s));
}

/* Appends m as a sub-message and frees it. */
static void pm(struct veil_buf *b, uint32_t number, struct veil_buf *m)
{
    pl(b, number, m->data, m->size);
    veil_buf_cleanup(m);
}

static void pf32(struct veil_buf *b, uint32_t number, uint32_t v)
{
    ok(veil_pb_append_key(b, number, VEIL_PB_I32));
    ok(veil_buf_append_u32le(b, v));
}

static void pf64(struct veil_buf *b, uint32_t number, uint64_t v)
{
    ok(veil_pb_append_key(b, number, VEIL_PB_I64));
    ok(veil_buf_append_u64le(b, v));
}

static void raw(struct veil_buf *b, const void *p, size_t n)
{
    ok(veil_buf_append(b, p, n));
}

static int contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return 1;
    return 0;
}

static uint32_t f32bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* A TensorProto's dims, data_type and name. */
static void tensor_head(struct veil_buf *t, const char *name, int32_t dtype, const int64_t *dims, size_t rank)
{
    for (size_t i = 0; i < rank; i++)
        pv(t, 1, (uint64_t)dims[i]);
    pv(t, 2, (uint64_t)(int64_t)dtype);
    ps(t, 8, name);
}

static void float_raw_tensor(struct veil_buf *t, const char *name, const float *v, size_t n)
{
    int64_t dims[1] = {(int64_t)n};
    tensor_head(t, name, VEIL_ONNX_FLOAT, dims, 1);
    pl(t, 9, v, n * 4);
}

/* Graph fields: a Relu node, a name, the given initializers (each consumed), an output. */
static void graph_with(struct veil_buf *g, struct veil_buf *inits, size_t n)
{
    struct veil_buf node = {0};
    ps(&node, 1, "x");
    ps(&node, 2, "y");
    ps(&node, 4, "Relu");
    pm(g, 1, &node);
    ps(g, 2, "g");
    for (size_t i = 0; i < n; i++)
        pm(g, 5, &inits[i]);
    struct veil_buf out = {0};
    ps(&out, 1, "y");
    pm(g, 12, &out);
}

/* A ModelProto around graph (consumed). */
static void model_with_graph(struct veil_buf *m, struct veil_buf *graph)
{
    pv(m, 1, 8);
    ps(m, 2, "veil-test");
    struct veil_buf op = {0};
    ps(&op, 1, "");
    pv(&op, 2, 17);
    pm(m, 8, &op);
    pm(m, 7, graph);
    ps(m, 6, "doc after the graph");
}

static void model_of(struct veil_buf *m, struct veil_buf *inits, size_t n)
{
    struct veil_buf g = {0};
    graph_with(&g, inits, n);
    model_with_graph(m, &g);
}

static void model_of_one(struct veil_buf *m, struct veil_buf *init)
{
    model_of(m, init, 1);
}

/* ---- checks ---------------------------------------------------------------------------------------------- */

static void expect_split_error(const struct veil_buf *m, veil_status status, const char *text)
{
    struct veil_onnx_split s = {0};
    struct veil_result r = veil_onnx_split(m->data, m->size, &s);
    if (r.status != status)
        fail_msg("expected status %d, got %d: %s", (int)status, (int)r.status, veil_last_error());
    if (text != NULL && strstr(veil_last_error(), text) == NULL)
        fail_msg("expected '%s' in '%s'", text, veil_last_error());
    veil_onnx_split_cleanup(&s);
}

static void expect_table_error(const struct veil_buf *g, veil_status status, const char *text)
{
    struct veil_onnx_tensor *t = NULL;
    size_t n = 0;
    struct veil_result r = veil_onnx_tensor_table(g->data, g->size, &t, &n);
    if (r.status != status)
        fail_msg("expected status %d, got %d: %s", (int)status, (int)r.status, veil_last_error());
    if (text != NULL && strstr(veil_last_error(), text) == NULL)
        fail_msg("expected '%s' in '%s'", text, veil_last_error());
    veil_onnx_tensors_free(t, n);
}

static void same_meta(const struct veil_onnx_tensor *a, const struct veil_onnx_tensor *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->rank, b->rank);
    assert_memory_equal(a->dims, b->dims, sizeof a->dims);
    assert_int_equal(a->size, b->size);
}

static void join_split(const struct veil_onnx_split *s, struct veil_buf *out)
{
    const uint8_t **data = calloc(s->tensor_count + 1, sizeof *data);
    uint64_t *sizes = calloc(s->tensor_count + 1, sizeof *sizes);
    assert_non_null(data);
    assert_non_null(sizes);
    for (size_t i = 0; i < s->tensor_count; i++) {
        data[i] = s->tensors[i].data;
        sizes[i] = s->tensors[i].size;
    }
    ok(veil_onnx_join(s->graph.data, s->graph.size, data, sizes, s->tensor_count, out));
    free(data);
    free(sizes);
}

/* split -> table -> join -> split again: same stripped graph, same tensors, bit for bit. */
static void round_trip(const struct veil_buf *m, struct veil_onnx_split *s, struct veil_buf *joined)
{
    ok(veil_onnx_split(m->data, m->size, s));
    struct veil_onnx_tensor *t = NULL;
    size_t n = 0;
    ok(veil_onnx_tensor_table(s->graph.data, s->graph.size, &t, &n));
    assert_int_equal(n, s->tensor_count);
    for (size_t i = 0; i < n; i++) {
        same_meta(&t[i], &s->tensors[i]);
        assert_null(t[i].data);
    }
    veil_onnx_tensors_free(t, n);
    join_split(s, joined);
    struct veil_onnx_split again = {0};
    ok(veil_onnx_split(joined->data, joined->size, &again));
    assert_int_equal(again.graph.size, s->graph.size);
    assert_memory_equal(again.graph.data, s->graph.data, s->graph.size);
    assert_int_equal(again.tensor_count, s->tensor_count);
    for (size_t i = 0; i < n; i++) {
        same_meta(&again.tensors[i], &s->tensors[i]);
        if (s->tensors[i].size > 0)
            assert_memory_equal(again.tensors[i].data, s->tensors[i].data, s->tensors[i].size);
        assert_null(again.tensors[i].owned);
    }
    veil_onnx_split_cleanup(&again);
}

/* Round trip of a single-initializer model; checks the extracted bytes. */
static void check_one(struct veil_buf *init, int32_t dtype, const void *expect, size_t size)
{
    struct veil_buf m = {0}, joined = {0};
    model_of_one(&m, init);
    struct veil_onnx_split s = {0};
    round_trip(&m, &s, &joined);
    assert_int_equal(s.tensor_count, 1);
    assert_int_equal(s.tensors[0].dtype, dtype);
    assert_int_equal(s.tensors[0].size, size);
    if (size > 0)
        assert_memory_equal(s.tensors[0].data, expect, size);
    veil_onnx_split_cleanup(&s);
    veil_buf_cleanup(&joined);
    veil_buf_cleanup(&m);
}

/* ---- successes ------------------------------------------------------------------------------------------- */

static void test_float_raw_data(void **state)
{
    (void)state;
    const float v[3] = {1.5f, -2.0f, 3.25f};
    struct veil_buf init = {0}, m = {0}, joined = {0};
    float_raw_tensor(&init, "fc.weight", v, 3);
    model_of_one(&m, &init);
    struct veil_onnx_split s = {0};
    round_trip(&m, &s, &joined);
    assert_int_equal(s.tensor_count, 1);
    assert_string_equal(s.tensors[0].name, "fc.weight");
    assert_int_equal(s.tensors[0].rank, 1);
    assert_int_equal(s.tensors[0].dims[0], 3);
    assert_int_equal(s.tensors[0].size, 12);
    assert_null(s.tensors[0].owned);
    assert_true(s.tensors[0].data >= m.data && s.tensors[0].data < m.data + m.size);
    assert_memory_equal(s.tensors[0].data, v, 12);
    assert_true(s.graph.size == m.size - 14);  /* raw_data: key, length, 12 bytes */
    /* raw_data was the last field of the tensor, so joining gives the very same bytes back. */
    assert_int_equal(joined.size, m.size);
    assert_memory_equal(joined.data, m.data, m.size);
    veil_onnx_split_cleanup(&s);
    veil_buf_cleanup(&joined);
    veil_buf_cleanup(&m);
}

static void test_float_data_packed(void **state)
{
    (void)state;
    const float v[4] = {0.5f, 1.0f, -1.0f, 1e30f};
    int64_t dims[2] = {2, 2};
    struct veil_buf init = {0};
    tensor_head(&init, "packed", VEIL_ONNX_FLOAT, dims, 2);
    pl(&init, 4, v, sizeof v);
    ps(&init, 12, "doc kept after the data");
    check_one(&init, VEIL_ONNX_FLOAT, v, sizeof v);
}

static void test_float_data_unpacked(void **state)
{
    (void)state;
    const float v[3] = {7.0f, 8.0f, 9.0f};
    int64_t dims[1] = {3};
    struct veil_buf init = {0};
    for (size_t i = 0; i < 3; i++)
        pf32(&init, 4, f32bits(v[i]));
    tensor_head(&init, "unpacked", VEIL_ONNX_FLOAT, dims, 1);
    check_one(&init, VEIL_ONNX_FLOAT, v, sizeof v);
}

static void test_float_data_mixed_runs(void **state)
{
    (void)state;
    const float v[3] = {1.0f, 2.0f, 3.0f};
    int64_t dims[1] = {3};
    struct veil_buf init = {0};
    tensor_head(&init, "runs", VEIL_ONNX_FLOAT, dims, 1);
    pl(&init, 4, v, 8);
    pf32(&init, 4, f32bits(v[2]));
    check_one(&init, VEIL_ONNX_FLOAT, v, sizeof v);
}

static void test_complex64(void **state)
{
    (void)state;
    const float v[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    int64_t dims[1] = {2};
    struct veil_buf init = {0};
    tensor_head(&init, "c", VEIL_ONNX_COMPLEX64, dims, 1);
    pl(&init, 4, v, sizeof v);
    check_one(&init, VEIL_ONNX_COMPLEX64, v, sizeof v);
}

static void test_int64_data(void **state)
{
    (void)state;
    const int64_t v[3] = {-1, 0, INT64_MAX};
    int64_t dims[1] = {3};
    struct veil_buf init = {0}, packed = {0};
    for (size_t i = 0; i < 3; i++)
        ok(veil_buf_append_varint(&packed, (uint64_t)v[i]));
    tensor_head(&init, "shape", VEIL_ONNX_INT64, dims, 1);
    pm(&init, 7, &packed);
    uint8_t expect[24];
    for (size_t i = 0; i < 3; i++)
        veil_store_u64le(expect + 8 * i, (uint64_t)v[i]);
    check_one(&init, VEIL_ONNX_INT64, expect, sizeof expect);
}

static void test_fp16_in_int32_data(void **state)
{
    (void)state;
    const uint16_t v[2] = {0x3c00, 0xbc00};
    int64_t dims[1] = {2};
    struct veil_buf init = {0}, packed = {0};
    for (size_t i = 0; i < 2; i++)
        ok(veil_buf_append_varint(&packed, v[i]));
    tensor_head(&init, "half", VEIL_ONNX_FLOAT16, dims, 1);
    pm(&init, 5, &packed);
    const uint8_t expect[4] = {0x00, 0x3c, 0x00, 0xbc};
    check_one(&init, VEIL_ONNX_FLOAT16, expect, sizeof expect);
}

static void test_bool_and_int8(void **state)
{
    (void)state;
    int64_t dims[1] = {3};
    struct veil_buf b = {0}, i8 = {0};
    tensor_head(&b, "mask", VEIL_ONNX_BOOL, dims, 1);
    pv(&b, 5, 1);
    pv(&b, 5, 0);
    pv(&b, 5, 1);
    const uint8_t expect_b[3] = {1, 0, 1};
    check_one(&b, VEIL_ONNX_BOOL, expect_b, 3);
    tensor_head(&i8, "q", VEIL_ONNX_INT8, dims, 1);
    pv(&i8, 5, (uint64_t)(int64_t)-1);  /* int32 -1: a ten-byte sign-extended varint */
    pv(&i8, 5, 127);
    pv(&i8, 5, (uint64_t)(int64_t)-128);
    const uint8_t expect_i8[3] = {0xff, 0x7f, 0x80};
    check_one(&i8, VEIL_ONNX_INT8, expect_i8, 3);
}

static void test_double_and_uint_data(void **state)
{
    (void)state;
    int64_t dims[1] = {2};
    struct veil_buf d = {0}, u32 = {0}, u64 = {0};
    const double dv[2] = {3.5, -0.25};
    uint64_t bits[2];
    memcpy(bits, dv, sizeof bits);
    tensor_head(&d, "d", VEIL_ONNX_DOUBLE, dims, 1);
    pf64(&d, 10, bits[0]);
    pf64(&d, 10, bits[1]);
    check_one(&d, VEIL_ONNX_DOUBLE, dv, sizeof dv);
    tensor_head(&u32, "u32", VEIL_ONNX_UINT32, dims, 1);
    pv(&u32, 11, 0xdeadbeef);
    pv(&u32, 11, 1);
    const uint8_t expect32[8] = {0xef, 0xbe, 0xad, 0xde, 1, 0, 0, 0};
    check_one(&u32, VEIL_ONNX_UINT32, expect32, 8);
    tensor_head(&u64, "u64", VEIL_ONNX_UINT64, dims, 1);
    pv(&u64, 11, UINT64_MAX);
    pv(&u64, 11, 2);
    uint8_t expect64[16];
    veil_store_u64le(expect64, UINT64_MAX);
    veil_store_u64le(expect64 + 8, 2);
    check_one(&u64, VEIL_ONNX_UINT64, expect64, 16);
}

static void test_scalar_and_empty(void **state)
{
    (void)state;
    const float one = 1.0f;
    struct veil_buf scalar = {0}, empty = {0}, empty_raw = {0};
    tensor_head(&scalar, "scalar", VEIL_ONNX_FLOAT, NULL, 0);
    pl(&scalar, 9, &one, 4);
    check_one(&scalar, VEIL_ONNX_FLOAT, &one, 4);
    int64_t dims[2] = {4, 0};
    tensor_head(&empty, "empty", VEIL_ONNX_INT64, dims, 2);
    check_one(&empty, VEIL_ONNX_INT64, NULL, 0);
    tensor_head(&empty_raw, "empty_raw", VEIL_ONNX_FLOAT, dims, 2);
    pl(&empty_raw, 9, "", 0);
    check_one(&empty_raw, VEIL_ONNX_FLOAT, NULL, 0);
}

static void test_string_initializer_stays(void **state)
{
    (void)state;
    const float v[2] = {1.0f, 2.0f};
    int64_t dims[1] = {2};
    struct veil_buf inits[3] = {{0}}, m = {0}, joined = {0};
    tensor_head(&inits[0], "labels", VEIL_ONNX_STRING, dims, 1);
    ps(&inits[0], 6, "cat");
    ps(&inits[0], 6, "dog");
    float_raw_tensor(&inits[1], "w", v, 2);
    float_raw_tensor(&inits[2], "b", v, 1);
    size_t string_size = inits[0].size;
    model_of(&m, inits, 3);
    struct veil_onnx_split s = {0};
    round_trip(&m, &s, &joined);
    assert_int_equal(s.tensor_count, 2);
    assert_string_equal(s.tensors[0].name, "w");
    assert_string_equal(s.tensors[1].name, "b");
    assert_int_equal(s.graph.size, m.size - 10 - 6);
    /* the string tensor is still in the stripped graph, byte for byte */
    const uint8_t needle[] = {'c', 'a', 't'};
    assert_true(contains(s.graph.data, s.graph.size, needle, 3));
    assert_true(string_size > 0);
    assert_int_equal(joined.size, m.size);
    assert_memory_equal(joined.data, m.data, m.size);
    veil_onnx_split_cleanup(&s);
    veil_buf_cleanup(&joined);
    veil_buf_cleanup(&m);
}

static void test_no_initializers(void **state)
{
    (void)state;
    struct veil_buf m = {0}, joined = {0};
    model_of(&m, NULL, 0);
    struct veil_onnx_split s = {0};
    round_trip(&m, &s, &joined);
    assert_int_equal(s.tensor_count, 0);
    assert_null(s.tensors);
    assert_int_equal(s.graph.size, m.size);
    veil_onnx_split_cleanup(&s);
    veil_buf_cleanup(&joined);
    veil_buf_cleanup(&m);
}

static void test_non_minimal_lengths_and_unknown_fields(void **state)
{
    (void)state;
    const float v[2] = {1.0f, 2.0f};
    struct veil_buf init = {0}, g = {0}, m = {0}, joined = {0};
    float_raw_tensor(&init, "w", v, 2);
    pv(&init, 1000, 5);            /* unknown tensor field: kept */
    graph_with(&g, &init, 1);
    pf64(&g, 900, 42);             /* unknown graph field: kept */
    pv(&m, 1, 8);
    struct veil_buf op = {0};
    pv(&op, 2, 17);
    pm(&m, 8, &op);
    const uint8_t key = 7 << 3 | 2;
    raw(&m, &key, 1);
    const uint8_t len[3] = {(uint8_t)(g.size | 0x80), (uint8_t)(g.size >> 7 | 0x80), 0};  /* padded varint */
    raw(&m, len, 3);
    raw(&m, g.data, g.size);
    veil_buf_cleanup(&g);
    struct veil_onnx_split s = {0};
    round_trip(&m, &s, &joined);
    assert_int_equal(s.tensor_count, 1);
    assert_memory_equal(s.tensors[0].data, v, 8);
    veil_onnx_split_cleanup(&s);
    veil_buf_cleanup(&joined);
    veil_buf_cleanup(&m);
}

static void test_dtype_size(void **state)
{
    (void)state;
    assert_int_equal(veil_onnx_dtype_size(VEIL_ONNX_FLOAT), 4);
    assert_int_equal(veil_onnx_dtype_size(VEIL_ONNX_BOOL), 1);
    assert_int_equal(veil_onnx_dtype_size(VEIL_ONNX_COMPLEX128), 16);
    assert_int_equal(veil_onnx_dtype_size(VEIL_ONNX_FLOAT8E5M2FNUZ), 1);
    assert_int_equal(veil_onnx_dtype_size(VEIL_ONNX_STRING), 0);
    assert_int_equal(veil_onnx_dtype_size(0), 0);
    assert_int_equal(veil_onnx_dtype_size(21), 0);
    assert_int_equal(veil_onnx_dtype_size(-1), 0);
}

/* ---- malformed protobuf ---------------------------------------------------------------------------------- */

static void test_truncated_everywhere(void **state)
{
    (void)state;
    const float v[2] = {1.0f, 2.0f};
    struct veil_buf init = {0}, g = {0}, m = {0};
    float_raw_tensor(&init, "w", v, 2);
    graph_with(&g, &init, 1);
    pv(&m, 1, 8);
    struct veil_buf op = {0};
    pv(&op, 2, 17);
    pm(&m, 8, &op);
    pm(&m, 7, &g);  /* the graph last: every strict prefix is invalid */
    for (size_t n = 0; n < m.size; n++) {
        struct veil_onnx_split s = {0};
        struct veil_result r = veil_onnx_split(m.data, n, &s);
        assert_int_equal(r.status, VEIL_ERR_ONNX);
        veil_onnx_split_cleanup(&s);
    }
    veil_buf_cleanup(&m);
}

static void test_truncated_varint(void **state)
{
    (void)state;
    struct veil_buf m = {0};
    const uint8_t bytes[] = {0x08, 0x88};  /* ir_version, a varint cut short */
    raw(&m, bytes, sizeof bytes);
    expect_split_error(&m, VEIL_ERR_ONNX, "malformed ModelProto: truncated or overlong varint");
    veil_buf_cleanup(&m);
    const uint8_t overlong[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    raw(&m, overlong, sizeof overlong);
    expect_split_error(&m, VEIL_ERR_ONNX, "overlong varint");
    veil_buf_cleanup(&m);
}

static void test_bad_wire_types(void **state)
{
    (void)state;
    struct veil_buf m = {0};
    const uint8_t group[] = {0x0b};  /* field 1, wire type 3 */
    raw(&m, group, 1);
    expect_split_error(&m, VEIL_ERR_ONNX, "groups are not supported");
    veil_buf_cleanup(&m);
    const uint8_t wire7[] = {0x0f};
    raw(&m, wire7, 1);
    expect_split_error(&m, VEIL_ERR_ONNX, "wire type 7");
    veil_buf_cleanup(&m);
    const uint8_t field0[] = {0x00, 0x01};
    raw(&m, field0, 2);
    expect_split_error(&m, VEIL_ERR_ONNX, "field number 0 is out of range");
    veil_buf_cleanup(&m);
    const uint8_t big[] = {0xf8, 0xff, 0xff, 0xff, 0x1f, 0x00};  /* field 2^29 */
    raw(&m, big, sizeof big);
    expect_split_error(&m, VEIL_ERR_ONNX, "out of range");
    veil_buf_cleanup(&m);
    pl(&m, 1, "x", 1);  /* ir_version as LEN */
    expect_split_error(&m, VEIL_ERR_ONNX, "wrong wire type");
    veil_buf_cleanup(&m);
}

static void test_len_past_end(void **state)
{
    (void)state;
    struct veil_buf m = {0};
    pv(&m, 1, 8);
    const uint8_t graph[] = {0x3a, 0x10, 0x00};
    raw(&m, graph, sizeof graph);
    expect_split_error(&m, VEIL_ERR_ONNX, "claims 16 bytes, only 1 are left");
    veil_buf_cleanup(&m);
}

static void test_bad_tensor_framing(void **state)
{
    (void)state;
    int64_t dims[1] = {1};
    struct veil_buf init = {0}, m = {0};
    tensor_head(&init, "w", VEIL_ONNX_FLOAT, dims, 1);
    pl(&init, 2, "x", 1);  /* data_type as LEN */
    model_of_one(&m, &init);
    expect_split_error(&m, VEIL_ERR_ONNX, "malformed initializer #0");
    veil_buf_cleanup(&m);
    tensor_head(&init, "w", VEIL_ONNX_FLOAT, dims, 1);
    pl(&init, 4, "abc", 3);  /* packed float_data of 3 bytes */
    model_of_one(&m, &init);
    expect_split_error(&m, VEIL_ERR_ONNX, "not a multiple of 4");
    veil_buf_cleanup(&m);
    tensor_head(&init, "w", VEIL_ONNX_INT64, dims, 1);
    const uint8_t cut[] = {0x80};
    pl(&init, 7, cut, 1);  /* packed int64_data ending mid-varint */
    model_of_one(&m, &init);
    expect_split_error(&m, VEIL_ERR_ONNX, "truncated or overlong varint");
    veil_buf_cleanup(&m);
}

/* ---- not an ONNX model ----------------------------------------------------------------------------------- */

static void test_missing_parts(void **state)
{
    (void)state;
    struct veil_buf m = {0}, g = {0}, op = {0};
    expect_split_error(&m, VEIL_ERR_ONNX, "not an ONNX model: ir_version missing");
    pv(&m, 1, 8);
    expect_split_error(&m, VEIL_ERR_ONNX, "not an ONNX model: no opset_import");
    pv(&op, 2, 17);
    pm(&m, 8, &op);
    expect_split_error(&m, VEIL_ERR_ONNX, "not an ONNX model: graph field missing");
    graph_with(&g, NULL, 0);
    pl(&m, 7, g.data, g.size);
    pm(&m, 7, &g);
    expect_split_error(&m, VEIL_ERR_ONNX, "not an ONNX model: graph field repeated");
    veil_buf_cleanup(&m);
    struct veil_onnx_split s = {0};
    assert_int_equal(veil_onnx_split(NULL, 5, &s).status, VEIL_ERR_ARG);
    uint8_t byte = 0;
    assert_int_equal(veil_onnx_split(&byte, (size_t)VEIL_ONNX_MAX_MODEL_SIZE + 1, &s).status, VEIL_ERR_LIMIT);
}

/* ---- refused initializers -------------------------------------------------------------------------------- */

static void expect_init_error(struct veil_buf *init, veil_status status, const char *text)
{
    struct veil_buf m = {0};
    model_of_one(&m, init);
    expect_split_error(&m, status, text);
    veil_buf_cleanup(&m);
}

/* A float tensor of n values whose data is external: entries (key, value) pairs, then data_location (-1: none). */
static void ext_tensor(struct veil_buf *t, const char *name, size_t n, const char *const *kv, size_t pairs,
                       int64_t location)
{
    int64_t dims[1] = {(int64_t)n};
    tensor_head(t, name, VEIL_ONNX_FLOAT, dims, 1);
    for (size_t i = 0; i < pairs; i++) {
        struct veil_buf entry = {0};
        ps(&entry, 1, kv[2 * i]);
        pl(&entry, 2, kv[2 * i + 1], strlen(kv[2 * i + 1]));
        pm(t, 13, &entry);
    }
    if (location >= 0)
        pv(t, 14, (uint64_t)location);
}

static void expect_external_error(const char *const *kv, size_t pairs, int64_t location, veil_status status,
                                  const char *text)
{
    struct veil_buf t = {0}, m = {0};
    ext_tensor(&t, "ext", 4, kv, pairs, location);
    model_of_one(&m, &t);
    struct veil_onnx_split s = {0};
    struct veil_result r = veil_onnx_split_external(m.data, m.size, &s);
    if (r.status != status || strstr(veil_last_error(), text) == NULL)
        fail_msg("expected %d '%s', got %d: %s", (int)status, text, (int)r.status, veil_last_error());
    veil_onnx_split_cleanup(&s);
    veil_buf_cleanup(&m);
}

static void test_external_data_refused_without_a_directory(void **state)
{
    (void)state;
    static const char *const kv[] = {"location", "weights.bin"};
    struct veil_buf a = {0}, c = {0};
    ext_tensor(&a, "ext", 4, kv, 1, 1);
    expect_init_error(&a, VEIL_ERR_UNSUPPORTED, "tensor 'ext' uses external data (its bytes are in a file beside");
    tensor_head(&c, "loc", VEIL_ONNX_FLOAT, (const int64_t[]){4}, 1);
    pv(&c, 14, 7);
    expect_init_error(&c, VEIL_ERR_ONNX, "data_location 7");
}

static void test_external_data_split(void **state)
{
    (void)state;
    static const char *const kv[] = {"location", "sub/w.bin", "offset", "4096", "length", "16", "checksum", "x"};
    const float v[4] = {1, 2, 3, 4};
    struct veil_buf ext = {0}, inl = {0}, m = {0}, mi = {0}, joined = {0};
    ext_tensor(&ext, "w", 4, kv, 4, 1);
    float_raw_tensor(&inl, "w", v, 4);
    model_of_one(&m, &ext);
    model_of_one(&mi, &inl);
    struct veil_onnx_split s = {0}, si = {0}, again = {0};
    ok(veil_onnx_split_external(m.data, m.size, &s));
    ok(veil_onnx_split(mi.data, mi.size, &si));
    assert_int_equal(s.tensor_count, 1);
    assert_null(s.tensors[0].data);
    assert_string_equal(s.tensors[0].location, "sub/w.bin");
    assert_int_equal(s.tensors[0].offset, 4096);
    assert_int_equal(s.tensors[0].size, 16);
    /* Stripped of its external data the graph is the inline model's, byte for byte: the sealed file is the same. */
    assert_int_equal(s.graph.size, si.graph.size);
    assert_memory_equal(s.graph.data, si.graph.data, si.graph.size);
    assert_false(contains(s.graph.data, s.graph.size, "w.bin", 5));
    uint64_t offsets[1] = {8192}, sizes[1] = {16};
    ok(veil_onnx_join_external(s.graph.data, s.graph.size, "out.onnx.data", offsets, sizes, 1, &joined));
    ok(veil_onnx_split_external(joined.data, joined.size, &again));
    assert_string_equal(again.tensors[0].location, "out.onnx.data");
    assert_int_equal(again.tensors[0].offset, 8192);
    assert_int_equal(veil_onnx_join_external(s.graph.data, s.graph.size, "../x", offsets, sizes, 1, &joined).status,
                     VEIL_ERR_ARG);
    veil_onnx_split_cleanup(&again);
    veil_onnx_split_cleanup(&s);
    veil_onnx_split_cleanup(&si);
    veil_buf_cleanup(&joined);
    veil_buf_cleanup(&m);
    veil_buf_cleanup(&mi);
}

static void test_external_data_rules(void **state)
{
    (void)state;
    static const char *const loc[] = {"location", "w.bin"};
    expect_external_error(loc, 1, -1, VEIL_ERR_ONNX, "data_location and external_data disagree");
    expect_external_error(loc, 0, 1, VEIL_ERR_ONNX, "data_location and external_data disagree");
    static const char *const none[] = {"offset", "0"};
    expect_external_error(none, 1, 1, VEIL_ERR_ONNX, "external data without a location");
    static const char *const abs_path[] = {"location", "/etc/passwd"};
    expect_external_error(abs_path, 1, 1, VEIL_ERR_ONNX, "is an absolute path");
    static const char *const up[] = {"location", "a/../../w.bin"};
    expect_external_error(up, 1, 1, VEIL_ERR_ONNX, "leaves the model's directory");
    static const char *const up2[] = {"location", ".."};
    expect_external_error(up2, 1, 1, VEIL_ERR_ONNX, "leaves the model's directory");
    static const char *const len[] = {"location", "w.bin", "length", "15"};
    expect_external_error(len, 2, 1, VEIL_ERR_ONNX, "external data length is 15 bytes, dims say 16");
    static const char *const bad[] = {"location", "w.bin", "offset", "12a"};
    expect_external_error(bad, 2, 1, VEIL_ERR_ONNX, "external data offset is not a decimal number");
    static const char *const neg[] = {"location", "w.bin", "offset", "-1"};
    expect_external_error(neg, 2, 1, VEIL_ERR_ONNX, "external data offset is not a decimal number");
    static const char *const big[] = {"location", "w.bin", "offset", "99999999999999999999"};
    expect_external_error(big, 2, 1, VEIL_ERR_ONNX, "external data offset is out of range");
    static const char *const edge[] = {"location", "w.bin", "offset", "18446744073709551610"};
    expect_external_error(edge, 2, 1, VEIL_ERR_ONNX, "external data offset is out of range");
    static const char *const twice[] = {"location", "w.bin", "location", "v.bin"};
    expect_external_error(twice, 2, 1, VEIL_ERR_ONNX, "external data key 'location' appears twice");
    static const char *const empty[] = {"location", ""};
    expect_external_error(empty, 1, 1, VEIL_ERR_ONNX, "external data without a location");
    /* raw_data beside external data */
    struct veil_buf t = {0}, m = {0};
    ext_tensor(&t, "ext", 1, loc, 1, 1);
    pl(&t, 9, "abcd", 4);
    model_of_one(&m, &t);
    struct veil_onnx_split s = {0};
    assert_int_equal(veil_onnx_split_external(m.data, m.size, &s).status, VEIL_ERR_ONNX);
    assert_non_null(strstr(veil_last_error(), "has both external data and raw_data"));
    veil_buf_cleanup(&m);
    /* a NUL in the location */
    struct veil_buf e = {0}, t2 = {0}, m2 = {0};
    tensor_head(&t2, "ext", VEIL_ONNX_FLOAT, (const int64_t[]){1}, 1);
    ps(&e, 1, "location");
    pl(&e, 2, "a\0b", 3);
    pm(&t2, 13, &e);
    pv(&t2, 14, 1);
    model_of_one(&m2, &t2);
    assert_int_equal(veil_onnx_split_external(m2.data, m2.size, &s).status, VEIL_ERR_ONNX);
    assert_non_null(strstr(veil_last_error(), "is not a path"));
    veil_buf_cleanup(&m2);
}

static void test_external_data_string_and_table(void **state)
{
    (void)state;
    static const char *const loc[] = {"location", "w.bin"};
    struct veil_buf t = {0}, m = {0}, u = {0}, g = {0};
    tensor_head(&t, "s", VEIL_ONNX_STRING, (const int64_t[]){1}, 1);
    struct veil_buf e = {0};
    ps(&e, 1, "location");
    ps(&e, 2, "w.bin");
    pm(&t, 13, &e);
    pv(&t, 14, 1);
    model_of_one(&m, &t);
    struct veil_onnx_split s = {0};
    assert_int_equal(veil_onnx_split_external(m.data, m.size, &s).status, VEIL_ERR_UNSUPPORTED);
    assert_non_null(strstr(veil_last_error(), "string initializer 's' has external data"));
    veil_buf_cleanup(&m);
    /* A stripped graph (a sealed file's) never refers to external data. */
    ext_tensor(&u, "ext", 4, loc, 1, 1);
    model_of_one(&g, &u);
    expect_table_error(&g, VEIL_ERR_FORMAT, "initializer 'ext' still has external data in the stripped graph");
    veil_buf_cleanup(&g);
}

static void test_segment_and_sparse(void **state)
{
    (void)state;
    int64_t dims[1] = {1};
    struct veil_buf a = {0}, seg = {0}, g = {0}, m = {0};
    tensor_head(&a, "seg", VEIL_ONNX_FLOAT, dims, 1);
    pv(&seg, 1, 0);
    pv(&seg, 2, 1);
    pm(&a, 3, &seg);
    expect_init_error(&a, VEIL_ERR_UNSUPPORTED, "segmented");
    graph_with(&g, NULL, 0);
    pl(&g, 15, "", 0);
    model_with_graph(&m, &g);
    expect_split_error(&m, VEIL_ERR_UNSUPPORTED, "sparse_initializer");
    veil_buf_cleanup(&m);
}

static void test_data_types(void **state)
{
    (void)state;
    int64_t dims[1] = {2};
    struct veil_buf a = {0}, b = {0}, c = {0}, d = {0};
    tensor_head(&a, "i4", 22, dims, 1);
    pl(&a, 9, "x", 1);
    expect_init_error(&a, VEIL_ERR_UNSUPPORTED, "data type 22 is not supported");
    tensor_head(&b, "neg", -3, dims, 1);
    expect_init_error(&b, VEIL_ERR_UNSUPPORTED, "data type -3");
    ps(&c, 8, "untyped");
    expect_init_error(&c, VEIL_ERR_ONNX, "initializer 'untyped' has no data_type");
    tensor_head(&d, "twice", VEIL_ONNX_FLOAT, dims, 1);
    pv(&d, 2, VEIL_ONNX_FLOAT);
    expect_init_error(&d, VEIL_ERR_ONNX, "two data_type fields");
}

static void test_size_mismatch(void **state)
{
    (void)state;
    int64_t dims[2] = {3, 4};
    uint8_t bytes[40] = {0};
    struct veil_buf a = {0}, b = {0}, c = {0}, d = {0};
    tensor_head(&a, "fc.weight", VEIL_ONNX_FLOAT, dims, 2);
    pl(&a, 9, bytes, 40);
    expect_init_error(&a, VEIL_ERR_ONNX, "initializer 'fc.weight': raw_data is 40 bytes, dims say 48");
    tensor_head(&b, "typed", VEIL_ONNX_FLOAT, dims, 2);
    pl(&b, 4, bytes, 40);
    expect_init_error(&b, VEIL_ERR_ONNX, "initializer 'typed': float_data has 10 values, dims say 12");
    tensor_head(&c, "nodata", VEIL_ONNX_FLOAT, dims, 2);
    expect_init_error(&c, VEIL_ERR_ONNX, "initializer 'nodata' has no data, dims say 48 bytes");
    tensor_head(&d, "big", VEIL_ONNX_UINT8, dims, 1);
    pl(&d, 9, bytes, 4);
    expect_init_error(&d, VEIL_ERR_ONNX, "raw_data is 4 bytes, dims say 3");
}

static void test_data_field_rules(void **state)
{
    (void)state;
    int64_t dims[1] = {1};
    const float one = 1.0f;
    struct veil_buf a = {0}, b = {0}, c = {0}, d = {0};
    tensor_head(&a, "two", VEIL_ONNX_FLOAT, dims, 1);
    pl(&a, 9, &one, 4);
    pf32(&a, 4, f32bits(one));
    expect_init_error(&a, VEIL_ERR_ONNX, "initializer 'two' has several data fields");
    tensor_head(&b, "wrong", VEIL_ONNX_FLOAT, dims, 1);
    pv(&b, 7, 1);
    expect_init_error(&b, VEIL_ERR_ONNX, "int64_data cannot hold FLOAT data");
    tensor_head(&c, "str", VEIL_ONNX_FLOAT, dims, 1);
    ps(&c, 6, "x");
    pl(&c, 9, &one, 4);
    expect_init_error(&c, VEIL_ERR_ONNX, "string_data on a FLOAT tensor");
    tensor_head(&d, "raw2", VEIL_ONNX_FLOAT, dims, 1);
    pl(&d, 9, &one, 4);
    pl(&d, 9, &one, 4);
    expect_init_error(&d, VEIL_ERR_ONNX, "two raw_data fields");
}

static void test_dims(void **state)
{
    (void)state;
    int64_t neg[1] = {-2}, huge[3] = {INT64_MAX, INT64_MAX, 2}, many[33];
    for (size_t i = 0; i < 33; i++)
        many[i] = 1;
    int64_t big[2] = {1 << 20, 1 << 21};
    struct veil_buf a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    tensor_head(&a, "neg", VEIL_ONNX_FLOAT, neg, 1);
    expect_init_error(&a, VEIL_ERR_ONNX, "negative dim (-2)");
    tensor_head(&b, "huge", VEIL_ONNX_FLOAT, huge, 3);
    expect_init_error(&b, VEIL_ERR_LIMIT, "initializer 'huge': dims overflow");
    tensor_head(&c, "many", VEIL_ONNX_FLOAT, many, 33);
    expect_init_error(&c, VEIL_ERR_LIMIT, "more than 32 dims");
    tensor_head(&d, "big", VEIL_ONNX_FLOAT, big, 2);  /* 2^43 bytes */
    expect_init_error(&d, VEIL_ERR_LIMIT, "tensor limit");
    /* packed dims are accepted too */
    struct veil_buf packed = {0};
    ok(veil_buf_append_varint(&packed, 2));
    ok(veil_buf_append_varint(&packed, 1));
    pm(&e, 1, &packed);
    pv(&e, 2, VEIL_ONNX_UINT8);
    ps(&e, 8, "packed_dims");
    pl(&e, 9, "ab", 2);
    check_one(&e, VEIL_ONNX_UINT8, "ab", 2);
}

static void test_names(void **state)
{
    (void)state;
    int64_t dims[1] = {0};
    struct veil_buf a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    pv(&a, 2, VEIL_ONNX_FLOAT);
    expect_init_error(&a, VEIL_ERR_ONNX, "initializer #0 has no name");
    tensor_head(&b, "", VEIL_ONNX_FLOAT, dims, 1);
    expect_init_error(&b, VEIL_ERR_ONNX, "initializer #0 has no name");
    pv(&c, 2, VEIL_ONNX_FLOAT);
    pl(&c, 8, "a\0b", 3);
    expect_init_error(&c, VEIL_ERR_ONNX, "name contains a NUL byte");
    char *longname = malloc(VEIL_ONNX_MAX_NAME_SIZE + 2);
    assert_non_null(longname);
    memset(longname, 'n', VEIL_ONNX_MAX_NAME_SIZE + 1);
    longname[VEIL_ONNX_MAX_NAME_SIZE + 1] = '\0';
    tensor_head(&d, longname, VEIL_ONNX_FLOAT, dims, 1);
    expect_init_error(&d, VEIL_ERR_LIMIT, "name is 4097 bytes");
    free(longname);
    tensor_head(&e, "n", VEIL_ONNX_FLOAT, dims, 1);
    ps(&e, 8, "m");
    expect_init_error(&e, VEIL_ERR_ONNX, "two name fields");
}

static void test_duplicate_names(void **state)
{
    (void)state;
    const float v[1] = {1.0f};
    int64_t dims[1] = {1};
    struct veil_buf inits[3] = {{0}}, m = {0};
    float_raw_tensor(&inits[0], "dup", v, 1);
    float_raw_tensor(&inits[1], "other", v, 1);
    tensor_head(&inits[2], "dup", VEIL_ONNX_STRING, dims, 1);
    ps(&inits[2], 6, "s");
    model_of(&m, inits, 3);
    expect_split_error(&m, VEIL_ERR_ONNX, "two initializers are named 'dup'");
    veil_buf_cleanup(&m);
}

/* ---- tensor table and join ------------------------------------------------------------------------------- */

static void test_table_rejects_data(void **state)
{
    (void)state;
    const float v[2] = {1.0f, 2.0f};
    struct veil_buf init = {0}, m = {0};
    float_raw_tensor(&init, "w", v, 2);
    model_of_one(&m, &init);
    expect_table_error(&m, VEIL_ERR_FORMAT, "initializer 'w' still has raw_data in the stripped graph");
    veil_buf_cleanup(&m);
    struct veil_buf bad = {0};
    const uint8_t junk[] = {0x08};
    raw(&bad, junk, 1);
    expect_table_error(&bad, VEIL_ERR_ONNX, "malformed ModelProto");
    veil_buf_cleanup(&bad);
}

static void test_join_mismatch(void **state)
{
    (void)state;
    const float v[2] = {1.0f, 2.0f};
    struct veil_buf inits[2] = {{0}}, m = {0};
    float_raw_tensor(&inits[0], "w", v, 2);
    float_raw_tensor(&inits[1], "b", v, 1);
    model_of(&m, inits, 2);
    struct veil_onnx_split s = {0};
    ok(veil_onnx_split(m.data, m.size, &s));
    const uint8_t *data[3] = {s.tensors[0].data, s.tensors[1].data, s.tensors[1].data};
    uint64_t sizes[3] = {8, 4, 4};
    struct veil_buf out;
    veil_buf_init_secret(&out);
    ok(veil_buf_append(&out, "prefix", 6));
    struct veil_result r = veil_onnx_join(s.graph.data, s.graph.size, data, sizes, 1, &out);
    assert_int_equal(r.status, VEIL_ERR_FORMAT);
    assert_non_null(strstr(veil_last_error(), "the graph has 2 extracted initializers, 1 tensors were given"));
    r = veil_onnx_join(s.graph.data, s.graph.size, data, sizes, 3, &out);
    assert_int_equal(r.status, VEIL_ERR_FORMAT);
    sizes[1] = 8;
    r = veil_onnx_join(s.graph.data, s.graph.size, data, sizes, 2, &out);
    assert_int_equal(r.status, VEIL_ERR_FORMAT);
    assert_non_null(strstr(veil_last_error(), "initializer 'b': tensor is 8 bytes, dims say 4"));
    assert_int_equal(out.size, 6);
    r = veil_onnx_join(m.data, m.size, data, sizes, 2, &out);  /* not stripped */
    assert_int_equal(r.status, VEIL_ERR_FORMAT);
    sizes[1] = 4;
    ok(veil_onnx_join(s.graph.data, s.graph.size, data, sizes, 2, &out));
    assert_int_equal(out.size, 6 + m.size);
    assert_memory_equal(out.data, "prefix", 6);
    assert_memory_equal(out.data + 6, m.data, m.size);
    assert_int_equal(veil_onnx_join(s.graph.data, s.graph.size, NULL, NULL, 2, &out).status, VEIL_ERR_ARG);
    veil_buf_cleanup(&out);
    veil_onnx_split_cleanup(&s);
    veil_buf_cleanup(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_raw_data),
        cmocka_unit_test(test_float_data_packed),
        cmocka_unit_test(test_float_data_unpacked),
        cmocka_unit_test(test_float_data_mixed_runs),
        cmocka_unit_test(test_complex64),
        cmocka_unit_test(test_int64_data),
        cmocka_unit_test(test_fp16_in_int32_data),
        cmocka_unit_test(test_bool_and_int8),
        cmocka_unit_test(test_double_and_uint_data),
        cmocka_unit_test(test_scalar_and_empty),
        cmocka_unit_test(test_string_initializer_stays),
        cmocka_unit_test(test_no_initializers),
        cmocka_unit_test(test_non_minimal_lengths_and_unknown_fields),
        cmocka_unit_test(test_dtype_size),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_truncated_varint),
        cmocka_unit_test(test_bad_wire_types),
        cmocka_unit_test(test_len_past_end),
        cmocka_unit_test(test_bad_tensor_framing),
        cmocka_unit_test(test_missing_parts),
        cmocka_unit_test(test_external_data_refused_without_a_directory),
        cmocka_unit_test(test_external_data_split),
        cmocka_unit_test(test_external_data_rules),
        cmocka_unit_test(test_external_data_string_and_table),
        cmocka_unit_test(test_segment_and_sparse),
        cmocka_unit_test(test_data_types),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_data_field_rules),
        cmocka_unit_test(test_dims),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_table_rejects_data),
        cmocka_unit_test(test_join_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
