/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the dcap verifier lands: refuses everything. (Being replaced in this change.) */
#include "attest/verifiers.h"

VEIL_RESULT veil_dcap_verify(const uint8_t *quote, size_t size, const struct veil_verify_options *options,
                             struct veil_claims *claims)
{
    (void)quote, (void)size, (void)options, (void)claims;
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "DCAP quote verification is not available in this build");
}
