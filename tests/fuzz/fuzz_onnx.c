/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for lib/onnx: split the input; when it is accepted, the stripped graph must give the same
 * tensor table, join must succeed, and splitting the joined model must give the same stripped graph and the
 * same tensors, bit for bit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "onnx/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_onnx: %s (%s)\n", what, veil_last_error());
        abort();
    }
}

static int same_tensor(const struct veil_onnx_tensor *a, const struct veil_onnx_tensor *b)
{
    return strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->rank == b->rank &&
           memcmp(a->dims, b->dims, sizeof a->dims) == 0 && a->size == b->size;
}

static void check_table(const struct veil_onnx_split *s)
{
    struct veil_onnx_tensor *t = NULL;
    size_t n = 0;
    check(veil_ok(veil_onnx_tensor_table(s->graph.data, s->graph.size, &t, &n)), "table of a stripped graph");
    check(n == s->tensor_count, "table count");
    for (size_t i = 0; i < n; i++)
        check(same_tensor(&t[i], &s->tensors[i]) && t[i].data == NULL, "table entry");
    veil_onnx_tensors_free(t, n);
}

static void check_resplit(const struct veil_onnx_split *s, const struct veil_buf *joined)
{
    struct veil_onnx_split again = {0};
    check(veil_ok(veil_onnx_split(joined->data, joined->size, &again)), "split of a joined model");
    check(again.graph.size == s->graph.size && memcmp(again.graph.data, s->graph.data, s->graph.size) == 0,
          "stripped graph changed");
    check(again.tensor_count == s->tensor_count, "tensor count changed");
    for (size_t i = 0; i < s->tensor_count; i++) {
        const struct veil_onnx_tensor *a = &again.tensors[i], *b = &s->tensors[i];
        check(same_tensor(a, b), "tensor metadata changed");
        check(a->size == 0 || memcmp(a->data, b->data, (size_t)a->size) == 0, "tensor data changed");
    }
    veil_onnx_split_cleanup(&again);
}

static void check_join(const struct veil_onnx_split *s)
{
    size_t n = s->tensor_count;
    const uint8_t **data = calloc(n + 1, sizeof *data);
    uint64_t *sizes = calloc(n + 1, sizeof *sizes);
    check(data != NULL && sizes != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        data[i] = s->tensors[i].data;
        sizes[i] = s->tensors[i].size;
    }
    struct veil_buf joined;
    veil_buf_init_secret(&joined);
    check(veil_ok(veil_onnx_join(s->graph.data, s->graph.size, data, sizes, n, &joined)), "join");
    check_resplit(s, &joined);
    if (n > 0) {
        struct veil_buf bad = {0};
        check(!veil_ok(veil_onnx_join(s->graph.data, s->graph.size, data, sizes, n - 1, &bad)), "short join");
        check(bad.size == 0, "failed join left output");
        veil_buf_cleanup(&bad);
    }
    veil_buf_cleanup(&joined);
    free(data);
    free(sizes);
}

/* A model with external data: its stripped graph reads back, and joined as external data (every tensor at a
 * made-up offset of one file) it splits again into the same graph, locations and offsets. */
static void check_external(const struct veil_onnx_split *s)
{
    check_table(s);
    size_t n = s->tensor_count;
    uint64_t *offsets = calloc(n + 1, sizeof *offsets), *sizes = calloc(n + 1, sizeof *sizes);
    check(offsets != NULL && sizes != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        offsets[i] = (uint64_t)i * 4096u;
        sizes[i] = s->tensors[i].size;
    }
    struct veil_buf joined = {0};
    check(veil_ok(veil_onnx_join_external(s->graph.data, s->graph.size, "m.data", offsets, sizes, n, &joined)),
          "external join");
    struct veil_onnx_split again = {0};
    check(veil_ok(veil_onnx_split_external(joined.data, joined.size, &again)), "split of an external join");
    check(again.graph.size == s->graph.size && memcmp(again.graph.data, s->graph.data, s->graph.size) == 0,
          "stripped graph changed by an external join");
    for (size_t i = 0; i < n; i++)
        check(again.tensors[i].location != NULL && strcmp(again.tensors[i].location, "m.data") == 0 &&
              again.tensors[i].offset == offsets[i] && same_tensor(&again.tensors[i], &s->tensors[i]),
              "external tensor changed");
    veil_onnx_split_cleanup(&again);
    veil_buf_cleanup(&joined);
    free(offsets);
    free(sizes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_onnx_split s = {0}, ext = {0};
    int inline_ok = veil_ok(veil_onnx_split(data, size, &s));
    if (inline_ok) {
        check_table(&s);
        check_join(&s);
    }
    if (veil_ok(veil_onnx_split_external(data, size, &ext))) {
        check(!inline_ok || (ext.graph.size == s.graph.size && memcmp(ext.graph.data, s.graph.data, s.graph.size) == 0),
              "the two splits disagree on a model without external data");
        check_external(&ext);
    } else {
        check(!inline_ok, "a model that splits inline fails to split with external data allowed");
    }
    veil_onnx_split_cleanup(&ext);
    veil_onnx_split_cleanup(&s);
    /* Every input is also a candidate stripped graph. */
    struct veil_onnx_tensor *t = NULL;
    size_t n = 0;
    if (veil_ok(veil_onnx_tensor_table(data, size, &t, &n)))
        veil_onnx_tensors_free(t, n);
    return 0;
}
