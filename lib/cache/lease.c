/* SPDX-License-Identifier: Apache-2.0 */
/* The lease table (lease.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/lease.h"

void veil_lease_table_init(struct veil_lease_table *t, int lock_memory)
{
    memset(t, 0, sizeof *t);
    t->lock_memory = lock_memory;
}

static void lease_free(struct veil_lease *l)
{
    if (l == NULL)
        return;
    veil_secure_free(&l->key);
    free(l->usage_policy);
    veil_wipe(l, sizeof *l);
    free(l);
}

void veil_lease_table_cleanup(struct veil_lease_table *t)
{
    for (size_t i = 0; i < t->count; i++)
        lease_free(t->entries[i]);
    t->count = 0;
}

static VEIL_RESULT grant_check(const struct veil_lease_grant *g)
{
    VEIL_ENSURE(g->model_id != NULL, VEIL_ERR_ARG, "lease: no model id");
    VEIL_GUARD(veil_kbs_model_id_check(g->model_id, strlen(g->model_id)));
    VEIL_ENSURE(g->key_version > 0, VEIL_ERR_ARG, "lease: key version 0");
    VEIL_ENSURE(g->key != NULL && g->key_size >= VEIL_KBS_MODEL_KEY_MIN_SIZE && g->key_size <= VEIL_LEASE_KEY_MAX_SIZE,
                VEIL_ERR_ARG, "lease: a key of %zu bytes", g->key_size);
    VEIL_ENSURE(g->ttl_ms > 0 && g->ttl_ms <= VEIL_LEASE_MAX_MS, VEIL_ERR_ARG, "lease: a TTL of %llu ms",
                (unsigned long long)g->ttl_ms);
    return VEIL_RESULT_OK;
}

/* Fills l from g (l's key memory already allocated). */
static VEIL_RESULT lease_fill(struct veil_lease *l, const struct veil_lease_grant *g)
{
    char *usage = NULL;
    if (g->usage_policy != NULL) {
        usage = strdup(g->usage_policy);
        VEIL_ENSURE(usage != NULL, VEIL_ERR_NOMEM, "out of memory");
    }
    free(l->usage_policy);
    l->usage_policy = usage;
    snprintf(l->model_id, sizeof l->model_id, "%s", g->model_id);
    l->key_version = g->key_version;
    veil_wipe(l->key.data, l->key.size);
    memcpy(l->key.data, g->key, g->key_size);
    l->key_size = g->key_size;
    l->min_model_version = g->min_model_version;
    l->ttl_ms = g->ttl_ms;
    l->expires_ms = g->fetched_ms + g->ttl_ms;
    uint64_t early = g->renew_early_ms < g->ttl_ms / 4 ? g->renew_early_ms : g->ttl_ms / 4;
    l->renew_ms = g->fetched_ms + g->ttl_ms / 2 - early;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_lease_put(struct veil_lease_table *t, const struct veil_lease_grant *g)
{
    VEIL_GUARD(grant_check(g));
    struct veil_lease *l = veil_lease_find(t, g->model_id, g->key_version);
    if (l != NULL)
        return lease_fill(l, g);
    VEIL_ENSURE(t->count < VEIL_LEASE_MAX_ENTRIES, VEIL_ERR_LIMIT, "the cache holds %u keys already",
                VEIL_LEASE_MAX_ENTRIES);
    l = calloc(1, sizeof *l);
    VEIL_ENSURE(l != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = veil_secure_alloc(&l->key, VEIL_LEASE_KEY_MAX_SIZE, t->lock_memory);
    if (veil_ok(r))
        r = lease_fill(l, g);
    if (!veil_ok(r)) {
        lease_free(l);
        return r;
    }
    t->entries[t->count++] = l;
    return VEIL_RESULT_OK;
}

struct veil_lease *veil_lease_find(struct veil_lease_table *t, const char *model_id, uint32_t key_version)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->entries[i]->key_version == key_version && strcmp(t->entries[i]->model_id, model_id) == 0)
            return t->entries[i];
    return NULL;
}

void veil_lease_drop(struct veil_lease_table *t, struct veil_lease *l)
{
    for (size_t i = 0; i < t->count; i++) {
        if (t->entries[i] == l) {
            lease_free(l);
            t->entries[i] = t->entries[--t->count];
            t->entries[t->count] = NULL;
            return;
        }
    }
}

size_t veil_lease_expire(struct veil_lease_table *t, uint64_t now_ms)
{
    size_t dropped = 0;
    for (size_t i = 0; i < t->count;) {
        if (t->entries[i]->expires_ms <= now_ms) {
            veil_lease_drop(t, t->entries[i]);
            dropped++;
        } else {
            i++;
        }
    }
    return dropped;
}

struct veil_lease *veil_lease_next_due(struct veil_lease_table *t, uint64_t now_ms, uint64_t *wake_ms)
{
    struct veil_lease *due = NULL;
    uint64_t wake = UINT64_MAX;
    for (size_t i = 0; i < t->count; i++) {
        struct veil_lease *l = t->entries[i];
        if (l->renew_ms <= now_ms && (due == NULL || l->renew_ms < due->renew_ms))
            due = l;
        uint64_t next = l->renew_ms < l->expires_ms ? l->renew_ms : l->expires_ms;
        if (next < wake)
            wake = next;
    }
    *wake_ms = wake;
    return due;
}

void veil_lease_retry(struct veil_lease *l, uint64_t now_ms, uint64_t retry_ms)
{
    l->renew_ms = now_ms + (retry_ms < VEIL_LEASE_MIN_RENEW_MS ? VEIL_LEASE_MIN_RENEW_MS : retry_ms);
}

uint64_t veil_lease_remaining_ms(const struct veil_lease *l, uint64_t now_ms)
{
    return l->expires_ms > now_ms ? l->expires_ms - now_ms : 0;
}

uint64_t veil_lease_sublease_ms(const struct veil_lease *l, uint64_t now_ms, uint64_t max_ms)
{
    uint64_t left = veil_lease_remaining_ms(l, now_ms);
    return left < max_ms ? left : max_ms;
}

void veil_lease_schedule(uint64_t sent_ms, uint64_t lease_ms, uint64_t now_ms, uint64_t *expires_ms,
                         uint64_t *renew_ms)
{
    *expires_ms = sent_ms + lease_ms;
    uint64_t half = sent_ms + lease_ms / 2;
    uint64_t soonest = now_ms + VEIL_LEASE_MIN_RENEW_MS;
    *renew_ms = half > soonest ? half : soonest;
}
