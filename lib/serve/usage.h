/* SPDX-License-Identifier: Apache-2.0 */
/* The model owner's usage policy, enforced by veil-runtime inside the TEE (docs/spec/usage-policy.md): who may call
 * the model (API keys, stored as SHA-256 hashes), how often (per-client and global token buckets), how much (a
 * per-client budget of admitted requests over the runtime process's lifetime) and what comes back (output shaping,
 * handed to the KServe codec as struct veil_serve_shaping).
 *
 * Nothing here reads the clock: veil_usage_admit takes now_ms (a monotonic clock in milliseconds). */
#ifndef VEIL_SERVE_USAGE_H
#define VEIL_SERVE_USAGE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/result.h"
#include "serve/kserve.h"

/* Named limits for a policy document (it comes from the owner's key broker, but is parsed strictly anyway). */
#define VEIL_USAGE_MAX_SIZE (1u << 20)          /* bytes of the policy JSON */
#define VEIL_USAGE_MAX_CLIENTS 1024u
#define VEIL_USAGE_MAX_NAME_SIZE 64u            /* a client name: 1..64 of A-Z a-z 0-9 . _ - @ */
#define VEIL_USAGE_MAX_BUDGET (UINT64_C(1) << 53)
#define VEIL_USAGE_MAX_RATE 1000000.0           /* requests per second of one bucket */
#define VEIL_USAGE_MAX_BURST 1000000.0
#define VEIL_USAGE_MAX_API_KEY_SIZE 4096u       /* a longer bearer token is never a known key */
#define VEIL_USAGE_KEY_HASH_SIZE 32u            /* SHA-256 */

/* Refusal reasons (decision.reason), stable strings for logs and metrics labels. */
#define VEIL_USAGE_MISSING_API_KEY "missing-api-key"
#define VEIL_USAGE_UNKNOWN_API_KEY "unknown-api-key"
#define VEIL_USAGE_BUDGET_EXHAUSTED "budget-exhausted"
#define VEIL_USAGE_CLIENT_RATE "client-rate"
#define VEIL_USAGE_GLOBAL_RATE "global-rate"

/* A token bucket: rate_per_s == 0 means no limit. It starts full at its first use. */
struct veil_usage_bucket {
    double rate_per_s;
    double burst;
    double tokens;
    uint64_t last_ms;
    int started;
};

struct veil_usage_client {
    char name[VEIL_USAGE_MAX_NAME_SIZE + 1];
    uint8_t key_hash[VEIL_USAGE_KEY_HASH_SIZE]; /* SHA-256 of the API key */
    int has_budget;
    uint64_t budget;                            /* admitted requests allowed (with has_budget) */
    uint64_t used;                              /* admitted by this process so far */
    uint64_t reported;                          /* of used, what the upstream counter has acknowledged */
    uint64_t upstream;                          /* the upstream count (every process's, reported) as last seen */
    struct veil_usage_bucket rate;
};

/* A parsed policy and its counters. Heap object: veil_usage_parse / veil_usage_free. */
struct veil_usage_policy {
    pthread_mutex_t lock;                       /* guards every counter and bucket */
    size_t client_count;                        /* 0: an open policy (anyone, no API key) */
    struct veil_usage_client *clients;
    struct veil_usage_bucket global;
    struct veil_serve_shaping shaping;
    uint32_t precisions;                        /* VEIL_USAGE_PRECISION_* bits the owner allows; 0: any */
};

#define VEIL_USAGE_PRECISION_FP32 1u
#define VEIL_USAGE_PRECISION_BF16 2u

struct veil_usage_decision {
    int status;                                 /* 0: admitted; 401 or 429: refused */
    const char *reason;                         /* NULL when admitted; one of VEIL_USAGE_* above otherwise */
    char client[VEIL_USAGE_MAX_NAME_SIZE + 1];  /* the client whose key matched; "" for an open policy or a 401 */
    uint32_t retry_after_s;                     /* 429 for a rate: seconds until a request can pass (>= 1);
                                                   0 otherwise (a spent budget never comes back: send no Retry-After) */
};

/* Parses a policy (JSON text, at most VEIL_USAGE_MAX_SIZE bytes). Strict: unknown or duplicate members, wrong types,
 * out-of-range values, duplicate client names or key hashes, hashes that are not 64 lower-case hex digits, an empty
 * "clients" list all fail with VEIL_ERR_ARG (VEIL_ERR_LIMIT past a size cap), the message naming the member but
 * never a hash. *out is owned by the caller (veil_usage_free) and NULL on failure. */
VEIL_RESULT veil_usage_parse(const char *json, size_t size, struct veil_usage_policy **out);

/* Frees a policy. Accepts NULL. */
void veil_usage_free(struct veil_usage_policy *policy);

/* Decides one request at now_ms. authorization is the Authorization header value, or NULL when absent. An open
 * policy ignores it; otherwise it must be "Bearer <api key>" (scheme case-insensitive) and SHA-256(api key) must
 * equal a client's hash (constant-time comparison). Then, under the policy's lock: the client's budget, the
 * client's rate, the global rate; a request is counted against all three only when all three admit it.
 * Thread-safe. Fails only with VEIL_ERR_CRYPTO (hashing); the decision is then a 401. */
VEIL_RESULT veil_usage_admit(struct veil_usage_policy *policy, const char *authorization, uint64_t now_ms,
                             struct veil_usage_decision *decision);

/* The output shaping for the codec (never NULL). */
const struct veil_serve_shaping *veil_usage_shaping(const struct veil_usage_policy *policy);

/* ---- usage counts kept upstream (docs/spec/usage-policy.md §5) -----------------------------------------------
 *
 * Budgets outlive a process when the counts go upstream: veil-runtime reports what it admitted to veil-cache at each
 * lease renewal, veil-cache adds the reports of its node to veil-kbs at each of its own, and veil-kbs keeps the
 * counters durably. A count document is a JSON object {client name: count}: at most VEIL_USAGE_MAX_CLIENTS members,
 * names as in a policy, counts integers from 0 to VEIL_USAGE_MAX_BUDGET. A client's budget is judged against
 * upstream + (used - reported): the last count seen from upstream plus what this process admitted since. */

#define VEIL_USAGE_COUNTS_MAX_SIZE (256u << 10) /* bytes of a count document (1024 clients need about 90 KiB) */

/* 1 when name may name a client (1..64 of A-Z a-z 0-9 . _ - @). */
int veil_usage_name_valid(const char *name);

/* Parses a count document strictly (VEIL_ERR_FORMAT, VEIL_ERR_LIMIT past a cap; the message names no count).
 * *out: a new object with the same members in byte order of their names (so that writers lock rows in one order);
 * zero counts are dropped when drop_zero. */
VEIL_RESULT veil_usage_counts_parse(const char *json, size_t size, int drop_zero, json_t **out);

/* acc[name] += delta[name] for every member of delta, capped at VEIL_USAGE_MAX_BUDGET (sign < 0: -=, floored at 0).
 * acc must hold at most VEIL_USAGE_MAX_CLIENTS names afterwards (VEIL_ERR_LIMIT). */
VEIL_RESULT veil_usage_counts_add(json_t *acc, const json_t *delta, int sign);

/* Removes from counts every name that is not a client of policy (NULL or open: every name): counts kept upstream are
 * only ever those of the policy in force, so that a report cannot grow them past its clients. */
void veil_usage_counts_restrict(json_t *counts, const struct veil_usage_policy *policy);

/* The same with the policy as JSON text (NULL: none, open); VEIL_ERR_ARG when the text is not a valid policy. */
VEIL_RESULT veil_usage_counts_restrict_text(json_t *counts, const char *policy);

/* The document of what this process admitted and upstream has not acknowledged ({} when nothing): malloc'd text. */
VEIL_RESULT veil_usage_unreported(struct veil_usage_policy *policy, char **json);

/* Upstream acknowledged report (a document veil_usage_unreported gave, or NULL) and answered counts (the upstream
 * count of every client it knows; absent clients count 0). Both were parsed by the caller. */
void veil_usage_acknowledge(struct veil_usage_policy *policy, const json_t *report, const json_t *counts);

/* What GET /v2/models/<m> may show of the policy: {"access": "open"|"restricted", "classification_only": bool,
 * "max_top_k": n (when set), "round_decimals": n (when set), "precisions": [...] (when set)}. Never names, hashes, budgets or counters.
 * Caller owns *out. */
VEIL_RESULT veil_usage_summary_json(const struct veil_usage_policy *policy, json_t **out);

#endif
