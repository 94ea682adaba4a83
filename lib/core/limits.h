/* SPDX-License-Identifier: Apache-2.0 */
/* Every maximum Veil applies to untrusted input, in one place. */
#ifndef VEIL_CORE_LIMITS_H
#define VEIL_CORE_LIMITS_H

#include <stdint.h>

/* Sealed format (docs/spec/sealed-format.md, section 10). */
#define VEIL_SEALED_MIN_HEADER_SIZE 64u
#define VEIL_SEALED_MAX_HEADER_SIZE (16u << 20)
#define VEIL_SEALED_MAX_SECTIONS 1000000u
#define VEIL_SEALED_MAX_SECTION_SIZE (UINT64_C(1) << 40)
#define VEIL_SEALED_MAX_DATA_SIZE (UINT64_C(1) << 42)
#define VEIL_SEALED_MIN_CHUNK_SIZE (1u << 12)
#define VEIL_SEALED_MAX_CHUNK_SIZE (1u << 30)

/* ONNX input. Protobuf itself caps a message at 2 GiB. */
#define VEIL_ONNX_MAX_MODEL_SIZE (UINT64_C(2) << 30)
#define VEIL_ONNX_MAX_RANK 32u
#define VEIL_ONNX_MAX_NAME_SIZE 4096u
#define VEIL_ONNX_MAX_DEPTH 64u

/* Key files. */
#define VEIL_KEY_FILE_MAX_SIZE 64u

/* Threads. */
#define VEIL_MAX_THREADS 256u

#endif
