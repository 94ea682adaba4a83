/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs: the key broker. Lifecycle only: arguments, configuration, secrets, store, HTTP, signals, shutdown. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/limits.h"
#include "kbsd.h"

enum { EXIT_USAGE = 2 };

static const char usage_text[] =
    "usage: veil-kbs --config FILE [--set KEY=VALUE ...]\n"
    "       veil-kbs --dev --listen 127.0.0.1:PORT --data DIR [--sim-key PEM ...] [--set KEY=VALUE ...]\n\n"
    "The Veil key broker: releases a model key, encrypted to the requesting TEE's ephemeral key, only to a TEE\n"
    "whose evidence verifies and satisfies that model's release policy. It speaks Trustee's KBS attestation\n"
    "protocol (RCAR 0.4.0) under /kbs/v0 and Veil's admin API under /admin/v1 (docs/kbs.md,\n"
    "docs/kbs-admin.openapi.yaml).\n\n"
    "options:\n"
    "  --config FILE      read settings from FILE: one 'key = value' per line, '#' comments\n"
    "  --dev              development broker: plain HTTP on loopback, sim and sample TEEs accepted, built-in\n"
    "                     models test-0 (32 zero bytes) and test-1 (32 0xFF bytes) that sim and sample may fetch.\n"
    "                     It protects nothing; never use it for real keys\n"
    "  --listen ADDR      same as --set listen=ADDR\n"
    "  --data DIR         same as --set data_dir=DIR (created with mode 0700 when absent)\n"
    "  --sim-key PEM      trust this simulation platform public key (repeatable; adds to sim_trusted_keys)\n"
    "  --set KEY=VALUE    override one setting (repeatable; applied after --config)\n"
    "  --help             show this help\n"
    "  --version          print the version\n\n"
    "settings (config file keys):\n";

static const char usage_tail[] =
    "\nFiles in data_dir: kbs.sqlite (the store: models, key versions encrypted under the master key,\n"
    "sessions, the hash-chained audit log), master.key, signing.pem, admin.token (each mode 0600, created on\n"
    "first start). Admin requests carry 'Authorization: Bearer <contents of admin.token>'.\n"
    "With store = postgres the store is the PostgreSQL database of pg_conninfo instead (tables kbs_*), which\n"
    "several replicas may share: give every replica the same master.key, signing.pem and admin.token.\n"
    "Logs: one JSON object per line on stderr. Stops cleanly on SIGTERM or SIGINT.\n"
    "Exit status: 0 after a clean shutdown, 1 when it cannot start, 2 for a usage error.\n";

struct args {
    const char *config;
    int dev;
    const char *listen, *data;
    const char *sets[64];
    size_t set_count;
    const char *sim_keys[KBS_MAX_SIM_KEYS];
    size_t sim_key_count;
};

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "veil-kbs: %s%s%s\nTry 'veil-kbs --help'.\n", msg, arg != NULL ? ": " : "", arg != NULL ? arg : "");
    return EXIT_USAGE;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    enum { O_CONFIG = 256, O_DEV, O_LISTEN, O_DATA, O_SET, O_SIM_KEY, O_HELP, O_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG}, {"dev", no_argument, NULL, O_DEV},
        {"listen", required_argument, NULL, O_LISTEN}, {"data", required_argument, NULL, O_DATA},
        {"set", required_argument, NULL, O_SET},       {"sim-key", required_argument, NULL, O_SIM_KEY},
        {"help", no_argument, NULL, O_HELP},           {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_CONFIG: a->config = optarg; break;
        case O_DEV: a->dev = 1; break;
        case O_LISTEN: a->listen = optarg; break;
        case O_DATA: a->data = optarg; break;
        case O_SET:
            if (a->set_count == sizeof a->sets / sizeof a->sets[0])
                return usage_error("too many --set options", NULL);
            a->sets[a->set_count++] = optarg;
            break;
        case O_SIM_KEY:
            if (a->sim_key_count == KBS_MAX_SIM_KEYS)
                return usage_error("too many --sim-key options", NULL);
            a->sim_keys[a->sim_key_count++] = optarg;
            break;
        case O_HELP:
            fputs(usage_text, stdout);
            kbs_config_print_help(stdout);
            fputs(usage_tail, stdout);
            exit(0);
        case O_VERSION: printf("veil-kbs %s\n", VEIL_KBS_VERSION); exit(0);
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc)
        return usage_error("unexpected argument", argv[optind]);
    if (a->config == NULL && !a->dev)
        return usage_error("give --config FILE, or --dev for a development broker", NULL);
    if (a->config != NULL && a->dev) /* it would seed the well-known test keys into a production store */
        return usage_error("--dev and --config do not go together: --dev is a throwaway development broker", NULL);
    return 0;
}

/* listen: a numeric address and a port (a host name such as localhost is not resolved). */
static VEIL_RESULT listen_check(const struct kbs_config *cfg, int *loopback)
{
    struct sockaddr_storage ss;
    struct veil_result r = vd_listen_parse(cfg->listen, &ss, loopback);
    if (veil_ok(r))
        return r;
    char detail[256]; /* copied first: the message buffer is the one VEIL_BAIL writes */
    snprintf(detail, sizeof detail, "%s", veil_last_error());
    VEIL_BAIL(r.status, "%s (listen takes a numeric address: 127.0.0.1:PORT, [::1]:PORT, or 0.0.0.0:PORT with TLS)",
              detail);
}

/* allowed_tees: known TEE names only. */
static VEIL_RESULT tees_check(const struct kbs_config *cfg)
{
    char list[256];
    VEIL_ENSURE(strlen(cfg->allowed_tees) < sizeof list, VEIL_ERR_ARG, "allowed_tees is too long");
    strcpy(list, cfg->allowed_tees);
    char *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        veil_tee t = VEIL_TEE_AUTO;
        VEIL_ENSURE(veil_tee_from_name(p, &t) == VEIL_OK && t != VEIL_TEE_AUTO, VEIL_ERR_ARG,
                    "allowed_tees: unknown TEE '%.32s' (sim, sample, sgx, tdx, snp)", p);
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT configure(const struct args *a, struct kbs_config *cfg)
{
    VEIL_GUARD(kbs_config_defaults(cfg, a->dev));
    if (a->config != NULL)
        VEIL_GUARD(kbs_config_load_file(cfg, a->config));
    char assignment[KBS_MAX_PATH_SIZE + 16];
    if (a->listen != NULL) {
        snprintf(assignment, sizeof assignment, "listen=%s", a->listen);
        VEIL_GUARD(kbs_config_set(cfg, assignment));
    }
    if (a->data != NULL) {
        VEIL_ENSURE(strlen(a->data) < KBS_MAX_PATH_SIZE, VEIL_ERR_LIMIT, "--data: path too long");
        snprintf(assignment, sizeof assignment, "data_dir=%s", a->data);
        VEIL_GUARD(kbs_config_set(cfg, assignment));
    }
    for (size_t i = 0; i < a->set_count; i++)
        VEIL_GUARD(kbs_config_set(cfg, a->sets[i]));
    for (size_t i = 0; i < a->sim_key_count; i++)
        VEIL_GUARD(kbs_config_append(cfg, "sim_trusted_keys", a->sim_keys[i]));
    VEIL_GUARD(kbs_config_finish(cfg));
    int loopback = 0;
    VEIL_GUARD(listen_check(cfg, &loopback));
    VEIL_ENSURE(!cfg->dev || loopback, VEIL_ERR_ARG, "--dev listens on loopback only (127.0.0.0/8 or [::1]), not "
                "%.64s: its test keys and sim evidence must not be reachable from the network", cfg->listen);
    return tees_check(cfg);
}

/* A file the broker will read: readable now. */
static VEIL_RESULT readable(const char *path, const char *setting)
{
    VEIL_ENSURE(path[0] == '\0' || access(path, R_OK) == 0, VEIL_ERR_IO, "%s: cannot read %.200s: %s", setting, path,
                strerror(errno));
    return VEIL_RESULT_OK;
}

/* A PEM certificate (bundle) setting: readable and holding a certificate. */
static VEIL_RESULT certs_check(const char *path, const char *setting)
{
    if (path[0] == '\0')
        return VEIL_RESULT_OK;
    VEIL_GUARD(readable(path, setting));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf pem = {0};
    VEIL_GUARD(vd_pem_load(path, &pem));
    return vd_pem_check_certs((const char *)pem.data, setting);
}

/* default_policy_file: readable and a valid policy. */
static VEIL_RESULT policy_check(const char *path)
{
    if (path[0] == '\0')
        return VEIL_RESULT_OK;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_file_read_all(path, VEIL_POLICY_MAX_SIZE, &b));
    veil_policy *p = NULL;
    veil_status st = veil_policy_parse((const char *)b.data, b.size, &p);
    veil_policy_free(p);
    if (st == VEIL_OK)
        return VEIL_RESULT_OK;
    char detail[256]; /* copied first: the message buffer is the one VEIL_BAIL writes */
    snprintf(detail, sizeof detail, "%s", veil_last_error());
    VEIL_BAIL(st, "default_policy_file %.200s: %s", path, detail);
}

/* What would stop the broker after it has made its store and secret files, checked before it touches the disk:
 * plain HTTP off loopback, and every file a setting names. */
static VEIL_RESULT preflight(const struct kbs_config *cfg)
{
    struct sockaddr_storage ss;
    int loopback = 0;
    VEIL_GUARD(vd_listen_parse(cfg->listen, &ss, &loopback));
    VEIL_ENSURE(loopback || cfg->tls_cert[0] != '\0', VEIL_ERR_ARG, "refusing plain HTTP on the non-loopback "
                "address %.64s: set tls_cert and tls_key (docs/kbs.md, 'HTTPS')", cfg->listen);
    VEIL_GUARD(certs_check(cfg->tls_cert, "tls_cert"));
    VEIL_GUARD(readable(cfg->tls_key, "tls_key"));
    VEIL_GUARD(certs_check(cfg->admin_client_ca, "admin_client_ca"));
    VEIL_GUARD(readable(cfg->dcap_collateral, "dcap_collateral"));
    VEIL_GUARD(readable(cfg->snp_cert, "snp_cert"));
    for (const char *p = cfg->sim_trusted_keys; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char path[KBS_MAX_PATH_SIZE];
        VEIL_ENSURE(n < sizeof path, VEIL_ERR_LIMIT, "sim_trusted_keys: a path is too long");
        memcpy(path, p, n);
        path[n] = '\0';
        VEIL_GUARD(readable(path, "sim_trusted_keys (--sim-key)"));
        p += n + (p[n] == ',');
    }
    return policy_check(cfg->default_policy_file);
}

static VEIL_RESULT data_dir_make(const struct kbs_config *cfg)
{
    if (mkdir(cfg->data_dir, 0700) != 0)
        VEIL_ENSURE(errno == EEXIST, VEIL_ERR_IO, "cannot create %s: %s", cfg->data_dir, strerror(errno));
    return VEIL_RESULT_OK;
}

static void dev_warning(const struct kbs_config *cfg)
{
    fprintf(stderr, "\n"
                    "  *****************************************************************************\n"
                    "  *  veil-kbs --dev: DEVELOPMENT BROKER. IT PROTECTS NOTHING.                  *\n"
                    "  *  Plain HTTP, simulation and sample TEEs accepted, built-in test keys.     *\n"
                    "  *  Never give it a real model key.                                          *\n"
                    "  *****************************************************************************\n\n");
    vd_log("warn", "dev-mode", "{s:s, s:s}", "message",
            "development broker: sim and sample evidence accepted, built-in test keys test-0 and test-1",
            "allowed_tees", cfg->allowed_tees);
}

static int store_is_pg(const struct kbs_config *cfg)
{
    return strcmp(cfg->store, "postgres") == 0;
}

/* The store named by the configuration: SQLite's file, or PostgreSQL's pool. */
static VEIL_RESULT store_open(const struct kbs_config *cfg, struct kbs_store **out)
{
    if (store_is_pg(cfg))
        return kbs_store_pg_open(cfg->pg_conninfo, (unsigned)cfg->pg_pool_size, out);
    return kbs_store_sqlite_open(cfg->db_file, out);
}

static VEIL_RESULT start(struct kbs_ctx *k, struct kbs_http **http)
{
    const struct kbs_config *cfg = k->cfg;
    VEIL_GUARD(store_open(cfg, &k->store));
    VEIL_GUARD(kbs_keys_load(k));
    if (cfg->dev)
        VEIL_GUARD(kbs_keys_seed_dev(k));
    VEIL_GUARD(veil_kbs_ratelimit_init(&k->ratelimit, (double)cfg->rate_limit_per_s, (double)cfg->rate_limit_burst));
    return kbs_http_start(k, http);
}

static void stop(struct kbs_ctx *k, struct kbs_http *http)
{
    kbs_http_stop(http);
    if (k->store != NULL)
        k->store->ops->close(k->store);
    veil_kbs_ratelimit_cleanup(&k->ratelimit);
    kbs_keys_cleanup(k);
}

int main(int argc, char **argv)
{
    veil_disable_core_dumps();
    umask(077); /* the store, its journal and every secret file: owner only */
    struct args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    struct kbs_config cfg;
    if (!veil_ok(configure(&a, &cfg))) {
        fprintf(stderr, "veil-kbs: %s\n", veil_last_error());
        kbs_config_cleanup(&cfg);
        return EXIT_USAGE;
    }
    if (cfg.dev)
        dev_warning(&cfg);
    sigset_t set;
    vd_signals_block(&set);
    struct kbs_ctx k = {.cfg = &cfg};
    struct kbs_http *http = NULL;
    if (!veil_ok(preflight(&cfg)) || !veil_ok(data_dir_make(&cfg)) || !veil_ok(start(&k, &http))) {
        vd_log("error", "start-failed", "{s:s}", "detail", veil_last_error());
        stop(&k, http);
        kbs_config_cleanup(&cfg);
        return 1;
    }
    vd_log("info", "started", "{s:s, s:s, s:b, s:s, s:I}", "version", VEIL_KBS_VERSION, "listen", cfg.listen, "tls",
            cfg.tls_cert[0] != '\0', "store", store_is_pg(&cfg) ? "postgresql" : cfg.db_file, "pid",
            (json_int_t)getpid());
    int sig = vd_signals_wait(&set);
    vd_log("info", "stopping", "{s:i}", "signal", sig);
    stop(&k, http);
    kbs_config_cleanup(&cfg);
    vd_log("info", "stopped", NULL);
    return 0;
}
