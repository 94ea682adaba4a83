/* SPDX-License-Identifier: Apache-2.0 */
/* SGX evidence through Gramine's /dev/attestation (shared/reference/attestation.md section 2): check that remote
 * attestation is DCAP, write all 64 bytes of user_report_data in one write(2), read the quote. */
#include <string.h>

#include "attest/attest_internal.h"
#include "core/limits.h"

const char *veil_gramine_root(const struct veil_provider_config *config)
{
    return config != NULL && config->gramine_root != NULL ? config->gramine_root : VEIL_GRAMINE_DEFAULT_ROOT;
}

static VEIL_RESULT check_type(const char *root)
{
    char path[4096], type[32];
    VEIL_GUARD(veil_path_join(path, sizeof path, root, "attestation_type"));
    VEIL_GUARD(veil_read_attr(path, type, sizeof type));
    VEIL_ENSURE(strcmp(type, "dcap") == 0, VEIL_ERR_UNSUPPORTED,
                "Gramine attestation type is \"%s\", not \"dcap\" (set sgx.remote_attestation = \"dcap\")", type);
    return VEIL_RESULT_OK;
}

/* Gramine saves user_report_data on every write(2): one write of exactly 64 bytes. */
static VEIL_RESULT write_report_data(const char *root, const uint8_t *rd)
{
    char path[4096];
    VEIL_GUARD(veil_path_join(path, sizeof path, root, "user_report_data"));
    return veil_write_report_data(path, rd);
}

VEIL_RESULT veil_gramine_collect(const char *root, const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                 struct veil_buf *quote)
{
    char path[4096];
    VEIL_GUARD(check_type(root));
    VEIL_GUARD(write_report_data(root, report_data));
    VEIL_GUARD(veil_path_join(path, sizeof path, root, "quote"));
    VEIL_GUARD(veil_read_stream(path, VEIL_GRAMINE_QUOTE_MAX_SIZE, quote));
    VEIL_ENSURE(quote->size > 0, VEIL_ERR_EVIDENCE, "Gramine returned an empty quote (%s)", path);
    return VEIL_RESULT_OK;
}
