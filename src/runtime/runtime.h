/* SPDX-License-Identifier: Apache-2.0 */
/* veil-runtime internals shared by the daemon's files:
 *
 *   main.c      lifecycle: arguments, configuration, TLS key, models, HTTP, signals, draining shutdown
 *   config.c    the settings table (rows of the shared parser, src/daemon/config.h)
 *   tls.c       the TLS key pair and self-signed certificate, created in memory at start (never on disk)
 *   keys.c      where model keys come from: one small interface (struct rt_key_source); veil-kbs over RCAR
 *   keys_cache.c  the second source: veil-cache's Unix socket, after local attestation; keys under leases
 *   leases.c    the lease thread: renewal at half the lease, lapse and restore of models
 *   models.c    each served model: header, key, decryption into locked memory, usage policy, engine pool
 *   kserve.c    the KServe v2 / Open Inference Protocol routes and handlers (codec in lib/serve/kserve.h)
 *   veil.c      Veil's own routes: /v2/veil/attestation, /metrics, and the runtime's metric families
 * Logs, routing, metrics and the HTTP server are the shared daemon layer's (src/daemon). */
#ifndef VEIL_RUNTIME_H
#define VEIL_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/result.h"
#include "core/secret.h"
#include "daemon/daemon.h"
#include "serve/kserve.h"
#include "serve/usage.h"
#include "veil/attest.h"
#include "veil/client.h"
#include "veil/engine.h"
#include "veil/sealed.h"

#define RT_MAX_MODELS 16u
#define RT_MAX_WORKERS 64u          /* engine instances of one plan */
#define RT_MAX_PLANS 64u            /* plans (one per batch size) of one model */
#define RT_MODEL_NAME_MAX 128u

/* ---- configuration (config.c) ------------------------------------------------------------------------------ */

struct rt_config {
    int dev;
    char *listen;
    char *tls;                   /* "on" (attested self-signed certificate) or "off" (plain HTTP, loopback + sim) */
    char *tee;                   /* sim, sgx, tdx, snp, auto */
    char *models;                /* comma-separated NAME:PATH */
    char *key_source;            /* "kbs" or "cache" */
    char *kbs_url;
    char *kbs_cacert;
    char *cache_socket;          /* key_source = cache: veil-cache's Unix socket */
    char *cache_measurement;     /* key_source = cache: the cache's measurement (hex), checked when set */
    char *sim_dir;
    char *sim_config;
    char *gramine_root;
    char *tsm_root;
    uint64_t max_batch;
    uint64_t max_dim;
    uint64_t plan_dim;
    char *precision;
    char *model_precision;
    uint64_t workers;
    uint64_t engine_threads;
    uint64_t max_plans;
    uint64_t plan_rate;
    uint64_t lock_memory;
    uint64_t threads;
    uint64_t max_connections;
    uint64_t connection_timeout_s;
    uint64_t max_body_size;
    uint64_t drain_timeout_s;
    uint64_t key_timeout_s;
};

/* The settings table: parse with vd_config_* (src/daemon/config.h). */
extern const struct vd_config_table rt_config_table;
/* Checks what needs the whole configuration (TEE name, TLS off only on loopback with sim, models present). */
VEIL_RESULT rt_config_finish(struct rt_config *c, veil_tee *tee);

/* ---- TLS (tls.c) ------------------------------------------------------------------------------------------- */

struct rt_tls {
    struct veil_buf cert_pem;          /* NUL-terminated */
    struct veil_buf key_pem;           /* NUL-terminated, secret memory */
    uint8_t spki_sha256[VEIL_SPKI_SHA256_SIZE];
};

/* A fresh P-256 key and a self-signed certificate for it (CN veil-runtime, one year), both PEM in memory. */
VEIL_RESULT rt_tls_create(struct rt_tls *t);
void rt_tls_cleanup(struct rt_tls *t);

/* ---- model keys (keys.c) ----------------------------------------------------------------------------------- */

/* Where keys come from: veil-kbs (RCAR) or veil-cache (its Unix socket, keys under leases). */
struct rt_key_source {
    /* The key of model_id at key_version into key (VEIL_KEY_SIZE bytes of secret memory), the lowest sealed model
     * version the owner allows (0: any), the model's usage policy (malloc'd JSON text, or NULL when the owner
     * set none), its usage counts kept upstream (malloc'd count document, lib/serve/usage.h, or NULL when the
     * source keeps none), and the lease on the key in milliseconds from the moment the call began (0: no lease,
     * the key may be used for the process's lifetime). */
    VEIL_RESULT (*fetch)(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                         struct veil_secure_mem *key, uint64_t *min_model_version, char **usage_policy,
                         char **usage_counts, uint64_t *lease_ms);
    /* A source with leases: a new lease on a key already fetched (*lease_ms, from the moment the call began), with
     * usage_report (a count document: what this process admitted since its last report) counted upstream and the
     * counts after it in *usage_counts (malloc'd; NULL: none kept). VEIL_ERR_POLICY: the key is refused (revoked,
     * no longer allowed): stop using it now; any other error: the source cannot say now (keep the key until the
     * lease ends; the report was not counted). NULL for a source without leases. */
    VEIL_RESULT (*renew)(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                         const char *usage_report, char **usage_counts, uint64_t *lease_ms);
    /* usage_report counted upstream, the counts after it in *usage_counts (malloc'd; NULL: none kept): for the
     * last report at stop. */
    VEIL_RESULT (*report)(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                          const char *usage_report, char **usage_counts);
    void (*free)(struct rt_key_source *src);
    const char *name;  /* for the log */
};

VEIL_RESULT rt_key_source_kbs(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                              struct rt_key_source **out);
VEIL_RESULT rt_key_source_cache(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                                struct rt_key_source **out);
/* The source key_source names. */
VEIL_RESULT rt_key_source_open(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                               struct rt_key_source **out);

/* ---- models (models.c) ------------------------------------------------------------------------------------- */

struct rt_plan;

#define RT_MAX_REFUSED_SHAPES 8u /* input shapes remembered as unplannable, so that they are not planned again */

struct rt_model {
    char name[RT_MODEL_NAME_MAX + 1];
    char path[1024];
    char version[24];
    struct veil_sealed_info info;
    uint8_t header_sha256[32];
    veil_model *sealed;                         /* the decrypted graph and weights, kept to plan new batches */
    struct veil_serve_io inputs[VEIL_SERVE_MAX_INPUTS], outputs[VEIL_SERVE_MAX_OUTPUTS];
    char io_names[VEIL_SERVE_MAX_INPUTS + VEIL_SERVE_MAX_OUTPUTS][VEIL_SERVE_MAX_NAME_SIZE + 1]; /* theirs */
    struct veil_serve_model desc;
    struct veil_usage_policy *usage;            /* NULL: the owner set none (open) */
    struct veil_serve_shaping shaping;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct rt_plan *plans[RT_MAX_PLANS];
    size_t plan_count;
    uint64_t tick;                              /* LRU clock of the plans */
    struct veil_engine_options engine_options;
    size_t int8_nodes;                          /* the first plan's nodes on int8 kernels (metadata) */
    size_t workers, max_plans;
    uint64_t max_dim;                           /* the largest dynamic (non-batch) dim a request may give */
    double plan_rate, plan_tokens;              /* new plans per second (0: no limit), and a bucket of max_plans */
    uint64_t plan_refill_ms;
    struct veil_serve_shape refused[RT_MAX_REFUSED_SHAPES][VEIL_SERVE_MAX_INPUTS]; /* input shapes no plan takes */
    size_t refused_count, refused_next;
    /* The key's lease (a source with leases): requests hold gate for reading; a lapse or a restore holds it for
     * writing. While lapsed, the decrypted model and its engines are freed and the model answers 503. */
    pthread_rwlock_t gate;
    atomic_int lapsed;
    _Atomic uint64_t lease_expires_ms;          /* monotonic; 0: no lease */
    uint64_t lease_renew_ms, lease_retry_ms;    /* the lease thread's own (keys.c) */
    uint64_t key_fetch_us;                      /* how long the last key fetch took (for the log) */
};

/* An engine checked out for one request. */
struct rt_lease {
    struct rt_plan *plan;
    size_t slot;
    veil_engine *engine;
};

/* Parses "NAME:PATH". */
VEIL_RESULT rt_model_spec(const char *spec, char name[RT_MODEL_NAME_MAX + 1], char *path, size_t path_size);
/* Opens the sealed model with a key from src, loads its usage policy and plans batch 1. */
VEIL_RESULT rt_model_load(struct rt_model *m, const struct rt_config *c, struct rt_key_source *src);
/* A request's hold on the model: 0 (nothing held) when the model is lapsed, its lease has ended, or a lapse or
 * restore is under way; else release with rt_model_leave. */
int rt_model_enter(struct rt_model *m);
void rt_model_leave(struct rt_model *m);
/* The lease lapsed or the key was refused: waits for the requests under way, then wipes the decrypted model and
 * its engines; the model answers 503 until rt_model_restore. */
void rt_model_lapse(struct rt_model *m, const char *reason);
/* Fetches the key again, reopens the same sealed model (the same authenticated header, or it stays lapsed) and
 * plans batch 1; the usage policy in force (and its counters) is kept. */
VEIL_RESULT rt_model_restore(struct rt_model *m, const struct rt_config *c, struct rt_key_source *src);
void rt_model_cleanup(struct rt_model *m);
/* "fp32" or "bf16". */
const char *rt_precision_name(uint32_t precision);
/* Usage counts (docs/spec/usage-policy.md §5): *report is what the model's policy admitted since its last report
 * (malloc'd count document), NULL when the model has no usage policy or nothing to report (unless always). */
VEIL_RESULT rt_model_usage_report(struct rt_model *m, int always, char **report);
/* The source counted report (rt_model_usage_report's, or NULL) and answered counts (NULL: it keeps none). */
void rt_model_usage_counted(struct rt_model *m, const char *report, const char *counts);
/* An engine planned for these input shapes (one per model input, as a request gives them), created on demand: at
 * most `workers` per plan, `max_plans` plans per model, the least recently used idle plan evicted; waits while every
 * engine of the plan is busy. VEIL_ERR_ARG (message safe for clients) when no plan can be made for the shapes:
 * remembered, the next request of those shapes is refused at once. */
VEIL_RESULT rt_model_acquire(struct rt_model *m, const struct veil_serve_shape *shapes, struct rt_lease *lease);
void rt_model_release(struct rt_model *m, struct rt_lease *lease);

/* ---- the daemon -------------------------------------------------------------------------------------------- */

struct rt_ctx {
    const struct rt_config *cfg;
    veil_tee tee;
    struct veil_provider_config provider;
    struct rt_tls tls;
    int tls_on;
    struct rt_model *models[RT_MAX_MODELS];
    size_t model_count;
    struct veil_binding_model bindings[RT_MAX_MODELS];
    atomic_int ready;                           /* 0 while loading and while draining */
    atomic_int draining;
    struct rt_key_source *keys;
    pthread_t lease_thread;                     /* renews the leases of a source with leases (keys.c) */
    int lease_thread_started;
    pthread_mutex_t lease_lock;
    pthread_cond_t lease_wake;
    int lease_stop;
};

/* The lease thread (a source with leases only): renews each model's lease at half its length, lapses a model whose
 * key is refused or whose lease ends, and restores it when the source gives the key again. */
VEIL_RESULT rt_leases_start(struct rt_ctx *r);
void rt_leases_stop(struct rt_ctx *r);
/* At stop, with no request under way: the usage each model admitted since its last report, sent to the source. */
void rt_usage_flush(struct rt_ctx *r);

struct rt_model *rt_model_find(struct rt_ctx *r, const char *name);

/* Routing (kserve.c). */
extern const struct vd_router rt_router;
size_t rt_body_limit(void *ctx, const char *path);
void rt_too_large(void *ctx, const struct vd_request *rq, struct vd_response *rs);
/* {"error": message} with the status, as every KServe client expects (serving.md §1.8). */
void rt_respond_error(struct vd_response *rs, unsigned status, const char *message);

/* Handlers of Veil's own routes (veil.c). */
void rt_attestation_get(void *ctx, const struct vd_request *rq, struct vd_response *rs);
void rt_metrics_get(void *ctx, const struct vd_request *rq, struct vd_response *rs);
VEIL_RESULT rt_metrics_init(void);
void rt_metrics_refusal(const char *reason);
void rt_metrics_queue(int delta);
void rt_metrics_inferences(uint64_t batch);

#endif
