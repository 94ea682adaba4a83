/* SPDX-License-Identifier: Apache-2.0 */
/* Opens a sealed model REPEATS times (veil_model_open: read, unwrap, authenticate, decrypt into the final
 * aligned buffers, bind the tensor table) and prints one JSON line with the median time and the process's
 * peak RSS, next to its RSS before the first open.
 *   bench_open FILE.veil KEYFILE REPEATS [THREADS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/measure.h"
#include "veil/sealed.h"

int main(int argc, char **argv)
{
    if (argc < 4)
        return fprintf(stderr, "usage: bench_open FILE.veil KEYFILE REPEATS [THREADS]\n"), 2;
    uint8_t key[32];
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL || fread(key, 1, 32, f) != 32)
        return fprintf(stderr, "bad key file\n"), 1;
    fclose(f);
    int reps = atoi(argv[3]);
    if (reps < 1 || reps > 1000)
        return 2;
    struct veil_open_options opt = {.threads = argc > 4 ? (unsigned)atoi(argv[4]) : 0};
    long base = veil_peak_rss_kib();
    double t[1000];
    size_t plain = 0;
    for (int r = 0; r < reps; r++) {
        veil_model *m = NULL;
        double t0 = veil_now_s();
        if (veil_model_open(argv[1], key, 32, &opt, &m) != VEIL_OK)
            return fprintf(stderr, "%s\n", veil_last_error()), 1;
        t[r] = veil_now_s() - t0;
        plain = (size_t)veil_model_info(m)->tensor_data_size + (size_t)veil_model_info(m)->graph_size;
        veil_model_free(m);
    }
    qsort(t, (size_t)reps, sizeof *t, veil_double_cmp);
    printf("{\"median_s\": %.6f, \"plaintext_bytes\": %zu, \"peak_rss_kib\": %ld, \"base_rss_kib\": %ld, "
           "\"threads\": %u}\n", t[reps / 2], plain, veil_peak_rss_kib(), base, opt.threads);
    return 0;
}
