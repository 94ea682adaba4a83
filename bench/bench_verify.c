/* SPDX-License-Identifier: Apache-2.0 */
/* Evidence verifications per second through veil_evidence_verify, one JSON line.
 *   bench_verify dcap QUOTE COLLATERAL NOW SECONDS
 *   bench_verify sim EVIDENCE.json PLATFORM_KEY.pem NOW SECONDS
 * For dcap the collateral comes from a file (parsed and signature-checked on every verification, as a broker
 * that keeps it on disk does); for sim the trusted key is given. bench/run.py puts each next to a reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/file.h"
#include "veil/attest.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int load(const char *path, struct veil_buf *b)
{
    if (!veil_ok(veil_file_read_all(path, 64u << 20, b))) {
        fprintf(stderr, "bench_verify: %s\n", veil_last_error());
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[1], "dcap") != 0 && strcmp(argv[1], "sim") != 0))
        return fprintf(stderr, "usage: bench_verify dcap|sim FILE COLLATERAL|KEY NOW SECONDS\n"), 2;
    int dcap = strcmp(argv[1], "dcap") == 0;
    struct veil_buf evidence = {0}, key = {0};
    if (load(argv[2], &evidence) != 0 || (!dcap && (load(argv[3], &key) != 0 || !veil_ok(veil_buf_append_u8(&key, 0)))))
        return 1;
    const char *keys[1] = {(const char *)key.data};
    struct veil_verify_options o = {.now = strtoull(argv[4], NULL, 10)};
    if (dcap)
        o.collateral_path = argv[3];
    else {
        o.sim_trusted_keys = keys;
        o.sim_trusted_key_count = 1;
    }
    double seconds = atof(argv[5]), t0 = now_s(), t = t0;
    long n = 0;
    while (t - t0 < seconds) {
        struct veil_claims c;
        veil_status st = veil_evidence_verify(evidence.data, evidence.size, dcap ? VEIL_TEE_SGX : VEIL_TEE_AUTO, &o, &c);
        if (st != VEIL_OK)
            return fprintf(stderr, "bench_verify: %s\n", veil_last_error()), 1;
        n++;
        t = now_s();
    }
    printf("{\"verifications\": %ld, \"seconds\": %.3f, \"per_second\": %.1f}\n", n, t - t0, (double)n / (t - t0));
    veil_buf_cleanup(&evidence);
    veil_buf_cleanup(&key);
    return 0;
}
