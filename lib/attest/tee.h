/* SPDX-License-Identifier: Apache-2.0 */
/* One descriptor per TEE type: everything that differs from one TEE to another, so that the coordinators
 * (evidence.c: collect and verify, claims.c, policy.c, providers/tsm.c, tee.c: names) hold no per-TEE code.
 * Each TEE's file in lib/attest/tees/ defines its descriptor; attest/tee_table.h lists them. */
#ifndef VEIL_ATTEST_TEE_H
#define VEIL_ATTEST_TEE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "attest/policy.h"
#include "core/result.h"
#include "veil/attest.h"

#define VEIL_TEE_NAME_MAX 16u

struct veil_tsm_hook;

/* A TEE reached through Linux configfs-tsm (providers/tsm.c): the provider attribute that names it and the
 * report it returns. */
struct veil_tsm_spec {
    const char *provider;     /* e.g. "tdx_guest" */
    size_t outblob_size;      /* the report's exact size; 0: any size up to VEIL_TSM_OUTBLOB_MAX_SIZE */
    const char *outblob_name; /* what errors call a report of the wrong size, e.g. "SEV-SNP report" */
    int auxblob;              /* read the auxblob (the host's certificates) too, when there is one */
};

struct veil_tee_desc {
    veil_tee type;
    char name[VEIL_TEE_NAME_MAX]; /* in evidence ("tee"), policies, claims, metrics and on the command line; an
                                   * array, not a pointer, so that constant initializers can point to it */

    /* ---- provider: inside the TEE ------------------------------------------------------------------------ */
    /* Collects evidence binding report_data as the envelope {"tee": name, ...} (docs/spec/evidence.md). config is
     * never NULL; hook is the configfs-tsm test hook (NULL in production). NULL: no provider. */
    VEIL_RESULT (*collect)(const struct veil_provider_config *config,
                           const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                           json_t **out);
    const struct veil_tsm_spec *tsm; /* NULL: not served by configfs-tsm */

    /* ---- verifier: on the broker ------------------------------------------------------------------------- */
    /* Verifies an envelope naming this TEE (its "tee" member already checked) into a zeroed *claims. */
    VEIL_RESULT (*verify)(const json_t *evidence, const struct veil_verify_options *options,
                          struct veil_claims *claims);
    /* Verifies a raw quote or report (evidence that is not JSON). NULL: this TEE's evidence is JSON only. */
    VEIL_RESULT (*verify_raw)(const uint8_t *data, size_t size, const struct veil_verify_options *options,
                              struct veil_claims *claims);

    /* ---- claims ------------------------------------------------------------------------------------------ */
    size_t measurement_size; /* bytes of claims.measurement, and of each entry of the policy's "measurements" */
    size_t signer_size;      /* bytes of claims.signer; 0: no signer (no "signers" in its policy section) */
    /* Adds the members only this TEE fills to the claims JSON (claims.c writes the common ones). NULL: none. */
    VEIL_RESULT (*claims_json)(const struct veil_claims *claims, json_t *j);

    /* ---- policy (policy.c) ------------------------------------------------------------------------------- */
    struct veil_policy_rules policy;
};

/* The rows of attest/tee_table.h, in order. */
size_t veil_tee_count(void);
const struct veil_tee_desc *veil_tee_at(size_t index);
/* The descriptor of a TEE type or name; NULL for VEIL_TEE_AUTO / "auto" and anything unknown. */
const struct veil_tee_desc *veil_tee_find(veil_tee type);
const struct veil_tee_desc *veil_tee_find_name(const char *name);
/* The strings pick returns for each row (rows for which it returns NULL are left out), joined by ", " but the
 * last by last_sep: "sim, sample, sgx, tdx or snp". Truncated to fit out. */
void veil_tee_join(char *out, size_t size, const char *(*pick)(const struct veil_tee_desc *), const char *last_sep);

/* ---- the evidence envelope (evidence.c), for the providers in tees/ ------------------------------------- */

/* A new envelope {"tee": name}. */
VEIL_RESULT veil_evidence_envelope(const struct veil_tee_desc *tee, json_t **out);
/* j[key] = base64(b) */
VEIL_RESULT veil_evidence_set_b64(json_t *j, const char *key, const uint8_t *data, size_t size);

#endif
