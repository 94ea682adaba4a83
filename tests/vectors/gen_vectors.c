/* SPDX-License-Identifier: Apache-2.0 */
/* Golden vectors for the sealed format, made by libveil with a fixed random source.
 *   gen_vectors --write DIR   (re)writes DIR/{key.bin,model.onnx,basic.veil,public-graph.veil}
 *   gen_vectors --check DIR   regenerates in memory and fails if any byte differs from DIR
 * tests/python/test_sealed_ref.py has the independent reference (check_sealed.py, sealed_ref.py; never libveil)
 * decrypt every .veil under tests/ and compare each tensor and the graph with model.onnx. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "format/format.h" /* veil_seal_with_random: the test-only seeded sealing, not in the public API */
#include "testutil.h"
#include "veil/sealed.h"

static float weights[3000];
static int64_t shape[2] = {1, -1};
static uint16_t half[5] = {0x3c00, 0x3c01, 0x3c02, 0x3c03, 0x3c04};

static void build_model(struct veil_buf *model)
{
    for (size_t i = 0; i < 3000; i++)
        weights[i] = (float)i * 0.25f - 100.0f;
    struct tu_tensor t[] = {
        {"conv.weight", 1, 2, {30, 100}, weights, sizeof weights},
        {"shape", 7, 1, {2}, shape, sizeof shape},
        {"empty", 1, 2, {0, 3}, NULL, 0},
        {"half", 10, 1, {5}, half, sizeof half},
    };
    tu_model(t, 4, model);
}

static int seal_vector(const struct veil_buf *model, const uint8_t *key, int public_graph, const char *path)
{
    uint64_t seed = public_graph ? 2 : 1;
    struct veil_seal_options o = {.model_id = "golden-model", .key_version = 2, .model_version = 42,
                                  .chunk_size = 4096, .public_graph = public_graph, .threads = 1};
    if (veil_seal_with_random(model->data, model->size, key, 32, &o, tu_random, &seed, path) != VEIL_OK) {
        fprintf(stderr, "gen_vectors: %s\n", veil_last_error());
        return 1;
    }
    return 0;
}

static int same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    uint8_t *da = tu_read(a, &na), *db = tu_read(b, &nb);
    int same = na == nb && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    if (!same)
        fprintf(stderr, "gen_vectors: %s differs from %s\n", a, b);
    return same;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "--write") != 0 && strcmp(argv[1], "--check") != 0)) {
        fprintf(stderr, "usage: gen_vectors --write|--check DIR\n");
        return 2;
    }
    int write = strcmp(argv[1], "--write") == 0;
    char *tmp = tu_tmpdir();
    const char *dir = write ? argv[2] : tmp;
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    struct veil_buf model = {0};
    build_model(&model);
    const char *names[] = {"key.bin", "model.onnx", "basic.veil", "public-graph.veil"};
    char path[4][1024];
    for (int i = 0; i < 4; i++)
        snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
    tu_write(path[0], key, sizeof key);
    tu_write(path[1], model.data, model.size);
    int rc = seal_vector(&model, key, 0, path[2]) || seal_vector(&model, key, 1, path[3]);
    for (int i = 0; !write && rc == 0 && i < 4; i++) {
        char want[1024];
        snprintf(want, sizeof want, "%s/%s", argv[2], names[i]);
        rc = !same_file(path[i], want);
    }
    veil_buf_cleanup(&model);
    tu_rmdir(tmp);
    free(tmp);
    if (rc == 0)
        printf("gen_vectors: %s\n", write ? "written" : "all golden vectors match");
    return rc;
}
