/* SPDX-License-Identifier: Apache-2.0 */
/* Verified claims <-> JSON (the layout of veil_claims_to_json), for the broker's sessions and tokens. */
#include <stdlib.h>
#include <string.h>

#include "core/hex.h"
#include "core/json.h"
#include "kbs/kbs.h"

static const char what[] = "claims";

VEIL_RESULT veil_kbs_claims_to_json(const struct veil_claims *claims, json_t **out)
{
    char *text = NULL;
    veil_status st = veil_claims_to_json(claims, &text);
    if (st != VEIL_OK)
        return (struct veil_result){st};
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    free(text);
    VEIL_ENSURE(j != NULL, VEIL_ERR_INTERNAL, "claims: cannot re-read the claims JSON");
    *out = j;
    return VEIL_RESULT_OK;
}

/* An optional hex member of at most max bytes; *size 0 when absent. */
static VEIL_RESULT hex_member(const json_t *j, const char *key, int required, uint8_t *buf, size_t max,
                              size_t *size)
{
    const char *s = NULL;
    VEIL_GUARD(veil_json_string(j, key, required, VEIL_ERR_FORMAT, what, &s));
    *size = 0;
    if (s == NULL)
        return VEIL_RESULT_OK;
    size_t len = strlen(s);
    VEIL_ENSURE(len > 0 && len % 2 == 0 && len / 2 <= max, VEIL_ERR_FORMAT, "claims: \"%s\" has a bad size", key);
    VEIL_GUARD(veil_hex_decode(VEIL_HEX_LOWER, s, len, buf, len / 2, VEIL_ERR_FORMAT, key));
    *size = len / 2;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT rtmr_member(const json_t *j, struct veil_claims *c)
{
    const json_t *a = json_object_get(j, "rtmr");
    if (a == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_array(a) && json_array_size(a) <= 4, VEIL_ERR_FORMAT, "claims: bad \"rtmr\"");
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        VEIL_ENSURE(s != NULL, VEIL_ERR_FORMAT, "claims: bad \"rtmr\"");
        VEIL_GUARD(veil_hex_decode(VEIL_HEX_LOWER, s, strlen(s), c->rtmr[i], 48, VEIL_ERR_FORMAT, "rtmr"));
    }
    c->rtmr_count = json_array_size(a);
    return VEIL_RESULT_OK;
}

/* An SNP TCB object {"bootloader","tee","snp","microcode","fmc"}: every member 0..255; absent object: zeros. */
static VEIL_RESULT snp_tcb_member(const json_t *j, const char *key, struct veil_snp_tcb *t)
{
    static const char *const keys[] = {"bootloader", "tee", "snp", "microcode", "fmc", NULL};
    const json_t *o = json_object_get(j, key);
    if (o == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(o), VEIL_ERR_FORMAT, "claims: bad \"%s\"", key);
    VEIL_GUARD(veil_json_only_keys(o, keys, VEIL_ERR_FORMAT, what));
    uint64_t v[5] = {0};
    for (size_t i = 0; i < 5; i++)
        VEIL_GUARD(veil_json_uint(o, keys[i], 1, UINT8_MAX, VEIL_ERR_FORMAT, what, &v[i]));
    *t = (struct veil_snp_tcb){.bootloader = (uint8_t)v[0], .tee = (uint8_t)v[1], .snp = (uint8_t)v[2],
                               .microcode = (uint8_t)v[3], .fmc = (uint8_t)v[4]};
    return VEIL_RESULT_OK;
}

static VEIL_RESULT advisories_member(const json_t *j, struct veil_claims *c)
{
    const json_t *a = json_object_get(j, "advisories");
    VEIL_ENSURE(json_is_array(a) && json_array_size(a) <= VEIL_MAX_ADVISORIES, VEIL_ERR_FORMAT,
                "claims: bad \"advisories\"");
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *v = json_array_get(a, i);
        VEIL_ENSURE(json_is_string(v) && json_string_length(v) < sizeof c->advisories[i], VEIL_ERR_FORMAT,
                    "claims: bad advisory");
        memcpy(c->advisories[i], json_string_value(v), json_string_length(v) + 1);
    }
    c->advisory_count = json_array_size(a);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT scalars(const json_t *j, struct veil_claims *c)
{
    uint64_t product_id = 0, svn = 0, vmpl = 0;
    VEIL_GUARD(veil_json_uint(j, "product_id", 1, UINT16_MAX, VEIL_ERR_FORMAT, what, &product_id));
    VEIL_GUARD(veil_json_uint(j, "svn", 1, UINT32_MAX, VEIL_ERR_FORMAT, what, &svn));
    VEIL_GUARD(veil_json_uint(j, "vmpl", 0, UINT32_MAX, VEIL_ERR_FORMAT, what, &vmpl));
    VEIL_ENSURE(json_is_boolean(json_object_get(j, "debug")), VEIL_ERR_FORMAT, "claims: bad \"debug\"");
    c->product_id = (uint16_t)product_id;
    c->svn = (uint32_t)svn;
    c->vmpl = (uint32_t)vmpl;
    c->debug = json_is_true(json_object_get(j, "debug"));
    const char *tcb = NULL;
    VEIL_GUARD(veil_json_string(j, "tcb_status", 1, VEIL_ERR_FORMAT, what, &tcb));
    VEIL_ENSURE(strlen(tcb) < sizeof c->tcb_status, VEIL_ERR_FORMAT, "claims: \"tcb_status\" is too long");
    memcpy(c->tcb_status, tcb, strlen(tcb) + 1);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT claims_parse(const json_t *j, struct veil_claims *c)
{
    static const char *const keys[] = {"tee", "report_data", "measurement", "signer", "config_id", "mrowner",
                                       "mrownerconfig", "rtmr", "product_id", "svn", "debug", "vmpl",
                                       "reported_tcb", "committed_tcb", "tcb_status", "advisories", NULL};
    VEIL_ENSURE(json_is_object(j), VEIL_ERR_FORMAT, "claims: not an object");
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_FORMAT, what));
    const char *tee = NULL;
    VEIL_GUARD(veil_json_string(j, "tee", 1, VEIL_ERR_FORMAT, what, &tee));
    VEIL_ENSURE(veil_tee_from_name(tee, &c->tee) == VEIL_OK && c->tee != VEIL_TEE_AUTO, VEIL_ERR_FORMAT,
                "claims: unknown tee");
    size_t rd_size = 0;
    VEIL_GUARD(hex_member(j, "report_data", 1, c->report_data, sizeof c->report_data, &rd_size));
    VEIL_ENSURE(rd_size == sizeof c->report_data, VEIL_ERR_FORMAT, "claims: \"report_data\" has a bad size");
    VEIL_GUARD(hex_member(j, "measurement", 0, c->measurement, sizeof c->measurement, &c->measurement_size));
    VEIL_GUARD(hex_member(j, "signer", 0, c->signer, sizeof c->signer, &c->signer_size));
    VEIL_GUARD(hex_member(j, "config_id", 0, c->config_id, sizeof c->config_id, &c->config_id_size));
    VEIL_GUARD(hex_member(j, "mrowner", 0, c->mr_owner, sizeof c->mr_owner, &c->mr_owner_size));
    VEIL_GUARD(hex_member(j, "mrownerconfig", 0, c->mr_owner_config, sizeof c->mr_owner_config,
                          &c->mr_owner_config_size));
    VEIL_GUARD(rtmr_member(j, c));
    VEIL_GUARD(snp_tcb_member(j, "reported_tcb", &c->reported_tcb));
    VEIL_GUARD(snp_tcb_member(j, "committed_tcb", &c->committed_tcb));
    VEIL_GUARD(scalars(j, c));
    return advisories_member(j, c);
}

VEIL_RESULT veil_kbs_claims_from_json(const json_t *j, struct veil_claims *out)
{
    struct veil_claims c;
    memset(&c, 0, sizeof c);
    struct veil_result r = claims_parse(j, &c);
    if (veil_ok(r))
        *out = c;
    return r;
}
