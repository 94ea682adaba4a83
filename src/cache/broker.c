/* SPDX-License-Identifier: Apache-2.0 */
/* Keys from the broker, under leases (lib/cache/lease.h). A key is fetched by a full RCAR exchange with fresh
 * evidence of this TEE (veil_kbs_fetch_model: key, minimum model version, usage policy and the model's lease TTL in
 * one attested session); it is valid for the TTL from the moment the exchange began, renewed the same way at half
 * of it, and wiped at expiry without renewal. How a failed renewal is read:
 *   - the broker refused (401 PolicyDeny: revoked version, policy no longer admits this node; AttestationError;
 *     404: no such model or version): the key is wiped at once, and runtimes that ask are told "revoked" for
 *     denied_retry_s before the broker is asked again;
 *   - anything else (broker unreachable, timeout, a malformed answer): an outage. The key is kept until its lease
 *     expires and the renewal retried (every quarter TTL, at most 5 s); the log and veil_cache_broker_reachable
 *     say so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "crypto/crypto.h"

#define RETRY_MAX_MS 5000u

static uint64_t retry_ms(uint64_t ttl_ms)
{
    uint64_t r = ttl_ms / 4;
    return r > RETRY_MAX_MS ? RETRY_MAX_MS : r;
}

static int denial(veil_status st)
{
    return st == VEIL_ERR_POLICY || st == VEIL_ERR_VERIFY || st == VEIL_ERR_ARG;
}

/* ---- tombstones: keys the broker refused, not asked for again for a while ----------------------------------- */

static struct cc_tombstone *tombstone_find(struct cc_ctx *c, const char *model, uint32_t version, uint64_t now)
{
    for (size_t i = 0; i < c->tombstone_count; i++) {
        struct cc_tombstone *t = &c->tombstones[i];
        if (t->until_ms <= now) {
            *t = c->tombstones[--c->tombstone_count];
            i--;
            continue;
        }
        if (t->version == version && strcmp(t->model, model) == 0)
            return t;
    }
    return NULL;
}

static void tombstone_add(struct cc_ctx *c, const char *model, uint32_t version, uint64_t now)
{
    uint64_t until = now + c->cfg->denied_retry_s * 1000u;
    struct cc_tombstone *t = tombstone_find(c, model, version, now);
    if (t == NULL && c->tombstone_count < CC_MAX_TOMBSTONES)
        t = &c->tombstones[c->tombstone_count++];
    if (t == NULL)
        return;
    snprintf(t->model, sizeof t->model, "%s", model);
    t->version = version;
    t->until_ms = until;
}

static void tombstone_clear(struct cc_ctx *c, const char *model, uint32_t version, uint64_t now)
{
    struct cc_tombstone *t = tombstone_find(c, model, version, now);
    if (t != NULL)
        *t = c->tombstones[--c->tombstone_count];
}

/* ---- one fetch --------------------------------------------------------------------------------------------- */

struct fetched {
    struct veil_secure_mem key;
    char *report; /* the usage report sent with it (usage.c) */
    struct veil_kbs_model_release out;
    uint64_t started_ms;
    veil_status status;
    char why[256];
};

static void fetched_cleanup(struct fetched *f)
{
    veil_secure_free(&f->key);
    free(f->out.usage_policy);
    free(f->out.usage_counts);
    free(f->report);
    f->out.usage_policy = f->out.usage_counts = f->report = NULL;
}

/* One RCAR exchange with the broker, with broker_lock held and the table lock not (it may take key_timeout_s). */
static void broker_fetch(struct cc_ctx *c, const char *model, uint32_t version, struct fetched *f)
{
    memset(f, 0, sizeof *f);
    if (!veil_ok(veil_secure_alloc(&f->key, VEIL_LEASE_KEY_MAX_SIZE, (int)c->cfg->lock_memory))) {
        f->status = VEIL_ERR_NOMEM;
        snprintf(f->why, sizeof f->why, "%s", veil_last_error());
        return;
    }
    if (!veil_ok(cc_usage_take(c, model, &f->report)))
        vd_log("error", "usage-counts-failed", "{s:s, s:s}", "model_id", model, "detail", veil_last_error());
    f->out = (struct veil_kbs_model_release){.key = f->key.data, .key_capacity = f->key.size,
                                             .with_usage_policy = 1, .usage_report = f->report};
    f->started_ms = vd_now_ms();
    f->status = veil_kbs_fetch_model(&c->kbs, model, version, &f->out);
    if (f->status != VEIL_OK)
        snprintf(f->why, sizeof f->why, "%s", veil_last_error());
    else
        cc_usage_answered(c, model, f->report, f->out.usage_counts);
}

static uint64_t ttl_of(const struct cc_ctx *c, const struct fetched *f)
{
    uint64_t s = f->out.lease_ttl_s;
    if (s < VEIL_LEASE_TTL_MIN_S || s > VEIL_LEASE_TTL_MAX_S)
        s = c->cfg->default_lease_ttl_s; /* none sent (or out of bounds: the cache's own default) */
    return s * 1000u;
}

/* Up to a tenth of the TTL, at random: caches started together spread their renewals (docs/scaling.md). */
static uint64_t jitter_ms(uint64_t ttl_ms)
{
    uint32_t r = 0;
    if (ttl_ms < 10 || !veil_ok(veil_random((uint8_t *)&r, sizeof r)))
        return 0;
    return r % (ttl_ms / 10);
}

/* Stores a successful fetch (lock held). */
static VEIL_RESULT store(struct cc_ctx *c, const char *model, uint32_t version, const struct fetched *f)
{
    uint64_t ttl = ttl_of(c, f);
    struct veil_lease_grant g = {.model_id = model, .key_version = version, .key = f->key.data,
                                 .key_size = f->out.key_size, .min_model_version = f->out.min_model_version,
                                 .usage_policy = f->out.usage_policy, .ttl_ms = ttl, .fetched_ms = f->started_ms,
                                 .renew_early_ms = jitter_ms(ttl)};
    VEIL_GUARD(veil_lease_put(&c->table, &g));
    tombstone_clear(c, model, version, vd_now_ms());
    return VEIL_RESULT_OK;
}

static void log_fetch(const char *event, const char *model, uint32_t version, const struct fetched *f, uint64_t ttl)
{
    if (f->status == VEIL_OK)
        vd_log("info", event, "{s:s, s:I, s:I, s:b}", "model_id", model, "key_version", (json_int_t)version,
               "lease_ttl_ms", (json_int_t)ttl, "usage_policy", f->out.usage_policy != NULL);
    else
        vd_log(denial(f->status) ? "warn" : "error", event, "{s:s, s:I, s:s, s:s}", "model_id", model, "key_version",
               (json_int_t)version, "result", denial(f->status) ? "denied" : "broker-unreachable", "detail", f->why);
}

static void metrics_update(struct cc_ctx *c)
{
    uint64_t now = vd_now_ms();
    int64_t next = -1;
    for (size_t i = 0; i < c->table.count; i++) {
        uint64_t left = veil_lease_remaining_ms(c->table.entries[i], now);
        if (next < 0 || (int64_t)left < next)
            next = (int64_t)left;
    }
    cc_metrics_keys(c->table.count, next);
}

/* ---- obtaining a key for a runtime ------------------------------------------------------------------------- */

static struct veil_lease *valid_lease(struct cc_ctx *c, const char *model, uint32_t version)
{
    struct veil_lease *l = veil_lease_find(&c->table, model, version);
    return l != NULL && veil_lease_remaining_ms(l, vd_now_ms()) > 0 ? l : NULL;
}

static int configured(const struct cc_ctx *c, const char *model, uint32_t version)
{
    for (size_t i = 0; i < c->set.model_count; i++)
        if (strcmp(c->set.models[i].id, model) == 0 &&
            (c->set.models[i].version == 0 || c->set.models[i].version == version))
            return 1;
    return 0;
}

/* With the table lock held: held and valid (CC_OK, lock kept), refused lately or stopping (lock released), or not
 * known (-1, lock released). */
static int lookup(struct cc_ctx *c, const char *model, uint32_t version, struct veil_lease **out)
{
    if (!c->stopping && (*out = valid_lease(c, model, version)) != NULL)
        return CC_OK;
    int answer = c->stopping ? CC_UNAVAILABLE : tombstone_find(c, model, version, vd_now_ms()) ? CC_DENIED : -1;
    pthread_mutex_unlock(&c->lock);
    return answer;
}

enum cc_obtain cc_obtain(struct cc_ctx *c, const char *model, uint32_t version, struct veil_lease **out)
{
    if (!configured(c, model, version))
        return CC_DENIED;
    pthread_mutex_lock(&c->lock);
    int known = lookup(c, model, version, out);
    if (known >= 0)
        return (enum cc_obtain)known;
    /* One fetch at a time; whoever waited finds what the fetch before it brought. */
    pthread_mutex_lock(&c->broker_lock);
    pthread_mutex_lock(&c->lock);
    known = lookup(c, model, version, out);
    if (known >= 0) {
        pthread_mutex_unlock(&c->broker_lock);
        return (enum cc_obtain)known;
    }
    struct fetched f;
    broker_fetch(c, model, version, &f);
    pthread_mutex_unlock(&c->broker_lock);
    log_fetch("key-fetched", model, version, &f, ttl_of(c, &f));
    pthread_mutex_lock(&c->lock);
    enum cc_obtain result = CC_FAILED;
    if (c->stopping)
        result = CC_UNAVAILABLE;
    else if (f.status == VEIL_OK && veil_ok(store(c, model, version, &f)))
        result = (*out = valid_lease(c, model, version)) != NULL ? CC_OK : CC_UNAVAILABLE;
    else if (f.status == VEIL_OK)
        vd_log("error", "key-store-failed", "{s:s, s:s}", "model_id", model, "detail", veil_last_error());
    else if (denial(f.status))
        tombstone_add(c, model, version, vd_now_ms()), result = CC_DENIED;
    else
        result = CC_UNAVAILABLE;
    cc_metrics_broker_reachable(f.status == VEIL_OK || denial(f.status));
    metrics_update(c);
    pthread_cond_broadcast(&c->wake);
    if (result != CC_OK)
        pthread_mutex_unlock(&c->lock);
    fetched_cleanup(&f);
    return result;
}

/* ---- renewals ---------------------------------------------------------------------------------------------- */

/* Applies a renewal's outcome to the lease of (model, version), if it is still there (lock held). */
static void renewal_apply(struct cc_ctx *c, const char *model, uint32_t version, const struct fetched *f)
{
    struct veil_lease *l = veil_lease_find(&c->table, model, version);
    if (f->status == VEIL_OK && veil_ok(store(c, model, version, f))) { /* also when it expired meanwhile */
        cc_metrics_renewal(CC_RENEWAL_OK);
    } else if (l == NULL) {
        cc_metrics_renewal(f->status != VEIL_OK && denial(f->status) ? CC_RENEWAL_DENIED : CC_RENEWAL_FAILED);
    } else if (f->status != VEIL_OK && denial(f->status)) {
        veil_lease_drop(&c->table, l);
        tombstone_add(c, model, version, vd_now_ms());
        vd_log("warn", "key-wiped", "{s:s, s:I, s:s}", "model_id", model, "key_version", (json_int_t)version,
               "reason", "the broker refused the renewal");
        cc_metrics_renewal(CC_RENEWAL_DENIED);
    } else {
        veil_lease_retry(l, vd_now_ms(), retry_ms(l->ttl_ms));
        vd_log("warn", "serving-from-lease", "{s:s, s:I, s:I}", "model_id", model, "key_version",
               (json_int_t)version, "lease_left_ms", (json_int_t)veil_lease_remaining_ms(l, vd_now_ms()));
        cc_metrics_renewal(CC_RENEWAL_FAILED);
    }
    cc_metrics_broker_reachable(f->status == VEIL_OK || denial(f->status));
}

/* Drops expired leases and renews the one that is due; returns when the table next needs attention. */
static uint64_t renew_step(struct cc_ctx *c)
{
    uint64_t now = vd_now_ms(), wake = 0;
    size_t expired = veil_lease_expire(&c->table, now);
    if (expired > 0) {
        vd_log("warn", "lease-expired", "{s:I, s:s}", "keys", (json_int_t)expired, "message",
               "no renewal before the lease ended: the keys are wiped");
        cc_metrics_expired(expired);
    }
    struct veil_lease *due = veil_lease_next_due(&c->table, now, &wake);
    metrics_update(c);
    if (due == NULL)
        return wake;
    char model[VEIL_KBS_MODEL_ID_MAX + 1];
    snprintf(model, sizeof model, "%s", due->model_id);
    uint32_t version = due->key_version;
    veil_lease_retry(due, now, retry_ms(due->ttl_ms)); /* not due again while this renewal runs */
    pthread_mutex_unlock(&c->lock);
    struct fetched f;
    pthread_mutex_lock(&c->broker_lock);
    broker_fetch(c, model, version, &f);
    pthread_mutex_unlock(&c->broker_lock);
    log_fetch("lease-renewed", model, version, &f, ttl_of(c, &f));
    pthread_mutex_lock(&c->lock);
    if (!c->stopping)
        renewal_apply(c, model, version, &f);
    fetched_cleanup(&f);
    return vd_now_ms();
}

static void wait_until(struct cc_ctx *c, uint64_t wake_ms)
{
    uint64_t now = vd_now_ms();
    uint64_t wait = wake_ms > now ? wake_ms - now : 0;
    if (wait > 1000)
        wait = 1000; /* the metrics' time to expiry stays fresh */
    if (wait == 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (wait % 1000) * 1000000u;
    ts.tv_sec += (time_t)(wait / 1000 + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_cond_timedwait(&c->wake, &c->lock, &ts);
}

static void *renewer(void *arg)
{
    struct cc_ctx *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping)
        wait_until(c, renew_step(c));
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

void cc_broker_init(struct cc_ctx *c)
{
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->broker_lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &a);
    pthread_condattr_destroy(&a);
    veil_lease_table_init(&c->table, (int)c->cfg->lock_memory);
}

VEIL_RESULT cc_broker_start(struct cc_ctx *c)
{
    VEIL_ENSURE(pthread_create(&c->renewer, NULL, renewer, c) == 0, VEIL_ERR_INTERNAL, "cannot start a thread");
    c->renewer_started = 1;
    return VEIL_RESULT_OK;
}

void cc_broker_preload(struct cc_ctx *c)
{
    for (size_t i = 0; i < c->set.model_count; i++) {
        const struct cc_model *m = &c->set.models[i];
        struct veil_lease *l = NULL;
        if (m->version != 0 && cc_obtain(c, m->id, m->version, &l) == CC_OK)
            pthread_mutex_unlock(&c->lock);
    }
}

/* Sends the usage the runtimes reported since the last renewal, one exchange per model that has some, so that a
 * stopped cache loses no count (a killed one loses at most one renewal interval's). */
static void flush_usage(struct cc_ctx *c)
{
    struct {
        char model[VEIL_KBS_MODEL_ID_MAX + 1];
        uint32_t version;
    } todo[VEIL_LEASE_MAX_ENTRIES];
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->table.count; i++) {
        const struct veil_lease *l = c->table.entries[i];
        int seen = 0;
        for (size_t j = 0; j < n; j++)
            seen |= strcmp(todo[j].model, l->model_id) == 0;
        if (!seen && cc_usage_pending(c, l->model_id)) {
            snprintf(todo[n].model, sizeof todo[n].model, "%s", l->model_id);
            todo[n++].version = l->key_version;
        }
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t j = 0; j < n; j++) {
        struct fetched f;
        pthread_mutex_lock(&c->broker_lock);
        broker_fetch(c, todo[j].model, todo[j].version, &f);
        pthread_mutex_unlock(&c->broker_lock);
        vd_log(f.status == VEIL_OK ? "info" : "warn", "usage-flushed", "{s:s, s:b, s:s?}", "model_id", todo[j].model,
               "ok", f.status == VEIL_OK, "detail", f.status == VEIL_OK ? NULL : f.why);
        fetched_cleanup(&f);
    }
}

void cc_broker_stop(struct cc_ctx *c)
{
    if (c->renewer_started)
        flush_usage(c);
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    size_t held = c->table.count;
    veil_lease_table_cleanup(&c->table);
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
    if (c->renewer_started)
        pthread_join(c->renewer, NULL);
    c->renewer_started = 0;
    vd_log("info", "keys-wiped", "{s:I}", "keys", (json_int_t)held);
}
