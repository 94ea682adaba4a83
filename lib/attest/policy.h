/* SPDX-License-Identifier: Apache-2.0 */
/* Policy internals (docs/spec/policy.md) shared by policy.c, which parses the document and judges claims, and the
 * TEE descriptors in tees/, which say what their section holds and how it is judged. policy.c parses the members
 * common to the sections (those a TEE lists among its keys); a TEE's own members (TDX pins, SNP min_tcb) are
 * parsed and judged by its hooks, in data it owns (section->ext). */
#ifndef VEIL_ATTEST_POLICY_H
#define VEIL_ATTEST_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/limits.h"
#include "core/result.h"
#include "veil/attest.h"

#define VEIL_POLICY_MAX_TCB 8u
#define VEIL_POLICY_ADVISORY_SIZE 32u

/* A list of hex values from the policy, each of one fixed size (at most VEIL_MEASUREMENT_MAX bytes). */
struct veil_policy_hex_list {
    uint8_t (*items)[VEIL_MEASUREMENT_MAX];
    size_t count;
};

/* One TEE's section of a policy. The common members a section may hold, each parsed only when the TEE lists it
 * among its keys (defaults otherwise). */
struct veil_policy_section {
    int present;                            /* the section is there (or the default policy holds it) */
    int allowed;                            /* the TEE's allow flag (e.g. allow_sim), for TEEs admitted by one */
    struct veil_policy_hex_list measurements;
    struct veil_policy_hex_list signers;
    int has_product_id;
    uint16_t product_id;
    uint32_t min_svn;
    char tcb_statuses[VEIL_POLICY_MAX_TCB][48]; /* default ["UpToDate"] */
    size_t tcb_count;
    int allow_debug;
    uint32_t max_vmpl;
    char deny_advisories[VEIL_POLICY_MAX_LIST][VEIL_POLICY_ADVISORY_SIZE];
    size_t deny_count;
    void *ext; /* the TEE's own members: allocated by its parse hook, freed by its free_ext hook */
};

/* How a TEE's section is read and judged (a part of its descriptor, attest/tee.h). */
struct veil_policy_rules {
    /* A top-level boolean that must be true to admit the TEE (e.g. "allow_sim"), and the refusal's words
     * ("the simulation TEE is not allowed (allow_sim is false)"); NULL: the TEE is admitted by its section. */
    const char *allow_flag;
    const char *refusal;
    const char *const *keys; /* its section's members (NULL-terminated); NULL: it takes no section */
    int in_default;          /* veil_policy_default holds an empty section for it */
    /* Parses the TEE's own members into section->ext, after the common ones. NULL: none. */
    VEIL_RESULT (*parse)(const json_t *obj, const char *what, struct veil_policy_section *section);
    void (*free_ext)(void *ext);
    /* Judges claims of this TEE, numbering its steps; policy.c has admitted the TEE before and checks the
     * report data after. NULL: nothing to judge. */
    VEIL_RESULT (*check)(const struct veil_policy_section *section, const struct veil_claims *claims);
};

/* ---- building blocks for the TEEs' hooks ------------------------------------------------------------------ */

/* obj[key]: a list (at most VEIL_POLICY_MAX_LIST) of hex strings of size bytes each; absent: empty. */
VEIL_RESULT veil_policy_hex_list_parse(const json_t *obj, const char *key, const char *what, size_t size,
                                       struct veil_policy_hex_list *out);
void veil_policy_hex_list_cleanup(struct veil_policy_hex_list *l);
/* The claims' value v (size bytes, want expected) of what ("measurement", "rtmr1") is in the list, which must
 * not be empty. */
VEIL_RESULT veil_policy_list_check(const char *what, const char *tee, const uint8_t *v, size_t size, size_t want,
                                   const struct veil_policy_hex_list *list);

/* The checks shared by the TEEs, each naming itself in veil_last_error(). */
VEIL_RESULT veil_policy_check_debug(const struct veil_policy_section *s, const struct veil_claims *c);
VEIL_RESULT veil_policy_check_tcb_status(const struct veil_policy_section *s, const struct veil_claims *c);
VEIL_RESULT veil_policy_check_measurement(const struct veil_policy_section *s, const struct veil_claims *c);
VEIL_RESULT veil_policy_check_signer(const struct veil_policy_section *s, const struct veil_claims *c); /* if listed */
VEIL_RESULT veil_policy_check_product_id(const struct veil_policy_section *s, const struct veil_claims *c);
VEIL_RESULT veil_policy_check_svn(const struct veil_policy_section *s, const struct veil_claims *c);
VEIL_RESULT veil_policy_check_advisories(const struct veil_policy_section *s, const struct veil_claims *c);

#endif
