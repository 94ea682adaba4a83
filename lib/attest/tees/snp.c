/* SPDX-License-Identifier: Apache-2.0 */
/* AMD SEV-SNP: evidence from configfs-tsm (providers/tsm.c, provider "sev_guest"), an ATTESTATION_REPORT with its
 * VCEK or VLEK verified by verifiers/snp_*.c. Envelope {"tee": "snp", "report": base64, "cert_chain": base64 of
 * the host's certificate table, "vcek": base64 DER} (docs/spec/evidence.md); claims MEASUREMENT (48), the ID key
 * digest (48), HOST_DATA, GUEST_SVN, POLICY.DEBUG, VMPL, REPORTED_TCB and COMMITTED_TCB. AMD publishes no TCB
 * status: the policy's min_tcb judges the TCB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "attest/tee_table.h"
#include "attest/verifiers.h"
#include "core/cursor.h"
#include "core/limits.h"

/* ---- the SNP certificate table (GHCB; configfs-tsm auxblob) ----------------------------------------------- */

static const uint8_t guid_vcek[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                      0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
static const uint8_t guid_vlek[16] = {0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e,
                                      0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1};

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

VEIL_RESULT veil_snp_auxblob_cert(const uint8_t *aux, size_t size, const uint8_t **cert, size_t *cert_size)
{
    struct veil_cursor c = veil_cursor_make(aux, size);
    const uint8_t *vcek = NULL, *vlek = NULL;
    size_t vcek_size = 0, vlek_size = 0;
    for (;;) {
        const uint8_t *guid = NULL;
        uint32_t off = 0, len = 0;
        if (!veil_ok(veil_cursor_bytes(&c, 16, &guid)) || !veil_ok(veil_cursor_u32le(&c, &off)) ||
            !veil_ok(veil_cursor_u32le(&c, &len)))
            VEIL_BAIL(VEIL_ERR_EVIDENCE, "SNP certificate table: no terminating entry");
        if (all_zero(guid, 16) && off == 0 && len == 0)
            break;
        VEIL_ENSURE(len > 0 && off <= size && len <= size - off, VEIL_ERR_EVIDENCE,
                    "SNP certificate table: an entry points outside the table");
        if (memcmp(guid, guid_vcek, 16) == 0 && vcek == NULL)
            vcek = aux + off, vcek_size = len;
        else if (memcmp(guid, guid_vlek, 16) == 0 && vlek == NULL)
            vlek = aux + off, vlek_size = len;
    }
    *cert = vcek != NULL ? vcek : vlek;
    *cert_size = vcek != NULL ? vcek_size : vlek_size;
    return VEIL_RESULT_OK;
}

/* ---- provider and verifier ---------------------------------------------------------------------------- */

static const struct veil_tsm_spec snp_tsm = {
    .provider = "sev_guest", .outblob_size = VEIL_SNP_REPORT_SIZE, .outblob_name = "SEV-SNP report", .auxblob = 1};

static VEIL_RESULT snp_collect(const struct veil_provider_config *config,
                               const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                               json_t **out)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf report = {0};
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf aux = {0};
    VEIL_GUARD(veil_tsm_collect(veil_tsm_root(config), &veil_tee_snp, report_data, hook, &report, &aux));
    VEIL_GUARD(veil_evidence_envelope(&veil_tee_snp, out));
    VEIL_GUARD(veil_evidence_set_b64(*out, "report", report.data, report.size));
    if (aux.size > 0)
        VEIL_GUARD(veil_evidence_set_b64(*out, "cert_chain", aux.data, aux.size));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT snp_verify_raw(const uint8_t *report, size_t size, const struct veil_verify_options *options,
                                  struct veil_claims *claims)
{
    return veil_snp_verify(report, size, NULL, 0, options, claims);
}

static VEIL_RESULT snp_verify(const json_t *j, const struct veil_verify_options *options,
                              struct veil_claims *claims)
{
    static const char *const keys[] = {"tee", "report", "cert_chain", "vcek", NULL};
    const char *what = "snp evidence";
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_EVIDENCE, what));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf report = {0};
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf chain = {0};
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf vcek = {0};
    int has_chain = 0, has_vcek = 0;
    const veil_status ev = VEIL_ERR_EVIDENCE;
    VEIL_GUARD(veil_json_b64(j, "report", VEIL_B64_STD, 1, 0, VEIL_EVIDENCE_MAX_SIZE, ev, what, &report, NULL));
    VEIL_GUARD(veil_json_b64(j, "cert_chain", VEIL_B64_STD, 0, 0, VEIL_TSM_AUXBLOB_MAX_SIZE, ev, what, &chain,
                             &has_chain));
    VEIL_GUARD(veil_json_b64(j, "vcek", VEIL_B64_STD, 0, 0, VEIL_SNP_CERT_MAX_SIZE, ev, what, &vcek, &has_vcek));
    const uint8_t *cert = has_vcek ? vcek.data : NULL;
    size_t cert_size = has_vcek ? vcek.size : 0;
    if (!has_vcek && has_chain && chain.size > 0)
        VEIL_GUARD(veil_snp_auxblob_cert(chain.data, chain.size, &cert, &cert_size));
    return veil_snp_verify(report.data, report.size, cert, cert_size, options, claims);
}

/* ---- claims: VMPL, REPORTED_TCB, COMMITTED_TCB ----------------------------------------------------------- */

static VEIL_RESULT set_snp_tcb(json_t *j, const char *key, const struct veil_snp_tcb *t)
{
    json_t *o = json_pack("{s:i,s:i,s:i,s:i,s:i}", "bootloader", (json_int_t)t->bootloader, "tee",
                          (json_int_t)t->tee, "snp", (json_int_t)t->snp, "microcode", (json_int_t)t->microcode,
                          "fmc", (json_int_t)t->fmc);
    VEIL_ENSURE(o != NULL, VEIL_ERR_NOMEM, "out of memory");
    return veil_json_set(j, key, o);
}

static VEIL_RESULT snp_claims_json(const struct veil_claims *c, json_t *j)
{
    VEIL_GUARD(veil_json_set(j, "vmpl", json_integer(c->vmpl)));
    VEIL_GUARD(set_snp_tcb(j, "reported_tcb", &c->reported_tcb));
    return set_snp_tcb(j, "committed_tcb", &c->committed_tcb);
}

/* ---- policy: the minimum TCB ------------------------------------------------------------------------ */

/* The section's own members (section->ext). */
struct snp_policy {
    int has_min_tcb;
    struct veil_snp_tcb min_tcb;
    int allow_any_tcb;
};

static void snp_policy_free(void *ext)
{
    free(ext);
}

/* "min_tcb": {"bootloader", "tee", "snp", "microcode"} required, "fmc" (Turin) optional, each 0..255. */
static VEIL_RESULT parse_min_tcb(const json_t *obj, const char *what, struct snp_policy *t)
{
    static const char *const keys[] = {"bootloader", "tee", "snp", "microcode", "fmc", NULL};
    const json_t *o = json_object_get(obj, "min_tcb");
    if (o == NULL)
        return VEIL_RESULT_OK;
    char name[48];
    snprintf(name, sizeof name, "%s: min_tcb", what);
    VEIL_ENSURE(json_is_object(o), VEIL_ERR_ARG, "%s must be an object", name);
    VEIL_GUARD(veil_json_only_keys(o, keys, VEIL_ERR_ARG, name));
    uint64_t v[5] = {0};
    for (size_t i = 0; i < 5; i++)
        VEIL_GUARD(veil_json_uint(o, keys[i], i < 4, UINT8_MAX, VEIL_ERR_ARG, name, &v[i]));
    t->min_tcb = (struct veil_snp_tcb){.bootloader = (uint8_t)v[0], .tee = (uint8_t)v[1], .snp = (uint8_t)v[2],
                                       .microcode = (uint8_t)v[3], .fmc = (uint8_t)v[4]};
    t->has_min_tcb = 1;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT snp_policy_parse(const json_t *obj, const char *what, struct veil_policy_section *s)
{
    struct snp_policy *t = calloc(1, sizeof *t);
    VEIL_ENSURE(t != NULL, VEIL_ERR_NOMEM, "out of memory");
    s->ext = t; /* freed with the policy, whatever happens next */
    VEIL_GUARD(parse_min_tcb(obj, what, t));
    VEIL_GUARD(veil_json_bool(obj, "allow_any_tcb", VEIL_ERR_ARG, what, &t->allow_any_tcb));
    VEIL_ENSURE(!(t->has_min_tcb && t->allow_any_tcb), VEIL_ERR_ARG, "%s: min_tcb and allow_any_tcb exclude each other",
                what);
    VEIL_ENSURE(t->has_min_tcb || t->allow_any_tcb, VEIL_ERR_ARG,
                "%s has no min_tcb: every SEV-SNP firmware, however old, would be accepted; set min_tcb "
                "{bootloader, tee, snp, microcode[, fmc]}, or \"allow_any_tcb\": true (dangerous)", what);
    return VEIL_RESULT_OK;
}

/* Every component of one of the report's TCBs (which names it: REPORTED_TCB, COMMITTED_TCB) is at least the
 * policy's minimum. */
static VEIL_RESULT check_tcb_floor(const char *which, const struct veil_snp_tcb *have, const struct veil_snp_tcb *min)
{
    static const char *const names[] = {"bootloader", "tee", "snp", "microcode", "fmc"};
    const uint8_t h[] = {have->bootloader, have->tee, have->snp, have->microcode, have->fmc};
    const uint8_t m[] = {min->bootloader, min->tee, min->snp, min->microcode, min->fmc};
    for (size_t i = 0; i < sizeof h; i++)
        VEIL_ENSURE(h[i] >= m[i], VEIL_ERR_POLICY, "policy: snp %s %s %u is below the minimum %u (min_tcb)", which,
                    names[i], h[i], m[i]);
    return VEIL_RESULT_OK;
}

/* SEV-SNP has no vendor TCB status: the policy's min_tcb judges REPORTED_TCB (what the VCEK certifies) and
 * COMMITTED_TCB (the firmware's anti-rollback floor). */
static VEIL_RESULT check_tcb(const struct veil_policy_section *s, const struct veil_claims *c)
{
    static const struct snp_policy none = {0}; /* the default policy's section: no minimum */
    const struct snp_policy *t = s->ext != NULL ? s->ext : &none;
    if (t->allow_any_tcb)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(t->has_min_tcb, VEIL_ERR_POLICY,
                "policy: snp has no min_tcb (and allow_any_tcb is false): the TCB cannot be judged");
    VEIL_GUARD(check_tcb_floor("REPORTED_TCB", &c->reported_tcb, &t->min_tcb));
    return check_tcb_floor("COMMITTED_TCB", &c->committed_tcb, &t->min_tcb);
}

/* 1 debug, 2 VMPL, 3 min_tcb, 4 MEASUREMENT, 5 ID key digest, 6 GUEST_SVN, 7 denied advisories. */
static VEIL_RESULT snp_policy_check(const struct veil_policy_section *s, const struct veil_claims *c)
{
    VEIL_GUARD(veil_policy_check_debug(s, c));
    VEIL_ENSURE(c->vmpl <= s->max_vmpl, VEIL_ERR_POLICY, "policy: VMPL %u is above the maximum %u for snp", c->vmpl,
                s->max_vmpl);
    VEIL_GUARD(check_tcb(s, c));
    VEIL_GUARD(veil_policy_check_measurement(s, c));
    VEIL_GUARD(veil_policy_check_signer(s, c));
    VEIL_GUARD(veil_policy_check_svn(s, c));
    return veil_policy_check_advisories(s, c);
}

static const char *const snp_policy_keys[] = {"measurements", "signers", "min_svn", "min_tcb", "allow_any_tcb",
                                              "allow_debug", "max_vmpl", "deny_advisories", NULL};

const struct veil_tee_desc veil_tee_snp = {
    .type = VEIL_TEE_SNP,
    .name = "snp",
    .collect = snp_collect,
    .tsm = &snp_tsm,
    .verify = snp_verify,
    .verify_raw = snp_verify_raw,
    .measurement_size = 48,
    .signer_size = 48,
    .claims_json = snp_claims_json,
    .policy = {.keys = snp_policy_keys,
               .in_default = 1,
               .parse = snp_policy_parse,
               .free_ext = snp_policy_free,
               .check = snp_policy_check},
};
