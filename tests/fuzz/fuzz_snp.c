/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the SEV-SNP report parser, the VCEK/VLEK parser with its AMD extensions, and the whole verifier.
 * An input is read three ways: as a report; as a certificate (DER or PEM) whose extensions are decoded; and, when
 * longer than a report, as a report followed by its certificate, verified at a fixed time. Nothing may crash, leak
 * or read out of bounds. Seeds (tests/fuzz/corpus/snp): the real reports, certificates, and report+certificate. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "attest/snp.h"
#include "attest/verifiers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_cert(const uint8_t *data, size_t size, const struct veil_snp_report *report)
{
    X509 *cert = NULL;
    if (!veil_ok(veil_snp_cert_parse(data, size, &cert)))
        return;
    struct veil_snp_cert_ext ext;
    if (veil_ok(veil_snp_cert_ext_read(cert, &ext)) && report != NULL) {
        struct veil_result milan = veil_snp_tcb_check(report, VEIL_SNP_PRODUCT_MILAN, &ext);
        struct veil_result turin = veil_snp_tcb_check(report, VEIL_SNP_PRODUCT_TURIN, &ext);
        (void)milan, (void)turin;
    }
    X509_free(cert);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_snp_report report;
    int parsed = veil_ok(veil_snp_report_parse(data, size, &report));
    if (parsed)
        (void)veil_snp_product_from_cpuid(&report);
    fuzz_cert(data, size, NULL);
    if (size > VEIL_SNP_REPORT_SIZE) {
        const uint8_t *cert = data + VEIL_SNP_REPORT_SIZE;
        size_t cert_size = size - VEIL_SNP_REPORT_SIZE;
        if (veil_ok(veil_snp_report_parse(data, VEIL_SNP_REPORT_SIZE, &report)))
            fuzz_cert(cert, cert_size, &report);
        struct veil_verify_options opt;
        memset(&opt, 0, sizeof opt);
        opt.now = 1756684800; /* 2025-09-01: every seed certificate is valid */
        struct veil_claims claims;
        struct veil_result verified = veil_snp_verify(data, VEIL_SNP_REPORT_SIZE, cert, cert_size, &opt, &claims);
        (void)verified;
    }
    return 0;
}
