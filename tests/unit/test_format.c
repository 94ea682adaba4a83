/* SPDX-License-Identifier: Apache-2.0 */
/* The sealed format: round trips, every documented failure, and every single-byte modification rejected. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "format/format.h"
#include "testutil.h"

static const uint8_t key_a[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t key_b[32] = {0xff};

struct fixture {
    char *dir;
    struct veil_buf model;
    float w[3000];      /* 12000 bytes: three chunks of 4096 */
    int64_t shape[2];
    uint16_t half[5];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    for (size_t i = 0; i < 3000; i++)
        f->w[i] = (float)i * 0.5f;
    f->shape[0] = 1;
    f->shape[1] = -1;
    for (uint16_t i = 0; i < 5; i++)
        f->half[i] = (uint16_t)(0x3c00 + i);
    struct tu_tensor t[] = {
        {"w", 1, 2, {30, 100}, f->w, sizeof f->w},
        {"shape", 7, 1, {2}, f->shape, sizeof f->shape},
        {"empty", 1, 2, {0, 3}, NULL, 0},
        {"half", 10, 1, {5}, f->half, sizeof f->half},
    };
    tu_model(t, 4, &f->model);
    f->dir = tu_tmpdir();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tu_rmdir(f->dir);
    free(f->dir);
    veil_buf_cleanup(&f->model);
    free(f);
    return 0;
}

static void seal_to(struct fixture *f, const char *path, int public_graph)
{
    struct veil_seal_options o = {.model_id = "resnet-18_v2.1", .chunk_size = 4096, .model_version = 7,
                                  .key_version = 3, .public_graph = public_graph, .threads = 2};
    assert_int_equal(veil_seal(f->model.data, f->model.size, key_a, 32, &o, path), VEIL_OK);
}

static void check_tensors(struct fixture *f, const veil_model *m)
{
    struct veil_tensor_view t;
    assert_int_equal(veil_model_tensor_count(m), 4);
    assert_int_equal(veil_model_tensor(m, 0, &t), VEIL_OK);
    assert_string_equal(t.name, "w");
    assert_int_equal(t.rank, 2);
    assert_int_equal(t.dims[1], 100);
    assert_int_equal(t.size, sizeof f->w);
    assert_memory_equal(t.data, f->w, sizeof f->w);
    assert_int_equal((uintptr_t)t.data % 64, 0);
    assert_int_equal(veil_model_tensor(m, 1, &t), VEIL_OK);
    assert_memory_equal(t.data, f->shape, sizeof f->shape);
    assert_int_equal(veil_model_tensor(m, 2, &t), VEIL_OK);
    assert_int_equal(t.size, 0);
    assert_int_equal(veil_model_tensor(m, 3, &t), VEIL_OK);
    assert_int_equal(t.dtype, 10);
    assert_memory_equal(t.data, f->half, sizeof f->half);
    assert_int_equal(veil_model_tensor(m, 4, &t), VEIL_ERR_ARG);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    for (int pub = 0; pub <= 1; pub++) {
        const char *path = tu_path(0, f->dir, "m.veil");
        seal_to(f, path, pub);
        struct veil_sealed_info info;
        assert_int_equal(veil_inspect_file(path, &info), VEIL_OK);
        assert_string_equal(info.model_id, "resnet-18_v2.1");
        assert_int_equal(info.key_version, 3);
        assert_int_equal(info.model_version, 7);
        assert_int_equal(info.tensor_count, 4);
        assert_int_equal(info.public_graph, pub);
        veil_model *m = NULL;
        assert_int_equal(veil_model_open(path, key_a, 32, NULL, &m), VEIL_OK);
        check_tensors(f, m);
        veil_model_free(m);
    }
}

static void test_unseal_restores_model(void **state)
{
    struct fixture *f = *state;
    const char *path = tu_path(0, f->dir, "u.veil");
    seal_to(f, path, 0);
    uint8_t *onnx = NULL;
    size_t size = 0;
    assert_int_equal(veil_unseal(path, key_a, 32, NULL, &onnx, &size), VEIL_OK);
    /* The hand-built model already stores every tensor as raw_data at the end of its TensorProto, so the
     * unsealed model is byte-identical to the input. */
    assert_int_equal(size, f->model.size);
    assert_memory_equal(onnx, f->model.data, size);
    veil_free(onnx);
    const char *out = tu_path(1, f->dir, "u.onnx");
    assert_int_equal(veil_unseal_file(path, key_a, 32, NULL, out), VEIL_OK);
    uint8_t *disk = tu_read(out, &size);
    assert_memory_equal(disk, f->model.data, size);
    free(disk);
}

static void test_wrong_key(void **state)
{
    struct fixture *f = *state;
    const char *path = tu_path(0, f->dir, "k.veil");
    seal_to(f, path, 0);
    veil_model *m = NULL;
    assert_int_equal(veil_model_open(path, key_b, 32, NULL, &m), VEIL_ERR_KEY);
    assert_null(m);
    assert_int_equal(veil_model_open(path, key_a, 16, NULL, &m), VEIL_ERR_KEY);
    assert_int_equal(veil_model_open(path, key_a, 17, NULL, &m), VEIL_ERR_ARG);
    assert_non_null(strstr(veil_last_error(), "32 bytes"));
}

static void test_seed_16_byte_key(void **state)
{
    struct fixture *f = *state;
    const char *path = tu_path(0, f->dir, "s.veil");
    struct veil_seal_options o = {.model_id = "seed"};
    assert_int_equal(veil_seal(f->model.data, f->model.size, key_a, 16, &o, path), VEIL_OK);
    veil_model *m = NULL;
    assert_int_equal(veil_model_open(path, key_a, 16, NULL, &m), VEIL_OK);
    veil_model_free(m);
}

static void test_bad_options(void **state)
{
    struct fixture *f = *state;
    const char *path = tu_path(0, f->dir, "never.veil");
    const char *bad_ids[] = {"", ".hidden", "-x", "a/b", "a b", "é"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        struct veil_seal_options o = {.model_id = bad_ids[i]};
        assert_int_equal(veil_seal(f->model.data, f->model.size, key_a, 32, &o, path), VEIL_ERR_ARG);
    }
    char long_id[200];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    struct veil_seal_options o = {.model_id = long_id};
    assert_int_equal(veil_seal(f->model.data, f->model.size, key_a, 32, &o, path), VEIL_ERR_ARG);
    o = (struct veil_seal_options){.model_id = "m", .chunk_size = 5000};
    assert_int_equal(veil_seal(f->model.data, f->model.size, key_a, 32, &o, path), VEIL_ERR_ARG);
    o = (struct veil_seal_options){.model_id = "m"};
    assert_int_equal(veil_seal((const uint8_t *)"not onnx", 8, key_a, 32, &o, path), VEIL_ERR_ONNX);
    assert_false(tu_exists(path));
}

/* Every single-byte change anywhere in the file is rejected, and nothing is handed out. */
static void test_every_byte_flip_rejected(void **state)
{
    struct fixture *f = *state;
    for (int pub = 0; pub <= 1; pub++) {
        const char *path = tu_path(0, f->dir, "flip.veil");
        seal_to(f, path, pub);
        size_t size = 0;
        uint8_t *orig = tu_read(path, &size);
        const char *bad = tu_path(1, f->dir, "bad.veil");
        for (size_t i = 0; i < size; i++) {
            orig[i] ^= 0x01;
            tu_write(bad, orig, size);
            orig[i] ^= 0x01;
            veil_model *m = NULL;
            veil_status st = veil_model_open(bad, key_a, 32, NULL, &m);
            if (st == VEIL_OK)
                fail_msg("byte %zu flipped (public graph %d) was accepted", i, pub);
            assert_null(m);
        }
        free(orig);
    }
}

static void test_truncation_and_trailing(void **state)
{
    struct fixture *f = *state;
    const char *path = tu_path(0, f->dir, "t.veil");
    seal_to(f, path, 0);
    size_t size = 0;
    uint8_t *orig = tu_read(path, &size);
    const char *bad = tu_path(1, f->dir, "bad.veil");
    for (size_t n = 0; n < size; n += (n < 256 ? 1 : 97)) {
        tu_write(bad, orig, n);
        struct veil_sealed_info info;
        assert_int_not_equal(veil_inspect_file(bad, &info), VEIL_OK);
    }
    tu_write(bad, orig, size - 1);
    struct veil_sealed_info info;
    assert_int_equal(veil_inspect_file(bad, &info), VEIL_ERR_TRUNCATED);
    uint8_t *longer = calloc(size + 1, 1);
    memcpy(longer, orig, size);
    tu_write(bad, longer, size + 1);
    assert_int_equal(veil_inspect_file(bad, &info), VEIL_ERR_TRUNCATED);
    assert_non_null(strstr(veil_last_error(), "trailing"));
    free(longer);
    free(orig);
}

static void test_rewrap(void **state)
{
    struct fixture *f = *state;
    const char *path = tu_path(0, f->dir, "r.veil");
    const char *out = tu_path(1, f->dir, "r2.veil");
    seal_to(f, path, 0);
    assert_int_equal(veil_rewrap_file(path, key_b, 32, key_b, 32, 4, out), VEIL_ERR_KEY);
    assert_false(tu_exists(out));
    assert_int_equal(veil_rewrap_file(path, key_a, 32, key_b, 32, 4, out), VEIL_OK);
    struct veil_sealed_info info;
    assert_int_equal(veil_inspect_file(out, &info), VEIL_OK);
    assert_int_equal(info.key_version, 4);
    veil_model *m = NULL;
    assert_int_equal(veil_model_open(out, key_a, 32, NULL, &m), VEIL_ERR_KEY);
    assert_int_equal(veil_model_open(out, key_b, 32, NULL, &m), VEIL_OK);
    check_tensors(f, m);
    veil_model_free(m);
    /* Only the 64-byte key wrap differs. */
    size_t a_size = 0, b_size = 0;
    uint8_t *a = tu_read(path, &a_size), *b = tu_read(out, &b_size);
    assert_int_equal(a_size, b_size);
    size_t wrap_at = VEIL_SEALED_PREAMBLE_SIZE + (a[12] | (size_t)a[13] << 8 | (size_t)a[14] << 16);
    assert_memory_equal(a, b, wrap_at);
    assert_memory_equal(a + wrap_at + 64, b + wrap_at + 64, a_size - wrap_at - 64);
    assert_memory_not_equal(a + wrap_at, b + wrap_at, 64);
    free(a);
    free(b);
    /* In place. */
    assert_int_equal(veil_rewrap_file(out, key_b, 32, key_a, 32, 5, out), VEIL_OK);
    assert_int_equal(veil_model_open(out, key_a, 32, NULL, &m), VEIL_OK);
    veil_model_free(m);
}

static void test_failed_unseal_keeps_existing_output(void **state)
{
    struct fixture *f = *state;
    const char *path = tu_path(0, f->dir, "x.veil");
    const char *out = tu_path(1, f->dir, "existing.onnx");
    seal_to(f, path, 0);
    tu_write(out, "precious", 8);
    assert_int_equal(veil_unseal_file(path, key_b, 32, NULL, out), VEIL_ERR_KEY);
    size_t n = 0;
    uint8_t *kept = tu_read(out, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(kept, "precious", 8);
    free(kept);
}

static void test_spliced_chunk_rejected(void **state)
{
    struct fixture *f = *state;
    const char *p1 = tu_path(0, f->dir, "a.veil");
    const char *p2 = tu_path(1, f->dir, "b.veil");
    seal_to(f, p1, 0);
    seal_to(f, p2, 0);
    size_t n1 = 0, n2 = 0;
    uint8_t *a = tu_read(p1, &n1), *b = tu_read(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_not_equal(a, b, n1); /* fresh file id and data key per file */
    /* The tag table ends the file; take one tag from the other file (same key, same model). */
    veil_model *m = NULL;
    const char *bad = tu_path(2, f->dir, "spliced.veil");
    memcpy(a + n1 - 16 * 4, b + n2 - 16 * 4, 16);
    tu_write(bad, a, n1);
    assert_int_equal(veil_model_open(bad, key_a, 32, NULL, &m), VEIL_ERR_AUTH);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_unseal_restores_model),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_seed_16_byte_key),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_every_byte_flip_rejected),
        cmocka_unit_test(test_truncation_and_trailing),
        cmocka_unit_test(test_rewrap),
        cmocka_unit_test(test_failed_unseal_keeps_existing_output),
        cmocka_unit_test(test_spliced_chunk_rejected),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
