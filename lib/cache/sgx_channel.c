/* SPDX-License-Identifier: Apache-2.0 */
/* The SGX handshake over TLS (local.h, "the SGX handshake over TLS"; shared/reference/deployment.md §1.7): both
 * enclaves EREPORT for each other, each REPORT carrying the binding of this handshake and of this TLS session (X),
 * each verified with the verifier's own report key. The steps are the daemons' (veil-cache accepts, veil-runtime
 * connects) and the tests'; only how a REPORT is made and how the report key is derived differ (veil_la_sgx_ops). */
#include <stdio.h>
#include <string.h>

#include "cache/local.h"
#include "core/secret.h"
#include "crypto/crypto.h"

/* What both sides compute for one handshake. */
struct transcript {
    uint8_t nonce_r[VEIL_LA_NONCE_SIZE], nonce_c[VEIL_LA_NONCE_SIZE];
    uint8_t ti_r[VEIL_SGX_TARGETINFO_SIZE], ti_c[VEIL_SGX_TARGETINFO_SIZE];
    uint8_t x[VEIL_LA_EXPORTER_SIZE];
};

static VEIL_RESULT binding(const struct transcript *t, uint8_t role, uint8_t out[VEIL_LA_BINDING_SIZE])
{
    return veil_la_binding(role, t->nonce_r, t->nonce_c, t->ti_r, sizeof t->ti_r, t->ti_c, sizeof t->ti_c, t->x, out);
}

/* This enclave's REPORT for the peer's TARGETINFO, bound to the transcript for role. */
static VEIL_RESULT make_report(const struct veil_la_sgx_side *self, const struct transcript *t, uint8_t role,
                               const uint8_t *peer_ti, uint8_t out[VEIL_SGX_REPORT_SIZE])
{
    uint8_t rd[VEIL_LA_BINDING_SIZE];
    VEIL_GUARD(binding(t, role, rd));
    VEIL_ENSURE(self->ops.report != NULL, VEIL_ERR_ARG, "no EREPORT function");
    return self->ops.report(self->ops.ctx, peer_ti, rd, out);
}

/* The peer's REPORT: for us, of an identity our policies admit, bound to the transcript for its role. */
static VEIL_RESULT check_report(const struct veil_la_sgx_side *self, const struct transcript *t, uint8_t role,
                                const struct veil_la_msg *m, struct veil_sgx_report *out)
{
    uint8_t expected[VEIL_LA_BINDING_SIZE];
    VEIL_GUARD(binding(t, role, expected));
    return veil_sgx_report_verify_any(m->report, m->report_size, self->ops.report_key, self->ops.ctx, self->peers,
                                      self->peer_count, expected, out);
}

/* The error just raised, raised again as status from a copy (the message reads the buffer it is written to). */
static VEIL_RESULT restated(veil_status status, const char *prefix)
{
    char why[512];
    snprintf(why, sizeof why, "%s", veil_last_error());
    VEIL_BAIL(status, "%s: %s", prefix, why);
}

/* ---- veil-runtime ---------------------------------------------------------------------------------------------- */

static VEIL_RESULT hello(const struct veil_la_conn *c, const struct veil_la_sgx_side *self, struct transcript *t)
{
    memcpy(t->ti_r, self->target_info, sizeof t->ti_r);
    struct veil_la_msg m = {.type = VEIL_LA_HELLO, .kind = VEIL_LA_KIND_SGX, .target = t->ti_r,
                            .target_size = sizeof t->ti_r};
    VEIL_GUARD(veil_random(t->nonce_r, sizeof t->nonce_r));
    memcpy(m.nonce, t->nonce_r, sizeof m.nonce);
    return veil_la_send(c, &m);
}

VEIL_RESULT veil_la_sgx_connect(const struct veil_la_conn *c, const struct veil_la_sgx_side *self,
                                struct veil_buf *body, struct veil_sgx_report *cache)
{
    struct transcript t;
    VEIL_GUARD(veil_la_tls_exporter(c, t.x));
    VEIL_GUARD(hello(c, self, &t));
    struct veil_la_msg ch;
    VEIL_GUARD(veil_la_expect(c, body, VEIL_LA_CHALLENGE, &ch));
    VEIL_ENSURE(ch.kind == VEIL_LA_KIND_SGX, VEIL_ERR_POLICY, "veil-cache uses local reports of kind %u, not SGX",
                ch.kind);
    memcpy(t.nonce_c, ch.nonce, sizeof t.nonce_c);
    memcpy(t.ti_c, ch.target, sizeof t.ti_c);
    if (!veil_ok(check_report(self, &t, 'C', &ch, cache)))
        return restated(VEIL_ERR_POLICY, "veil-cache's SGX REPORT is refused");
    struct veil_la_msg at = {.type = VEIL_LA_ATTEST, .kind = VEIL_LA_KIND_SGX};
    uint8_t report[VEIL_SGX_REPORT_SIZE];
    VEIL_GUARD(make_report(self, &t, 'R', t.ti_c, report));
    at.report = report, at.report_size = sizeof report;
    VEIL_GUARD(veil_la_send(c, &at));
    struct veil_la_msg ready;
    return veil_la_expect(c, body, VEIL_LA_READY, &ready);
}

/* ---- veil-cache ------------------------------------------------------------------------------------------------ */

/* r, with *refusal = code when r failed. */
static struct veil_result refused(struct veil_result r, uint16_t code, uint16_t *refusal)
{
    if (!veil_ok(r))
        *refusal = code;
    return r;
}

/* The next message, of type want and kind SGX: a transport failure answers nothing, anything else bad-message. */
static VEIL_RESULT receive(const struct veil_la_conn *c, struct veil_buf *body, uint8_t want, struct veil_la_msg *m,
                           uint16_t *refusal)
{
    struct veil_result r = veil_la_recv(c, body, m);
    if (!veil_ok(r))
        return refused(r, r.status == VEIL_ERR_IO ? 0 : VEIL_LA_E_BAD_MESSAGE, refusal);
    if (m->type != want || m->kind != VEIL_LA_KIND_SGX)
        return refused(veil_error_raise(VEIL_ERR_FORMAT, __FILE__, __LINE__, "expected message type %u of report "
                                        "kind SGX, not type %u kind %u", want, m->type, m->kind),
                       VEIL_LA_E_BAD_MESSAGE, refusal);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT challenge(const struct veil_la_conn *c, const struct veil_la_sgx_side *self, struct transcript *t,
                             uint16_t *refusal)
{
    memcpy(t->ti_c, self->target_info, sizeof t->ti_c);
    uint8_t report[VEIL_SGX_REPORT_SIZE];
    struct veil_result r = veil_random(t->nonce_c, sizeof t->nonce_c);
    if (veil_ok(r))
        r = make_report(self, t, 'C', t->ti_r, report);
    VEIL_GUARD(refused(r, VEIL_LA_E_INTERNAL, refusal));
    struct veil_la_msg m = {.type = VEIL_LA_CHALLENGE, .kind = VEIL_LA_KIND_SGX, .target = t->ti_c,
                            .target_size = sizeof t->ti_c, .report = report, .report_size = sizeof report};
    memcpy(m.nonce, t->nonce_c, sizeof m.nonce);
    return veil_la_send(c, &m); /* nothing to answer when it fails */
}

VEIL_RESULT veil_la_sgx_accept(const struct veil_la_conn *c, const struct veil_la_sgx_side *self,
                               struct veil_buf *body, struct veil_sgx_report *runtime, uint16_t *refusal)
{
    *refusal = 0;
    struct transcript t;
    VEIL_GUARD(refused(veil_la_tls_exporter(c, t.x), VEIL_LA_E_INTERNAL, refusal));
    struct veil_la_msg m;
    VEIL_GUARD(receive(c, body, VEIL_LA_HELLO, &m, refusal));
    memcpy(t.nonce_r, m.nonce, sizeof t.nonce_r);
    memcpy(t.ti_r, m.target, sizeof t.ti_r);
    VEIL_GUARD(challenge(c, self, &t, refusal));
    VEIL_GUARD(receive(c, body, VEIL_LA_ATTEST, &m, refusal));
    VEIL_GUARD(refused(check_report(self, &t, 'R', &m, runtime), VEIL_LA_E_REPORT, refusal));
    struct veil_la_msg ready = {.type = VEIL_LA_READY};
    return veil_la_send(c, &ready);
}

/* ---- Gramine ---------------------------------------------------------------------------------------------------- */

VEIL_RESULT veil_la_sgx_gramine_report(void *ctx, const uint8_t target_info[VEIL_SGX_TARGETINFO_SIZE],
                                       const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                       uint8_t out[VEIL_SGX_REPORT_SIZE])
{
    return veil_sgx_report_create((const char *)ctx, target_info, report_data, out);
}
