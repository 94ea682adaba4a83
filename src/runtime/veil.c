/* SPDX-License-Identifier: Apache-2.0 */
/* Veil's own routes: the attestation a client checks before sending data (docs/spec/runtime-attestation.md), the
 * Prometheus exposition, and the runtime's metric families. */
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "serve/binding.h"

/* ---- GET /v2/veil/attestation?nonce=HEX ---------------------------------------------------------------------- */

/* One evidence collection at a time: hardware providers share one report interface, and collection is slow. */
static pthread_mutex_t collect_lock = PTHREAD_MUTEX_INITIALIZER;

void rt_attestation_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct rt_ctx *r = ctx;
    if (!atomic_load(&r->ready)) {
        rt_metrics_refusal("not-ready");
        rt_respond_error(rs, 503, "the runtime is not ready: its models are still loading");
        return;
    }
    const char *hex = vd_request_get(rq, VD_QUERY, "nonce");
    uint8_t nonce[VEIL_RUNTIME_NONCE_MAX_SIZE];
    size_t nonce_size = 0;
    if (hex == NULL || !veil_ok(veil_binding_nonce_parse(hex, strlen(hex), nonce, &nonce_size))) {
        rt_metrics_refusal("bad-request");
        rt_respond_error(rs, 400, "give a fresh nonce: ?nonce= followed by 32 to 128 hex digits");
        return;
    }
    /* Plain HTTP (loopback, sim only) binds no channel: the spec's all-zero key hash says so. */
    static const uint8_t no_channel[VEIL_SPKI_SHA256_SIZE] = {0};
    char *answer = NULL;
    pthread_mutex_lock(&collect_lock);
    struct veil_result res = veil_binding_answer(r->tee, &r->provider, nonce, nonce_size,
                                                 r->tls_on ? r->tls.spki_sha256 : no_channel, r->bindings,
                                                 r->model_count, &answer);
    pthread_mutex_unlock(&collect_lock);
    if (!veil_ok(res)) {
        vd_log("error", "attestation-failed", "{s:s}", "detail", veil_last_error());
        rt_respond_error(rs, 500, "evidence could not be collected (see the runtime's log)");
        return;
    }
    free(rs->body);
    rs->status = 200;
    rs->body = answer;
    rs->body_size = strlen(answer);
}

/* ---- metrics ------------------------------------------------------------------------------------------------- */

extern const char *const rt_route_labels[];
extern const size_t rt_route_label_count;

/* Refusal reasons: the usage policy's (lib/serve/usage.h) and the runtime's own. */
static const char *const reasons[] = {"bad-request",    "unknown-model",     "no-route",    "too-large",
                                      "not-ready",      "engine",            "missing-api-key", "unknown-api-key",
                                      "budget-exhausted", "client-rate",     "global-rate", "lease-lapsed",
                                      "plan-rate",      "other"};
#define REASON_COUNT (sizeof reasons / sizeof reasons[0])

static _Atomic int64_t refusals[REASON_COUNT], inferences, queue_depth;

static struct vd_family families[] = {
    {"veil_runtime_inferences_total", "Inferences run (a batch of n counts n).", VD_COUNTER, NULL, NULL, 1,
     &inferences},
    {"veil_runtime_refusals_total", "Requests refused, by reason.", VD_COUNTER, "reason", reasons, REASON_COUNT,
     refusals},
    {"veil_runtime_queue_depth", "Requests waiting for a free engine instance.", VD_GAUGE, NULL, NULL, 1,
     &queue_depth},
};
enum { F_INFERENCES, F_REFUSALS, F_QUEUE };

VEIL_RESULT rt_metrics_init(void)
{
    VEIL_GUARD(vd_metrics_init("veil_runtime", "runtime", VEIL_RUNTIME_VERSION, rt_route_labels,
                               rt_route_label_count));
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        VEIL_GUARD(vd_metrics_register(&families[i]));
    return VEIL_RESULT_OK;
}

void rt_metrics_refusal(const char *reason)
{
    size_t i = 0;
    while (i < REASON_COUNT - 1 && strcmp(reasons[i], reason) != 0)
        i++;
    vd_metrics_add(&families[F_REFUSALS], i, 1);
}

void rt_metrics_queue(int delta)
{
    vd_metrics_add(&families[F_QUEUE], 0, delta);
}

void rt_metrics_inferences(uint64_t batch)
{
    vd_metrics_add(&families[F_INFERENCES], 0, (int64_t)batch);
}

void rt_metrics_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    if (!veil_ok(vd_metrics_respond(rs))) {
        vd_log("error", "metrics-failed", "{s:s}", "detail", veil_last_error());
        rt_respond_error(rs, 500, "internal error (see the runtime's log)");
    }
}
