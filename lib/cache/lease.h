/* SPDX-License-Identifier: Apache-2.0 */
/* Leases on model keys (docs/cache.md, "Leases"): the table veil-cache keeps of the keys it holds, and the rules
 * both veil-cache and veil-runtime follow to schedule renewals. Daemon-free: every function takes the time (a
 * monotonic clock in milliseconds) from its caller, and the table takes no lock (the daemon holds one around it).
 *
 * The rules:
 *   - a key fetched from the broker by an exchange that STARTED at fetched_ms, under a TTL of ttl_ms, is valid
 *     until fetched_ms + ttl_ms (the start, not the end: the broker may have judged its policy at any instant of
 *     the exchange, so a revocation after that instant is honoured within one TTL of it);
 *   - its renewal is due at fetched_ms + ttl_ms / 2, less the grant's renew_early_ms (at most ttl_ms / 4: a holder
 *     draws it at random, so that holders started together do not renew together); a failed renewal is retried
 *     after retry_ms, never past expiry;
 *   - at expiry without a renewal the key is wiped (veil_lease_expire);
 *   - a lease handed to a runtime never outlives the holder's own: it is the time left, capped. */
#ifndef VEIL_CACHE_LEASE_H
#define VEIL_CACHE_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"
#include "core/secret.h"
#include "kbs/kbs.h"
#include "veil/attest.h"

#define VEIL_LEASE_MAX_ENTRIES 256u                     /* keys one cache holds at once */
#define VEIL_LEASE_KEY_MAX_SIZE VEIL_KBS_MODEL_KEY_MAX_SIZE
#define VEIL_LEASE_TTL_MIN_S VEIL_POLICY_LEASE_TTL_MIN_S /* the bounds of a model's lease_ttl_s (policy) */
#define VEIL_LEASE_TTL_MAX_S VEIL_POLICY_LEASE_TTL_MAX_S
#define VEIL_LEASE_TTL_DEFAULT_S VEIL_POLICY_LEASE_TTL_DEFAULT_S
#define VEIL_LEASE_MAX_MS (UINT64_C(1000) * VEIL_LEASE_TTL_MAX_S)
#define VEIL_LEASE_MIN_RENEW_MS 50u                     /* a holder never renews more often than this */

struct veil_lease {
    char model_id[VEIL_KBS_MODEL_ID_MAX + 1];
    uint32_t key_version;
    struct veil_secure_mem key;  /* VEIL_LEASE_KEY_MAX_SIZE bytes, excluded from core dumps (locked when asked) */
    size_t key_size;
    uint64_t min_model_version;
    char *usage_policy;          /* the owner's usage policy (JSON text, malloc'd), NULL: none (open) */
    uint64_t ttl_ms;
    uint64_t expires_ms;         /* monotonic: the fetch's start + ttl_ms */
    uint64_t renew_ms;           /* when the next renewal is due */
};

/* What one successful fetch grants. Everything is borrowed (copied by veil_lease_put). */
struct veil_lease_grant {
    const char *model_id;
    uint32_t key_version;
    const uint8_t *key;
    size_t key_size;
    uint64_t min_model_version;
    const char *usage_policy;    /* NULL: none */
    uint64_t ttl_ms;             /* 1..VEIL_LEASE_MAX_MS */
    uint64_t fetched_ms;         /* when the fetch started */
    uint64_t renew_early_ms;     /* renew this much before half the TTL (jitter; capped at ttl_ms / 4) */
};

struct veil_lease_table {
    struct veil_lease *entries[VEIL_LEASE_MAX_ENTRIES];
    size_t count;
    int lock_memory;             /* nonzero: keys in mlock'ed memory; a refused lock fails veil_lease_put */
};

void veil_lease_table_init(struct veil_lease_table *t, int lock_memory);
/* Wipes and frees every lease. */
void veil_lease_table_cleanup(struct veil_lease_table *t);

/* Stores (or replaces, for the same model id and key version) a lease. A replaced key is wiped first.
 * VEIL_ERR_ARG for a grant out of bounds (model id, key size, ttl), VEIL_ERR_LIMIT when the table is full. */
VEIL_RESULT veil_lease_put(struct veil_lease_table *t, const struct veil_lease_grant *g);
/* The lease of (model_id, key_version), valid or not; NULL when none. */
struct veil_lease *veil_lease_find(struct veil_lease_table *t, const char *model_id, uint32_t key_version);
/* Wipes and removes one lease (revocation, expiry). */
void veil_lease_drop(struct veil_lease_table *t, struct veil_lease *l);
/* Drops every lease whose expiry is at or before now_ms; returns how many. */
size_t veil_lease_expire(struct veil_lease_table *t, uint64_t now_ms);
/* The lease whose renewal is due at now_ms (the earliest), or NULL; *wake_ms is when the table next needs
 * attention (a renewal or an expiry), UINT64_MAX when empty. */
struct veil_lease *veil_lease_next_due(struct veil_lease_table *t, uint64_t now_ms, uint64_t *wake_ms);
/* A failed renewal: try again retry_ms later (at least VEIL_LEASE_MIN_RENEW_MS). */
void veil_lease_retry(struct veil_lease *l, uint64_t now_ms, uint64_t retry_ms);

/* Milliseconds left at now_ms (0 when expired). */
uint64_t veil_lease_remaining_ms(const struct veil_lease *l, uint64_t now_ms);
/* The lease handed on to a runtime: the time left, at most max_ms. */
uint64_t veil_lease_sublease_ms(const struct veil_lease *l, uint64_t now_ms, uint64_t max_ms);

/* A holder's schedule for a lease of lease_ms granted in answer to a request sent at sent_ms: it expires at
 * sent_ms + lease_ms (the grantor counted from a later instant, so this is never later than the grantor's), and is
 * renewed at half of it, but not sooner than VEIL_LEASE_MIN_RENEW_MS from now_ms. */
void veil_lease_schedule(uint64_t sent_ms, uint64_t lease_ms, uint64_t now_ms, uint64_t *expires_ms,
                         uint64_t *renew_ms);

#endif
