/* SPDX-License-Identifier: Apache-2.0 */
#include <limits.h>

#include <openssl/evp.h>

#include "core/secret.h"
#include "crypto/crypto.h"

VEIL_RESULT veil_gcm_init(struct veil_gcm *g, const uint8_t key[VEIL_GCM_KEY_SIZE], int encrypt)
{
    *g = (struct veil_gcm){.encrypt = encrypt};
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    g->ctx = ctx;
    VEIL_GUARD_OSSL(EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL, encrypt), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

void veil_gcm_cleanup(struct veil_gcm *g)
{
    EVP_CIPHER_CTX_free(g->ctx); /* wipes the key schedule */
    g->ctx = NULL;
}

static VEIL_RESULT gcm_start(struct veil_gcm *g, const uint8_t *nonce, const uint8_t *aad, size_t aad_size,
                             size_t size)
{
    int n = 0;
    VEIL_ENSURE(size <= INT_MAX && aad_size <= INT_MAX, VEIL_ERR_LIMIT, "message too large for AES-GCM");
    VEIL_GUARD_OSSL(EVP_CipherInit_ex(g->ctx, NULL, NULL, NULL, nonce, g->encrypt), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_CipherUpdate(g->ctx, NULL, &n, aad, (int)aad_size), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_gcm_seal(struct veil_gcm *g, const uint8_t nonce[VEIL_GCM_NONCE_SIZE], const uint8_t *aad,
                          size_t aad_size, const uint8_t *in, uint8_t *out, size_t size,
                          uint8_t tag[VEIL_GCM_TAG_SIZE])
{
    int n = 0;
    VEIL_ENSURE(g->encrypt, VEIL_ERR_INTERNAL, "GCM context is for decryption");
    VEIL_GUARD(gcm_start(g, nonce, aad, aad_size, size));
    if (size > 0)
        VEIL_GUARD_OSSL(EVP_EncryptUpdate(g->ctx, out, &n, in, (int)size), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_EncryptFinal_ex(g->ctx, out + n, &n), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, VEIL_GCM_TAG_SIZE, tag), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_gcm_open(struct veil_gcm *g, const uint8_t nonce[VEIL_GCM_NONCE_SIZE], const uint8_t *aad,
                          size_t aad_size, const uint8_t *in, uint8_t *out, size_t size,
                          const uint8_t tag[VEIL_GCM_TAG_SIZE])
{
    int n = 0;
    VEIL_ENSURE(!g->encrypt, VEIL_ERR_INTERNAL, "GCM context is for encryption");
    VEIL_GUARD(gcm_start(g, nonce, aad, aad_size, size));
    if (size > 0)
        VEIL_GUARD_OSSL(EVP_DecryptUpdate(g->ctx, out, &n, in, (int)size), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_SET_TAG, VEIL_GCM_TAG_SIZE, (void *)(uintptr_t)tag),
                    VEIL_ERR_CRYPTO);
    if (EVP_DecryptFinal_ex(g->ctx, out + n, &n) != 1) {
        veil_wipe(out, size);
        VEIL_BAIL(VEIL_ERR_AUTH, "authentication failed");
    }
    return VEIL_RESULT_OK;
}
