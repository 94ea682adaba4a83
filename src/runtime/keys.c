/* SPDX-License-Identifier: Apache-2.0 */
/* Where model keys come from: one small interface (struct rt_key_source, runtime.h) and its sources.
 *
 *   kbs    (this file) a key broker: veil-kbs (or a Trustee KBS holding Veil keys) over RCAR, with this TEE's
 *          evidence (libveil's veil_kbs_fetch_model: the key, the owner's minimum model version and usage policy, in
 *          one attested session), with the usage counts the broker keeps. No lease: the key is used for the
 *          process's lifetime, and the usage admitted is reported once, at stop.
 *   cache  (keys_cache.c) veil-cache on this node, over its Unix socket after local attestation; every key comes
 *          with a lease no longer than the cache's own, renewed by leases.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "veil/kbs_client.h"

/* ---- veil-kbs ----------------------------------------------------------------------------------------------- */

struct kbs_source {
    struct rt_key_source base;
    struct veil_kbs_fetch_options options;
};

/* One attested session: the key, the usage policy, and the usage counters after report ("{}": read them). */
static VEIL_RESULT kbs_exchange(struct kbs_source *k, const char *model_id, uint32_t key_version, const char *report,
                                struct veil_secure_mem *key, struct veil_kbs_model_release *out)
{
    *out = (struct veil_kbs_model_release){.key = key->data, .key_capacity = key->size, .with_usage_policy = 1,
                                           .usage_report = report};
    veil_status st = veil_kbs_fetch_model(&k->options, model_id, key_version, out);
    if (st != VEIL_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", veil_last_error());
        VEIL_BAIL(st, "%s", why);
    }
    if (out->key_size == VEIL_KEY_SIZE)
        return VEIL_RESULT_OK;
    free(out->usage_policy), free(out->usage_counts);
    veil_wipe(key->data, key->size);
    VEIL_BAIL(VEIL_ERR_FORMAT, "the broker released a %zu-byte key for %s; expected %u", out->key_size, model_id,
              VEIL_KEY_SIZE);
}

static VEIL_RESULT kbs_fetch(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                             struct veil_secure_mem *key, uint64_t *min_model_version, char **usage_policy,
                             char **usage_counts, uint64_t *lease_ms)
{
    struct veil_kbs_model_release out;
    *lease_ms = 0;
    VEIL_GUARD(kbs_exchange((struct kbs_source *)(void *)src, model_id, key_version, "{}", key, &out));
    *min_model_version = out.min_model_version;
    *usage_policy = out.usage_policy;
    *usage_counts = out.usage_counts;
    return VEIL_RESULT_OK;
}

/* A last report: one more attested session, whose key is wiped at once. */
static VEIL_RESULT kbs_report(struct rt_key_source *src, const char *model_id, uint32_t key_version,
                              const char *usage_report, char **usage_counts)
{
    *usage_counts = NULL;
    VEIL_DEFER(veil_secure_free) struct veil_secure_mem key = {0};
    VEIL_GUARD(veil_secure_alloc(&key, VEIL_KEY_SIZE, 0));
    struct veil_kbs_model_release out;
    VEIL_GUARD(kbs_exchange((struct kbs_source *)(void *)src, model_id, key_version, usage_report, &key, &out));
    free(out.usage_policy);
    *usage_counts = out.usage_counts;
    return VEIL_RESULT_OK;
}

static void source_free(struct rt_key_source *src)
{
    free(src);
}

VEIL_RESULT rt_key_source_kbs(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                              struct rt_key_source **out)
{
    struct kbs_source *k = calloc(1, sizeof *k);
    VEIL_ENSURE(k != NULL, VEIL_ERR_NOMEM, "out of memory");
    k->base = (struct rt_key_source){.fetch = kbs_fetch, .renew = NULL, .report = kbs_report, .free = source_free,
                                     .name = "kbs"};
    k->options = (struct veil_kbs_fetch_options){
        .url = c->kbs_url,
        .cacert = c->kbs_cacert[0] != '\0' ? c->kbs_cacert : NULL,
        .tee = tee,
        .provider = pc,
        .timeout_s = (unsigned)c->key_timeout_s,
    };
    *out = &k->base;
    return VEIL_RESULT_OK;
}

VEIL_RESULT rt_key_source_open(const struct rt_config *c, veil_tee tee, const struct veil_provider_config *pc,
                               struct rt_key_source **out)
{
    if (strcmp(c->key_source, "cache") == 0)
        return rt_key_source_cache(c, tee, pc, out);
    return rt_key_source_kbs(c, tee, pc, out);
}
