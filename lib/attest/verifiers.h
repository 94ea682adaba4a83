/* SPDX-License-Identifier: Apache-2.0 */
/* The vendor verifiers behind veil_evidence_verify (lib/attest/verifiers/; the TEE descriptors in tees/ call
 * them). Each is a coordinator that numbers its steps in the spec's order; each fills a zeroed *claims only on
 * success. */
#ifndef VEIL_ATTEST_VERIFIERS_H
#define VEIL_ATTEST_VERIFIERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"
#include "veil/attest.h"

/* DCAP: SGX quote v3, TDX quote v4 / v5 (lib/attest/verifiers/dcap_*.c). The TEE type is read from the quote. */
VEIL_RESULT veil_dcap_verify(const uint8_t *quote, size_t size, const struct veil_verify_options *options,
                             struct veil_claims *claims);
/* veil_dcap_verify, then: a DCAP quote says which TEE it is from; it must be tee, the one the caller or the
 * evidence envelope named (VEIL_ERR_EVIDENCE). */
VEIL_RESULT veil_dcap_verify_as(veil_tee tee, const uint8_t *quote, size_t size,
                                const struct veil_verify_options *options, struct veil_claims *claims);

/* SEV-SNP attestation report with its VCEK or VLEK (DER), checked up to the embedded AMD roots
 * (lib/attest/verifiers/snp_*.c). cert may be NULL when options->snp_cert_path names it. */
VEIL_RESULT veil_snp_verify(const uint8_t *report, size_t size, const uint8_t *cert_der, size_t cert_size,
                            const struct veil_verify_options *options, struct veil_claims *claims);

#endif
