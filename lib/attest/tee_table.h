/* SPDX-License-Identifier: Apache-2.0 */
/* The TEE table: one row per TEE type, in veil_tee order. A row is the TEE's descriptor (struct veil_tee_desc,
 * attest/tee.h), which the TEE's own file in lib/attest/tees/ defines: its name, provider, verifier, claims and
 * policy section. lib/attest/tee.c builds the table from these rows, and veil-kbs its metric labels
 * (src/kbs/metrics.c); a macro rather than an array so that constant initializers can be built from it too.
 *
 * A new TEE is its value in veil_tee (include/veil/attest.h), its file in tees/, and one row here. */
#ifndef VEIL_ATTEST_TEE_TABLE_H
#define VEIL_ATTEST_TEE_TABLE_H

#include "attest/tee.h"

#define VEIL_TEE_TABLE(ROW) \
    ROW(veil_tee_sim)       \
    ROW(veil_tee_sample)    \
    ROW(veil_tee_sgx)       \
    ROW(veil_tee_tdx)       \
    ROW(veil_tee_snp)

/* The number of rows: a constant expression. */
#define VEIL_TEE_ROW_ONE(desc) +1u
#define VEIL_TEE_ROWS (0u VEIL_TEE_TABLE(VEIL_TEE_ROW_ONE))

#define VEIL_TEE_DECLARE(desc) extern const struct veil_tee_desc desc;
VEIL_TEE_TABLE(VEIL_TEE_DECLARE)
#undef VEIL_TEE_DECLARE

#endif
