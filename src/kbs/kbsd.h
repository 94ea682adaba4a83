/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs internals shared by the daemon's files:
 *
 *   main.c          lifecycle: arguments, configuration, keys, store, HTTP, signals, shutdown
 *   config.c        the settings table (rows of the shared parser, src/daemon/config.h)
 *   keys.c          master key, token signing key, admin token: load or create, mode 0600
 *   http.c          the shared HTTP server (src/daemon/http.h) set up for the broker: TLS files, body limits
 *   routes.c        the one routing table, admission (rate limits, admin authentication), error shapes
 *   rcar.c          Trustee RCAR 0.4.0: /kbs/v0/auth, /kbs/v0/attest, /kbs/v0/resource (model keys, usage policies)
 *   admin.c         Veil's admin API (docs/kbs-admin.openapi.yaml)
 *   audit.c         audit records of every release and denial
 *   metrics.c       the broker's metric families in the shared registry (metrics.h), GET /metrics
 *   store_sqlite.c  the store (store.h) on SQLite
 *   store_pg.c      the store on PostgreSQL, shared by replicas
 *   group_commit.c  one durable commit for concurrent audit appends, for both stores
 * Logs, clocks, routing, metrics and the HTTP server are the shared daemon layer's (src/daemon). */
#ifndef VEIL_KBSD_H
#define VEIL_KBSD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "config.h"
#include "core/result.h"
#include "daemon/daemon.h"
#include "core/secret.h"
#include "kbs/kbs.h"
#include "protocol/protocol.h"
#include "store.h"
#include "veil/attest.h"

#define KBS_ADMIN_TOKEN_SIZE 64u   /* hex characters of a generated admin token (32 random bytes) */
#define KBS_ADMIN_TOKEN_MIN 32u    /* shortest admin token accepted from a file */
#define KBS_MAX_SIM_KEYS VEIL_SIM_MAX_TRUSTED_KEYS
#define KBS_MAX_ALLOWED_TEES 8u
#define KBS_MAX_PATH_SIZE VD_MAX_PATH_SIZE
#define KBS_COOKIE_NAME "kbs-session-id"

/* Everything a request handler may use; read-only once the daemon serves (the store and the rate limiter are
 * thread-safe). */
struct kbs_ctx {
    const struct kbs_config *cfg;
    struct kbs_store *store;
    struct veil_secure_mem master;           /* VEIL_KBS_MASTER_KEY_SIZE bytes */
    struct veil_jwk signer;                  /* P-256 key pair signing attestation tokens */
    char signer_kid[17];
    char admin_token[KBS_ADMIN_TOKEN_SIZE * 2 + 1];
    struct veil_kbs_ratelimit ratelimit;
    char *sim_keys[KBS_MAX_SIM_KEYS];        /* trusted simulation platform keys, PEM text */
    size_t sim_key_count;
    veil_tee allowed_tees[KBS_MAX_ALLOWED_TEES];
    size_t allowed_tee_count;
    char *default_policy;                    /* JSON of the policy for models created without one */
};

/* ---- responses (routes.c) ------------------------------------------------------------------------------ */

/* Trustee's error shape: {"type":"https://github.com/confidential-containers/kbs/errors/<type>","detail":...}
 * with a fixed detail per type: nothing about why goes to the client (that goes to the log). */
void kbs_respond_protocol_error(struct vd_response *rs, unsigned status, const char *type);
/* The admin API's error shape: {"error": code, "message": message}. */
void kbs_respond_admin_error(struct vd_response *rs, unsigned status, const char *code, const char *message);
/* The broker's routing table (routes.c), and one request routed through it (the fuzz harness's entry). */
extern const struct vd_router kbs_router;
void kbs_dispatch(struct kbs_ctx *k, struct vd_request *rq, struct vd_response *rs);
/* Is the path one whose body limit is the admin limit? */
int kbs_path_is_admin(const char *path);

/* ---- handlers ------------------------------------------------------------------------------------------ */

void kbs_rcar_auth(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_rcar_attest(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_rcar_resource(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_rcar_usage_counts(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_models_list(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_model_create(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_model_get(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_key_rotate(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_key_revoke(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_policy_get(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_policy_set(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_usage_get(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_usage_set(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_usage_clear(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_usage_counters(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void kbs_admin_audit_read(void *ctx, const struct vd_request *rq, struct vd_response *rs);
/* 1 when the request came with a verified admin client certificate or carries the admin bearer token
 * (constant-time); logs the method that authenticated it, or the refusal. */
int kbs_admin_authorized(struct kbs_ctx *k, const struct vd_request *rq);
/* GET /metrics (metrics.c): the Prometheus text exposition. */
void kbs_metrics_get(void *ctx, const struct vd_request *rq, struct vd_response *rs);

/* ---- audit.c ------------------------------------------------------------------------------------------- */

struct kbs_audit_event {
    const char *event;     /* auth, attest, release, usage-release, model-create, key-rotate, key-revoke,
                              policy-set, usage-set, usage-clear */
    const char *decision;  /* allow, deny, release */
    const char *reason;    /* why (the log's detail); never a secret */
    const char *client;
    const char *session;   /* session id, or NULL */
    const char *model;
    uint32_t key_version;
    const char *tee;
    const struct veil_claims *claims; /* measurement and tcb status, when known */
};
/* The record as compact JSON (malloc'd), with the time. NULL when out of memory. */
char *kbs_audit_record(const struct kbs_audit_event *e);
/* Appends the record to the store's audit log and logs the event; a failure to audit is logged loudly and
 * returns 0. Nothing is released unless its release record is in the log (rcar.c). */
int kbs_audit(struct kbs_ctx *k, const struct kbs_audit_event *e);

/* ---- keys.c -------------------------------------------------------------------------------------------- */

/* Loads (creating when absent) the master key, the token signing key and the admin token; loads the trusted
 * simulation keys, the allowed TEE list and the default policy. */
VEIL_RESULT kbs_keys_load(struct kbs_ctx *k);
void kbs_keys_cleanup(struct kbs_ctx *k);
/* Creates the two built-in development models (test-0: 32 zero bytes, test-1: 32 0xFF bytes) when absent. */
VEIL_RESULT kbs_keys_seed_dev(struct kbs_ctx *k);
/* Stores a new key version: model_id, the key (key_size bytes) and its audit event; used by admin.c and the dev
 * seed. create: a new model with policy (version 1); else the next version of an existing model.
 * *outcome: 0 done, 1 the model exists (create) or does not (rotate). */
VEIL_RESULT kbs_keys_store(struct kbs_ctx *k, const char *model_id, const char *policy, int create,
                           const uint8_t *key, size_t key_size, const char *client, uint32_t *version,
                           int *outcome);

/* ---- http.c -------------------------------------------------------------------------------------------- */

struct kbs_http;
VEIL_RESULT kbs_http_start(struct kbs_ctx *k, struct kbs_http **out);
void kbs_http_stop(struct kbs_http *h);

#endif
