/* SPDX-License-Identifier: Apache-2.0 */
/* Usage counts on their way from the runtimes of this node to the broker (docs/spec/usage-policy.md §5). Per model:
 * what the broker last answered (upstream: every node's reported counts) and what this node's runtimes reported
 * since (pending). A runtime's report is added to pending and answered with upstream + pending; each exchange with
 * the broker carries a snapshot of pending, which is taken off pending once the broker has counted it. So requests
 * are counted at least once: a report whose answer is lost is sent again (counted twice, never zero times). */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "core/json.h"

/* The counts of model (usage_lock held), created on first use; NULL when the table is full or memory is short. */
static struct cc_counts *counts_of(struct cc_ctx *c, const char *model)
{
    for (size_t i = 0; i < c->counts_count; i++)
        if (strcmp(c->counts[i].model, model) == 0)
            return &c->counts[i];
    if (c->counts_count == CC_MAX_MODELS)
        return NULL;
    struct cc_counts *k = &c->counts[c->counts_count];
    k->upstream = json_object();
    k->pending = json_object();
    if (k->upstream == NULL || k->pending == NULL) {
        json_decref(k->upstream), json_decref(k->pending);
        k->upstream = k->pending = NULL;
        return NULL;
    }
    snprintf(k->model, sizeof k->model, "%s", model);
    c->counts_count++;
    return k;
}

void cc_usage_init(struct cc_ctx *c)
{
    pthread_mutex_init(&c->usage_lock, NULL);
}

void cc_usage_cleanup(struct cc_ctx *c)
{
    for (size_t i = 0; i < c->counts_count; i++)
        json_decref(c->counts[i].upstream), json_decref(c->counts[i].pending);
    c->counts_count = 0;
    pthread_mutex_destroy(&c->usage_lock);
}

static VEIL_RESULT dump(const json_t *doc, char **text)
{
    *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    VEIL_ENSURE(*text != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

VEIL_RESULT cc_usage_take(struct cc_ctx *c, const char *model, char **report)
{
    *report = NULL;
    pthread_mutex_lock(&c->usage_lock);
    struct cc_counts *k = counts_of(c, model);
    struct veil_result r = k != NULL ? dump(k->pending, report)
                                     : veil_error_raise(VEIL_ERR_LIMIT, __FILE__, __LINE__, "usage counts: no room");
    pthread_mutex_unlock(&c->usage_lock);
    return r;
}

static VEIL_RESULT answered(struct cc_ctx *c, const char *model, const char *report, const char *counts)
{
    VEIL_DEFER(veil_json_done) json_t *sent = NULL, *upstream = NULL;
    VEIL_GUARD(veil_usage_counts_parse(report, strlen(report), 1, &sent));
    VEIL_GUARD(veil_usage_counts_parse(counts, strlen(counts), 0, &upstream));
    pthread_mutex_lock(&c->usage_lock);
    struct cc_counts *k = counts_of(c, model);
    struct veil_result r = VEIL_RESULT_OK;
    if (k != NULL) {
        r = veil_usage_counts_add(k->pending, sent, -1);
        json_decref(k->upstream);
        k->upstream = json_incref(upstream);
    }
    pthread_mutex_unlock(&c->usage_lock);
    return r;
}

void cc_usage_answered(struct cc_ctx *c, const char *model, const char *report, const char *counts)
{
    if (report == NULL || counts == NULL) /* a broker without counters: nothing was counted upstream */
        return;
    if (!veil_ok(answered(c, model, report, counts)))
        vd_log("error", "usage-counts-failed", "{s:s, s:s}", "model_id", model, "detail", veil_last_error());
}

/* upstream + pending (usage_lock held). */
static VEIL_RESULT view(const struct cc_counts *k, char **text)
{
    VEIL_DEFER(veil_json_done) json_t *sum = json_deep_copy(k->upstream);
    VEIL_ENSURE(sum != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_usage_counts_add(sum, k->pending, 1));
    return dump(sum, text);
}

VEIL_RESULT cc_usage_local(struct cc_ctx *c, const char *model, const json_t *report, const char *policy,
                           char **counts)
{
    *counts = NULL;
    VEIL_DEFER(veil_json_done) json_t *deltas = report != NULL ? json_deep_copy(report) : NULL;
    VEIL_ENSURE(report == NULL || deltas != NULL, VEIL_ERR_NOMEM, "out of memory");
    if (deltas != NULL)
        VEIL_GUARD(veil_usage_counts_restrict_text(deltas, policy));
    pthread_mutex_lock(&c->usage_lock);
    struct cc_counts *k = counts_of(c, model);
    struct veil_result r = VEIL_RESULT_OK;
    if (k == NULL)
        r = veil_error_raise(VEIL_ERR_LIMIT, __FILE__, __LINE__, "usage counts: no room");
    if (veil_ok(r) && deltas != NULL)
        r = veil_usage_counts_add(k->pending, deltas, 1);
    if (veil_ok(r))
        r = view(k, counts);
    pthread_mutex_unlock(&c->usage_lock);
    return r;
}

int cc_usage_pending(struct cc_ctx *c, const char *model)
{
    pthread_mutex_lock(&c->usage_lock);
    int any = 0;
    for (size_t i = 0; i < c->counts_count && !any; i++)
        any = strcmp(c->counts[i].model, model) == 0 && json_object_size(c->counts[i].pending) > 0;
    pthread_mutex_unlock(&c->usage_lock);
    return any;
}
