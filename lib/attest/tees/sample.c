/* SPDX-License-Identifier: Apache-2.0 */
/* Trustee's "sample" TEE: unsigned evidence {"svn": "1", "report_data": base64} for interoperability tests.
 * It proves nothing: claims say tcb_status "Unverified" and policies refuse it unless allow_sample is set.
 * Trustee compares report_data unpadded (the 48-byte SHA-384 digest); claims hold it zero-padded to 64. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "attest/tee_table.h"

static VEIL_RESULT sample_collect(const struct veil_provider_config *config,
                                  const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                                  json_t **out)
{
    (void)config, (void)hook;
    static const uint8_t zeros[16] = {0};
    /* A digest padded with 16 zero bytes goes out unpadded, as Trustee's sample attester sends it. */
    size_t n = memcmp(report_data + 48, zeros, sizeof zeros) == 0 ? 48 : VEIL_REPORT_DATA_SIZE;
    char *b64 = NULL;
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, report_data, n, &b64));
    json_t *j = json_pack("{s:s, s:s, s:s}", "tee", veil_tee_sample.name, "svn", "1", "report_data", b64);
    free(b64);
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = j;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_svn(const char *s, uint32_t *out)
{
    size_t n = strnlen(s, 11);
    uint64_t v = 0;
    VEIL_ENSURE(n >= 1 && n <= 10, VEIL_ERR_EVIDENCE, "sample evidence: \"svn\" must be a decimal string");
    for (size_t i = 0; i < n; i++) {
        VEIL_ENSURE(s[i] >= '0' && s[i] <= '9', VEIL_ERR_EVIDENCE, "sample evidence: \"svn\" must be a decimal string");
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    VEIL_ENSURE(v <= UINT32_MAX, VEIL_ERR_EVIDENCE, "sample evidence: \"svn\" is too large");
    *out = (uint32_t)v;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sample_verify(const json_t *evidence, const struct veil_verify_options *options,
                                 struct veil_claims *claims)
{
    (void)options;
    static const char *const keys[] = {"tee", "svn", "report_data", NULL};
    const char *what = "sample evidence", *svn = NULL;
    VEIL_GUARD(veil_json_only_keys(evidence, keys, VEIL_ERR_EVIDENCE, what));
    VEIL_GUARD(veil_json_string(evidence, "svn", 1, VEIL_ERR_EVIDENCE, what, &svn));
    uint32_t v = 0;
    VEIL_GUARD(parse_svn(svn, &v));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf rd = {0};
    VEIL_GUARD(veil_json_b64(evidence, "report_data", VEIL_B64_STD, 1, 0, VEIL_REPORT_DATA_SIZE, VEIL_ERR_EVIDENCE,
                             what, &rd, NULL));
    VEIL_ENSURE(rd.size > 0, VEIL_ERR_EVIDENCE, "sample evidence: \"report_data\" is empty");
    claims->tee = VEIL_TEE_SAMPLE;
    memcpy(claims->report_data, rd.data, rd.size); /* the rest stays zero: the padded form policies compare */
    claims->svn = v;
    snprintf(claims->tcb_status, sizeof claims->tcb_status, "Unverified");
    return VEIL_RESULT_OK;
}

/* No policy section: allow_sample admits it, and there is nothing to judge. */
const struct veil_tee_desc veil_tee_sample = {
    .type = VEIL_TEE_SAMPLE,
    .name = "sample",
    .collect = sample_collect,
    .verify = sample_verify,
    .policy = {.allow_flag = "allow_sample",
               .refusal = "the unverified sample TEE is not allowed (allow_sample is false)"},
};
