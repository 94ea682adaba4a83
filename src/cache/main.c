/* SPDX-License-Identifier: Apache-2.0 */
/* veil-cache: the node key cache. Inside the TEE of a cloud node it attests to the owner's key broker, holds the
 * keys of the models its configuration names under the leases the owner grants, and hands them to local
 * veil-runtime processes that pass the peer check and local attestation. Lifecycle only: arguments, configuration,
 * the TEE, the lease table and its renewal thread, the Unix socket, /metrics, signals, and a stop that wipes every
 * key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "core/secret.h"

static const char usage_text[] =
    "usage: veil-cache --config FILE [--set KEY=VALUE ...]\n"
    "       veil-cache --socket PATH --kbs URL --tee sim|tdx|snp|auto [--sim-dir DIR] --model MODEL_ID[@VERSION]\n"
    "                  --allow MODEL_ID:MEASUREMENT [--listen ADDR:PORT] [--set KEY=VALUE ...]\n"
    "       veil-cache --local-listen 127.0.0.1:PORT --kbs URL --tee sgx --model MODEL_ID[@VERSION]\n"
    "                  --allow MODEL_ID:MRENCLAVE [--listen ADDR:PORT] [--set KEY=VALUE ...]\n\n"
    "The Veil node key cache. Inside the TEE of a node, it attests to the owner's key broker (RCAR, this TEE's\n"
    "evidence), holds the keys of the models named here under the lease the owner grants each (the release\n"
    "policy's lease_ttl_s), renews them with fresh evidence at half the lease, and wipes a key at once when the\n"
    "broker refuses a renewal (revoked version, policy no longer admitting this node) or when its lease ends\n"
    "without renewal. Local veil-runtime processes (--cache SOCKET) get a key over the Unix socket after the peer\n"
    "check (uid, executable measured) and local attestation, with a lease no longer than the cache's (docs/cache.md).\n"
    "Under SGX (two Gramine enclaves cannot share a Unix socket) runtimes connect to local_listen on loopback\n"
    "(--cache tls://127.0.0.1:PORT): TLS 1.3 with an ephemeral certificate nobody verifies, then mutual EREPORTs\n"
    "whose report data binds the TLS session (an exporter value); the runtime's MRENCLAVE (or MRSIGNER, product id\n"
    "and minimum SVN) must be allowed for the model it asks for.\n\n"
    "options:\n"
    "  --config FILE          read settings from FILE: one 'key = value' per line, '#' comments\n"
    "  --socket PATH          same as --set socket=PATH\n"
    "  --local-listen ADDR    same as --set local_listen=ADDR (tee = sgx)\n"
    "  --kbs URL              same as --set kbs_url=URL\n"
    "  --kbs-cacert PEM       same as --set kbs_cacert=PEM\n"
    "  --tee T                same as --set tee=T\n"
    "  --sim-dir DIR          same as --set sim_dir=DIR\n"
    "  --listen ADDR          same as --set listen=ADDR\n"
    "  --model M[@V]          same as --set models=M[@V] (repeatable)\n"
    "  --allow M:MEASUREMENT  same as --set allow=M:MEASUREMENT (repeatable)\n"
    "  --set KEY=VALUE        override one setting (repeatable; applied after --config)\n"
    "  --help                 show this help\n"
    "  --version              print the version\n\n"
    "settings (config file keys):\n";

static const char usage_tail[] =
    "\nKeys live only in memory excluded from core dumps (mlock'ed with lock_memory = 1): nothing is written to disk.\n"
    "Logs: one JSON object per line on stderr (never a key). /metrics: keys held, time to the next lease expiry,\n"
    "renewals by result, expiries, local keys and leases served, local refusals by reason, broker reachability.\n"
    "On SIGTERM or SIGINT it stops accepting, wipes every key and exits 0.\n"
    "Exit status: 0 after a clean shutdown, 1 when it cannot start, 2 for a usage error.\n";

static const struct vd_shorthand shorthands[] = {
    {"socket", "socket", NULL},   {"kbs", "kbs_url", NULL},         {"kbs-cacert", "kbs_cacert", NULL},
    {"tee", "tee", NULL},         {"sim-dir", "sim_dir", NULL},     {"listen", "listen", NULL},
    {"model", "models", NULL},    {"allow", "allow", NULL},       {"local-listen", "local_listen", NULL},
};

static const struct vd_cli cli = {"veil-cache", VEIL_CACHE_VERSION, usage_text, usage_tail, &cc_config_table,
                                  shorthands, sizeof shorthands / sizeof shorthands[0]};

static VEIL_RESULT configure(const struct vd_args *a, struct cc_config *cfg, struct cc_settings *set)
{
    memset(cfg, 0, sizeof *cfg);
    VEIL_GUARD(vd_args_apply(&cli, a, cfg));
    return cc_config_finish(cfg, set);
}

static void sim_warning(void)
{
    fprintf(stderr, "\n"
                    "  *****************************************************************************\n"
                    "  *  veil-cache --tee sim: SIMULATED TEE. IT PROTECTS NOTHING.                *\n"
                    "  *  Its evidence and local reports are made with keys on this machine's disk; *\n"
                    "  *  keys are in ordinary memory of an ordinary process.                      *\n"
                    "  *****************************************************************************\n\n");
    vd_log("warn", "simulated-tee", "{s:s}", "message", "the simulation TEE protects nothing");
}

/* SGX: this enclave's TARGETINFO, EREPORT through Gramine and the report key from EGETKEY (which exists only inside
 * the enclave: nothing here calls it before a runtime's REPORT arrives), the runtimes allowed (one policy per allow
 * entry) and the TLS context with its ephemeral certificate. */
static VEIL_RESULT sgx_setup(struct cc_ctx *c)
{
    VEIL_GUARD(veil_sgx_my_target_info(c->cfg->gramine_root, c->sgx.target_info));
    for (size_t i = 0; i < c->set.allow_count; i++)
        veil_sgx_identity_policy(&c->set.allow[i].sgx_id, &c->sgx_policies[i]);
    c->sgx.ops = (struct veil_la_sgx_ops){.report = veil_la_sgx_gramine_report,
                                          .report_key = veil_sgx_egetkey_report_key, .ctx = c->cfg->gramine_root};
    c->sgx.peers = c->sgx_policies;
    c->sgx.peer_count = c->set.allow_count;
    return veil_la_tls_ctx_new(1, &c->tls);
}

/* The TEE, where its provider looks, and (sim) this cache's identity and the node's report key. */
static VEIL_RESULT tee_setup(struct cc_ctx *c)
{
    const struct cc_config *f = c->cfg;
    c->provider = (struct veil_provider_config){
        .sim_dir = f->sim_dir[0] != '\0' ? f->sim_dir : NULL,
        .sim_config = f->sim_config[0] != '\0' ? f->sim_config : NULL,
        .gramine_root = f->gramine_root[0] != '\0' ? f->gramine_root : NULL,
        .tsm_root = f->tsm_root[0] != '\0' ? f->tsm_root : NULL,
    };
    if (c->set.tee == VEIL_TEE_AUTO) {
        veil_status st = veil_tee_detect(&c->provider, &c->set.tee);
        VEIL_ENSURE(st == VEIL_OK, st, "tee = auto: %s", veil_last_error());
        VEIL_GUARD(cc_config_for_tee(f, &c->set, c->set.tee));
    }
    if (c->set.tee == VEIL_TEE_SGX)
        return sgx_setup(c);
    if (c->set.tee != VEIL_TEE_SIM)
        return VEIL_RESULT_OK;
    sim_warning();
    VEIL_GUARD(veil_la_sim_measure("/proc/self/exe", c->self_measurement));
    return veil_la_sim_report_key(f->sim_dir, c->report_key);
}

static void kbs_setup(struct cc_ctx *c)
{
    const struct cc_config *f = c->cfg;
    c->kbs = (struct veil_kbs_fetch_options){
        .url = f->kbs_url,
        .cacert = f->kbs_cacert[0] != '\0' ? f->kbs_cacert : NULL,
        .tls_pinned_pubkey = f->kbs_pinned_pubkey[0] != '\0' ? f->kbs_pinned_pubkey : NULL,
        .tee = c->set.tee,
        .provider = &c->provider,
        .timeout_s = (unsigned)f->key_timeout_s,
    };
}

static VEIL_RESULT http_start(struct cc_ctx *c, struct vd_http **http)
{
    if (c->cfg->listen[0] == '\0')
        return VEIL_RESULT_OK;
    struct vd_http_options o = {
        .listen = c->cfg->listen, .threads = 1, .max_connections = 16, .connection_timeout_s = 10,
        .router = &cc_router, .ctx = c, .body_limit = cc_body_limit, .too_large = cc_too_large,
    };
    return vd_http_start(&o, http);
}

static VEIL_RESULT start(struct cc_ctx *c, struct vd_http **http)
{
    VEIL_GUARD(cc_metrics_init());
    VEIL_GUARD(tee_setup(c));
    kbs_setup(c);
    cc_broker_preload(c);
    VEIL_GUARD(cc_broker_start(c));
    VEIL_GUARD(cc_local_start(c));
    VEIL_GUARD(http_start(c, http));
    vd_metrics_started(vd_now());
    return VEIL_RESULT_OK;
}

static void stop(struct cc_ctx *c, struct vd_http *http)
{
    cc_local_stop(c);
    cc_broker_stop(c);
    vd_http_stop(http);
    veil_wipe(c->report_key, sizeof c->report_key);
    veil_la_tls_ctx_free(c->tls);
    c->tls = NULL;
}

int main(int argc, char **argv)
{
    veil_disable_core_dumps();
    umask(077);
    struct vd_args a = {0};
    int rc = vd_args_parse(&cli, argc, argv, &a);
    struct cc_config cfg;
    static struct cc_ctx c; /* large (connection table, tombstones): not on the stack */
    c.cfg = &cfg;
    c.listen_fd = -1;
    if (rc == 0 && !veil_ok(configure(&a, &cfg, &c.set))) {
        fprintf(stderr, "veil-cache: %s\n", veil_last_error());
        rc = VD_EXIT_USAGE;
        vd_config_cleanup(&cc_config_table, &cfg);
    }
    vd_args_free(&a);
    if (rc != 0)
        return rc;
    sigset_t set;
    vd_signals_block(&set);
    cc_broker_init(&c);
    cc_usage_init(&c);
    struct vd_http *http = NULL;
    if (!veil_ok(start(&c, &http))) {
        vd_log("error", "start-failed", "{s:s}", "detail", veil_last_error());
        stop(&c, http);
        cc_usage_cleanup(&c);
        vd_config_cleanup(&cc_config_table, &cfg);
        return 1;
    }
    vd_log("info", "ready", "{s:s, s:s, s:s, s:I, s:I, s:I}", "version", VEIL_CACHE_VERSION, "socket",
           c.set.kind == VEIL_LA_KIND_SGX ? cfg.local_listen : cfg.socket,
           "tee", veil_tee_name(c.set.tee), "models", (json_int_t)c.set.model_count, "keys",
           (json_int_t)c.table.count, "pid", (json_int_t)getpid());
    int sig = vd_signals_wait(&set);
    vd_log("info", "stopping", "{s:i}", "signal", sig);
    stop(&c, http);
    cc_usage_cleanup(&c);
    vd_config_cleanup(&cc_config_table, &cfg);
    vd_log("info", "stopped", NULL);
    return 0;
}
