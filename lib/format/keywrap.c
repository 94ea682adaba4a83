/* SPDX-License-Identifier: Apache-2.0 */
/* Envelope encryption: the per-file data key wrapped under the model key (spec section 6). */
#include <string.h>

#include "core/cursor.h"
#include "format/format.h"

VEIL_RESULT veil_sealed_check_key(const uint8_t *key, size_t key_size)
{
    VEIL_ENSURE(key != NULL, VEIL_ERR_ARG, "no model key given");
    VEIL_ENSURE(key_size == VEIL_KEY_SIZE || key_size == 16, VEIL_ERR_ARG,
                "a model key is 32 bytes (16 only for the seed's API), not %zu", key_size);
    return VEIL_RESULT_OK;
}

static void wrap_aad(const uint8_t digest[VEIL_SHA256_SIZE], uint32_t key_version, uint8_t aad[36])
{
    memcpy(aad, digest, VEIL_SHA256_SIZE);
    veil_store_u32le(aad + VEIL_SHA256_SIZE, key_version);
}

static void kek_wipe(uint8_t (*kek)[VEIL_GCM_KEY_SIZE])
{
    veil_wipe(*kek, sizeof *kek);
}

VEIL_RESULT veil_sealed_wrap(const uint8_t *model_key, size_t key_size, const uint8_t digest[VEIL_SHA256_SIZE],
                             const uint8_t data_key[VEIL_GCM_KEY_SIZE], const uint8_t nonce[VEIL_GCM_NONCE_SIZE],
                             struct veil_key_wrap *wrap)
{
    VEIL_GUARD(veil_sealed_check_key(model_key, key_size));
    VEIL_DEFER(kek_wipe) uint8_t kek[VEIL_GCM_KEY_SIZE];
    VEIL_GUARD(veil_hkdf_sha256(model_key, key_size, VEIL_SEALED_WRAP_INFO, kek, sizeof kek));
    uint8_t aad[36];
    wrap_aad(digest, wrap->key_version, aad);
    memcpy(wrap->nonce, nonce, VEIL_GCM_NONCE_SIZE);
    VEIL_DEFER(veil_gcm_cleanup) struct veil_gcm g = {0};
    VEIL_GUARD(veil_gcm_init(&g, kek, 1));
    return veil_gcm_seal(&g, wrap->nonce, aad, sizeof aad, data_key, wrap->wrapped_key, VEIL_GCM_KEY_SIZE,
                         wrap->tag);
}

VEIL_RESULT veil_sealed_unwrap(const uint8_t *model_key, size_t key_size, const uint8_t digest[VEIL_SHA256_SIZE],
                               const struct veil_key_wrap *wrap, uint8_t data_key[VEIL_GCM_KEY_SIZE])
{
    VEIL_GUARD(veil_sealed_check_key(model_key, key_size));
    VEIL_DEFER(kek_wipe) uint8_t kek[VEIL_GCM_KEY_SIZE];
    VEIL_GUARD(veil_hkdf_sha256(model_key, key_size, VEIL_SEALED_WRAP_INFO, kek, sizeof kek));
    uint8_t aad[36];
    wrap_aad(digest, wrap->key_version, aad);
    VEIL_DEFER(veil_gcm_cleanup) struct veil_gcm g = {0};
    VEIL_GUARD(veil_gcm_init(&g, kek, 0));
    struct veil_result r = veil_gcm_open(&g, wrap->nonce, aad, sizeof aad, wrap->wrapped_key, data_key,
                                         VEIL_GCM_KEY_SIZE, wrap->tag);
    VEIL_ENSURE(r.status != VEIL_ERR_AUTH, VEIL_ERR_KEY,
                "key unwrap failed: wrong model key, or the header or key wrap was modified");
    return r;
}

void veil_sealed_wrap_encode(const struct veil_key_wrap *wrap, uint8_t out[VEIL_SEALED_WRAP_SIZE])
{
    veil_store_u32le(out, wrap->key_version);
    memcpy(out + 4, wrap->nonce, VEIL_GCM_NONCE_SIZE);
    memcpy(out + 16, wrap->wrapped_key, VEIL_GCM_KEY_SIZE);
    memcpy(out + 48, wrap->tag, VEIL_GCM_TAG_SIZE);
}
