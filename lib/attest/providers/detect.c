/* SPDX-License-Identifier: Apache-2.0 */
/* Which TEE this process runs in: Gramine's /dev/attestation (SGX), else the configfs-tsm provider attribute
 * (whichever TEE of the table names that provider, providers/tsm.c). sim and sample are never detected. */
#include <unistd.h>

#include "attest/attest_internal.h"

VEIL_RESULT veil_tee_detect_hooked(const struct veil_provider_config *config, const struct veil_tsm_hook *hook,
                                   veil_tee *out)
{
    const char *gramine = veil_gramine_root(config), *tsm = veil_tsm_root(config);
    char quote[4096];
    VEIL_GUARD(veil_path_join(quote, sizeof quote, gramine, "quote"));
    if (access(quote, F_OK) == 0) {
        *out = VEIL_TEE_SGX; /* Gramine runs in SGX enclaves */
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(access(tsm, F_OK) == 0, VEIL_ERR_UNSUPPORTED,
                "no TEE found: neither %s nor %s exists (use --provider sim outside a TEE)", quote, tsm);
    return veil_tsm_probe(tsm, hook, out);
}

veil_status veil_tee_detect(const struct veil_provider_config *config, veil_tee *out)
{
    veil_error_clear();
    if (out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    return veil_tee_detect_hooked(config, NULL, out).status;
}
