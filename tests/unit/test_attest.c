/* SPDX-License-Identifier: Apache-2.0 */
/* lib/attest core: TEE names and detection, encodings, the sim / sample / Gramine / configfs-tsm providers driven
 * against fake trees, evidence dispatch, the sim and sample verifiers, claims JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest/attest_internal.h"
#include "core/cursor.h"
#include "core/limits.h"
#include "testutil.h"
#include "veil/attest.h"

static void rd_fill(uint8_t rd[VEIL_REPORT_DATA_SIZE], uint8_t seed)
{
    for (size_t i = 0; i < VEIL_REPORT_DATA_SIZE; i++)
        rd[i] = (uint8_t)(seed + i);
}

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n == 0;
}

/* ---- names, codecs ---------------------------------------------------------------------------------------- */

static void test_tee_names(void **state)
{
    (void)state;
    for (int t = VEIL_TEE_AUTO; t <= VEIL_TEE_SNP; t++) {
        veil_tee back;
        assert_int_equal(veil_tee_from_name(veil_tee_name((veil_tee)t), &back), VEIL_OK);
        assert_int_equal(back, t);
    }
    veil_tee x;
    assert_int_equal(veil_tee_from_name("SGX", &x), VEIL_ERR_ARG);
    assert_int_equal(veil_tee_from_name("", &x), VEIL_ERR_ARG);
    assert_string_equal(veil_tee_name((veil_tee)99), "unknown");
}

/* Evidence carries standard padded base64 in JSON members (lib/core/json.h with VEIL_ERR_EVIDENCE). */
static struct veil_result b64_member(const char *text, size_t max_size, struct veil_buf *out)
{
    json_t *j = json_object(); /* _nocheck: the bytes reach the decoder even when they are not UTF-8 */
    assert_int_equal(json_object_set_new(j, "x", json_stringn_nocheck(text, strlen(text))), 0);
    struct veil_result r = veil_json_b64(j, "x", VEIL_B64_STD, 1, 0, max_size, VEIL_ERR_EVIDENCE, "test", out, NULL);
    json_decref(j);
    return r;
}

static void test_base64_strict(void **state)
{
    (void)state;
    const uint8_t data[] = {0xfb, 0xff, 0x00, 0x41, 0x42};
    for (size_t n = 0; n <= sizeof data; n++) {
        char *s = NULL;
        assert_true(veil_ok(veil_b64_encode(VEIL_B64_STD, data, n, &s)));
        struct veil_buf b = {0};
        assert_true(veil_ok(b64_member(s, 16, &b)));
        assert_int_equal(b.size, n);
        assert_true(n == 0 || memcmp(b.data, data, n) == 0);
        veil_buf_cleanup(&b);
        free(s);
    }
    const char *bad[] = {"QQ", "QR==", "QUI=QUI=", "Q===", "QUJD\n", " QUJD", "QU-D", "QUJ\x80", "=QUJ"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct veil_buf b = {0};
        assert_int_equal(b64_member(bad[i], 16, &b).status, VEIL_ERR_EVIDENCE);
        assert_int_equal(b.size, 0);
        veil_buf_cleanup(&b);
    }
    struct veil_buf b = {0};
    assert_int_equal(b64_member("QUJDRA==", 3, &b).status, VEIL_ERR_LIMIT);
    assert_int_equal(b64_member("QUJDREVGR0hJ", 3, &b).status, VEIL_ERR_LIMIT);
    assert_int_equal(b.size, 0);
    veil_buf_cleanup(&b);
}

/* ---- sim ---------------------------------------------------------------------------------------------- */

struct sim_fixture {
    char *dir;
    char *pub;
    const char *exe, *cfg;
};

static int sim_setup(void **state)
{
    struct sim_fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    char plat[512];
    snprintf(plat, sizeof plat, "%s/plat", f->dir);
    assert_int_equal(veil_sim_init(plat, &f->pub), VEIL_OK);
    f->exe = strdup(tu_path(0, f->dir, "app.bin"));
    f->cfg = strdup(tu_path(1, f->dir, "app.toml"));
    tu_write(f->exe, "pretend executable", 18);
    tu_write(f->cfg, "threads = 4\n", 12);
    *state = f;
    return 0;
}

static int sim_teardown(void **state)
{
    struct sim_fixture *f = *state;
    tu_rmdir(f->dir);
    free(f->dir);
    veil_free(f->pub);
    free((void *)(uintptr_t)f->exe);
    free((void *)(uintptr_t)f->cfg);
    free(f);
    return 0;
}

static char *sim_collect(const struct sim_fixture *f, const uint8_t *rd, uint32_t svn)
{
    char plat[512];
    snprintf(plat, sizeof plat, "%s/plat", f->dir);
    struct veil_provider_config cfg = {.sim_dir = plat, .sim_executable = f->exe, .sim_config = f->cfg,
                                       .sim_svn = svn};
    char *ev = NULL;
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SIM, &cfg, rd, &ev), VEIL_OK);
    return ev;
}

static veil_status sim_verify(const char *ev, size_t n, const char *key, struct veil_claims *c)
{
    const char *keys[1] = {key};
    struct veil_verify_options o = {.now = 1, .sim_trusted_keys = keys, .sim_trusted_key_count = key ? 1 : 0};
    return veil_evidence_verify((const uint8_t *)ev, n, VEIL_TEE_AUTO, &o, c);
}

/* The measurement recomputed from docs/spec/evidence.md. */
static void expected_measurement(uint8_t out[48])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t len[8];
    assert_int_equal(EVP_DigestInit_ex(md, EVP_sha384(), NULL), 1);
    EVP_DigestUpdate(md, "VEIL-SIM-MEASUREMENT-V1", 24);
    veil_store_u64le(len, 18);
    EVP_DigestUpdate(md, len, 8);
    EVP_DigestUpdate(md, "pretend executable", 18);
    veil_store_u64le(len, 12);
    EVP_DigestUpdate(md, len, 8);
    EVP_DigestUpdate(md, "threads = 4\n", 12);
    assert_int_equal(EVP_DigestFinal_ex(md, out, NULL), 1);
    EVP_MD_CTX_free(md);
}

static void test_sim_init_files(void **state)
{
    struct sim_fixture *f = *state;
    struct stat st;
    assert_int_equal(stat(tu_path(0, f->dir, "plat"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(tu_path(0, f->dir, "plat/platform.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t n = 0;
    uint8_t *key = tu_read(tu_path(0, f->dir, "plat/platform.key"), &n);
    /* never replaced */
    char *pub2 = NULL;
    assert_int_equal(veil_sim_init(tu_path(1, f->dir, "plat"), &pub2), VEIL_ERR_ARG);
    assert_null(pub2);
    assert_non_null(strstr(veil_last_error(), "already exists"));
    size_t n2 = 0;
    uint8_t *key2 = tu_read(tu_path(0, f->dir, "plat/platform.key"), &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(key, key2, n);
    free(key);
    free(key2);
    /* a P-256 key: its SPKI prefix in base64 */
    assert_int_equal(strncmp(f->pub, "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", 63), 0);
    assert_int_equal(veil_sim_init(tu_path(0, f->dir, "app.bin"), NULL), VEIL_ERR_IO); /* not a directory */
}

/* The measurement is cached between collects (bench-relevant); a changed file must still change it, even when
 * rewritten at once with the same size (timestamps too coarse to tell), and after its timestamps settled. */
static void measurement_of(const struct sim_fixture *f, uint8_t out[48])
{
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0};
    char *ev = sim_collect(f, rd, 0);
    struct veil_claims c;
    assert_int_equal(sim_verify(ev, strlen(ev), f->pub, &c), VEIL_OK);
    memcpy(out, c.measurement, 48);
    veil_free(ev);
}

static void test_sim_measurement_follows_files(void **state)
{
    struct sim_fixture *f = *state;
    uint8_t a[48], b[48], want[48];
    expected_measurement(want);
    measurement_of(f, a);
    assert_memory_equal(a, want, 48);
    tu_write(f->cfg, "threads = 8\n", 12); /* same size, same tick */
    measurement_of(f, b);
    assert_memory_not_equal(a, b, 48);
    struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    tu_write(f->cfg, "threads = 4\n", 12);
    assert_int_equal(utimensat(AT_FDCWD, f->cfg, old, 0), 0); /* mtime settled; ctime is now */
    measurement_of(f, b);
    assert_memory_equal(b, want, 48);
    measurement_of(f, b); /* twice: whatever was cached */
    assert_memory_equal(b, want, 48);
    tu_write(f->exe, "pretend executablE", 18);
    measurement_of(f, b);
    assert_memory_not_equal(b, want, 48);
    tu_write(f->exe, "pretend executable", 18);
}

static void test_sim_round_trip(void **state)
{
    struct sim_fixture *f = *state;
    uint8_t rd[VEIL_REPORT_DATA_SIZE], m[48];
    rd_fill(rd, 7);
    char *ev = sim_collect(f, rd, 42);
    struct veil_claims c;
    assert_int_equal(sim_verify(ev, strlen(ev), f->pub, &c), VEIL_OK);
    assert_int_equal(c.tee, VEIL_TEE_SIM);
    assert_memory_equal(c.report_data, rd, sizeof rd);
    expected_measurement(m);
    assert_int_equal(c.measurement_size, 48);
    assert_memory_equal(c.measurement, m, 48);
    assert_int_equal(c.svn, 42);
    assert_string_equal(c.tcb_status, "Simulated");
    /* explicit type, and the type must match */
    const char *keys[1] = {f->pub};
    struct veil_verify_options o = {.sim_trusted_keys = keys, .sim_trusted_key_count = 1};
    assert_int_equal(veil_evidence_verify((const uint8_t *)ev, strlen(ev), VEIL_TEE_SIM, &o, &c), VEIL_OK);
    assert_int_equal(veil_evidence_verify((const uint8_t *)ev, strlen(ev), VEIL_TEE_SGX, &o, &c), VEIL_ERR_EVIDENCE);
    assert_int_equal(c.tee, VEIL_TEE_AUTO); /* zeroed on failure */
    char *json = NULL;
    assert_int_equal(sim_verify(ev, strlen(ev), f->pub, &c), VEIL_OK);
    assert_int_equal(veil_claims_to_json(&c, &json), VEIL_OK);
    assert_non_null(strstr(json, "\"tcb_status\":\"Simulated\""));
    assert_non_null(strstr(json, "\"svn\":42"));
    veil_free(json);
    veil_free(ev);
}

static void test_sim_untrusted_key(void **state)
{
    struct sim_fixture *f = *state;
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0};
    char *ev = sim_collect(f, rd, 0);
    struct veil_claims c;
    assert_int_equal(sim_verify(ev, strlen(ev), NULL, &c), VEIL_ERR_VERIFY);
    char *other = NULL;
    assert_int_equal(veil_sim_init(tu_path(0, f->dir, "other"), &other), VEIL_OK);
    assert_int_equal(sim_verify(ev, strlen(ev), other, &c), VEIL_ERR_VERIFY);
    assert_non_null(strstr(veil_last_error(), "not trusted"));
    assert_int_equal(sim_verify(ev, strlen(ev), "not a key", &c), VEIL_ERR_ARG);
    /* a trusted key list with the right one anywhere in it */
    const char *keys[2] = {other, f->pub};
    struct veil_verify_options o = {.sim_trusted_keys = keys, .sim_trusted_key_count = 2};
    assert_int_equal(veil_evidence_verify((const uint8_t *)ev, strlen(ev), VEIL_TEE_AUTO, &o, &c), VEIL_OK);
    veil_free(other);
    veil_free(ev);
}

/* ---- the platform key ---- */

/* ev with member key replaced by value (consumed); free() the result. */
static char *ev_with(const char *ev, const char *key, json_t *value)
{
    json_t *j = json_loads(ev, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_set_new(j, key, value), 0);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_non_null(s);
    return s;
}

static json_t *b64_string(const uint8_t *data, size_t size)
{
    char *s = NULL;
    assert_true(veil_ok(veil_b64_encode(VEIL_B64_STD, data, size, &s)));
    json_t *v = json_string(s);
    free(s);
    return v;
}

/* PEM armour around der: cols base64 characters a line, each line ended by eol. free() the result. */
static char *pem_of(const uint8_t *der, size_t size, size_t cols, const char *eol)
{
    char *b64 = NULL;
    assert_true(veil_ok(veil_b64_encode(VEIL_B64_STD, der, size, &b64)));
    size_t n = strlen(b64), cap = n + 128 + (n / cols + 3) * strlen(eol);
    char *out = calloc(1, cap);
    snprintf(out, cap, "-----BEGIN PUBLIC KEY-----%s", eol);
    for (size_t i = 0; i < n; i += cols) {
        strncat(out, b64 + i, cols);
        strcat(out, eol);
    }
    strcat(out, "-----END PUBLIC KEY-----");
    strcat(out, eol);
    free(b64);
    return out;
}

/* The DER SPKI of a PEM public key, through OpenSSL's own decoder (an independent reading of platform.pub). */
static size_t openssl_spki(const char *pem, uint8_t *out, size_t cap)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    assert_non_null(k);
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);
    assert_true(n > 0 && (size_t)n <= cap);
    memcpy(out, der, (size_t)n);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
    BIO_free(bio);
    return (size_t)n;
}

static size_t ev_platform_key(const char *ev, uint8_t *out, size_t cap)
{
    json_t *j = json_loads(ev, 0, NULL);
    struct veil_buf b = {0};
    assert_true(veil_ok(veil_json_b64(j, "platform_key", VEIL_B64_STD, 1, 0, 4096, VEIL_ERR_EVIDENCE, "t", &b,
                                      NULL)));
    assert_true(b.size <= cap);
    memcpy(out, b.data, b.size);
    size_t n = b.size;
    veil_buf_cleanup(&b);
    json_decref(j);
    return n;
}

/* docs/spec/evidence.md: platform_key is base64 of the 91-byte DER SPKI of platform.pub; anything else, including
 * the old PEM form, another curve, a compressed point or a point off the curve, is malformed evidence. */
static void test_sim_platform_key(void **state)
{
    struct sim_fixture *f = *state;
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0}, der[256], want[256];
    char *ev = sim_collect(f, rd, 1);
    struct veil_claims c;
    size_t n = ev_platform_key(ev, der, sizeof der);
    assert_int_equal(n, VEIL_SIM_SPKI_SIZE);
    assert_int_equal(openssl_spki(f->pub, want, sizeof want), n);
    assert_memory_equal(der, want, n);
    static const uint8_t prefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                                     0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
    assert_memory_equal(der, prefix, sizeof prefix);

    /* the old form: PEM in the evidence */
    char *bad = ev_with(ev, "platform_key", json_string(f->pub));
    assert_int_equal(sim_verify(bad, strlen(bad), f->pub, &c), VEIL_ERR_EVIDENCE);
    free(bad);
    /* a P-384 key, and a compressed P-256 point (prefix and length differ) */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    unsigned char *d384 = NULL;
    int n384 = i2d_PUBKEY(p384, &d384);
    bad = ev_with(ev, "platform_key", b64_string(d384, (size_t)n384));
    assert_int_equal(sim_verify(bad, strlen(bad), f->pub, &c), VEIL_ERR_EVIDENCE);
    free(bad);
    OPENSSL_free(d384);
    EVP_PKEY_free(p384);
    uint8_t compressed[59];
    memcpy(compressed, der, 23);
    compressed[23] = 0x03, compressed[24] = 0x22, compressed[25] = 0x00, compressed[26] = 0x02;
    memcpy(compressed + 27, der + 27, 32);
    compressed[1] = 0x39;
    bad = ev_with(ev, "platform_key", b64_string(compressed, sizeof compressed));
    assert_int_equal(sim_verify(bad, strlen(bad), f->pub, &c), VEIL_ERR_EVIDENCE);
    free(bad);
    /* off the curve, or a coordinate >= p: refused as malformed even when the very same bytes are trusted */
    for (int k = 0; k < 2; k++) {
        uint8_t off[VEIL_SIM_SPKI_SIZE];
        memcpy(off, der, sizeof off);
        if (k == 0)
            off[sizeof off - 1] ^= 1;
        else
            memset(off + 27, 0xff, 32);
        char *trusted = pem_of(off, sizeof off, 64, "\n");
        bad = ev_with(ev, "platform_key", b64_string(off, sizeof off));
        assert_int_equal(sim_verify(bad, strlen(bad), trusted, &c), VEIL_ERR_EVIDENCE);
        assert_non_null(strstr(veil_last_error(), "not a point on P-256"));
        free(bad);
        free(trusted);
    }
    /* a signature longer than any P-256 DER signature */
    uint8_t sig[VEIL_SIM_SIG_MAX_SIZE + 1] = {0x30};
    bad = ev_with(ev, "signature", b64_string(sig, sizeof sig));
    assert_int_not_equal(sim_verify(bad, strlen(bad), f->pub, &c), VEIL_OK);
    free(bad);
    assert_int_equal(sim_verify(ev, strlen(ev), f->pub, &c), VEIL_OK);
    veil_free(ev);
}

/* Trusted keys are PEM, unwrapped without OpenSSL's decoders: any line width, LF or CRLF, blanks around; nothing
 * else. */
static void test_sim_trusted_pem(void **state)
{
    struct sim_fixture *f = *state;
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0}, der[VEIL_SIM_SPKI_SIZE];
    char *ev = sim_collect(f, rd, 1);
    struct veil_claims c;
    assert_int_equal(ev_platform_key(ev, der, sizeof der), sizeof der);
    static const size_t widths[] = {64, 76, 1, 124};
    for (size_t i = 0; i < 4; i++) {
        char *pem = pem_of(der, sizeof der, widths[i], i % 2 ? "\r\n" : "\n");
        assert_int_equal(sim_verify(ev, strlen(ev), pem, &c), VEIL_OK);
        free(pem);
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "\n  %.*s\n\n", (int)(strlen(f->pub) - 1), f->pub); /* no final line break */
    assert_int_equal(sim_verify(ev, strlen(ev), buf, &c), VEIL_OK);

    char *good = pem_of(der, sizeof der, 64, "\n");
    const char *line2 = strchr(good, '\n') + 1, *line3 = strchr(line2, '\n') + 1;
    /* before || good[0..cut) || mid || good[cut..) || after, where cut is the end of the first base64 line (its
     * line break dropped when split is set) */
    struct {
        const char *before, *mid, *after;
        int split;
    } bad[] = {
        {"junk\n", "", "", 0},
        {"", "", "-", 0},
        {"-----BEGIN EC PUBLIC KEY-----\n", "", "", 0},
        {"", "\n\n", "", 1}, /* an empty line */
        {"", " \n", "", 1},   /* a blank inside a line */
        {"", "\r", "", 1},    /* CR alone */
        {"", "=\n", "", 1},   /* padding in the middle */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int cut = bad[i].split ? (int)(line3 - good - 1) : (int)strlen(good);
        snprintf(buf, sizeof buf, "%s%.*s%s%s%s", bad[i].before, cut, good, bad[i].mid,
                 bad[i].split ? line3 : "", bad[i].after);
        if (sim_verify(ev, strlen(ev), buf, &c) != VEIL_ERR_ARG)
            fail_msg("trusted key %zu accepted or wrong error: %s", i, buf);
        assert_non_null(strstr(veil_last_error(), "trusted simulation key 0"));
    }
    free(good);
    /* another curve */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    unsigned char *d384 = NULL;
    int n384 = i2d_PUBKEY(p384, &d384);
    char *pem384 = pem_of(d384, (size_t)n384, 64, "\n");
    assert_int_equal(sim_verify(ev, strlen(ev), pem384, &c), VEIL_ERR_ARG);
    free(pem384);
    OPENSSL_free(d384);
    EVP_PKEY_free(p384);
    /* too large */
    char *huge = malloc(VEIL_SIM_KEY_MAX_SIZE + 2);
    memset(huge, ' ', VEIL_SIM_KEY_MAX_SIZE + 1);
    huge[VEIL_SIM_KEY_MAX_SIZE + 1] = '\0';
    assert_int_equal(sim_verify(ev, strlen(ev), huge, &c), VEIL_ERR_LIMIT);
    free(huge);
    veil_free(ev);
}

/* A platform made before the switch to P-256 (a P-384 platform.key) is refused with a hint, not used. */
static void test_sim_old_p384_platform(void **state)
{
    struct sim_fixture *f = *state;
    char plat[512];
    snprintf(plat, sizeof plat, "%s/old", f->dir);
    assert_int_equal(mkdir(plat, 0700), 0);
    EVP_PKEY *k = EVP_EC_gen("P-384");
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    tu_write(tu_path(0, plat, "platform.key"), data, (size_t)n);
    BIO_free(bio);
    EVP_PKEY_free(k);
    struct veil_provider_config cfg = {.sim_dir = plat, .sim_executable = f->exe};
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0};
    char *ev = NULL;
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SIM, &cfg, rd, &ev), VEIL_ERR_ARG);
    assert_non_null(strstr(veil_last_error(), "not an ECDSA P-256 key"));
    assert_null(ev);
}

/* Every byte of the evidence, flipped in its low bit, is refused; so is every truncation. */
static void test_sim_every_byte_flip_refused(void **state)
{
    struct sim_fixture *f = *state;
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    rd_fill(rd, 1);
    char *ev = sim_collect(f, rd, 3);
    size_t n = strlen(ev);
    struct veil_claims c;
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = (unsigned char *)ev + i;
        for (unsigned bit = 0; bit < 8; bit++) {
            *p = (unsigned char)(*p ^ (1u << bit));
            veil_status st = sim_verify(ev, n, f->pub, &c);
            *p = (unsigned char)(*p ^ (1u << bit));
            if (st == VEIL_OK)
                fail_msg("flipping bit %u of byte %zu (%c) was accepted", bit, i, *p);
        }
    }
    for (size_t cut = 0; cut < n; cut += 7)
        assert_int_not_equal(sim_verify(ev, cut, f->pub, &c), VEIL_OK);
    assert_int_equal(sim_verify(ev, n, f->pub, &c), VEIL_OK);
    veil_free(ev);
}

static void test_sim_malformed(void **state)
{
    struct sim_fixture *f = *state;
    struct veil_claims c;
    const char *bad[] = {
        "{\"tee\":\"sim\"}",
        "{\"tee\":\"sim\",\"measurement\":\"00\",\"report_data\":\"00\",\"svn\":0,\"platform_key\":\"x\","
        "\"signature\":\"AA==\"}",
        "{\"tee\":\"sim\",\"tee\":\"sim\"}",
        "[1,2]",
        "{\"tee\":5}",
        "{\"tee\":\"tpm\"}",
        "{\"tee\":\"auto\"}",
        "{\"tee\":\"sim\"} trailing",
        "{\"tee\":\"sim\",\"extra\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sim_verify(bad[i], strlen(bad[i]), f->pub, &c), VEIL_ERR_EVIDENCE);
    struct veil_provider_config cfg = {0};
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0};
    char *ev = NULL;
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SIM, &cfg, rd, &ev), VEIL_ERR_ARG); /* no sim_dir */
    cfg.sim_dir = f->dir; /* no key in it */
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SIM, &cfg, rd, &ev), VEIL_ERR_IO);
    assert_null(ev);
}

/* ---- sample -------------------------------------------------------------------------------------------- */

static void test_sample(void **state)
{
    (void)state;
    /* Trustee's deterministic KBS vector (shared/reference/attestation.md 1.3) */
    static const char trustee[] = "{\"tee\":\"sample\",\"svn\": \"1\", \"report_data\": "
                                  "\"Ki7CP4M5BuftKt92hmvREW4TeCI/TziMhtHDeErtymXhdsf+sVkctoEbTA2KASBW\"}";
    uint8_t digest[48];
    assert_true(veil_ok(veil_hex_decode(VEIL_HEX_LOWER,
                                        "2a2ec23f833906e7ed2adf76866bd1116e1378223f4f388c86d1c3784aedca65e176c7"
                                        "feb1591cb6811b4c0d8a012056", 96, digest, 48, VEIL_ERR_EVIDENCE, "x")));
    struct veil_verify_options o = {0};
    struct veil_claims c;
    assert_int_equal(veil_evidence_verify((const uint8_t *)trustee, strlen(trustee), VEIL_TEE_AUTO, &o, &c), VEIL_OK);
    assert_int_equal(c.tee, VEIL_TEE_SAMPLE);
    assert_memory_equal(c.report_data, digest, 48);
    uint8_t zeros[16] = {0};
    assert_memory_equal(c.report_data + 48, zeros, 16);
    assert_string_equal(c.tcb_status, "Unverified");
    assert_int_equal(c.svn, 1);
    /* collect: a padded digest goes out unpadded, and round-trips */
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0};
    memcpy(rd, digest, 48);
    char *ev = NULL;
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SAMPLE, NULL, rd, &ev), VEIL_OK);
    assert_non_null(strstr(ev, "Ki7CP4M5BuftKt92hmvREW4TeCI/TziMhtHDeErtymXhdsf+sVkctoEbTA2KASBW\""));
    assert_int_equal(veil_evidence_verify((const uint8_t *)ev, strlen(ev), VEIL_TEE_SAMPLE, &o, &c), VEIL_OK);
    assert_memory_equal(c.report_data, rd, sizeof rd);
    veil_free(ev);
    rd_fill(rd, 9); /* a full 64 bytes */
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SAMPLE, NULL, rd, &ev), VEIL_OK);
    assert_int_equal(veil_evidence_verify((const uint8_t *)ev, strlen(ev), VEIL_TEE_AUTO, &o, &c), VEIL_OK);
    assert_memory_equal(c.report_data, rd, sizeof rd);
    veil_free(ev);
    const char *bad[] = {"{\"tee\":\"sample\",\"svn\":1,\"report_data\":\"AA==\"}",
                         "{\"tee\":\"sample\",\"svn\":\"-1\",\"report_data\":\"AA==\"}",
                         "{\"tee\":\"sample\",\"svn\":\"1\",\"report_data\":\"\"}",
                         "{\"tee\":\"sample\",\"svn\":\"99999999999\",\"report_data\":\"AA==\"}",
                         "{\"tee\":\"sample\",\"svn\":\"1\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(veil_evidence_verify((const uint8_t *)bad[i], strlen(bad[i]), VEIL_TEE_AUTO, &o, &c),
                         VEIL_ERR_EVIDENCE);
    char big[200];
    snprintf(big, sizeof big, "{\"tee\":\"sample\",\"svn\":\"1\",\"report_data\":\"%0100d\"}", 0);
    assert_int_not_equal(veil_evidence_verify((const uint8_t *)big, strlen(big), VEIL_TEE_AUTO, &o, &c), VEIL_OK);
}

/* ---- Gramine ------------------------------------------------------------------------------------------- */

static void test_gramine(void **state)
{
    (void)state;
    char *root = tu_tmpdir();
    struct veil_provider_config cfg = {.gramine_root = root};
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    rd_fill(rd, 3);
    char *ev = NULL;
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SGX, &cfg, rd, &ev), VEIL_ERR_IO); /* no attestation_type */
    tu_write(tu_path(0, root, "attestation_type"), "none", 4);
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SGX, &cfg, rd, &ev), VEIL_ERR_UNSUPPORTED);
    tu_write(tu_path(0, root, "attestation_type"), "dcap", 4);
    tu_write(tu_path(0, root, "user_report_data"), "", 0);
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SGX, &cfg, rd, &ev), VEIL_ERR_IO); /* no quote */
    tu_write(tu_path(0, root, "quote"), "", 0);
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SGX, &cfg, rd, &ev), VEIL_ERR_EVIDENCE); /* empty quote */
    tu_write(tu_path(0, root, "quote"), "QUOTE", 5);
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SGX, &cfg, rd, &ev), VEIL_OK);
    assert_string_equal(ev, "{\"tee\":\"sgx\",\"quote\":\"UVVPVEU=\"}");
    veil_free(ev);
    size_t n = 0;
    uint8_t *written = tu_read(tu_path(0, root, "user_report_data"), &n);
    assert_int_equal(n, 64);
    assert_memory_equal(written, rd, 64);
    free(written);
    veil_tee t;
    struct veil_provider_config detect = {.gramine_root = root, .tsm_root = "/nonexistent"};
    assert_int_equal(veil_tee_detect(&detect, &t), VEIL_OK);
    assert_int_equal(t, VEIL_TEE_SGX);
    /* auto collects from it too */
    assert_int_equal(veil_evidence_collect(VEIL_TEE_AUTO, &detect, rd, &ev), VEIL_OK);
    veil_free(ev);
    uint8_t big[70000] = {0};
    tu_write(tu_path(0, root, "quote"), big, sizeof big);
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SGX, &cfg, rd, &ev), VEIL_ERR_LIMIT);
    tu_rmdir(root);
    free(root);
}

/* ---- configfs-tsm --------------------------------------------------------------------------------------- */

struct fake_tsm {
    const char *provider;
    const char *generation;            /* written after mkdir */
    const char *generation_after;      /* written after inblob, or NULL (the fake kernel moves nothing) */
    const uint8_t *outblob;            /* NULL: no outblob file */
    size_t outblob_size;
    const uint8_t *auxblob;            /* NULL: no auxblob file */
    size_t auxblob_size;
    uint8_t inblob[128];
    size_t inblob_size;
    int stages;
};

static void put(const char *dir, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tu_write(path, data, size);
}

static void fake_hook(enum veil_tsm_stage stage, const char *entry, void *ctx)
{
    struct fake_tsm *f = ctx;
    f->stages |= 1 << stage;
    char path[1024];
    if (stage == VEIL_TSM_AFTER_MKDIR) {
        if (f->provider)
            put(entry, "provider", f->provider, strlen(f->provider));
        put(entry, "generation", f->generation, strlen(f->generation));
        put(entry, "inblob", "", 0);
        if (f->outblob)
            put(entry, "outblob", f->outblob, f->outblob_size);
        if (f->auxblob)
            put(entry, "auxblob", f->auxblob, f->auxblob_size);
    } else if (stage == VEIL_TSM_AFTER_INBLOB) {
        snprintf(path, sizeof path, "%s/inblob", entry);
        uint8_t *in = tu_read(path, &f->inblob_size);
        memcpy(f->inblob, in, f->inblob_size < sizeof f->inblob ? f->inblob_size : sizeof f->inblob);
        free(in);
        if (f->generation_after)
            put(entry, "generation", f->generation_after, strlen(f->generation_after));
    } else {
        const char *names[] = {"provider", "generation", "inblob", "outblob", "auxblob"};
        for (size_t i = 0; i < 5; i++) {
            snprintf(path, sizeof path, "%s/%s", entry, names[i]);
            unlink(path);
        }
    }
}

static veil_status tsm_collect(const char *root, veil_tee tee, struct fake_tsm *f, char **ev)
{
    struct veil_provider_config cfg = {.tsm_root = root, .gramine_root = "/nonexistent"};
    struct veil_tsm_hook hook = {fake_hook, f};
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    rd_fill(rd, 5);
    *ev = NULL;
    struct veil_result r = veil_evidence_collect_hooked(tee, &cfg, rd, &hook, ev);
    assert_true(dir_is_empty(root)); /* the entry is removed on every path */
    return r.status;
}

static void test_tsm_tdx(void **state)
{
    (void)state;
    char *root = tu_tmpdir();
    static const uint8_t quote[] = "TDQUOTE";
    struct fake_tsm f = {.provider = "tdx_guest\n", .generation = "0\n", .generation_after = "1\n",
                         .outblob = quote, .outblob_size = 7};
    char *ev = NULL;
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_OK);
    assert_string_equal(ev, "{\"tee\":\"tdx\",\"quote\":\"VERRVU9URQ==\"}");
    veil_free(ev);
    assert_int_equal(f.stages, 7);
    assert_int_equal(f.inblob_size, 64);
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    rd_fill(rd, 5);
    assert_memory_equal(f.inblob, rd, 64);
    /* auto: detection through the provider attribute */
    f.generation_after = NULL; /* a fake kernel that does not count: accepted (moved by 0) */
    assert_int_equal(tsm_collect(root, VEIL_TEE_AUTO, &f, &ev), VEIL_OK);
    assert_non_null(strstr(ev, "\"tee\":\"tdx\""));
    veil_free(ev);
    /* race: the generation moved by more than our one write */
    f.generation_after = "2";
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_EVIDENCE);
    assert_non_null(strstr(veil_last_error(), "another writer"));
    assert_null(ev);
    f.generation = "5";
    f.generation_after = "4"; /* went backwards */
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_EVIDENCE);
    f.generation = "x";
    f.generation_after = NULL;
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_EVIDENCE);
    f.generation = "0";
    /* wrong provider, missing provider, missing and empty outblob */
    f.provider = "sev_guest";
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_UNSUPPORTED);
    f.provider = "arm_cca_guest";
    assert_int_equal(tsm_collect(root, VEIL_TEE_AUTO, &f, &ev), VEIL_ERR_UNSUPPORTED);
    f.provider = NULL;
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_IO);
    f.provider = "tdx_guest";
    f.outblob = NULL;
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_IO);
    f.outblob = quote;
    f.outblob_size = 0;
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_EVIDENCE);
    uint8_t *huge = calloc(1, 70000);
    f.outblob = huge;
    f.outblob_size = 70000;
    assert_int_equal(tsm_collect(root, VEIL_TEE_TDX, &f, &ev), VEIL_ERR_LIMIT);
    free(huge);
    tu_rmdir(root);
    free(root);
}

static void test_tsm_snp(void **state)
{
    (void)state;
    char *root = tu_tmpdir();
    uint8_t *report = calloc(1, VEIL_SNP_REPORT_SIZE + 1);
    static const uint8_t aux[] = {1, 2, 3};
    struct fake_tsm f = {.provider = "sev_guest\n", .generation = "7", .generation_after = "8",
                         .outblob = report, .outblob_size = VEIL_SNP_REPORT_SIZE, .auxblob = aux,
                         .auxblob_size = sizeof aux};
    char *ev = NULL;
    assert_int_equal(tsm_collect(root, VEIL_TEE_SNP, &f, &ev), VEIL_OK);
    assert_non_null(strstr(ev, "\"tee\":\"snp\""));
    assert_non_null(strstr(ev, "\"report\":\"AAAA"));
    assert_non_null(strstr(ev, "\"cert_chain\":\"AQID\""));
    veil_free(ev);
    f.auxblob = NULL; /* optional */
    assert_int_equal(tsm_collect(root, VEIL_TEE_SNP, &f, &ev), VEIL_OK);
    assert_null(strstr(ev, "cert_chain"));
    veil_free(ev);
    f.auxblob = aux;
    f.auxblob_size = 0; /* empty: absent */
    assert_int_equal(tsm_collect(root, VEIL_TEE_SNP, &f, &ev), VEIL_OK);
    assert_null(strstr(ev, "cert_chain"));
    veil_free(ev);
    f.outblob_size = VEIL_SNP_REPORT_SIZE - 1;
    assert_int_equal(tsm_collect(root, VEIL_TEE_SNP, &f, &ev), VEIL_ERR_EVIDENCE);
    f.outblob_size = VEIL_SNP_REPORT_SIZE + 1;
    assert_int_equal(tsm_collect(root, VEIL_TEE_SNP, &f, &ev), VEIL_ERR_EVIDENCE);
    f.outblob_size = VEIL_SNP_REPORT_SIZE;
    f.generation_after = "10";
    assert_int_equal(tsm_collect(root, VEIL_TEE_SNP, &f, &ev), VEIL_ERR_EVIDENCE);
    veil_tee t = VEIL_TEE_AUTO;
    struct veil_tsm_hook hook = {fake_hook, &f};
    struct veil_provider_config cfg = {.tsm_root = root, .gramine_root = root};
    assert_true(veil_ok(veil_tee_detect_hooked(&cfg, &hook, &t)));
    assert_int_equal(t, VEIL_TEE_SNP);
    assert_true(dir_is_empty(root));
    free(report);
    tu_rmdir(root);
    free(root);
}

static void test_detect_none(void **state)
{
    (void)state;
    struct veil_provider_config cfg = {.gramine_root = "/nonexistent/a", .tsm_root = "/nonexistent/b"};
    veil_tee t;
    assert_int_equal(veil_tee_detect(&cfg, &t), VEIL_ERR_UNSUPPORTED);
    char *ev = NULL;
    uint8_t rd[VEIL_REPORT_DATA_SIZE] = {0};
    assert_int_equal(veil_evidence_collect(VEIL_TEE_AUTO, &cfg, rd, &ev), VEIL_ERR_UNSUPPORTED);
    assert_int_equal(veil_evidence_collect((veil_tee)9, &cfg, rd, &ev), VEIL_ERR_ARG);
    assert_null(ev);
}

/* ---- SNP certificate table and dispatch ------------------------------------------------------------------ */

static void entry(uint8_t *p, const char *guid_hex, uint32_t off, uint32_t len)
{
    assert_true(veil_ok(veil_hex_decode(VEIL_HEX_LOWER, guid_hex, strlen(guid_hex), p, 16, VEIL_ERR_EVIDENCE, "guid")));
    veil_store_u32le(p + 16, off);
    veil_store_u32le(p + 20, len);
}

static void test_snp_auxblob(void **state)
{
    (void)state;
    uint8_t t[3 * 24 + 8] = {0};
    entry(t, "4ab7b379bbac4fe4a02f05aef327c782", 72, 4);      /* ASK */
    entry(t + 24, "63da758de6644564adc5f4b93be8accd", 76, 4); /* VCEK */
    memcpy(t + 72, "ASK!VCEK", 8);
    const uint8_t *cert = NULL;
    size_t n = 0;
    assert_true(veil_ok(veil_snp_auxblob_cert(t, sizeof t, &cert, &n)));
    assert_int_equal(n, 4);
    assert_memory_equal(cert, "VCEK", 4);
    entry(t + 24, "a8074bc2a25a483eaae639c045a0b8a1", 76, 4); /* VLEK when there is no VCEK */
    assert_true(veil_ok(veil_snp_auxblob_cert(t, sizeof t, &cert, &n)));
    assert_memory_equal(cert, "VCEK", 4);
    entry(t + 24, "63da758de6644564adc5f4b93be8accd", 77, 4); /* past the end */
    assert_int_equal(veil_snp_auxblob_cert(t, sizeof t, &cert, &n).status, VEIL_ERR_EVIDENCE);
    entry(t + 24, "63da758de6644564adc5f4b93be8accd", UINT32_MAX, 2);
    assert_int_equal(veil_snp_auxblob_cert(t, sizeof t, &cert, &n).status, VEIL_ERR_EVIDENCE);
    assert_int_equal(veil_snp_auxblob_cert(t, 40, &cert, &n).status, VEIL_ERR_EVIDENCE); /* no terminator */
    uint8_t empty[24] = {0};
    assert_true(veil_ok(veil_snp_auxblob_cert(empty, sizeof empty, &cert, &n)));
    assert_null(cert);
}

static void test_dispatch(void **state)
{
    (void)state;
    struct veil_verify_options o = {.now = 1};
    struct veil_claims c;
    static const uint8_t raw[] = {3, 0, 2, 0, 0, 0};
    assert_int_equal(veil_evidence_verify(raw, sizeof raw, VEIL_TEE_AUTO, &o, &c), VEIL_ERR_EVIDENCE);
    assert_int_equal(veil_evidence_verify(raw, sizeof raw, VEIL_TEE_SIM, &o, &c), VEIL_ERR_EVIDENCE);
    assert_int_not_equal(veil_evidence_verify(raw, sizeof raw, VEIL_TEE_SGX, &o, &c), VEIL_OK);
    assert_int_not_equal(veil_evidence_verify(raw, sizeof raw, VEIL_TEE_SNP, &o, &c), VEIL_OK);
    assert_int_equal(veil_evidence_verify(raw, 0, VEIL_TEE_SGX, &o, &c), VEIL_ERR_EVIDENCE);
    assert_int_equal(veil_evidence_verify(raw, sizeof raw, (veil_tee)17, &o, &c), VEIL_ERR_ARG);
    assert_int_equal(veil_evidence_verify(raw, sizeof raw, VEIL_TEE_SGX, NULL, &c), VEIL_ERR_ARG);
    const char *j[] = {"{\"tee\":\"sgx\",\"quote\":\"AAAA\"}", "{\"tee\":\"tdx\",\"quote\":\"AAAA\",\"cc_eventlog\":null}",
                       "{\"tee\":\"snp\",\"report\":\"AAAA\",\"vcek\":\"AAAA\"}",
                       "{\"tee\":\"snp\",\"report\":\"AAAA\",\"cert_chain\":\"AAAA\"}"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_not_equal(veil_evidence_verify((const uint8_t *)j[i], strlen(j[i]), VEIL_TEE_AUTO, &o, &c),
                             VEIL_OK);
        assert_int_equal(c.tee, VEIL_TEE_AUTO);
    }
    const char *bad[] = {"{\"tee\":\"sgx\",\"quote\":\"AAAA\",\"cc_eventlog\":null}",
                         "{\"tee\":\"tdx\",\"quote\":\"AAAA\",\"cc_eventlog\":1}", "{\"tee\":\"sgx\"}",
                         "{\"tee\":\"snp\",\"report\":\"AAA\"}", "{\"tee\":\"snp\",\"report\":\"AAAA\",\"x\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(veil_evidence_verify((const uint8_t *)bad[i], strlen(bad[i]), VEIL_TEE_AUTO, &o, &c),
                         VEIL_ERR_EVIDENCE);
    struct veil_claims cl = {.tee = VEIL_TEE_SNP, .measurement_size = 49};
    char *s = NULL;
    assert_int_equal(veil_claims_to_json(&cl, &s), VEIL_ERR_ARG);
    cl.measurement_size = 48;
    cl.advisory_count = 1;
    strcpy(cl.advisories[0], "INTEL-SA-00334");
    cl.rtmr_count = 2;
    assert_int_equal(veil_claims_to_json(&cl, &s), VEIL_OK);
    assert_non_null(strstr(s, "\"advisories\":[\"INTEL-SA-00334\"]"));
    assert_non_null(strstr(s, "\"vmpl\":0"));
    assert_non_null(strstr(s, "\"rtmr\":[\""));
    veil_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tee_names),
        cmocka_unit_test(test_base64_strict),
        cmocka_unit_test_setup_teardown(test_sim_init_files, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_round_trip, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_measurement_follows_files, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_untrusted_key, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_platform_key, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_trusted_pem, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_old_p384_platform, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_every_byte_flip_refused, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_sim_malformed, sim_setup, sim_teardown),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_gramine),
        cmocka_unit_test(test_tsm_tdx),
        cmocka_unit_test(test_tsm_snp),
        cmocka_unit_test(test_detect_none),
        cmocka_unit_test(test_snp_auxblob),
        cmocka_unit_test(test_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
