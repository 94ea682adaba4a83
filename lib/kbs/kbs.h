/* SPDX-License-Identifier: Apache-2.0 */
/* The key broker's reusable, daemon-free logic (src/kbs is the daemon around it):
 *
 *   claims.c     verified claims <-> JSON, so that sessions in the store and attestation tokens carry them
 *   keystore.c   model keys at rest: AES-256-GCM under the broker master key, bound to (model id, version)
 *   audit.c      the hash chain of the append-only audit log (docs/kbs.md, "Audit log")
 *   resource.c   model ids and the resource tag "<model_id>[@<version>]"
 *   ratelimit.c  per-client token buckets with an explicit clock
 *
 * Nothing here reads the clock, the environment or the network. */
#ifndef VEIL_KBS_KBS_H
#define VEIL_KBS_KBS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/result.h"
#include "veil/attest.h"

/* ---- claims.c ------------------------------------------------------------------------------------------- */

/* The claims as a new JSON object, in veil_claims_to_json's layout (docs/spec/evidence.md, "Claims"). */
VEIL_RESULT veil_kbs_claims_to_json(const struct veil_claims *claims, json_t **out);
/* Parses that layout back (strict: unknown members, bad hex, out-of-range values fail with VEIL_ERR_FORMAT).
 * Used on the broker's own records (store, its signed tokens), never on client input. */
VEIL_RESULT veil_kbs_claims_from_json(const json_t *j, struct veil_claims *out);

/* ---- keystore.c ----------------------------------------------------------------------------------------- */

#define VEIL_KBS_MASTER_KEY_SIZE 32u
#define VEIL_KBS_MODEL_KEY_MIN_SIZE 16u
#define VEIL_KBS_MODEL_KEY_MAX_SIZE 64u
/* A sealed key: format byte 1 || nonce (12) || ciphertext || tag (16). */
#define VEIL_KBS_SEALED_KEY_OVERHEAD (1u + 12u + 16u)

/* Encrypts a model key under the master key with AAD "veil-kbs-key-v1" 0x00 model_id 0x00 u32le(version) and
 * appends the sealed form to out. */
VEIL_RESULT veil_kbs_key_seal(const uint8_t master[VEIL_KBS_MASTER_KEY_SIZE], const char *model_id,
                              uint32_t version, const uint8_t *key, size_t key_size, struct veil_buf *out);
/* Opens a sealed key; the plaintext is appended to out (a secret buffer). VEIL_ERR_AUTH when the blob was
 * changed or belongs to another (model id, version); VEIL_ERR_FORMAT for a malformed blob. */
VEIL_RESULT veil_kbs_key_open(const uint8_t master[VEIL_KBS_MASTER_KEY_SIZE], const char *model_id,
                              uint32_t version, const uint8_t *blob, size_t blob_size, struct veil_buf *out);

/* ---- audit.c -------------------------------------------------------------------------------------------- */

#define VEIL_KBS_AUDIT_HASH_HEX_SIZE 65u /* 64 lower-case hex digits and a NUL */
#define VEIL_KBS_AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* hash = hex(SHA-256("veil-kbs-audit-v1" 0x00 || prev (64 ASCII hex) || u64le(seq) || record bytes)). */
VEIL_RESULT veil_kbs_audit_hash(const char *prev_hex, uint64_t seq, const char *record, size_t record_size,
                                char out_hex[VEIL_KBS_AUDIT_HASH_HEX_SIZE]);
/* Checks one link: entry seq must be expected_seq, its prev must equal prev_hex, its hash must recompute.
 * VEIL_ERR_AUTH names the broken link. */
VEIL_RESULT veil_kbs_audit_check(const char *prev_hex, uint64_t expected_seq, uint64_t seq, const char *entry_prev,
                                 const char *record, size_t record_size, const char *entry_hash);

/* ---- resource.c ----------------------------------------------------------------------------------------- */

#define VEIL_KBS_MODEL_ID_MAX 128u

/* A model id: 1..128 characters of A-Z a-z 0-9 . _ -, not starting with '.'. VEIL_ERR_ARG otherwise. */
VEIL_RESULT veil_kbs_model_id_check(const char *id, size_t len);
/* "<model_id>" (version 0: the latest active version) or "<model_id>@<version>" (1..2^32-1, decimal, no
 * leading zero). model_id receives a NUL-terminated copy. VEIL_ERR_ARG otherwise. */
VEIL_RESULT veil_kbs_resource_tag_parse(const char *tag, char model_id[VEIL_KBS_MODEL_ID_MAX + 1],
                                        uint32_t *version);

/* ---- ratelimit.c ---------------------------------------------------------------------------------------- */

#define VEIL_KBS_RATELIMIT_SLOTS 4096u
#define VEIL_KBS_CLIENT_MAX 64u /* the longest client address kept (IPv6 text is at most 45 characters) */

struct veil_kbs_bucket {
    char client[VEIL_KBS_CLIENT_MAX];
    double tokens;
    uint64_t last_ms;
};

/* A fixed table of token buckets, one per client (hashed; a colliding client takes the slot over with a full
 * bucket, which never lowers anyone's allowance below the configured rate). Thread-safe. */
struct veil_kbs_ratelimit {
    pthread_mutex_t lock;
    double rate_per_s; /* tokens added per second; 0 disables the limiter */
    double burst;      /* bucket size */
    struct veil_kbs_bucket *slots;
};

VEIL_RESULT veil_kbs_ratelimit_init(struct veil_kbs_ratelimit *rl, double rate_per_s, double burst);
void veil_kbs_ratelimit_cleanup(struct veil_kbs_ratelimit *rl);
/* Takes one token from client's bucket at now_ms: 1 allowed, 0 refused. */
int veil_kbs_ratelimit_take(struct veil_kbs_ratelimit *rl, const char *client, uint64_t now_ms);

#endif
