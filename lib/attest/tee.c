/* SPDX-License-Identifier: Apache-2.0 */
/* TEE names and detection of the TEE this process runs in. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "attest/attest_internal.h"

static const char *const tee_names[] = {"auto", "sim", "sample", "sgx", "tdx", "snp"};

const char *veil_tee_name(veil_tee tee)
{
    if ((unsigned)tee < sizeof tee_names / sizeof tee_names[0])
        return tee_names[tee];
    return "unknown";
}

veil_status veil_tee_from_name(const char *name, veil_tee *out)
{
    veil_error_clear();
    if (name == NULL || out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no TEE name given").status;
    for (size_t i = 0; i < sizeof tee_names / sizeof tee_names[0]; i++) {
        if (strcmp(name, tee_names[i]) == 0) {
            *out = (veil_tee)i;
            return VEIL_OK;
        }
    }
    return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__,
                            "unknown TEE \"%.32s\" (expected auto, sim, sample, sgx, tdx or snp)", name)
        .status;
}

VEIL_RESULT veil_tee_detect_hooked(const struct veil_provider_config *config, const struct veil_tsm_hook *hook,
                                   veil_tee *out)
{
    const char *gramine = config != NULL && config->gramine_root != NULL ? config->gramine_root
                                                                          : VEIL_GRAMINE_DEFAULT_ROOT;
    const char *tsm = config != NULL && config->tsm_root != NULL ? config->tsm_root : VEIL_TSM_DEFAULT_ROOT;
    char quote[4096];
    VEIL_GUARD(veil_path_join(quote, sizeof quote, gramine, "quote"));
    if (access(quote, F_OK) == 0) {
        *out = VEIL_TEE_SGX;
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
