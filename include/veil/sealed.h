/* SPDX-License-Identifier: Apache-2.0 */
/* The sealed model format (docs/spec/sealed-format.md): seal, inspect, open, unseal, rewrap. */
#ifndef VEIL_SEALED_H
#define VEIL_SEALED_H

#include <stddef.h>
#include <stdint.h>

#include "veil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes, also exported as functions so bindings never hard-code them. */
#define VEIL_KEY_SIZE 32u           /* model keys are 32 bytes; 16 is accepted for the seed's API only */
#define VEIL_MODEL_ID_MAX 128u
#define VEIL_DEFAULT_CHUNK_SIZE (1u << 20)
VEIL_API size_t veil_key_size(void);
VEIL_API size_t veil_model_id_max(void);
VEIL_API size_t veil_default_chunk_size(void);

/* Called from the thread that started the operation with the bytes done so far and the total. */
typedef void (*veil_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Options for sealing. Zero-initialise, then set model_id; every zero field takes its default. */
struct veil_seal_options {
    const char *model_id;     /* required: 1..128 bytes of [A-Za-z0-9._-], not starting with '.' or '-' */
    uint32_t key_version;     /* default 1 */
    uint64_t model_version;   /* default 1 */
    uint32_t chunk_size;      /* default 1 MiB; a power of two in [4 KiB, 1 GiB] */
    int public_graph;         /* nonzero: store the graph unencrypted (still authenticated) */
    unsigned threads;         /* default: every online CPU */
    veil_progress_fn progress;/* optional */
    void *progress_ctx;
    /* The file id, data key and wrap nonce always come from the OpenSSL CSPRNG: the public API has no way to
     * choose another source (a repeated data key would repeat every chunk's GCM nonce). */
};

/* Options for opening and unsealing. Zero-initialise; every zero field takes its default. */
struct veil_open_options {
    unsigned threads;         /* default: every online CPU */
    int lock_memory;          /* nonzero: mlock the plaintext, fail with VEIL_ERR_NOMEM when that is impossible */
    veil_progress_fn progress;
    void *progress_ctx;
    uint64_t min_model_version; /* anti-rollback (default 0: none): a file whose authenticated header says an
                                 * older model_version is refused with VEIL_ERR_VERSION before any chunk is
                                 * decrypted. The TEE takes it from the key broker's release (the policy's
                                 * min_model_version; veil_kbs_fetch_key) or from its own configuration. */
};

/* The public header of a sealed file (needs no key). */
struct veil_sealed_info {
    char model_id[VEIL_MODEL_ID_MAX + 1];
    uint16_t format_major, format_minor;
    uint32_t key_version;
    uint64_t model_version;
    uint32_t chunk_size;
    int public_graph;
    uint8_t file_id[16];
    uint64_t graph_size;      /* bytes of the (stripped) ONNX graph */
    uint64_t tensor_count;    /* number of tensor sections */
    uint64_t tensor_data_size;/* bytes of tensor data, padding excluded */
    uint64_t file_size;
};

/* Seals an ONNX model held in memory into a new file at out_path. The file is written under a temporary name
 * in the same directory and renamed over out_path only on success; on failure nothing is left behind and an
 * existing out_path is untouched. key_size is 32 (or 16 for the seed's API). */
VEIL_API VEIL_WUR veil_status veil_seal(const uint8_t *onnx, size_t onnx_size, const uint8_t *key,
                                        size_t key_size, const struct veil_seal_options *options,
                                        const char *out_path);

/* Same as veil_seal, reading the model from onnx_path. */
VEIL_API VEIL_WUR veil_status veil_seal_file(const char *onnx_path, const uint8_t *key, size_t key_size,
                                             const struct veil_seal_options *options, const char *out_path);

/* Reads and checks the public header and the file's layout (sizes, padding); needs no key. */
VEIL_API VEIL_WUR veil_status veil_inspect_file(const char *path, struct veil_sealed_info *out);

/* The public header as a JSON object; *json_out is owned by the caller (veil_free), NULL on failure. */
VEIL_API VEIL_WUR veil_status veil_inspect_json(const char *path, char **json_out);

/* Owner-side recovery: decrypts a sealed file and writes the original ONNX model to out_path (temporary name,
 * renamed on success). Every chunk is authenticated before anything is written. */
VEIL_API VEIL_WUR veil_status veil_unseal_file(const char *path, const uint8_t *key, size_t key_size,
                                               const struct veil_open_options *options, const char *out_path);

/* Same as veil_unseal_file, returning the ONNX bytes; *onnx_out is owned by the caller (veil_free). */
VEIL_API VEIL_WUR veil_status veil_unseal(const char *path, const uint8_t *key, size_t key_size,
                                          const struct veil_open_options *options, uint8_t **onnx_out,
                                          size_t *onnx_size_out);

/* Re-wraps the data key of in_path under new_key with new_key_version and writes out_path (which may equal
 * in_path; temporary name, renamed on success). The tensor data is copied, not re-encrypted. This is key
 * ROTATION, not compromise recovery: the data key stays the same, so whoever holds the old model key and a copy
 * of the old file can still decrypt the new one. After a compromise use veil_reseal_file. */
VEIL_API VEIL_WUR veil_status veil_rewrap_file(const char *in_path, const uint8_t *old_key, size_t old_key_size,
                                               const uint8_t *new_key, size_t new_key_size,
                                               uint32_t new_key_version, const char *out_path);

/* Options for resealing. Zero-initialise; every zero field keeps the input file's value. */
struct veil_reseal_options {
    uint32_t new_key_version; /* the key version written; required (>= 1) when a new key is given */
    uint64_t model_version;   /* default: the input's; may not be lower than the input's */
    unsigned threads;         /* default: every online CPU */
    veil_progress_fn progress;/* optional: called for the decryption, then for the encryption */
    void *progress_ctx;
};

/* Compromise recovery: authenticates and decrypts in_path with old_key, then seals the same model again under a
 * FRESH data key, a fresh file id (so a new header digest and new chunk AADs) and a fresh wrap, under new_key
 * (NULL with new_key_size 0: old_key again). Every tensor is re-encrypted: nothing of the old file's key
 * material survives, so the old model key plus an old copy of the file yields nothing about the new file.
 * Model id, chunk size and public-graph flag are kept. Writes out_path (which may equal in_path; temporary
 * name, renamed on success). Contrast veil_rewrap_file, which is key rotation only: it keeps the data key.
 * Holds the model's plaintext and its new ciphertext in memory at once. */
VEIL_API VEIL_WUR veil_status veil_reseal_file(const char *in_path, const uint8_t *old_key, size_t old_key_size,
                                               const uint8_t *new_key, size_t new_key_size,
                                               const struct veil_reseal_options *options, const char *out_path);

/* A sealed model opened in memory: the decrypted graph and tensors, in memory libveil owns (64-byte aligned,
 * excluded from core dumps, optionally locked). Opaque. */
typedef struct veil_model veil_model;

/* A view of one tensor of an opened model; pointers live as long as the model. */
struct veil_tensor_view {
    const char *name;         /* NUL-terminated */
    int32_t dtype;            /* ONNX TensorProto.DataType */
    uint32_t rank;
    const int64_t *dims;
    const void *data;         /* 64-byte aligned, little-endian raw layout */
    size_t size;              /* bytes */
};

/* Opens, authenticates and decrypts a sealed model. *out is owned by the caller (veil_model_free) and is NULL
 * on failure, when all plaintext produced so far has been wiped. */
VEIL_API VEIL_WUR veil_status veil_model_open(const char *path, const uint8_t *key, size_t key_size,
                                              const struct veil_open_options *options, veil_model **out);
/* Wipes and frees. Accepts NULL. */
VEIL_API void veil_model_free(veil_model *model);
VEIL_API const struct veil_sealed_info *veil_model_info(const veil_model *model);
/* The SHA-256 (32 bytes) of the sealed header the open authenticated: header_digest =
 * SHA-256(preamble || header), file bytes [0, 16 + header_size) (spec sections 4 and 5). It is computed once, from
 * the very bytes veil_model_open parsed and bound into every chunk's AAD and the key wrap, never by re-reading the
 * file. It names the model id, model version, file id and section table (not the key wrap, so it survives
 * veil rewrap). Owned by the model; lives as long as it. */
VEIL_API const uint8_t *veil_model_header_sha256(const veil_model *model);
/* The stripped ONNX ModelProto (initializer data removed; see the spec, section 9). */
VEIL_API const uint8_t *veil_model_graph(const veil_model *model, size_t *size_out);
VEIL_API size_t veil_model_tensor_count(const veil_model *model);
VEIL_API VEIL_WUR veil_status veil_model_tensor(const veil_model *model, size_t index,
                                                struct veil_tensor_view *out);

/* Writes 32 random bytes from the OpenSSL CSPRNG into out. */
VEIL_API VEIL_WUR veil_status veil_keygen(uint8_t *out, size_t size);

#ifdef __cplusplus
}
#endif
#endif
