/* SPDX-License-Identifier: Apache-2.0 */
/* A small bounded reader and writer for NumPy .npy files holding float32 C-order arrays (format 1.0-3.0). */
#ifndef VEIL_CLI_NPY_H
#define VEIL_CLI_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"
#include "veil/engine.h"

#define NPY_MAX_HEADER_SIZE 65536u
#define NPY_MAX_RANK VEIL_ENGINE_MAX_RANK

struct npy_array {
    uint32_t rank;
    int64_t dims[NPY_MAX_RANK];
    float *data;      /* owned (free) */
    size_t count;     /* elements */
};

/* Parses a whole .npy file held in memory: descr '<f4', fortran_order False, a shape of at most NPY_MAX_RANK
 * dims, and exactly count * 4 bytes of data after the header. */
VEIL_RESULT npy_parse(const uint8_t *file, size_t size, struct npy_array *out);
VEIL_RESULT npy_read(const char *path, uint64_t max_size, struct npy_array *out);
/* Writes a format 1.0 .npy file (atomically: temporary name, renamed on success). */
VEIL_RESULT npy_write(const char *path, const float *data, uint32_t rank, const int64_t *dims);
void npy_array_cleanup(struct npy_array *a);

#endif
