/* SPDX-License-Identifier: Apache-2.0 */
/* A daemon's command line (args.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

enum { O_CONFIG = 256, O_SET, O_HELP, O_VERSION, O_SHORTHAND };

static int usage_error(const struct vd_cli *cli, const char *msg, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\nTry '%s --help'.\n", cli->daemon, msg, arg != NULL ? ": " : "",
            arg != NULL ? arg : "", cli->daemon);
    return VD_EXIT_USAGE;
}

/* Appends "key=value", or value alone when key is NULL (--set). */
static int add_set(const struct vd_cli *cli, struct vd_args *a, const char *key, const char *value)
{
    if (a->set_count == VD_ARGS_MAX_SETS)
        return usage_error(cli, "too many options", NULL);
    size_t n = (key != NULL ? strlen(key) + 1 : 0) + strlen(value) + 1;
    char *s = malloc(n);
    if (s == NULL)
        return usage_error(cli, "out of memory", NULL);
    snprintf(s, n, "%s%s%s", key != NULL ? key : "", key != NULL ? "=" : "", value);
    a->sets[a->set_count++] = s;
    return 0;
}

static int add_shorthand(const struct vd_cli *cli, struct vd_args *a, const struct vd_shorthand *s, const char *value)
{
    int rc = s->also != NULL ? add_set(cli, a, NULL, s->also) : 0;
    return rc != 0 ? rc : add_set(cli, a, s->setting, value);
}

void vd_args_free(struct vd_args *a)
{
    for (size_t i = 0; i < a->set_count; i++)
        free(a->sets[i]);
    a->set_count = 0;
}

static void options_fill(const struct vd_cli *cli, struct option *opts)
{
    static const struct option fixed[] = {{"config", required_argument, NULL, O_CONFIG},
                                          {"set", required_argument, NULL, O_SET},
                                          {"help", no_argument, NULL, O_HELP},
                                          {"version", no_argument, NULL, O_VERSION}};
    size_t n = sizeof fixed / sizeof fixed[0];
    memcpy(opts, fixed, sizeof fixed);
    for (size_t i = 0; i < cli->shorthand_count; i++)
        opts[n + i] = (struct option){cli->shorthands[i].option, required_argument, NULL, O_SHORTHAND + (int)i};
    opts[n + cli->shorthand_count] = (struct option){NULL, 0, NULL, 0};
}

static int option(const struct vd_cli *cli, struct vd_args *a, int c)
{
    if (c == O_CONFIG) {
        a->config = optarg;
        return 0;
    }
    if (c == O_SET)
        return add_set(cli, a, NULL, optarg);
    if (c == O_HELP) {
        fputs(cli->usage_text, stdout);
        vd_config_print_help(cli->table, stdout);
        fputs(cli->usage_tail, stdout);
        exit(0);
    }
    if (c == O_VERSION) {
        printf("%s %s\n", cli->daemon, cli->version);
        exit(0);
    }
    if (c >= O_SHORTHAND && (size_t)(c - O_SHORTHAND) < cli->shorthand_count)
        return add_shorthand(cli, a, &cli->shorthands[c - O_SHORTHAND], optarg);
    return VD_EXIT_USAGE; /* getopt_long has said why */
}

int vd_args_parse(const struct vd_cli *cli, int argc, char **argv, struct vd_args *a)
{
    if (cli->shorthand_count > VD_ARGS_MAX_SHORTHANDS)
        return usage_error(cli, "too many shorthand options (a programming error)", NULL);
    struct option opts[4 + VD_ARGS_MAX_SHORTHANDS + 1];
    options_fill(cli, opts);
    int c, rc = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1)
        rc = option(cli, a, c);
    if (rc == 0 && optind != argc)
        rc = usage_error(cli, "unexpected argument", argv[optind]);
    return rc;
}

VEIL_RESULT vd_args_apply(const struct vd_cli *cli, const struct vd_args *a, void *cfg)
{
    VEIL_GUARD(vd_config_defaults(cli->table, cfg, 0));
    if (a->config != NULL)
        VEIL_GUARD(vd_config_load_file(cli->table, cfg, a->config));
    for (size_t i = 0; i < a->set_count; i++)
        VEIL_GUARD(vd_config_set(cli->table, cfg, a->sets[i]));
    return VEIL_RESULT_OK;
}
