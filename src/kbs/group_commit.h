/* SPDX-License-Identifier: Apache-2.0 */
/* Group commit of audit appends, for every store: a caller that finds no commit under way commits every record
 * queued so far (its own among them) in one transaction; callers arriving meanwhile queue up and wait, and the next
 * of them leads the next batch. Each record is committed, in the chain, before its caller returns, as with one
 * transaction per record, but a burst of N appends costs one durable commit instead of N. Queued records keep
 * their arrival order. */
#ifndef VEIL_KBS_GROUP_COMMIT_H
#define VEIL_KBS_GROUP_COMMIT_H

#include <pthread.h>

#include "core/result.h"

/* One append waiting for its commit, on the caller's stack. */
struct kbs_audit_waiter {
    const char *record;
    struct kbs_audit_waiter *next;
    int done;
    veil_status status;
    char error[256];
};

/* Appends every record of batch (a list in arrival order) in one transaction. */
typedef struct veil_result (*kbs_audit_batch_fn)(void *store, const struct kbs_audit_waiter *batch);

struct kbs_group_commit {
    pthread_mutex_t lock;
    pthread_cond_t done;
    struct kbs_audit_waiter *queue, **queue_end;
    int leading;
};

void kbs_group_commit_init(struct kbs_group_commit *g);
void kbs_group_commit_destroy(struct kbs_group_commit *g);
/* Appends record through commit(store, batch), sharing the commit with concurrent callers. */
VEIL_RESULT kbs_group_commit_append(struct kbs_group_commit *g, const char *record, kbs_audit_batch_fn commit,
                                    void *store);

#endif
