/* SPDX-License-Identifier: Apache-2.0 */
/* lib/crypto against published test vectors (NIST GCM, RFC 5869 HKDF, FIPS 180 SHA-256). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "crypto/crypto.h"

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (uint8_t)v;
    }
}

/* NIST GCM test case 16 (AES-256, 96-bit IV, 20 bytes of AAD). */
static void test_gcm_nist_case_16(void **state)
{
    (void)state;
    uint8_t key[32], iv[12], pt[60], aad[20], ct[60], tag[16], out[60], got_tag[16];
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
    unhex("cafebabefacedbaddecaf888", iv, 12);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5"
          "aa0de657ba637b39", pt, 60);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e63"
          "93ba7a0abcc9f662", ct, 60);
    unhex("76fc6ece0f4e1768cddf8853bb2d551b", tag, 16);
    struct veil_gcm e, d;
    assert_true(veil_ok(veil_gcm_init(&e, key, 1)));
    assert_true(veil_ok(veil_gcm_seal(&e, iv, aad, sizeof aad, pt, out, sizeof pt, got_tag)));
    assert_memory_equal(out, ct, sizeof ct);
    assert_memory_equal(got_tag, tag, sizeof tag);
    assert_true(veil_ok(veil_gcm_init(&d, key, 0)));
    assert_true(veil_ok(veil_gcm_open(&d, iv, aad, sizeof aad, ct, out, sizeof ct, tag)));
    assert_memory_equal(out, pt, sizeof pt);
    /* In place, then a wrong tag: the output is wiped. */
    memcpy(out, ct, sizeof ct);
    tag[0] ^= 1;
    assert_int_equal(veil_gcm_open(&d, iv, aad, sizeof aad, out, out, sizeof out, tag).status, VEIL_ERR_AUTH);
    uint8_t zero[60] = {0};
    assert_memory_equal(out, zero, sizeof zero);
    veil_gcm_cleanup(&e);
    veil_gcm_cleanup(&d);
}

/* RFC 5869 has no SHA-256 vector with an empty salt and a text info; this one is from Python's
 * cryptography (HKDF(SHA256, 32, salt=None, info=b"veil/sealed/v1/key-wrap").derive(bytes(range(32)))),
 * which tests/vectors/check_sealed.py uses independently. */
static void test_hkdf(void **state)
{
    (void)state;
    uint8_t ikm[32], out[32], want[32];
    for (int i = 0; i < 32; i++)
        ikm[i] = (uint8_t)i;
    unhex("206fde8408c0e10e02c6dfd6f20096760195fb37bb09c0cb07cc6331c05448b9", want, 32);
    assert_true(veil_ok(veil_hkdf_sha256(ikm, sizeof ikm, "veil/sealed/v1/key-wrap", out, sizeof out)));
    assert_memory_equal(out, want, 32);
}

static void test_sha256_abc(void **state)
{
    (void)state;
    uint8_t out[32], want[32];
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, 32);
    assert_true(veil_ok(veil_sha256((const uint8_t *)"abc", 3, out)));
    assert_memory_equal(out, want, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcm_nist_case_16),
        cmocka_unit_test(test_hkdf),
        cmocka_unit_test(test_sha256_abc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
