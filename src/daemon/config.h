/* SPDX-License-Identifier: Apache-2.0 */
/* Daemon configuration as one table (Redis's standardConfig, nginx's ngx_command_t): each daemon declares its rows
 * (name, type, field offset, default, --dev default, bounds, meaning) over its own settings struct; this layer parses
 * the config file and --set with it, validates bounds, and renders --help and the docs' settings table. */
#ifndef VEIL_DAEMON_CONFIG_H
#define VEIL_DAEMON_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/result.h"

#define VD_CONFIG_FILE_MAX_SIZE (64u << 10)
#define VD_CONFIG_LINE_MAX 4096u
#define VD_CONFIG_MAX_SETTINGS 128u

enum vd_setting_type {
    VD_SET_STR,  /* char *, malloc'd */
    VD_SET_U64,  /* uint64_t within [min, max] */
    VD_SET_LIST  /* char *: a repeatable key; each occurrence is appended, comma-separated */
};

struct vd_setting {
    const char *name;
    enum vd_setting_type type;
    size_t offset;       /* of the field in the daemon's settings struct */
    const char *def;     /* default */
    const char *dev_def; /* default under --dev (NULL: same) */
    uint64_t min, max;   /* VD_SET_U64 bounds */
    const char *doc;
};

#define VD_STR(type, f, d, dd, doc) {#f, VD_SET_STR, offsetof(type, f), d, dd, 0, 0, doc}
#define VD_LIST(type, f, d, doc) {#f, VD_SET_LIST, offsetof(type, f), d, NULL, 0, 0, doc}
#define VD_U64(type, f, d, dd, lo, hi, doc) {#f, VD_SET_U64, offsetof(type, f), d, dd, lo, hi, doc}

struct vd_config_table {
    const char *daemon;              /* its name, for messages ("see veil-kbs --help") */
    const struct vd_setting *settings;
    size_t count;                    /* at most VD_CONFIG_MAX_SETTINGS */
};

/* Every setting of cfg at its default (the --dev default when dev is nonzero). Other fields are left alone. */
VEIL_RESULT vd_config_defaults(const struct vd_config_table *t, void *cfg, int dev);
/* Frees the string settings. */
void vd_config_cleanup(const struct vd_config_table *t, void *cfg);
/* Reads a config file: lines "key = value", '#' comments, blank lines; unknown keys refused, and repeated keys
 * too except for list settings. */
VEIL_RESULT vd_config_load_file(const struct vd_config_table *t, void *cfg, const char *path);
/* Applies one "key=value" (the --set option); a list setting gets the value appended. */
VEIL_RESULT vd_config_set(const struct vd_config_table *t, void *cfg, const char *assignment);
/* Appends a value to a comma-separated string or list setting. */
VEIL_RESULT vd_config_append(const struct vd_config_table *t, void *cfg, const char *key, const char *value);
/* The settings table as text, for --help. */
void vd_config_print_help(const struct vd_config_table *t, FILE *out);

#endif
