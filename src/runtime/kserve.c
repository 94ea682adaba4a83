/* SPDX-License-Identifier: Apache-2.0 */
/* The KServe v2 / Open Inference Protocol REST routes (shared/reference/serving.md §1–9) and the routing table. The
 * wire codec is lib/serve/kserve.h; here: model lookup, readiness, the owner's usage policy, the engine pool. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define SMALL_BODY_LIMIT (64u << 10) /* every route but /infer */

enum rt_label { L_HEALTH, L_SERVER, L_METADATA, L_INFER, L_ATTESTATION, L_METRICS, L_OTHER };
enum { ROUTE_PLAIN = 0, ROUTE_VERSIONED = 1u << 0 };

void rt_respond_error(struct vd_response *rs, unsigned status, const char *message)
{
    vd_respond_json(rs, status, json_pack("{s:s}", "error", message));
    rs->status = status;
}

struct rt_model *rt_model_find(struct rt_ctx *r, const char *name)
{
    for (size_t i = 0; i < r->model_count; i++)
        if (strcmp(r->models[i]->name, name) == 0)
            return r->models[i];
    return NULL;
}

/* The model a /v2/models/<m>[/versions/<v>] path names; answers the error and returns NULL when none. */
static struct rt_model *model_of(struct rt_ctx *r, const struct vd_request *rq, struct vd_response *rs)
{
    struct rt_model *m = rt_model_find(r, rq->captures[0]);
    char msg[VEIL_SERVE_MSG_SIZE];
    if (m == NULL) {
        snprintf(msg, sizeof msg, "Request for unknown model: '%.128s' is not found", rq->captures[0]);
        rt_metrics_refusal("unknown-model");
        rt_respond_error(rs, 404, msg);
        return NULL;
    }
    if ((rq->route->flags & ROUTE_VERSIONED) && strcmp(rq->captures[1], m->version) != 0) {
        snprintf(msg, sizeof msg, "Request for unknown model: '%.128s' version %.32s is not found (serving version "
                                  "%s)", m->name, rq->captures[1], m->version);
        rt_metrics_refusal("unknown-model");
        rt_respond_error(rs, 404, msg);
        return NULL;
    }
    return m;
}

static int serving(struct rt_ctx *r)
{
    return atomic_load(&r->ready) && !atomic_load(&r->draining);
}

#define LAPSED_MESSAGE "the model is not available: its key lease lapsed (the key was revoked, or veil-cache cannot " \
                       "renew it); it is wiped until the key is given again"

/* A hold on the model's decrypted state for this request (released with rt_model_leave); answers 503 and returns 0
 * while the model's key lease has lapsed (models.c). */
static int model_enter(struct rt_model *m, struct vd_response *rs)
{
    if (rt_model_enter(m))
        return 1;
    rt_metrics_refusal("lease-lapsed");
    rt_respond_error(rs, 503, LAPSED_MESSAGE);
    return 0;
}

/* ---- health and metadata ----------------------------------------------------------------------------------- */

static void live_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    vd_respond_json(rs, 200, json_pack("{s:b}", "live", 1));
}

static void ready_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)rq;
    if (serving(ctx))
        vd_respond_json(rs, 200, json_pack("{s:b}", "ready", 1));
    else
        rt_respond_error(rs, 503, "the runtime is not ready (starting or shutting down)");
}

static void server_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    vd_respond_json(rs, 200, json_pack("{s:s, s:s, s:[s,s,s]}", "name", "veil-runtime", "version",
                                       VEIL_RUNTIME_VERSION, "extensions", "binary_tensor_data", "classification",
                                       "veil_attestation"));
}

static void model_ready_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct rt_model *m = model_of(ctx, rq, rs);
    if (m == NULL)
        return;
    if (!serving(ctx)) {
        rt_respond_error(rs, 503, "the model is not ready (the runtime is starting or shutting down)");
        return;
    }
    if (!model_enter(m, rs))
        return;
    rt_model_leave(m);
    vd_respond_json(rs, 200, json_pack("{s:s, s:b}", "name", m->name, "ready", 1));
}

/* The "parameters" member of the metadata: the sealed identity, the precision, how many nodes run on int8 kernels
 * (an int8 QDQ model's, where this CPU's are exact) and the usage policy in force. */
static json_t *model_parameters(const struct rt_model *m)
{
    json_t *summary = NULL;
    if (m->usage == NULL)
        summary = json_pack("{s:s, s:s}", "access", "open", "note", "the owner set no usage policy: no API key, "
                                                                   "budget, rate or output shaping applies");
    else if (!veil_ok(veil_usage_summary_json(m->usage, &summary)))
        summary = NULL;
    char digest[65];
    for (size_t i = 0; i < sizeof m->header_sha256; i++)
        snprintf(digest + 2 * i, 3, "%02x", m->header_sha256[i]);
    return json_pack("{s:{s:s, s:I, s:I, s:s, s:s, s:I, s:o*}}", "parameters", "veil_model_id", m->info.model_id,
                     "veil_model_version", (json_int_t)m->info.model_version, "veil_key_version",
                     (json_int_t)m->info.key_version, "veil_header_sha256", digest, "veil_precision",
                     rt_precision_name(m->engine_options.precision), "veil_int8_nodes", (json_int_t)m->int8_nodes,
                     "veil_usage_policy", summary);
}

static void model_get(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct rt_model *m = model_of(ctx, rq, rs);
    if (m == NULL || !model_enter(m, rs))
        return;
    json_t *extra = model_parameters(m), *meta = NULL;
    struct veil_result r = veil_serve_model_metadata_json(&m->desc, extra, &meta);
    json_decref(extra);
    rt_model_leave(m);
    if (!veil_ok(r)) {
        vd_log("error", "metadata-failed", "{s:s, s:s}", "model", m->name, "detail", veil_last_error());
        rt_respond_error(rs, 500, "internal error (see the runtime's log)");
        return;
    }
    vd_respond_json(rs, 200, meta);
}

/* ---- inference ----------------------------------------------------------------------------------------------- */

/* What a refused client is told, by the usage policy's reason. */
static const char *usage_message(const char *reason)
{
    if (strcmp(reason, VEIL_USAGE_MISSING_API_KEY) == 0)
        return "this model needs an API key: send 'Authorization: Bearer <api key>'";
    if (strcmp(reason, VEIL_USAGE_UNKNOWN_API_KEY) == 0)
        return "unknown API key";
    if (strcmp(reason, VEIL_USAGE_BUDGET_EXHAUSTED) == 0)
        return "the query budget of this API key is exhausted";
    if (strcmp(reason, VEIL_USAGE_CLIENT_RATE) == 0)
        return "too many requests for this API key: retry later";
    return "too many requests for this model: retry later";
}

/* The owner's usage policy; answers the refusal and returns 0 when the request may not run. */
static int usage_admitted(const struct rt_model *m, const struct vd_request *rq, struct vd_response *rs)
{
    if (m->usage == NULL)
        return 1;
    struct veil_usage_decision d;
    if (!veil_ok(veil_usage_admit(m->usage, vd_request_get(rq, VD_HEADER, "Authorization"), vd_now_ms(), &d))) {
        rt_respond_error(rs, 500, "internal error (see the runtime's log)");
        return 0;
    }
    if (d.status == 0)
        return 1;
    vd_log("info", "usage-refused", "{s:s, s:s, s:s, s:s}", "model", m->name, "reason", d.reason, "api_client",
           d.client, "client", rq->client);
    rt_metrics_refusal(d.reason);
    rt_respond_error(rs, (unsigned)d.status, usage_message(d.reason));
    rs->retry_after = d.retry_after_s;
    return 0;
}

struct outputs {
    float *data[VEIL_SERVE_MAX_OUTPUTS];
    size_t sizes[VEIL_SERVE_MAX_OUTPUTS];
    size_t count;
};

static void outputs_free(struct outputs *o)
{
    for (size_t i = 0; i < o->count; i++)
        free(o->data[i]);
}

/* Output buffers sized by the engine's plan, after checking that batched outputs follow the planned batch; the
 * plan's output shapes go to the request, for the response. */
static VEIL_RESULT outputs_alloc(const struct rt_model *m, const veil_engine *e, struct veil_serve_request *req,
                                 struct outputs *o)
{
    uint64_t batch = req->batch;
    o->count = veil_engine_output_count(e);
    for (size_t i = 0; i < o->count; i++) {
        struct veil_engine_io io;
        VEIL_ENSURE(veil_engine_output(e, i, &io) == VEIL_OK, VEIL_ERR_INTERNAL, "engine output %zu", i);
        VEIL_ENSURE(m->outputs[i].dims[0] != -1 || (int64_t)batch == io.dims[0], VEIL_ERR_INTERNAL,
                    "output '%s' does not follow the batch (dim 0 is %" PRId64 " for batch %" PRIu64 ")", io.name,
                    io.dims[0], batch);
        req->output_shapes[i].rank = io.rank;
        memcpy(req->output_shapes[i].dims, io.dims, sizeof io.dims);
        o->sizes[i] = io.size;
        o->data[i] = aligned_alloc(64, (io.size + 63) & ~(size_t)63);
        VEIL_ENSURE(o->data[i] != NULL, VEIL_ERR_NOMEM, "out of memory");
    }
    return VEIL_RESULT_OK;
}

/* The engine on the request. *shapes_refused: no plan takes the request's input shapes (the message, safe for the
 * client, says so). */
static VEIL_RESULT run(struct rt_model *m, struct veil_serve_request *req, struct outputs *o, int *shapes_refused,
                       int *plan_limited)
{
    struct rt_lease lease;
    struct veil_result a = rt_model_acquire(m, req->input_shapes, &lease);
    *shapes_refused = a.status == VEIL_ERR_ARG;
    *plan_limited = a.status == VEIL_ERR_LIMIT; /* rt_model_acquire's only VEIL_ERR_LIMIT: past plan_rate */
    VEIL_GUARD(a);
    struct veil_result r = outputs_alloc(m, lease.engine, req, o);
    req->output_shapes_set = veil_ok(r);
    veil_status st = VEIL_OK;
    if (veil_ok(r))
        st = veil_engine_run(lease.engine, (const float *const *)req->inputs, req->input_sizes, req->input_count,
                             o->data, o->sizes, o->count);
    rt_model_release(m, &lease);
    if (veil_ok(r) && st != VEIL_OK)
        VEIL_BAIL(st, "%s", "the engine refused the inputs");
    return r;
}

static void respond_outputs(struct rt_model *m, const struct veil_serve_request *req, const struct outputs *o,
                            struct vd_response *rs)
{
    struct veil_buf body;
    veil_buf_init(&body);
    size_t json_size = 0;
    struct veil_result r = veil_serve_response_build(&m->desc, req, (const float *const *)o->data, &m->shaping, &body,
                                                     &json_size);
    if (!veil_ok(r)) {
        rt_respond_error(rs, 500, veil_last_error());
        veil_buf_cleanup(&body);
        return;
    }
    uint8_t *data = NULL;
    size_t size = 0;
    veil_buf_release(&body, &data, &size);
    free(rs->body);
    rs->status = 200;
    rs->body = (char *)data;
    rs->body_size = size;
    rs->content_type = json_size > 0 ? "application/octet-stream" : "application/json";
    if (json_size > 0) {
        char n[24];
        snprintf(n, sizeof n, "%zu", json_size);
        vd_response_header(rs, "Inference-Header-Content-Length", n);
    }
}

static void infer_run(struct rt_model *m, const struct vd_request *rq, struct vd_response *rs);

static void infer_post(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    struct rt_ctx *r = ctx;
    struct rt_model *m = model_of(r, rq, rs);
    if (m == NULL)
        return;
    if (!serving(r)) {
        rt_metrics_refusal("not-ready");
        rt_respond_error(rs, 503, "the runtime is not ready (starting or shutting down)");
        return;
    }
    if (!model_enter(m, rs))
        return;
    infer_run(m, rq, rs);
    rt_model_leave(m);
}

/* Usage policy, request decoding, the engine, the answer: with the model held (infer_post). */
static void infer_run(struct rt_model *m, const struct vd_request *rq, struct vd_response *rs)
{
    if (!usage_admitted(m, rq, rs))
        return;
    struct veil_serve_request req;
    int status = 0;
    char msg[VEIL_SERVE_MSG_SIZE];
    const char *ihcl = vd_request_get(rq, VD_HEADER, "Inference-Header-Content-Length");
    if (!veil_ok(veil_serve_request_parse(&m->desc, rq->body, rq->body_size, ihcl, &m->shaping, &req, &status, msg,
                                          sizeof msg))) {
        rt_metrics_refusal("bad-request");
        rt_respond_error(rs, (unsigned)status, msg);
        return;
    }
    struct outputs o = {0};
    int shapes_refused = 0, plan_limited = 0;
    struct veil_result res = run(m, &req, &o, &shapes_refused, &plan_limited);
    if (veil_ok(res)) {
        respond_outputs(m, &req, &o, rs);
        rt_metrics_inferences(req.batch);
    } else if (shapes_refused) {
        rt_metrics_refusal("bad-request");
        rt_respond_error(rs, 400, veil_last_error());
    } else if (plan_limited) { /* past plan_rate: the message names no shape */
        rt_metrics_refusal("plan-rate");
        rt_respond_error(rs, 503, veil_last_error());
        rs->retry_after = 1;
    } else {
        int bad_input = res.status == VEIL_ERR_ARG;
        vd_log(bad_input ? "info" : "error", "infer-failed", "{s:s, s:s}", "model", m->name, "detail",
               veil_last_error());
        rt_metrics_refusal(bad_input ? "bad-request" : "engine");
        rt_respond_error(rs, bad_input ? 400 : 500,
                         bad_input ? "the engine refused the inputs (non-finite values?)" : "internal error (see the "
                                                                                             "runtime's log)");
    }
    outputs_free(&o);
    veil_serve_request_cleanup(&req);
}

/* ---- the routing table ---------------------------------------------------------------------------------------- */

static const struct vd_route routes[] = {
    {"GET", "/v2/health/live", live_get, ROUTE_PLAIN, L_HEALTH},
    {"GET", "/v2/health/ready", ready_get, ROUTE_PLAIN, L_HEALTH},
    {"GET", "/v2", server_get, ROUTE_PLAIN, L_SERVER},
    {"GET", "/v2/models/*", model_get, ROUTE_PLAIN, L_METADATA},
    {"GET", "/v2/models/*/versions/*", model_get, ROUTE_VERSIONED, L_METADATA},
    {"GET", "/v2/models/*/ready", model_ready_get, ROUTE_PLAIN, L_HEALTH},
    {"GET", "/v2/models/*/versions/*/ready", model_ready_get, ROUTE_VERSIONED, L_HEALTH},
    {"POST", "/v2/models/*/infer", infer_post, ROUTE_PLAIN, L_INFER},
    {"POST", "/v2/models/*/versions/*/infer", infer_post, ROUTE_VERSIONED, L_INFER},
    {"GET", "/v2/veil/attestation", rt_attestation_get, ROUTE_PLAIN, L_ATTESTATION},
    {"GET", "/metrics", rt_metrics_get, ROUTE_PLAIN, L_METRICS},
};

const char *const rt_route_labels[] = {"health", "server", "metadata", "infer", "attestation", "metrics", "other"};
const size_t rt_route_label_count = sizeof rt_route_labels / sizeof rt_route_labels[0];

static void not_found(void *ctx, const struct vd_request *rq, int path_known, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    rt_metrics_refusal("no-route");
    if (path_known)
        rt_respond_error(rs, 405, "Method Not Allowed");
    else
        rt_respond_error(rs, 404, "Not Found");
}

static size_t fallback_label(const char *path)
{
    (void)path;
    return L_OTHER;
}

const struct vd_router rt_router = {
    .routes = routes,
    .route_count = sizeof routes / sizeof routes[0],
    .not_found = not_found,
    .admit = NULL,
    .fallback_label = fallback_label,
};

size_t rt_body_limit(void *ctx, const char *path)
{
    struct rt_ctx *r = ctx;
    size_t n = strlen(path);
    return n > 6 && strcmp(path + n - 6, "/infer") == 0 ? (size_t)r->cfg->max_body_size : SMALL_BODY_LIMIT;
}

void rt_too_large(void *ctx, const struct vd_request *rq, struct vd_response *rs)
{
    (void)ctx, (void)rq;
    rt_metrics_refusal("too-large");
    rt_respond_error(rs, 413, "the request body exceeds the configured limit (max_body_size)");
}
