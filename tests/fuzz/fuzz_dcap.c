/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the DCAP parsers on untrusted bytes -- the quote (header, body, signature data, nested QE
 * certification data), the PCK leaf's SGX extension when a quote carries a parsable chain, the collateral JSON
 * and the tcbInfo / enclaveIdentity objects. Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>

#include "attest/dcap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quote(const uint8_t *data, size_t size)
{
    struct veil_dcap_quote q;
    struct veil_dcap_x509 *leaf = NULL;
    struct veil_dcap_pck_ext pck;
    if (!veil_ok(veil_dcap_quote_parse(data, size, &q)))
        return;
    if (veil_ok(veil_dcap_leaf_read((const char *)q.cert_data, q.cert_size, &leaf)))
        (void)veil_dcap_pck_ext_parse(leaf, &pck);
    veil_dcap_x509_free(leaf);
}

static void collateral(const uint8_t *data, size_t size)
{
    struct veil_dcap_collateral c;
    struct veil_dcap_tcb_info t;
    struct veil_dcap_qe_identity q;
    veil_dcap_collateral_init(&c);
    (void)veil_dcap_collateral_parse(data, size, &c);
    veil_dcap_collateral_cleanup(&c);
    (void)veil_dcap_tcb_info_parse((const char *)data, size, &t);
    veil_dcap_tcb_info_cleanup(&t);
    (void)veil_dcap_qe_identity_parse((const char *)data, size, &q);
    veil_dcap_qe_identity_cleanup(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == '{')
        collateral(data, size);
    else
        quote(data, size);
    return 0;
}
