/* SPDX-License-Identifier: Apache-2.0 */
/* The local protocol's codec and channel binding (local.h). */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "cache/lease.h"
#include "cache/local.h"
#include "core/cursor.h"
#include "crypto/ossl_defer.h"

#define DECODE_ERR VEIL_ERR_FORMAT

VEIL_RESULT veil_la_kind_sizes(uint8_t kind, size_t *target_size, size_t *report_size)
{
    switch (kind) {
    case VEIL_LA_KIND_NONE: *target_size = 0, *report_size = 0; return VEIL_RESULT_OK;
    case VEIL_LA_KIND_SIM:
        *target_size = VEIL_LA_SIM_MEASUREMENT_SIZE, *report_size = VEIL_LA_SIM_REPORT_SIZE;
        return VEIL_RESULT_OK;
    case VEIL_LA_KIND_SGX:
        *target_size = VEIL_SGX_TARGETINFO_SIZE, *report_size = VEIL_SGX_REPORT_SIZE;
        return VEIL_RESULT_OK;
    default: VEIL_BAIL(DECODE_ERR, "local message: unknown report kind %u", kind);
    }
}

/* ---- decoding ----------------------------------------------------------------------------------------------- */

/* u8 kind | u16 size | bytes, the size fixed by the kind (which=0: target, 1: report). */
static VEIL_RESULT get_sized(struct veil_cursor *c, uint8_t kind, int which, const uint8_t **out, size_t *size)
{
    size_t sizes[2];
    VEIL_GUARD(veil_la_kind_sizes(kind, &sizes[0], &sizes[1]));
    uint16_t n = 0;
    VEIL_GUARD(veil_cursor_u16le(c, &n));
    VEIL_ENSURE(n == sizes[which], DECODE_ERR, "local message: a %s of %u bytes for report kind %u",
                which == 0 ? "target" : "report", n, kind);
    *size = n;
    return veil_cursor_bytes(c, n, out);
}

static VEIL_RESULT get_model(struct veil_cursor *c, struct veil_la_msg *m)
{
    VEIL_GUARD(veil_cursor_u32le(c, &m->key_version));
    VEIL_ENSURE(m->key_version > 0, DECODE_ERR, "local message: key version 0");
    uint8_t n = 0;
    const uint8_t *id = NULL;
    VEIL_GUARD(veil_cursor_u8(c, &n));
    VEIL_ENSURE(n > 0 && n <= VEIL_KBS_MODEL_ID_MAX, DECODE_ERR, "local message: a model id of %u bytes", n);
    VEIL_GUARD(veil_cursor_bytes(c, n, &id));
    memcpy(m->model_id, id, n);
    m->model_id[n] = '\0';
    struct veil_result r = veil_kbs_model_id_check(m->model_id, n);
    VEIL_ENSURE(veil_ok(r), DECODE_ERR, "local message: a malformed model id");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT get_lease(struct veil_cursor *c, uint64_t *lease_ms)
{
    VEIL_GUARD(veil_cursor_u64le(c, lease_ms));
    VEIL_ENSURE(*lease_ms > 0 && *lease_ms <= VEIL_LEASE_MAX_MS, DECODE_ERR, "local message: a lease of %llu ms",
                (unsigned long long)*lease_ms);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT get_usage(struct veil_cursor *c, struct veil_la_msg *m)
{
    uint8_t has = 0;
    uint32_t n = 0;
    const uint8_t *text = NULL;
    VEIL_GUARD(veil_cursor_u8(c, &has));
    VEIL_GUARD(veil_cursor_u32le(c, &n));
    VEIL_ENSURE(has <= 1 && (has || n == 0) && (!has || (n > 0 && n <= VEIL_LA_USAGE_MAX_SIZE)), DECODE_ERR,
                "local message: a usage policy flag %u with %u bytes", has, n);
    VEIL_GUARD(veil_cursor_bytes(c, n, &text));
    VEIL_ENSURE(memchr(text, 0, n) == NULL, DECODE_ERR, "local message: a NUL byte in the usage policy");
    m->has_usage = has;
    m->usage = (const char *)text;
    m->usage_size = n;
    return VEIL_RESULT_OK;
}

/* u32 size | a usage count document (lib/serve/usage.h; its syntax is the receiver's to check), size 0: none. */
static VEIL_RESULT get_counts(struct veil_cursor *c, struct veil_la_msg *m)
{
    uint32_t n = 0;
    const uint8_t *text = NULL;
    VEIL_GUARD(veil_cursor_u32le(c, &n));
    VEIL_ENSURE(n <= VEIL_USAGE_COUNTS_MAX_SIZE, DECODE_ERR, "local message: usage counts of %u bytes", n);
    VEIL_GUARD(veil_cursor_bytes(c, n, &text));
    VEIL_ENSURE(memchr(text, 0, n) == NULL, DECODE_ERR, "local message: a NUL byte in the usage counts");
    m->counts = (const char *)text;
    m->counts_size = n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT get_key(struct veil_cursor *c, struct veil_la_msg *m)
{
    VEIL_GUARD(veil_cursor_u32le(c, &m->key_version));
    VEIL_ENSURE(m->key_version > 0, DECODE_ERR, "local message: key version 0");
    VEIL_GUARD(veil_cursor_u64le(c, &m->min_model_version));
    VEIL_ENSURE(m->min_model_version <= (UINT64_MAX >> 1), DECODE_ERR, "local message: a minimum model version "
                "over 2^63-1");
    VEIL_GUARD(get_lease(c, &m->lease_ms));
    uint8_t n = 0;
    VEIL_GUARD(veil_cursor_u8(c, &n));
    VEIL_ENSURE(n >= VEIL_KBS_MODEL_KEY_MIN_SIZE && n <= VEIL_LEASE_KEY_MAX_SIZE, DECODE_ERR,
                "local message: a key of %u bytes", n);
    m->key_size = n;
    VEIL_GUARD(veil_cursor_bytes(c, n, &m->key));
    VEIL_GUARD(get_usage(c, m));
    return get_counts(c, m);
}

static VEIL_RESULT get_error(struct veil_cursor *c, struct veil_la_msg *m)
{
    uint8_t n = 0;
    const uint8_t *text = NULL;
    VEIL_GUARD(veil_cursor_u16le(c, &m->error));
    VEIL_ENSURE(m->error >= VEIL_LA_E_BAD_MESSAGE && m->error <= VEIL_LA_E_INTERNAL, DECODE_ERR,
                "local message: unknown error code %u", m->error);
    VEIL_GUARD(veil_cursor_u8(c, &n));
    VEIL_ENSURE(n <= VEIL_LA_ERROR_MAX, DECODE_ERR, "local message: an error message of %u bytes", n);
    VEIL_GUARD(veil_cursor_bytes(c, n, &text));
    for (size_t i = 0; i < n; i++)
        VEIL_ENSURE(text[i] >= 0x20 && text[i] < 0x7f, DECODE_ERR, "local message: an unprintable error message");
    memcpy(m->message, text, n);
    m->message[n] = '\0';
    return VEIL_RESULT_OK;
}

static VEIL_RESULT decode_payload(struct veil_cursor *c, struct veil_la_msg *m)
{
    switch (m->type) {
    case VEIL_LA_HELLO:
    case VEIL_LA_CHALLENGE:
        VEIL_GUARD(veil_cursor_copy(c, m->nonce, sizeof m->nonce));
        VEIL_GUARD(veil_cursor_u8(c, &m->kind));
        VEIL_GUARD(get_sized(c, m->kind, 0, &m->target, &m->target_size));
        return m->type == VEIL_LA_HELLO ? VEIL_RESULT_OK : get_sized(c, m->kind, 1, &m->report, &m->report_size);
    case VEIL_LA_ATTEST:
        VEIL_GUARD(veil_cursor_u8(c, &m->kind));
        return get_sized(c, m->kind, 1, &m->report, &m->report_size);
    case VEIL_LA_READY: return VEIL_RESULT_OK;
    case VEIL_LA_KEY_REQUEST: return get_model(c, m);
    case VEIL_LA_RENEW: VEIL_GUARD(get_model(c, m)); return get_counts(c, m);
    case VEIL_LA_KEY: return get_key(c, m);
    case VEIL_LA_LEASE: VEIL_GUARD(get_lease(c, &m->lease_ms)); return get_counts(c, m);
    case VEIL_LA_ERROR: return get_error(c, m);
    default: VEIL_BAIL(DECODE_ERR, "local message: unknown type %u", m->type);
    }
}

static VEIL_RESULT decode(const uint8_t *body, size_t size, struct veil_la_msg *m)
{
    VEIL_ENSURE(body != NULL && size > 0 && size <= VEIL_LA_MAX_MESSAGE_SIZE, VEIL_ERR_LIMIT,
                "local message: a body of %zu bytes", size);
    struct veil_cursor c = veil_cursor_make(body, size);
    uint8_t version = 0;
    VEIL_GUARD(veil_cursor_u8(&c, &version));
    VEIL_ENSURE(version == VEIL_LA_VERSION, DECODE_ERR, "local message: version %u (this side speaks %u)", version,
                VEIL_LA_VERSION);
    VEIL_GUARD(veil_cursor_u8(&c, &m->type));
    VEIL_GUARD(decode_payload(&c, m));
    return veil_cursor_expect_end(&c);
}

VEIL_RESULT veil_la_decode(const uint8_t *body, size_t size, struct veil_la_msg *out)
{
    memset(out, 0, sizeof *out);
    struct veil_result r = decode(body, size, out);
    if (!veil_ok(r))
        memset(out, 0, sizeof *out);
    return r;
}

VEIL_RESULT veil_la_frame_size(const uint8_t header[4], size_t *size)
{
    uint32_t n = (uint32_t)header[0] | (uint32_t)header[1] << 8 | (uint32_t)header[2] << 16 |
                 (uint32_t)header[3] << 24;
    VEIL_ENSURE(n > 0 && n <= VEIL_LA_MAX_MESSAGE_SIZE, VEIL_ERR_LIMIT, "local message: a frame of %u bytes", n);
    *size = n;
    return VEIL_RESULT_OK;
}

/* ---- encoding ----------------------------------------------------------------------------------------------- */

static VEIL_RESULT put_sized(struct veil_buf *b, const uint8_t *data, size_t size)
{
    VEIL_GUARD(veil_buf_append_u16le(b, (uint16_t)size));
    return veil_buf_append(b, data, size);
}

static VEIL_RESULT put_model(struct veil_buf *b, const struct veil_la_msg *m)
{
    size_t n = strlen(m->model_id);
    VEIL_GUARD(veil_buf_append_u32le(b, m->key_version));
    VEIL_GUARD(veil_buf_append_u8(b, (uint8_t)n));
    return veil_buf_append(b, m->model_id, n);
}

static VEIL_RESULT put_counts(struct veil_buf *b, const struct veil_la_msg *m)
{
    VEIL_ENSURE(m->counts_size <= VEIL_USAGE_COUNTS_MAX_SIZE, VEIL_ERR_ARG, "local message: usage counts too large");
    VEIL_GUARD(veil_buf_append_u32le(b, (uint32_t)m->counts_size));
    return m->counts_size > 0 ? veil_buf_append(b, m->counts, m->counts_size) : VEIL_RESULT_OK;
}

static VEIL_RESULT put_key(struct veil_buf *b, const struct veil_la_msg *m)
{
    VEIL_GUARD(veil_buf_append_u32le(b, m->key_version));
    VEIL_GUARD(veil_buf_append_u64le(b, m->min_model_version));
    VEIL_GUARD(veil_buf_append_u64le(b, m->lease_ms));
    VEIL_GUARD(veil_buf_append_u8(b, (uint8_t)m->key_size));
    VEIL_GUARD(veil_buf_append(b, m->key, m->key_size));
    VEIL_GUARD(veil_buf_append_u8(b, m->has_usage ? 1 : 0));
    VEIL_GUARD(veil_buf_append_u32le(b, m->has_usage ? (uint32_t)m->usage_size : 0));
    if (m->has_usage)
        VEIL_GUARD(veil_buf_append(b, m->usage, m->usage_size));
    return put_counts(b, m);
}

static VEIL_RESULT encode_payload(struct veil_buf *b, const struct veil_la_msg *m)
{
    switch (m->type) {
    case VEIL_LA_HELLO:
    case VEIL_LA_CHALLENGE:
        VEIL_GUARD(veil_buf_append(b, m->nonce, sizeof m->nonce));
        VEIL_GUARD(veil_buf_append_u8(b, m->kind));
        VEIL_GUARD(put_sized(b, m->target, m->target_size));
        return m->type == VEIL_LA_HELLO ? VEIL_RESULT_OK : put_sized(b, m->report, m->report_size);
    case VEIL_LA_ATTEST:
        VEIL_GUARD(veil_buf_append_u8(b, m->kind));
        return put_sized(b, m->report, m->report_size);
    case VEIL_LA_READY: return VEIL_RESULT_OK;
    case VEIL_LA_KEY_REQUEST: return put_model(b, m);
    case VEIL_LA_RENEW: VEIL_GUARD(put_model(b, m)); return put_counts(b, m);
    case VEIL_LA_KEY: return put_key(b, m);
    case VEIL_LA_LEASE: VEIL_GUARD(veil_buf_append_u64le(b, m->lease_ms)); return put_counts(b, m);
    case VEIL_LA_ERROR: {
        size_t n = strlen(m->message);
        VEIL_GUARD(veil_buf_append_u16le(b, m->error));
        VEIL_GUARD(veil_buf_append_u8(b, (uint8_t)n));
        return veil_buf_append(b, m->message, n);
    }
    default: VEIL_BAIL(VEIL_ERR_ARG, "local message: unknown type %u", m->type);
    }
}

/* The body is decoded again before it is framed: the encoder cannot emit what the decoder refuses. */
VEIL_RESULT veil_la_encode(const struct veil_la_msg *m, struct veil_buf *out)
{
    size_t start = out->size;
    VEIL_GUARD(veil_buf_append_u32le(out, 0));
    VEIL_GUARD(veil_buf_append_u8(out, VEIL_LA_VERSION));
    VEIL_GUARD(veil_buf_append_u8(out, m->type));
    struct veil_result r = encode_payload(out, m);
    size_t body = out->size - start - 4;
    struct veil_la_msg check;
    if (veil_ok(r))
        r = veil_la_decode(out->data + start + 4, body, &check);
    veil_wipe(&check, sizeof check);
    if (!veil_ok(r)) {
        veil_wipe(out->data + start, out->size - start);
        out->size = start;
        VEIL_BAIL(VEIL_ERR_ARG, "refusing to send a malformed local message (type %u)", m->type);
    }
    veil_store_u32le(out->data + start, (uint32_t)body);
    return VEIL_RESULT_OK;
}

void veil_la_error_msg(struct veil_la_msg *m, uint16_t code, const char *message)
{
    memset(m, 0, sizeof *m);
    m->type = VEIL_LA_ERROR;
    m->error = code;
    size_t n = 0;
    for (; message != NULL && message[n] != '\0' && n < VEIL_LA_ERROR_MAX; n++)
        m->message[n] = message[n] >= 0x20 && message[n] < 0x7f ? message[n] : '?';
    m->message[n] = '\0';
}

const char *veil_la_error_name(uint16_t code)
{
    static const char *const names[] = {"unknown", "bad-message", "peer", "report", "not-allowed", "revoked",
                                        "unavailable", "internal"};
    return code < sizeof names / sizeof names[0] ? names[code] : names[0];
}

/* ---- the channel binding ------------------------------------------------------------------------------------ */

static VEIL_RESULT digest_sized(EVP_MD_CTX *md, const uint8_t *data, size_t size)
{
    uint8_t len[2];
    VEIL_ENSURE(size <= VEIL_LA_MAX_TARGET_SIZE, VEIL_ERR_ARG, "a target of %zu bytes", size);
    veil_store_u16le(len, (uint16_t)size);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, len, sizeof len), VEIL_ERR_CRYPTO);
    if (size > 0)
        VEIL_GUARD_OSSL(EVP_DigestUpdate(md, data, size), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_la_binding(uint8_t role, const uint8_t nonce_r[VEIL_LA_NONCE_SIZE],
                            const uint8_t nonce_c[VEIL_LA_NONCE_SIZE], const uint8_t *target_r, size_t target_r_size,
                            const uint8_t *target_c, size_t target_c_size, const uint8_t *exporter,
                            uint8_t out[VEIL_LA_BINDING_SIZE])
{
    VEIL_ENSURE(role == 'R' || role == 'C', VEIL_ERR_ARG, "a binding for role %u", role);
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestInit_ex(md, EVP_sha512(), NULL), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, VEIL_LA_BINDING_DOMAIN, sizeof VEIL_LA_BINDING_DOMAIN), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, &role, 1), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, nonce_r, VEIL_LA_NONCE_SIZE), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, nonce_c, VEIL_LA_NONCE_SIZE), VEIL_ERR_CRYPTO);
    VEIL_GUARD(digest_sized(md, target_r, target_r_size));
    VEIL_GUARD(digest_sized(md, target_c, target_c_size));
    if (exporter != NULL)
        VEIL_GUARD_OSSL(EVP_DigestUpdate(md, exporter, VEIL_LA_EXPORTER_SIZE), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestFinal_ex(md, out, NULL), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}
