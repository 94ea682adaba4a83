/* SPDX-License-Identifier: Apache-2.0 */
/* SGX local attestation (local.h, "SGX local attestation"; shared/reference/deployment.md §1.7): REPORTs made by
 * EREPORT through Gramine's /dev/attestation pseudo-files, verified with the report key from EGETKEY. Without SGX
 * hardware only the parts around the two instructions can run: the tests drive them with a fake /dev/attestation
 * tree and an injected report key. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "cache/local.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/hex.h"
#include "core/secret.h"

#define GRAMINE_DEFAULT_ROOT "/dev/attestation"
#define OFF_MISCSELECT 16u
#define OFF_ATTRIBUTES 48u
#define OFF_MRENCLAVE 64u
#define OFF_MRSIGNER 128u
#define OFF_ISVPRODID 256u
#define OFF_REPORTDATA 320u
#define OFF_KEYID 384u
#define OFF_MAC 416u
#define KEYREQUEST_SIZE 512u
#define KEYREQUEST_KEYID 40u
#define KEYNAME_REPORT 3u
#define ENCLU_EGETKEY 1L

VEIL_RESULT veil_sgx_report_parse(const uint8_t *report, size_t size, struct veil_sgx_report *out)
{
    VEIL_ENSURE(report != NULL && size == VEIL_SGX_REPORT_SIZE, VEIL_ERR_FORMAT, "an SGX REPORT of %zu bytes (%u)",
                size, VEIL_SGX_REPORT_SIZE);
    memset(out, 0, sizeof *out);
    struct veil_cursor c = veil_cursor_make(report, size);
    VEIL_GUARD(veil_cursor_skip(&c, OFF_MISCSELECT));
    VEIL_GUARD(veil_cursor_u32le(&c, &out->miscselect));
    VEIL_GUARD(veil_cursor_skip(&c, OFF_ATTRIBUTES - OFF_MISCSELECT - 4));
    VEIL_GUARD(veil_cursor_u64le(&c, &out->flags));
    VEIL_GUARD(veil_cursor_u64le(&c, &out->xfrm));
    VEIL_GUARD(veil_cursor_copy(&c, out->mrenclave, VEIL_SGX_MR_SIZE));
    VEIL_GUARD(veil_cursor_skip(&c, OFF_MRSIGNER - OFF_MRENCLAVE - VEIL_SGX_MR_SIZE));
    VEIL_GUARD(veil_cursor_copy(&c, out->mrsigner, VEIL_SGX_MR_SIZE));
    VEIL_GUARD(veil_cursor_skip(&c, OFF_ISVPRODID - OFF_MRSIGNER - VEIL_SGX_MR_SIZE));
    VEIL_GUARD(veil_cursor_u16le(&c, &out->isv_prod_id));
    VEIL_GUARD(veil_cursor_u16le(&c, &out->isv_svn));
    VEIL_GUARD(veil_cursor_u16le(&c, &out->config_svn));
    VEIL_GUARD(veil_cursor_skip(&c, OFF_REPORTDATA - OFF_ISVPRODID - 6));
    VEIL_GUARD(veil_cursor_copy(&c, out->report_data, VEIL_REPORT_DATA_SIZE));
    VEIL_GUARD(veil_cursor_copy(&c, out->key_id, VEIL_SGX_KEYID_SIZE));
    VEIL_GUARD(veil_cursor_skip(&c, 16));
    return veil_cursor_expect_end(&c);
}

static void mac_ctx_done(EVP_MAC_CTX **c) { EVP_MAC_CTX_free(*c); }
static void mac_done(EVP_MAC **m) { EVP_MAC_free(*m); }

VEIL_RESULT veil_sgx_report_mac(const uint8_t key[VEIL_SGX_REPORT_KEY_SIZE], const uint8_t *body, uint8_t mac[16])
{
    VEIL_DEFER(mac_done) EVP_MAC *m = EVP_MAC_fetch(NULL, "CMAC", NULL);
    VEIL_ENSURE(m != NULL, VEIL_ERR_CRYPTO, "the crypto library has no CMAC");
    VEIL_DEFER(mac_ctx_done) EVP_MAC_CTX *c = EVP_MAC_CTX_new(m);
    VEIL_ENSURE(c != NULL, VEIL_ERR_NOMEM, "out of memory");
    char cipher[] = "AES-128-CBC";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0), OSSL_PARAM_END};
    VEIL_GUARD_OSSL(EVP_MAC_init(c, key, VEIL_SGX_REPORT_KEY_SIZE, params), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_MAC_update(c, body, VEIL_SGX_REPORT_BODY_SIZE), VEIL_ERR_CRYPTO);
    size_t n = 0;
    VEIL_GUARD_OSSL(EVP_MAC_final(c, mac, &n, 16), VEIL_ERR_CRYPTO);
    VEIL_ENSURE(n == 16, VEIL_ERR_CRYPTO, "CMAC gave %zu bytes", n);
    return VEIL_RESULT_OK;
}

/* (a) The MAC, with the report key of the report's KEYID. */
static VEIL_RESULT check_mac(const uint8_t *report, const struct veil_sgx_report *r, veil_sgx_report_key_fn key_fn,
                             void *ctx)
{
    uint8_t key[VEIL_SGX_REPORT_KEY_SIZE], mac[16];
    struct veil_result res = key_fn(ctx, r->key_id, key);
    if (veil_ok(res))
        res = veil_sgx_report_mac(key, report, mac);
    veil_wipe(key, sizeof key);
    VEIL_GUARD(res);
    VEIL_ENSURE(veil_ct_compare(mac, report + OFF_MAC, sizeof mac) == 0, VEIL_ERR_AUTH,
                "the SGX REPORT's MAC does not verify (made for another target enclave, or changed)");
    return VEIL_RESULT_OK;
}

static int listed(const struct veil_sgx_peer_policy *p, const uint8_t mrenclave[VEIL_SGX_MR_SIZE])
{
    for (size_t i = 0; i < p->mrenclave_count; i++)
        if (memcmp(p->mrenclaves[i], mrenclave, VEIL_SGX_MR_SIZE) == 0)
            return 1;
    return 0;
}

/* (b) Attributes, then the identity: "Checking MRENCLAVE alone is not enough (it does not cover ATTRIBUTES.DEBUG)". */
static VEIL_RESULT check_body(const struct veil_sgx_report *r, const struct veil_sgx_peer_policy *p)
{
    VEIL_ENSURE(p != NULL, VEIL_ERR_ARG, "no SGX peer policy");
    VEIL_ENSURE((r->flags & VEIL_SGX_FLAG_INIT) && (r->flags & VEIL_SGX_FLAG_MODE64BIT), VEIL_ERR_POLICY,
                "the SGX REPORT's enclave is not initialised or not 64-bit");
    VEIL_ENSURE(p->allow_debug || !(r->flags & VEIL_SGX_FLAG_DEBUG), VEIL_ERR_POLICY,
                "the SGX REPORT comes from a DEBUG enclave");
    if (listed(p, r->mrenclave))
        return VEIL_RESULT_OK;
    VEIL_ENSURE(p->signer != NULL && memcmp(p->signer, r->mrsigner, VEIL_SGX_MR_SIZE) == 0 &&
                    r->isv_prod_id == p->product_id && r->isv_svn >= p->min_svn,
                VEIL_ERR_POLICY, "the SGX REPORT's enclave identity (MRENCLAVE, or MRSIGNER, ISVPRODID and ISVSVN) "
                "is not allowed");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_sgx_report_admit_any(const struct veil_sgx_report *r, const struct veil_sgx_peer_policy *policies,
                                      size_t count)
{
    VEIL_ENSURE(count > 0 && policies != NULL, VEIL_ERR_POLICY, "no SGX enclave identity is allowed here");
    struct veil_result res = VEIL_RESULT_OK;
    for (size_t i = 0; i < count; i++) {
        res = check_body(r, &policies[i]);
        if (veil_ok(res))
            return res;
    }
    return res; /* the last policy's reason */
}

VEIL_RESULT veil_sgx_report_verify(const uint8_t *report, size_t size, veil_sgx_report_key_fn key_fn, void *ctx,
                                   const struct veil_sgx_peer_policy *policy,
                                   const uint8_t expected[VEIL_REPORT_DATA_SIZE], struct veil_sgx_report *out)
{
    VEIL_ENSURE(policy != NULL, VEIL_ERR_ARG, "veil_sgx_report_verify: NULL argument");
    return veil_sgx_report_verify_any(report, size, key_fn, ctx, policy, 1, expected, out);
}

VEIL_RESULT veil_sgx_report_verify_any(const uint8_t *report, size_t size, veil_sgx_report_key_fn key_fn, void *ctx,
                                       const struct veil_sgx_peer_policy *policies, size_t count,
                                       const uint8_t expected[VEIL_REPORT_DATA_SIZE], struct veil_sgx_report *out)
{
    VEIL_ENSURE(key_fn != NULL && policies != NULL && expected != NULL && out != NULL, VEIL_ERR_ARG,
                "veil_sgx_report_verify: NULL argument");
    struct veil_sgx_report r;
    VEIL_GUARD(veil_sgx_report_parse(report, size, &r));
    VEIL_GUARD(check_mac(report, &r, key_fn, ctx));
    VEIL_GUARD(veil_sgx_report_admit_any(&r, policies, count));
    VEIL_ENSURE(veil_ct_compare(r.report_data, expected, VEIL_REPORT_DATA_SIZE) == 0, VEIL_ERR_VERIFY,
                "the SGX REPORT is bound to another channel (replayed, relayed or another TLS session)");
    *out = r;
    return VEIL_RESULT_OK;
}

/* ---- identities in configurations ------------------------------------------------------------------------ */

static VEIL_RESULT parse_u16(const char *text, size_t n, const char *what, uint16_t *out)
{
    unsigned long v = 0;
    VEIL_ENSURE(n > 0 && n <= 5, VEIL_ERR_ARG, "an SGX identity's %s must be a number 0..65535", what);
    for (size_t i = 0; i < n; i++) {
        VEIL_ENSURE(text[i] >= '0' && text[i] <= '9', VEIL_ERR_ARG, "an SGX identity's %s must be a number 0..65535",
                    what);
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    VEIL_ENSURE(v <= UINT16_MAX, VEIL_ERR_ARG, "an SGX identity's %s must be a number 0..65535", what);
    *out = (uint16_t)v;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_sgx_identity_parse(const char *text, struct veil_sgx_identity *out)
{
    memset(out, 0, sizeof *out);
    VEIL_ENSURE(text != NULL, VEIL_ERR_ARG, "no SGX identity");
    size_t mr = strcspn(text, ":");
    VEIL_GUARD(veil_hex_decode(VEIL_HEX_ANY_CASE, text, mr, out->mr, sizeof out->mr, VEIL_ERR_ARG,
                               "an SGX identity (MRENCLAVE, or MRSIGNER:ISVPRODID:MIN_ISVSVN; 64 hex digits)"));
    if (text[mr] == '\0')
        return VEIL_RESULT_OK;
    const char *prod = text + mr + 1;
    size_t n = strcspn(prod, ":");
    VEIL_ENSURE(prod[n] == ':', VEIL_ERR_ARG, "an SGX identity with a signer is MRSIGNER:ISVPRODID:MIN_ISVSVN");
    VEIL_GUARD(parse_u16(prod, n, "ISVPRODID", &out->product_id));
    VEIL_GUARD(parse_u16(prod + n + 1, strlen(prod + n + 1), "minimum ISVSVN", &out->min_svn));
    out->by_signer = 1;
    return VEIL_RESULT_OK;
}

void veil_sgx_identity_policy(const struct veil_sgx_identity *id, struct veil_sgx_peer_policy *out)
{
    memset(out, 0, sizeof *out);
    if (id->by_signer) {
        out->signer = id->mr;
        out->product_id = id->product_id;
        out->min_svn = id->min_svn;
    } else {
        out->mrenclaves = &id->mr;
        out->mrenclave_count = 1;
    }
}

/* ---- EGETKEY ------------------------------------------------------------------------------------------------ */

VEIL_RESULT veil_sgx_egetkey_report_key(void *ctx, const uint8_t key_id[VEIL_SGX_KEYID_SIZE],
                                        uint8_t key[VEIL_SGX_REPORT_KEY_SIZE])
{
    (void)ctx;
#if defined(__x86_64__)
    _Alignas(512) uint8_t request[KEYREQUEST_SIZE];
    _Alignas(16) uint8_t out[VEIL_SGX_REPORT_KEY_SIZE];
    memset(request, 0, sizeof request);
    veil_store_u16le(request, KEYNAME_REPORT);
    memcpy(request + KEYREQUEST_KEYID, key_id, VEIL_SGX_KEYID_SIZE);
    long rax = ENCLU_EGETKEY;
    /* ENCLU (0f 01 d7) with RAX = EGETKEY, RBX = KEYREQUEST, RCX = the key: as Gramine's sgx_getkey. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd7" : "+a"(rax) : "b"(request), "c"(out) : "memory", "cc");
    if (rax != 0) {
        veil_wipe(out, sizeof out);
        VEIL_BAIL(VEIL_ERR_CRYPTO, "EGETKEY failed (%ld)", rax);
    }
    memcpy(key, out, sizeof out);
    veil_wipe(out, sizeof out);
    return VEIL_RESULT_OK;
#else
    (void)key_id, (void)key;
    VEIL_BAIL(VEIL_ERR_UNSUPPORTED, "EGETKEY exists only on x86-64 SGX");
#endif
}

/* ---- Gramine's pseudo-files --------------------------------------------------------------------------------- */

/* Every /dev/attestation use of this process (report and quote share its state) — here: the reports. */
static pthread_mutex_t attestation_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *root_of(const char *root)
{
    return root != NULL && root[0] != '\0' ? root : GRAMINE_DEFAULT_ROOT;
}

/* One write(2) of exactly size bytes: Gramine takes a pseudo-file's value from a single write. */
static VEIL_RESULT write_once(const char *root, const char *name, const uint8_t *data, size_t size)
{
    char path[4096];
    VEIL_ENSURE((size_t)snprintf(path, sizeof path, "%s/%s", root, name) < sizeof path, VEIL_ERR_ARG, "path too long");
    VEIL_DEFER(veil_fd_close) int fd = open(path, O_WRONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    ssize_t n = write(fd, data, size);
    VEIL_ENSURE(n == (ssize_t)size, VEIL_ERR_IO, "cannot write %s in one write: %s", path,
                n < 0 ? strerror(errno) : "short write");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT read_exact(const char *root, const char *name, uint8_t *out, size_t size)
{
    char path[4096];
    VEIL_ENSURE((size_t)snprintf(path, sizeof path, "%s/%s", root, name) < sizeof path, VEIL_ERR_ARG, "path too long");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b;
    veil_buf_init(&b);
    VEIL_GUARD(veil_file_read_all(path, size, &b));
    VEIL_ENSURE(b.size == size, VEIL_ERR_FORMAT, "%s holds %zu bytes, not %zu", path, b.size, size);
    memcpy(out, b.data, size);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_sgx_my_target_info(const char *gramine_root, uint8_t out[VEIL_SGX_TARGETINFO_SIZE])
{
    return read_exact(root_of(gramine_root), "my_target_info", out, VEIL_SGX_TARGETINFO_SIZE);
}

static VEIL_RESULT report_steps(const char *root, const uint8_t *target_info, const uint8_t *report_data,
                                uint8_t *out)
{
    VEIL_GUARD(write_once(root, "target_info", target_info, VEIL_SGX_TARGETINFO_SIZE));
    VEIL_GUARD(write_once(root, "user_report_data", report_data, VEIL_REPORT_DATA_SIZE));
    return read_exact(root, "report", out, VEIL_SGX_REPORT_SIZE);
}

VEIL_RESULT veil_sgx_report_create(const char *gramine_root, const uint8_t target_info[VEIL_SGX_TARGETINFO_SIZE],
                                   const uint8_t report_data[VEIL_REPORT_DATA_SIZE], uint8_t out[VEIL_SGX_REPORT_SIZE])
{
    pthread_mutex_lock(&attestation_lock);
    struct veil_result r = report_steps(root_of(gramine_root), target_info, report_data, out);
    pthread_mutex_unlock(&attestation_lock);
    return r;
}
