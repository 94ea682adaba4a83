/* SPDX-License-Identifier: Apache-2.0 */
/* The simulation TEE's local reports (local.h, "simulation TEE local reports"): HMAC-SHA256 under a report key
 * derived from the node's simulation platform key. Like the rest of the simulation TEE it protects nothing; it
 * runs the same protocol steps as SGX's EREPORT / EGETKEY so that they are exercised without hardware. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cache/local.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/limits.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"

#define SIM_KEY_FILE "platform.key"                      /* lib/attest's VEIL_SIM_KEY_FILE */
#define SIM_MEASUREMENT_DOMAIN "VEIL-SIM-MEASUREMENT-V1" /* lib/attest's VEIL_SIM_MEASUREMENT_DOMAIN */
#define MAC_INPUT_SIZE (sizeof VEIL_LA_SIM_REPORT_DOMAIN + 2 * VEIL_LA_SIM_MEASUREMENT_SIZE + VEIL_REPORT_DATA_SIZE)

VEIL_RESULT veil_la_sim_report_key(const char *sim_dir, uint8_t out[VEIL_LA_SIM_REPORT_KEY_SIZE])
{
    char path[4096];
    VEIL_ENSURE(sim_dir != NULL && (size_t)snprintf(path, sizeof path, "%s/%s", sim_dir, SIM_KEY_FILE) < sizeof path,
                VEIL_ERR_ARG, "no simulation platform directory, or its path is too long");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf pem;
    veil_buf_init_secret(&pem);
    VEIL_GUARD(veil_file_read_all(path, VEIL_SIM_KEY_MAX_SIZE, &pem));
    VEIL_ENSURE(pem.size > 0, VEIL_ERR_ARG, "%s is empty (create the platform with veil attest sim-init)", path);
    return veil_hkdf_sha256(pem.data, pem.size, VEIL_LA_SIM_KEY_INFO, out, VEIL_LA_SIM_REPORT_KEY_SIZE);
}

/* u64le(size) || contents of the open file into the digest. */
static VEIL_RESULT digest_file(EVP_MD_CTX *md, int fd, const char *exe)
{
    struct stat st;
    VEIL_ENSURE(fstat(fd, &st) == 0 && S_ISREG(st.st_mode), VEIL_ERR_IO, "%s is not a regular file", exe);
    uint8_t len[8], chunk[65536];
    veil_store_u64le(len, (uint64_t)st.st_size);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, len, sizeof len), VEIL_ERR_CRYPTO);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(n >= 0, VEIL_ERR_IO, "cannot read %s: %s", exe, strerror(errno));
        if (n == 0)
            break;
        VEIL_GUARD_OSSL(EVP_DigestUpdate(md, chunk, (size_t)n), VEIL_ERR_CRYPTO);
        total += (uint64_t)n;
    }
    VEIL_ENSURE(total == (uint64_t)st.st_size, VEIL_ERR_IO, "%s changed while it was measured", exe);
    return VEIL_RESULT_OK;
}

/* SHA-384(domain 0x00 || u64le(n) || executable || u64le(0)): the sim TEE's measurement without a configuration
 * file (docs/spec/evidence.md, "sim"; tests/unit/test_cache.c checks it against the provider's own). */
VEIL_RESULT veil_la_sim_measure(const char *exe, uint8_t out[VEIL_LA_SIM_MEASUREMENT_SIZE])
{
    static const uint8_t no_config[8] = {0};
    VEIL_DEFER(veil_fd_close) int fd = open(exe, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", exe, strerror(errno));
    VEIL_DEFER(veil_ossl_md_ctx_done) EVP_MD_CTX *md = EVP_MD_CTX_new();
    VEIL_ENSURE(md != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD_OSSL(EVP_DigestInit_ex(md, EVP_sha384(), NULL), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, SIM_MEASUREMENT_DOMAIN, sizeof SIM_MEASUREMENT_DOMAIN), VEIL_ERR_CRYPTO);
    VEIL_GUARD(digest_file(md, fd, exe));
    VEIL_GUARD_OSSL(EVP_DigestUpdate(md, no_config, sizeof no_config), VEIL_ERR_CRYPTO);
    VEIL_GUARD_OSSL(EVP_DigestFinal_ex(md, out, NULL), VEIL_ERR_CRYPTO);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sim_mac(const uint8_t key[VEIL_LA_SIM_REPORT_KEY_SIZE], const uint8_t *target,
                           const uint8_t *measurement, const uint8_t *report_data, uint8_t mac[VEIL_LA_SIM_MAC_SIZE])
{
    uint8_t in[MAC_INPUT_SIZE];
    uint8_t *p = in;
    memcpy(p, VEIL_LA_SIM_REPORT_DOMAIN, sizeof VEIL_LA_SIM_REPORT_DOMAIN), p += sizeof VEIL_LA_SIM_REPORT_DOMAIN;
    memcpy(p, target, VEIL_LA_SIM_MEASUREMENT_SIZE), p += VEIL_LA_SIM_MEASUREMENT_SIZE;
    memcpy(p, measurement, VEIL_LA_SIM_MEASUREMENT_SIZE), p += VEIL_LA_SIM_MEASUREMENT_SIZE;
    memcpy(p, report_data, VEIL_REPORT_DATA_SIZE);
    unsigned int n = 0;
    VEIL_ENSURE(HMAC(EVP_sha256(), key, VEIL_LA_SIM_REPORT_KEY_SIZE, in, sizeof in, mac, &n) != NULL &&
                    n == VEIL_LA_SIM_MAC_SIZE,
                VEIL_ERR_CRYPTO, "HMAC-SHA256 failed");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_la_sim_report(const uint8_t key[VEIL_LA_SIM_REPORT_KEY_SIZE],
                               const uint8_t target[VEIL_LA_SIM_MEASUREMENT_SIZE],
                               const uint8_t measurement[VEIL_LA_SIM_MEASUREMENT_SIZE],
                               const uint8_t report_data[VEIL_REPORT_DATA_SIZE], uint8_t out[VEIL_LA_SIM_REPORT_SIZE])
{
    memcpy(out, measurement, VEIL_LA_SIM_MEASUREMENT_SIZE);
    memcpy(out + VEIL_LA_SIM_MEASUREMENT_SIZE, report_data, VEIL_REPORT_DATA_SIZE);
    return sim_mac(key, target, measurement, report_data, out + VEIL_LA_SIM_MEASUREMENT_SIZE + VEIL_REPORT_DATA_SIZE);
}

VEIL_RESULT veil_la_sim_verify(const uint8_t key[VEIL_LA_SIM_REPORT_KEY_SIZE],
                               const uint8_t self[VEIL_LA_SIM_MEASUREMENT_SIZE], const uint8_t *report,
                               size_t report_size, const uint8_t expected[VEIL_REPORT_DATA_SIZE],
                               uint8_t measurement_out[VEIL_LA_SIM_MEASUREMENT_SIZE])
{
    VEIL_ENSURE(report != NULL && report_size == VEIL_LA_SIM_REPORT_SIZE, VEIL_ERR_FORMAT,
                "a simulated local report of %zu bytes", report_size);
    const uint8_t *measurement = report, *report_data = report + VEIL_LA_SIM_MEASUREMENT_SIZE;
    const uint8_t *mac = report_data + VEIL_REPORT_DATA_SIZE;
    uint8_t want[VEIL_LA_SIM_MAC_SIZE];
    VEIL_GUARD(sim_mac(key, self, measurement, report_data, want));
    VEIL_ENSURE(veil_ct_compare(want, mac, sizeof want) == 0, VEIL_ERR_AUTH,
                "the local report's MAC does not verify (made for another target, or with another node's key)");
    VEIL_ENSURE(veil_ct_compare(report_data, expected, VEIL_REPORT_DATA_SIZE) == 0, VEIL_ERR_VERIFY,
                "the local report is bound to another channel (replayed or relayed)");
    memcpy(measurement_out, measurement, VEIL_LA_SIM_MEASUREMENT_SIZE);
    return VEIL_RESULT_OK;
}
