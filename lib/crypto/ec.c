/* SPDX-License-Identifier: Apache-2.0 */
/* EC keys on the NIST curves without OpenSSL 3.0's slow paths: building a curve's group from its name (what
 * EVP_PKEY_fromdata and EVP_EC_gen do on every call) costs more than the rest of a key import or generation
 * together, so one template key per curve is made once and new keys copy its domain parameters. */
#include <pthread.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"

static const char *const curve_names[VEIL_EC_CURVE_COUNT] = {"prime256v1", "secp384r1", "secp521r1"};
static const size_t field_sizes[VEIL_EC_CURVE_COUNT] = {32, 48, 66};

/* Made once, never freed: process lifetime. */
static EVP_PKEY *templates[VEIL_EC_CURVE_COUNT];
static pthread_once_t templates_once = PTHREAD_ONCE_INIT;

static void templates_make(void)
{
    for (size_t i = 0; i < VEIL_EC_CURVE_COUNT; i++)
        templates[i] = EVP_EC_gen(curve_names[i]);
    ERR_clear_error();
}

static VEIL_RESULT template_of(enum veil_ec_curve curve, EVP_PKEY **out)
{
    VEIL_ENSURE((unsigned)curve < VEIL_EC_CURVE_COUNT, VEIL_ERR_ARG, "unknown EC curve %d", (int)curve);
    pthread_once(&templates_once, templates_make);
    *out = templates[curve];
    VEIL_ENSURE(*out != NULL, VEIL_ERR_CRYPTO, "no %s support in libcrypto", curve_names[curve]);
    return VEIL_RESULT_OK;
}

size_t veil_ec_field_size(enum veil_ec_curve curve)
{
    return (unsigned)curve < VEIL_EC_CURVE_COUNT ? field_sizes[curve] : 0;
}

VEIL_RESULT veil_ec_public_from_point(enum veil_ec_curve curve, const uint8_t *point, size_t size, EVP_PKEY **out)
{
    EVP_PKEY *tmpl = NULL;
    VEIL_GUARD(template_of(curve, &tmpl));
    VEIL_ENSURE(size == 1 + 2 * field_sizes[curve] && point[0] == 0x04, VEIL_ERR_FORMAT,
                "not an uncompressed %s point", curve_names[curve]);
    VEIL_DEFER(veil_ossl_pkey_done) EVP_PKEY *pkey = EVP_PKEY_new();
    VEIL_ENSURE(pkey != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_PKEY_copy_parameters(pkey, tmpl), VEIL_ERR_CRYPTO);
    int ok = EVP_PKEY_set1_encoded_public_key(pkey, point, size) == 1; /* refuses points off the curve */
    if (ok) {
        VEIL_DEFER(veil_ossl_pkey_ctx_done) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        ok = ctx != NULL && EVP_PKEY_public_check_quick(ctx) == 1;
    }
    ERR_clear_error();
    VEIL_ENSURE(ok, VEIL_ERR_FORMAT, "the point is not on %s", curve_names[curve]);
    *out = pkey;
    pkey = NULL;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_ec_generate(enum veil_ec_curve curve, EVP_PKEY **out)
{
    EVP_PKEY *tmpl = NULL;
    VEIL_GUARD(template_of(curve, &tmpl));
    VEIL_DEFER(veil_ossl_pkey_ctx_done) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, tmpl, NULL);
    VEIL_ENSURE(ctx != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_PKEY_keygen_init(ctx), VEIL_ERR_CRYPTO);
    *out = NULL;
    VEIL_GUARD_OSSL(EVP_PKEY_keygen(ctx, out), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}
