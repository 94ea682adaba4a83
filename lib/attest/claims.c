/* SPDX-License-Identifier: Apache-2.0 */
/* veil_claims_to_json: the normalized claims as one JSON object (hex for byte strings); the TEE's descriptor adds
 * the members only it fills. */
#include <string.h>

#include "attest/attest_internal.h"
#include "attest/tee.h"

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

/* TDX MROWNER / MROWNERCONFIG when present, then the members the TEE's descriptor adds (SNP: VMPL and TCB). */
static VEIL_RESULT claims_json_tee(const struct veil_claims *c, json_t *j)
{
    if (c->mr_owner_size > 0)
        VEIL_GUARD(set_hex(j, "mrowner", c->mr_owner, c->mr_owner_size));
    if (c->mr_owner_config_size > 0)
        VEIL_GUARD(set_hex(j, "mrownerconfig", c->mr_owner_config, c->mr_owner_config_size));
    const struct veil_tee_desc *tee = veil_tee_find(c->tee);
    if (tee == NULL || tee->claims_json == NULL)
        return VEIL_RESULT_OK;
    return tee->claims_json(c, j);
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
