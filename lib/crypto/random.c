/* SPDX-License-Identifier: Apache-2.0 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <string.h>

#include "core/secret.h"
#include "crypto/crypto.h"
#include "veil/sealed.h"

VEIL_RESULT veil_random(uint8_t *out, size_t size)
{
    VEIL_ENSURE(size <= INT32_MAX, VEIL_ERR_ARG, "random request too large");
    VEIL_GUARD_OSSL(RAND_bytes(out, (int)size), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

veil_status veil_keygen(uint8_t *out, size_t size)
{
    veil_error_clear();
    if (out == NULL || size != VEIL_KEY_SIZE)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "a model key is %u bytes", VEIL_KEY_SIZE).status;
    return veil_random(out, size).status;
}

VEIL_RESULT veil_sha256(const uint8_t *data, size_t size, uint8_t out[VEIL_SHA256_SIZE])
{
    VEIL_GUARD_OSSL(EVP_Digest(data, size, out, NULL, EVP_sha256(), NULL), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

static void kdf_free(EVP_KDF **k)
{
    EVP_KDF_free(*k);
}

static void kdf_ctx_free(EVP_KDF_CTX **c)
{
    EVP_KDF_CTX_free(*c);
}

VEIL_RESULT veil_hkdf_sha256(const uint8_t *ikm, size_t ikm_size, const char *info, uint8_t *out,
                             size_t out_size)
{
    VEIL_DEFER(kdf_free) EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    VEIL_ENSURE(kdf != NULL, VEIL_ERR_CRYPTO, "crypto library: HKDF unavailable");
    VEIL_DEFER(kdf_ctx_free) EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)ikm, ikm_size),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info, strlen(info)),
        OSSL_PARAM_construct_end(),
    };
    VEIL_GUARD_OSSL(EVP_KDF_derive(ctx, out, out_size, params), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}
