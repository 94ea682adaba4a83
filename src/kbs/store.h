/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's durable state behind one small interface, with two backends: store_sqlite.c (one file, the default)
 * and store_pg.c (PostgreSQL through libpq, shared by several replicas). Every operation is atomic; every mutation
 * that carries an audit record appends it to the hash-chained audit log in the same transaction. Sessions live
 * here, not in process memory, so any replica can serve any step of RCAR. */
#ifndef VEIL_KBS_STORE_H
#define VEIL_KBS_STORE_H

#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/result.h"

#define KBS_SESSION_ID_SIZE 32u /* hex characters of a session id (uuid4-simple form, as Trustee) */
#define KBS_NONCE_SIZE 44u      /* base64 of 32 random bytes */
#define KBS_TEE_NAME_SIZE 32u
#define KBS_USAGE_COUNT_MAX (INT64_C(1) << 53) /* a usage counter stops there (the policy's budget cap) */

struct kbs_session {
    char id[KBS_SESSION_ID_SIZE + 1];
    char tee[KBS_TEE_NAME_SIZE + 1];
    char nonce[KBS_NONCE_SIZE + 1];
    int64_t expires;
    int attested;
    char *claims;     /* JSON (veil_kbs_claims_to_json); NULL until attested; owned */
    char *tee_pubkey; /* the JWK as sent; NULL until attested; owned */
};
void kbs_session_cleanup(struct kbs_session *s);

/* One stored key version and its model's policy. */
struct kbs_key_row {
    uint32_t version;
    int revoked;
    struct veil_buf sealed; /* veil_kbs_key_seal's form */
    char *policy;           /* the model's policy JSON; owned */
};
void kbs_key_row_cleanup(struct kbs_key_row *r);

/* Called inside a key-writing transaction once the version is known: seals the key for (model_id, version) into
 * sealed and sets *audit to a malloc'd audit record (or NULL). */
typedef struct veil_result (*kbs_key_writer)(void *ctx, const char *model_id, uint32_t version,
                                             struct veil_buf *sealed, char **audit);

struct kbs_store;
struct kbs_store_ops {
    void (*close)(struct kbs_store *s);
    /* Inserts a challenged session and drops sessions that expired before now. */
    VEIL_RESULT (*session_create)(struct kbs_store *s, const struct kbs_session *sess, int64_t now);
    VEIL_RESULT (*session_get)(struct kbs_store *s, const char *id, struct kbs_session *out, int *found);
    /* Marks the session attested only if it exists, is not attested yet, has not expired at now and its nonce is
     * nonce: the nonce is consumed exactly once, even under concurrent requests. *done says whether it was. */
    VEIL_RESULT (*session_attest)(struct kbs_store *s, const char *id, const char *nonce, int64_t now,
                                  const char *claims, const char *tee_pubkey, int *done);
    /* Creates a model with key version 1; *created 0 when the model already exists (nothing written). */
    VEIL_RESULT (*model_create)(struct kbs_store *s, const char *model_id, const char *policy, int64_t now,
                                kbs_key_writer writer, void *ctx, int *created);
    /* Adds the next key version; *version receives it; *found 0 when the model does not exist. */
    VEIL_RESULT (*key_add)(struct kbs_store *s, const char *model_id, int64_t now, kbs_key_writer writer, void *ctx,
                           uint32_t *version, int *found);
    /* version 0: the highest version that is not revoked. */
    VEIL_RESULT (*key_get)(struct kbs_store *s, const char *model_id, uint32_t version, struct kbs_key_row *out,
                           int *found);
    VEIL_RESULT (*key_revoke)(struct kbs_store *s, const char *model_id, uint32_t version, const char *audit,
                              int *found);
    VEIL_RESULT (*policy_set)(struct kbs_store *s, const char *model_id, const char *policy, const char *audit,
                              int *found);
    /* The model's usage policy (JSON text, validated by the caller), or NULL to clear it, and its audit record,
     * in one transaction; *found 0 when the model does not exist (nothing written). */
    VEIL_RESULT (*usage_set)(struct kbs_store *s, const char *model_id, const char *usage, const char *audit,
                             int *found);
    /* *usage: the model's usage policy (malloc'd JSON text), NULL when none is set; *found 0 (and *usage NULL)
     * when the model does not exist. */
    VEIL_RESULT (*usage_get)(struct kbs_store *s, const char *model_id, char **usage, int *found);
    /* Adds deltas ({client name: count >= 1}, checked by the caller; {} for a read) to the model's usage counters,
     * each capped at KBS_USAGE_COUNT_MAX, and sets every counter of the model into totals (an object the caller
     * owns: {client name: admitted requests}), in one durable transaction. Counters are not decisions: no audit
     * record. *found 0 when the model does not exist (nothing written). */
    VEIL_RESULT (*usage_count)(struct kbs_store *s, const char *model_id, const json_t *deltas, json_t *totals,
                               int *found);
    /* *out: {"model_id","policy":<object>,"versions":[{"version","revoked","created"}]}; NULL when not found. */
    VEIL_RESULT (*model_get)(struct kbs_store *s, const char *model_id, json_t **out);
    /* *out: an array of model_get's objects without "policy". */
    VEIL_RESULT (*model_list)(struct kbs_store *s, json_t **out);
    VEIL_RESULT (*audit_append)(struct kbs_store *s, const char *record);
    /* *out: an array of {"seq","prev","hash","record"} for seq >= from, at most limit entries. */
    VEIL_RESULT (*audit_read)(struct kbs_store *s, uint64_t from, uint64_t limit, json_t **out);
};
struct kbs_store {
    const struct kbs_store_ops *ops;
};

/* Opens (creating when absent) the SQLite store at path: WAL journal, synchronous=FULL. */
VEIL_RESULT kbs_store_sqlite_open(const char *path, struct kbs_store **out);
/* Opens the PostgreSQL store named by a libpq conninfo, with pool_size (1..256) connections, creating its tables
 * when absent. Error messages never repeat the conninfo. */
VEIL_RESULT kbs_store_pg_open(const char *conninfo, unsigned pool_size, struct kbs_store **out);

#endif
