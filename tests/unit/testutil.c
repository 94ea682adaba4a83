/* SPDX-License-Identifier: Apache-2.0 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static void must(struct veil_result r)
{
    if (!veil_ok(r)) {
        fprintf(stderr, "testutil: %s\n", veil_last_error());
        abort();
    }
}

static void field_bytes(struct veil_buf *b, uint32_t field, const void *data, size_t size)
{
    must(veil_buf_append_varint(b, (uint64_t)field << 3 | 2));
    must(veil_buf_append_varint(b, size));
    must(veil_buf_append(b, data, size));
}

static void field_varint(struct veil_buf *b, uint32_t field, uint64_t v)
{
    must(veil_buf_append_varint(b, (uint64_t)field << 3));
    must(veil_buf_append_varint(b, v));
}

static void tensor_proto(const struct tu_tensor *t, struct veil_buf *out)
{
    for (uint32_t i = 0; i < t->rank; i++)
        field_varint(out, 1, (uint64_t)t->dims[i]);
    field_varint(out, 2, (uint64_t)t->dtype);
    field_bytes(out, 8, t->name, strlen(t->name));
    field_bytes(out, 9, t->data, t->size);
}

void tu_model(const struct tu_tensor *t, size_t n, struct veil_buf *out)
{
    struct veil_buf graph = {0}, node = {0}, opset = {0}, tensor = {0};
    field_bytes(&node, 1, "x", 1);
    field_bytes(&node, 2, "y", 1);
    field_bytes(&node, 4, "Identity", 8);
    field_bytes(&graph, 1, node.data, node.size);
    field_bytes(&graph, 2, "g", 1);
    for (size_t i = 0; i < n; i++) {
        tensor.size = 0;
        tensor_proto(&t[i], &tensor);
        field_bytes(&graph, 5, tensor.data, tensor.size);
    }
    field_varint(out, 1, 8);
    field_bytes(out, 2, "veil-test", 9);
    field_varint(&opset, 2, 17);
    field_bytes(out, 8, opset.data, opset.size);
    field_bytes(out, 7, graph.data, graph.size);
    veil_buf_cleanup(&graph);
    veil_buf_cleanup(&node);
    veil_buf_cleanup(&opset);
    veil_buf_cleanup(&tensor);
}

char *tu_tmpdir(void)
{
    char tmpl[] = "/tmp/veil-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (d == NULL)
        abort();
    return strdup(d);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rmdir(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_path(int slot, const char *dir, const char *name)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
    return paths[slot];
}

uint8_t *tu_read(const char *path, size_t *size)
{
    struct veil_buf b = {0};
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        abort();
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        must(veil_buf_append(&b, chunk, n));
    fclose(f);
    *size = b.size;
    return b.data != NULL ? b.data : calloc(1, 1);
}

void tu_write(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
}

int tu_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

int tu_random(void *ctx, uint8_t *out, size_t size)
{
    uint64_t *s = ctx;
    for (size_t i = 0; i < size; i++) {
        *s = *s * 6364136223846793005u + 1442695040888963407u; /* a fixed LCG: tests only */
        out[i] = (uint8_t)(*s >> 56);
    }
    return 0;
}
