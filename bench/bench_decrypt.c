/* SPDX-License-Identifier: Apache-2.0 */
/* Decryption throughput of the sealed format's chunk engine vs single-core memcpy of the same bytes.
 *   bench_decrypt SIZE_MB THREADS REPEATS
 * Prints one JSON line. Both sides work on pre-faulted memory, so the figure is AES-GCM (plus the engine's
 * threading) against memcpy, not page faults. The same run reports which OpenSSL ran. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "core/measure.h"
#include "format/format.h"

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, veil_double_cmp);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return fprintf(stderr, "usage: bench_decrypt SIZE_MB THREADS REPEATS\n"), 2;
    size_t size = (size_t)atol(argv[1]) << 20;
    unsigned threads = (unsigned)atoi(argv[2]);
    int reps = atoi(argv[3]);
    if (reps < 1 || reps > 1000 || size == 0)
        return 2;
    /* One graph section of 4 KiB and tensor sections of 25 MiB, as a model would have. */
    size_t tensor = 25u << 20, count = (size + tensor - 1) / tensor;
    struct veil_section *s = calloc(count + 1, sizeof *s);
    struct veil_sealed_header h = {.chunk_size = VEIL_DEFAULT_CHUNK_SIZE, .section_count = (uint32_t)count + 1,
                                   .sections = s};
    uint64_t next = 0;
    for (size_t i = 0; i <= count; i++) {
        s[i].offset = next;
        s[i].size = i == 0 ? 4096 : (i < count ? tensor : size - tensor * (count - 1));
        next = (s[i].offset + s[i].size + 63) & ~(uint64_t)63;
    }
    if (!veil_ok(veil_sealed_layout(&h)))
        return fprintf(stderr, "%s\n", veil_last_error()), 1;
    uint8_t *region = malloc(h.data_size), *copy = malloc(h.data_size), *tags = malloc(h.tag_count * 16);
    uint8_t key[32] = {7};
    memset(region, 0x5a, h.data_size);
    memset(copy, 0, h.data_size);
    struct veil_crypt_job job = {.h = &h, .data_key = key, .region = region, .tags = tags, .encrypt = 1,
                                 .fd = -1, .threads = threads};
    double dec[1000], cpy[1000];
    for (int r = 0; r < reps; r++) {
        job.encrypt = 1;
        if (!veil_ok(veil_sealed_crypt(&job)))
            return fprintf(stderr, "%s\n", veil_last_error()), 1;
        job.encrypt = 0;
        double t0 = veil_now_s();
        if (!veil_ok(veil_sealed_crypt(&job)))
            return fprintf(stderr, "%s\n", veil_last_error()), 1;
        dec[r] = veil_now_s() - t0;
        t0 = veil_now_s();
        memcpy(copy, region, h.data_size);
        cpy[r] = veil_now_s() - t0;
    }
    double bytes = (double)h.data_size, d = median(dec, reps), c = median(cpy, reps);
    printf("{\"bench\": \"decrypt_throughput\", \"bytes\": %.0f, \"threads\": %u, \"chunk_size\": %u, "
           "\"repeats\": %d, \"veil_gbps\": %.3f, \"memcpy_1core_gbps\": %.3f, \"ratio\": %.3f, \"goal\": 0.75, "
           "\"crypto\": \"%s, EVP aes-256-gcm\"}\n",
           bytes, threads, h.chunk_size, reps, bytes / d / 1e9, bytes / c / 1e9, c / d, OpenSSL_version(OPENSSL_VERSION));
    return 0;
}
