/* SPDX-License-Identifier: Apache-2.0 */
/* Intel SGX: evidence from Gramine's /dev/attestation (providers/gramine.c), a DCAP quote v3 verified by
 * verifiers/dcap_*.c. Envelope {"tee": "sgx", "quote": base64} (docs/spec/evidence.md); claims MRENCLAVE (32),
 * MRSIGNER (32), ISVPRODID, ISVSVN, DEBUG, Intel's TCB status and advisories. */
#include "attest/attest_internal.h"
#include "attest/tee_table.h"
#include "attest/verifiers.h"
#include "core/limits.h"

static VEIL_RESULT sgx_collect(const struct veil_provider_config *config,
                               const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                               json_t **out)
{
    (void)hook;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf quote = {0};
    VEIL_GUARD(veil_gramine_collect(veil_gramine_root(config), report_data, &quote));
    VEIL_GUARD(veil_evidence_envelope(&veil_tee_sgx, out));
    return veil_evidence_set_b64(*out, "quote", quote.data, quote.size);
}

static VEIL_RESULT sgx_verify_raw(const uint8_t *quote, size_t size, const struct veil_verify_options *options,
                                  struct veil_claims *claims)
{
    return veil_dcap_verify_as(VEIL_TEE_SGX, quote, size, options, claims);
}

static VEIL_RESULT sgx_verify(const json_t *j, const struct veil_verify_options *options,
                              struct veil_claims *claims)
{
    static const char *const keys[] = {"tee", "quote", NULL};
    const char *what = "sgx evidence";
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_EVIDENCE, what));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf quote = {0};
    VEIL_GUARD(veil_json_b64(j, "quote", VEIL_B64_STD, 1, 0, VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_EVIDENCE, what, &quote,
                             NULL));
    return sgx_verify_raw(quote.data, quote.size, options, claims);
}

/* 1 debug, 2 TCB status, 3 MRENCLAVE, 4 MRSIGNER, 5 ISVPRODID, 6 ISVSVN, 7 denied advisories. */
static VEIL_RESULT sgx_policy_check(const struct veil_policy_section *s, const struct veil_claims *c)
{
    VEIL_GUARD(veil_policy_check_debug(s, c));
    VEIL_GUARD(veil_policy_check_tcb_status(s, c));
    VEIL_GUARD(veil_policy_check_measurement(s, c));
    VEIL_GUARD(veil_policy_check_signer(s, c));
    VEIL_GUARD(veil_policy_check_product_id(s, c));
    VEIL_GUARD(veil_policy_check_svn(s, c));
    return veil_policy_check_advisories(s, c);
}

static const char *const sgx_policy_keys[] = {"measurements", "signers", "product_id", "min_svn", "tcb_statuses",
                                              "allow_debug", "deny_advisories", NULL};

const struct veil_tee_desc veil_tee_sgx = {
    .type = VEIL_TEE_SGX,
    .name = "sgx",
    .collect = sgx_collect,
    .verify = sgx_verify,
    .verify_raw = sgx_verify_raw,
    .measurement_size = 32,
    .signer_size = 32,
    .policy = {.keys = sgx_policy_keys, .in_default = 1, .check = sgx_policy_check},
};
