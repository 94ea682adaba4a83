/* SPDX-License-Identifier: Apache-2.0 */
/* lib/core: the bounded cursor, buffers, checked arithmetic, errors, secure memory, output files, hex, JSON glue. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/buf.h"
#include "core/checked.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/hex.h"
#include "core/json.h"
#include "core/secret.h"
#include "testutil.h"

static void test_cursor_reads_little_endian(void **state)
{
    (void)state;
    const uint8_t data[] = {1, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 8, 7, 6, 5, 4, 3, 2, 1};
    struct veil_cursor c = veil_cursor_make(data, sizeof data);
    uint8_t u8 = 0;
    uint16_t u16 = 0;
    uint32_t u32 = 0;
    uint64_t u64 = 0;
    assert_true(veil_ok(veil_cursor_u8(&c, &u8)));
    assert_true(veil_ok(veil_cursor_u16le(&c, &u16)));
    assert_true(veil_ok(veil_cursor_u32le(&c, &u32)));
    assert_true(veil_ok(veil_cursor_u64le(&c, &u64)));
    assert_int_equal(u8, 1);
    assert_int_equal(u16, 0x1234);
    assert_int_equal(u32, 0x12345678);
    assert_int_equal(u64, 0x0102030405060708u);
    assert_true(veil_ok(veil_cursor_expect_end(&c)));
}

static void test_cursor_never_moves_past_end(void **state)
{
    (void)state;
    const uint8_t data[] = {1, 2, 3};
    struct veil_cursor c = veil_cursor_make(data, sizeof data);
    uint32_t v = 0;
    assert_int_equal(veil_cursor_u32le(&c, &v).status, VEIL_ERR_TRUNCATED);
    assert_int_equal(c.off, 0);
    const uint8_t *p = NULL;
    assert_int_equal(veil_cursor_bytes(&c, SIZE_MAX, &p).status, VEIL_ERR_TRUNCATED);
    assert_true(veil_ok(veil_cursor_skip(&c, 2)));
    uint64_t w = 0;
    assert_int_equal(veil_cursor_u64le(&c, &w).status, VEIL_ERR_TRUNCATED);
    assert_int_equal(c.off, 2);
    assert_int_equal(veil_cursor_expect_end(&c).status, VEIL_ERR_TRUNCATED);
    struct veil_cursor sub;
    assert_int_equal(veil_cursor_sub(&c, 2, &sub).status, VEIL_ERR_TRUNCATED);
    assert_true(veil_ok(veil_cursor_sub(&c, 1, &sub)));
    assert_int_equal(sub.size, 1);
}

static void test_varint(void **state)
{
    (void)state;
    struct veil_buf b = {0};
    const uint64_t values[] = {0, 1, 127, 128, 300, UINT32_MAX, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        assert_true(veil_ok(veil_buf_append_varint(&b, values[i])));
    struct veil_cursor c = veil_cursor_make(b.data, b.size);
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        uint64_t v = 0;
        assert_true(veil_ok(veil_cursor_varint(&c, &v)));
        assert_int_equal(v, values[i]);
    }
    assert_true(veil_ok(veil_cursor_expect_end(&c)));
    veil_buf_cleanup(&b);
    const uint8_t too_long[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    c = veil_cursor_make(too_long, sizeof too_long);
    uint64_t v = 0;
    assert_int_equal(veil_cursor_varint(&c, &v).status, VEIL_ERR_FORMAT);
    const uint8_t unterminated[] = {0x80, 0x80};
    c = veil_cursor_make(unterminated, sizeof unterminated);
    assert_int_equal(veil_cursor_varint(&c, &v).status, VEIL_ERR_TRUNCATED);
    assert_int_equal(c.off, 0);
}

static void test_checked_arithmetic(void **state)
{
    (void)state;
    uint64_t out = 0;
    assert_int_equal(veil_add_u64(UINT64_MAX, 1, &out).status, VEIL_ERR_LIMIT);
    assert_int_equal(veil_mul_u64(UINT64_MAX / 2 + 1, 2, &out).status, VEIL_ERR_LIMIT);
    assert_int_equal(veil_align64_u64(UINT64_MAX - 10, &out).status, VEIL_ERR_LIMIT);
    assert_true(veil_ok(veil_align64_u64(65, &out)));
    assert_int_equal(out, 128);
    assert_true(veil_ok(veil_align64_u64(64, &out)));
    assert_int_equal(out, 64);
    assert_int_equal(veil_ceil_div_u64(0, 4096), 0);
    assert_int_equal(veil_ceil_div_u64(4097, 4096), 2);
}

static void test_status_strings(void **state)
{
    (void)state;
    assert_string_equal(veil_status_str(VEIL_ERR_AUTH), "authentication failed");
    assert_string_equal(veil_status_str((veil_status)12345), "unknown status");
    struct veil_result r = veil_error_raise(VEIL_ERR_FORMAT, __FILE__, __LINE__, "bad %s", "thing");
    assert_int_equal(r.status, VEIL_ERR_FORMAT);
    assert_string_equal(veil_last_error(), "bad thing");
}

static void test_secure_mem(void **state)
{
    (void)state;
    struct veil_secure_mem m;
    assert_true(veil_ok(veil_secure_alloc(&m, 100, 0)));
    assert_non_null(m.data);
    assert_int_equal((uintptr_t)m.data % 4096, 0);
    memset(m.data, 0xaa, 100);
    veil_secure_free(&m);
    assert_null(m.data);
    veil_secure_free(&m); /* accepts an empty struct */
    assert_int_equal(veil_ct_compare("abc", "abc", 3), 0);
    assert_int_not_equal(veil_ct_compare("abc", "abd", 3), 0);
}

/* Resident pages of [p, p + size), page-aligned. */
static size_t resident_pages(const uint8_t *p, size_t size)
{
    unsigned char vec[64];
    assert_true(size / 4096 <= sizeof vec);
    assert_int_equal(mincore((void *)(uintptr_t)p, size, vec), 0);
    size_t n = 0;
    for (size_t i = 0; i < size / 4096; i++)
        n += vec[i] & 1u;
    return n;
}

/* veil_secure_give_back returns the whole pages inside its range (no longer resident) and leaves the pages it shares
 * with its neighbours alone; free still wipes and unmaps around the holes, which may overlap. */
static void test_secure_give_back(void **state)
{
    (void)state;
    struct veil_secure_mem m;
    assert_true(veil_ok(veil_secure_alloc(&m, 16 * 4096, 0)));
    memset(m.data, 0xaa, m.size);
    assert_int_equal(resident_pages(m.data, m.size), 16);
    veil_secure_give_back(&m, 4096 + 100, 5 * 4096); /* bytes 4196 .. 24676: pages 2..5 whole, 1 and 6 partly */
    assert_int_equal(m.hole_count, 1);
    assert_int_equal(m.holes[0].offset, 2 * 4096);
    assert_int_equal(m.holes[0].size, 4 * 4096);
    assert_int_equal(resident_pages(m.data, 2 * 4096), 2);
    assert_int_equal(resident_pages(m.data + 2 * 4096, 4 * 4096), 0);
    assert_int_equal(resident_pages(m.data + 6 * 4096, 10 * 4096), 10);
    assert_int_equal(m.data[2 * 4096 - 1], 0xaa);
    assert_int_equal(m.data[6 * 4096], 0xaa);
    veil_secure_give_back(&m, 12 * 4096 + 1, 4000);  /* inside one page: nothing */
    assert_int_equal(m.hole_count, 1);
    veil_secure_give_back(&m, 15 * 4096, 2 * 4096);  /* past the mapping: ignored */
    assert_int_equal(m.hole_count, 1);
    veil_secure_give_back(&m, 8 * 4096, 2 * 4096);   /* a second hole, recorded after the first */
    veil_secure_give_back(&m, 4096, 3 * 4096);       /* and one overlapping the first */
    assert_int_equal(m.hole_count, 3);
    assert_int_equal(resident_pages(m.data, 4096), 1);
    assert_int_equal(resident_pages(m.data + 4096, 5 * 4096), 0);
    veil_secure_free(&m);                            /* must not touch the holes (they are PROT_NONE) */
    assert_null(m.data);
    assert_null(m.holes);
}

static void test_outfile_atomic(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    const char *path = tu_path(0, dir, "out.bin");
    tu_write(path, "old", 3);
    struct veil_outfile f;
    assert_true(veil_ok(veil_outfile_open(&f, path, 0600)));
    assert_true(veil_ok(veil_file_write_all(f.fd, "new!", 4)));
    veil_outfile_cleanup(&f); /* not committed: the old file stays */
    size_t n = 0;
    uint8_t *got = tu_read(path, &n);
    assert_int_equal(n, 3);
    free(got);
    assert_true(veil_ok(veil_outfile_open(&f, path, 0600)));
    assert_true(veil_ok(veil_file_write_all(f.fd, "new!", 4)));
    assert_int_equal(veil_outfile_commit_new(&f).status, VEIL_ERR_IO); /* exists */
    veil_outfile_cleanup(&f);
    assert_true(veil_ok(veil_outfile_open(&f, path, 0600)));
    assert_true(veil_ok(veil_file_write_all(f.fd, "new!", 4)));
    assert_true(veil_ok(veil_outfile_commit(&f)));
    veil_outfile_cleanup(&f);
    got = tu_read(path, &n);
    assert_int_equal(n, 4);
    free(got);
    tu_rmdir(dir); /* also fails the test run under ASan if a temporary file leaked a descriptor */
    free(dir);
}

/* ---- hex ------------------------------------------------------------------------------------------------ */

static veil_status hex(enum veil_hex_case hc, const char *text, uint8_t *out, size_t size)
{
    return veil_hex_decode(hc, text, text != NULL ? strlen(text) : 0, out, size, VEIL_ERR_EVIDENCE, "field").status;
}

static void test_hex_round_trip(void **state)
{
    (void)state;
    const uint8_t data[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char text[2 * sizeof data + 1];
    veil_hex_encode(data, sizeof data, text);
    assert_string_equal(text, "00017f80abff");
    uint8_t back[sizeof data];
    assert_int_equal(hex(VEIL_HEX_LOWER, text, back, sizeof back), VEIL_OK);
    assert_memory_equal(back, data, sizeof data);
    assert_int_equal(hex(VEIL_HEX_ANY_CASE, "00017F80ABff", back, sizeof back), VEIL_OK);
    assert_memory_equal(back, data, sizeof data);
    veil_hex_encode(data, 0, text);
    assert_string_equal(text, "");
    assert_int_equal(hex(VEIL_HEX_LOWER, "", back, 0), VEIL_OK);
}

static void test_hex_strict(void **state)
{
    (void)state;
    uint8_t out[2];
    /* lower-only refuses upper case; any-case takes it */
    assert_int_equal(hex(VEIL_HEX_LOWER, "aB0f", out, 2), VEIL_ERR_EVIDENCE);
    assert_non_null(strstr(veil_last_error(), "field is not lower-case hex"));
    assert_int_equal(hex(VEIL_HEX_ANY_CASE, "aB0f", out, 2), VEIL_OK);
    assert_int_equal(out[0], 0xab);
    assert_int_equal(out[1], 0x0f);
    /* exactly 2*size digits, nothing else */
    const char *bad[] = {"ab0", "ab0f00", "ab0g", " ab0", "ab0\n", "0xab", "+a0f", "ab:f", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(hex(VEIL_HEX_LOWER, bad[i], out, 2), VEIL_ERR_EVIDENCE);
        assert_int_equal(hex(VEIL_HEX_ANY_CASE, bad[i], out, 2), VEIL_ERR_EVIDENCE);
    }
    assert_int_equal(hex(VEIL_HEX_LOWER, "ab0", out, 2), VEIL_ERR_EVIDENCE);
    assert_non_null(strstr(veil_last_error(), "field must be 4 hex digits"));
    /* an embedded NUL is counted by len and refused as a character */
    assert_int_equal(veil_hex_decode(VEIL_HEX_ANY_CASE, "a\0bc", 4, out, 2, VEIL_ERR_ARG, "x").status, VEIL_ERR_ARG);
    /* the caller's status */
    assert_int_equal(veil_hex_decode(VEIL_HEX_ANY_CASE, "zz", 2, out, 1, VEIL_ERR_ARG, "x").status, VEIL_ERR_ARG);
    assert_int_equal(hex(VEIL_HEX_LOWER, NULL, out, 2), VEIL_ERR_EVIDENCE);
}

/* ---- json ----------------------------------------------------------------------------------------------- */

static veil_status load(const char *text, size_t max_size, json_t **out)
{
    *out = NULL;
    return veil_json_load_object((const uint8_t *)text, strlen(text), max_size, VEIL_ERR_FORMAT, "doc", out).status;
}

static void test_json_load_object(void **state)
{
    (void)state;
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    assert_int_equal(load("{\"a\":1,\"b\":\"x\"}", 100, &j), VEIL_OK);
    assert_true(json_is_object(j));
    veil_json_done(&j);
    assert_null(j);
    json_t *k = NULL;
    /* duplicate keys, trailing bytes, a second value, not an object, not JSON, "\u0000": the caller's status */
    const char *bad[] = {"{\"a\":1,\"a\":2}", "{\"a\":1} x", "{}{}", "[1]", "\"s\"", "{", "", "{\"a\":\"\\u0000\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(load(bad[i], 100, &k), VEIL_ERR_FORMAT);
        assert_null(k);
    }
    assert_int_equal(veil_json_load_object((const uint8_t *)"{\"a\":1,\"a\":2}", 13, 100, VEIL_ERR_EVIDENCE, "doc", &k)
                         .status,
                     VEIL_ERR_EVIDENCE);
    assert_non_null(strstr(veil_last_error(), "doc is not valid JSON"));
    /* the size cap is checked before parsing, and raises VEIL_ERR_LIMIT whatever the caller's status */
    assert_int_equal(load("{\"a\":1}", 7, &k), VEIL_OK);
    json_decref(k);
    assert_int_equal(load("{\"a\":1}", 6, &k), VEIL_ERR_LIMIT);
    assert_int_equal(veil_json_load_object(NULL, 1, 100, VEIL_ERR_FORMAT, "doc", &k).status, VEIL_ERR_ARG);
}

static void test_json_members(void **state)
{
    (void)state;
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    assert_int_equal(load("{\"s\":\"str\",\"n\":7,\"neg\":-1,\"t\":true,\"f\":1.5}", 100, &j), VEIL_OK);
    static const char *const all[] = {"s", "n", "neg", "t", "f", NULL};
    static const char *const some[] = {"s", "n", "ne", "t", "f", NULL};
    assert_int_equal(veil_json_only_keys(j, all, VEIL_ERR_ARG, "doc").status, VEIL_OK);
    assert_int_equal(veil_json_only_keys(j, some, VEIL_ERR_ARG, "doc").status, VEIL_ERR_ARG);
    assert_non_null(strstr(veil_last_error(), "doc: unknown member \"neg\""));

    const char *s = "untouched";
    assert_int_equal(veil_json_string(j, "s", 1, VEIL_ERR_ARG, "doc", &s).status, VEIL_OK);
    assert_string_equal(s, "str");
    assert_int_equal(veil_json_string(j, "absent", 0, VEIL_ERR_ARG, "doc", &s).status, VEIL_OK);
    assert_null(s);
    assert_int_equal(veil_json_string(j, "absent", 1, VEIL_ERR_ARG, "doc", &s).status, VEIL_ERR_ARG);
    assert_int_equal(veil_json_string(j, "n", 0, VEIL_ERR_ARG, "doc", &s).status, VEIL_ERR_ARG);
    /* a NUL can only come from a built value; it is refused anyway */
    assert_true(veil_ok(veil_json_set(j, "nul", json_stringn("a\0b", 3))));
    assert_int_equal(veil_json_string(j, "nul", 1, VEIL_ERR_ARG, "doc", &s).status, VEIL_ERR_ARG);

    uint64_t u = 99;
    assert_int_equal(veil_json_uint(j, "n", 1, 7, VEIL_ERR_ARG, "doc", &u).status, VEIL_OK);
    assert_int_equal(u, 7);
    assert_int_equal(veil_json_uint(j, "n", 1, 6, VEIL_ERR_ARG, "doc", &u).status, VEIL_ERR_ARG);
    assert_int_equal(veil_json_uint(j, "neg", 1, 100, VEIL_ERR_ARG, "doc", &u).status, VEIL_ERR_ARG);
    assert_int_equal(veil_json_uint(j, "f", 1, 100, VEIL_ERR_ARG, "doc", &u).status, VEIL_ERR_ARG);
    assert_int_equal(veil_json_uint(j, "s", 1, 100, VEIL_ERR_ARG, "doc", &u).status, VEIL_ERR_ARG);
    u = 99;
    assert_int_equal(veil_json_uint(j, "absent", 0, 100, VEIL_ERR_ARG, "doc", &u).status, VEIL_OK);
    assert_int_equal(u, 99);
    assert_int_equal(veil_json_uint(j, "absent", 1, 100, VEIL_ERR_ARG, "doc", &u).status, VEIL_ERR_ARG);

    int b = 5;
    assert_int_equal(veil_json_bool(j, "absent", VEIL_ERR_ARG, "doc", &b).status, VEIL_OK);
    assert_int_equal(b, 5);
    assert_int_equal(veil_json_bool(j, "t", VEIL_ERR_ARG, "doc", &b).status, VEIL_OK);
    assert_int_equal(b, 1);
    assert_int_equal(veil_json_bool(j, "n", VEIL_ERR_ARG, "doc", &b).status, VEIL_ERR_ARG);

    assert_int_equal(veil_json_set(j, "x", NULL).status, VEIL_ERR_NOMEM);
}

static veil_status b64(const char *text, enum veil_b64 kind, size_t min_size, size_t max_size, struct veil_buf *out)
{
    json_t *j = json_object(); /* _nocheck: the bytes reach the decoder even when they are not UTF-8 */
    assert_int_equal(json_object_set_new(j, "m", json_stringn_nocheck(text, strlen(text))), 0);
    veil_status st = veil_json_b64(j, "m", kind, 1, min_size, max_size, VEIL_ERR_EVIDENCE, "doc", out, NULL).status;
    json_decref(j);
    return st;
}

static void test_json_b64(void **state)
{
    (void)state;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    /* variable size: 0..max */
    assert_int_equal(b64("Zm9vYg==", VEIL_B64_STD, 0, 4, &b), VEIL_OK);
    assert_int_equal(b64("", VEIL_B64_STD, 0, 4, &b), VEIL_OK);
    assert_int_equal(b.size, 4);
    assert_memory_equal(b.data, "foob", 4);
    assert_int_equal(b64("Zm9vYmE=", VEIL_B64_STD, 0, 4, &b), VEIL_ERR_LIMIT);
    assert_int_equal(b64("Zm9vYmFyYmF6cXV4cXV1e#==", VEIL_B64_STD, 0, 4, &b), VEIL_ERR_LIMIT); /* before decoding */
    assert_int_equal(b64("Zm9vYg", VEIL_B64_STD, 0, 4, &b), VEIL_ERR_EVIDENCE);     /* unpadded */
    assert_int_equal(b64("Zm9vYg==", VEIL_B64_URL, 0, 8, &b), VEIL_ERR_EVIDENCE);   /* padded url */
    assert_int_equal(b64("Zm9vYh==", VEIL_B64_STD, 0, 4, &b), VEIL_ERR_EVIDENCE);   /* unused bits */
    assert_int_equal(b64("Zm9v\nYg==", VEIL_B64_STD, 0, 8, &b), VEIL_ERR_EVIDENCE); /* whitespace */
    assert_int_equal(b64("-_-_", VEIL_B64_STD, 0, 8, &b), VEIL_ERR_EVIDENCE);       /* the other alphabet */
    assert_int_equal(b64("+/+/", VEIL_B64_URL, 0, 8, &b), VEIL_ERR_EVIDENCE);
    assert_int_equal(b64("QUJ\x80", VEIL_B64_STD, 0, 8, &b), VEIL_ERR_EVIDENCE);
    assert_non_null(strstr(veil_last_error(), "doc: member \"m\" is not canonical base64"));
    assert_int_equal(b.size, 4); /* out unchanged by every failure */
    /* a minimum: empty is malformed, not over a limit */
    assert_int_equal(b64("", VEIL_B64_URL, 1, 4, &b), VEIL_ERR_EVIDENCE);
    assert_int_equal(b64("-_8", VEIL_B64_URL, 1, 4, &b), VEIL_OK);
    assert_int_equal(b.size, 6);
    assert_int_equal(b.data[4], 0xfb);
    assert_int_equal(b.data[5], 0xff);
    /* fixed size: any other size is malformed (the caller's status), never VEIL_ERR_LIMIT */
    assert_int_equal(b64("AAAA", VEIL_B64_URL, 3, 3, &b), VEIL_OK);
    assert_int_equal(b64("AAA", VEIL_B64_URL, 3, 3, &b), VEIL_ERR_EVIDENCE);
    assert_int_equal(b64("AAAAAA", VEIL_B64_URL, 3, 3, &b), VEIL_ERR_EVIDENCE);
    assert_int_equal(b64("AAAAAAAAAAAAAAAAAAAAAAAA", VEIL_B64_URL, 3, 3, &b), VEIL_ERR_EVIDENCE);
    assert_int_equal(b.size, 9);
    /* too short into a buffer that was never allocated (found by fuzz_kbs: no arithmetic on its NULL data) */
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf empty = {0};
    assert_int_equal(b64("", VEIL_B64_STD, 1, 4, &empty), VEIL_ERR_EVIDENCE);
    assert_null(empty.data);
    assert_int_equal(empty.size, 0);

    /* absent members: *present says so, required ones fail */
    VEIL_DEFER(veil_json_done) json_t *j = json_object();
    int present = -1;
    assert_int_equal(veil_json_b64(j, "m", VEIL_B64_STD, 0, 0, 4, VEIL_ERR_FORMAT, "doc", &b, &present).status,
                     VEIL_OK);
    assert_int_equal(present, 0);
    assert_int_equal(veil_json_b64(j, "m", VEIL_B64_STD, 1, 0, 4, VEIL_ERR_FORMAT, "doc", &b, &present).status,
                     VEIL_ERR_FORMAT);
    assert_true(veil_ok(veil_json_set(j, "m", json_integer(1))));
    assert_int_equal(veil_json_b64(j, "m", VEIL_B64_STD, 0, 0, 4, VEIL_ERR_FORMAT, "doc", &b, &present).status,
                     VEIL_ERR_FORMAT);
    assert_int_equal(b.size, 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor_reads_little_endian), cmocka_unit_test(test_cursor_never_moves_past_end),
        cmocka_unit_test(test_varint),                     cmocka_unit_test(test_checked_arithmetic),
        cmocka_unit_test(test_status_strings),             cmocka_unit_test(test_secure_mem),
        cmocka_unit_test(test_secure_give_back),           cmocka_unit_test(test_outfile_atomic),
        cmocka_unit_test(test_hex_round_trip),             cmocka_unit_test(test_hex_strict),
        cmocka_unit_test(test_json_load_object),           cmocka_unit_test(test_json_members),
        cmocka_unit_test(test_json_b64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
