/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the lib/protocol parsers. The first byte picks one: 0 flattened JWE (decrypted with fixed P-256 and
 * RSA keys), 1 compact JWT (verified with a fixed P-256 key), 2 JWK, 3 RCAR Request, 4 Challenge, 5 Attestation
 * (and the report_data binding of what parsed), 6 JCS of any JSON. Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct veil_jwk ec_key, rsa_key;

static void keys_once(void)
{
    if (ec_key.pkey != NULL)
        return;
    if (!veil_ok(veil_jwk_generate(VEIL_JWK_EC_P256, &ec_key)) || !veil_ok(veil_jwk_generate(VEIL_JWK_RSA, &rsa_key)))
        abort();
}

static json_t *load(const uint8_t *data, size_t size)
{
    return json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static void fuzz_jwe(const uint8_t *data, size_t size)
{
    json_t *j = load(data, size);
    if (j == NULL)
        return;
    struct veil_buf out = {.wipe = 1};
    (void)veil_jwe_decrypt(&ec_key, j, &out);
    (void)veil_jwe_decrypt(&rsa_key, j, &out);
    veil_buf_cleanup(&out);
    json_decref(j);
}

static void fuzz_jwt(const uint8_t *data, size_t size)
{
    char *token = malloc(size + 1);
    if (token == NULL)
        return;
    memcpy(token, data, size);
    token[size] = '\0';
    json_t *claims = NULL;
    if (veil_ok(veil_jwt_verify_es256(&ec_key, token, 1700000000, 60, &claims)))
        json_decref(claims);
    free(token);
}

static void fuzz_jwk(const uint8_t *data, size_t size)
{
    json_t *j = load(data, size);
    struct veil_jwk k = {0};
    json_t *out = NULL;
    if (j != NULL && veil_ok(veil_jwk_parse(j, &k)) && veil_ok(veil_jwk_export(&k, NULL, &out)))
        json_decref(out);
    veil_jwk_cleanup(&k);
    json_decref(j);
}

static void fuzz_attestation(const uint8_t *data, size_t size)
{
    struct veil_rcar_attestation a = {0};
    if (veil_ok(veil_rcar_attestation_parse(data, size, &a))) {
        uint8_t rd[VEIL_KBS_REPORT_DATA_SIZE];
        (void)veil_kbs_report_data(a.nonce, a.tee_pubkey_json, a.additional_evidence, a.hash, rd);
    }
    veil_rcar_attestation_cleanup(&a);
}

static void fuzz_jcs(const uint8_t *data, size_t size)
{
    json_t *j = load(data, size);
    struct veil_buf b = {0};
    if (j != NULL)
        (void)veil_jcs_serialize(j, &b);
    veil_buf_cleanup(&b);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    keys_once();
    uint8_t which = data[0] % 7;
    data++;
    size--;
    struct veil_rcar_request r = {0};
    struct veil_rcar_challenge c = {0};
    switch (which) {
    case 0: fuzz_jwe(data, size); break;
    case 1: fuzz_jwt(data, size); break;
    case 2: fuzz_jwk(data, size); break;
    case 3:
        (void)veil_rcar_request_parse(data, size, &r);
        veil_rcar_request_cleanup(&r);
        break;
    case 4:
        (void)veil_rcar_challenge_parse(data, size, &c);
        veil_rcar_challenge_cleanup(&c);
        break;
    case 5: fuzz_attestation(data, size); break;
    default: fuzz_jcs(data, size); break;
    }
    return 0;
}
