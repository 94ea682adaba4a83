/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the snp verifier lands: refuses everything. (Being replaced in this change.) */
#include "attest/verifiers.h"

VEIL_RESULT veil_snp_verify(const uint8_t *report, size_t size, const uint8_t *cert_der, size_t cert_size,
                            const struct veil_verify_options *options, struct veil_claims *claims)
{
    (void)report, (void)size, (void)cert_der, (void)cert_size, (void)options, (void)claims;
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "SEV-SNP report verification is not available in this build");
}
