/* SPDX-License-Identifier: Apache-2.0 */
/* Per-client token buckets in a fixed table (no allocation per client, so a flood of addresses costs nothing). */
#include <stdlib.h>
#include <string.h>

#include "kbs/kbs.h"

VEIL_RESULT veil_kbs_ratelimit_init(struct veil_kbs_ratelimit *rl, double rate_per_s, double burst)
{
    VEIL_ENSURE(rate_per_s >= 0 && burst >= 1, VEIL_ERR_ARG, "rate limit: bad rate or burst");
    memset(rl, 0, sizeof *rl);
    rl->slots = calloc(VEIL_KBS_RATELIMIT_SLOTS, sizeof *rl->slots);
    VEIL_ENSURE(rl->slots != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(pthread_mutex_init(&rl->lock, NULL) == 0, VEIL_ERR_INTERNAL, "rate limit: mutex");
    rl->rate_per_s = rate_per_s;
    rl->burst = burst;
    return VEIL_RESULT_OK;
}

void veil_kbs_ratelimit_cleanup(struct veil_kbs_ratelimit *rl)
{
    if (rl->slots == NULL)
        return;
    free(rl->slots);
    rl->slots = NULL;
    pthread_mutex_destroy(&rl->lock);
}

static size_t slot_of(const char *client)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (const char *p = client; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211u;
    return (size_t)(h % VEIL_KBS_RATELIMIT_SLOTS);
}

static int take(struct veil_kbs_ratelimit *rl, struct veil_kbs_bucket *b, const char *client, uint64_t now_ms)
{
    if (strncmp(b->client, client, sizeof b->client) != 0) {
        strncpy(b->client, client, sizeof b->client - 1);
        b->client[sizeof b->client - 1] = '\0';
        b->tokens = rl->burst;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rl->rate_per_s / 1000.0;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->last_ms = now_ms;
    }
    if (b->tokens < 1.0)
        return 0;
    b->tokens -= 1.0;
    return 1;
}

int veil_kbs_ratelimit_take(struct veil_kbs_ratelimit *rl, const char *client, uint64_t now_ms)
{
    if (rl->rate_per_s <= 0)
        return 1;
    pthread_mutex_lock(&rl->lock);
    int ok = take(rl, &rl->slots[slot_of(client)], client, now_ms);
    pthread_mutex_unlock(&rl->lock);
    return ok;
}
