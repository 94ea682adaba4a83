/* SPDX-License-Identifier: Apache-2.0 */
/* lib/core: the bounded cursor, buffers, checked arithmetic, errors, secure memory, output files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/checked.h"
#include "core/cursor.h"
#include "core/file.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor_reads_little_endian), cmocka_unit_test(test_cursor_never_moves_past_end),
        cmocka_unit_test(test_varint),                     cmocka_unit_test(test_checked_arithmetic),
        cmocka_unit_test(test_status_strings),             cmocka_unit_test(test_secure_mem),
        cmocka_unit_test(test_outfile_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
