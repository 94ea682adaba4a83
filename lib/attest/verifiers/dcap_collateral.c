/* SPDX-License-Identifier: Apache-2.0 */
/* DCAP collateral: dcap-qvl's QuoteCollateralV3 JSON layout, and the signed tcbInfo and enclaveIdentity objects
 * inside it (Intel PCS API v4, "TCB Info V3" and "Enclave Identity V2"). Parsing only: the verifier checks the
 * signatures over the exact strings and the windows at `now`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "attest/attest_internal.h"
#include "attest/dcap.h"
#include "core/hex.h"
#include "core/json.h"
#include "core/limits.h"

#define EV VEIL_ERR_EVIDENCE

static const char *const status_names[] = {
    "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
    "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked",
};

const char *veil_dcap_tcb_status_name(enum veil_dcap_tcb_status s)
{
    return (size_t)s < sizeof status_names / sizeof *status_names ? status_names[s] : "Unknown";
}

static int has_advisory(const struct veil_dcap_status *s, const char *id)
{
    for (size_t i = 0; i < s->advisory_count; i++)
        if (strcmp(s->advisories[i], id) == 0)
            return 1;
    return 0;
}

static VEIL_RESULT advisory_add(struct veil_dcap_status *s, const char *id)
{
    if (has_advisory(s, id))
        return VEIL_RESULT_OK;
    VEIL_ENSURE(s->advisory_count < VEIL_MAX_ADVISORIES, VEIL_ERR_LIMIT, "DCAP: more than %u advisories",
                VEIL_MAX_ADVISORIES);
    VEIL_ENSURE(strlen(id) < sizeof s->advisories[0], EV, "DCAP: advisory id is too long");
    strcpy(s->advisories[s->advisory_count++], id);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_status_merge(struct veil_dcap_status *a, const struct veil_dcap_status *b)
{
    if (b->status > a->status)
        a->status = b->status;
    for (size_t i = 0; i < b->advisory_count; i++)
        VEIL_GUARD(advisory_add(a, b->advisories[i]));
    return VEIL_RESULT_OK;
}

/* ---- Time ------------------------------------------------------------------------------------------------ */

static int digits(const char *s, size_t n, unsigned *out)
{
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        *out = *out * 10 + (unsigned)(s[i] - '0');
    }
    return 1;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (int64_t)d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_days(unsigned y, unsigned m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

VEIL_RESULT veil_dcap_parse_time(const char *s, uint64_t *out)
{
    unsigned y, mo, d, h, mi, se;
    VEIL_ENSURE(s != NULL && strlen(s) == 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
                    s[16] == ':' && s[19] == 'Z',
                EV, "DCAP collateral: time \"%.32s\" is not YYYY-MM-DDTHH:MM:SSZ", s ? s : "");
    VEIL_ENSURE(digits(s, 4, &y) && digits(s + 5, 2, &mo) && digits(s + 8, 2, &d) && digits(s + 11, 2, &h) &&
                    digits(s + 14, 2, &mi) && digits(s + 17, 2, &se),
                EV, "DCAP collateral: time \"%s\" is malformed", s);
    VEIL_ENSURE(y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && (int)d <= month_days(y, mo) && h < 24 && mi < 60 &&
                    se < 60,
                EV, "DCAP collateral: time \"%s\" is out of range", s);
    *out = (uint64_t)days_from_civil(y, mo, d) * 86400u + h * 3600u + mi * 60u + se;
    return VEIL_RESULT_OK;
}

/* ---- JSON helpers ---------------------------------------------------------------------------------------- */

static VEIL_RESULT get_hex(const json_t *o, const char *key, uint8_t *out, size_t size, const char *what)
{
    const char *s = NULL;
    VEIL_GUARD(veil_json_string(o, key, 1, EV, what, &s));
    char name[96];
    snprintf(name, sizeof name, "DCAP %s: \"%s\"", what, key);
    /* Intel serves upper case, dcap-qvl writes lower case: both are accepted. */
    return veil_hex_decode(VEIL_HEX_ANY_CASE, s, strlen(s), out, size, EV, name);
}

static VEIL_RESULT get_uint(const json_t *o, const char *key, uint64_t max, const char *what, uint64_t *out)
{
    return veil_json_uint(o, key, 1, max, EV, what, out);
}

static VEIL_RESULT get_time(const json_t *o, const char *key, const char *what, uint64_t *out)
{
    const char *s = NULL;
    VEIL_GUARD(veil_json_string(o, key, 1, EV, what, &s));
    return veil_dcap_parse_time(s, out);
}

static VEIL_RESULT get_array(const json_t *o, const char *key, int required, size_t max, const char *what,
                             json_t **out)
{
    *out = json_object_get(o, key);
    if (*out == NULL && !required)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_array(*out), EV, "%s: \"%s\" must be an array", what, key);
    VEIL_ENSURE(json_array_size(*out) <= max, VEIL_ERR_LIMIT, "%s: \"%s\" has too many entries", what, key);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT get_object(const json_t *o, const char *key, const char *what, json_t **out)
{
    *out = json_object_get(o, key);
    VEIL_ENSURE(json_is_object(*out), EV, "%s: \"%s\" must be an object", what, key);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT status_parse(const char *s, enum veil_dcap_tcb_status *out)
{
    for (size_t i = 0; s != NULL && i < sizeof status_names / sizeof *status_names; i++) {
        if (strcmp(s, status_names[i]) == 0) {
            *out = (enum veil_dcap_tcb_status)i;
            return VEIL_RESULT_OK;
        }
    }
    VEIL_BAIL(EV, "DCAP collateral: unknown TCB status \"%.48s\"", s ? s : "");
}

/* tcbStatus and advisoryIDs of one level. */
static VEIL_RESULT level_status(const json_t *level, const char *what, struct veil_dcap_status *out)
{
    const char *s = NULL;
    json_t *ids = NULL;
    size_t i;
    json_t *id;
    VEIL_GUARD(veil_json_string(level, "tcbStatus", 1, EV, what, &s));
    VEIL_GUARD(status_parse(s, &out->status));
    VEIL_GUARD(get_array(level, "advisoryIDs", 0, VEIL_DCAP_MAX_LEVEL_ADVISORIES, what, &ids));
    json_array_foreach(ids, i, id) {
        VEIL_ENSURE(json_is_string(id), EV, "%s: advisory ids must be strings", what);
        VEIL_GUARD(advisory_add(out, json_string_value(id)));
    }
    return VEIL_RESULT_OK;
}

/* Exactly 16 {"svn": 0..255} entries. */
static VEIL_RESULT components(const json_t *tcb, const char *key, uint8_t out[16], const char *what)
{
    json_t *arr = NULL, *c;
    size_t i;
    uint64_t svn = 0;
    VEIL_GUARD(get_array(tcb, key, 1, 16, what, &arr));
    VEIL_ENSURE(json_array_size(arr) == 16, EV, "%s: \"%s\" must have 16 entries", what, key);
    json_array_foreach(arr, i, c) {
        VEIL_ENSURE(json_is_object(c), EV, "%s: \"%s\" entries must be objects", what, key);
        VEIL_GUARD(get_uint(c, "svn", UINT8_MAX, what, &svn));
        out[i] = (uint8_t)svn;
    }
    return VEIL_RESULT_OK;
}

/* ---- tcbInfo --------------------------------------------------------------------------------------------- */

static VEIL_RESULT tcb_level_parse(const json_t *level, int tdx, struct veil_dcap_tcb_level *out)
{
    static const char what[] = "tcbInfo.tcbLevels";
    json_t *tcb = NULL;
    uint64_t pcesvn = 0;
    VEIL_ENSURE(json_is_object(level), EV, "%s: entries must be objects", what);
    VEIL_GUARD(get_object(level, "tcb", what, &tcb));
    VEIL_GUARD(components(tcb, "sgxtcbcomponents", out->sgx, what));
    if (tdx)
        VEIL_GUARD(components(tcb, "tdxtcbcomponents", out->tdx, what));
    VEIL_GUARD(get_uint(tcb, "pcesvn", UINT16_MAX, what, &pcesvn));
    out->pcesvn = (uint16_t)pcesvn;
    return level_status(level, what, &out->status);
}

/* Intel QVL's order (dcap-qvl canonicalize_tcb_levels): SGX components, then PCESVN, then (TDX) TDX components,
 * each highest first. Negative when a goes first. */
static int level_cmp(const struct veil_dcap_tcb_level *a, const struct veil_dcap_tcb_level *b, int tdx)
{
    int c = memcmp(b->sgx, a->sgx, 16);
    if (c != 0)
        return c;
    if (a->pcesvn != b->pcesvn)
        return a->pcesvn > b->pcesvn ? -1 : 1;
    return tdx ? memcmp(b->tdx, a->tdx, 16) : 0;
}

/* A stable insertion sort, like Rust's sort_by (equal levels keep their served order). */
static void levels_sort(struct veil_dcap_tcb_level *v, size_t n, int tdx)
{
    for (size_t i = 1; i < n; i++) {
        struct veil_dcap_tcb_level x = v[i];
        size_t j = i;
        for (; j > 0 && level_cmp(&x, &v[j - 1], tdx) < 0; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

static VEIL_RESULT tcb_levels_parse(const json_t *info, struct veil_dcap_tcb_info *out)
{
    json_t *arr = NULL, *level;
    size_t i;
    VEIL_GUARD(get_array(info, "tcbLevels", 1, VEIL_DCAP_MAX_TCB_LEVELS, "tcbInfo", &arr));
    VEIL_ENSURE(json_array_size(arr) > 0, EV, "tcbInfo: no TCB levels");
    out->levels = calloc(json_array_size(arr), sizeof *out->levels);
    VEIL_ENSURE(out->levels != NULL, VEIL_ERR_NOMEM, "out of memory");
    json_array_foreach(arr, i, level) {
        VEIL_GUARD(tcb_level_parse(level, out->tdx, &out->levels[i]));
        out->level_count = i + 1;
    }
    levels_sort(out->levels, out->level_count, out->tdx);
    return VEIL_RESULT_OK;
}

/* mrsigner, attributes, attributesMask of tdxModule or of one tdxModuleIdentities entry. */
static VEIL_RESULT module_fields(const json_t *m, struct veil_dcap_module_identity *out)
{
    VEIL_GUARD(get_hex(m, "mrsigner", out->mrsigner, 48, "tdxModule"));
    VEIL_GUARD(get_hex(m, "attributes", out->attributes, 8, "tdxModule"));
    return get_hex(m, "attributesMask", out->attributes_mask, 8, "tdxModule");
}

static VEIL_RESULT module_level_parse(const json_t *level, struct veil_dcap_module_level *out)
{
    static const char what[] = "tdxModuleIdentities.tcbLevels";
    json_t *tcb = NULL;
    uint64_t isvsvn = 0;
    VEIL_ENSURE(json_is_object(level), EV, "%s: entries must be objects", what);
    VEIL_GUARD(get_object(level, "tcb", what, &tcb));
    VEIL_GUARD(get_uint(tcb, "isvsvn", UINT8_MAX, what, &isvsvn));
    out->isvsvn = (uint8_t)isvsvn;
    return level_status(level, what, &out->status);
}

static VEIL_RESULT module_identity_parse(const json_t *m, struct veil_dcap_module_identity *out)
{
    const char *id = NULL;
    json_t *arr = NULL, *level;
    size_t i;
    VEIL_ENSURE(json_is_object(m), EV, "tdxModuleIdentities: entries must be objects");
    VEIL_GUARD(veil_json_string(m, "id", 1, EV, "tdxModuleIdentities", &id));
    VEIL_ENSURE(strlen(id) < sizeof out->id, EV, "tdxModuleIdentities: id is too long");
    strcpy(out->id, id);
    VEIL_GUARD(module_fields(m, out));
    VEIL_GUARD(get_array(m, "tcbLevels", 1, VEIL_DCAP_MAX_TCB_LEVELS, "tdxModuleIdentities", &arr));
    out->levels = calloc(json_array_size(arr) + 1, sizeof *out->levels);
    VEIL_ENSURE(out->levels != NULL, VEIL_ERR_NOMEM, "out of memory");
    json_array_foreach(arr, i, level) {
        VEIL_GUARD(module_level_parse(level, &out->levels[i]));
        out->level_count = i + 1;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT tdx_module_parse(const json_t *info, struct veil_dcap_tcb_info *out)
{
    json_t *m = json_object_get(info, "tdxModule"), *arr = NULL, *id;
    size_t i;
    if (m != NULL) {
        VEIL_ENSURE(json_is_object(m), EV, "tcbInfo: tdxModule must be an object");
        VEIL_GUARD(module_fields(m, &out->module));
        out->has_module = 1;
    }
    VEIL_GUARD(get_array(info, "tdxModuleIdentities", 0, VEIL_DCAP_MAX_MODULE_IDENTITIES, "tcbInfo", &arr));
    out->identities = calloc(json_array_size(arr) + 1, sizeof *out->identities);
    VEIL_ENSURE(out->identities != NULL, VEIL_ERR_NOMEM, "out of memory");
    json_array_foreach(arr, i, id) {
        out->identity_count = i + 1; /* counted before parsing: cleanup frees what a failed entry allocated */
        VEIL_GUARD(module_identity_parse(id, &out->identities[i]));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT tcb_info_fields(const json_t *info, struct veil_dcap_tcb_info *out)
{
    const char *id = NULL;
    VEIL_GUARD(veil_json_string(info, "id", 1, EV, "tcbInfo", &id));
    VEIL_ENSURE(strcmp(id, "SGX") == 0 || strcmp(id, "TDX") == 0, EV, "tcbInfo: id is neither SGX nor TDX");
    out->tdx = strcmp(id, "TDX") == 0;
    VEIL_GUARD(get_uint(info, "version", UINT32_MAX, "tcbInfo", &out->version));
    VEIL_ENSURE(out->version == 3, VEIL_ERR_UNSUPPORTED, "tcbInfo: version %llu is not supported (3)",
                (unsigned long long)out->version);
    VEIL_GUARD(get_time(info, "issueDate", "tcbInfo", &out->issue_date));
    VEIL_GUARD(get_time(info, "nextUpdate", "tcbInfo", &out->next_update));
    VEIL_GUARD(get_hex(info, "fmspc", out->fmspc, VEIL_DCAP_FMSPC_SIZE, "tcbInfo"));
    return get_hex(info, "pceId", out->pceid, VEIL_DCAP_PCEID_SIZE, "tcbInfo");
}

void veil_dcap_tcb_info_cleanup(struct veil_dcap_tcb_info *t)
{
    for (size_t i = 0; t->identities != NULL && i < t->identity_count; i++)
        free(t->identities[i].levels);
    free(t->identities);
    free(t->levels);
    memset(t, 0, sizeof *t);
}

VEIL_RESULT veil_dcap_tcb_info_parse(const char *json, size_t size, struct veil_dcap_tcb_info *out)
{
    json_t *info VEIL_DEFER(veil_json_done) = NULL;
    memset(out, 0, sizeof *out);
    VEIL_GUARD(veil_json_load_object((const uint8_t *)json, size, VEIL_DCAP_MAX_COLLATERAL_SIZE, EV, "tcbInfo",
                                     &info));
    VEIL_GUARD(tcb_info_fields(info, out));
    VEIL_GUARD(tcb_levels_parse(info, out));
    if (out->tdx)
        VEIL_GUARD(tdx_module_parse(info, out));
    return VEIL_RESULT_OK;
}

/* ---- enclaveIdentity ------------------------------------------------------------------------------------- */

static VEIL_RESULT qe_level_parse(const json_t *level, struct veil_dcap_qe_level *out)
{
    static const char what[] = "enclaveIdentity.tcbLevels";
    json_t *tcb = NULL;
    uint64_t isvsvn = 0;
    VEIL_ENSURE(json_is_object(level), EV, "%s: entries must be objects", what);
    VEIL_GUARD(get_object(level, "tcb", what, &tcb));
    VEIL_GUARD(get_uint(tcb, "isvsvn", UINT16_MAX, what, &isvsvn));
    out->isvsvn = (uint16_t)isvsvn;
    return level_status(level, what, &out->status);
}

static VEIL_RESULT qe_fields(const json_t *id, struct veil_dcap_qe_identity *out)
{
    static const char what[] = "enclaveIdentity";
    const char *name = NULL;
    uint64_t prod = 0;
    VEIL_GUARD(veil_json_string(id, "id", 1, EV, what, &name));
    VEIL_ENSURE(strcmp(name, "QE") == 0 || strcmp(name, "TD_QE") == 0, EV, "%s: id is neither QE nor TD_QE", what);
    out->td_qe = strcmp(name, "TD_QE") == 0;
    VEIL_GUARD(get_uint(id, "version", UINT32_MAX, what, &out->version));
    VEIL_GUARD(get_time(id, "issueDate", what, &out->issue_date));
    VEIL_GUARD(get_time(id, "nextUpdate", what, &out->next_update));
    VEIL_GUARD(get_hex(id, "miscselect", out->miscselect, 4, what));
    VEIL_GUARD(get_hex(id, "miscselectMask", out->miscselect_mask, 4, what));
    VEIL_GUARD(get_hex(id, "attributes", out->attributes, 16, what));
    VEIL_GUARD(get_hex(id, "attributesMask", out->attributes_mask, 16, what));
    VEIL_GUARD(get_hex(id, "mrsigner", out->mrsigner, 32, what));
    VEIL_GUARD(get_uint(id, "isvprodid", UINT16_MAX, what, &prod));
    out->isvprodid = (uint16_t)prod;
    return VEIL_RESULT_OK;
}

void veil_dcap_qe_identity_cleanup(struct veil_dcap_qe_identity *q)
{
    free(q->levels);
    memset(q, 0, sizeof *q);
}

VEIL_RESULT veil_dcap_qe_identity_parse(const char *json, size_t size, struct veil_dcap_qe_identity *out)
{
    json_t *id VEIL_DEFER(veil_json_done) = NULL;
    json_t *arr = NULL, *level;
    size_t i;
    memset(out, 0, sizeof *out);
    VEIL_GUARD(veil_json_load_object((const uint8_t *)json, size, VEIL_DCAP_MAX_COLLATERAL_SIZE, EV,
                                     "enclaveIdentity", &id));
    VEIL_GUARD(qe_fields(id, out));
    VEIL_GUARD(get_array(id, "tcbLevels", 1, VEIL_DCAP_MAX_TCB_LEVELS, "enclaveIdentity", &arr));
    VEIL_ENSURE(json_array_size(arr) > 0, EV, "enclaveIdentity: no TCB levels");
    out->levels = calloc(json_array_size(arr), sizeof *out->levels);
    VEIL_ENSURE(out->levels != NULL, VEIL_ERR_NOMEM, "out of memory");
    json_array_foreach(arr, i, level) {
        VEIL_GUARD(qe_level_parse(level, &out->levels[i]));
        out->level_count = i + 1;
    }
    return VEIL_RESULT_OK;
}

/* ---- The collateral file --------------------------------------------------------------------------------- */

void veil_dcap_collateral_init(struct veil_dcap_collateral *c)
{
    memset(c, 0, sizeof *c);
}

void veil_dcap_collateral_cleanup(struct veil_dcap_collateral *c)
{
    free(c->pck_crl_issuer_chain);
    free(c->root_ca_crl);
    free(c->pck_crl);
    free(c->tcb_info_issuer_chain);
    free(c->tcb_info_json);
    free(c->qe_identity_issuer_chain);
    free(c->qe_identity_json);
    veil_dcap_tcb_info_cleanup(&c->tcb_info);
    veil_dcap_qe_identity_cleanup(&c->qe_identity);
    memset(c, 0, sizeof *c);
}

static VEIL_RESULT dup_string(const json_t *o, const char *key, char **out, size_t *size)
{
    const char *s = NULL;
    VEIL_GUARD(veil_json_string(o, key, 1, EV, "DCAP collateral", &s));
    size_t n = json_string_length(json_object_get(o, key));
    *out = malloc(n + 1);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(*out, s, n + 1);
    if (size != NULL)
        *size = n;
    return VEIL_RESULT_OK;
}

/* A hex string of any even length (the CRLs) into a malloc'd buffer. */
static VEIL_RESULT dup_hex(const json_t *o, const char *key, uint8_t **out, size_t *size)
{
    const char *s = NULL;
    VEIL_GUARD(veil_json_string(o, key, 1, EV, "DCAP collateral", &s));
    size_t n = strlen(s);
    VEIL_ENSURE(n > 0 && n % 2 == 0, EV, "DCAP collateral: %s is not hex", key);
    *out = malloc(n / 2);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    *size = n / 2;
    char name[96];
    snprintf(name, sizeof name, "DCAP collateral: \"%s\"", key);
    return veil_hex_decode(VEIL_HEX_ANY_CASE, s, n, *out, n / 2, EV, name);
}

static const char *const collateral_keys[] = {
    "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info", "tcb_info_signature",
    "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature", "pck_certificate_chain", NULL,
};

static VEIL_RESULT collateral_members(const json_t *o, struct veil_dcap_collateral *c)
{
    json_t *pck = json_object_get(o, "pck_certificate_chain");
    VEIL_ENSURE(pck == NULL || json_is_null(pck), VEIL_ERR_UNSUPPORTED,
                "DCAP collateral: pck_certificate_chain is not supported (the quote must carry its PCK chain)");
    VEIL_GUARD(dup_string(o, "pck_crl_issuer_chain", &c->pck_crl_issuer_chain, NULL));
    VEIL_GUARD(dup_hex(o, "root_ca_crl", &c->root_ca_crl, &c->root_ca_crl_size));
    VEIL_GUARD(dup_hex(o, "pck_crl", &c->pck_crl, &c->pck_crl_size));
    VEIL_GUARD(dup_string(o, "tcb_info_issuer_chain", &c->tcb_info_issuer_chain, NULL));
    VEIL_GUARD(dup_string(o, "tcb_info", &c->tcb_info_json, &c->tcb_info_json_size));
    VEIL_GUARD(get_hex(o, "tcb_info_signature", c->tcb_info_sig, VEIL_DCAP_SIG_SIZE, "DCAP collateral"));
    VEIL_GUARD(dup_string(o, "qe_identity_issuer_chain", &c->qe_identity_issuer_chain, NULL));
    VEIL_GUARD(dup_string(o, "qe_identity", &c->qe_identity_json, &c->qe_identity_json_size));
    return get_hex(o, "qe_identity_signature", c->qe_identity_sig, VEIL_DCAP_SIG_SIZE, "DCAP collateral");
}

VEIL_RESULT veil_dcap_collateral_parse(const uint8_t *json, size_t size, struct veil_dcap_collateral *c)
{
    json_t *o VEIL_DEFER(veil_json_done) = NULL;
    veil_dcap_collateral_cleanup(c);
    VEIL_GUARD(veil_json_load_object(json, size, VEIL_DCAP_MAX_COLLATERAL_SIZE, EV, "DCAP collateral", &o));
    VEIL_GUARD(veil_json_only_keys(o, collateral_keys, EV, "DCAP collateral"));
    VEIL_GUARD(collateral_members(o, c));
    VEIL_GUARD(veil_dcap_tcb_info_parse(c->tcb_info_json, c->tcb_info_json_size, &c->tcb_info));
    return veil_dcap_qe_identity_parse(c->qe_identity_json, c->qe_identity_json_size, &c->qe_identity);
}

static VEIL_RESULT hex_member(json_t *o, const char *key, const uint8_t *data, size_t size)
{
    char *hex = malloc(2 * size + 1);
    VEIL_ENSURE(hex != NULL, VEIL_ERR_NOMEM, "out of memory");
    veil_hex_encode(data, size, hex);
    json_t *v = json_string(hex);
    free(hex);
    return veil_json_set(o, key, v);
}

static VEIL_RESULT dump_members(json_t *o, const struct veil_dcap_collateral *c)
{
    VEIL_GUARD(veil_json_set(o, "pck_crl_issuer_chain", json_string(c->pck_crl_issuer_chain)));
    VEIL_GUARD(hex_member(o, "root_ca_crl", c->root_ca_crl, c->root_ca_crl_size));
    VEIL_GUARD(hex_member(o, "pck_crl", c->pck_crl, c->pck_crl_size));
    VEIL_GUARD(veil_json_set(o, "tcb_info_issuer_chain", json_string(c->tcb_info_issuer_chain)));
    VEIL_GUARD(veil_json_set(o, "tcb_info", json_stringn(c->tcb_info_json, c->tcb_info_json_size)));
    VEIL_GUARD(hex_member(o, "tcb_info_signature", c->tcb_info_sig, VEIL_DCAP_SIG_SIZE));
    VEIL_GUARD(veil_json_set(o, "qe_identity_issuer_chain", json_string(c->qe_identity_issuer_chain)));
    VEIL_GUARD(veil_json_set(o, "qe_identity", json_stringn(c->qe_identity_json, c->qe_identity_json_size)));
    return hex_member(o, "qe_identity_signature", c->qe_identity_sig, VEIL_DCAP_SIG_SIZE);
}

VEIL_RESULT veil_dcap_collateral_dump(const struct veil_dcap_collateral *c, char **out)
{
    json_t *o VEIL_DEFER(veil_json_done) = json_object();
    VEIL_ENSURE(o != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(dump_members(o, c));
    *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}
