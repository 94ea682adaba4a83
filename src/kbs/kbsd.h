/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs internals shared by the daemon's files:
 *
 *   main.c          lifecycle: arguments, configuration, keys, store, HTTP, signals, shutdown
 *   config.c        the settings table
 *   keys.c          master key, token signing key, admin token: load or create, mode 0600
 *   http.c          libmicrohttpd glue: bodies capped by named limits, one dispatch into routes.c
 *   routes.c        the one routing table
 *   rcar.c          Trustee RCAR 0.4.0: /kbs/v0/auth, /kbs/v0/attest, /kbs/v0/resource
 *   admin.c         Veil's admin API (docs/kbs-admin.openapi.yaml)
 *   audit.c         audit records of every release and denial
 *   metrics.c       Prometheus counters and histograms (metrics.h), GET /metrics
 *   log.c           structured JSON logs on stderr
 *   store_sqlite.c  the store (store.h) on SQLite
 *   store_pg.c      the store on PostgreSQL, shared by replicas
 *   group_commit.c  one durable commit for concurrent audit appends, for both stores */
#ifndef VEIL_KBSD_H
#define VEIL_KBSD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "config.h"
#include "core/result.h"
#include "core/secret.h"
#include "kbs/kbs.h"
#include "protocol/protocol.h"
#include "store.h"
#include "veil/attest.h"

#define KBS_ADMIN_TOKEN_SIZE 64u   /* hex characters of a generated admin token (32 random bytes) */
#define KBS_ADMIN_TOKEN_MIN 32u    /* shortest admin token accepted from a file */
#define KBS_MAX_SIM_KEYS VEIL_SIM_MAX_TRUSTED_KEYS
#define KBS_MAX_ALLOWED_TEES 8u
#define KBS_MAX_CAPTURES 4u
#define KBS_MAX_PATH_SIZE 1024u    /* longest request path routed */
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

enum kbs_lookup_kind { KBS_HEADER, KBS_COOKIE, KBS_QUERY };

struct kbs_request {
    const char *method;
    const char *path;
    const char *client;                      /* the peer's address, as text */
    const uint8_t *body;
    size_t body_size;
    const char *captures[KBS_MAX_CAPTURES];  /* the path segments matched by '*' in the route pattern */
    const char *(*lookup)(void *conn, enum kbs_lookup_kind kind, const char *key);
    void *conn;
    int client_cert_ok;                      /* 1: a client certificate verified against admin_client_ca */
    const char *client_cert_subject;         /* its subject DN (logging only); NULL when none verified */
};

struct kbs_response {
    unsigned status;
    char *body;                              /* malloc'd */
    size_t body_size;
    char set_cookie[192];                    /* empty: none */
    unsigned retry_after;                    /* seconds; 0: no header */
    const char *content_type;                /* static text; NULL: application/json */
};

/* A header, cookie or query argument of the request; NULL when absent. */
const char *kbs_request_get(const struct kbs_request *rq, enum kbs_lookup_kind kind, const char *key);

/* ---- responses (routes.c) ------------------------------------------------------------------------------ */

/* status with a JSON body (stolen; NULL: out of memory becomes a 500-free 401 for protocol routes). */
void kbs_respond_json(struct kbs_response *rs, unsigned status, json_t *body);
/* Trustee's error shape: {"type":"https://github.com/confidential-containers/kbs/errors/<type>","detail":...}
 * with a fixed detail per type: nothing about why goes to the client (that goes to the log). */
void kbs_respond_protocol_error(struct kbs_response *rs, unsigned status, const char *type);
/* The admin API's error shape: {"error": code, "message": message}. */
void kbs_respond_admin_error(struct kbs_response *rs, unsigned status, const char *code, const char *message);
/* Routes one request (the routing table lives in routes.c). */
void kbs_dispatch(struct kbs_ctx *k, struct kbs_request *rq, struct kbs_response *rs);
/* Is the path one whose body limit is the admin limit? */
int kbs_path_is_admin(const char *path);

/* ---- handlers ------------------------------------------------------------------------------------------ */

void kbs_rcar_auth(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_rcar_attest(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_rcar_resource(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_models_list(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_model_create(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_model_get(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_key_rotate(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_key_revoke(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_policy_get(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_policy_set(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
void kbs_admin_audit_read(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);
/* 1 when the request came with a verified admin client certificate or carries the admin bearer token
 * (constant-time); logs the method that authenticated it, or the refusal. */
int kbs_admin_authorized(struct kbs_ctx *k, const struct kbs_request *rq);
/* GET /metrics (metrics.c): the Prometheus text exposition. */
void kbs_metrics_get(struct kbs_ctx *k, const struct kbs_request *rq, struct kbs_response *rs);

/* ---- audit.c ------------------------------------------------------------------------------------------- */

struct kbs_audit_event {
    const char *event;     /* auth, attest, release, model-create, key-rotate, key-revoke, policy-set */
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

/* ---- log.c --------------------------------------------------------------------------------------------- */

/* One JSON line on stderr: {"ts","level","event", ...fields}; fields is a jansson pack format of an object
 * ("{s:s, s:I}") or NULL. */
void kbs_log(const char *level, const char *event, const char *fields, ...);
/* Sends the log elsewhere (NULL: stderr again); the fuzz harness silences it. */
void kbs_log_to(FILE *stream);
/* The wall clock, seconds since the epoch (the one place the daemon reads it). */
int64_t kbs_now(void);
uint64_t kbs_now_ms(void);

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
