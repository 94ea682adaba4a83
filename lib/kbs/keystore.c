/* SPDX-License-Identifier: Apache-2.0 */
/* Model keys at rest: AES-256-GCM under the broker master key, the AAD binding the model id and key version so
 * that a sealed key cannot be moved to another row of the store. */
#include <string.h>

#include "core/secret.h"
#include "crypto/crypto.h"
#include "kbs/kbs.h"

#define KEY_FORMAT 1u

static VEIL_RESULT build_aad(const char *model_id, uint32_t version, struct veil_buf *aad)
{
    static const char label[] = "veil-kbs-key-v1";
    size_t id_len = strnlen(model_id, VEIL_KBS_MODEL_ID_MAX + 1);
    VEIL_ENSURE(id_len >= 1 && id_len <= VEIL_KBS_MODEL_ID_MAX, VEIL_ERR_ARG, "keystore: bad model id");
    VEIL_GUARD(veil_buf_append(aad, label, sizeof label)); /* with its NUL */
    VEIL_GUARD(veil_buf_append(aad, model_id, id_len));
    VEIL_GUARD(veil_buf_append_u8(aad, 0));
    return veil_buf_append_u32le(aad, version);
}

VEIL_RESULT veil_kbs_key_seal(const uint8_t master[VEIL_KBS_MASTER_KEY_SIZE], const char *model_id,
                              uint32_t version, const uint8_t *key, size_t key_size, struct veil_buf *out)
{
    VEIL_ENSURE(key_size >= VEIL_KBS_MODEL_KEY_MIN_SIZE && key_size <= VEIL_KBS_MODEL_KEY_MAX_SIZE, VEIL_ERR_ARG,
                "keystore: a model key is %u to %u bytes", VEIL_KBS_MODEL_KEY_MIN_SIZE, VEIL_KBS_MODEL_KEY_MAX_SIZE);
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf aad = {0};
    VEIL_GUARD(build_aad(model_id, version, &aad));
    uint8_t blob[VEIL_KBS_SEALED_KEY_OVERHEAD + VEIL_KBS_MODEL_KEY_MAX_SIZE];
    blob[0] = KEY_FORMAT;
    uint8_t *nonce = blob + 1, *ct = blob + 1 + VEIL_GCM_NONCE_SIZE, *tag = ct + key_size;
    VEIL_GUARD(veil_random(nonce, VEIL_GCM_NONCE_SIZE));
    VEIL_DEFER(veil_gcm_cleanup) struct veil_gcm g = {0};
    VEIL_GUARD(veil_gcm_init(&g, master, 1));
    VEIL_GUARD(veil_gcm_seal(&g, nonce, aad.data, aad.size, key, ct, key_size, tag));
    return veil_buf_append(out, blob, VEIL_KBS_SEALED_KEY_OVERHEAD + key_size);
}

VEIL_RESULT veil_kbs_key_open(const uint8_t master[VEIL_KBS_MASTER_KEY_SIZE], const char *model_id,
                              uint32_t version, const uint8_t *blob, size_t blob_size, struct veil_buf *out)
{
    VEIL_ENSURE(blob_size >= VEIL_KBS_SEALED_KEY_OVERHEAD + VEIL_KBS_MODEL_KEY_MIN_SIZE &&
                    blob_size <= VEIL_KBS_SEALED_KEY_OVERHEAD + VEIL_KBS_MODEL_KEY_MAX_SIZE && blob[0] == KEY_FORMAT,
                VEIL_ERR_FORMAT, "keystore: malformed sealed key");
    size_t key_size = blob_size - VEIL_KBS_SEALED_KEY_OVERHEAD;
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf aad = {0};
    VEIL_GUARD(build_aad(model_id, version, &aad));
    uint8_t key[VEIL_KBS_MODEL_KEY_MAX_SIZE];
    const uint8_t *nonce = blob + 1, *ct = blob + 1 + VEIL_GCM_NONCE_SIZE, *tag = ct + key_size;
    VEIL_DEFER(veil_gcm_cleanup) struct veil_gcm g = {0};
    VEIL_GUARD(veil_gcm_init(&g, master, 0));
    struct veil_result r = veil_gcm_open(&g, nonce, aad.data, aad.size, ct, key, key_size, tag);
    if (veil_ok(r))
        r = veil_buf_append(out, key, key_size);
    veil_wipe(key, sizeof key);
    return r;
}
