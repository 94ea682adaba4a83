/* SPDX-License-Identifier: Apache-2.0 */
/* Group commit of audit appends (group_commit.h). */
#include <stdio.h>

#include "group_commit.h"

void kbs_group_commit_init(struct kbs_group_commit *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->done, NULL);
    g->queue = NULL;
    g->queue_end = &g->queue;
    g->leading = 0;
}

void kbs_group_commit_destroy(struct kbs_group_commit *g)
{
    pthread_cond_destroy(&g->done);
    pthread_mutex_destroy(&g->lock);
}

/* Hands the batch's outcome to each of its waiters and lets the next leader in. Called with the lock held. */
static void batch_done(struct kbs_group_commit *g, struct kbs_audit_waiter *batch, struct veil_result r)
{
    for (struct kbs_audit_waiter *w = batch, *next; w != NULL; w = next) {
        next = w->next; /* read before done is set: the waiter's frame may go away right after */
        w->status = r.status;
        if (!veil_ok(r))
            snprintf(w->error, sizeof w->error, "%s", veil_last_error());
        w->done = 1;
    }
    g->leading = 0;
    pthread_cond_broadcast(&g->done);
}

VEIL_RESULT kbs_group_commit_append(struct kbs_group_commit *g, const char *record, kbs_audit_batch_fn commit,
                                    void *store)
{
    struct kbs_audit_waiter me = {.record = record};
    pthread_mutex_lock(&g->lock);
    *g->queue_end = &me;
    g->queue_end = &me.next;
    while (!me.done) {
        if (g->leading) {
            pthread_cond_wait(&g->done, &g->lock);
            continue;
        }
        struct kbs_audit_waiter *batch = g->queue;
        g->queue = NULL;
        g->queue_end = &g->queue;
        g->leading = 1;
        pthread_mutex_unlock(&g->lock);
        struct veil_result r = commit(store, batch);
        pthread_mutex_lock(&g->lock);
        batch_done(g, batch, r);
    }
    pthread_mutex_unlock(&g->lock);
    if (me.status != VEIL_OK)
        VEIL_BAIL(me.status, "%s", me.error);
    return VEIL_RESULT_OK;
}
