/* SPDX-License-Identifier: Apache-2.0 */
/* veil_evidence_collect: dispatch to the providers and wrap their output in the evidence envelope
 * (docs/spec/evidence.md). Also the small file helpers the providers share. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attest/attest_internal.h"
#include "core/file.h"
#include "core/limits.h"

VEIL_RESULT veil_path_join(char *out, size_t out_size, const char *dir, const char *name)
{
    int n = snprintf(out, out_size, "%s/%s", dir, name);
    VEIL_ENSURE(n > 0 && (size_t)n < out_size, VEIL_ERR_ARG, "path %s/%s is too long", dir, name);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_read_stream(const char *path, size_t max_size, struct veil_buf *out)
{
    VEIL_DEFER(veil_fd_close) int fd = open(path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t start = out->size;
    for (;;) {
        VEIL_GUARD(veil_buf_reserve(out, 4096));
        size_t room = out->cap - out->size;
        ssize_t n = read(fd, out->data + out->size, room);
        if (n < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(n >= 0, VEIL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (n == 0)
            return VEIL_RESULT_OK;
        out->size += (size_t)n;
        VEIL_ENSURE(out->size - start <= max_size, VEIL_ERR_LIMIT, "%s is larger than %zu bytes", path, max_size);
    }
}

VEIL_RESULT veil_write_report_data(const char *path, const uint8_t report_data[VEIL_REPORT_DATA_SIZE])
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    ssize_t n;
    do
        n = write(fd, report_data, VEIL_REPORT_DATA_SIZE);
    while (n < 0 && errno == EINTR);
    int werr = errno;
    int closed = close(fd);
    VEIL_ENSURE(n == (ssize_t)VEIL_REPORT_DATA_SIZE, VEIL_ERR_IO, "cannot write 64 bytes to %s: %s", path,
                n < 0 ? strerror(werr) : "short write");
    VEIL_ENSURE(closed == 0, VEIL_ERR_IO, "cannot commit %s: %s", path, strerror(errno));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_read_attr(const char *path, char *out, size_t out_size)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_read_stream(path, out_size - 1, &b));
    size_t n = b.size;
    if (n > 0 && b.data[n - 1] == '\n')
        n--;
    VEIL_ENSURE(n == 0 || memchr(b.data, '\0', n) == NULL, VEIL_ERR_EVIDENCE, "%s holds a NUL byte", path);
    if (n > 0)
        memcpy(out, b.data, n);
    out[n] = '\0';
    return VEIL_RESULT_OK;
}

/* {"tee": NAME, member: base64(bytes)} */
static VEIL_RESULT envelope(veil_tee tee, json_t **out)
{
    json_t *j = json_object();
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = j;
    return veil_json_set(j, "tee", json_string(veil_tee_name(tee)));
}

static VEIL_RESULT set_base64(json_t *j, const char *key, const struct veil_buf *b)
{
    char *s = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, b->data, b->size, &s));
    struct veil_result r = veil_json_set(j, key, json_string(s));
    free(s);
    return r;
}

static VEIL_RESULT collect_sgx(const struct veil_provider_config *config, const uint8_t *rd, json_t **out)
{
    const char *root = config->gramine_root != NULL ? config->gramine_root : VEIL_GRAMINE_DEFAULT_ROOT;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf quote = {0};
    VEIL_GUARD(veil_gramine_collect(root, rd, &quote));
    VEIL_GUARD(envelope(VEIL_TEE_SGX, out));
    return set_base64(*out, "quote", &quote);
}

static VEIL_RESULT collect_tsm(veil_tee tee, const struct veil_provider_config *config, const uint8_t *rd,
                               const struct veil_tsm_hook *hook, json_t **out)
{
    const char *root = config->tsm_root != NULL ? config->tsm_root : VEIL_TSM_DEFAULT_ROOT;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf blob = {0};
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf aux = {0};
    VEIL_GUARD(veil_tsm_collect(root, tee, rd, hook, &blob, &aux));
    VEIL_GUARD(envelope(tee, out));
    if (tee == VEIL_TEE_TDX)
        return set_base64(*out, "quote", &blob);
    VEIL_GUARD(set_base64(*out, "report", &blob));
    if (aux.size > 0)
        VEIL_GUARD(set_base64(*out, "cert_chain", &aux));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT collect_json(veil_tee tee, const struct veil_provider_config *config, const uint8_t *rd,
                                const struct veil_tsm_hook *hook, json_t **out)
{
    switch (tee) {
    case VEIL_TEE_SIM: return veil_sim_collect(config, rd, out);
    case VEIL_TEE_SAMPLE: return veil_sample_collect(rd, out);
    case VEIL_TEE_SGX: return collect_sgx(config, rd, out);
    case VEIL_TEE_TDX:
    case VEIL_TEE_SNP: return collect_tsm(tee, config, rd, hook, out);
    case VEIL_TEE_AUTO: break;
    }
    VEIL_BAIL(VEIL_ERR_ARG, "unknown TEE type %d", (int)tee);
}

VEIL_RESULT veil_evidence_collect_hooked(veil_tee tee, const struct veil_provider_config *config,
                                         const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                         const struct veil_tsm_hook *hook, char **evidence_out)
{
    VEIL_ENSURE(report_data != NULL && evidence_out != NULL, VEIL_ERR_ARG, "no report data or output given");
    static const struct veil_provider_config defaults = {0};
    if (config == NULL)
        config = &defaults;
    if (tee == VEIL_TEE_AUTO)
        VEIL_GUARD(veil_tee_detect_hooked(config, hook, &tee));
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(collect_json(tee, config, report_data, hook, &j));
    char *s = json_dumps(j, JSON_COMPACT);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    *evidence_out = s;
    return VEIL_RESULT_OK;
}

veil_status veil_evidence_collect(veil_tee tee, const struct veil_provider_config *config,
                                  const uint8_t report_data[VEIL_REPORT_DATA_SIZE], char **evidence_out)
{
    veil_error_clear();
    if (evidence_out != NULL)
        *evidence_out = NULL;
    return veil_evidence_collect_hooked(tee, config, report_data, NULL, evidence_out).status;
}
