/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the evidence envelope and the sim/sample verifiers (with one fixed trusted simulation key, so signed
 * seeds reach the signature check), the SNP certificate table, policy parsing and checking, claims JSON.
 * Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "veil/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The P-256 platform.pub of the platform that signed corpus/evidence/sim.json. */
static const char trusted_key[] = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4wHwp8S7MnVVDyvQcSdcgTu4QaSr\njGwm0xnB4hzgFIiiRLdhApYuVOyJc76GrfbCnyBvrZVGjer/wuRE4uftFA==\n-----END PUBLIC KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *keys[1] = {trusted_key};
    struct veil_verify_options o = {.now = 1700000000, .sim_trusted_keys = keys, .sim_trusted_key_count = 1};
    struct veil_claims claims;
    if (veil_evidence_verify(data, size, VEIL_TEE_AUTO, &o, &claims) == VEIL_OK) {
        char *json = NULL;
        if (veil_claims_to_json(&claims, &json) == VEIL_OK)
            veil_free(json);
    }
    const uint8_t *cert = NULL;
    size_t cert_size = 0;
    (void)veil_snp_auxblob_cert(data, size, &cert, &cert_size);
    veil_policy *p = NULL;
    if (veil_policy_parse((const char *)data, size, &p) == VEIL_OK) {
        struct veil_claims c = {.tee = VEIL_TEE_SGX, .measurement_size = 32, .signer_size = 32};
        strcpy(c.tcb_status, "UpToDate");
        for (int t = VEIL_TEE_AUTO; t <= VEIL_TEE_SNP; t++) {
            c.tee = (veil_tee)t;
            (void)veil_policy_check(p, &c, c.report_data);
        }
        veil_policy_free(p);
    }
    return 0;
}
