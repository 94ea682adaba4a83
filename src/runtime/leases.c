/* SPDX-License-Identifier: Apache-2.0 */
/* The lease thread: renews each model's lease at half its length. A refusal (the key revoked, the policy no longer
 * admitting the node, this runtime no longer allowed) lapses the model at once; an unreachable cache is retried until
 * the lease ends, and then the model lapses: its decrypted weights are wiped and it answers 503 until the cache gives
 * the key again (models.c). */
#include <stdlib.h>
#include <time.h>

#include "cache/lease.h"
#include "runtime.h"

/* ---- the lease thread ---------------------------------------------------------------------------------------- */

#define RETRY_MAX_MS 1000u  /* a failed renewal or restore is retried at least this often */
#define TICK_MAX_MS 1000u

/* One model's lease: renewed when due, lapsed when refused or ended, restored when lapsed. Returns when it next
 * needs attention. */
static uint64_t lease_step(struct rt_ctx *r, struct rt_model *m, uint64_t now)
{
    struct rt_key_source *src = r->keys;
    if (atomic_load(&m->lapsed)) {
        if (now < m->lease_retry_ms)
            return m->lease_retry_ms;
        m->lease_retry_ms = now + RETRY_MAX_MS;
        if (!veil_ok(rt_model_restore(m, r->cfg, src)))
            vd_log("info", "model-still-lapsed", "{s:s, s:s}", "model", m->name, "detail", veil_last_error());
        return m->lease_retry_ms;
    }
    uint64_t expires = atomic_load(&m->lease_expires_ms);
    if (now >= expires) {
        rt_model_lapse(m, "the key's lease ended without renewal (veil-cache unreachable)");
        m->lease_retry_ms = now;
        return now;
    }
    if (now < m->lease_renew_ms)
        return m->lease_renew_ms < expires ? m->lease_renew_ms : expires;
    uint64_t lease = 0;
    char *report = NULL, *counts = NULL;
    struct veil_result res = rt_model_usage_report(m, 1, &report);
    if (veil_ok(res))
        res = src->renew(src, m->info.model_id, m->info.key_version, report, &counts, &lease);
    uint64_t after = vd_now_ms();
    if (veil_ok(res))
        rt_model_usage_counted(m, report, counts);
    free(report);
    free(counts);
    if (veil_ok(res)) {
        uint64_t e = 0;
        veil_lease_schedule(now, lease, after, &e, &m->lease_renew_ms);
        atomic_store(&m->lease_expires_ms, e);
    } else if (res.status == VEIL_ERR_POLICY) {
        vd_log("warn", "lease-refused", "{s:s, s:s}", "model", m->name, "detail", veil_last_error());
        rt_model_lapse(m, "veil-cache refused the key (revoked, or no longer allowed)");
        m->lease_retry_ms = after + RETRY_MAX_MS;
    } else {
        uint64_t left = expires > after ? expires - after : 0;
        m->lease_renew_ms = after + (left / 4 < RETRY_MAX_MS ? left / 4 : RETRY_MAX_MS);
        vd_log("warn", "lease-renewal-failed", "{s:s, s:I, s:s}", "model", m->name, "lease_left_ms",
               (json_int_t)left, "detail", veil_last_error());
    }
    return after;
}

static void *lease_main(void *arg)
{
    struct rt_ctx *r = arg;
    pthread_mutex_lock(&r->lease_lock);
    while (!r->lease_stop) {
        pthread_mutex_unlock(&r->lease_lock);
        uint64_t now = vd_now_ms(), wake = now + TICK_MAX_MS;
        for (size_t i = 0; i < r->model_count; i++) {
            uint64_t next = lease_step(r, r->models[i], now);
            wake = next < wake ? next : wake;
        }
        pthread_mutex_lock(&r->lease_lock);
        now = vd_now_ms();
        if (r->lease_stop || wake <= now)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (wake - now) * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&r->lease_wake, &r->lease_lock, &ts);
    }
    pthread_mutex_unlock(&r->lease_lock);
    return NULL;
}

VEIL_RESULT rt_leases_start(struct rt_ctx *r)
{
    if (r->keys == NULL || r->keys->renew == NULL)
        return VEIL_RESULT_OK;
    pthread_mutex_init(&r->lease_lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&r->lease_wake, &a);
    pthread_condattr_destroy(&a);
    VEIL_ENSURE(pthread_create(&r->lease_thread, NULL, lease_main, r) == 0, VEIL_ERR_INTERNAL,
                "cannot start the lease thread");
    r->lease_thread_started = 1;
    return VEIL_RESULT_OK;
}

void rt_usage_flush(struct rt_ctx *r)
{
    for (size_t i = 0; r->keys != NULL && r->keys->report != NULL && i < r->model_count; i++) {
        struct rt_model *m = r->models[i];
        char *report = NULL, *counts = NULL;
        if (!veil_ok(rt_model_usage_report(m, 0, &report)) || report == NULL)
            continue;
        struct veil_result res = r->keys->report(r->keys, m->info.model_id, m->info.key_version, report, &counts);
        if (veil_ok(res))
            rt_model_usage_counted(m, report, counts);
        vd_log(veil_ok(res) ? "info" : "warn", "usage-flushed", "{s:s, s:b, s:s?}", "model", m->name, "ok",
               veil_ok(res), "detail", veil_ok(res) ? NULL : veil_last_error());
        free(report);
        free(counts);
    }
}

void rt_leases_stop(struct rt_ctx *r)
{
    if (!r->lease_thread_started)
        return;
    pthread_mutex_lock(&r->lease_lock);
    r->lease_stop = 1;
    pthread_cond_broadcast(&r->lease_wake);
    pthread_mutex_unlock(&r->lease_lock);
    pthread_join(r->lease_thread, NULL);
    r->lease_thread_started = 0;
    pthread_cond_destroy(&r->lease_wake);
    pthread_mutex_destroy(&r->lease_lock);
}
