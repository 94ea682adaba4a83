/* SPDX-License-Identifier: Apache-2.0 */
/* Intel TDX: evidence from configfs-tsm (providers/tsm.c, provider "tdx_guest"), a DCAP quote v4/v5 verified by
 * verifiers/dcap_*.c. Envelope {"tee": "tdx", "quote": base64, "cc_eventlog": string or null}
 * (docs/spec/evidence.md); claims MRTD (48), RTMR0..3, MRCONFIGID, MROWNER, MROWNERCONFIG, DEBUG, Intel's TCB
 * status and advisories. Its policy section pins the workload besides MRTD (docs/spec/policy.md, "TDX: pinning the
 * workload"). */
#include <stdlib.h>

#include "attest/attest_internal.h"
#include "attest/tee_table.h"
#include "attest/verifiers.h"
#include "core/limits.h"

#define TDX_REG_SIZE 48u

static const struct veil_tsm_spec tdx_tsm = {.provider = "tdx_guest"};

static VEIL_RESULT tdx_collect(const struct veil_provider_config *config,
                               const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                               json_t **out)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf quote = {0};
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf aux = {0};
    VEIL_GUARD(veil_tsm_collect(veil_tsm_root(config), &veil_tee_tdx, report_data, hook, &quote, &aux));
    VEIL_GUARD(veil_evidence_envelope(&veil_tee_tdx, out));
    return veil_evidence_set_b64(*out, "quote", quote.data, quote.size);
}

static VEIL_RESULT tdx_verify_raw(const uint8_t *quote, size_t size, const struct veil_verify_options *options,
                                  struct veil_claims *claims)
{
    return veil_dcap_verify_as(VEIL_TEE_TDX, quote, size, options, claims);
}

static VEIL_RESULT tdx_verify(const json_t *j, const struct veil_verify_options *options,
                              struct veil_claims *claims)
{
    static const char *const keys[] = {"tee", "quote", "cc_eventlog", NULL};
    const char *what = "tdx evidence";
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_EVIDENCE, what));
    json_t *log = json_object_get(j, "cc_eventlog");
    VEIL_ENSURE(log == NULL || json_is_null(log) || json_is_string(log), VEIL_ERR_EVIDENCE,
                "tdx evidence: \"cc_eventlog\" must be a string or null");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf quote = {0};
    VEIL_GUARD(veil_json_b64(j, "quote", VEIL_B64_STD, 1, 0, VEIL_EVIDENCE_MAX_SIZE, VEIL_ERR_EVIDENCE, what, &quote,
                             NULL));
    return tdx_verify_raw(quote.data, quote.size, options, claims);
}

/* ---- policy: the workload pins ------------------------------------------------------------------------ */

/* The TDX registers a policy may pin besides MRTD. */
enum tdx_pin { TDX_PIN_RTMR0, TDX_PIN_RTMR1, TDX_PIN_RTMR2, TDX_PIN_RTMR3, TDX_PIN_MRCONFIGID, TDX_PIN_MROWNER,
               TDX_PIN_MROWNERCONFIG, TDX_PIN_COUNT };
static const char *const tdx_pin_names[TDX_PIN_COUNT] = {"rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid",
                                                         "mrowner", "mrownerconfig"};

/* The section's own members (section->ext). */
struct tdx_policy {
    struct veil_policy_hex_list pins[TDX_PIN_COUNT];
    int allow_unpinned_workload;
};

static void tdx_policy_free(void *ext)
{
    struct tdx_policy *t = ext;
    for (size_t i = 0; i < TDX_PIN_COUNT; i++)
        veil_policy_hex_list_cleanup(&t->pins[i]);
    free(t);
}

/* A tdx section must pin the workload (RTMR1: the kernel, or what the firmware loaded) unless it says it need not. */
static int workload_pinned(const struct tdx_policy *t)
{
    return t->pins[TDX_PIN_RTMR1].count > 0;
}

static VEIL_RESULT tdx_policy_parse(const json_t *obj, const char *what, struct veil_policy_section *s)
{
    struct tdx_policy *t = calloc(1, sizeof *t);
    VEIL_ENSURE(t != NULL, VEIL_ERR_NOMEM, "out of memory");
    s->ext = t; /* freed with the policy, whatever happens next */
    for (size_t i = 0; i < TDX_PIN_COUNT; i++)
        VEIL_GUARD(veil_policy_hex_list_parse(obj, tdx_pin_names[i], what, TDX_REG_SIZE, &t->pins[i]));
    VEIL_GUARD(veil_json_bool(obj, "allow_unpinned_workload", VEIL_ERR_ARG, what, &t->allow_unpinned_workload));
    VEIL_ENSURE(workload_pinned(t) || t->allow_unpinned_workload, VEIL_ERR_ARG,
                "%s pins no workload: MRTD measures only the TD firmware, so any image booted on it would match; "
                "pin rtmr1 (kernel / boot loader) and rtmr2 (command line, initrd), or set "
                "\"allow_unpinned_workload\": true (dangerous)", what);
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
        *size = (size_t)pin < c->rtmr_count ? TDX_REG_SIZE : 0;
        return c->rtmr[pin];
    }
}

/* Every non-empty allow-list (rtmr0..3, mrconfigid, mrowner, mrownerconfig) must list the claims' value. */
static VEIL_RESULT check_pins(const struct veil_policy_section *s, const struct veil_claims *c)
{
    static const struct tdx_policy none = {0}; /* the default policy's section: nothing pinned */
    const struct tdx_policy *t = s->ext != NULL ? s->ext : &none;
    VEIL_ENSURE(workload_pinned(t) || t->allow_unpinned_workload, VEIL_ERR_POLICY,
                "policy: tdx pins no workload (no rtmr1 list) and allow_unpinned_workload is false");
    for (size_t i = 0; i < TDX_PIN_COUNT; i++) {
        if (t->pins[i].count == 0)
            continue;
        size_t size = 0;
        const uint8_t *v = tdx_register(c, (enum tdx_pin)i, &size);
        VEIL_GUARD(veil_policy_list_check(tdx_pin_names[i], veil_tee_tdx.name, v, size, TDX_REG_SIZE,
                                          &t->pins[i]));
    }
    return VEIL_RESULT_OK;
}

/* 1 debug, 2 TCB status, 3 MRTD, 4 the workload pins, 5 svn, 6 denied advisories. */
static VEIL_RESULT tdx_policy_check(const struct veil_policy_section *s, const struct veil_claims *c)
{
    VEIL_GUARD(veil_policy_check_debug(s, c));
    VEIL_GUARD(veil_policy_check_tcb_status(s, c));
    VEIL_GUARD(veil_policy_check_measurement(s, c));
    VEIL_GUARD(check_pins(s, c));
    VEIL_GUARD(veil_policy_check_svn(s, c));
    return veil_policy_check_advisories(s, c);
}

static const char *const tdx_policy_keys[] = {"measurements", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid",
                                              "mrowner", "mrownerconfig", "allow_unpinned_workload", "min_svn",
                                              "tcb_statuses", "allow_debug", "deny_advisories", NULL};

const struct veil_tee_desc veil_tee_tdx = {
    .type = VEIL_TEE_TDX,
    .name = "tdx",
    .collect = tdx_collect,
    .tsm = &tdx_tsm,
    .verify = tdx_verify,
    .verify_raw = tdx_verify_raw,
    .measurement_size = TDX_REG_SIZE,
    .policy = {.keys = tdx_policy_keys,
               .in_default = 1,
               .parse = tdx_policy_parse,
               .free_ext = tdx_policy_free,
               .check = tdx_policy_check},
};
