/* SPDX-License-Identifier: Apache-2.0 */
/* A daemon's command line: --config FILE, --set KEY=VALUE, shorthand options that stand for a setting
 * (--kbs URL is --set kbs_url=URL), --help (the usage text, the settings table, its tail) and --version. Every
 * option but --config becomes an assignment, applied in order after the file (vd_args_apply). */
#ifndef VEIL_DAEMON_ARGS_H
#define VEIL_DAEMON_ARGS_H

#include <stddef.h>

#include "config.h"
#include "core/result.h"

#define VD_ARGS_MAX_SETS 128u
#define VD_ARGS_MAX_SHORTHANDS 16u
#define VD_EXIT_USAGE 2

/* --OPTION VALUE means --set SETTING=VALUE, after the fixed assignment also (NULL: none). */
struct vd_shorthand {
    const char *option;
    const char *setting;
    const char *also;
};

struct vd_cli {
    const char *daemon;                  /* "veil-runtime": messages, --version */
    const char *version;
    const char *usage_text, *usage_tail; /* --help: usage_text, the settings table, usage_tail */
    const struct vd_config_table *table;
    const struct vd_shorthand *shorthands;
    size_t shorthand_count;              /* at most VD_ARGS_MAX_SHORTHANDS */
};

struct vd_args {
    const char *config;
    char *sets[VD_ARGS_MAX_SETS];
    size_t set_count;
};

/* Parses argv into a (zeroed by the caller). --help and --version print and exit 0. Returns 0, or VD_EXIT_USAGE after
 * a one-line message on stderr. */
int vd_args_parse(const struct vd_cli *cli, int argc, char **argv, struct vd_args *a);
void vd_args_free(struct vd_args *a);
/* cfg (zeroed by the caller) at the table's defaults, then the --config file, then every assignment in order. */
VEIL_RESULT vd_args_apply(const struct vd_cli *cli, const struct vd_args *a, void *cfg);

#endif
