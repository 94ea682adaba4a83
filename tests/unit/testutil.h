/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the C tests: tiny ONNX models built by hand, temporary directories, files. */
#ifndef VEIL_TESTUTIL_H
#define VEIL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct tu_tensor {
    const char *name;
    int32_t dtype;
    uint32_t rank;
    int64_t dims[4];
    const void *data;   /* raw little-endian bytes */
    size_t size;
};

/* A ModelProto (ir_version 8, opset 17) whose graph has one Identity node and these initializers as raw_data.
 * Aborts on failure. */
void tu_model(const struct tu_tensor *t, size_t n, struct veil_buf *out);
/* A fresh temporary directory (removed by tu_rmdir) and a path inside it (static buffer per call slot 0..3). */
char *tu_tmpdir(void);
void tu_rmdir(const char *dir);
const char *tu_path(int slot, const char *dir, const char *name);
/* Reads a whole file; aborts on failure. Caller frees. */
uint8_t *tu_read(const char *path, size_t *size);
void tu_write(const char *path, const void *data, size_t size);
int tu_exists(const char *path);
/* A deterministic random source for veil_seal_with_random (format/format.h; ctx: uint64_t state). */
int tu_random(void *ctx, uint8_t *out, size_t size);

#endif
