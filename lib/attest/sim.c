/* SPDX-License-Identifier: Apache-2.0 */
/* The simulation TEE (docs/spec/evidence.md, "sim"): a local P-384 platform key signs
 *   tbs = "VEIL-SIM-EVIDENCE-V1" 0x00 || measurement[48] || report_data[64] || u32le(svn) || SHA-384(SPKI DER)
 * It protects nothing: claims say tcb_status "Simulated" and policies refuse it unless allow_sim is set. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest/attest_internal.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/limits.h"
#include "core/secret.h"

static void pkey_done(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}

static void bio_done(BIO **b)
{
    BIO_free(*b);
}

static void md_done(EVP_MD_CTX **c)
{
    EVP_MD_CTX_free(*c);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

static VEIL_RESULT check_p384(EVP_PKEY *key, const char *what)
{
    char group[32] = "";
    size_t len = 0;
    VEIL_ENSURE(EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_group_name(key, group, sizeof group, &len) == 1 &&
                    strcmp(group, "secp384r1") == 0,
                VEIL_ERR_EVIDENCE, "%s is not an ECDSA P-384 key", what);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT public_pem(EVP_PKEY *key, char **out);

static void str_done(char **s)
{
    free(*s);
}

/* Evidence carries the key exactly as OpenSSL writes it: one encoding per key, so no byte of it is malleable. */
static VEIL_RESULT check_canonical(EVP_PKEY *key, const char *pem, const char *what)
{
    VEIL_DEFER(str_done) char *again = NULL;
    VEIL_GUARD(public_pem(key, &again));
    VEIL_ENSURE(strcmp(again, pem) == 0, VEIL_ERR_EVIDENCE, "%s is not in canonical PEM form", what);
    return VEIL_RESULT_OK;
}

/* A PEM public key (SubjectPublicKeyInfo) of at most VEIL_SIM_KEY_MAX_SIZE bytes, P-384 only; with canonical set,
 * byte for byte as OpenSSL writes it. */
static VEIL_RESULT public_key_parse(const char *pem, const char *what, int canonical, EVP_PKEY **out)
{
    size_t n = strnlen(pem, VEIL_SIM_KEY_MAX_SIZE + 1);
    VEIL_ENSURE(n <= VEIL_SIM_KEY_MAX_SIZE, VEIL_ERR_LIMIT, "%s is too large", what);
    VEIL_DEFER(bio_done) BIO *bio = BIO_new_mem_buf(pem, (int)n);
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    ERR_clear_error();
    VEIL_ENSURE(key != NULL, VEIL_ERR_EVIDENCE, "%s is not a PEM public key", what);
    struct veil_result r = check_p384(key, what);
    if (veil_ok(r) && canonical)
        r = check_canonical(key, pem, what);
    if (!veil_ok(r)) {
        EVP_PKEY_free(key);
        return r;
    }
    *out = key;
    return VEIL_RESULT_OK;
}

/* SHA-384 of the key's DER SubjectPublicKeyInfo: what the signature binds and what trust compares. */
static VEIL_RESULT key_hash(EVP_PKEY *key, uint8_t out[VEIL_SHA384_SIZE])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    VEIL_ENSURE(n > 0, VEIL_ERR_CRYPTO, "crypto library: cannot encode a public key");
    int ok = EVP_Digest(der, (size_t)n, out, NULL, EVP_sha384(), NULL);
    OPENSSL_free(der);
    VEIL_ENSURE(ok == 1, VEIL_ERR_CRYPTO, "crypto library: SHA-384 failed");
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
    VEIL_DEFER(pkey_done) EVP_PKEY *key = EVP_EC_gen("P-384");
    VEIL_ENSURE(key != NULL, VEIL_ERR_CRYPTO, "crypto library: cannot generate a P-384 key");
    VEIL_DEFER(bio_done) BIO *priv = BIO_new(BIO_s_secmem());
    VEIL_DEFER(bio_done) BIO *pub = BIO_new(BIO_s_mem());
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

static VEIL_RESULT load_private_key(const char *dir, EVP_PKEY **out)
{
    char path[4096];
    VEIL_GUARD(veil_path_join(path, sizeof path, dir, VEIL_SIM_KEY_FILE));
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf pem = {.wipe = 1};
    VEIL_GUARD(veil_file_read_all(path, VEIL_SIM_KEY_MAX_SIZE, &pem));
    VEIL_DEFER(bio_done) BIO *bio = BIO_new_mem_buf(pem.data, (int)pem.size);
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    ERR_clear_error();
    VEIL_ENSURE(key != NULL, VEIL_ERR_ARG, "%s is not a PEM private key (create one with veil attest sim-init)",
                path);
    struct veil_result r = check_p384(key, path);
    if (!veil_ok(r)) {
        EVP_PKEY_free(key);
        return r;
    }
    *out = key;
    return VEIL_RESULT_OK;
}

/* u64le(size) || contents, streamed into the digest; the file must not change size while it is read. */
static VEIL_RESULT hash_file(EVP_MD_CTX *md, const char *path)
{
    uint8_t len[8], chunk[65536];
    VEIL_DEFER(close_fd) int fd = open(path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
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

/* SHA-384("VEIL-SIM-MEASUREMENT-V1" 0x00 || u64le(n) || executable || u64le(m) || config), m = 0 without one. */
static VEIL_RESULT sim_measure(const struct veil_provider_config *config, uint8_t out[VEIL_SHA384_SIZE])
{
    static const uint8_t no_config[8] = {0};
    VEIL_DEFER(md_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestInit_ex(md, EVP_sha384(), NULL), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, VEIL_SIM_MEASUREMENT_DOMAIN, sizeof VEIL_SIM_MEASUREMENT_DOMAIN),
                    VEIL_ERR_CRYPTO);
    VEIL_GUARD(hash_file(md, config->sim_executable != NULL ? config->sim_executable : "/proc/self/exe"));
    if (config->sim_config != NULL)
        VEIL_GUARD(hash_file(md, config->sim_config));
    else
        VEIL_GUARD_OSSL(EVP_DigestUpdate(md, no_config, sizeof no_config), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestFinal_ex(md, out, NULL), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sign(EVP_PKEY *key, const uint8_t *tbs, size_t tbs_size, struct veil_buf *sig)
{
    VEIL_DEFER(md_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestSignInit(md, NULL, EVP_sha384(), NULL, key), VEIL_ERR_CRYPTO);
    size_t n = 0;
    VEIL_GUARD_OSSL(EVP_DigestSign(md, NULL, &n, tbs, tbs_size), VEIL_ERR_CRYPTO);
    VEIL_GUARD(veil_buf_reserve(sig, n));
    VEIL_GUARD_OSSL(EVP_DigestSign(md, sig->data + sig->size, &n, tbs, tbs_size), VEIL_ERR_CRYPTO);
    sig->size += n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT public_pem(EVP_PKEY *key, char **out)
{
    VEIL_DEFER(bio_done) BIO *bio = BIO_new(BIO_s_mem());
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(PEM_write_bio_PUBKEY(bio, key), VEIL_ERR_CRYPTO);
    return pem_string(bio, out);
}

static VEIL_RESULT sim_json(const uint8_t *measurement, const uint8_t *rd, uint32_t svn, const char *pem,
                            const struct veil_buf *sig, json_t *j)
{
    char mhex[2 * VEIL_SHA384_SIZE + 1], rhex[2 * VEIL_REPORT_DATA_SIZE + 1], *sig64 = NULL;
    veil_hex_encode(measurement, VEIL_SHA384_SIZE, mhex);
    veil_hex_encode(rd, VEIL_REPORT_DATA_SIZE, rhex);
    VEIL_GUARD(veil_json_set(j, "tee", json_string("sim")));
    VEIL_GUARD(veil_json_set(j, "measurement", json_string(mhex)));
    VEIL_GUARD(veil_json_set(j, "report_data", json_string(rhex)));
    VEIL_GUARD(veil_json_set(j, "svn", json_integer(svn)));
    VEIL_GUARD(veil_json_set(j, "platform_key", json_string(pem)));
    VEIL_GUARD(veil_b64_encode(VEIL_B64_STD, sig->data, sig->size, &sig64));
    struct veil_result r = veil_json_set(j, "signature", json_string(sig64));
    free(sig64);
    return r;
}

VEIL_RESULT veil_sim_collect(const struct veil_provider_config *config,
                             const uint8_t report_data[VEIL_REPORT_DATA_SIZE], json_t **out)
{
    VEIL_ENSURE(config->sim_dir != NULL, VEIL_ERR_ARG, "the sim provider needs its directory (veil attest sim-init)");
    VEIL_DEFER(pkey_done) EVP_PKEY *key = NULL;
    VEIL_GUARD(load_private_key(config->sim_dir, &key));
    uint8_t measurement[VEIL_SHA384_SIZE], khash[VEIL_SHA384_SIZE], tbs[VEIL_SIM_TBS_SIZE];
    VEIL_GUARD(sim_measure(config, measurement));
    VEIL_GUARD(key_hash(key, khash));
    sim_tbs(measurement, report_data, config->sim_svn, khash, tbs);
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf sig = {0};
    VEIL_GUARD(sign(key, tbs, sizeof tbs, &sig));
    VEIL_DEFER(str_done) char *pem = NULL;
    VEIL_GUARD(public_pem(key, &pem));
    json_t *j = json_object();
    VEIL_ENSURE(j != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = sim_json(measurement, report_data, config->sim_svn, pem, &sig, j);
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
    const char *platform_key;
    struct veil_buf signature;
};

static void sim_evidence_cleanup(struct sim_evidence *e)
{
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
    VEIL_GUARD(veil_json_string(j, "platform_key", 1, VEIL_ERR_EVIDENCE, what, &e->platform_key));
    return veil_json_b64(j, "signature", VEIL_B64_STD, 1, 0, 256, VEIL_ERR_EVIDENCE, what, &e->signature, NULL);
}

/* The evidence's key must be one of options->sim_trusted_keys (compared as SHA-384 of the SPKI DER). */
static VEIL_RESULT check_trusted(const struct veil_verify_options *o, const uint8_t *khash)
{
    VEIL_ENSURE(o != NULL && o->sim_trusted_key_count > 0 && o->sim_trusted_keys != NULL, VEIL_ERR_VERIFY,
                "sim evidence: no simulation platform key is trusted (give the platform's public key)");
    VEIL_ENSURE(o->sim_trusted_key_count <= VEIL_SIM_MAX_TRUSTED_KEYS, VEIL_ERR_LIMIT,
                "more than %u trusted simulation keys", VEIL_SIM_MAX_TRUSTED_KEYS);
    int found = 0;
    for (size_t i = 0; i < o->sim_trusted_key_count; i++) {
        VEIL_ENSURE(o->sim_trusted_keys[i] != NULL, VEIL_ERR_ARG, "trusted simulation key %zu is NULL", i);
        VEIL_DEFER(pkey_done) EVP_PKEY *k = NULL;
        uint8_t h[VEIL_SHA384_SIZE];
        struct veil_result r = public_key_parse(o->sim_trusted_keys[i], "a trusted simulation key", 0, &k);
        VEIL_ENSURE(veil_ok(r), VEIL_ERR_ARG, "trusted simulation key %zu is not a PEM P-384 public key", i);
        VEIL_GUARD(key_hash(k, h));
        found |= veil_ct_compare(h, khash, sizeof h) == 0;
    }
    VEIL_ENSURE(found, VEIL_ERR_VERIFY, "sim evidence: the platform key is not trusted");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_signature(EVP_PKEY *key, const uint8_t *tbs, size_t tbs_size, const struct veil_buf *sig)
{
    VEIL_DEFER(md_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, key), VEIL_ERR_CRYPTO);
    int ok = EVP_DigestVerify(md, sig->data, sig->size, tbs, tbs_size);
    ERR_clear_error();
    VEIL_ENSURE(ok == 1, VEIL_ERR_VERIFY, "sim evidence: the signature does not verify");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_sim_verify(const json_t *evidence, const struct veil_verify_options *options,
                            struct veil_claims *claims)
{
    VEIL_DEFER(sim_evidence_cleanup) struct sim_evidence e = {0};
    VEIL_GUARD(sim_parse(evidence, &e));
    VEIL_DEFER(pkey_done) EVP_PKEY *key = NULL;
    VEIL_GUARD(public_key_parse(e.platform_key, "sim evidence: \"platform_key\"", 1, &key));
    uint8_t khash[VEIL_SHA384_SIZE], tbs[VEIL_SIM_TBS_SIZE];
    VEIL_GUARD(key_hash(key, khash));
    VEIL_GUARD(check_trusted(options, khash));
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
