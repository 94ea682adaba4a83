/* SPDX-License-Identifier: Apache-2.0 */
/* TDX and SEV-SNP evidence through Linux configfs-tsm (shared/reference/attestation.md section 3):
 *   1. mkdir a unique entry   2. read provider   3. read generation   4. write exactly 64 bytes to inblob, close
 *   5. read outblob           6. read generation: it may have moved by our one write, no more
 *   7. (SNP) read auxblob     8. rmdir the entry, on every path.
 * What differs between the TEEs served (provider name, report size, auxblob) is their descriptors' (tee->tsm). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attest/attest_internal.h"
#include "attest/tee.h"
#include "core/limits.h"
#include "crypto/crypto.h"

const char *veil_tsm_root(const struct veil_provider_config *config)
{
    return config != NULL && config->tsm_root != NULL ? config->tsm_root : VEIL_TSM_DEFAULT_ROOT;
}

struct tsm_entry {
    char dir[4096];
    int made;
    const struct veil_tsm_hook *hook;
};

static void run_hook(const struct tsm_entry *e, enum veil_tsm_stage stage)
{
    if (e->hook != NULL && e->hook->fn != NULL)
        e->hook->fn(stage, e->dir, e->hook->ctx);
}

static void entry_remove(struct tsm_entry *e)
{
    if (!e->made)
        return;
    run_hook(e, VEIL_TSM_BEFORE_RMDIR);
    (void)rmdir(e->dir); /* configfs removes the attributes with the entry; nothing more can be done on error */
    e->made = 0;
}

static VEIL_RESULT entry_make(const char *root, const struct veil_tsm_hook *hook, struct tsm_entry *e)
{
    uint8_t rnd[8];
    char name[40], hex[17];
    VEIL_GUARD(veil_random(rnd, sizeof rnd));
    veil_hex_encode(rnd, sizeof rnd, hex);
    snprintf(name, sizeof name, "veil-%ld-%s", (long)getpid(), hex);
    e->hook = hook;
    VEIL_GUARD(veil_path_join(e->dir, sizeof e->dir, root, name));
    VEIL_ENSURE(mkdir(e->dir, 0700) == 0, VEIL_ERR_IO, "cannot create configfs-tsm entry %s: %s", e->dir,
                strerror(errno));
    e->made = 1;
    run_hook(e, VEIL_TSM_AFTER_MKDIR);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT entry_attr(const struct tsm_entry *e, const char *name, char *out, size_t out_size)
{
    char path[4200];
    VEIL_GUARD(veil_path_join(path, sizeof path, e->dir, name));
    return veil_read_attr(path, out, out_size);
}

static const char *tsm_provider(const struct veil_tee_desc *tee)
{
    return tee->tsm != NULL ? tee->tsm->provider : NULL;
}

/* The TEE whose descriptor names the entry's provider attribute ("tdx_guest" -> tdx, "sev_guest" -> snp). */
static VEIL_RESULT read_provider(const struct tsm_entry *e, const struct veil_tee_desc **out)
{
    char provider[64], known[128];
    VEIL_GUARD(entry_attr(e, "provider", provider, sizeof provider));
    for (size_t i = 0; i < veil_tee_count(); i++) {
        const char *name = tsm_provider(veil_tee_at(i));
        if (name != NULL && strcmp(provider, name) == 0) {
            *out = veil_tee_at(i);
            return VEIL_RESULT_OK;
        }
    }
    veil_tee_join(known, sizeof known, tsm_provider, ", ");
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "configfs-tsm provider \"%.32s\" is not supported (%s)", provider, known);
}

static VEIL_RESULT read_generation(const struct tsm_entry *e, uint64_t *out)
{
    char text[32];
    VEIL_GUARD(entry_attr(e, "generation", text, sizeof text));
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    VEIL_ENSURE(text[0] >= '0' && text[0] <= '9' && *end == '\0' && errno == 0, VEIL_ERR_EVIDENCE,
                "configfs-tsm generation \"%.20s\" is not a number", text);
    *out = v;
    return VEIL_RESULT_OK;
}

/* The kernel commits inblob on close(): a failed close is a failed write. */
static VEIL_RESULT write_inblob(const struct tsm_entry *e, const uint8_t *rd)
{
    char path[4200];
    VEIL_GUARD(veil_path_join(path, sizeof path, e->dir, "inblob"));
    return veil_write_report_data(path, rd);
}

static VEIL_RESULT read_outputs(const struct tsm_entry *e, const struct veil_tsm_spec *spec,
                                struct veil_buf *outblob, struct veil_buf *auxblob)
{
    char path[4200];
    VEIL_GUARD(veil_path_join(path, sizeof path, e->dir, "outblob"));
    VEIL_GUARD(veil_read_stream(path, VEIL_TSM_OUTBLOB_MAX_SIZE, outblob));
    VEIL_ENSURE(outblob->size > 0, VEIL_ERR_EVIDENCE, "configfs-tsm returned an empty report (%s)", path);
    VEIL_ENSURE(spec->outblob_size == 0 || outblob->size == spec->outblob_size, VEIL_ERR_EVIDENCE,
                "configfs-tsm returned a %zu-byte %s; one is %zu bytes", outblob->size, spec->outblob_name,
                spec->outblob_size);
    if (!spec->auxblob)
        return VEIL_RESULT_OK;
    VEIL_GUARD(veil_path_join(path, sizeof path, e->dir, "auxblob"));
    if (access(path, F_OK) != 0)
        return VEIL_RESULT_OK; /* optional: no certificates from the host */
    return veil_read_stream(path, VEIL_TSM_AUXBLOB_MAX_SIZE, auxblob);
}

static VEIL_RESULT request(const struct tsm_entry *e, const struct veil_tee_desc *tee, const uint8_t *rd,
                           struct veil_buf *outblob, struct veil_buf *auxblob)
{
    const struct veil_tee_desc *provider = NULL;
    VEIL_GUARD(read_provider(e, &provider));
    VEIL_ENSURE(provider == tee, VEIL_ERR_UNSUPPORTED, "configfs-tsm provides %s evidence, not %s", provider->name,
                tee->name);
    uint64_t before = 0, after = 0;
    VEIL_GUARD(read_generation(e, &before));
    VEIL_GUARD(write_inblob(e, rd));
    run_hook(e, VEIL_TSM_AFTER_INBLOB);
    VEIL_GUARD(read_outputs(e, tee->tsm, outblob, auxblob));
    VEIL_GUARD(read_generation(e, &after));
    /* Our one write moves the generation by one; any more means someone else wrote the entry meanwhile. */
    VEIL_ENSURE(after >= before && after - before <= 1, VEIL_ERR_EVIDENCE,
                "configfs-tsm entry %s was used by another writer (generation %llu -> %llu)", e->dir,
                (unsigned long long)before, (unsigned long long)after);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_tsm_collect(const char *root, const struct veil_tee_desc *tee,
                             const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                             struct veil_buf *outblob, struct veil_buf *auxblob)
{
    VEIL_ENSURE(tee->tsm != NULL, VEIL_ERR_ARG, "configfs-tsm does not serve %s", tee->name);
    VEIL_DEFER(entry_remove) struct tsm_entry e = {0};
    VEIL_GUARD(entry_make(root, hook, &e));
    struct veil_result r = request(&e, tee, report_data, outblob, auxblob);
    if (!veil_ok(r)) {
        veil_buf_cleanup(outblob);
        veil_buf_cleanup(auxblob);
    }
    return r;
}

VEIL_RESULT veil_tsm_probe(const char *root, const struct veil_tsm_hook *hook, veil_tee *out)
{
    VEIL_DEFER(entry_remove) struct tsm_entry e = {0};
    VEIL_GUARD(entry_make(root, hook, &e));
    const struct veil_tee_desc *tee = NULL;
    VEIL_GUARD(read_provider(&e, &tee));
    *out = tee->type;
    return VEIL_RESULT_OK;
}
