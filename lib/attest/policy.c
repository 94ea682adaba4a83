/* SPDX-License-Identifier: Apache-2.0 */
/* Reference-value policies (docs/spec/policy.md): strict JSON parsing, then one check per claim in a fixed order;
 * the first failed check names itself in veil_last_error(). Default deny everywhere. */
#include <stdlib.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "core/limits.h"
#include "core/secret.h"

#define POLICY_MAX_TCB 8u
#define POLICY_ADVISORY_SIZE 32u
#define POLICY_TDX_REG_SIZE 48u

/* A list of hex values from the policy, each of one fixed size (at most VEIL_MEASUREMENT_MAX bytes). */
struct hex_list {
    uint8_t (*items)[VEIL_MEASUREMENT_MAX];
    size_t count;
};

/* The TDX registers a policy may pin besides MRTD (docs/spec/policy.md, "TDX: pinning the workload"). */
enum tdx_pin { TDX_PIN_RTMR0, TDX_PIN_RTMR1, TDX_PIN_RTMR2, TDX_PIN_RTMR3, TDX_PIN_MRCONFIGID, TDX_PIN_MROWNER,
               TDX_PIN_MROWNERCONFIG, TDX_PIN_COUNT };
static const char *const tdx_pin_names[TDX_PIN_COUNT] = {"rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid",
                                                         "mrowner", "mrownerconfig"};

struct policy_tee {
    int present;
    struct hex_list measurements;
    struct hex_list signers;
    int has_product_id;
    uint16_t product_id;
    uint32_t min_svn;
    char tcb_statuses[POLICY_MAX_TCB][48];
    size_t tcb_count;
    int allow_debug;
    uint32_t max_vmpl;
    char deny_advisories[VEIL_POLICY_MAX_LIST][POLICY_ADVISORY_SIZE];
    size_t deny_count;
    /* tdx */
    struct hex_list tdx_pins[TDX_PIN_COUNT];
    int allow_unpinned_workload;
    /* snp */
    int has_min_tcb;
    struct veil_snp_tcb min_tcb;
    int allow_any_tcb;
};

struct veil_policy {
    int allow_sim;
    int allow_sample;
    uint64_t min_model_version; /* not judged here: the key broker returns it with the key (veil_model_open) */
    struct policy_tee tee[VEIL_TEE_SNP + 1];
};

static const char *const tcb_known[] = {"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
                                        "ConfigurationAndSWHardeningNeeded", "OutOfDate",
                                        "OutOfDateConfigurationNeeded", NULL};

/* Bytes of a measurement / signer per TEE (0: the TEE has no such list). */
static size_t measurement_size(veil_tee tee)
{
    return tee == VEIL_TEE_SGX ? 32 : 48;
}

static size_t signer_size(veil_tee tee)
{
    return tee == VEIL_TEE_SGX ? 32 : tee == VEIL_TEE_SNP ? 48 : 0;
}

static void tee_defaults(struct policy_tee *t)
{
    t->present = 1;
    strcpy(t->tcb_statuses[0], "UpToDate");
    t->tcb_count = 1;
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

static VEIL_RESULT parse_hex_list(const json_t *obj, const char *key, const char *what, size_t size,
                                  struct hex_list *out)
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

static int in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

static VEIL_RESULT parse_tcb(const json_t *obj, const char *what, struct policy_tee *t)
{
    json_t *a = NULL, *v;
    size_t i;
    VEIL_GUARD(get_array(obj, "tcb_statuses", what, &a));
    if (a == NULL)
        return VEIL_RESULT_OK; /* default ["UpToDate"] */
    VEIL_ENSURE(json_array_size(a) <= POLICY_MAX_TCB, VEIL_ERR_LIMIT, "%s: too many tcb_statuses", what);
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

static VEIL_RESULT parse_advisories(const json_t *obj, const char *what, struct policy_tee *t)
{
    json_t *a = NULL, *v;
    size_t i;
    VEIL_GUARD(get_array(obj, "deny_advisories", what, &a));
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        VEIL_ENSURE(s != NULL && s[0] != '\0' && strlen(s) < POLICY_ADVISORY_SIZE, VEIL_ERR_ARG,
                    "%s: deny_advisories[%zu] must be an advisory id such as INTEL-SA-00334", what, i);
        strcpy(t->deny_advisories[i], s);
        t->deny_count = i + 1;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_numbers(const json_t *obj, veil_tee tee, const char *what, struct policy_tee *t)
{
    uint64_t v = 0;
    VEIL_GUARD(veil_json_uint(obj, "min_svn", 0, UINT32_MAX, VEIL_ERR_ARG, what, &v));
    t->min_svn = (uint32_t)v;
    if (tee == VEIL_TEE_SNP) {
        v = 0;
        VEIL_GUARD(veil_json_uint(obj, "max_vmpl", 0, 3, VEIL_ERR_ARG, what, &v));
        t->max_vmpl = (uint32_t)v;
    }
    if (tee == VEIL_TEE_SGX && json_object_get(obj, "product_id") != NULL) {
        VEIL_GUARD(veil_json_uint(obj, "product_id", 1, UINT16_MAX, VEIL_ERR_ARG, what, &v));
        t->product_id = (uint16_t)v;
        t->has_product_id = 1;
    }
    return veil_json_bool(obj, "allow_debug", VEIL_ERR_ARG, what, &t->allow_debug);
}

/* SNP "min_tcb": {"bootloader", "tee", "snp", "microcode"} required, "fmc" (Turin) optional, each 0..255. */
static VEIL_RESULT parse_min_tcb(const json_t *obj, const char *what, struct policy_tee *t)
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

/* A tdx section must pin the workload (RTMR1: the kernel, or what the firmware loaded) unless it says it need not. */
static int tdx_workload_pinned(const struct policy_tee *t)
{
    return t->tdx_pins[TDX_PIN_RTMR1].count > 0;
}

static VEIL_RESULT parse_tdx(const json_t *obj, const char *what, struct policy_tee *t)
{
    for (size_t i = 0; i < TDX_PIN_COUNT; i++)
        VEIL_GUARD(parse_hex_list(obj, tdx_pin_names[i], what, POLICY_TDX_REG_SIZE, &t->tdx_pins[i]));
    VEIL_GUARD(veil_json_bool(obj, "allow_unpinned_workload", VEIL_ERR_ARG, what, &t->allow_unpinned_workload));
    VEIL_ENSURE(tdx_workload_pinned(t) || t->allow_unpinned_workload, VEIL_ERR_ARG,
                "%s pins no workload: MRTD measures only the TD firmware, so any image booted on it would match; "
                "pin rtmr1 (kernel / boot loader) and rtmr2 (command line, initrd), or set "
                "\"allow_unpinned_workload\": true (dangerous)", what);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_snp(const json_t *obj, const char *what, struct policy_tee *t)
{
    VEIL_GUARD(parse_min_tcb(obj, what, t));
    VEIL_GUARD(veil_json_bool(obj, "allow_any_tcb", VEIL_ERR_ARG, what, &t->allow_any_tcb));
    VEIL_ENSURE(!(t->has_min_tcb && t->allow_any_tcb), VEIL_ERR_ARG, "%s: min_tcb and allow_any_tcb exclude each other",
                what);
    VEIL_ENSURE(t->has_min_tcb || t->allow_any_tcb, VEIL_ERR_ARG,
                "%s has no min_tcb: every SEV-SNP firmware, however old, would be accepted; set min_tcb "
                "{bootloader, tee, snp, microcode[, fmc]}, or \"allow_any_tcb\": true (dangerous)", what);
    return VEIL_RESULT_OK;
}

static const char *const *section_keys(veil_tee tee)
{
    static const char *const sgx[] = {"measurements", "signers", "product_id", "min_svn", "tcb_statuses",
                                      "allow_debug", "deny_advisories", NULL};
    static const char *const tdx[] = {"measurements", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner",
                                      "mrownerconfig", "allow_unpinned_workload", "min_svn", "tcb_statuses",
                                      "allow_debug", "deny_advisories", NULL};
    static const char *const snp[] = {"measurements", "signers", "min_svn", "min_tcb", "allow_any_tcb",
                                      "allow_debug", "max_vmpl", "deny_advisories", NULL};
    static const char *const sim[] = {"measurements", "min_svn", NULL};
    return tee == VEIL_TEE_SGX ? sgx : tee == VEIL_TEE_TDX ? tdx : tee == VEIL_TEE_SNP ? snp : sim;
}

static VEIL_RESULT parse_section(const json_t *root, veil_tee tee, struct policy_tee *t)
{
    char what[32];
    snprintf(what, sizeof what, "policy: %s", veil_tee_name(tee));
    json_t *obj = json_object_get(root, veil_tee_name(tee));
    if (obj == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(obj), VEIL_ERR_ARG, "%s must be an object", what);
    VEIL_GUARD(veil_json_only_keys(obj, section_keys(tee), VEIL_ERR_ARG, what));
    tee_defaults(t);
    VEIL_GUARD(parse_hex_list(obj, "measurements", what, measurement_size(tee), &t->measurements));
    if (signer_size(tee) > 0)
        VEIL_GUARD(parse_hex_list(obj, "signers", what, signer_size(tee), &t->signers));
    VEIL_GUARD(parse_numbers(obj, tee, what, t));
    if (tee != VEIL_TEE_SNP)
        VEIL_GUARD(parse_tcb(obj, what, t));
    VEIL_GUARD(parse_advisories(obj, what, t));
    if (tee == VEIL_TEE_TDX)
        VEIL_GUARD(parse_tdx(obj, what, t));
    if (tee == VEIL_TEE_SNP)
        VEIL_GUARD(parse_snp(obj, what, t));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_top(const json_t *root, struct veil_policy *p)
{
    static const char *const keys[] = {"version", "allow_sim", "allow_sample", "min_model_version", "sgx", "tdx",
                                       "snp", "sim", NULL};
    uint64_t version = 1;
    VEIL_GUARD(veil_json_only_keys(root, keys, VEIL_ERR_ARG, "policy"));
    VEIL_GUARD(veil_json_uint(root, "version", 0, UINT32_MAX, VEIL_ERR_ARG, "policy", &version));
    VEIL_ENSURE(version == 1, VEIL_ERR_ARG, "policy: version %llu is not supported (1)",
                (unsigned long long)version);
    VEIL_GUARD(veil_json_bool(root, "allow_sim", VEIL_ERR_ARG, "policy", &p->allow_sim));
    VEIL_GUARD(veil_json_bool(root, "allow_sample", VEIL_ERR_ARG, "policy", &p->allow_sample));
    VEIL_GUARD(veil_json_uint(root, "min_model_version", 0, UINT64_MAX >> 1, VEIL_ERR_ARG, "policy",
                              &p->min_model_version));
    static const veil_tee sections[] = {VEIL_TEE_SGX, VEIL_TEE_TDX, VEIL_TEE_SNP, VEIL_TEE_SIM};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        VEIL_GUARD(parse_section(root, sections[i], &p->tee[sections[i]]));
    return VEIL_RESULT_OK;
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

static void hex_list_free(struct hex_list *l)
{
    free(l->items);
    *l = (struct hex_list){0};
}

void veil_policy_free(veil_policy *policy)
{
    if (policy == NULL)
        return;
    for (size_t i = 0; i < sizeof policy->tee / sizeof policy->tee[0]; i++) {
        struct policy_tee *t = &policy->tee[i];
        hex_list_free(&t->measurements);
        hex_list_free(&t->signers);
        for (size_t k = 0; k < TDX_PIN_COUNT; k++)
            hex_list_free(&t->tdx_pins[k]);
    }
    free(policy);
}

uint64_t veil_policy_min_model_version(const veil_policy *policy)
{
    return policy != NULL ? policy->min_model_version : 0;
}

veil_status veil_policy_default(veil_policy **out)
{
    veil_error_clear();
    if (out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    struct veil_policy *p = calloc(1, sizeof *p);
    if ((*out = p) == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    tee_defaults(&p->tee[VEIL_TEE_SGX]);
    tee_defaults(&p->tee[VEIL_TEE_TDX]);
    tee_defaults(&p->tee[VEIL_TEE_SNP]);
    return VEIL_OK;
}

/* ---- checks -------------------------------------------------------------------------------------------- */

static VEIL_RESULT check_tee(const struct veil_policy *p, const struct veil_claims *c)
{
    const char *name = veil_tee_name(c->tee);
    VEIL_ENSURE(c->tee != VEIL_TEE_SIM || p->allow_sim, VEIL_ERR_POLICY,
                "policy: the simulation TEE is not allowed (allow_sim is false)");
    VEIL_ENSURE(c->tee != VEIL_TEE_SAMPLE || p->allow_sample, VEIL_ERR_POLICY,
                "policy: the unverified sample TEE is not allowed (allow_sample is false)");
    VEIL_ENSURE(c->tee == VEIL_TEE_SIM || c->tee == VEIL_TEE_SAMPLE ||
                    (c->tee >= VEIL_TEE_SGX && c->tee <= VEIL_TEE_SNP && p->tee[c->tee].present),
                VEIL_ERR_POLICY, "policy: tee %s is not allowed", name);
    return VEIL_RESULT_OK;
}

static int hex_in_list(const uint8_t *v, size_t size, const struct hex_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        if (memcmp(list->items[i], v, size) == 0)
            return 1;
    return 0;
}

static VEIL_RESULT check_list(const char *what, const char *tee, const uint8_t *v, size_t size, size_t want,
                              const struct hex_list *list)
{
    char hex[2 * VEIL_MEASUREMENT_MAX + 1];
    VEIL_ENSURE(list->count > 0, VEIL_ERR_POLICY, "policy: no %s is allowed for %s (the list is empty)", what, tee);
    VEIL_ENSURE(size == want && size <= VEIL_MEASUREMENT_MAX, VEIL_ERR_POLICY,
                "policy: the evidence has no %zu-byte %s for %s", want, what, tee);
    veil_hex_encode(v, size, hex);
    VEIL_ENSURE(hex_in_list(v, size, list), VEIL_ERR_POLICY, "policy: %s %s is not allowed for %s", what, hex, tee);
    return VEIL_RESULT_OK;
}

/* The claims' value of one TDX register, and its size (0: absent). */
static const uint8_t *tdx_register(const struct veil_claims *c, enum tdx_pin pin, size_t *size)
{
    switch (pin) {
    case TDX_PIN_MRCONFIGID:
        *size = c->config_id_size;
        return c->config_id;
    case TDX_PIN_MROWNER:
        *size = c->mr_owner_size;
        return c->mr_owner;
    case TDX_PIN_MROWNERCONFIG:
        *size = c->mr_owner_config_size;
        return c->mr_owner_config;
    default:
        *size = (size_t)pin < c->rtmr_count ? POLICY_TDX_REG_SIZE : 0;
        return c->rtmr[pin];
    }
}

/* Every non-empty tdx allow-list (rtmr0..3, mrconfigid, mrowner, mrownerconfig) must list the claims' value. */
static VEIL_RESULT check_tdx_pins(const struct policy_tee *t, const struct veil_claims *c)
{
    VEIL_ENSURE(tdx_workload_pinned(t) || t->allow_unpinned_workload, VEIL_ERR_POLICY,
                "policy: tdx pins no workload (no rtmr1 list) and allow_unpinned_workload is false");
    for (size_t i = 0; i < TDX_PIN_COUNT; i++) {
        if (t->tdx_pins[i].count == 0)
            continue;
        size_t size = 0;
        const uint8_t *v = tdx_register(c, (enum tdx_pin)i, &size);
        VEIL_GUARD(check_list(tdx_pin_names[i], "tdx", v, size, POLICY_TDX_REG_SIZE, &t->tdx_pins[i]));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_identity(const struct policy_tee *t, const struct veil_claims *c)
{
    const char *name = veil_tee_name(c->tee);
    VEIL_GUARD(check_list("measurement", name, c->measurement, c->measurement_size, measurement_size(c->tee),
                          &t->measurements));
    if (c->tee == VEIL_TEE_TDX)
        VEIL_GUARD(check_tdx_pins(t, c));
    if (t->signers.count > 0)
        VEIL_GUARD(check_list("signer", name, c->signer, c->signer_size, signer_size(c->tee), &t->signers));
    VEIL_ENSURE(!t->has_product_id || c->product_id == t->product_id, VEIL_ERR_POLICY,
                "policy: product id %u is not allowed for %s (expected %u)", c->product_id, name, t->product_id);
    VEIL_ENSURE(c->svn >= t->min_svn, VEIL_ERR_POLICY, "policy: svn %u is below the minimum %u for %s", c->svn,
                t->min_svn, name);
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
static VEIL_RESULT check_snp_tcb(const struct policy_tee *t, const struct veil_claims *c)
{
    if (t->allow_any_tcb)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(t->has_min_tcb, VEIL_ERR_POLICY,
                "policy: snp has no min_tcb (and allow_any_tcb is false): the TCB cannot be judged");
    VEIL_GUARD(check_tcb_floor("REPORTED_TCB", &c->reported_tcb, &t->min_tcb));
    return check_tcb_floor("COMMITTED_TCB", &c->committed_tcb, &t->min_tcb);
}

static VEIL_RESULT check_tcb_status(const struct policy_tee *t, const struct veil_claims *c)
{
    char status[sizeof c->tcb_status + 1];
    memcpy(status, c->tcb_status, sizeof c->tcb_status);
    status[sizeof c->tcb_status] = '\0';
    int accepted = 0;
    for (size_t i = 0; i < t->tcb_count; i++)
        accepted |= strcmp(status, t->tcb_statuses[i]) == 0;
    VEIL_ENSURE(accepted, VEIL_ERR_POLICY, "policy: TCB status %s is not accepted for %s",
                status[0] != '\0' ? status : "(none)", veil_tee_name(c->tee));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_platform(const struct policy_tee *t, const struct veil_claims *c)
{
    const char *name = veil_tee_name(c->tee);
    VEIL_ENSURE(!c->debug || t->allow_debug, VEIL_ERR_POLICY, "policy: debug %s TEEs are not allowed", name);
    VEIL_ENSURE(c->tee != VEIL_TEE_SNP || c->vmpl <= t->max_vmpl, VEIL_ERR_POLICY,
                "policy: VMPL %u is above the maximum %u for snp", c->vmpl, t->max_vmpl);
    if (c->tee == VEIL_TEE_SNP)
        return check_snp_tcb(t, c);
    return check_tcb_status(t, c);
}

static VEIL_RESULT check_advisories(const struct policy_tee *t, const struct veil_claims *c)
{
    size_t n = c->advisory_count < VEIL_MAX_ADVISORIES ? c->advisory_count : VEIL_MAX_ADVISORIES;
    for (size_t i = 0; i < n; i++) {
        char id[sizeof c->advisories[i] + 1];
        memcpy(id, c->advisories[i], sizeof c->advisories[i]);
        id[sizeof c->advisories[i]] = '\0';
        for (size_t k = 0; k < t->deny_count; k++)
            VEIL_ENSURE(strcmp(id, t->deny_advisories[k]) != 0, VEIL_ERR_POLICY,
                        "policy: advisory %s is denied for %s", id, veil_tee_name(c->tee));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_sim(const struct policy_tee *t, const struct veil_claims *c)
{
    if (!t->present)
        return VEIL_RESULT_OK; /* allow_sim without a "sim" section: any simulated measurement */
    VEIL_GUARD(check_list("measurement", "sim", c->measurement, c->measurement_size, 48, &t->measurements));
    VEIL_ENSURE(c->svn >= t->min_svn, VEIL_ERR_POLICY, "policy: svn %u is below the minimum %u for sim", c->svn,
                t->min_svn);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_impl(const struct veil_policy *p, const struct veil_claims *c, const uint8_t *expected)
{
    VEIL_ENSURE(p != NULL && c != NULL, VEIL_ERR_ARG, "no policy or claims given");
    VEIL_GUARD(check_tee(p, c));
    const struct policy_tee *t = &p->tee[c->tee];
    if (c->tee == VEIL_TEE_SIM) {
        VEIL_GUARD(check_sim(t, c));
    } else if (c->tee != VEIL_TEE_SAMPLE) {
        VEIL_GUARD(check_platform(t, c));
        VEIL_GUARD(check_identity(t, c));
        VEIL_GUARD(check_advisories(t, c));
    }
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
