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

#include "attest/attest_internal.h"
#include "cache/local.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/limits.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "crypto/ossl_defer.h"

#define SIM_KEY_FILE "platform.key"                      /* lib/attest's VEIL_SIM_KEY_FILE */
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

/* The sim TEE's measurement without a configuration file (docs/spec/evidence.md, "sim"), by lib/attest's own
 * function: the file is opened once and measured through that descriptor. */
VEIL_RESULT veil_la_sim_measure(const char *exe, uint8_t out[VEIL_LA_SIM_MEASUREMENT_SIZE])
{
    VEIL_DEFER(veil_fd_close) int fd = open(exe, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", exe, strerror(errno));
    return veil_sim_measure_fd(fd, exe, out);
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
