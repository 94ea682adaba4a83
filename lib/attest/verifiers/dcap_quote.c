/* SPDX-License-Identifier: Apache-2.0 */
/* The DCAP quote parser: header, body, ECDSA signature data, field by field through the bounded cursor
 * (shared/reference/attestation.md sections 5.1-5.4). Nothing here verifies; dcap_verify.c does. */
#include <string.h>

#include "attest/dcap.h"
#include "core/cursor.h"
#include "core/limits.h"

static const uint8_t intel_qe_vendor_id[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                               0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

/* Cursor failures inside a quote are malformed evidence, whatever the cursor calls them. */
static VEIL_RESULT evidence(struct veil_result r, const char *what)
{
    VEIL_ENSURE(veil_ok(r), VEIL_ERR_EVIDENCE, "DCAP quote: %s is truncated", what);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_report(struct veil_cursor *c, struct veil_dcap_report *r)
{
    VEIL_GUARD(veil_cursor_copy(c, r->cpusvn, 16));
    VEIL_GUARD(veil_cursor_u32le(c, &r->miscselect));
    VEIL_GUARD(veil_cursor_skip(c, 12 + 16));          /* reserved, ISVEXTPRODID */
    VEIL_GUARD(veil_cursor_copy(c, r->attributes, 16));
    VEIL_GUARD(veil_cursor_copy(c, r->mrenclave, 32));
    VEIL_GUARD(veil_cursor_skip(c, 32));
    VEIL_GUARD(veil_cursor_copy(c, r->mrsigner, 32));
    VEIL_GUARD(veil_cursor_skip(c, 32));
    VEIL_GUARD(veil_cursor_copy(c, r->configid, 64));
    VEIL_GUARD(veil_cursor_u16le(c, &r->isvprodid));
    VEIL_GUARD(veil_cursor_u16le(c, &r->isvsvn));
    VEIL_GUARD(veil_cursor_skip(c, 2 + 42 + 16));      /* CONFIGSVN, reserved, ISVFAMILYID */
    VEIL_GUARD(veil_cursor_copy(c, r->report_data, 64));
    return VEIL_RESULT_OK;
}

/* An SGX REPORTBODY of exactly VEIL_DCAP_REPORT_SIZE bytes. */
static VEIL_RESULT parse_report_exact(const uint8_t *p, struct veil_dcap_report *r)
{
    struct veil_cursor c = veil_cursor_make(p, VEIL_DCAP_REPORT_SIZE);
    VEIL_GUARD(parse_report(&c, r));
    return veil_cursor_expect_end(&c);
}

static VEIL_RESULT parse_td(struct veil_cursor *c, int td15, struct veil_dcap_td_report *t)
{
    VEIL_GUARD(veil_cursor_copy(c, t->tee_tcb_svn, 16));
    VEIL_GUARD(veil_cursor_copy(c, t->mr_seam, 48));
    VEIL_GUARD(veil_cursor_copy(c, t->mr_signer_seam, 48));
    VEIL_GUARD(veil_cursor_copy(c, t->seam_attributes, 8));
    VEIL_GUARD(veil_cursor_u64le(c, &t->td_attributes));
    VEIL_GUARD(veil_cursor_copy(c, t->xfam, 8));
    VEIL_GUARD(veil_cursor_copy(c, t->mrtd, 48));
    VEIL_GUARD(veil_cursor_copy(c, t->mrconfigid, 48));
    VEIL_GUARD(veil_cursor_copy(c, t->mrowner, 48));
    VEIL_GUARD(veil_cursor_copy(c, t->mrownerconfig, 48));
    for (size_t i = 0; i < 4; i++)
        VEIL_GUARD(veil_cursor_copy(c, t->rtmr[i], 48));
    VEIL_GUARD(veil_cursor_copy(c, t->report_data, 64));
    if (td15) {
        VEIL_GUARD(veil_cursor_copy(c, t->tee_tcb_svn2, 16));
        VEIL_GUARD(veil_cursor_copy(c, t->mr_service_td, 48));
    }
    return VEIL_RESULT_OK;
}

/* Header (48 bytes): version, key type, TEE type, QE SVN, PCE SVN, QE vendor, user data. */
static VEIL_RESULT parse_header(struct veil_cursor *c, struct veil_dcap_quote *q)
{
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &q->version), "header"));
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &q->key_type), "header"));
    VEIL_GUARD(evidence(veil_cursor_u32le(c, &q->tee_type), "header"));
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &q->qe_svn), "header"));
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &q->pce_svn), "header"));
    VEIL_GUARD(evidence(veil_cursor_copy(c, q->qe_vendor_id, 16), "header"));
    VEIL_GUARD(evidence(veil_cursor_skip(c, 20), "header"));
    VEIL_ENSURE(q->key_type == VEIL_DCAP_KEY_ECDSA_P256, VEIL_ERR_UNSUPPORTED,
                "DCAP quote: attestation key type %u is not ECDSA P-256", q->key_type);
    VEIL_ENSURE(memcmp(q->qe_vendor_id, intel_qe_vendor_id, 16) == 0, VEIL_ERR_UNSUPPORTED,
                "DCAP quote: the QE vendor is not Intel");
    return VEIL_RESULT_OK;
}

/* Which body follows: v3 SGX, v4 TD10, v5 per its body descriptor (type u16, size u32). */
static VEIL_RESULT parse_body_type(struct veil_cursor *c, struct veil_dcap_quote *q, size_t *body_size)
{
    if (q->version == 3) {
        VEIL_ENSURE(q->tee_type == VEIL_DCAP_TEE_SGX, VEIL_ERR_EVIDENCE, "DCAP quote: v3 must carry an SGX body");
        q->body_type = VEIL_DCAP_BODY_SGX;
        *body_size = VEIL_DCAP_REPORT_SIZE;
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(q->version == 4 || q->version == 5, VEIL_ERR_UNSUPPORTED,
                "DCAP quote: version %u is not supported (3, 4 or 5)", q->version);
    VEIL_ENSURE(q->tee_type == VEIL_DCAP_TEE_TDX, VEIL_ERR_UNSUPPORTED,
                "DCAP quote: v%u is supported for TDX only", q->version);
    q->body_type = VEIL_DCAP_BODY_TD10;
    *body_size = VEIL_DCAP_TD10_SIZE;
    if (q->version == 4)
        return VEIL_RESULT_OK;
    uint32_t size = 0;
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &q->body_type), "body descriptor"));
    VEIL_GUARD(evidence(veil_cursor_u32le(c, &size), "body descriptor"));
    VEIL_ENSURE(q->body_type == VEIL_DCAP_BODY_TD10 || q->body_type == VEIL_DCAP_BODY_TD15, VEIL_ERR_UNSUPPORTED,
                "DCAP quote: v5 body type %u is not a TD report", q->body_type);
    *body_size = q->body_type == VEIL_DCAP_BODY_TD15 ? VEIL_DCAP_TD15_SIZE : VEIL_DCAP_TD10_SIZE;
    VEIL_ENSURE(size == *body_size, VEIL_ERR_EVIDENCE, "DCAP quote: body size %u does not match its type", size);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_body(struct veil_cursor *c, struct veil_dcap_quote *q, size_t body_size)
{
    struct veil_cursor b;
    VEIL_GUARD(evidence(veil_cursor_sub(c, body_size, &b), "body"));
    if (q->body_type == VEIL_DCAP_BODY_SGX)
        VEIL_GUARD(parse_report(&b, &q->sgx));
    else
        VEIL_GUARD(parse_td(&b, q->body_type == VEIL_DCAP_BODY_TD15, &q->td));
    return veil_cursor_expect_end(&b);
}

/* Certification data type 5: the PEM chain. Intel allows NUL padding after it; the padding is dropped. */
static VEIL_RESULT parse_pck_chain(struct veil_cursor *c, struct veil_dcap_quote *q)
{
    uint16_t type = 0;
    uint32_t size = 0;
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &type), "certification data"));
    VEIL_GUARD(evidence(veil_cursor_u32le(c, &size), "certification data"));
    VEIL_ENSURE(type == VEIL_DCAP_CERT_PCK_CHAIN, VEIL_ERR_UNSUPPORTED,
                "DCAP quote: certification data type %u is not a PCK certificate chain (5)", type);
    VEIL_ENSURE(size <= VEIL_DCAP_MAX_CERT_DATA_SIZE, VEIL_ERR_LIMIT, "DCAP quote: PCK chain is too large");
    VEIL_GUARD(evidence(veil_cursor_bytes(c, size, &q->cert_data), "PCK chain"));
    q->cert_size = size;
    while (q->cert_size > 0 && q->cert_data[q->cert_size - 1] == 0)
        q->cert_size--;
    VEIL_ENSURE(q->cert_size > 0, VEIL_ERR_EVIDENCE, "DCAP quote: the PCK chain is empty");
    return VEIL_RESULT_OK;
}

/* QE report, its signature, QE authentication data, then the PCK chain. */
static VEIL_RESULT parse_qe_part(struct veil_cursor *c, struct veil_dcap_quote *q)
{
    uint16_t auth_size = 0;
    VEIL_GUARD(evidence(veil_cursor_bytes(c, VEIL_DCAP_REPORT_SIZE, &q->qe_report_raw), "QE report"));
    VEIL_GUARD(parse_report_exact(q->qe_report_raw, &q->qe_report));
    VEIL_GUARD(evidence(veil_cursor_copy(c, q->qe_report_sig, VEIL_DCAP_SIG_SIZE), "QE report signature"));
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &auth_size), "QE authentication data"));
    VEIL_GUARD(evidence(veil_cursor_bytes(c, auth_size, &q->qe_auth), "QE authentication data"));
    q->qe_auth_size = auth_size;
    return parse_pck_chain(c, q);
}

/* v4/v5: the QE part is nested in certification data of type 6. */
static VEIL_RESULT parse_qe_cert_data(struct veil_cursor *c, struct veil_dcap_quote *q)
{
    uint16_t type = 0;
    uint32_t size = 0;
    struct veil_cursor inner;
    VEIL_GUARD(evidence(veil_cursor_u16le(c, &type), "certification data"));
    VEIL_GUARD(evidence(veil_cursor_u32le(c, &size), "certification data"));
    VEIL_ENSURE(type == VEIL_DCAP_CERT_QE_REPORT, VEIL_ERR_UNSUPPORTED,
                "DCAP quote: certification data type %u is not QE report certification data (6)", type);
    VEIL_GUARD(evidence(veil_cursor_sub(c, size, &inner), "QE report certification data"));
    VEIL_GUARD(parse_qe_part(&inner, q));
    VEIL_ENSURE(veil_cursor_left(&inner) == 0, VEIL_ERR_EVIDENCE,
                "DCAP quote: bytes after the PCK chain in the QE report certification data");
    return VEIL_RESULT_OK;
}

/* ECDSA signature data: length u32, ISV signature, attestation key, then the QE part. */
static VEIL_RESULT parse_auth(struct veil_cursor *c, struct veil_dcap_quote *q)
{
    uint32_t size = 0;
    struct veil_cursor a;
    VEIL_GUARD(evidence(veil_cursor_u32le(c, &size), "signature data length"));
    VEIL_GUARD(evidence(veil_cursor_sub(c, size, &a), "signature data"));
    VEIL_GUARD(evidence(veil_cursor_copy(&a, q->isv_sig, VEIL_DCAP_SIG_SIZE), "quote signature"));
    VEIL_GUARD(evidence(veil_cursor_copy(&a, q->attest_key, VEIL_DCAP_KEY_SIZE), "attestation key"));
    if (q->version == 3)
        VEIL_GUARD(parse_qe_part(&a, q));
    else
        VEIL_GUARD(parse_qe_cert_data(&a, q));
    VEIL_ENSURE(veil_cursor_left(&a) == 0, VEIL_ERR_EVIDENCE, "DCAP quote: bytes after the certification data");
    return VEIL_RESULT_OK;
}

/* After the signature data only zero padding may follow. */
static VEIL_RESULT expect_zero_tail(const struct veil_cursor *c)
{
    for (size_t i = c->off; i < c->size; i++)
        VEIL_ENSURE(c->data[i] == 0, VEIL_ERR_EVIDENCE, "DCAP quote: non-zero bytes after the signature data");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_quote_parse(const uint8_t *quote, size_t size, struct veil_dcap_quote *out)
{
    VEIL_ENSURE(quote != NULL && out != NULL, VEIL_ERR_ARG, "DCAP quote: no quote given");
    VEIL_ENSURE(size <= VEIL_DCAP_MAX_QUOTE_SIZE, VEIL_ERR_LIMIT, "DCAP quote: larger than %u bytes",
                VEIL_DCAP_MAX_QUOTE_SIZE);
    memset(out, 0, sizeof *out);
    struct veil_cursor c = veil_cursor_make(quote, size);
    size_t body_size = 0;
    VEIL_GUARD(parse_header(&c, out));
    VEIL_GUARD(parse_body_type(&c, out, &body_size));
    VEIL_GUARD(parse_body(&c, out, body_size));
    out->signed_data = quote;
    out->signed_size = c.off;
    VEIL_GUARD(parse_auth(&c, out));
    return expect_zero_tail(&c);
}
