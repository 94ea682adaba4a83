/* SPDX-License-Identifier: Apache-2.0 */
/* The evidence envelope (docs/spec/evidence.md): veil_evidence_collect hands the request to the provider of its
 * TEE and serializes what it returns; veil_evidence_verify reads the envelope (or a raw quote/report) and hands
 * it to the verifier of its TEE, which returns normalized claims. Both find the TEE in the table (tee.c). */
#include <stdlib.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "attest/tee.h"
#include "core/limits.h"

/* ---- the envelope ----------------------------------------------------------------------------------------- */

VEIL_RESULT veil_evidence_envelope(const struct veil_tee_desc *tee, json_t **out)
{
    json_t *j = json_object();
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = j;
    return veil_json_set(j, "tee", json_string(tee->name));
}

VEIL_RESULT veil_evidence_set_b64(json_t *j, const char *key, const uint8_t *data, size_t size)
{
    char *s = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, data, size, &s));
    struct veil_result r = veil_json_set(j, key, json_string(s));
    free(s);
    return r;
}

/* ---- collection ------------------------------------------------------------------------------------------- */

static VEIL_RESULT collect_json(veil_tee type, const struct veil_provider_config *config, const uint8_t *rd,
                                const struct veil_tsm_hook *hook, json_t **out)
{
    const struct veil_tee_desc *tee = veil_tee_find(type);
    VEIL_ENSURE(tee != NULL && tee->collect != NULL, VEIL_ERR_ARG, "unknown TEE type %d", (int)type);
    return tee->collect(config, rd, hook, out);
}

VEIL_RESULT veil_evidence_collect_hooked(veil_tee tee, const struct veil_provider_config *config,
                                         const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                         const struct veil_tsm_hook *hook, char **evidence_out)
{
    VEIL_ENSURE(report_data != NULL && evidence_out != NULL, VEIL_ERR_ARG, "no report data or output given");
    static const struct veil_provider_config defaults = {0};
    if (config == NULL)
        config = &defaults;
    if (tee == VEIL_TEE_AUTO)
        VEIL_GUARD(veil_tee_detect_hooked(config, hook, &tee));
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(collect_json(tee, config, report_data, hook, &j));
    char *s = json_dumps(j, JSON_COMPACT);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    *evidence_out = s;
    return VEIL_RESULT_OK;
}

veil_status veil_evidence_collect(veil_tee tee, const struct veil_provider_config *config,
                                  const uint8_t report_data[VEIL_REPORT_DATA_SIZE], char **evidence_out)
{
    veil_error_clear();
    if (evidence_out != NULL)
        *evidence_out = NULL;
    return veil_evidence_collect_hooked(tee, config, report_data, NULL, evidence_out).status;
}

/* ---- verification ----------------------------------------------------------------------------------------- */

static int looks_like_json(const uint8_t *data, size_t size)
{
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
        i++;
    return i < size && data[i] == '{';
}

static const char *raw_name(const struct veil_tee_desc *tee)
{
    return tee->verify_raw != NULL ? tee->name : NULL;
}

static VEIL_RESULT verify_raw(const uint8_t *data, size_t size, veil_tee type,
                              const struct veil_verify_options *options, struct veil_claims *claims)
{
    const struct veil_tee_desc *tee = veil_tee_find(type);
    if (tee == NULL || tee->verify_raw == NULL) {
        char names[128];
        veil_tee_join(names, sizeof names, raw_name, " or ");
        VEIL_BAIL(VEIL_ERR_EVIDENCE, "evidence is not JSON; name its type (%s) to verify a raw quote or report",
                  names);
    }
    return tee->verify_raw(data, size, options, claims);
}

static VEIL_RESULT verify_json(const uint8_t *data, size_t size, veil_tee type,
                               const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_DEFER(veil_json_done) json_t *j = NULL;
    VEIL_GUARD(veil_json_load_object(data, size, VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_EVIDENCE, "evidence", &j));
    const char *name = NULL;
    VEIL_GUARD(veil_json_string(j, "tee", 1, VEIL_ERR_EVIDENCE, "evidence", &name));
    const struct veil_tee_desc *tee = veil_tee_find_name(name);
    VEIL_ENSURE(tee != NULL && tee->verify != NULL, VEIL_ERR_EVIDENCE, "evidence: unknown tee \"%.32s\"", name);
    VEIL_ENSURE(type == VEIL_TEE_AUTO || type == tee->type, VEIL_ERR_EVIDENCE, "evidence is for %s, not %s",
                tee->name, veil_tee_name(type));
    return tee->verify(j, options, claims);
}

static VEIL_RESULT verify_impl(const uint8_t *evidence, size_t size, veil_tee type,
                               const struct veil_verify_options *options, struct veil_claims *claims)
{
    VEIL_ENSURE(claims != NULL, VEIL_ERR_ARG, "no claims output given");
    *claims = (struct veil_claims){0};
    VEIL_ENSURE(evidence != NULL && size > 0, VEIL_ERR_EVIDENCE, "evidence is empty");
    VEIL_ENSURE(options != NULL, VEIL_ERR_ARG, "no verification options given");
    VEIL_ENSURE(type == VEIL_TEE_AUTO || veil_tee_find(type) != NULL, VEIL_ERR_ARG, "unknown TEE type %d",
                (int)type);
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
