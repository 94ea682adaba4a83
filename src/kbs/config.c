/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs settings: one table; see config.h. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/limits.h"
#include "config.h"

#define KBS_CONFIG_FILE_MAX_SIZE (64u << 10)
#define KBS_CONFIG_LINE_MAX 4096u

enum setting_type { SET_STR, SET_U64 };

struct setting {
    const char *name;
    enum setting_type type;
    size_t offset;
    const char *def;     /* default */
    const char *dev_def; /* default under --dev (NULL: same) */
    uint64_t min, max;   /* SET_U64 bounds */
    const char *doc;
};

#define STR(f, d, dd, doc) {#f, SET_STR, offsetof(struct kbs_config, f), d, dd, 0, 0, doc}
#define U64(f, d, dd, lo, hi, doc) {#f, SET_U64, offsetof(struct kbs_config, f), d, dd, lo, hi, doc}

static const struct setting settings[] = {
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
        "requests per second per client address on /auth and /attest (token bucket); 0 disables"),
    U64(rate_limit_burst, "40", "200", 1, 1000000, "token bucket size per client address"),
    U64(max_body_size, "1048576", NULL, 1024, VEIL_RCAR_MAX_BODY_SIZE, "largest /auth or /attest body, bytes"),
    U64(admin_max_body_size, "1048576", NULL, 1024, VEIL_POLICY_MAX_SIZE, "largest admin API body, bytes"),
    U64(threads, "4", NULL, 1, 256, "HTTP worker threads"),
    U64(max_connections, "512", NULL, 1, 65536, "simultaneous connections"),
    U64(connection_timeout_s, "30", NULL, 1, 3600, "idle connection timeout, seconds"),
    U64(audit_page_max, "1000", NULL, 1, 100000, "most audit entries one admin request returns"),
    U64(pg_pool_size, "4", NULL, 1, 256, "PostgreSQL: connections held open by this replica"),
};
#define SETTING_COUNT (sizeof settings / sizeof settings[0])

static char **str_field(struct kbs_config *c, const struct setting *s)
{
    return (char **)(void *)((char *)c + s->offset);
}

static uint64_t *u64_field(struct kbs_config *c, const struct setting *s)
{
    return (uint64_t *)(void *)((char *)c + s->offset);
}

static const struct setting *find(const char *name, size_t len)
{
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (strlen(settings[i].name) == len && memcmp(settings[i].name, name, len) == 0)
            return &settings[i];
    return NULL;
}

static VEIL_RESULT parse_u64(const struct setting *s, const char *v, uint64_t *out)
{
    errno = 0;
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    VEIL_ENSURE(v[0] >= '0' && v[0] <= '9' && errno == 0 && *end == '\0' && n >= s->min && n <= s->max,
                VEIL_ERR_ARG, "setting %s must be a whole number from %llu to %llu, not '%.64s'", s->name,
                (unsigned long long)s->min, (unsigned long long)s->max, v);
    *out = n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT apply(struct kbs_config *c, const struct setting *s, const char *value)
{
    if (s->type == SET_U64)
        return parse_u64(s, value, u64_field(c, s));
    char *copy = strdup(value);
    VEIL_ENSURE(copy != NULL, VEIL_ERR_NOMEM, "out of memory");
    free(*str_field(c, s));
    *str_field(c, s) = copy;
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_config_defaults(struct kbs_config *c, int dev)
{
    memset(c, 0, sizeof *c);
    c->dev = dev;
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const struct setting *s = &settings[i];
        VEIL_GUARD(apply(c, s, dev && s->dev_def != NULL ? s->dev_def : s->def));
    }
    return VEIL_RESULT_OK;
}

void kbs_config_cleanup(struct kbs_config *c)
{
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        if (settings[i].type == SET_STR) {
            free(*str_field(c, &settings[i]));
            *str_field(c, &settings[i]) = NULL;
        }
    }
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* "key = value" with the key looked up in the table. */
static VEIL_RESULT assign(struct kbs_config *c, char *line, const struct setting **which)
{
    char *eq = strchr(line, '=');
    VEIL_ENSURE(eq != NULL, VEIL_ERR_ARG, "expected 'key = value'");
    *eq = '\0';
    char *key = trim(line), *value = trim(eq + 1);
    const struct setting *s = find(key, strlen(key));
    VEIL_ENSURE(s != NULL, VEIL_ERR_ARG, "unknown setting '%.64s' (see veil-kbs --help)", key);
    *which = s;
    return apply(c, s, value);
}

VEIL_RESULT kbs_config_set(struct kbs_config *c, const char *assignment)
{
    char line[KBS_CONFIG_LINE_MAX];
    VEIL_ENSURE(strlen(assignment) < sizeof line, VEIL_ERR_LIMIT, "setting is too long");
    strcpy(line, assignment);
    const struct setting *s = NULL;
    return assign(c, line, &s);
}

static VEIL_RESULT load_line(struct kbs_config *c, char *line, size_t lineno, int *seen)
{
    char *t = trim(line);
    if (t[0] == '\0' || t[0] == '#')
        return VEIL_RESULT_OK;
    const struct setting *s = NULL;
    struct veil_result r = assign(c, t, &s);
    if (!veil_ok(r))
        VEIL_BAIL(r.status, "line %zu: %s", lineno, veil_last_error());
    size_t idx = (size_t)(s - settings);
    VEIL_ENSURE(!seen[idx], VEIL_ERR_ARG, "line %zu: setting %s is given twice", lineno, s->name);
    seen[idx] = 1;
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_config_load_file(struct kbs_config *c, const char *path)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_file_read_all(path, KBS_CONFIG_FILE_MAX_SIZE, &b));
    VEIL_GUARD(veil_buf_append_u8(&b, 0));
    VEIL_ENSURE(strlen((char *)b.data) == b.size - 1, VEIL_ERR_ARG, "config %s holds a NUL byte", path);
    int seen[SETTING_COUNT] = {0};
    size_t lineno = 0;
    for (char *save = NULL, *line = strtok_r((char *)b.data, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        VEIL_ENSURE(strlen(line) < KBS_CONFIG_LINE_MAX, VEIL_ERR_LIMIT, "config %s: a line is too long", path);
        VEIL_GUARD(load_line(c, line, lineno, seen));
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_config_append(struct kbs_config *c, const char *key, const char *value)
{
    const struct setting *s = find(key, strlen(key));
    VEIL_ENSURE(s != NULL && s->type == SET_STR, VEIL_ERR_INTERNAL, "no list setting %s", key);
    char **f = str_field(c, s);
    size_t n = strlen(*f) + strlen(value) + 2;
    char *joined = malloc(n);
    VEIL_ENSURE(joined != NULL, VEIL_ERR_NOMEM, "out of memory");
    snprintf(joined, n, "%s%s%s", *f, (*f)[0] != '\0' ? "," : "", value);
    free(*f);
    *f = joined;
    return VEIL_RESULT_OK;
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
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const struct setting *s = &settings[i];
        fprintf(out, "  %-22s %s\n", s->name, s->doc);
        char dev[96] = "";
        if (s->dev_def != NULL)
            snprintf(dev, sizeof dev, " (--dev: %s)", s->dev_def);
        if (s->type == SET_U64)
            fprintf(out, "  %-22s default %s%s, %llu..%llu\n", "", s->def, dev, (unsigned long long)s->min,
                    (unsigned long long)s->max);
        else if (s->def[0] != '\0' || s->dev_def != NULL)
            fprintf(out, "  %-22s default %s%s\n", "", s->def, dev);
    }
}
