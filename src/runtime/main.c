/* SPDX-License-Identifier: Apache-2.0 */
/* veil-runtime: serves sealed models over KServe v2 from inside a TEE. Lifecycle only: arguments, configuration, the
 * TLS identity, the HTTP server (live at once, ready once every model is loaded), models, signals, draining stop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

static const char usage_text[] =
    "usage: veil-runtime --config FILE [--set KEY=VALUE ...]\n"
    "       veil-runtime --model NAME:PATH.veil [--model ...] --kbs URL|--cache SOCKET|tls://ADDR:PORT\n"
    "                    --tee sim|sgx|tdx|snp|auto [--sim-dir DIR]\n"
    "                    [--listen ADDR:PORT] [--tls on|off] [--set KEY=VALUE ...]\n\n"
    "The Veil runtime: inside a TEE, obtains each sealed model's key from the owner's key broker by remote\n"
    "attestation, decrypts the model into memory that never reaches disk, runs the whole ONNX graph on oneDNN, and\n"
    "serves it over the KServe v2 / Open Inference Protocol REST API (tritonclient, KServe clients and curl work\n"
    "unchanged). Clients verify it first at GET /v2/veil/attestation?nonce=HEX: evidence binding the nonce, the TLS\n"
    "certificate's public key (created in memory at every start) and every model served (docs/runtime.md,\n"
    "docs/spec/runtime-attestation.md). The owner's usage policy (API keys, budgets, rates, output shaping) comes\n"
    "from the broker with the key and is enforced here.\n\n"
    "options:\n"
    "  --config FILE      read settings from FILE: one 'key = value' per line, '#' comments\n"
    "  --model NAME:PATH  serve the sealed model PATH as NAME (repeatable; same as models = NAME:PATH)\n"
    "  --kbs URL          same as --set kbs_url=URL\n"
    "  --kbs-cacert PEM   same as --set kbs_cacert=PEM\n"
    "  --cache SOCKET     keys from veil-cache on this node: --set key_source=cache --set cache_socket=SOCKET\n"
    "                     (SGX: --cache tls://127.0.0.1:PORT and --set cache_measurement=MRENCLAVE)\n"
    "  --tee T            same as --set tee=T\n"
    "  --sim-dir DIR      same as --set sim_dir=DIR\n"
    "  --listen ADDR      same as --set listen=ADDR\n"
    "  --tls on|off       same as --set tls=on|off\n"
    "  --set KEY=VALUE    override one setting (repeatable; applied after --config)\n"
    "  --help             show this help\n"
    "  --version          print the version\n\n"
    "settings (config file keys):\n";

static const char usage_tail[] =
    "\nEndpoints: /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V][/ready],\n"
    "POST /v2/models/NAME[/versions/V]/infer (JSON and binary tensors, classification), /v2/veil/attestation,\n"
    "/metrics (Prometheus). Nothing is written to disk: no key, no weights, no TLS key.\n"
    "Logs: one JSON object per line on stderr (never a tensor, key or API key). On SIGTERM or SIGINT it stops\n"
    "accepting connections, lets requests under way finish (drain_timeout_s), and exits.\n"
    "Exit status: 0 after a clean shutdown, 1 when it cannot start, 2 for a usage error.\n";

static const struct vd_shorthand shorthands[] = {
    {"model", "models", NULL},   {"kbs", "kbs_url", NULL},     {"kbs-cacert", "kbs_cacert", NULL},
    {"tee", "tee", NULL},        {"sim-dir", "sim_dir", NULL}, {"listen", "listen", NULL},
    {"tls", "tls", NULL},        {"cache", "cache_socket", "key_source=cache"},
};

static const struct vd_cli cli = {"veil-runtime", VEIL_RUNTIME_VERSION, usage_text, usage_tail, &rt_config_table,
                                  shorthands, sizeof shorthands / sizeof shorthands[0]};

static VEIL_RESULT configure(const struct vd_args *a, struct rt_config *cfg, veil_tee *tee)
{
    memset(cfg, 0, sizeof *cfg);
    VEIL_GUARD(vd_args_apply(&cli, a, cfg));
    return rt_config_finish(cfg, tee);
}

static void sim_warning(void)
{
    fprintf(stderr, "\n"
                    "  *****************************************************************************\n"
                    "  *  veil-runtime --tee sim: SIMULATED TEE. IT PROTECTS NOTHING.              *\n"
                    "  *  Its evidence is signed by a local key; keys and weights are in ordinary   *\n"
                    "  *  memory of an ordinary process. Never serve a real model with it.         *\n"
                    "  *****************************************************************************\n\n");
    vd_log("warn", "simulated-tee", "{s:s}", "message", "the simulation TEE protects nothing");
}

/* The TEE and where its provider looks. */
static VEIL_RESULT tee_setup(struct rt_ctx *r, const struct rt_config *c)
{
    r->provider = (struct veil_provider_config){
        .sim_dir = c->sim_dir[0] != '\0' ? c->sim_dir : NULL,
        .sim_config = c->sim_config[0] != '\0' ? c->sim_config : NULL,
        .gramine_root = c->gramine_root[0] != '\0' ? c->gramine_root : NULL,
        .tsm_root = c->tsm_root[0] != '\0' ? c->tsm_root : NULL,
    };
    if (r->tee == VEIL_TEE_AUTO) {
        veil_status st = veil_tee_detect(&r->provider, &r->tee);
        VEIL_ENSURE(st == VEIL_OK, st, "tee = auto: %s", veil_last_error());
    }
    if (r->tee == VEIL_TEE_SIM)
        sim_warning();
    return VEIL_RESULT_OK;
}

static VEIL_RESULT http_start(struct rt_ctx *r, struct vd_http **http)
{
    const struct rt_config *c = r->cfg;
    r->tls_on = strcmp(c->tls, "on") == 0;
    struct vd_http_options o = {
        .listen = c->listen,
        .tls_cert_pem = r->tls_on ? (const char *)r->tls.cert_pem.data : NULL,
        .tls_key_pem = r->tls_on ? (const char *)r->tls.key_pem.data : NULL,
        .threads = (unsigned)c->threads,
        .max_connections = (unsigned)c->max_connections,
        .connection_timeout_s = (unsigned)c->connection_timeout_s,
        .router = &rt_router,
        .ctx = r,
        .body_limit = rt_body_limit,
        .too_large = rt_too_large,
    };
    return vd_http_start(&o, http);
}

static VEIL_RESULT model_add(struct rt_ctx *r, const char *spec, struct rt_key_source *src)
{
    VEIL_ENSURE(r->model_count < RT_MAX_MODELS, VEIL_ERR_LIMIT, "at most %u models", RT_MAX_MODELS);
    struct rt_model *m = calloc(1, sizeof *m);
    VEIL_ENSURE(m != NULL, VEIL_ERR_NOMEM, "out of memory");
    r->models[r->model_count++] = m;
    VEIL_GUARD(rt_model_spec(spec, m->name, m->path, sizeof m->path));
    for (size_t i = 0; i + 1 < r->model_count; i++)
        VEIL_ENSURE(strcmp(r->models[i]->name, m->name) != 0, VEIL_ERR_ARG, "model name %s is given twice", m->name);
    uint64_t start = vd_now_ms();
    VEIL_GUARD(rt_model_load(m, r->cfg, src));
    struct veil_binding_model *b = &r->bindings[r->model_count - 1];
    *b = (struct veil_binding_model){.name = m->name, .model_id = m->info.model_id,
                                     .model_version = m->info.model_version, .key_version = m->info.key_version};
    memcpy(b->header_sha256, m->header_sha256, sizeof b->header_sha256);
    vd_log("info", "model-loaded", "{s:s, s:s, s:I, s:I, s:I, s:b, s:I, s:I}", "model", m->name, "model_id",
           m->info.model_id, "model_version", (json_int_t)m->info.model_version, "key_version",
           (json_int_t)m->info.key_version, "max_batch", (json_int_t)m->desc.max_batch, "usage_policy",
           m->usage != NULL, "load_ms", (json_int_t)(vd_now_ms() - start), "key_fetch_us",
           (json_int_t)m->key_fetch_us);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT models_load(struct rt_ctx *r)
{
    VEIL_GUARD(rt_key_source_open(r->cfg, r->tee, &r->provider, &r->keys));
    struct rt_key_source *src = r->keys;
    char *list = strdup(r->cfg->models);
    struct veil_result res = list != NULL ? VEIL_RESULT_OK : veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__,
                                                                               "out of memory");
    for (char *save = NULL, *spec = list != NULL ? strtok_r(list, ",", &save) : NULL; spec != NULL && veil_ok(res);
         spec = strtok_r(NULL, ",", &save))
        res = model_add(r, spec, src);
    free(list);
    return res;
}

static VEIL_RESULT start(struct rt_ctx *r, struct vd_http **http)
{
    VEIL_GUARD(rt_metrics_init());
    VEIL_GUARD(tee_setup(r, r->cfg));
    VEIL_GUARD(rt_tls_create(&r->tls));
    VEIL_GUARD(http_start(r, http));
    vd_log("info", "listening", "{s:s, s:b, s:s}", "listen", r->cfg->listen, "tls", r->tls_on, "tee",
           veil_tee_name(r->tee));
    VEIL_GUARD(models_load(r));
    VEIL_GUARD(rt_leases_start(r));
    atomic_store(&r->ready, 1);
    return VEIL_RESULT_OK;
}

static void stop(struct rt_ctx *r, struct vd_http *http)
{
    atomic_store(&r->draining, 1);
    size_t left = vd_http_drain(http, (unsigned)r->cfg->drain_timeout_s * 1000u);
    if (left > 0)
        vd_log("warn", "drain-timeout", "{s:I}", "unanswered", (json_int_t)left);
    rt_leases_stop(r);
    rt_usage_flush(r);
    for (size_t i = 0; i < r->model_count; i++) {
        rt_model_cleanup(r->models[i]);
        free(r->models[i]);
    }
    if (r->keys != NULL)
        r->keys->free(r->keys);
    rt_tls_cleanup(&r->tls);
}

static void log_ready(const struct rt_ctx *r)
{
    char spki[2 * VEIL_SPKI_SHA256_SIZE + 1];
    for (size_t i = 0; i < VEIL_SPKI_SHA256_SIZE; i++)
        snprintf(spki + 2 * i, 3, "%02x", r->tls.spki_sha256[i]);
    vd_log("info", "ready", "{s:s, s:I, s:s, s:s, s:I}", "version", VEIL_RUNTIME_VERSION, "models",
           (json_int_t)r->model_count, "tee", veil_tee_name(r->tee), "tls_spki_sha256", spki, "pid",
           (json_int_t)getpid());
}

int main(int argc, char **argv)
{
    veil_disable_core_dumps();
    umask(077);
    struct vd_args a = {0};
    int rc = vd_args_parse(&cli, argc, argv, &a);
    struct rt_config cfg;
    struct rt_ctx r = {.cfg = &cfg};
    if (rc == 0 && !veil_ok(configure(&a, &cfg, &r.tee))) {
        fprintf(stderr, "veil-runtime: %s\n", veil_last_error());
        rc = VD_EXIT_USAGE;
        vd_config_cleanup(&rt_config_table, &cfg);
    }
    vd_args_free(&a);
    if (rc != 0)
        return rc;
    sigset_t set;
    vd_signals_block(&set);
    struct vd_http *http = NULL;
    if (!veil_ok(start(&r, &http))) {
        vd_log("error", "start-failed", "{s:s}", "detail", veil_last_error());
        stop(&r, http);
        vd_config_cleanup(&rt_config_table, &cfg);
        return 1;
    }
    log_ready(&r);
    int sig = vd_signals_wait(&set);
    vd_log("info", "stopping", "{s:i}", "signal", sig);
    stop(&r, http);
    vd_config_cleanup(&rt_config_table, &cfg);
    vd_log("info", "stopped", NULL);
    return 0;
}
