/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs settings: the broker's rows of the shared configuration table (src/daemon/config.h); see config.h. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/limits.h"
#include "daemon/config.h"

#define STR(f, d, dd, doc) VD_STR(struct kbs_config, f, d, dd, doc)
#define U64(f, d, dd, lo, hi, doc) VD_U64(struct kbs_config, f, d, dd, lo, hi, doc)

static const struct vd_setting settings[] = {
    STR(listen, "127.0.0.1:8443", NULL,
        "address and port to listen on: IPv4 'A.B.C.D:PORT' or IPv6 '[ADDR]:PORT'; plain HTTP only on loopback"),
    STR(data_dir, "", NULL, "directory of the store, master key, signing key and admin token (required)"),
    STR(store, "sqlite", NULL, "where models, keys, sessions and the audit log live: 'sqlite' (one file) or "
                               "'postgres' (shared by several broker replicas)"),
    STR(db_file, "", NULL, "SQLite database (default DATA_DIR/kbs.sqlite)"),
    STR(pg_conninfo, "", NULL, "PostgreSQL: libpq connection string, e.g. 'host=/run/postgresql dbname=veil "
                               "user=veil'; keep passwords out of it (use PGPASSFILE or a .pgpass file)"),
    STR(tls_cert, "", NULL, "PEM certificate chain for HTTPS; empty: plain HTTP (loopback only)"),
    STR(tls_key, "", NULL, "PEM private key for HTTPS (required with tls_cert)"),
    STR(admin_client_ca, "", NULL, "PEM CA bundle: with HTTPS, an admin request may authenticate with a client "
                                   "certificate issued by this CA instead of the bearer token (mutual TLS)"),
    STR(metrics_auth, "admin", NULL, "who may read /metrics (Prometheus text format): 'admin' (the admin bearer "
                                     "token or client certificate) or 'none' (anyone who can reach the port)"),
    STR(admin_token_file, "", NULL, "admin bearer token file, created (mode 0600) when absent "
                                    "(default DATA_DIR/admin.token)"),
    STR(master_key_file, "", NULL, "32-byte master key that encrypts model keys at rest, created (mode 0600) when "
                                   "absent; keep it outside the database's backups (default DATA_DIR/master.key)"),
    STR(signing_key_file, "", NULL, "P-256 key that signs attestation tokens, created (mode 0600) when absent "
                                    "(default DATA_DIR/signing.pem)"),
    STR(allowed_tees, "sgx,tdx,snp", "sim,sample,sgx,tdx,snp",
        "comma-separated TEE types accepted at /auth (sim, sample, sgx, tdx, snp)"),
    STR(sim_trusted_keys, "", NULL, "comma-separated PEM public keys of trusted simulation platforms "
                                    "(veil attest sim-init's platform.pub)"),
    STR(dcap_collateral, "", NULL, "SGX/TDX: DCAP collateral JSON file (dcap-qvl's QuoteCollateralV3 layout)"),
    STR(pccs_url, "", NULL, "SGX/TDX: fetch DCAP collateral from this PCCS/PCS base URL instead"),
    STR(collateral_cache_dir, "", NULL, "SGX/TDX: cache fetched collateral here"),
    STR(snp_cert, "", NULL, "SEV-SNP: VCEK/VLEK (DER or PEM) used when evidence carries none"),
    STR(default_policy_file, "", NULL, "release policy given to models created without one (docs/spec/policy.md); "
                                       "empty: the default policy, which refuses everything"),
    U64(session_ttl_s, "300", NULL, 1, 86400, "lifetime of an RCAR session (its challenge and cookie), seconds"),
    U64(token_ttl_s, "300", NULL, 1, 86400, "lifetime of an attestation token, seconds"),
    U64(rate_limit_per_s, "20", "100", 0, 1000000,
        "requests per second per client address on /auth, /attest and /resource (token bucket); 0 disables"),
    U64(rate_limit_burst, "40", "200", 1, 1000000, "token bucket size per client address"),
    U64(max_body_size, "1048576", NULL, 1024, VEIL_RCAR_MAX_BODY_SIZE, "largest /auth or /attest body, bytes"),
    U64(admin_max_body_size, "1048576", NULL, 1024, VEIL_POLICY_MAX_SIZE, "largest admin API body, bytes"),
    U64(threads, "4", NULL, 1, 256, "HTTP worker threads"),
    U64(max_connections, "512", NULL, 1, 65536, "simultaneous connections"),
    U64(connection_timeout_s, "30", NULL, 1, 3600, "idle connection timeout, seconds"),
    U64(audit_page_max, "1000", NULL, 1, 100000, "most audit entries one admin request returns"),
    U64(pg_pool_size, "4", NULL, 1, 256, "PostgreSQL: connections held open by this replica"),
};
static const struct vd_config_table table = {"veil-kbs", settings, sizeof settings / sizeof settings[0]};

VEIL_RESULT kbs_config_defaults(struct kbs_config *c, int dev)
{
    memset(c, 0, sizeof *c);
    c->dev = dev;
    return vd_config_defaults(&table, c, dev);
}

void kbs_config_cleanup(struct kbs_config *c)
{
    vd_config_cleanup(&table, c);
}

VEIL_RESULT kbs_config_load_file(struct kbs_config *c, const char *path)
{
    return vd_config_load_file(&table, c, path);
}

VEIL_RESULT kbs_config_set(struct kbs_config *c, const char *assignment)
{
    return vd_config_set(&table, c, assignment);
}

VEIL_RESULT kbs_config_append(struct kbs_config *c, const char *key, const char *value)
{
    return vd_config_append(&table, c, key, value);
}

static VEIL_RESULT derive(char **field, const char *dir, const char *name)
{
    if ((*field)[0] != '\0')
        return VEIL_RESULT_OK;
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    free(*field);
    *field = p;
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_config_finish(struct kbs_config *c)
{
    VEIL_ENSURE(c->data_dir[0] != '\0', VEIL_ERR_ARG, "no data directory: set data_dir (or --data DIR)");
    VEIL_ENSURE((c->tls_cert[0] == '\0') == (c->tls_key[0] == '\0'), VEIL_ERR_ARG,
                "tls_cert and tls_key go together");
    VEIL_ENSURE(c->dcap_collateral[0] == '\0' || c->pccs_url[0] == '\0', VEIL_ERR_ARG,
                "set dcap_collateral or pccs_url, not both");
    VEIL_ENSURE(strcmp(c->store, "sqlite") == 0 || strcmp(c->store, "postgres") == 0, VEIL_ERR_ARG,
                "store must be 'sqlite' or 'postgres', not '%.32s'", c->store);
    VEIL_ENSURE(strcmp(c->store, "postgres") != 0 || c->pg_conninfo[0] != '\0', VEIL_ERR_ARG,
                "store = postgres needs pg_conninfo");
    VEIL_ENSURE(strcmp(c->metrics_auth, "admin") == 0 || strcmp(c->metrics_auth, "none") == 0, VEIL_ERR_ARG,
                "metrics_auth must be 'admin' or 'none', not '%.32s'", c->metrics_auth);
    VEIL_ENSURE(c->admin_client_ca[0] == '\0' || c->tls_cert[0] != '\0', VEIL_ERR_ARG,
                "admin_client_ca (mutual TLS) needs HTTPS: set tls_cert and tls_key");
    VEIL_GUARD(derive(&c->db_file, c->data_dir, "kbs.sqlite"));
    VEIL_GUARD(derive(&c->admin_token_file, c->data_dir, "admin.token"));
    VEIL_GUARD(derive(&c->master_key_file, c->data_dir, "master.key"));
    return derive(&c->signing_key_file, c->data_dir, "signing.pem");
}

void kbs_config_print_help(FILE *out)
{
    vd_config_print_help(&table, out);
}
