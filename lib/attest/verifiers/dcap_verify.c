/* SPDX-License-Identifier: Apache-2.0 */
/* The DCAP verifier (SGX quote v3, TDX quote v4/v5): a coordinator whose steps follow the trust chain in the
 * order of shared/reference/attestation.md sections 4.1 and 5.4 and of dcap-qvl's verify_impl:
 *   1 parse the quote;
 *   2 the PCK chain up to the pinned Intel SGX Root CA, with the root CA and PCK CRLs, at `now`;
 *   3 the QE report signature by the PCK leaf;
 *   4 the QE report data binds the attestation key;
 *   5 the quote signature by the attestation key;
 *   6 the QE identity (signed by the TCB signing certificate): the QE matches it, its TCB level gives a status;
 *   7 the TCB info (signed likewise): FMSPC and PCE-ID of the PCK certificate, the platform's TCB level (and for
 *     TDX the module identity) give a status, merged with the QE's; Revoked and "no level" fail;
 *   8 the claims.
 * What is refused here and what is left to the policy is listed in dcap.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "attest/dcap.h"
#include "attest/verifiers.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/limits.h"
#include "crypto/crypto.h"

static void leaf_done(struct veil_dcap_x509 **x) { veil_dcap_x509_free(*x); }
static void collateral_done(struct veil_dcap_collateral *c) { veil_dcap_collateral_cleanup(c); }
static void buf_done(struct veil_buf *b) { veil_buf_cleanup(b); }

/* ---- Steps 2-5: the quote's own signatures ------------------------------------------------------------ */

/* Step 2. "The chain must end in the pinned Intel root" (section 5.4). */
static VEIL_RESULT step2_pck_chain(const struct veil_dcap_quote *q, uint64_t now, const struct veil_dcap_collateral *c,
                                   struct veil_dcap_x509 **leaf, struct veil_dcap_pck_ext *pck)
{
    VEIL_GUARD(veil_dcap_chain_verify((const char *)q->cert_data, q->cert_size, 1, now, c, leaf));
    return veil_dcap_pck_ext_parse(*leaf, pck);
}

/* Step 3. "qe_report_sig is ECDSA-P256 by the PCK leaf key over the 384-byte qe_report." */
static VEIL_RESULT step3_qe_report_sig(const struct veil_dcap_quote *q, const struct veil_dcap_x509 *leaf)
{
    return veil_dcap_verify_sig_cert(leaf, q->qe_report_raw, VEIL_DCAP_REPORT_SIZE, q->qe_report_sig,
                                     "the QE report signature");
}

/* Step 4. "qe_report.REPORTDATA == SHA256(attest_key || qe_auth_data) || 0*32." */
static VEIL_RESULT step4_qe_binding(const struct veil_dcap_quote *q)
{
    struct veil_buf b VEIL_DEFER(buf_done);
    uint8_t digest[VEIL_SHA256_SIZE];
    static const uint8_t zero[32];
    veil_buf_init(&b);
    VEIL_GUARD(veil_buf_append(&b, q->attest_key, VEIL_DCAP_KEY_SIZE));
    VEIL_GUARD(veil_buf_append(&b, q->qe_auth, q->qe_auth_size));
    VEIL_GUARD(veil_sha256(b.data, b.size, digest));
    VEIL_ENSURE(memcmp(q->qe_report.report_data, digest, 32) == 0 &&
                    memcmp(q->qe_report.report_data + 32, zero, 32) == 0,
                VEIL_ERR_VERIFY, "DCAP: the QE report does not bind the attestation key");
    return VEIL_RESULT_OK;
}

/* Step 5. "isv_sig: ECDSA-P256-SHA256 over quote[0 : A-4], i.e. header + (v5 descriptor) + body." */
static VEIL_RESULT step5_quote_sig(const struct veil_dcap_quote *q)
{
    return veil_dcap_verify_sig_raw(q->attest_key, q->signed_data, q->signed_size, q->isv_sig,
                                    "the quote signature");
}

/* ---- Step 6: QE identity ------------------------------------------------------------------------------- */

static VEIL_RESULT window(uint64_t now, uint64_t issue, uint64_t next, const char *what)
{
    VEIL_ENSURE(now >= issue, VEIL_ERR_EXPIRED, "DCAP: %s is not valid yet at %llu", what, (unsigned long long)now);
    VEIL_ENSURE(now <= next, VEIL_ERR_EXPIRED, "DCAP: %s has expired at %llu", what, (unsigned long long)now);
    return VEIL_RESULT_OK;
}

/* A signed collateral object: its window, its issuer chain up to the root with the CRLs, its signer pinned to
 * Intel's TCB signing certificate (any leaf chaining to the root is not enough: PCK certificates do), its
 * signature. */
static VEIL_RESULT signed_object(const struct veil_dcap_collateral *c, const char *chain, const char *json,
                                 size_t json_size, const uint8_t sig[VEIL_DCAP_SIG_SIZE], uint64_t now,
                                 const char *what)
{
    struct veil_dcap_x509 *signer VEIL_DEFER(leaf_done) = NULL;
    VEIL_GUARD(veil_dcap_chain_verify(chain, strlen(chain), 0, now, c, &signer));
    VEIL_GUARD(veil_dcap_tcb_signer_check(signer, what));
    return veil_dcap_verify_sig_cert(signer, (const uint8_t *)json, json_size, sig, what);
}

/* "QE identity policy (MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES, and QE must not be debug)." */
static VEIL_RESULT qe_matches(const struct veil_dcap_report *r, const struct veil_dcap_qe_identity *id)
{
    uint8_t misc[4];
    for (size_t i = 0; i < 4; i++)
        misc[i] = (uint8_t)(r->miscselect >> (8 * i)); /* as dcap-qvl: the hex bytes read little-endian */
    VEIL_ENSURE(memcmp(r->mrsigner, id->mrsigner, 32) == 0, VEIL_ERR_VERIFY, "DCAP: QE MRSIGNER mismatch");
    VEIL_ENSURE(!(r->attributes[0] & 0x02), VEIL_ERR_VERIFY, "DCAP: the QE is a debug enclave");
    VEIL_ENSURE(r->isvprodid == id->isvprodid, VEIL_ERR_VERIFY, "DCAP: QE ISVPRODID mismatch");
    for (size_t i = 0; i < 4; i++)
        VEIL_ENSURE((misc[i] & id->miscselect_mask[i]) == (id->miscselect[i] & id->miscselect_mask[i]),
                    VEIL_ERR_VERIFY, "DCAP: QE MISCSELECT mismatch");
    for (size_t i = 0; i < 16; i++)
        VEIL_ENSURE((r->attributes[i] & id->attributes_mask[i]) == (id->attributes[i] & id->attributes_mask[i]),
                    VEIL_ERR_VERIFY, "DCAP: QE ATTRIBUTES mismatch");
    return VEIL_RESULT_OK;
}

/* The first level (served highest first) whose ISVSVN the QE reaches. */
static VEIL_RESULT qe_level(uint16_t isvsvn, const struct veil_dcap_qe_identity *id, struct veil_dcap_status *out)
{
    for (size_t i = 0; i < id->level_count; i++) {
        if (isvsvn >= id->levels[i].isvsvn) {
            *out = id->levels[i].status;
            return VEIL_RESULT_OK;
        }
    }
    VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: QE ISVSVN %u is below every QE identity TCB level", isvsvn);
}

static VEIL_RESULT step6_qe_identity(const struct veil_dcap_quote *q, const struct veil_dcap_collateral *c,
                                     uint64_t now, struct veil_dcap_status *qe_status)
{
    const struct veil_dcap_qe_identity *id = &c->qe_identity;
    int tdx = q->body_type != VEIL_DCAP_BODY_SGX;
    VEIL_GUARD(window(now, id->issue_date, id->next_update, "the QE identity"));
    VEIL_GUARD(signed_object(c, c->qe_identity_issuer_chain, c->qe_identity_json, c->qe_identity_json_size,
                             c->qe_identity_sig, now, "the QE identity signature"));
    /* "QE Identity signature (id must be QE or TD_QE)": QE version 2 for SGX, TD_QE version 2 or 3 for TDX. */
    VEIL_ENSURE(id->td_qe == tdx && (id->version == 2 || (tdx && id->version == 3)), VEIL_ERR_VERIFY,
                "DCAP: the QE identity is not for this TEE");
    VEIL_GUARD(qe_matches(&q->qe_report, id));
    return qe_level(q->qe_report.isvsvn, id, qe_status);
}

/* ---- Step 7: TCB info ---------------------------------------------------------------------------------- */

static int all_at_least(const uint8_t *have, const uint8_t *need, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (have[i] < need[i])
            return 0;
    return 1;
}

/* The module identity entry "TDX_%02X" of TEE_TCB_SVN[1] (dcap-qvl match_tdx_module_identity). NULL: use the base
 * tdxModule, which has no levels. */
static VEIL_RESULT module_identity(const struct veil_dcap_tcb_info *t, uint8_t version,
                                   const struct veil_dcap_module_identity **out)
{
    char want[16];
    *out = &t->module;
    if (version == 0 || t->identity_count == 0)
        return VEIL_RESULT_OK;
    snprintf(want, sizeof want, "TDX_%02X", version);
    for (size_t i = 0; i < t->identity_count; i++) {
        if (strcasecmp(t->identities[i].id, want) == 0) {
            *out = &t->identities[i];
            return VEIL_RESULT_OK;
        }
    }
    VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: no TDX module identity %s in the TCB info", want);
}

/* MRSIGNERSEAM must equal the module's signer; SEAMATTRIBUTES must match under the mask and be zero outside it. */
static VEIL_RESULT module_matches(const struct veil_dcap_td_report *td, const struct veil_dcap_module_identity *m)
{
    VEIL_ENSURE(memcmp(td->mr_signer_seam, m->mrsigner, 48) == 0, VEIL_ERR_VERIFY,
                "DCAP: TDX module MRSIGNER mismatch");
    for (size_t i = 0; i < 8; i++) {
        uint8_t mask = m->attributes_mask[i];
        VEIL_ENSURE((td->seam_attributes[i] & mask) == (m->attributes[i] & mask) &&
                        (td->seam_attributes[i] & (uint8_t)~mask) == 0,
                    VEIL_ERR_VERIFY, "DCAP: TDX module SEAMATTRIBUTES mismatch");
    }
    return VEIL_RESULT_OK;
}

/* "merged with the TDX module identity level (TDX_%02X of TEE_TCB_SVN[1], via TEE_TCB_SVN[0] >= isvsvn)". */
static VEIL_RESULT module_status(const struct veil_dcap_tcb_info *t, const struct veil_dcap_td_report *td,
                                 struct veil_dcap_status *status)
{
    const struct veil_dcap_module_identity *m = NULL;
    VEIL_ENSURE(t->has_module, VEIL_ERR_VERIFY, "DCAP: the TDX TCB info has no tdxModule");
    VEIL_GUARD(module_identity(t, td->tee_tcb_svn[1], &m));
    VEIL_GUARD(module_matches(td, m));
    if (m == &t->module)
        return VEIL_RESULT_OK;
    for (size_t i = 0; i < m->level_count; i++)
        if (td->tee_tcb_svn[0] >= m->levels[i].isvsvn)
            return veil_dcap_status_merge(status, &m->levels[i].status);
    VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: TDX module ISVSVN %u is below every module TCB level", td->tee_tcb_svn[0]);
}

/* "The first level satisfies all of: pcesvn >= level.pcesvn, every cpusvn_comp[i] >= level.sgxtcbcomponents[i],
 * for TDX also every TEE_TCB_SVN[i] >= level.tdxtcbcomponents[i]." */
static VEIL_RESULT platform_level(const struct veil_dcap_quote *q, const struct veil_dcap_tcb_info *t,
                                  const struct veil_dcap_pck_ext *pck, struct veil_dcap_status *out)
{
    int tdx = q->body_type != VEIL_DCAP_BODY_SGX;
    for (size_t i = 0; i < t->level_count; i++) {
        const struct veil_dcap_tcb_level *l = &t->levels[i];
        if (pck->pcesvn < l->pcesvn || !all_at_least(pck->comp_svn, l->sgx, 16))
            continue;
        if (tdx && !all_at_least(q->td.tee_tcb_svn, l->tdx, 16))
            continue;
        *out = l->status;
        return tdx ? module_status(t, &q->td, out) : VEIL_RESULT_OK;
    }
    VEIL_BAIL(VEIL_ERR_VERIFY, "DCAP: no matching TCB level (the platform is below every level)");
}

static VEIL_RESULT step7_tcb_info(const struct veil_dcap_quote *q, const struct veil_dcap_collateral *c,
                                  const struct veil_dcap_pck_ext *pck, uint64_t now, struct veil_dcap_status *status)
{
    const struct veil_dcap_tcb_info *t = &c->tcb_info;
    VEIL_GUARD(window(now, t->issue_date, t->next_update, "the TCB info"));
    VEIL_GUARD(signed_object(c, c->tcb_info_issuer_chain, c->tcb_info_json, c->tcb_info_json_size, c->tcb_info_sig,
                             now, "the TCB info signature"));
    VEIL_ENSURE(t->tdx == (q->body_type != VEIL_DCAP_BODY_SGX), VEIL_ERR_VERIFY,
                "DCAP: the TCB info is not for this TEE");
    VEIL_ENSURE(memcmp(t->fmspc, pck->fmspc, VEIL_DCAP_FMSPC_SIZE) == 0, VEIL_ERR_VERIFY,
                "DCAP: the TCB info's FMSPC is not the PCK certificate's");
    VEIL_ENSURE(memcmp(t->pceid, pck->pceid, VEIL_DCAP_PCEID_SIZE) == 0, VEIL_ERR_VERIFY,
                "DCAP: the TCB info's PCE-ID is not the PCK certificate's");
    struct veil_dcap_status qe = *status;
    VEIL_GUARD(platform_level(q, t, pck, status));
    /* "The worst status wins" and "advisories are unioned"; "Revoked fails". */
    VEIL_GUARD(veil_dcap_status_merge(status, &qe));
    VEIL_ENSURE(status->status != VEIL_DCAP_REVOKED, VEIL_ERR_VERIFY, "DCAP: the TCB status is Revoked");
    return VEIL_RESULT_OK;
}

/* ---- Step 8: claims ------------------------------------------------------------------------------------- */

static void claims_sgx(const struct veil_dcap_report *r, struct veil_claims *cl)
{
    cl->tee = VEIL_TEE_SGX;
    memcpy(cl->report_data, r->report_data, 64);
    memcpy(cl->measurement, r->mrenclave, 32);
    cl->measurement_size = 32;
    memcpy(cl->signer, r->mrsigner, 32);
    cl->signer_size = 32;
    memcpy(cl->config_id, r->configid, 64);
    cl->config_id_size = 64;
    cl->product_id = r->isvprodid;
    cl->svn = r->isvsvn;
    cl->debug = (r->attributes[0] & 0x02) != 0; /* ATTRIBUTES.DEBUG: reported; the policy refuses it */
}

/* TD attributes (section 5.3): bit 0 DEBUG; bits 1-7, 8-27, 29 and 32-62 reserved; bit 28 SEPT_VE_DISABLE. */
#define TD_ATTR_DEBUG UINT64_C(0x1)
#define TD_ATTR_SEPT_VE_DISABLE (UINT64_C(1) << 28)
#define TD_ATTR_RESERVED UINT64_C(0x7FFFFFFF2FFFFFFE)

/* Claims cannot say these, so they are refused here (as dcap-qvl's validate_attrs does). */
static VEIL_RESULT td_refusals(const struct veil_dcap_quote *q)
{
    static const uint8_t zero[48];
    VEIL_ENSURE(!(q->td.td_attributes & TD_ATTR_RESERVED), VEIL_ERR_VERIFY, "DCAP: reserved TD attributes are set");
    VEIL_ENSURE(q->td.td_attributes & TD_ATTR_SEPT_VE_DISABLE, VEIL_ERR_VERIFY,
                "DCAP: the TD does not set SEPT_VE_DISABLE");
    VEIL_ENSURE(q->body_type != VEIL_DCAP_BODY_TD15 || memcmp(q->td.mr_service_td, zero, 48) == 0, VEIL_ERR_VERIFY,
                "DCAP: MRSERVICETD is not zero (service TDs are not supported)");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT claims_tdx(const struct veil_dcap_quote *q, struct veil_claims *cl)
{
    VEIL_GUARD(td_refusals(q));
    cl->tee = VEIL_TEE_TDX;
    memcpy(cl->report_data, q->td.report_data, 64);
    memcpy(cl->measurement, q->td.mrtd, 48);
    cl->measurement_size = 48;
    memcpy(cl->rtmr, q->td.rtmr, sizeof cl->rtmr);
    cl->rtmr_count = 4;
    memcpy(cl->config_id, q->td.mrconfigid, 48);
    cl->config_id_size = 48;
    memcpy(cl->mr_owner, q->td.mrowner, 48);
    cl->mr_owner_size = 48;
    memcpy(cl->mr_owner_config, q->td.mrownerconfig, 48);
    cl->mr_owner_config_size = 48;
    cl->debug = (q->td.td_attributes & TD_ATTR_DEBUG) != 0; /* TD_ATTRIBUTES.DEBUG: reported, not refused */
    return VEIL_RESULT_OK;
}

static VEIL_RESULT step8_claims(const struct veil_dcap_quote *q, const struct veil_dcap_status *status,
                                struct veil_claims *cl)
{
    memset(cl, 0, sizeof *cl);
    if (q->body_type == VEIL_DCAP_BODY_SGX)
        claims_sgx(&q->sgx, cl);
    else
        VEIL_GUARD(claims_tdx(q, cl));
    if (status == NULL)
        return VEIL_RESULT_OK;
    snprintf(cl->tcb_status, sizeof cl->tcb_status, "%s", veil_dcap_tcb_status_name(status->status));
    memcpy(cl->advisories, status->advisories, sizeof cl->advisories);
    cl->advisory_count = status->advisory_count;
    return VEIL_RESULT_OK;
}

/* ---- Coordinators --------------------------------------------------------------------------------------- */

/* Steps 1-5, leaving the PCK extension for step 7. */
static VEIL_RESULT steps_1_to_5(const uint8_t *quote, size_t size, uint64_t now, const struct veil_dcap_collateral *c,
                                struct veil_dcap_quote *q, struct veil_dcap_pck_ext *pck)
{
    struct veil_dcap_x509 *leaf VEIL_DEFER(leaf_done) = NULL;
    VEIL_GUARD(veil_dcap_quote_parse(quote, size, q));   /* 1 */
    VEIL_GUARD(step2_pck_chain(q, now, c, &leaf, pck));  /* 2 */
    VEIL_GUARD(step3_qe_report_sig(q, leaf));            /* 3 */
    VEIL_GUARD(step4_qe_binding(q));                     /* 4 */
    return step5_quote_sig(q);                           /* 5 */
}

VEIL_RESULT veil_dcap_verify_signatures(const uint8_t *quote, size_t size, uint64_t now,
                                        const struct veil_dcap_collateral *crls, struct veil_dcap_quote *parsed,
                                        struct veil_dcap_pck_ext *pck, struct veil_claims *claims)
{
    VEIL_GUARD(steps_1_to_5(quote, size, now, crls, parsed, pck));
    return step8_claims(parsed, NULL, claims);
}

VEIL_RESULT veil_dcap_verify_collateral(const uint8_t *quote, size_t size, const struct veil_dcap_collateral *c,
                                        uint64_t now, struct veil_claims *claims)
{
    struct veil_dcap_quote q;
    struct veil_dcap_pck_ext pck;
    struct veil_dcap_status status;
    struct veil_claims out;
    memset(claims, 0, sizeof *claims);
    memset(&status, 0, sizeof status);
    VEIL_GUARD(steps_1_to_5(quote, size, now, c, &q, &pck)); /* 1-5 */
    VEIL_GUARD(step6_qe_identity(&q, c, now, &status));      /* 6 */
    VEIL_GUARD(step7_tcb_info(&q, c, &pck, now, &status));   /* 7 */
    VEIL_GUARD(step8_claims(&q, &status, &out));             /* 8 */
    *claims = out;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT collateral_from_file(const char *path, struct veil_dcap_collateral *c)
{
    struct veil_buf b VEIL_DEFER(buf_done);
    veil_buf_init(&b);
    VEIL_GUARD(veil_file_read_all(path, VEIL_DCAP_MAX_COLLATERAL_SIZE, &b));
    return veil_dcap_collateral_parse(b.data, b.size, c);
}

/* The PCCS needs the FMSPC and the CA before anything is verified: read them from the (not yet verified) PCK
 * leaf. Step 2 verifies that very certificate, and step 7 matches the collateral against it. Collateral that came
 * from the network is cached only once the quote has verified with it. */
static VEIL_RESULT verify_with_pccs(const uint8_t *quote, size_t size, const struct veil_verify_options *o,
                                    struct veil_claims *claims)
{
    struct veil_dcap_quote q;
    struct veil_dcap_pck_ext pck;
    struct veil_dcap_x509 *leaf VEIL_DEFER(leaf_done) = NULL;
    struct veil_dcap_collateral c VEIL_DEFER(collateral_done);
    int fetched = 0;
    veil_dcap_collateral_init(&c);
    VEIL_GUARD(veil_dcap_quote_parse(quote, size, &q));
    VEIL_GUARD(veil_dcap_leaf_read((const char *)q.cert_data, q.cert_size, &leaf));
    VEIL_GUARD(veil_dcap_pck_ext_parse(leaf, &pck));
    VEIL_GUARD(veil_dcap_pccs_fetch(&q, pck.fmspc, pck.processor_ca, o, &c, &fetched));
    VEIL_GUARD(veil_dcap_verify_collateral(quote, size, &c, o->now, claims));
    if (fetched && !veil_ok(veil_dcap_pccs_cache_store(&q, pck.fmspc, pck.processor_ca, o, &c))) {
        memset(claims, 0, sizeof *claims);
        VEIL_BAIL(VEIL_ERR_IO, "DCAP: cannot write the collateral cache in %s", o->collateral_cache_dir);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_verify(const uint8_t *quote, size_t size, const struct veil_verify_options *options,
                             struct veil_claims *claims)
{
    struct veil_dcap_collateral c VEIL_DEFER(collateral_done);
    veil_dcap_collateral_init(&c);
    VEIL_ENSURE(claims != NULL, VEIL_ERR_ARG, "DCAP: no claims given");
    memset(claims, 0, sizeof *claims);
    VEIL_ENSURE(quote != NULL && options != NULL, VEIL_ERR_ARG, "DCAP: no quote or options given");
    if (options->collateral_path == NULL && options->pccs_url != NULL)
        return verify_with_pccs(quote, size, options, claims);
    VEIL_ENSURE(options->collateral_path != NULL, VEIL_ERR_ARG,
                "DCAP: verification needs collateral (a collateral file or a PCCS URL)");
    VEIL_GUARD(collateral_from_file(options->collateral_path, &c));
    return veil_dcap_verify_collateral(quote, size, &c, options->now, claims);
}

VEIL_RESULT veil_dcap_verify_as(veil_tee tee, const uint8_t *quote, size_t size,
                                const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_GUARD(veil_dcap_verify(quote, size, options, claims));
    VEIL_ENSURE(claims->tee == tee, VEIL_ERR_EVIDENCE, "evidence: expected an %s quote, got an %s quote",
                veil_tee_name(tee), veil_tee_name(claims->tee));
    return VEIL_RESULT_OK;
}
