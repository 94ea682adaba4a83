/* SPDX-License-Identifier: Apache-2.0 */
/* veil: the owner's command-line tool. Parses arguments, calls libveil, maps errors to exit codes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/file.h"
#include "core/limits.h"

static const struct cli_command commands[] = {
    {"keygen", cmd_keygen, "create a new random 32-byte model key file (mode 0600)"},
    {"seal", cmd_seal, "encrypt an ONNX model into a sealed .veil file"},
    {"inspect", cmd_inspect, "print the public header of a sealed file (no key needed)"},
    {"unseal", cmd_unseal, "owner-side recovery: decrypt a sealed file back to ONNX"},
    {"rewrap", cmd_rewrap, "rotate the model key of a sealed file without re-encrypting weights"},
    {"reseal", cmd_reseal, "after a key leak: re-encrypt a sealed file under a fresh data key and file id"},
    {"run", cmd_run, "run a plain or sealed ONNX model on a .npy input with Veil's engine"},
    {"attest", cmd_attest, "collect, verify and judge TEE attestation evidence"},
    {"kbs", cmd_kbs, "manage model keys, release and usage policies and the audit log of a veil-kbs broker"},
    {"client", cmd_client, "verify that a URL serves an attested veil-runtime and pin its TLS key"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: veil <command> [options]\n\n"
                 "Veil seals ONNX models so that they can be used, but not seen, on machines their owner does\n"
                 "not control.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'veil <command> --help' for a command's options.\n"
                 "Exit status: 0 success, 1 the operation failed (one 'veil: error:' line), 2 usage error.\n");
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("veil: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_fail_status(veil_status status)
{
    const char *detail = veil_last_error();
    return cli_fail("%s", detail[0] != '\0' ? detail : veil_status_str(status));
}

int cli_fail_open(veil_status status, const char *path, const char *key_name)
{
    struct veil_sealed_info info;
    char detail[512];
    snprintf(detail, sizeof detail, "%s", veil_last_error()[0] != '\0' ? veil_last_error() : veil_status_str(status));
    if (status != VEIL_ERR_KEY || veil_inspect_file(path, &info) != VEIL_OK)
        return cli_fail("%s", detail);
    return cli_fail("%s; %s's header names model '%s' key version %u: is %s that version's key?", detail, path,
                    info.model_id, info.key_version, key_name);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "veil %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'veil %s --help'.\n", cmd);
    va_end(ap);
    return CLI_USAGE;
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("veil: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_getopt(int argc, char **argv, const struct cli_getopt_spec *spec, void *ctx)
{
    int c, li = -1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, spec->shortopts, spec->longopts, &li)) != -1) {
        int ok = c == 'h';
        for (const int *p = spec->allowed; *p != 0 && !ok; p++)
            ok = *p == c;
        if (c == ':')
            return cli_usage_error(spec->cmd, "option %s needs a value", argv[optind - 1]);
        if (c == '?')
            return cli_usage_error(spec->cmd, "unknown option %s", argv[optind - 1]);
        if (!ok && li >= 0) /* an option of another command: name it, not the value it consumed */
            return cli_usage_error(spec->cmd, "option --%s does not apply here", spec->longopts[li].name);
        if (!ok)
            return cli_usage_error(spec->cmd, "option -%c does not apply here", c);
        int rc = spec->apply(ctx, c);
        if (rc != CLI_OK)
            return rc;
        li = -1;
    }
    return CLI_OK;
}

/* What a key file of the wrong size most likely holds, for the error message. */
static const char *key_file_hint(const uint8_t *head, size_t n, uint64_t size)
{
    static const char pem[] = "-----BEGIN";
    if (n >= sizeof pem - 1 && memcmp(head, pem, sizeof pem - 1) == 0)
        return ", and this is a PEM file (a TLS or platform key?)";
    size_t hex = 0;
    while (hex < n && head[hex] != '\0' && strchr("0123456789abcdefABCDEF", head[hex]) != NULL)
        hex++;
    if (hex == 2u * VEIL_KEY_SIZE && (size == hex || (size == hex + 1 && head[hex] == '\n')))
        return "; this one is hex: convert it with 'xxd -r -p HEX.txt > KEY'";
    return " ('veil keygen -o KEY' makes one; 'veil kbs create MODEL -o KEY' gets one from the broker)";
}

static int read_key_fd(int fd, const char *path, struct veil_secure_mem *key)
{
    uint8_t buf[VEIL_KEY_FILE_MAX_SIZE + 1];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    struct stat st;
    int regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    uint64_t size = regular ? (uint64_t)st.st_size : got; /* the whole file, not what was read of it */
    int rc = CLI_OK;
    if (got != VEIL_KEY_SIZE && got != 16)
        rc = cli_fail("key file %s holds %llu bytes%s; a model key is exactly %u raw bytes%s", path,
                      (unsigned long long)size, !regular && got == sizeof buf ? " or more" : "", VEIL_KEY_SIZE,
                      key_file_hint(buf, got, size));
    else if (!veil_ok(veil_secure_alloc(key, got, 0)))
        rc = cli_fail("cannot allocate memory for the key");
    else
        memcpy(key->data, buf, got);
    veil_wipe(buf, sizeof buf);
    return rc;
}

int cli_read_key(const char *path, struct veil_secure_mem *key)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail("cannot open key file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
        cli_warn("key file %s is accessible by group or others (mode %03o); use chmod 600", path,
                 (unsigned)(st.st_mode & 0777));
    int rc = read_key_fd(fd, path, key);
    close(fd);
    return rc;
}

int cli_read_text(const char *path, uint64_t max, struct veil_buf *b)
{
    struct veil_result r = veil_file_read_all(path, max, b);
    if (veil_ok(r))
        r = veil_buf_append_u8(b, 0);
    if (!veil_ok(r))
        return cli_fail_status(r.status);
    b->size--;
    return CLI_OK;
}

int main(int argc, char **argv)
{
    veil_disable_core_dumps();
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("veil %s\n", veil_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "veil: unknown command '%s'\n\n", name);
    usage(stderr);
    return CLI_USAGE;
}
