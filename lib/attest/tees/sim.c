/* SPDX-License-Identifier: Apache-2.0 */
/* The simulation TEE (docs/spec/evidence.md, "sim"): a local ECDSA P-256 platform key signs, with SHA-256,
 *   tbs = "VEIL-SIM-EVIDENCE-V2" 0x00 || measurement[48] || report_data[64] || u32le(svn) || SHA-384(SPKI DER)
 * It protects nothing: claims say tcb_status "Simulated" and policies refuse it unless allow_sim is set.
 * Verification never calls OpenSSL's decoders: the evidence carries the key as its 91-byte DER SubjectPublicKeyInfo
 * (one fixed prefix, then the point), trusted PEM keys are unwrapped here, and the point goes in through
 * EVP_PKEY_fromdata. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "attest/attest_internal.h"
#include "attest/tee_table.h"
#include "core/base64.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/limits.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"

/* RFC 5480: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 0x04 || X[32] || Y[32] } }. Every
 * P-256 key with an uncompressed point has exactly these first bytes; only X and Y follow. */
static const uint8_t p256_spki_prefix[VEIL_SIM_SPKI_SIZE - 2 * VEIL_SIM_COORD_SIZE] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
    0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};

#define SPKI_POINT_OFFSET (sizeof p256_spki_prefix - 1) /* the 0x04 that starts the point */
#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"

static void str_done(char **s)
{
    free(*s);
}

static VEIL_RESULT check_p256(EVP_PKEY *key, const char *what)
{
    char group[32] = "";
    size_t len = 0;
    VEIL_ENSURE(EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_group_name(key, group, sizeof group, &len) == 1 &&
                    strcmp(group, "prime256v1") == 0,
                VEIL_ERR_ARG, "%s is not an ECDSA P-256 key (create a new platform with veil attest sim-init)",
                what);
    return VEIL_RESULT_OK;
}

/* The 91-byte SPKI of a P-256 key pair: the fixed prefix, then X and Y as 32 big-endian bytes each. Built from the
 * coordinates, so it does not depend on the point form a key file happened to record. */
static VEIL_RESULT key_spki(EVP_PKEY *key, uint8_t out[VEIL_SIM_SPKI_SIZE])
{
    VEIL_DEFER(veil_ossl_bn_done) BIGNUM *x = NULL;
    VEIL_DEFER(veil_ossl_bn_done) BIGNUM *y = NULL;
    VEIL_GUARD_OSSL(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y), VEIL_ERR_CRYPTO);
    memcpy(out, p256_spki_prefix, sizeof p256_spki_prefix);
    VEIL_ENSURE(BN_bn2binpad(x, out + sizeof p256_spki_prefix, VEIL_SIM_COORD_SIZE) == VEIL_SIM_COORD_SIZE &&
                    BN_bn2binpad(y, out + sizeof p256_spki_prefix + VEIL_SIM_COORD_SIZE, VEIL_SIM_COORD_SIZE) ==
                        VEIL_SIM_COORD_SIZE,
                VEIL_ERR_CRYPTO, "crypto library: a P-256 coordinate does not fit 32 bytes");
    return VEIL_RESULT_OK;
}

/* A P-256 SPKI must be exactly the fixed prefix and 64 bytes of point: this is the only encoding accepted, so no
 * byte of the key is malleable. */
static VEIL_RESULT spki_check(const uint8_t *der, size_t size, veil_status err, const char *what)
{
    VEIL_ENSURE(size == VEIL_SIM_SPKI_SIZE && memcmp(der, p256_spki_prefix, sizeof p256_spki_prefix) == 0, err,
                "%s is not a DER SubjectPublicKeyInfo of a P-256 key with an uncompressed point", what);
    return VEIL_RESULT_OK;
}

/* The evidence's key as an EVP_PKEY: the point must lie on P-256 (checked by the import and again by the quick
 * public check: P-256 has cofactor 1, so a point on the curve other than infinity is in the group). */
static VEIL_RESULT spki_key(const uint8_t der[VEIL_SIM_SPKI_SIZE], const char *what, EVP_PKEY **out)
{
    struct veil_result r = veil_ec_public_from_point(VEIL_EC_P256, der + SPKI_POINT_OFFSET,
                                                     VEIL_SIM_SPKI_SIZE - SPKI_POINT_OFFSET, out);
    VEIL_ENSURE(veil_ok(r), VEIL_ERR_EVIDENCE, "%s is not a point on P-256", what);
    return VEIL_RESULT_OK;
}

/* Skips "\n" or "\r\n" at *p; VEIL_ERR_ARG when neither is there. */
static VEIL_RESULT pem_eol(const char **p, const char *end, const char *what)
{
    if (*p < end && **p == '\r')
        (*p)++;
    VEIL_ENSURE(*p < end && **p == '\n', VEIL_ERR_ARG, "%s: a PEM line does not end in a line break", what);
    (*p)++;
    return VEIL_RESULT_OK;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A trusted key's DER from its PEM text (RFC 7468 "PUBLIC KEY", as platform.pub holds it), without OpenSSL's
 * decoders: optional blanks around it, the BEGIN line, base64 lines (each non-empty, ended by LF or CRLF), the END
 * line; the base64 joined must be strict (core/base64.h) and decode to a P-256 SPKI. */
static VEIL_RESULT pem_spki(const char *pem, const char *what, uint8_t out[VEIL_SIM_SPKI_SIZE])
{
    size_t n = strnlen(pem, VEIL_SIM_KEY_MAX_SIZE + 1);
    VEIL_ENSURE(n <= VEIL_SIM_KEY_MAX_SIZE, VEIL_ERR_LIMIT, "%s is too large", what);
    const char *p = pem, *end = pem + n;
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    VEIL_ENSURE((size_t)(end - p) >= sizeof PEM_BEGIN + sizeof PEM_END &&
                    memcmp(p, PEM_BEGIN, sizeof PEM_BEGIN - 1) == 0 &&
                    memcmp(end - (sizeof PEM_END - 1), PEM_END, sizeof PEM_END - 1) == 0,
                VEIL_ERR_ARG, "%s is not a PEM public key (" PEM_BEGIN " ... " PEM_END ")", what);
    p += sizeof PEM_BEGIN - 1;
    end -= sizeof PEM_END - 1;
    VEIL_GUARD(pem_eol(&p, end, what));
    char b64[VEIL_SIM_SPKI_B64_SIZE];
    size_t len = 0;
    while (p < end) {
        const char *line = p;
        while (p < end && *p != '\r' && *p != '\n')
            p++;
        size_t line_len = (size_t)(p - line);
        VEIL_ENSURE(line_len > 0, VEIL_ERR_ARG, "%s: an empty line inside PEM", what);
        VEIL_ENSURE(line_len <= sizeof b64 - len, VEIL_ERR_ARG, "%s is not a P-256 public key (too long)", what);
        memcpy(b64 + len, line, line_len);
        len += line_len;
        VEIL_GUARD(pem_eol(&p, end, what));
    }
    struct veil_buf der = {0};
    struct veil_result r = veil_b64_decode(VEIL_B64_STD, b64, len, VEIL_SIM_SPKI_SIZE, &der);
    if (veil_ok(r))
        r = spki_check(der.data, der.size, VEIL_ERR_ARG, what);
    if (veil_ok(r))
        memcpy(out, der.data, VEIL_SIM_SPKI_SIZE);
    veil_buf_cleanup(&der);
    VEIL_ENSURE(veil_ok(r), VEIL_ERR_ARG, "%s is not a PEM P-256 public key", what);
    return VEIL_RESULT_OK;
}

/* SHA-384 of the key's DER SubjectPublicKeyInfo: what the signature binds. */
static VEIL_RESULT spki_hash(const uint8_t der[VEIL_SIM_SPKI_SIZE], uint8_t out[VEIL_SHA384_SIZE])
{
    VEIL_ENSURE(EVP_Digest(der, VEIL_SIM_SPKI_SIZE, out, NULL, EVP_sha384(), NULL) == 1, VEIL_ERR_CRYPTO,
                "crypto library: SHA-384 failed");
    return VEIL_RESULT_OK;
}

static void sim_tbs(const uint8_t *measurement, const uint8_t *rd, uint32_t svn, const uint8_t *khash,
                    uint8_t out[VEIL_SIM_TBS_SIZE])
{
    uint8_t *p = out;
    memcpy(p, VEIL_SIM_TBS_DOMAIN, sizeof VEIL_SIM_TBS_DOMAIN); /* with its NUL */
    p += sizeof VEIL_SIM_TBS_DOMAIN;
    memcpy(p, measurement, VEIL_SHA384_SIZE);
    p += VEIL_SHA384_SIZE;
    memcpy(p, rd, VEIL_REPORT_DATA_SIZE);
    p += VEIL_REPORT_DATA_SIZE;
    veil_store_u32le(p, svn);
    p += 4;
    memcpy(p, khash, VEIL_SHA384_SIZE);
}

/* ---- veil_sim_init ------------------------------------------------------------------------------------ */

static VEIL_RESULT ensure_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(errno == EEXIST, VEIL_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    struct stat st;
    VEIL_ENSURE(stat(dir, &st) == 0 && S_ISDIR(st.st_mode), VEIL_ERR_IO, "%s exists and is not a directory", dir);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT write_bio(BIO *bio, const char *path, mode_t mode, int must_be_new)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    VEIL_ENSURE(n > 0 && data != NULL, VEIL_ERR_CRYPTO, "crypto library: cannot encode a key");
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile f = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&f, path, mode));
    VEIL_GUARD(veil_file_write_all(f.fd, data, (size_t)n));
    return must_be_new ? veil_outfile_commit_new(&f) : veil_outfile_commit(&f);
}

static VEIL_RESULT pem_string(BIO *bio, char **out)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    VEIL_ENSURE(n > 0 && data != NULL, VEIL_ERR_CRYPTO, "crypto library: cannot encode a key");
    char *s = strndup(data, (size_t)n);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = s;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sim_init_impl(const char *dir, char **public_pem_out)
{
    VEIL_ENSURE(dir != NULL && dir[0] != '\0', VEIL_ERR_ARG, "no simulation directory given");
    char key_path[4096], pub_path[4096];
    VEIL_GUARD(veil_path_join(key_path, sizeof key_path, dir, VEIL_SIM_KEY_FILE));
    VEIL_GUARD(veil_path_join(pub_path, sizeof pub_path, dir, VEIL_SIM_PUB_FILE));
    VEIL_ENSURE(access(key_path, F_OK) != 0, VEIL_ERR_ARG, "%s already exists: refusing to replace a platform key",
                key_path);
    VEIL_GUARD(ensure_dir(dir));
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = EVP_EC_gen("P-256");
    VEIL_ENSURE(key != NULL, VEIL_ERR_CRYPTO, "crypto library: cannot generate a P-256 key");
    VEIL_DEFER(veil_ossl_bio_done) BIO *priv = BIO_new(BIO_s_secmem());
    VEIL_DEFER(veil_ossl_bio_done) BIO *pub = BIO_new(BIO_s_mem());
    VEIL_ENSURE(priv != NULL && pub != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(PEM_write_bio_PrivateKey(priv, key, NULL, NULL, 0, NULL, NULL), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(PEM_write_bio_PUBKEY(pub, key), VEIL_ERR_CRYPTO);
    VEIL_GUARD(write_bio(priv, key_path, 0600, 1));
    VEIL_GUARD(write_bio(pub, pub_path, 0644, 0));
    if (public_pem_out != NULL)
        VEIL_GUARD(pem_string(pub, public_pem_out));
    return VEIL_RESULT_OK;
}

veil_status veil_sim_init(const char *dir, char **public_pem_out)
{
    veil_error_clear();
    if (public_pem_out != NULL)
        *public_pem_out = NULL;
    return sim_init_impl(dir, public_pem_out).status;
}

/* ---- collect ---------------------------------------------------------------------------------------- */

static VEIL_RESULT load_private_key_file(const char *path, EVP_PKEY **out)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf pem = {.wipe = 1};
    VEIL_GUARD(veil_file_read_all(path, VEIL_SIM_KEY_MAX_SIZE, &pem));
    VEIL_DEFER(veil_ossl_bio_done) BIO *bio = BIO_new_mem_buf(pem.data, (int)pem.size);
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    ERR_clear_error();
    VEIL_ENSURE(key != NULL, VEIL_ERR_ARG, "%s is not a PEM private key (create one with veil attest sim-init)",
                path);
    struct veil_result r = check_p256(key, path);
    if (!veil_ok(r)) {
        EVP_PKEY_free(key);
        return r;
    }
    *out = key;
    return VEIL_RESULT_OK;
}

/* u64le(size) || contents of an open file, streamed into the digest; it must not change size while it is read. */
static VEIL_RESULT hash_fd(EVP_MD_CTX *md, int fd, const char *path)
{
    uint8_t len[8], chunk[65536];
    struct stat st;
    VEIL_ENSURE(fstat(fd, &st) == 0 && S_ISREG(st.st_mode), VEIL_ERR_IO, "%s is not a regular file", path);
    veil_store_u64le(len, (uint64_t)st.st_size);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, len, sizeof len), VEIL_ERR_CRYPTO);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(n >= 0, VEIL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (n == 0)
            break;
        VEIL_GUARD_OSSL(EVP_DigestUpdate(md, chunk, (size_t)n), VEIL_ERR_CRYPTO);
        total += (uint64_t)n;
    }
    VEIL_ENSURE(total == (uint64_t)st.st_size, VEIL_ERR_IO, "%s changed while it was measured", path);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT hash_file(EVP_MD_CTX *md, const char *path)
{
    VEIL_DEFER(veil_fd_close) int fd = open(path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    return hash_fd(md, fd, path);
}

/* SHA-384("VEIL-SIM-MEASUREMENT-V1" 0x00 || u64le(n) || executable || u64le(m) || config), m = 0 without one.
 * The executable is an open file (exe_fd, named exe in messages) or, with exe_fd < 0, the file at exe. */
static VEIL_RESULT measure_open(int exe_fd, const char *exe, const char *cfg, uint8_t out[VEIL_SHA384_SIZE])
{
    static const uint8_t no_config[8] = {0};
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestInit_ex(md, EVP_sha384(), NULL), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, VEIL_SIM_MEASUREMENT_DOMAIN, sizeof VEIL_SIM_MEASUREMENT_DOMAIN),
                    VEIL_ERR_CRYPTO);
    VEIL_GUARD(exe_fd >= 0 ? hash_fd(md, exe_fd, exe) : hash_file(md, exe));
    if (cfg != NULL)
        VEIL_GUARD(hash_file(md, cfg));
    else
        VEIL_GUARD_OSSL(EVP_DigestUpdate(md, no_config, sizeof no_config), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestFinal_ex(md, out, NULL), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sim_measure_files(const char *exe, const char *cfg, uint8_t out[VEIL_SHA384_SIZE])
{
    return measure_open(-1, exe, cfg, out);
}

VEIL_RESULT veil_sim_measure_fd(int exe_fd, const char *exe, uint8_t out[VEIL_SHA384_SIZE])
{
    return measure_open(exe_fd, exe, NULL, out);
}

/* What identifies a file's contents without reading it: a change of contents changes the ctime, which no
 * unprivileged process can set back. */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

static int file_id_of(const char *path, struct file_id *id)
{
    struct stat st;
    memset(id, 0, sizeof *id);
    if (path == NULL)
        return 1;
    if (stat(path, &st) != 0)
        return 0;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtime = st.st_mtim;
    id->ctime = st.st_ctim;
    return 1;
}

static int file_id_equal(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
           a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* A file changed within the last seconds may change again within the same timestamp tick (the kernel's clock
 * for file times is coarse): such a measurement is not cached, as git treats "racily clean" files. */
static int settled(const struct file_id *id)
{
    struct timespec now;
    return clock_gettime(CLOCK_REALTIME, &now) == 0 && id->ctime.tv_sec + 2 < now.tv_sec &&
           id->mtime.tv_sec + 2 < now.tv_sec;
}

/* The last measurement, reused while neither file changed: a real TEE measures its image once, at launch, and
 * hashing the executable on every collect would make the simulation slower than the hardware it stands for. */
static struct {
    pthread_mutex_t lock;
    int valid;
    char exe[4096], cfg[4096];
    struct file_id exe_id, cfg_id;
    uint8_t measurement[VEIL_SHA384_SIZE];
} measure_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int cache_hit(const char *exe, const char *cfg, const struct file_id *e, const struct file_id *c)
{
    return measure_cache.valid && strcmp(measure_cache.exe, exe) == 0 &&
           strcmp(measure_cache.cfg, cfg != NULL ? cfg : "") == 0 &&
           file_id_equal(&measure_cache.exe_id, e) && file_id_equal(&measure_cache.cfg_id, c);
}

static VEIL_RESULT sim_measure(const struct veil_provider_config *config, uint8_t out[VEIL_SHA384_SIZE])
{
    const char *exe = config->sim_executable != NULL ? config->sim_executable : "/proc/self/exe";
    const char *cfg = config->sim_config;
    struct file_id e, c;
    int known = strlen(exe) < sizeof measure_cache.exe && (cfg == NULL || strlen(cfg) < sizeof measure_cache.cfg) &&
                file_id_of(exe, &e) && file_id_of(cfg, &c);
    pthread_mutex_lock(&measure_cache.lock);
    int hit = known && cache_hit(exe, cfg, &e, &c);
    if (hit)
        memcpy(out, measure_cache.measurement, VEIL_SHA384_SIZE);
    pthread_mutex_unlock(&measure_cache.lock);
    if (hit)
        return VEIL_RESULT_OK;
    VEIL_GUARD(sim_measure_files(exe, cfg, out));
    pthread_mutex_lock(&measure_cache.lock);
    measure_cache.valid = known && settled(&e) && settled(&c);
    if (known) {
        snprintf(measure_cache.exe, sizeof measure_cache.exe, "%s", exe);
        snprintf(measure_cache.cfg, sizeof measure_cache.cfg, "%s", cfg != NULL ? cfg : "");
        measure_cache.exe_id = e;
        measure_cache.cfg_id = c;
        memcpy(measure_cache.measurement, out, VEIL_SHA384_SIZE);
    }
    pthread_mutex_unlock(&measure_cache.lock);
    return VEIL_RESULT_OK;
}

/* The platform key, kept decoded while its file is unchanged: OpenSSL 3's PEM decoder costs more than the
 * signature it serves. The EVP_PKEY is shared (reference-counted, read-only use); freed only when replaced. */
static struct {
    pthread_mutex_t lock;
    char path[4096];
    struct file_id id;
    EVP_PKEY *key;
} key_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static VEIL_RESULT load_private_key(const char *dir, EVP_PKEY **out)
{
    char path[4096];
    VEIL_GUARD(veil_path_join(path, sizeof path, dir, VEIL_SIM_KEY_FILE));
    struct file_id id;
    int known = file_id_of(path, &id) && settled(&id);
    pthread_mutex_lock(&key_cache.lock);
    EVP_PKEY *hit = known && key_cache.key != NULL && strcmp(key_cache.path, path) == 0 &&
                            file_id_equal(&key_cache.id, &id) && EVP_PKEY_up_ref(key_cache.key) == 1
                        ? key_cache.key
                        : NULL;
    pthread_mutex_unlock(&key_cache.lock);
    if (hit != NULL) {
        *out = hit;
        return VEIL_RESULT_OK;
    }
    VEIL_GUARD(load_private_key_file(path, out));
    if (known && EVP_PKEY_up_ref(*out) == 1) {
        pthread_mutex_lock(&key_cache.lock);
        EVP_PKEY_free(key_cache.key);
        key_cache.key = *out;
        key_cache.id = id;
        snprintf(key_cache.path, sizeof key_cache.path, "%s", path);
        pthread_mutex_unlock(&key_cache.lock);
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sign(EVP_PKEY *key, const uint8_t *tbs, size_t tbs_size, struct veil_buf *sig)
{
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), VEIL_ERR_CRYPTO);
    size_t n = 0;
    VEIL_GUARD_OSSL(EVP_DigestSign(md, NULL, &n, tbs, tbs_size), VEIL_ERR_CRYPTO);
    VEIL_GUARD(veil_buf_reserve(sig, n));
    VEIL_GUARD_OSSL(EVP_DigestSign(md, sig->data + sig->size, &n, tbs, tbs_size), VEIL_ERR_CRYPTO);
    sig->size += n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sim_json(const uint8_t *measurement, const uint8_t *rd, uint32_t svn,
                            const uint8_t spki[VEIL_SIM_SPKI_SIZE], const struct veil_buf *sig, json_t *j)
{
    char mhex[2 * VEIL_SHA384_SIZE + 1], rhex[2 * VEIL_REPORT_DATA_SIZE + 1];
    VEIL_DEFER(str_done) char *key64 = NULL;
    VEIL_DEFER(str_done) char *sig64 = NULL;
    veil_hex_encode(measurement, VEIL_SHA384_SIZE, mhex);
    veil_hex_encode(rd, VEIL_REPORT_DATA_SIZE, rhex);
    VEIL_GUARD(veil_json_set(j, "tee", json_string(veil_tee_sim.name)));
    VEIL_GUARD(veil_json_set(j, "measurement", json_string(mhex)));
    VEIL_GUARD(veil_json_set(j, "report_data", json_string(rhex)));
    VEIL_GUARD(veil_json_set(j, "svn", json_integer(svn)));
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, spki, VEIL_SIM_SPKI_SIZE, &key64));
    VEIL_GUARD(veil_json_set(j, "platform_key", json_string(key64)));
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, sig->data, sig->size, &sig64));
    return veil_json_set(j, "signature", json_string(sig64));
}

static VEIL_RESULT sim_collect(const struct veil_provider_config *config,
                               const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                               json_t **out)
{
    (void)hook;
    VEIL_ENSURE(config->sim_dir != NULL, VEIL_ERR_ARG, "the sim provider needs its directory (veil attest sim-init)");
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = NULL;
    VEIL_GUARD(load_private_key(config->sim_dir, &key));
    uint8_t measurement[VEIL_SHA384_SIZE], spki[VEIL_SIM_SPKI_SIZE], khash[VEIL_SHA384_SIZE], tbs[VEIL_SIM_TBS_SIZE];
    VEIL_GUARD(sim_measure(config, measurement));
    VEIL_GUARD(key_spki(key, spki));
    VEIL_GUARD(spki_hash(spki, khash));
    sim_tbs(measurement, report_data, config->sim_svn, khash, tbs);
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf sig = {0};
    VEIL_GUARD(sign(key, tbs, sizeof tbs, &sig));
    json_t *j = json_object();
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = sim_json(measurement, report_data, config->sim_svn, spki, &sig, j);
    if (!veil_ok(r)) {
        json_decref(j);
        return r;
    }
    *out = j;
    return VEIL_RESULT_OK;
}

/* ---- verify ----------------------------------------------------------------------------------------- */

struct sim_evidence {
    uint8_t measurement[VEIL_SHA384_SIZE];
    uint8_t report_data[VEIL_REPORT_DATA_SIZE];
    uint32_t svn;
    struct veil_buf platform_key; /* VEIL_SIM_SPKI_SIZE bytes of DER */
    struct veil_buf signature;
};

static void sim_evidence_cleanup(struct sim_evidence *e)
{
    veil_buf_cleanup(&e->platform_key);
    veil_buf_cleanup(&e->signature);
}

static VEIL_RESULT sim_parse(const json_t *j, struct sim_evidence *e)
{
    static const char *const keys[] = {"tee", "measurement", "report_data", "svn", "platform_key", "signature",
                                       NULL};
    const char *what = "sim evidence", *mhex = NULL, *rhex = NULL;
    uint64_t svn = 0;
    VEIL_GUARD(veil_json_only_keys(j, keys, VEIL_ERR_EVIDENCE, what));
    VEIL_GUARD(veil_json_string(j, "measurement", 1, VEIL_ERR_EVIDENCE, what, &mhex));
    VEIL_GUARD(veil_hex_decode(VEIL_HEX_LOWER, mhex, strlen(mhex), e->measurement, sizeof e->measurement,
                               VEIL_ERR_EVIDENCE, "sim evidence: \"measurement\""));
    VEIL_GUARD(veil_json_string(j, "report_data", 1, VEIL_ERR_EVIDENCE, what, &rhex));
    VEIL_GUARD(veil_hex_decode(VEIL_HEX_LOWER, rhex, strlen(rhex), e->report_data, sizeof e->report_data,
                               VEIL_ERR_EVIDENCE, "sim evidence: \"report_data\""));
    VEIL_GUARD(veil_json_uint(j, "svn", 1, UINT32_MAX, VEIL_ERR_EVIDENCE, what, &svn));
    e->svn = (uint32_t)svn;
    VEIL_GUARD(veil_json_b64(j, "platform_key", VEIL_B64_STD, 1, VEIL_SIM_SPKI_SIZE, VEIL_SIM_SPKI_SIZE,
                             VEIL_ERR_EVIDENCE, what, &e->platform_key, NULL));
    VEIL_GUARD(spki_check(e->platform_key.data, e->platform_key.size, VEIL_ERR_EVIDENCE,
                          "sim evidence: \"platform_key\""));
    return veil_json_b64(j, "signature", VEIL_B64_STD, 1, 1, VEIL_SIM_SIG_MAX_SIZE, VEIL_ERR_EVIDENCE, what,
                         &e->signature, NULL);
}

/* The evidence's key must be one of options->sim_trusted_keys (compared as DER SubjectPublicKeyInfo). */
static VEIL_RESULT check_trusted(const struct veil_verify_options *o, const uint8_t spki[VEIL_SIM_SPKI_SIZE])
{
    VEIL_ENSURE(o != NULL && o->sim_trusted_key_count > 0 && o->sim_trusted_keys != NULL, VEIL_ERR_VERIFY,
                "sim evidence: no simulation platform key is trusted (give the platform's public key)");
    VEIL_ENSURE(o->sim_trusted_key_count <= VEIL_SIM_MAX_TRUSTED_KEYS, VEIL_ERR_LIMIT,
                "more than %u trusted simulation keys", VEIL_SIM_MAX_TRUSTED_KEYS);
    int found = 0;
    for (size_t i = 0; i < o->sim_trusted_key_count; i++) {
        VEIL_ENSURE(o->sim_trusted_keys[i] != NULL, VEIL_ERR_ARG, "trusted simulation key %zu is NULL", i);
        uint8_t trusted[VEIL_SIM_SPKI_SIZE];
        struct veil_result r = pem_spki(o->sim_trusted_keys[i], "a trusted simulation key", trusted);
        VEIL_ENSURE(veil_ok(r), r.status, "trusted simulation key %zu is not a PEM P-256 public key", i);
        found |= veil_ct_compare(trusted, spki, sizeof trusted) == 0;
    }
    VEIL_ENSURE(found, VEIL_ERR_VERIFY, "sim evidence: the platform key is not trusted");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_signature(EVP_PKEY *key, const uint8_t *tbs, size_t tbs_size, const struct veil_buf *sig)
{
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), VEIL_ERR_CRYPTO);
    int ok = EVP_DigestVerify(md, sig->data, sig->size, tbs, tbs_size);
    ERR_clear_error();
    VEIL_ENSURE(ok == 1, VEIL_ERR_VERIFY, "sim evidence: the signature does not verify");
    return VEIL_RESULT_OK;
}

/* Trusted platform keys seen lately, decoded: a verifier checks the same few keys again and again. Only keys
 * that check_trusted accepted enter, and a hit is checked for trust again; a slot is reused round-robin; users
 * hold their own reference. */
#define TRUSTED_CACHE_SIZE 8u

static struct {
    pthread_mutex_t lock;
    unsigned next;
    struct {
        uint8_t spki[VEIL_SIM_SPKI_SIZE];
        EVP_PKEY *key;
    } slot[TRUSTED_CACHE_SIZE];
} trusted_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static EVP_PKEY *trusted_cached(const uint8_t spki[VEIL_SIM_SPKI_SIZE])
{
    EVP_PKEY *hit = NULL;
    pthread_mutex_lock(&trusted_cache.lock);
    for (unsigned i = 0; i < TRUSTED_CACHE_SIZE && hit == NULL; i++)
        if (trusted_cache.slot[i].key != NULL && memcmp(trusted_cache.slot[i].spki, spki, VEIL_SIM_SPKI_SIZE) == 0 &&
            EVP_PKEY_up_ref(trusted_cache.slot[i].key) == 1)
            hit = trusted_cache.slot[i].key;
    pthread_mutex_unlock(&trusted_cache.lock);
    return hit;
}

static void trusted_remember(const uint8_t spki[VEIL_SIM_SPKI_SIZE], EVP_PKEY *key)
{
    if (EVP_PKEY_up_ref(key) != 1)
        return;
    pthread_mutex_lock(&trusted_cache.lock);
    unsigned i = trusted_cache.next++ % TRUSTED_CACHE_SIZE;
    EVP_PKEY_free(trusted_cache.slot[i].key);
    memcpy(trusted_cache.slot[i].spki, spki, VEIL_SIM_SPKI_SIZE);
    trusted_cache.slot[i].key = key;
    pthread_mutex_unlock(&trusted_cache.lock);
}

/* The evidence's platform key, decoded (its point on the curve: spec step 2) and trusted (step 3). */
static VEIL_RESULT trusted_key(const struct veil_verify_options *o, const uint8_t spki[VEIL_SIM_SPKI_SIZE],
                               EVP_PKEY **out)
{
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = trusted_cached(spki);
    int cached = key != NULL;
    if (!cached)
        VEIL_GUARD(spki_key(spki, "sim evidence: \"platform_key\"", &key));
    VEIL_GUARD(check_trusted(o, spki));
    if (!cached)
        trusted_remember(spki, key);
    *out = key;
    key = NULL;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sim_verify(const json_t *evidence, const struct veil_verify_options *options,
                              struct veil_claims *claims)
{
    VEIL_DEFER(sim_evidence_cleanup) struct sim_evidence e = {0};
    VEIL_GUARD(sim_parse(evidence, &e));
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *key = NULL;
    VEIL_GUARD(trusted_key(options, e.platform_key.data, &key));
    uint8_t khash[VEIL_SHA384_SIZE], tbs[VEIL_SIM_TBS_SIZE];
    VEIL_GUARD(spki_hash(e.platform_key.data, khash));
    sim_tbs(e.measurement, e.report_data, e.svn, khash, tbs);
    VEIL_GUARD(check_signature(key, tbs, sizeof tbs, &e.signature));
    claims->tee = VEIL_TEE_SIM;
    memcpy(claims->report_data, e.report_data, sizeof e.report_data);
    memcpy(claims->measurement, e.measurement, sizeof e.measurement);
    claims->measurement_size = sizeof e.measurement;
    claims->svn = e.svn;
    snprintf(claims->tcb_status, sizeof claims->tcb_status, "Simulated");
    return VEIL_RESULT_OK;
}

/* ---- policy: a "sim" section (measurements, min_svn) is optional; allow_sim admits the TEE ------------------- */

static VEIL_RESULT sim_policy_check(const struct veil_policy_section *s, const struct veil_claims *c)
{
    if (!s->present)
        return VEIL_RESULT_OK; /* allow_sim without a "sim" section: any simulated measurement */
    VEIL_GUARD(veil_policy_check_measurement(s, c));
    return veil_policy_check_svn(s, c);
}

static const char *const sim_policy_keys[] = {"measurements", "min_svn", NULL};

const struct veil_tee_desc veil_tee_sim = {
    .type = VEIL_TEE_SIM,
    .name = "sim",
    .collect = sim_collect,
    .verify = sim_verify,
    .measurement_size = VEIL_SHA384_SIZE,
    .policy = {.allow_flag = "allow_sim",
               .refusal = "the simulation TEE is not allowed (allow_sim is false)",
               .keys = sim_policy_keys,
               .check = sim_policy_check},
};
