/* SPDX-License-Identifier: Apache-2.0 */
/* ONNX for the sealed format: split a ModelProto into a stripped graph plus raw tensor data, read the tensor
 * table back from a stripped graph, and join them again (docs/spec/sealed-format.md, section 9).
 * Every byte is read through a bounded cursor; nothing here trusts the input. */
#ifndef VEIL_ONNX_ONNX_H
#define VEIL_ONNX_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/limits.h"
#include "core/result.h"

/* ONNX TensorProto.DataType values Veil knows. */
enum veil_onnx_dtype {
    VEIL_ONNX_FLOAT = 1, VEIL_ONNX_UINT8 = 2, VEIL_ONNX_INT8 = 3, VEIL_ONNX_UINT16 = 4, VEIL_ONNX_INT16 = 5,
    VEIL_ONNX_INT32 = 6, VEIL_ONNX_INT64 = 7, VEIL_ONNX_STRING = 8, VEIL_ONNX_BOOL = 9, VEIL_ONNX_FLOAT16 = 10,
    VEIL_ONNX_DOUBLE = 11, VEIL_ONNX_UINT32 = 12, VEIL_ONNX_UINT64 = 13, VEIL_ONNX_COMPLEX64 = 14,
    VEIL_ONNX_COMPLEX128 = 15, VEIL_ONNX_BFLOAT16 = 16, VEIL_ONNX_FLOAT8E4M3FN = 17,
    VEIL_ONNX_FLOAT8E4M3FNUZ = 18, VEIL_ONNX_FLOAT8E5M2 = 19, VEIL_ONNX_FLOAT8E5M2FNUZ = 20
};

/* Bytes per element of an extractable data type; 0 for STRING and for anything unknown or sub-byte. */
size_t veil_onnx_dtype_size(int32_t dtype);

/* One extracted initializer of the top-level graph. */
struct veil_onnx_tensor {
    char *name;                          /* NUL-terminated copy, owned */
    int32_t dtype;
    uint32_t rank;
    int64_t dims[VEIL_ONNX_MAX_RANK];
    uint64_t size;                       /* bytes of raw little-endian data: product(dims) * element size */
    const uint8_t *data;                 /* raw bytes: into the input model, or == owned; NULL in a table and
                                            for external data */
    uint8_t *owned;                      /* set when converted from a typed field (float_data, ...); owned */
    char *location;                      /* external data (veil_onnx_split_external): the file, relative to the
                                            model's directory, checked to stay inside it lexically; owned */
    uint64_t offset;                     /* external data: where the size bytes start in that file */
};

/* The result of splitting a model. Caller-owned: zero it, then _cleanup. */
struct veil_onnx_split {
    struct veil_buf graph;               /* the stripped ModelProto */
    struct veil_onnx_tensor *tensors;    /* in graph order */
    size_t tensor_count;
};

/* Validates model as an ONNX ModelProto and splits it. Fails with VEIL_ERR_ONNX on malformed input (naming
 * what is wrong), VEIL_ERR_UNSUPPORTED for external data, segments or sparse initializers, and
 * VEIL_ERR_LIMIT past a named limit. The tensors' data may point into model, which must outlive out. */
VEIL_RESULT veil_onnx_split(const uint8_t *model, size_t size, struct veil_onnx_split *out);
/* Like veil_onnx_split, but a tensor with ONNX external data is accepted: its data is NULL and its location and
 * offset say where its size bytes are. The caller reads them (offset + size within the file) and must open the
 * location beneath the model's directory. Its external_data and data_location fields are stripped like data. */
VEIL_RESULT veil_onnx_split_external(const uint8_t *model, size_t size, struct veil_onnx_split *out);
void veil_onnx_split_cleanup(struct veil_onnx_split *s);
/* external.c: reads the size bytes of an external tensor into dst, from its location opened beneath the model's
 * directory dirfd (no absolute path, no '..', no symbolic link out of it; a regular file holding offset + size
 * bytes). VEIL_ERR_IO when the file cannot be opened there, VEIL_ERR_ONNX when it is too short. */
VEIL_RESULT veil_onnx_read_external(int dirfd, const struct veil_onnx_tensor *t, uint8_t *dst);
/* Refuses external tensors whose byte ranges overlap in one file (no exporter writes that; it would let a small file
 * stand for any amount of tensor data). */
VEIL_RESULT veil_onnx_check_external(const struct veil_onnx_split *split);

/* Reads the extracted initializers of a stripped graph (data = NULL), applying the same checks as split.
 * *out is owned by the caller (veil_onnx_tensors_free); count may be 0 with *out NULL. Fails with
 * VEIL_ERR_FORMAT when an extracted initializer still carries a data field. */
VEIL_RESULT veil_onnx_tensor_table(const uint8_t *graph, size_t size, struct veil_onnx_tensor **out,
                                   size_t *count);
void veil_onnx_tensors_free(struct veil_onnx_tensor *tensors, size_t count);

/* Rebuilds the full model from a stripped graph and the data of each extracted initializer, in order, into out
 * (appending; each tensor comes back as raw_data, the last field of its initializer). Fails with VEIL_ERR_FORMAT
 * when count or any size does not match the graph; on failure out keeps its old size and whatever was appended
 * is wiped. */
VEIL_RESULT veil_onnx_join(const uint8_t *graph, size_t size, const uint8_t *const *data, const uint64_t *sizes,
                           size_t count, struct veil_buf *out);
/* Like veil_onnx_join, but every extracted initializer refers to its data as ONNX external data: sizes[k] bytes
 * at offsets[k] of the file named location (a file name beside the model), which the caller writes. */
VEIL_RESULT veil_onnx_join_external(const uint8_t *graph, size_t size, const char *location,
                                    const uint64_t *offsets, const uint64_t *sizes, size_t count,
                                    struct veil_buf *out);

#endif
