/* SPDX-License-Identifier: Apache-2.0 */
/* Reference-value policies (docs/spec/policy.md): strict JSON parsing, then one check per claim in a fixed order;
 * the first failed check names itself in veil_last_error(). Default deny everywhere. What each TEE's section holds
 * and how its claims are judged is its descriptor's (policy rules, attest/tee.h); this file reads the document,
 * the members the sections share, and admits or refuses a TEE. */
#include <stdlib.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "attest/policy.h"
#include "attest/tee_table.h"
#include "core/limits.h"
#include "core/secret.h"

struct veil_policy {
    uint64_t min_model_version; /* not judged here: the key broker returns it with the key (veil_model_open) */
    uint64_t lease_ttl_s;       /* not judged here either: the key broker sends it with the key (0: absent) */
    struct veil_policy_section section[VEIL_TEE_ROWS]; /* one per row of the TEE table, in its order */
};

static const char *const tcb_known[] = {"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
                                        "ConfigurationAndSWHardeningNeeded", "OutOfDate",
                                        "OutOfDateConfigurationNeeded", NULL};

static void section_defaults(struct veil_policy_section *s)
{
    s->present = 1;
    strcpy(s->tcb_statuses[0], "UpToDate");
    s->tcb_count = 1;
}

/* ---- parsing ------------------------------------------------------------------------------------------- */

static VEIL_RESULT get_array(const json_t *obj, const char *key, const char *what, json_t **out)
{
    json_t *a = json_object_get(obj, key);
    *out = a;
    if (a == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_array(a), VEIL_ERR_ARG, "%s: \"%s\" must be a list", what, key);
    VEIL_ENSURE(json_array_size(a) <= VEIL_POLICY_MAX_LIST, VEIL_ERR_LIMIT, "%s: \"%s\" has more than %u entries",
                what, key, VEIL_POLICY_MAX_LIST);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_policy_hex_list_parse(const json_t *obj, const char *key, const char *what, size_t size,
                                       struct veil_policy_hex_list *out)
{
    json_t *a = NULL, *v;
    size_t i;
    char name[64];
    VEIL_GUARD(get_array(obj, key, what, &a));
    if (a == NULL || json_array_size(a) == 0)
        return VEIL_RESULT_OK;
    out->items = calloc(json_array_size(a), sizeof *out->items);
    VEIL_ENSURE(out->items != NULL, VEIL_ERR_NOMEM, "out of memory");
    json_array_foreach(a, i, v) {
        snprintf(name, sizeof name, "%s: %s[%zu]", what, key, i);
        VEIL_ENSURE(json_is_string(v), VEIL_ERR_ARG, "%s must be a hex string", name);
        struct veil_result r = veil_hex_decode(VEIL_HEX_ANY_CASE, json_string_value(v), json_string_length(v),
                                               out->items[i], size, VEIL_ERR_ARG, name);
        VEIL_ENSURE(veil_ok(r), VEIL_ERR_ARG, "%s must be %zu hex digits", name, 2 * size);
        out->count = i + 1;
    }
    return VEIL_RESULT_OK;
}

void veil_policy_hex_list_cleanup(struct veil_policy_hex_list *l)
{
    free(l->items);
    *l = (struct veil_policy_hex_list){0};
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

static VEIL_RESULT parse_tcb(const json_t *obj, const char *what, struct veil_policy_section *t)
{
    json_t *a = NULL, *v;
    size_t i;
    VEIL_GUARD(get_array(obj, "tcb_statuses", what, &a));
    if (a == NULL)
        return VEIL_RESULT_OK; /* default ["UpToDate"] */
    VEIL_ENSURE(json_array_size(a) <= VEIL_POLICY_MAX_TCB, VEIL_ERR_LIMIT, "%s: too many tcb_statuses", what);
    t->tcb_count = 0;
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        VEIL_ENSURE(s != NULL && in_list(s, tcb_known), VEIL_ERR_ARG,
                    "%s: tcb_statuses[%zu] is not a TCB status (UpToDate, SWHardeningNeeded, ConfigurationNeeded, "
                    "ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded)", what, i);
        strcpy(t->tcb_statuses[i], s);
        t->tcb_count = i + 1;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_advisories(const json_t *obj, const char *what, struct veil_policy_section *t)
{
    json_t *a = NULL, *v;
    size_t i;
    VEIL_GUARD(get_array(obj, "deny_advisories", what, &a));
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        VEIL_ENSURE(s != NULL && s[0] != '\0' && strlen(s) < VEIL_POLICY_ADVISORY_SIZE, VEIL_ERR_ARG,
                    "%s: deny_advisories[%zu] must be an advisory id such as INTEL-SA-00334", what, i);
        strcpy(t->deny_advisories[i], s);
        t->deny_count = i + 1;
    }
    return VEIL_RESULT_OK;
}

/* min_svn, max_vmpl (0..3), product_id, allow_debug: each absent unless the TEE lists it among its keys. */
static VEIL_RESULT parse_numbers(const json_t *obj, const char *what, struct veil_policy_section *t)
{
    uint64_t v = 0;
    VEIL_GUARD(veil_json_uint(obj, "min_svn", 0, UINT32_MAX, VEIL_ERR_ARG, what, &v));
    t->min_svn = (uint32_t)v;
    v = 0;
    VEIL_GUARD(veil_json_uint(obj, "max_vmpl", 0, 3, VEIL_ERR_ARG, what, &v));
    t->max_vmpl = (uint32_t)v;
    if (json_object_get(obj, "product_id") != NULL) {
        VEIL_GUARD(veil_json_uint(obj, "product_id", 1, UINT16_MAX, VEIL_ERR_ARG, what, &v));
        t->product_id = (uint16_t)v;
        t->has_product_id = 1;
    }
    return veil_json_bool(obj, "allow_debug", VEIL_ERR_ARG, what, &t->allow_debug);
}

/* The TEE's section: its keys only, the shared members, then its own (rules.parse). */
static VEIL_RESULT parse_section(const json_t *root, const struct veil_tee_desc *tee, struct veil_policy_section *t)
{
    char what[32];
    snprintf(what, sizeof what, "policy: %s", tee->name);
    json_t *obj = json_object_get(root, tee->name);
    if (obj == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(obj), VEIL_ERR_ARG, "%s must be an object", what);
    VEIL_GUARD(veil_json_only_keys(obj, tee->policy.keys, VEIL_ERR_ARG, what));
    section_defaults(t);
    VEIL_GUARD(veil_policy_hex_list_parse(obj, "measurements", what, tee->measurement_size, &t->measurements));
    if (tee->signer_size > 0)
        VEIL_GUARD(veil_policy_hex_list_parse(obj, "signers", what, tee->signer_size, &t->signers));
    VEIL_GUARD(parse_numbers(obj, what, t));
    VEIL_GUARD(parse_tcb(obj, what, t));
    VEIL_GUARD(parse_advisories(obj, what, t));
    return tee->policy.parse != NULL ? tee->policy.parse(obj, what, t) : VEIL_RESULT_OK;
}

/* The sections of the TEEs a section admits, then of those an allow flag admits (sgx, tdx, snp, then sim). */
static VEIL_RESULT parse_sections(const json_t *root, struct veil_policy *p, int flagged)
{
    for (size_t i = 0; i < VEIL_TEE_ROWS; i++) {
        const struct veil_tee_desc *tee = veil_tee_at(i);
        if (tee->policy.keys != NULL && (tee->policy.allow_flag != NULL) == flagged)
            VEIL_GUARD(parse_section(root, tee, &p->section[i]));
    }
    return VEIL_RESULT_OK;
}

/* "version", "min_model_version", "lease_ttl_s", each TEE's allow flag and section name. */
static void top_keys(const char *keys[3 + 2 * VEIL_TEE_ROWS + 1])
{
    size_t n = 0;
    keys[n++] = "version";
    keys[n++] = "min_model_version";
    keys[n++] = "lease_ttl_s";
    for (size_t i = 0; i < VEIL_TEE_ROWS; i++) {
        const struct veil_tee_desc *tee = veil_tee_at(i);
        if (tee->policy.allow_flag != NULL)
            keys[n++] = tee->policy.allow_flag;
        if (tee->policy.keys != NULL)
            keys[n++] = tee->name;
    }
    keys[n] = NULL;
}

static VEIL_RESULT parse_flags(const json_t *root, struct veil_policy *p)
{
    for (size_t i = 0; i < VEIL_TEE_ROWS; i++) {
        const char *flag = veil_tee_at(i)->policy.allow_flag;
        if (flag != NULL)
            VEIL_GUARD(veil_json_bool(root, flag, VEIL_ERR_ARG, "policy", &p->section[i].allowed));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_top(const json_t *root, struct veil_policy *p)
{
    const char *keys[3 + 2 * VEIL_TEE_ROWS + 1];
    uint64_t version = 1;
    top_keys(keys);
    VEIL_GUARD(veil_json_only_keys(root, keys, VEIL_ERR_ARG, "policy"));
    VEIL_GUARD(veil_json_uint(root, "version", 0, UINT32_MAX, VEIL_ERR_ARG, "policy", &version));
    VEIL_ENSURE(version == 1, VEIL_ERR_ARG, "policy: version %llu is not supported (1)",
                (unsigned long long)version);
    VEIL_GUARD(parse_flags(root, p));
    VEIL_GUARD(veil_json_uint(root, "min_model_version", 0, UINT64_MAX >> 1, VEIL_ERR_ARG, "policy",
                              &p->min_model_version));
    VEIL_GUARD(veil_json_uint(root, "lease_ttl_s", 0, VEIL_POLICY_LEASE_TTL_MAX_S, VEIL_ERR_ARG, "policy",
                              &p->lease_ttl_s));
    VEIL_ENSURE(json_object_get(root, "lease_ttl_s") == NULL || p->lease_ttl_s >= VEIL_POLICY_LEASE_TTL_MIN_S,
                VEIL_ERR_ARG, "policy: lease_ttl_s must be from %u to %u seconds", VEIL_POLICY_LEASE_TTL_MIN_S,
                VEIL_POLICY_LEASE_TTL_MAX_S);
    VEIL_GUARD(parse_sections(root, p, 0));
    return parse_sections(root, p, 1);
}

static VEIL_RESULT policy_parse_impl(const char *json, size_t size, veil_policy **out)
{
    VEIL_ENSURE(out != NULL && (json != NULL || size == 0), VEIL_ERR_ARG, "no policy or output given");
    VEIL_DEFER(veil_json_done) json_t *root = NULL;
    VEIL_GUARD(veil_json_load_object((const uint8_t *)json, size, VEIL_POLICY_MAX_SIZE, VEIL_ERR_ARG, "policy",
                                     &root));
    struct veil_policy *p = calloc(1, sizeof *p);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = parse_top(root, p);
    if (!veil_ok(r)) {
        veil_policy_free(p);
        return r;
    }
    *out = p;
    return VEIL_RESULT_OK;
}

veil_status veil_policy_parse(const char *json, size_t size, veil_policy **out)
{
    veil_error_clear();
    if (out != NULL)
        *out = NULL;
    return policy_parse_impl(json, size, out).status;
}

void veil_policy_free(veil_policy *policy)
{
    if (policy == NULL)
        return;
    for (size_t i = 0; i < VEIL_TEE_ROWS; i++) {
        struct veil_policy_section *t = &policy->section[i];
        veil_policy_hex_list_cleanup(&t->measurements);
        veil_policy_hex_list_cleanup(&t->signers);
        if (t->ext != NULL && veil_tee_at(i)->policy.free_ext != NULL)
            veil_tee_at(i)->policy.free_ext(t->ext);
    }
    free(policy);
}

uint64_t veil_policy_min_model_version(const veil_policy *policy)
{
    return policy != NULL ? policy->min_model_version : 0;
}

uint64_t veil_policy_lease_ttl_s(const veil_policy *policy)
{
    return policy != NULL && policy->lease_ttl_s != 0 ? policy->lease_ttl_s : VEIL_POLICY_LEASE_TTL_DEFAULT_S;
}

veil_status veil_policy_default(veil_policy **out)
{
    veil_error_clear();
    if (out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    struct veil_policy *p = calloc(1, sizeof *p);
    if ((*out = p) == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    for (size_t i = 0; i < VEIL_TEE_ROWS; i++)
        if (veil_tee_at(i)->policy.in_default)
            section_defaults(&p->section[i]);
    return VEIL_OK;
}

/* ---- checks shared by the TEEs' rules ---------------------------------------------------------------------- */

static int hex_in_list(const uint8_t *v, size_t size, const struct veil_policy_hex_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        if (memcmp(list->items[i], v, size) == 0)
            return 1;
    return 0;
}

VEIL_RESULT veil_policy_list_check(const char *what, const char *tee, const uint8_t *v, size_t size, size_t want,
                                   const struct veil_policy_hex_list *list)
{
    char hex[2 * VEIL_MEASUREMENT_MAX + 1];
    VEIL_ENSURE(list->count > 0, VEIL_ERR_POLICY, "policy: no %s is allowed for %s (the list is empty)", what, tee);
    VEIL_ENSURE(size == want && size <= VEIL_MEASUREMENT_MAX, VEIL_ERR_POLICY,
                "policy: the evidence has no %zu-byte %s for %s", want, what, tee);
    veil_hex_encode(v, size, hex);
    VEIL_ENSURE(hex_in_list(v, size, list), VEIL_ERR_POLICY, "policy: %s %s is not allowed for %s", what, hex, tee);
    return VEIL_RESULT_OK;
}

/* The descriptor of the claims' TEE: the rules' checks run only for a TEE of the table. */
static VEIL_RESULT claims_tee(const struct veil_claims *c, const struct veil_tee_desc **out)
{
    *out = veil_tee_find(c->tee);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_INTERNAL, "policy: no descriptor for TEE type %d", (int)c->tee);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_policy_check_measurement(const struct veil_policy_section *s, const struct veil_claims *c)
{
    const struct veil_tee_desc *tee = NULL;
    VEIL_GUARD(claims_tee(c, &tee));
    return veil_policy_list_check("measurement", tee->name, c->measurement, c->measurement_size,
                                  tee->measurement_size, &s->measurements);
}

VEIL_RESULT veil_policy_check_signer(const struct veil_policy_section *s, const struct veil_claims *c)
{
    const struct veil_tee_desc *tee = NULL;
    VEIL_GUARD(claims_tee(c, &tee));
    if (s->signers.count == 0)
        return VEIL_RESULT_OK;
    return veil_policy_list_check("signer", tee->name, c->signer, c->signer_size, tee->signer_size, &s->signers);
}

VEIL_RESULT veil_policy_check_product_id(const struct veil_policy_section *s, const struct veil_claims *c)
{
    VEIL_ENSURE(!s->has_product_id || c->product_id == s->product_id, VEIL_ERR_POLICY,
                "policy: product id %u is not allowed for %s (expected %u)", c->product_id, veil_tee_name(c->tee),
                s->product_id);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_policy_check_svn(const struct veil_policy_section *s, const struct veil_claims *c)
{
    VEIL_ENSURE(c->svn >= s->min_svn, VEIL_ERR_POLICY, "policy: svn %u is below the minimum %u for %s", c->svn,
                s->min_svn, veil_tee_name(c->tee));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_policy_check_debug(const struct veil_policy_section *s, const struct veil_claims *c)
{
    VEIL_ENSURE(!c->debug || s->allow_debug, VEIL_ERR_POLICY, "policy: debug %s TEEs are not allowed",
                veil_tee_name(c->tee));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_policy_check_tcb_status(const struct veil_policy_section *s, const struct veil_claims *c)
{
    char status[sizeof c->tcb_status + 1];
    memcpy(status, c->tcb_status, sizeof c->tcb_status);
    status[sizeof c->tcb_status] = '\0';
    int accepted = 0;
    for (size_t i = 0; i < s->tcb_count; i++)
        accepted |= strcmp(status, s->tcb_statuses[i]) == 0;
    VEIL_ENSURE(accepted, VEIL_ERR_POLICY, "policy: TCB status %s is not accepted for %s",
                status[0] != '\0' ? status : "(none)", veil_tee_name(c->tee));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_policy_check_advisories(const struct veil_policy_section *s, const struct veil_claims *c)
{
    size_t n = c->advisory_count < VEIL_MAX_ADVISORIES ? c->advisory_count : VEIL_MAX_ADVISORIES;
    for (size_t i = 0; i < n; i++) {
        char id[sizeof c->advisories[i] + 1];
        memcpy(id, c->advisories[i], sizeof c->advisories[i]);
        id[sizeof c->advisories[i]] = '\0';
        for (size_t k = 0; k < s->deny_count; k++)
            VEIL_ENSURE(strcmp(id, s->deny_advisories[k]) != 0, VEIL_ERR_POLICY,
                        "policy: advisory %s is denied for %s", id, veil_tee_name(c->tee));
    }
    return VEIL_RESULT_OK;
}

/* ---- judging ----------------------------------------------------------------------------------------------- */

/* The claims' TEE must be one of the table, admitted by its allow flag or by its section. */
static VEIL_RESULT check_admitted(const struct veil_policy *p, const struct veil_claims *c,
                                  const struct veil_tee_desc **tee_out, const struct veil_policy_section **out)
{
    for (size_t i = 0; i < VEIL_TEE_ROWS; i++) {
        const struct veil_tee_desc *tee = veil_tee_at(i);
        if (tee->type != c->tee)
            continue;
        const struct veil_policy_section *s = &p->section[i];
        if (tee->policy.allow_flag != NULL)
            VEIL_ENSURE(s->allowed, VEIL_ERR_POLICY, "policy: %s", tee->policy.refusal);
        else
            VEIL_ENSURE(s->present, VEIL_ERR_POLICY, "policy: tee %s is not allowed", tee->name);
        *tee_out = tee;
        *out = s;
        return VEIL_RESULT_OK;
    }
    VEIL_BAIL(VEIL_ERR_POLICY, "policy: tee %s is not allowed", veil_tee_name(c->tee));
}

static VEIL_RESULT check_impl(const struct veil_policy *p, const struct veil_claims *c, const uint8_t *expected)
{
    VEIL_ENSURE(p != NULL && c != NULL, VEIL_ERR_ARG, "no policy or claims given");
    const struct veil_tee_desc *tee = NULL;
    const struct veil_policy_section *s = NULL;
    VEIL_GUARD(check_admitted(p, c, &tee, &s));
    if (tee->policy.check != NULL)
        VEIL_GUARD(tee->policy.check(s, c));
    VEIL_ENSURE(expected == NULL || veil_ct_compare(expected, c->report_data, VEIL_REPORT_DATA_SIZE) == 0,
                VEIL_ERR_POLICY, "policy: report data does not match the expected value");
    return VEIL_RESULT_OK;
}

veil_status veil_policy_check(const veil_policy *policy, const struct veil_claims *claims,
                              const uint8_t *expected_report_data)
{
    veil_error_clear();
    return check_impl(policy, claims, expected_report_data).status;
}
