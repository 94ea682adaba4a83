/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only driver that exposes lib/protocol to tests/python/test_protocol_interop.py, so an independent JOSE
 * implementation (joserfc) and an independent JCS (rfc8785) can check libveil both ways. Input on stdin,
 * output on stdout; on failure "veil status N: message" on stderr and exit status 1.
 *
 *   protocol_tool jcs                              JSON value -> its JCS bytes
 *   protocol_tool report-data NONCE HASH [ADD]     JWK -> hex runtime digest, then hex 64-byte report_data;
 *                                                  ADD omitted: the device form (no additional-evidence)
 *   protocol_tool jwe-encrypt                      {"jwk":{…},"plaintext":"<b64url>"} -> flattened JWE
 *   protocol_tool jwe-decrypt KEY.pem              flattened JWE -> plaintext bytes
 *   protocol_tool jwt-sign KEY.pem [KID]           claims object -> compact JWT
 *   protocol_tool jwt-verify NOW [LEEWAY]          {"jwk":{…},"token":"…"} -> claims JSON
 *   protocol_tool jwk-export KEY.pem               -> public JWK (Trustee member order, no alg)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "core/base64.h"
#include "protocol/protocol.h"

static int fail(struct veil_result r)
{
    fprintf(stderr, "veil status %d: %s\n", (int)r.status, veil_last_error());
    return 1;
}

#define TRY(expr)                                                                                                 \
    do {                                                                                                          \
        struct veil_result tool_r_ = (expr);                                                                      \
        if (!veil_ok(tool_r_))                                                                                    \
            return fail(tool_r_);                                                                                 \
    } while (0)

static json_t *read_json(void)
{
    json_error_t e;
    json_t *j = json_loadf(stdin, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (j == NULL)
        fprintf(stderr, "stdin is not JSON: %s\n", e.text);
    return j;
}

static int load_key(const char *path, struct veil_jwk *k)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (pkey == NULL) {
        fprintf(stderr, "%s: not a PEM private key\n", path);
        return 1;
    }
    TRY(veil_jwk_adopt(pkey, k));
    return 0;
}

static void print_hex(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", d[i]);
    printf("\n");
}

static int cmd_jcs(void)
{
    json_t *j = read_json();
    if (j == NULL)
        return 1;
    struct veil_buf b = {0};
    struct veil_result r = veil_jcs_serialize(j, &b);
    json_decref(j);
    if (!veil_ok(r))
        return fail(r);
    fwrite(b.data, 1, b.size, stdout);
    veil_buf_cleanup(&b);
    return 0;
}

static int cmd_report_data(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    enum veil_kbs_hash h = 0;
    TRY(veil_kbs_hash_parse(argv[3], &h));
    json_t *jwk = read_json();
    if (jwk == NULL)
        return 1;
    uint8_t digest[VEIL_KBS_MAX_DIGEST_SIZE], rd[VEIL_KBS_REPORT_DATA_SIZE];
    const char *add = argc > 4 ? argv[4] : NULL;
    struct veil_result r = veil_kbs_runtime_digest(argv[2], jwk, add, h, digest);
    if (veil_ok(r))
        r = veil_kbs_report_data(argv[2], jwk, add, h, rd);
    json_decref(jwk);
    if (!veil_ok(r))
        return fail(r);
    print_hex(digest, veil_kbs_hash_size(h));
    print_hex(rd, sizeof rd);
    return 0;
}

static int cmd_jwe_encrypt(void)
{
    json_t *in = read_json();
    if (in == NULL)
        return 1;
    struct veil_jwk k = {0};
    struct veil_buf pt = {0};
    json_t *jwe = NULL;
    const char *p64 = json_string_value(json_object_get(in, "plaintext"));
    struct veil_result r = veil_jwk_parse(json_object_get(in, "jwk"), &k);
    if (veil_ok(r))
        r = veil_b64_decode(VEIL_B64_URL, p64 ? p64 : "", p64 ? strlen(p64) : 0, 1u << 20, &pt);
    if (veil_ok(r))
        r = veil_jwe_encrypt(&k, pt.data, pt.size, &jwe);
    json_decref(in);
    veil_jwk_cleanup(&k);
    veil_buf_cleanup(&pt);
    if (!veil_ok(r))
        return fail(r);
    json_dumpf(jwe, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(jwe);
    return 0;
}

static int cmd_jwe_decrypt(int argc, char **argv)
{
    struct veil_jwk k = {0};
    if (argc < 3 || load_key(argv[2], &k) != 0)
        return 1;
    json_t *jwe = read_json();
    if (jwe == NULL)
        return 1;
    struct veil_buf out = {.wipe = 1};
    struct veil_result r = veil_jwe_decrypt(&k, jwe, &out);
    json_decref(jwe);
    veil_jwk_cleanup(&k);
    if (!veil_ok(r))
        return fail(r);
    fwrite(out.data, 1, out.size, stdout);
    veil_buf_cleanup(&out);
    return 0;
}

static int cmd_jwt_sign(int argc, char **argv)
{
    struct veil_jwk k = {0};
    if (argc < 3 || load_key(argv[2], &k) != 0)
        return 1;
    json_t *claims = read_json();
    if (claims == NULL)
        return 1;
    char *token = NULL;
    struct veil_result r = veil_jwt_sign_es256(&k, argc > 3 ? argv[3] : NULL, claims, &token);
    json_decref(claims);
    veil_jwk_cleanup(&k);
    if (!veil_ok(r))
        return fail(r);
    printf("%s", token);
    free(token);
    return 0;
}

static int cmd_jwt_verify(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    json_t *in = read_json();
    if (in == NULL)
        return 1;
    struct veil_jwk k = {0};
    json_t *claims = NULL;
    const char *token = json_string_value(json_object_get(in, "token"));
    struct veil_result r = veil_jwk_parse(json_object_get(in, "jwk"), &k);
    if (veil_ok(r))
        r = veil_jwt_verify_es256(&k, token ? token : "", strtoll(argv[2], NULL, 10),
                                  argc > 3 ? strtoll(argv[3], NULL, 10) : 0, &claims);
    json_decref(in);
    veil_jwk_cleanup(&k);
    if (!veil_ok(r))
        return fail(r);
    json_dumpf(claims, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(claims);
    return 0;
}

static int cmd_jwk_export(int argc, char **argv)
{
    struct veil_jwk k = {0};
    if (argc < 3 || load_key(argv[2], &k) != 0)
        return 1;
    json_t *j = NULL;
    struct veil_result r = veil_jwk_export(&k, NULL, &j);
    veil_jwk_cleanup(&k);
    if (!veil_ok(r))
        return fail(r);
    json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    int rc = 2;
    if (strcmp(cmd, "jcs") == 0)
        rc = cmd_jcs();
    else if (strcmp(cmd, "report-data") == 0)
        rc = cmd_report_data(argc, argv);
    else if (strcmp(cmd, "jwe-encrypt") == 0)
        rc = cmd_jwe_encrypt();
    else if (strcmp(cmd, "jwe-decrypt") == 0)
        rc = cmd_jwe_decrypt(argc, argv);
    else if (strcmp(cmd, "jwt-sign") == 0)
        rc = cmd_jwt_sign(argc, argv);
    else if (strcmp(cmd, "jwt-verify") == 0)
        rc = cmd_jwt_verify(argc, argv);
    else if (strcmp(cmd, "jwk-export") == 0)
        rc = cmd_jwk_export(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: protocol_tool jcs|report-data|jwe-encrypt|jwe-decrypt|jwt-sign|jwt-verify|"
                        "jwk-export ... (see the source)\n");
    return rc;
}
