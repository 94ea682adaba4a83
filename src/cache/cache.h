/* SPDX-License-Identifier: Apache-2.0 */
/* veil-cache internals shared by the daemon's files:
 *
 *   main.c      lifecycle: arguments, configuration, TEE, socket, renewal thread, HTTP (/metrics), signals, stop
 *   config.c    the settings table (rows of the shared parser, src/daemon/config.h) and its checks
 *   broker.c    keys from veil-kbs (RCAR, this TEE's evidence), the lease table, renewals, revocations
 *   peer.c      who is on the other end of the socket: SO_PEERCRED, the peer's executable measured (SGX: its
 *               REPORT, verified in local.c); which models a peer may have
 *   local.c     the local protocol on the Unix socket (SGX: TLS on TCP loopback): local attestation, then key
 *               and lease requests
 *   usage.c     usage counts from the runtimes, on their way to the broker
 *   metrics.c   the cache's metric families, and its routes (/metrics, /health/...)
 * The lease table, the local protocol's codec and the local reports are lib/cache (daemon-free); logs, metrics, the
 * configuration parser and the HTTP server are the shared daemon layer's (src/daemon). */
#ifndef VEIL_CACHE_DAEMON_H
#define VEIL_CACHE_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "cache/lease.h"
#include "cache/local.h"
#include "core/result.h"
#include "daemon/daemon.h"
#include "veil/attest.h"
#include "veil/kbs_client.h"

#define CC_MAX_UIDS 16u
#define CC_MAX_MODELS 64u
#define CC_MAX_ALLOW 256u
#define CC_MAX_CONNECTIONS 1024u
#define CC_MAX_TOMBSTONES 256u
#define CC_MEASUREMENT_SIZE VEIL_LA_SIM_MEASUREMENT_SIZE

/* ---- configuration (config.c) ------------------------------------------------------------------------------ */

struct cc_config {
    char *socket;
    char *local_listen;         /* tee = sgx: the TLS-on-loopback address runtimes connect to */
    char *socket_mode;          /* octal text */
    char *allowed_uids;
    char *listen;               /* /metrics and /health; empty: none */
    char *tee;
    char *sim_dir;
    char *sim_config;
    char *gramine_root;
    char *tsm_root;
    char *kbs_url;
    char *kbs_cacert;
    char *kbs_pinned_pubkey;
    char *models;               /* MODEL_ID[@VERSION], comma-separated */
    char *allow;                /* MODEL_ID:MEASUREMENT (hex), comma-separated */
    uint64_t default_lease_ttl_s;
    uint64_t runtime_lease_max_s;
    uint64_t denied_retry_s;
    uint64_t key_timeout_s;
    uint64_t max_connections;
    uint64_t io_timeout_ms;
    uint64_t lock_memory;
};

extern const struct vd_config_table cc_config_table;

struct cc_model {
    char id[VEIL_KBS_MODEL_ID_MAX + 1];
    uint32_t version;           /* 0: any version, fetched when a runtime asks; else fetched at start */
};

struct cc_allow {
    char model[VEIL_KBS_MODEL_ID_MAX + 1];
    int sgx;                                  /* 1: an SGX identity (sgx), 0: a 48-byte measurement */
    uint8_t measurement[CC_MEASUREMENT_SIZE];
    struct veil_sgx_identity sgx_id;          /* MRENCLAVE, or MRSIGNER + ISVPRODID + minimum ISVSVN */
};

/* The configuration checked and decoded. */
struct cc_settings {
    veil_tee tee;
    uint8_t kind;               /* VEIL_LA_KIND_SIM (sim), _SGX (sgx: TLS on loopback) or _NONE (tdx, snp: one CVM) */
    unsigned socket_mode;
    uid_t uids[CC_MAX_UIDS];
    size_t uid_count;
    struct cc_model models[CC_MAX_MODELS];
    size_t model_count;
    struct cc_allow allow[CC_MAX_ALLOW];
    size_t allow_count;
};

VEIL_RESULT cc_config_finish(const struct cc_config *c, struct cc_settings *s);
/* The checks that need the TEE (tee = auto: once it is detected): the local report kind, the transport (socket or
 * local_listen) and the form of the allow-list (measurements, or SGX identities). */
VEIL_RESULT cc_config_for_tee(const struct cc_config *c, struct cc_settings *s, veil_tee tee);

/* ---- the daemon -------------------------------------------------------------------------------------------- */

struct cc_tombstone {
    char model[VEIL_KBS_MODEL_ID_MAX + 1];
    uint32_t version;
    uint64_t until_ms;
};

/* The usage counts of one model (usage.c). */
struct cc_counts {
    char model[VEIL_KBS_MODEL_ID_MAX + 1];
    json_t *upstream;                               /* the broker's counters, as last answered */
    json_t *pending;                                /* reported by this node's runtimes, not yet by the broker */
};

struct cc_ctx {
    const struct cc_config *cfg;
    struct cc_settings set;
    struct veil_provider_config provider;
    struct veil_kbs_fetch_options kbs;
    uint8_t self_measurement[CC_MEASUREMENT_SIZE];  /* what the cache's sim reports carry */
    uint8_t report_key[VEIL_LA_SIM_REPORT_KEY_SIZE]; /* sim: the node's report key */
    /* SGX: the TLS context (an ephemeral certificate), this enclave's side of the handshake, and one policy per
     * allow entry (sgx.peers: a runtime is admitted when one of them admits its REPORT) */
    struct ssl_ctx_st *tls;
    struct veil_la_sgx_side sgx;
    struct veil_sgx_peer_policy sgx_policies[CC_MAX_ALLOW];
    /* the lease table and what goes with it, under lock */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct veil_lease_table table;
    struct cc_tombstone tombstones[CC_MAX_TOMBSTONES];
    size_t tombstone_count;
    int stopping;
    pthread_mutex_t broker_lock;                    /* one exchange with the broker at a time */
    pthread_t renewer;
    int renewer_started;
    /* usage counts, under usage_lock (usage.c) */
    pthread_mutex_t usage_lock;
    struct cc_counts counts[CC_MAX_MODELS];
    size_t counts_count;
    /* the socket */
    int listen_fd;
    pthread_t acceptor;
    int acceptor_started;
    pthread_mutex_t conn_lock;
    pthread_cond_t conn_done;
    int conn_fds[CC_MAX_CONNECTIONS];
    size_t conn_count;
};

/* broker.c */
enum cc_obtain { CC_OK, CC_DENIED, CC_UNAVAILABLE, CC_FAILED };
/* The lock, the condition and the empty table. */
void cc_broker_init(struct cc_ctx *c);
/* Starts the renewal thread. */
VEIL_RESULT cc_broker_start(struct cc_ctx *c);
/* Fetches every model configured with a version (failures are logged: the broker may be down). */
void cc_broker_preload(struct cc_ctx *c);
/* Stops the renewal thread and wipes every key. */
void cc_broker_stop(struct cc_ctx *c);
/* The lease of (model, version): held and valid, else fetched from the broker now. On CC_OK with the table lock
 * HELD, *out is the lease (use it, then unlock c->lock); on any other answer the lock is not held. */
enum cc_obtain cc_obtain(struct cc_ctx *c, const char *model, uint32_t version, struct veil_lease **out);

/* usage.c (docs/spec/usage-policy.md §5) */
void cc_usage_init(struct cc_ctx *c);
void cc_usage_cleanup(struct cc_ctx *c);
/* *report: what to send the broker for model now (pending, "{}" when nothing; malloc'd). */
VEIL_RESULT cc_usage_take(struct cc_ctx *c, const char *model, char **report);
/* The broker counted report (cc_usage_take's) and answered counts: pending -= report, upstream = counts. NULLs (no
 * report sent, or a broker without counters): nothing changes. */
void cc_usage_answered(struct cc_ctx *c, const char *model, const char *report, const char *counts);
/* A runtime's report (parsed; NULL: none), restricted to the clients of policy (the usage policy under the lease,
 * JSON text; NULL: open, no clients), added to pending; *counts: upstream + pending after it (malloc'd). */
VEIL_RESULT cc_usage_local(struct cc_ctx *c, const char *model, const json_t *report, const char *policy,
                           char **counts);
/* 1 when model has runtime reports the broker has not counted yet. */
int cc_usage_pending(struct cc_ctx *c, const char *model);

/* peer.c */
struct cc_peer {
    pid_t pid;                                /* 0 under SGX (TCP: no SO_PEERCRED) */
    uid_t uid;
    uint8_t measurement[CC_MEASUREMENT_SIZE]; /* the executable's; SGX: the REPORT's MRENCLAVE (32 bytes, then 0) */
    struct veil_sgx_report sgx;               /* SGX: the runtime's verified REPORT */
};
/* The process on the other end of fd: its credentials (SO_PEERCRED), its executable measured, and a check that it
 * is still that process once measured (pidfd). VEIL_ERR_AUTH when its uid is not allowed. */
VEIL_RESULT cc_peer_identify(const struct cc_ctx *c, int fd, struct cc_peer *out);
/* Is this peer allowed model (NULL: any model)? By its measurement, or (SGX) by its REPORT against the SGX
 * identities allowed for the model. */
int cc_peer_allowed(const struct cc_ctx *c, const struct cc_peer *peer, const char *model);

/* local.c */
VEIL_RESULT cc_local_start(struct cc_ctx *c);
/* Stops accepting, closes every connection, waits for their threads (bounded), removes the socket. */
void cc_local_stop(struct cc_ctx *c);

/* metrics.c */
VEIL_RESULT cc_metrics_init(void);
extern const struct vd_router cc_router;
size_t cc_body_limit(void *ctx, const char *path);
void cc_too_large(void *ctx, const struct vd_request *rq, struct vd_response *rs);
enum cc_renewal { CC_RENEWAL_OK, CC_RENEWAL_DENIED, CC_RENEWAL_FAILED };
void cc_metrics_renewal(enum cc_renewal r);
void cc_metrics_expired(size_t n);
void cc_metrics_keys(size_t held, int64_t next_expiry_ms);
void cc_metrics_broker_reachable(int up);
void cc_metrics_served(int lease_only);
void cc_metrics_refused(uint16_t code);
void cc_metrics_busy(void);

#endif
