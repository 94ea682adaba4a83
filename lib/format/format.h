/* SPDX-License-Identifier: Apache-2.0 */
/* The sealed model format, internals (docs/spec/sealed-format.md is normative). */
#ifndef VEIL_FORMAT_FORMAT_H
#define VEIL_FORMAT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/result.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "veil/sealed.h"

#define VEIL_SEALED_MAGIC "\x89VEIL\r\n\x1a"
#define VEIL_SEALED_MAGIC_SIZE 8u
#define VEIL_SEALED_MAJOR 1u
#define VEIL_SEALED_MINOR 0u
#define VEIL_SEALED_PREAMBLE_SIZE 16u
#define VEIL_SEALED_WRAP_SIZE 64u
#define VEIL_SEALED_FLAG_GRAPH_PUBLIC 1u
#define VEIL_SEALED_KNOWN_REQUIRED_FLAGS VEIL_SEALED_FLAG_GRAPH_PUBLIC
#define VEIL_SEALED_FILE_ID_SIZE 16u
#define VEIL_SEALED_AAD_SIZE 45u
#define VEIL_SEALED_WRAP_INFO "veil/sealed/v1/key-wrap"

struct veil_section {
    uint64_t offset;      /* in the data region */
    uint64_t size;
    uint64_t chunk_count; /* 0 for an unencrypted (public) graph */
    uint64_t first_tag;   /* index of its first chunk's tag in the tag table */
};

struct veil_key_wrap {
    uint32_t key_version;
    uint8_t nonce[VEIL_GCM_NONCE_SIZE];
    uint8_t wrapped_key[VEIL_GCM_KEY_SIZE];
    uint8_t tag[VEIL_GCM_TAG_SIZE];
};

/* A parsed and checked header. Caller-owned: _cleanup frees the section table. */
struct veil_sealed_header {
    uint16_t major, minor;
    uint32_t header_size;
    uint32_t required_flags, optional_flags;
    uint64_t model_version;
    uint32_t chunk_size;
    uint8_t file_id[VEIL_SEALED_FILE_ID_SIZE];
    uint8_t graph_digest[VEIL_SHA256_SIZE];
    char model_id[VEIL_MODEL_ID_MAX + 1];
    uint32_t section_count;
    struct veil_section *sections;
    /* Derived. */
    uint64_t data_offset, data_size, tag_count, file_size;
    uint8_t digest[VEIL_SHA256_SIZE]; /* SHA-256(preamble || header) */
    struct veil_key_wrap wrap;
};

void veil_sealed_header_cleanup(struct veil_sealed_header *h);

/* parse.c: reads and checks preamble, header, key wrap and all padding of an open sealed file. */
VEIL_RESULT veil_sealed_read_header(int fd, struct veil_sealed_header *h);
/* Checks a model id against the spec's charset and length. */
VEIL_RESULT veil_sealed_check_model_id(const char *id, size_t size);
/* Lays out sections (offsets, chunk counts, tags) from their sizes; used by the writer and the parser. */
VEIL_RESULT veil_sealed_layout(struct veil_sealed_header *h);
void veil_sealed_info_from_header(const struct veil_sealed_header *h, struct veil_sealed_info *info);

/* Builds the 45-byte chunk AAD and the 12-byte nonce. */
void veil_sealed_chunk_nonce(uint32_t section, uint64_t chunk, uint8_t nonce[VEIL_GCM_NONCE_SIZE]);
void veil_sealed_chunk_aad(const uint8_t digest[VEIL_SHA256_SIZE], uint32_t section, uint64_t chunk, int last,
                           uint8_t aad[VEIL_SEALED_AAD_SIZE]);

/* keywrap.c */
VEIL_RESULT veil_sealed_check_key(const uint8_t *key, size_t key_size);
VEIL_RESULT veil_sealed_wrap(const uint8_t *model_key, size_t key_size, const uint8_t digest[VEIL_SHA256_SIZE],
                             const uint8_t data_key[VEIL_GCM_KEY_SIZE], const uint8_t nonce[VEIL_GCM_NONCE_SIZE],
                             struct veil_key_wrap *wrap);
VEIL_RESULT veil_sealed_unwrap(const uint8_t *model_key, size_t key_size, const uint8_t digest[VEIL_SHA256_SIZE],
                               const struct veil_key_wrap *wrap, uint8_t data_key[VEIL_GCM_KEY_SIZE]);
void veil_sealed_wrap_encode(const struct veil_key_wrap *wrap, uint8_t out[VEIL_SEALED_WRAP_SIZE]);

/* Encodes preamble || header (everything the digest covers). */
VEIL_RESULT veil_sealed_encode_header(const struct veil_sealed_header *h, struct veil_buf *out);

/* crypt.c: AES-GCM over every chunk of every encrypted section, on several threads. For decryption, chunks are
 * read from fd (when fd >= 0) straight into region, laid out as the data region, and decrypted in place. */
struct veil_crypt_job {
    const struct veil_sealed_header *h;
    const uint8_t *data_key;
    uint8_t *region;       /* data_size bytes */
    uint8_t *tags;         /* tag_count * 16 bytes */
    int encrypt;
    int fd;                /* decryption: read chunk ciphertext from here; -1: region already holds it */
    unsigned threads;
    veil_progress_fn progress;
    void *progress_ctx;
};
VEIL_RESULT veil_sealed_crypt(const struct veil_crypt_job *job);
unsigned veil_threads_default(unsigned requested);

/* open.c: everything a reader does before handing out plaintext (spec section 8), into a locked arena. */
struct veil_sealed_plain {
    struct veil_sealed_header h;
    struct veil_secure_mem region; /* the data region, decrypted */
};
VEIL_RESULT veil_sealed_decrypt_file(const char *path, const uint8_t *key, size_t key_size,
                                     const struct veil_open_options *options, struct veil_sealed_plain *out);
void veil_sealed_plain_cleanup(struct veil_sealed_plain *p);

/* unseal.c: the ONNX model of an opened sealed model (initializers back as raw_data), appended to out. */
VEIL_RESULT veil_sealed_join_model(const veil_model *m, struct veil_buf *out);
/* model.c: one more reference to an opened model, dropped by veil_model_free; the last one wipes and frees. An
 * engine that uses the model's tensors in place holds one, so the caller may free the model as before. */
veil_model *veil_model_retain(const veil_model *m);
/* model.c: 1 when the caller's reference is the model's only one (no engine holds it). */
int veil_model_exclusive(const veil_model *m);
/* model.c: wipes tensor index and gives its whole pages back to the system (veil_secure_discard); veil_model_tensor
 * refuses it from then on. For an engine that has its own copy and consumes the model
 * (veil_engine_load_model_releasing); index must be in range. */
void veil_model_release_tensor(veil_model *m, size_t index);
/* model.c: 1 when the model's plaintext is locked in memory (opened with lock_memory), else 0. */
int veil_model_locked(const veil_model *m);

/* unseal.c: writes the model as out_path (the graph) and out_path.<file id>.data (every tensor, page-aligned) in
 * ONNX's external data form; veil_unseal_file does this for models past protobuf's 2 GiB limit. */
VEIL_RESULT veil_sealed_unseal_external(const veil_model *m, const char *out_path);

/* seal.c, for tests only (tests/vectors/gen_vectors.c and the unit tests, which link the static library): seals
 * with a caller-chosen random source so golden vectors are reproducible. Not VEIL_API, not in an installed header,
 * hidden in libveil.so (-fvisibility=hidden): the public veil_seal always uses the OpenSSL CSPRNG. The source
 * returns 0 on success. */
typedef int (*veil_random_fn)(void *ctx, uint8_t *out, size_t size);
veil_status veil_seal_with_random(const uint8_t *onnx, size_t onnx_size, const uint8_t *key, size_t key_size,
                                  const struct veil_seal_options *options, veil_random_fn random, void *random_ctx,
                                  const char *out_path);

/* Runs a library entry point: clears the thread's error and unwraps the result. */
static inline veil_status veil_api_return(struct veil_result r)
{
    return r.status;
}

#endif
