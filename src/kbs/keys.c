/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's own secrets, each in its own file (mode 0600), created on first start: the master key that
 * encrypts model keys at rest, the P-256 key that signs attestation tokens, the admin bearer token. Plus the
 * settings that name files (trusted simulation keys, default policy) and the allowed TEE list. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/file.h"
#include "core/hex.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"
#include "kbsd.h"

#define SECRET_FILE_MAX_SIZE (16u << 10)
#define DEV_POLICY "{\"version\":1,\"allow_sim\":true,\"allow_sample\":true}"
#define DENY_ALL_POLICY "{\"version\":1}"

/* Writes a new file (mode 0600) that must not exist yet. */
static VEIL_RESULT create_secret_file(const char *path, const void *data, size_t size)
{
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile f = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&f, path, 0600));
    VEIL_GUARD(veil_file_write_all(f.fd, data, size));
    return veil_outfile_commit_new(&f);
}

/* Reads a secret file, refusing one that group or others can read. *exists 0 when it is absent. */
static VEIL_RESULT read_secret_file(const char *path, struct veil_buf *out, int *exists)
{
    struct stat st;
    *exists = stat(path, &st) == 0;
    if (!*exists) {
        VEIL_ENSURE(errno == ENOENT, VEIL_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE((st.st_mode & 077) == 0, VEIL_ERR_ARG, "%s is readable by group or others (mode %03o): chmod 600 it",
                path, (unsigned)(st.st_mode & 0777));
    return veil_file_read_all(path, SECRET_FILE_MAX_SIZE, out);
}

static VEIL_RESULT master_key_load(struct kbs_ctx *k)
{
    const char *path = k->cfg->master_key_file;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b;
    veil_buf_init_secret(&b);
    int exists = 0;
    VEIL_GUARD(read_secret_file(path, &b, &exists));
    if (!exists) {
        VEIL_GUARD(veil_buf_reserve(&b, VEIL_KBS_MASTER_KEY_SIZE));
        VEIL_GUARD(veil_random(b.data, VEIL_KBS_MASTER_KEY_SIZE));
        b.size = VEIL_KBS_MASTER_KEY_SIZE;
        VEIL_GUARD(create_secret_file(path, b.data, b.size));
        vd_log("warn", "master-key-created", "{s:s}", "path", path);
    }
    VEIL_ENSURE(b.size == VEIL_KBS_MASTER_KEY_SIZE, VEIL_ERR_ARG, "%s must hold exactly %u bytes", path,
                VEIL_KBS_MASTER_KEY_SIZE);
    VEIL_GUARD(veil_secure_alloc(&k->master, VEIL_KBS_MASTER_KEY_SIZE, 0));
    memcpy(k->master.data, b.data, VEIL_KBS_MASTER_KEY_SIZE);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT signing_key_create(const char *path, struct veil_jwk *key)
{
    VEIL_GUARD(veil_jwk_generate(VEIL_JWK_EC_P256, key));
    VEIL_DEFER(veil_ossl_bio_done) BIO *bio = BIO_new(BIO_s_secmem());
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL), VEIL_ERR_CRYPTO);
    char *pem = NULL;
    long n = BIO_get_mem_data(bio, &pem);
    VEIL_ENSURE(n > 0, VEIL_ERR_CRYPTO, "cannot encode the signing key");
    VEIL_GUARD(create_secret_file(path, pem, (size_t)n));
    vd_log("warn", "signing-key-created", "{s:s}", "path", path);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT signing_key_read(const struct veil_buf *pem, struct veil_jwk *key)
{
    VEIL_DEFER(veil_ossl_bio_done) BIO *bio = BIO_new_mem_buf(pem->data, (int)pem->size);
    VEIL_ENSURE(bio != NULL, VEIL_ERR_NOMEM, "out of memory");
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    VEIL_ENSURE(pkey != NULL, VEIL_ERR_ARG, "the signing key file is not a PEM private key");
    VEIL_GUARD(veil_jwk_adopt(pkey, key));
    VEIL_ENSURE(key->type == VEIL_JWK_EC_P256, VEIL_ERR_ARG, "the signing key must be an EC P-256 key");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT signing_key_load(struct kbs_ctx *k)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b;
    veil_buf_init_secret(&b);
    int exists = 0;
    VEIL_GUARD(read_secret_file(k->cfg->signing_key_file, &b, &exists));
    if (exists)
        VEIL_GUARD(signing_key_read(&b, &k->signer));
    else
        VEIL_GUARD(signing_key_create(k->cfg->signing_key_file, &k->signer));
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k->signer.pkey, &der);
    VEIL_ENSURE(n > 0, VEIL_ERR_CRYPTO, "cannot encode the signing public key");
    uint8_t digest[VEIL_SHA256_SIZE];
    struct veil_result r = veil_sha256(der, (size_t)n, digest);
    OPENSSL_free(der);
    VEIL_GUARD(r);
    veil_hex_encode(digest, 8, k->signer_kid);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT admin_token_load(struct kbs_ctx *k)
{
    const char *path = k->cfg->admin_token_file;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b;
    veil_buf_init_secret(&b);
    int exists = 0;
    VEIL_GUARD(read_secret_file(path, &b, &exists));
    if (!exists) {
        uint8_t raw[KBS_ADMIN_TOKEN_SIZE / 2];
        VEIL_GUARD(veil_random(raw, sizeof raw));
        veil_hex_encode(raw, sizeof raw, k->admin_token);
        veil_wipe(raw, sizeof raw);
        size_t n = strlen(k->admin_token);
        k->admin_token[n] = '\n';
        struct veil_result r = create_secret_file(path, k->admin_token, n + 1);
        k->admin_token[n] = '\0';
        VEIL_GUARD(r);
        vd_log("warn", "admin-token-created", "{s:s}", "path", path);
        return VEIL_RESULT_OK;
    }
    while (b.size > 0 && (b.data[b.size - 1] == '\n' || b.data[b.size - 1] == '\r'))
        b.size--;
    VEIL_ENSURE(b.size >= KBS_ADMIN_TOKEN_MIN && b.size < sizeof k->admin_token, VEIL_ERR_ARG,
                "%s must hold one token of %u to %zu characters", path, KBS_ADMIN_TOKEN_MIN,
                sizeof k->admin_token - 1);
    for (size_t i = 0; i < b.size; i++)
        VEIL_ENSURE(b.data[i] > 0x20 && b.data[i] < 0x7f, VEIL_ERR_ARG, "%s: the token must be printable ASCII",
                    path);
    memcpy(k->admin_token, b.data, b.size);
    k->admin_token[b.size] = '\0';
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sim_keys_load(struct kbs_ctx *k)
{
    char *list = strdup(k->cfg->sim_trusted_keys);
    VEIL_ENSURE(list != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = VEIL_RESULT_OK;
    char *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p != NULL && veil_ok(r); p = strtok_r(NULL, ",", &save)) {
        struct veil_buf b = {0};
        r = k->sim_key_count < KBS_MAX_SIM_KEYS
                ? veil_file_read_all(p, VEIL_SIM_KEY_MAX_SIZE, &b)
                : veil_error_raise(VEIL_ERR_LIMIT, __FILE__, __LINE__, "at most %u trusted sim keys", KBS_MAX_SIM_KEYS);
        if (veil_ok(r))
            r = veil_buf_append_u8(&b, 0);
        if (veil_ok(r)) {
            k->sim_keys[k->sim_key_count++] = (char *)b.data;
            continue;
        }
        veil_buf_cleanup(&b);
    }
    free(list);
    return r;
}

static VEIL_RESULT tees_load(struct kbs_ctx *k)
{
    char list[256];
    VEIL_ENSURE(strlen(k->cfg->allowed_tees) < sizeof list, VEIL_ERR_ARG, "allowed_tees is too long");
    strcpy(list, k->cfg->allowed_tees);
    char *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        veil_tee t = VEIL_TEE_AUTO;
        VEIL_ENSURE(veil_tee_from_name(p, &t) == VEIL_OK && t != VEIL_TEE_AUTO, VEIL_ERR_ARG,
                    "allowed_tees: unknown TEE '%.32s' (sim, sample, sgx, tdx, snp)", p);
        VEIL_ENSURE(k->allowed_tee_count < KBS_MAX_ALLOWED_TEES, VEIL_ERR_LIMIT, "allowed_tees: too many");
        k->allowed_tees[k->allowed_tee_count++] = t;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT default_policy_load(struct kbs_ctx *k)
{
    const char *path = k->cfg->default_policy_file;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    if (path[0] == '\0')
        VEIL_GUARD(veil_buf_append(&b, DENY_ALL_POLICY, sizeof DENY_ALL_POLICY - 1));
    else
        VEIL_GUARD(veil_file_read_all(path, VEIL_POLICY_MAX_SIZE, &b));
    veil_policy *p = NULL;
    veil_status st = veil_policy_parse((const char *)b.data, b.size, &p);
    veil_policy_free(p);
    VEIL_ENSURE(st == VEIL_OK, VEIL_ERR_ARG, "default_policy_file: %s", veil_last_error());
    VEIL_GUARD(veil_buf_append_u8(&b, 0));
    k->default_policy = strdup((const char *)b.data);
    VEIL_ENSURE(k->default_policy != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_keys_load(struct kbs_ctx *k)
{
    VEIL_GUARD(master_key_load(k));
    VEIL_GUARD(signing_key_load(k));
    VEIL_GUARD(admin_token_load(k));
    VEIL_GUARD(sim_keys_load(k));
    VEIL_GUARD(tees_load(k));
    return default_policy_load(k);
}

void kbs_keys_cleanup(struct kbs_ctx *k)
{
    veil_secure_free(&k->master);
    veil_jwk_cleanup(&k->signer);
    veil_wipe(k->admin_token, sizeof k->admin_token);
    for (size_t i = 0; i < k->sim_key_count; i++)
        free(k->sim_keys[i]);
    k->sim_key_count = 0;
    free(k->default_policy);
    k->default_policy = NULL;
}

/* ---- storing key versions ------------------------------------------------------------------------------- */

struct key_writer_ctx {
    struct kbs_ctx *k;
    const uint8_t *key;
    size_t key_size;
    const char *event;
    const char *client;
};

static VEIL_RESULT write_key(void *ctx, const char *model_id, uint32_t version, struct veil_buf *sealed,
                             char **audit)
{
    struct key_writer_ctx *w = ctx;
    VEIL_GUARD(veil_kbs_key_seal(w->k->master.data, model_id, version, w->key, w->key_size, sealed));
    struct kbs_audit_event e = {.event = w->event, .decision = "allow", .reason = "admin stored a key version",
                                .client = w->client, .model = model_id, .key_version = version};
    *audit = kbs_audit_record(&e);
    VEIL_ENSURE(*audit != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_keys_store(struct kbs_ctx *k, const char *model_id, const char *policy, int create,
                           const uint8_t *key, size_t key_size, const char *client, uint32_t *version, int *outcome)
{
    struct key_writer_ctx w = {k, key, key_size, create ? "model-create" : "key-rotate", client};
    int flag = 0;
    if (create) {
        VEIL_GUARD(k->store->ops->model_create(k->store, model_id, policy, vd_now(), write_key, &w, &flag));
        *version = 1;
        *outcome = !flag;
    } else {
        VEIL_GUARD(k->store->ops->key_add(k->store, model_id, vd_now(), write_key, &w, version, &flag));
        *outcome = !flag;
    }
    if (*outcome == 0)
        vd_log("info", w.event, "{s:s, s:I, s:s}", "model", model_id, "key_version", (json_int_t)*version, "client",
                client);
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_keys_seed_dev(struct kbs_ctx *k)
{
    static const struct {
        const char *id;
        uint8_t byte;
    } seeds[] = {{"test-0", 0x00}, {"test-1", 0xff}};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        uint8_t key[32];
        memset(key, seeds[i].byte, sizeof key);
        uint32_t version = 0;
        int outcome = 0;
        VEIL_GUARD(kbs_keys_store(k, seeds[i].id, DEV_POLICY, 1, key, sizeof key, "dev-seed", &version, &outcome));
    }
    return VEIL_RESULT_OK;
}
