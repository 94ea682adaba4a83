/* SPDX-License-Identifier: Apache-2.0 */
/* Served models. Loading: the public header (no key), the key from the key source, authentication and decryption
 * into memory excluded from core dumps (locked with lock_memory = 1), the owner's usage policy, then the engine for
 * batch 1, whose inputs and outputs describe the model to clients. The decrypted model stays in that memory so that
 * plans for other batch sizes can be made on demand.
 *
 * Engines: an engine runs one request at a time (its activations live in one arena). Each plan (one batch size) has
 * up to `workers` engine instances, created when concurrent requests need them; a request waits while all of its
 * plan's instances are busy. At most `max_plans` plans per model: making a new one evicts the least recently used
 * idle plan, or waits for one to become idle. New plans are made at most `plan_rate` per second after a burst of
 * `max_plans` (a token bucket); past it the request is refused (503) before anything is evicted. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/lease.h"
#include "onnx/onnx.h"
#include "runtime.h"

enum slot_state { SLOT_EMPTY, SLOT_CREATING, SLOT_IDLE, SLOT_BUSY };

struct rt_plan {
    struct veil_serve_shape shapes[VEIL_SERVE_MAX_INPUTS]; /* the input shapes it is planned for */
    uint64_t batch;                                        /* for the log */
    veil_engine *engines[RT_MAX_WORKERS];
    enum slot_state state[RT_MAX_WORKERS];
    uint64_t last_used;
};

VEIL_RESULT rt_model_spec(const char *spec, char name[RT_MODEL_NAME_MAX + 1], char *path, size_t path_size)
{
    const char *colon = strchr(spec, ':');
    VEIL_ENSURE(colon != NULL && colon > spec && colon[1] != '\0', VEIL_ERR_ARG,
                "model '%.64s': expected NAME:PATH.veil", spec);
    size_t n = (size_t)(colon - spec);
    VEIL_ENSURE(n <= RT_MODEL_NAME_MAX, VEIL_ERR_ARG, "model name longer than %u bytes", RT_MODEL_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char ch = spec[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                 ch == '-' || ch == '.';
        VEIL_ENSURE(ok, VEIL_ERR_ARG, "model name '%.*s': use letters, digits, '_', '-' and '.' only", (int)n, spec);
    }
    VEIL_ENSURE(strlen(colon + 1) < path_size, VEIL_ERR_ARG, "model path too long");
    memcpy(name, spec, n);
    name[n] = '\0';
    snprintf(path, path_size, "%s", colon + 1);
    return VEIL_RESULT_OK;
}

/* ---- loading ----------------------------------------------------------------------------------------------- */

static VEIL_RESULT first_plan(struct rt_model *m, const struct rt_config *c);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static VEIL_RESULT open_sealed(struct rt_model *m, const struct rt_config *c, struct rt_key_source *src,
                               char **usage_json, char **usage_counts)
{
    uint64_t sent = vd_now_ms(), lease_ms = 0;
    struct veil_sealed_info info;
    veil_status st = veil_inspect_file(m->path, &info);
    VEIL_ENSURE(st == VEIL_OK, st, "model %s: cannot read %s", m->name, m->path);
    VEIL_DEFER(veil_secure_free) struct veil_secure_mem key = {0};
    VEIL_GUARD(veil_secure_alloc(&key, VEIL_KEY_SIZE, (int)c->lock_memory));
    uint64_t min_version = 0, t0 = now_us();
    struct veil_result r = src->fetch(src, info.model_id, info.key_version, &key, &min_version, usage_json,
                                      usage_counts, &lease_ms);
    m->key_fetch_us = now_us() - t0;
    if (!veil_ok(r))
        VEIL_BAIL(r.status, "model %s: no key for %s version %" PRIu32 " from %s: %s", m->name, info.model_id,
                  info.key_version, src->name, veil_last_error());
    /* The owner's minimum model version is checked on the authenticated header, before any decryption. */
    struct veil_open_options o = {.threads = 0, .lock_memory = (int)c->lock_memory,
                                  .min_model_version = min_version};
    st = veil_model_open(m->path, key.data, key.size, &o, &m->sealed);
    VEIL_ENSURE(st == VEIL_OK, st, "model %s: %s", m->name, veil_last_error());
    m->info = *veil_model_info(m->sealed); /* what was authenticated, not what was inspected */
    memcpy(m->header_sha256, veil_model_header_sha256(m->sealed), sizeof m->header_sha256);
    snprintf(m->version, sizeof m->version, "%" PRIu64, m->info.model_version);
    uint64_t expires = 0, renew = 0;
    if (lease_ms > 0)
        veil_lease_schedule(sent, lease_ms, vd_now_ms(), &expires, &renew);
    atomic_store(&m->lease_expires_ms, expires);
    m->lease_renew_ms = renew;
    return VEIL_RESULT_OK;
}

/* The precision configured for m: model_precision's NAME:P entry, else precision. */
static uint32_t precision_of(const struct rt_model *m, const struct rt_config *c)
{
    size_t name = strlen(m->name);
    for (const char *p = c->model_precision; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n > name && p[name] == ':' && strncmp(p, m->name, name) == 0)
            return strncmp(p + name + 1, "bf16", 4) == 0 ? VEIL_ENGINE_BF16 : VEIL_ENGINE_FP32;
        p += n + (p[n] == ',');
    }
    return strcmp(c->precision, "bf16") == 0 ? VEIL_ENGINE_BF16 : VEIL_ENGINE_FP32;
}

const char *rt_precision_name(uint32_t precision)
{
    return precision == VEIL_ENGINE_BF16 ? "bf16" : "fp32";
}

/* The owner's usage policy may pin the precisions a host may run the model in (a lower one changes its answers). */
static VEIL_RESULT precision_allowed(const struct rt_model *m)
{
    if (m->usage == NULL || m->usage->precisions == 0)
        return VEIL_RESULT_OK;
    uint32_t bit = m->engine_options.precision == VEIL_ENGINE_BF16 ? VEIL_USAGE_PRECISION_BF16
                                                                   : VEIL_USAGE_PRECISION_FP32;
    VEIL_ENSURE(m->usage->precisions & bit, VEIL_ERR_POLICY, "model %s: the owner's usage policy does not allow "
                "precision %s", m->name, rt_precision_name(m->engine_options.precision));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT usage_load(struct rt_model *m, const char *json)
{
    if (json == NULL) {
        m->shaping = (struct veil_serve_shaping){0, 0, -1};
        vd_log("warn", "usage-policy-open", "{s:s, s:s}", "model", m->name, "message",
               "the owner set no usage policy: anyone who reaches the runtime may query this model without limit");
        return VEIL_RESULT_OK;
    }
    struct veil_result r = veil_usage_parse(json, strlen(json), &m->usage);
    if (!veil_ok(r))
        VEIL_BAIL(r.status, "model %s: the usage policy from the broker is invalid: %s", m->name, veil_last_error());
    m->shaping = *veil_usage_shaping(m->usage);
    return VEIL_RESULT_OK;
}

VEIL_RESULT rt_model_usage_report(struct rt_model *m, int always, char **report)
{
    *report = NULL;
    if (m->usage == NULL)
        return VEIL_RESULT_OK;
    VEIL_GUARD(veil_usage_unreported(m->usage, report));
    if (!always && strcmp(*report, "{}") == 0) {
        free(*report);
        *report = NULL;
    }
    return VEIL_RESULT_OK;
}

void rt_model_usage_counted(struct rt_model *m, const char *report, const char *counts)
{
    if (m->usage == NULL || counts == NULL)
        return;
    json_t *sent = NULL, *upstream = NULL;
    struct veil_result r = report != NULL ? veil_usage_counts_parse(report, strlen(report), 1, &sent)
                                          : VEIL_RESULT_OK;
    if (veil_ok(r))
        r = veil_usage_counts_parse(counts, strlen(counts), 0, &upstream);
    if (veil_ok(r))
        veil_usage_acknowledge(m->usage, sent, upstream);
    else
        vd_log("error", "usage-counts-refused", "{s:s, s:s}", "model", m->name, "detail", veil_last_error());
    json_decref(sent);
    json_decref(upstream);
}

/* The io's name is copied into name (the model's own: an engine's names die with it, and plans come and go). */
static VEIL_RESULT io_copy(struct veil_serve_io *dst, const struct veil_engine_io *src,
                           char name[VEIL_SERVE_MAX_NAME_SIZE + 1])
{
    VEIL_ENSURE(strlen(src->name) <= VEIL_SERVE_MAX_NAME_SIZE, VEIL_ERR_LIMIT, "the name of input or output '%.64s' "
                "is longer than %u bytes", src->name, VEIL_SERVE_MAX_NAME_SIZE);
    snprintf(name, VEIL_SERVE_MAX_NAME_SIZE + 1, "%s", src->name);
    dst->name = name;
    dst->rank = src->rank;
    memcpy(dst->dims, src->dims, sizeof dst->dims);
    return VEIL_RESULT_OK;
}

/* The model's description from its first engine: a symbolic input dim 0 is the batch, another symbolic input dim
 * is dynamic (1..max_dim); an output dim the graph declares symbolic is shown as -1, and so is an output dim 0 of 1
 * when some input is batched (the response carries the shapes the plan that ran made). */
static VEIL_RESULT describe(struct rt_model *m, const veil_engine *e, uint64_t max_batch)
{
    size_t ni = veil_engine_input_count(e), no = veil_engine_output_count(e);
    int batched = 0, dynamic = 0;
    VEIL_ENSURE(ni <= VEIL_SERVE_MAX_INPUTS && no <= VEIL_SERVE_MAX_OUTPUTS, VEIL_ERR_LIMIT,
                "model %s has too many inputs or outputs", m->name);
    for (size_t i = 0; i < ni; i++) {
        struct veil_engine_io io;
        VEIL_ENSURE(veil_engine_input(e, i, &io) == VEIL_OK, VEIL_ERR_INTERNAL, "engine input %zu", i);
        VEIL_GUARD(io_copy(&m->inputs[i], &io, m->io_names[i]));
        m->inputs[i].dtype = veil_engine_input_dtype(e, i);
        uint32_t symbolic = veil_engine_input_symbolic(e, i);
        for (uint32_t d = 0; d < io.rank; d++)
            if (symbolic & (1u << d))
                m->inputs[i].dims[d] = -1, batched |= d == 0, dynamic |= d > 0;
    }
    for (size_t i = 0; i < no; i++) {
        struct veil_engine_io io;
        VEIL_ENSURE(veil_engine_output(e, i, &io) == VEIL_OK, VEIL_ERR_INTERNAL, "engine output %zu", i);
        VEIL_GUARD(io_copy(&m->outputs[i], &io, m->io_names[VEIL_SERVE_MAX_INPUTS + i]));
        m->outputs[i].dtype = VEIL_ONNX_FLOAT;
        uint32_t symbolic = veil_engine_output_symbolic(e, i);
        if (batched && io.rank > 0 && (io.dims[0] == 1 || (symbolic & 1u)))
            m->outputs[i].dims[0] = -1;
        for (uint32_t d = 1; d < io.rank; d++)
            if (dynamic && (symbolic & (1u << d)))
                m->outputs[i].dims[d] = -1;
    }
    m->desc = (struct veil_serve_model){.name = m->name, .version = m->version, .inputs = m->inputs,
                                        .outputs = m->outputs, .input_count = ni, .output_count = no,
                                        .max_batch = batched ? max_batch : 1, .max_dim = dynamic ? m->max_dim : 0};
    return veil_serve_model_check(&m->desc);
}

/* An engine planned for shapes (one per model input), or with shapes NULL the first one: batch 1, every other
 * symbolic dim at plan_dim (engine_options.symbolic_size). */
static VEIL_RESULT engine_new(struct rt_model *m, const struct veil_serve_shape *shapes, veil_engine **out)
{
    struct veil_engine_options o = m->engine_options;
    o.batch = 1;
    struct veil_engine_shape want[VEIL_SERVE_MAX_INPUTS];
    size_t n = shapes != NULL ? m->desc.input_count : 0;
    for (size_t i = 0; i < n; i++) {
        want[i] = (struct veil_engine_shape){.name = m->inputs[i].name, .rank = shapes[i].rank};
        memcpy(want[i].dims, shapes[i].dims, sizeof want[i].dims);
    }
    veil_status st = veil_engine_load_model_shaped(m->sealed, &o, want, n, out);
    if (st == VEIL_OK)
        return VEIL_RESULT_OK;
    VEIL_BAIL(st, "model %s: %s", m->name, veil_last_error());
}

static unsigned default_threads(uint64_t workers)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    long per = (n < 1 ? 1 : n) / (long)workers;
    return per < 1 ? 1u : (unsigned)per;
}

VEIL_RESULT rt_model_load(struct rt_model *m, const struct rt_config *c, struct rt_key_source *src)
{
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->freed, NULL);
    pthread_rwlockattr_t ga; /* a lapse waiting for requests under way is not starved by new ones */
    pthread_rwlockattr_init(&ga);
    pthread_rwlockattr_setkind_np(&ga, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&m->gate, &ga);
    pthread_rwlockattr_destroy(&ga);
    m->workers = (size_t)c->workers;
    m->max_plans = (size_t)c->max_plans;
    m->max_dim = c->max_dim;
    m->plan_rate = (double)c->plan_rate;
    m->plan_tokens = (double)c->max_plans;
    m->plan_refill_ms = vd_now_ms();
    m->engine_options = (struct veil_engine_options){
        .threads = c->engine_threads != 0 ? (unsigned)c->engine_threads : default_threads(c->workers),
        .lock_memory = (int)c->lock_memory, .symbolic_size = c->plan_dim < c->max_dim ? c->plan_dim : c->max_dim,
        .precision = precision_of(m, c)};
    char *usage_json = NULL, *counts = NULL;
    struct veil_result r = open_sealed(m, c, src, &usage_json, &counts);
    if (veil_ok(r))
        r = usage_load(m, usage_json);
    if (veil_ok(r))
        rt_model_usage_counted(m, NULL, counts);
    free(usage_json);
    free(counts);
    VEIL_GUARD(r);
    VEIL_GUARD(precision_allowed(m));
    return first_plan(m, c);
}

static void plan_free(struct rt_plan *p)
{
    for (size_t i = 0; i < RT_MAX_WORKERS; i++)
        veil_engine_free(p->engines[i]);
    free(p);
}

void rt_model_cleanup(struct rt_model *m)
{
    for (size_t i = 0; i < m->plan_count; i++)
        plan_free(m->plans[i]);
    m->plan_count = 0;
    veil_model_free(m->sealed);
    m->sealed = NULL;
    veil_usage_free(m->usage);
    m->usage = NULL;
    pthread_cond_destroy(&m->freed);
    pthread_mutex_destroy(&m->lock);
    pthread_rwlock_destroy(&m->gate);
}

/* ---- the engine pool ----------------------------------------------------------------------------------------- */

static int same_shapes(const struct rt_model *m, const struct veil_serve_shape *a, const struct veil_serve_shape *b)
{
    for (size_t i = 0; i < m->desc.input_count; i++)
        if (a[i].rank != b[i].rank || memcmp(a[i].dims, b[i].dims, a[i].rank * sizeof a[i].dims[0]) != 0)
            return 0;
    return 1;
}

static struct rt_plan *plan_find(struct rt_model *m, const struct veil_serve_shape *shapes)
{
    for (size_t i = 0; i < m->plan_count; i++)
        if (same_shapes(m, m->plans[i]->shapes, shapes))
            return m->plans[i];
    return NULL;
}

/* Plans the model's first engine (batch 1, dynamic dims at plan_dim), describes the model from it, and keeps it as
 * the plan of its input shapes. */
static VEIL_RESULT first_plan(struct rt_model *m, const struct rt_config *c)
{
    veil_engine *e = NULL;
    VEIL_GUARD(engine_new(m, NULL, &e));
    struct veil_result r = describe(m, e, c->max_batch);
    struct rt_plan *p = veil_ok(r) ? calloc(1, sizeof *p) : NULL;
    if (veil_ok(r) && p == NULL)
        r = veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    if (!veil_ok(r)) {
        veil_engine_free(e);
        return r;
    }
    for (size_t i = 0; i < m->desc.input_count; i++) {
        struct veil_engine_io io = {0};
        if (veil_engine_input(e, i, &io) != VEIL_OK)
            io.rank = 0; /* cannot happen: i is in range; a rank-0 key matches no request of the model */
        p->shapes[i].rank = io.rank;
        memcpy(p->shapes[i].dims, io.dims, sizeof io.dims);
    }
    p->batch = 1;
    m->int8_nodes = veil_engine_int8_nodes(e);
    p->engines[0] = e;
    p->state[0] = SLOT_IDLE;
    pthread_mutex_lock(&m->lock);
    m->plans[m->plan_count++] = p; /* no plan yet: the model was (re)loaded with none */
    pthread_mutex_unlock(&m->lock);
    return VEIL_RESULT_OK;
}

static int plan_idle(const struct rt_plan *p)
{
    for (size_t i = 0; i < RT_MAX_WORKERS; i++)
        if (p->state[i] == SLOT_BUSY || p->state[i] == SLOT_CREATING)
            return 0;
    return 1;
}

/* Frees the least recently used idle plan; 0 when every plan is in use. Called with the lock held. */
static int plan_evict(struct rt_model *m)
{
    size_t victim = m->plan_count;
    for (size_t i = 0; i < m->plan_count; i++)
        if (plan_idle(m->plans[i]) && (victim == m->plan_count || m->plans[i]->last_used < m->plans[victim]->last_used))
            victim = i;
    if (victim == m->plan_count)
        return 0;
    vd_log("info", "plan-evicted", "{s:s, s:I}", "model", m->name, "batch", (json_int_t)m->plans[victim]->batch);
    plan_free(m->plans[victim]);
    m->plans[victim] = m->plans[--m->plan_count];
    return 1;
}

/* Whether a new plan may be made now: a token bucket of max_plans, refilled at plan_rate per second. Planning is
 * the expensive path a client controls (a new sequence length per request), so its rate is bounded. Lock held. */
static int plan_token_ready(struct rt_model *m)
{
    if (m->plan_rate <= 0)
        return 1;
    uint64_t now = vd_now_ms();
    if (now > m->plan_refill_ms) {
        m->plan_tokens += (double)(now - m->plan_refill_ms) * m->plan_rate / 1000.0;
        if (m->plan_tokens > (double)m->max_plans)
            m->plan_tokens = (double)m->max_plans;
        m->plan_refill_ms = now;
    }
    return m->plan_tokens >= 1.0;
}

/* The plan of shapes, made when absent (NULL: none can be made now; wait, or, with *limited, refuse: past the plan
 * rate). Called with the lock held. */
static struct rt_plan *plan_get(struct rt_model *m, const struct veil_serve_shape *shapes, int *limited)
{
    struct rt_plan *p = plan_find(m, shapes);
    if (p != NULL)
        return p;
    if (!plan_token_ready(m)) { /* checked first: a refused request evicts nothing */
        *limited = 1;
        return NULL;
    }
    if (m->plan_count == m->max_plans && !plan_evict(m))
        return NULL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    if (m->plan_rate > 0)
        m->plan_tokens -= 1.0;
    memcpy(p->shapes, shapes, m->desc.input_count * sizeof *shapes);
    p->batch = m->desc.input_count > 0 && shapes[0].rank > 0 ? (uint64_t)shapes[0].dims[0] : 1;
    m->plans[m->plan_count++] = p;
    return p;
}

/* Input shapes that no plan takes (the engine refused them): remembered, so that they cost no second planning. */
static int refused_shapes(const struct rt_model *m, const struct veil_serve_shape *shapes)
{
    for (size_t i = 0; i < m->refused_count; i++)
        if (same_shapes(m, m->refused[i], shapes))
            return 1;
    return 0;
}

static void refuse_shapes(struct rt_model *m, const struct veil_serve_shape *shapes)
{
    memcpy(m->refused[m->refused_next], shapes, m->desc.input_count * sizeof *shapes);
    m->refused_next = (m->refused_next + 1) % RT_MAX_REFUSED_SHAPES;
    if (m->refused_count < RT_MAX_REFUSED_SHAPES)
        m->refused_count++;
}

/* A failed plan: the shapes' fault (the engine's checks) or the machine's (memory). Lock held. */
static VEIL_RESULT plan_failed(struct rt_model *m, struct rt_plan *p, struct veil_result r)
{
    int shapes_fault = r.status != VEIL_ERR_NOMEM && r.status != VEIL_ERR_INTERNAL;
    vd_log(shapes_fault ? "info" : "error", "plan-failed", "{s:s, s:s}", "model", m->name, "detail", veil_last_error());
    if (!shapes_fault)
        return r;
    refuse_shapes(m, p->shapes);
    for (size_t i = 0; i < m->plan_count; i++) /* an empty plan of shapes no engine takes */
        if (m->plans[i] == p && plan_idle(p)) {
            plan_free(p);
            m->plans[i] = m->plans[--m->plan_count];
            break;
        }
    VEIL_BAIL(VEIL_ERR_ARG, "model '%s' cannot run inputs of these shapes", m->name);
}

/* A slot to run on: an idle engine, else an empty slot to create one in (*create = 1); SIZE_MAX when all busy. */
static size_t slot_take(const struct rt_model *m, struct rt_plan *p, int *create)
{
    size_t empty = SIZE_MAX;
    for (size_t i = 0; i < m->workers; i++) {
        if (p->state[i] == SLOT_IDLE)
            return i;
        if (p->state[i] == SLOT_EMPTY && empty == SIZE_MAX)
            empty = i;
    }
    *create = empty != SIZE_MAX;
    return empty;
}

/* Creates the engine of a reserved slot without holding the lock. */
static VEIL_RESULT slot_create(struct rt_model *m, struct rt_plan *p, size_t slot)
{
    pthread_mutex_unlock(&m->lock);
    veil_engine *e = NULL;
    struct veil_result r = engine_new(m, p->shapes, &e);
    pthread_mutex_lock(&m->lock);
    p->engines[slot] = e;
    p->state[slot] = veil_ok(r) ? SLOT_BUSY : SLOT_EMPTY;
    if (!veil_ok(r))
        pthread_cond_broadcast(&m->freed);
    return r;
}

VEIL_RESULT rt_model_acquire(struct rt_model *m, const struct veil_serve_shape *shapes, struct rt_lease *lease)
{
    pthread_mutex_lock(&m->lock);
    int waited = 0;
    struct veil_result r = VEIL_RESULT_OK;
    for (;;) {
        if (refused_shapes(m, shapes)) {
            r = veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "model '%s' cannot run inputs of these shapes",
                                 m->name);
            break;
        }
        int limited = 0;
        struct rt_plan *p = plan_get(m, shapes, &limited);
        if (limited) {
            r = veil_error_raise(VEIL_ERR_LIMIT, __FILE__, __LINE__, "model '%s' is planning new input shapes faster "
                                 "than plan_rate allows; retry, or send shapes it has planned", m->name);
            break;
        }
        int create = 0;
        size_t slot = p != NULL ? slot_take(m, p, &create) : SIZE_MAX;
        if (slot != SIZE_MAX) {
            p->state[slot] = create ? SLOT_CREATING : SLOT_BUSY;
            p->last_used = ++m->tick;
            if (create)
                r = slot_create(m, p, slot);
            if (veil_ok(r))
                *lease = (struct rt_lease){p, slot, p->engines[slot]};
            else
                r = plan_failed(m, p, r); /* may free p */
            break;
        }
        if (!waited)
            rt_metrics_queue(1), waited = 1;
        pthread_cond_wait(&m->freed, &m->lock);
    }
    if (waited)
        rt_metrics_queue(-1);
    pthread_mutex_unlock(&m->lock);
    return r;
}

void rt_model_release(struct rt_model *m, struct rt_lease *lease)
{
    pthread_mutex_lock(&m->lock);
    lease->plan->state[lease->slot] = SLOT_IDLE;
    lease->plan->last_used = ++m->tick;
    pthread_cond_broadcast(&m->freed);
    pthread_mutex_unlock(&m->lock);
}

/* ---- leases (a key source with leases: veil-cache) ----------------------------------------------------------- */

static int usable(struct rt_model *m)
{
    uint64_t expires = atomic_load(&m->lease_expires_ms);
    return !atomic_load(&m->lapsed) && (expires == 0 || vd_now_ms() < expires);
}

/* The request path never waits for a lapse or a restore: while one is under way the answer is 503. */
int rt_model_enter(struct rt_model *m)
{
    if (pthread_rwlock_tryrdlock(&m->gate) != 0)
        return 0;
    if (usable(m))
        return 1;
    pthread_rwlock_unlock(&m->gate);
    return 0;
}

void rt_model_leave(struct rt_model *m)
{
    pthread_rwlock_unlock(&m->gate);
}

/* Frees the engines and the decrypted model (gate held for writing: no request uses them). */
static void unload(struct rt_model *m)
{
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->plan_count; i++)
        plan_free(m->plans[i]);
    m->plan_count = 0;
    pthread_mutex_unlock(&m->lock);
    veil_model_free(m->sealed);
    m->sealed = NULL;
}

void rt_model_lapse(struct rt_model *m, const char *reason)
{
    pthread_rwlock_wrlock(&m->gate);
    int was = atomic_exchange(&m->lapsed, 1);
    if (!was)
        unload(m);
    pthread_rwlock_unlock(&m->gate);
    if (!was)
        vd_log("warn", "model-lapsed", "{s:s, s:s, s:s}", "model", m->name, "reason", reason, "message",
               "the key and the decrypted model are wiped; the model answers 503 until its key is given again");
}

static VEIL_RESULT reopen(struct rt_model *m, const struct rt_config *c, struct rt_key_source *src)
{
    uint8_t header[sizeof m->header_sha256];
    memcpy(header, m->header_sha256, sizeof header);
    char *usage_json = NULL, *counts = NULL;
    struct veil_result r = open_sealed(m, c, src, &usage_json, &counts);
    free(usage_json); /* the policy in force stays, with its counters, brought up to date */
    if (veil_ok(r))
        rt_model_usage_counted(m, NULL, counts);
    free(counts);
    VEIL_GUARD(r);
    VEIL_ENSURE(memcmp(header, m->header_sha256, sizeof header) == 0, VEIL_ERR_AUTH,
                "model %s: %s is no longer the sealed model that was attested", m->name, m->path);
    return first_plan(m, c);
}

VEIL_RESULT rt_model_restore(struct rt_model *m, const struct rt_config *c, struct rt_key_source *src)
{
    pthread_rwlock_wrlock(&m->gate);
    struct veil_result r = reopen(m, c, src);
    if (veil_ok(r))
        atomic_store(&m->lapsed, 0);
    else
        unload(m);
    pthread_rwlock_unlock(&m->gate);
    if (veil_ok(r))
        vd_log("info", "model-restored", "{s:s}", "model", m->name);
    return r;
}
