/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs configuration: one table of settings (name, type, default, bounds, meaning) that drives the config
 * file parser, the --set option, the --help text and docs/kbs.md. */
#ifndef VEIL_KBS_CONFIG_H
#define VEIL_KBS_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "core/result.h"

struct kbs_config {
    int dev;
    char *listen;
    char *data_dir;
    char *store;
    char *db_file;
    char *pg_conninfo;
    char *tls_cert;
    char *tls_key;
    char *admin_client_ca;
    char *metrics_auth;
    char *admin_token_file;
    char *master_key_file;
    char *signing_key_file;
    char *allowed_tees;
    char *sim_trusted_keys;
    char *dcap_collateral;
    char *pccs_url;
    char *collateral_cache_dir;
    char *snp_cert;
    char *default_policy_file;
    uint64_t session_ttl_s;
    uint64_t token_ttl_s;
    uint64_t rate_limit_per_s;
    uint64_t rate_limit_burst;
    uint64_t max_body_size;
    uint64_t admin_max_body_size;
    uint64_t threads;
    uint64_t max_connections;
    uint64_t connection_timeout_s;
    uint64_t audit_page_max;
    uint64_t pg_pool_size;
};

/* Every setting at its default (the --dev defaults when dev is nonzero). */
VEIL_RESULT kbs_config_defaults(struct kbs_config *c, int dev);
void kbs_config_cleanup(struct kbs_config *c);
/* Reads a config file: lines "key = value", '#' comments, blank lines; unknown or repeated keys refused. */
VEIL_RESULT kbs_config_load_file(struct kbs_config *c, const char *path);
/* Applies one "key=value" (the --set option). */
VEIL_RESULT kbs_config_set(struct kbs_config *c, const char *assignment);
/* Appends a path to a comma-separated list setting (--sim-key). */
VEIL_RESULT kbs_config_append(struct kbs_config *c, const char *key, const char *value);
/* Fills in the paths derived from data_dir and checks what needs the whole configuration. */
VEIL_RESULT kbs_config_finish(struct kbs_config *c);
/* The settings table as text (for --help) or as a Markdown table (for docs). */
void kbs_config_print_help(FILE *out);

#endif
