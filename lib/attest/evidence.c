/* SPDX-License-Identifier: Apache-2.0 */
/* veil_evidence_verify: read the evidence envelope (docs/spec/evidence.md) or a raw quote/report, hand it to the
 * verifier of its TEE, return normalized claims. Also the SNP certificate table and veil_claims_to_json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "attest/verifiers.h"
#include "core/cursor.h"
#include "core/limits.h"

/* ---- SNP certificate table (GHCB; configfs-tsm auxblob) ---------------------------------------------------- */

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

/* ---- verification -------------------------------------------------------------------------------------- */

static int looks_like_json(const uint8_t *data, size_t size)
{
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
        i++;
    return i < size && data[i] == '{';
}

/* A DCAP quote says which TEE it is from; it must be the one the caller or the envelope named. */
static VEIL_RESULT verify_dcap(const uint8_t *quote, size_t size, veil_tee tee,
                               const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_GUARD(veil_dcap_verify(quote, size, options, claims));
    VEIL_ENSURE(claims->tee == tee, VEIL_ERR_EVIDENCE, "evidence: expected an %s quote, got an %s quote",
                veil_tee_name(tee), veil_tee_name(claims->tee));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT verify_raw(const uint8_t *data, size_t size, veil_tee type,
                              const struct veil_verify_options *options, struct veil_claims *claims)
{
    if (type == VEIL_TEE_SGX || type == VEIL_TEE_TDX)
        return verify_dcap(data, size, type, options, claims);
    VEIL_ENSURE(type == VEIL_TEE_SNP, VEIL_ERR_EVIDENCE,
                "evidence is not JSON; name its type (sgx, tdx or snp) to verify a raw quote or report");
    return veil_snp_verify(data, size, NULL, 0, options, claims);
}

static VEIL_RESULT verify_json_dcap(const json_t *j, veil_tee tee, const struct veil_verify_options *options,
                                    struct veil_claims *claims)
{
    static const char *const sgx_keys[] = {"tee", "quote", NULL};
    static const char *const tdx_keys[] = {"tee", "quote", "cc_eventlog", NULL};
    const char *what = tee == VEIL_TEE_SGX ? "sgx evidence" : "tdx evidence";
    VEIL_GUARD(veil_json_only_keys(j, tee == VEIL_TEE_SGX ? sgx_keys : tdx_keys, VEIL_ERR_EVIDENCE, what));
    json_t *log = json_object_get(j, "cc_eventlog");
    VEIL_ENSURE(log == NULL || json_is_null(log) || json_is_string(log), VEIL_ERR_EVIDENCE,
                "tdx evidence: \"cc_eventlog\" must be a string or null");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf quote = {0};
    VEIL_GUARD(veil_json_b64(j, "quote", VEIL_B64_STD, 1, 0, VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_EVIDENCE, what, &quote,
                             NULL));
    return verify_dcap(quote.data, quote.size, tee, options, claims);
}

static VEIL_RESULT verify_json_snp(const json_t *j, const struct veil_verify_options *options,
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

static VEIL_RESULT verify_json(const uint8_t *data, size_t size, veil_tee type,
                               const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(data, size, VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_EVIDENCE, "evidence", &j));
    const char *name = NULL;
    VEIL_GUARD(veil_json_string(j, "tee", 1, VEIL_ERR_EVIDENCE, "evidence", &name));
    veil_tee tee = VEIL_TEE_AUTO;
    VEIL_ENSURE(veil_tee_from_name(name, &tee) == VEIL_OK && tee != VEIL_TEE_AUTO, VEIL_ERR_EVIDENCE,
                "evidence: unknown tee \"%.32s\"", name);
    VEIL_ENSURE(type == VEIL_TEE_AUTO || type == tee, VEIL_ERR_EVIDENCE, "evidence is for %s, not %s",
                veil_tee_name(tee), veil_tee_name(type));
    switch (tee) {
    case VEIL_TEE_SIM: return veil_sim_verify(j, options, claims);
    case VEIL_TEE_SAMPLE: return veil_sample_verify(j, claims);
    case VEIL_TEE_SGX:
    case VEIL_TEE_TDX: return verify_json_dcap(j, tee, options, claims);
    case VEIL_TEE_SNP: return verify_json_snp(j, options, claims);
    case VEIL_TEE_AUTO: break;
    }
    VEIL_BAIL(VEIL_ERR_INTERNAL, "unreachable TEE type");
}

static VEIL_RESULT verify_impl(const uint8_t *evidence, size_t size, veil_tee type,
                               const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_ENSURE(claims != NULL, VEIL_ERR_ARG, "no claims output given");
    *claims = (struct veil_claims){0};
    VEIL_ENSURE(evidence != NULL && size > 0, VEIL_ERR_EVIDENCE, "evidence is empty");
    VEIL_ENSURE(options != NULL, VEIL_ERR_ARG, "no verification options given");
    VEIL_ENSURE((unsigned)type <= VEIL_TEE_SNP, VEIL_ERR_ARG, "unknown TEE type %d", (int)type);
    VEIL_ENSURE(size <= VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_LIMIT, "evidence is larger than %u bytes",
                VEIL_EVIDENCE_MAX_SIZE);
    if (looks_like_json(evidence, size))
        return verify_json(evidence, size, type, options, claims);
    return verify_raw(evidence, size, type, options, claims);
}

veil_status veil_evidence_verify(const uint8_t *evidence, size_t size, veil_tee type,
                                 const struct veil_verify_options *options, struct veil_claims *claims)
{
    veil_error_clear();
    struct veil_result r = verify_impl(evidence, size, type, options, claims);
    if (!veil_ok(r) && claims != NULL)
        *claims = (struct veil_claims){0};
    return r.status;
}

/* ---- claims as JSON ------------------------------------------------------------------------------------ */

static VEIL_RESULT set_hex(json_t *j, const char *key, const uint8_t *data, size_t size)
{
    char hex[2 * 64 + 1];
    VEIL_ENSURE(size <= 64, VEIL_ERR_ARG, "claims: %s is too long", key);
    veil_hex_encode(data, size, hex);
    return veil_json_set(j, key, json_string(hex));
}

static VEIL_RESULT set_lists(json_t *j, const struct veil_claims *c)
{
    if (c->rtmr_count > 0) {
        json_t *rtmr = json_array();
        VEIL_GUARD(veil_json_set(j, "rtmr", rtmr));
        for (size_t i = 0; i < c->rtmr_count; i++) {
            char hex[2 * 48 + 1];
            veil_hex_encode(c->rtmr[i], 48, hex);
            VEIL_ENSURE(json_array_append_new(rtmr, json_string(hex)) == 0, VEIL_ERR_NOMEM, "out of memory");
        }
    }
    json_t *adv = json_array();
    VEIL_GUARD(veil_json_set(j, "advisories", adv));
    for (size_t i = 0; i < c->advisory_count; i++) {
        json_t *s = json_stringn(c->advisories[i], strnlen(c->advisories[i], sizeof c->advisories[i]));
        VEIL_ENSURE(json_array_append_new(adv, s) == 0, VEIL_ERR_NOMEM, "out of memory");
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT set_snp_tcb(json_t *j, const char *key, const struct veil_snp_tcb *t)
{
    json_t *o = json_pack("{s:i,s:i,s:i,s:i,s:i}", "bootloader", (json_int_t)t->bootloader, "tee",
                          (json_int_t)t->tee, "snp", (json_int_t)t->snp, "microcode", (json_int_t)t->microcode,
                          "fmc", (json_int_t)t->fmc);
    VEIL_ENSURE(o != NULL, VEIL_ERR_NOMEM, "out of memory");
    return veil_json_set(j, key, o);
}

/* TEE-specific members: TDX MROWNER / MROWNERCONFIG, SNP VMPL and TCB. */
static VEIL_RESULT claims_json_tee(const struct veil_claims *c, json_t *j)
{
    if (c->mr_owner_size > 0)
        VEIL_GUARD(set_hex(j, "mrowner", c->mr_owner, c->mr_owner_size));
    if (c->mr_owner_config_size > 0)
        VEIL_GUARD(set_hex(j, "mrownerconfig", c->mr_owner_config, c->mr_owner_config_size));
    if (c->tee != VEIL_TEE_SNP)
        return VEIL_RESULT_OK;
    VEIL_GUARD(veil_json_set(j, "vmpl", json_integer(c->vmpl)));
    VEIL_GUARD(set_snp_tcb(j, "reported_tcb", &c->reported_tcb));
    return set_snp_tcb(j, "committed_tcb", &c->committed_tcb);
}

static VEIL_RESULT claims_json(const struct veil_claims *c, json_t *j)
{
    VEIL_ENSURE(c->measurement_size <= VEIL_MEASUREMENT_MAX && c->signer_size <= VEIL_MEASUREMENT_MAX &&
                    c->config_id_size <= sizeof c->config_id && c->rtmr_count <= 4 &&
                    c->mr_owner_size <= sizeof c->mr_owner && c->mr_owner_config_size <= sizeof c->mr_owner_config &&
                    c->advisory_count <= VEIL_MAX_ADVISORIES,
                VEIL_ERR_ARG, "claims: a size is out of range");
    VEIL_GUARD(veil_json_set(j, "tee", json_string(veil_tee_name(c->tee))));
    VEIL_GUARD(set_hex(j, "report_data", c->report_data, sizeof c->report_data));
    if (c->measurement_size > 0)
        VEIL_GUARD(set_hex(j, "measurement", c->measurement, c->measurement_size));
    if (c->signer_size > 0)
        VEIL_GUARD(set_hex(j, "signer", c->signer, c->signer_size));
    if (c->config_id_size > 0)
        VEIL_GUARD(set_hex(j, "config_id", c->config_id, c->config_id_size));
    VEIL_GUARD(veil_json_set(j, "product_id", json_integer(c->product_id)));
    VEIL_GUARD(veil_json_set(j, "svn", json_integer(c->svn)));
    VEIL_GUARD(veil_json_set(j, "debug", json_boolean(c->debug)));
    VEIL_GUARD(claims_json_tee(c, j));
    size_t n = strnlen(c->tcb_status, sizeof c->tcb_status);
    VEIL_GUARD(veil_json_set(j, "tcb_status", json_stringn(c->tcb_status, n)));
    return set_lists(j, c);
}

veil_status veil_claims_to_json(const struct veil_claims *claims, char **json_out)
{
    veil_error_clear();
    if (claims == NULL || json_out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no claims or output given").status;
    *json_out = NULL;
    VEIL_DEFER(veil_json_done) json_t *j = json_object();
    if (j == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    struct veil_result r = claims_json(claims, j);
    if (!veil_ok(r))
        return r.status;
    char *s = json_dumps(j, JSON_COMPACT);
    if (s == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    *json_out = s;
    return VEIL_OK;
}
