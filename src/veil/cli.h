/* SPDX-License-Identifier: Apache-2.0 */
/* Shared pieces of the veil CLI. Exit codes: 0 success, 1 the operation failed, 2 usage. */
#ifndef VEIL_CLI_H
#define VEIL_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/secret.h"
#include "veil/sealed.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

/* Prints "veil: error: <message>" on stderr and returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "veil: error: <library's last error>" for a failed libveil call and returns CLI_FAIL. */
int cli_fail_status(veil_status status);
/* cli_fail_status for a failed use of the key file key_name on the sealed file path: a key that does not unwrap
 * (VEIL_ERR_KEY) is reported with the key version the file's public header names, so the owner can pick the
 * matching key (after a rewrap the old key no longer opens the file). */
int cli_fail_open(veil_status status, const char *path, const char *key_name);
/* Prints "veil <cmd>: <message>" and a hint to --help on stderr and returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict decimal parsing: the whole string, no sign, within [min, max]. 0 on success. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* One getopt_long pass (opterr off) that accepts only the options in allowed (a list ending in 0; 'h' is always
 * accepted) and calls apply(ctx, c) for each. An unknown option or a missing value is a usage error. Returns
 * CLI_OK or the exit code to use; optind then points at the first positional argument. */
struct option;
struct cli_getopt_spec {
    const char *cmd;
    const char *shortopts; /* must start with ':' */
    const struct option *longopts;
    const int *allowed;
    int (*apply)(void *ctx, int c);
};
int cli_getopt(int argc, char **argv, const struct cli_getopt_spec *spec, void *ctx);

/* Reads a key file (exactly 32 bytes, or 16 where allowed) into locked memory; warns when the file is readable
 * by group or others. Returns CLI_OK or the exit code to use. */
int cli_read_key(const char *path, struct veil_secure_mem *key);

/* Reads a whole file of at most max bytes into b as a NUL-terminated string (the NUL not counted in b->size).
 * Returns CLI_OK or the exit code to use, with the error reported. */
int cli_read_text(const char *path, uint64_t max, struct veil_buf *b);

/* A progress bar on stderr when it is a terminal; otherwise nothing. */
struct cli_progress {
    const char *label;
    int enabled;
    int last_permille;
};
void cli_progress_init(struct cli_progress *p, const char *label);
void cli_progress_cb(void *ctx, uint64_t done, uint64_t total);
void cli_progress_finish(struct cli_progress *p);

int cmd_keygen(int argc, char **argv);
int cmd_seal(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_unseal(int argc, char **argv);
int cmd_rewrap(int argc, char **argv);
int cmd_reseal(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_attest(int argc, char **argv);
int cmd_kbs(int argc, char **argv);
int cmd_client(int argc, char **argv);

#endif
