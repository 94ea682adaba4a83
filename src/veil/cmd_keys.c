/* SPDX-License-Identifier: Apache-2.0 */
/* veil keygen */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/file.h"

static const char keygen_help[] =
    "usage: veil keygen -o KEY [--force]\n\n"
    "Writes 32 random bytes from the OpenSSL CSPRNG to KEY with mode 0600. Refuses to replace an existing\n"
    "file (a lost key loses every model sealed under it) unless --force is given.\n\n"
    "  -o, --output KEY   the key file to create (required)\n"
    "      --force        replace KEY if it exists\n"
    "  -h, --help         show this help\n";

/* The way out of a key file that cannot be written. */
static int write_failed(const char *path, int force, veil_status st)
{
    struct stat sb;
    if (!force && lstat(path, &sb) == 0)
        return cli_fail("%s already exists: veil keygen never replaces a key (the models sealed under it could no "
                        "longer be opened); choose another path, or add --force to replace it", path);
    const char *slash = strrchr(path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash == NULL ? 1 : (int)(slash == path ? 1 : slash - path),
             slash == NULL ? "." : path);
    if (stat(dir, &sb) != 0 && errno == ENOENT)
        return cli_fail("cannot create %s: the directory %s does not exist (create it first: mkdir -p %s)", path, dir,
                        dir);
    return cli_fail_status(st);
}

static int write_key(const char *path, int force)
{
    struct veil_secure_mem key = {0};
    if (!veil_ok(veil_secure_alloc(&key, VEIL_KEY_SIZE, 0)))
        return cli_fail_status(VEIL_ERR_NOMEM);
    veil_status st = veil_keygen(key.data, key.size);
    struct veil_outfile out = {.fd = -1};
    struct veil_result r = {st};
    if (veil_ok(r))
        r = veil_outfile_open(&out, path, 0600);
    if (veil_ok(r))
        r = veil_file_write_all(out.fd, key.data, key.size);
    if (veil_ok(r))
        r = force ? veil_outfile_commit(&out) : veil_outfile_commit_new(&out);
    veil_outfile_cleanup(&out);
    veil_secure_free(&key);
    return veil_ok(r) ? CLI_OK : write_failed(path, force, r.status);
}

int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *out = NULL;
    int force = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'h': fputs(keygen_help, stdout); return CLI_OK;
        case ':': return cli_usage_error("keygen", "option %s needs a value", argv[optind - 1]);
        default: return cli_usage_error("keygen", "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error("keygen", "unexpected argument '%s'", argv[optind]);
    if (out == NULL)
        return cli_usage_error("keygen", "-o KEY is required");
    return write_key(out, force);
}
