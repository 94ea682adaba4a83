/* SPDX-License-Identifier: Apache-2.0 */
/* Measurement helpers for the CLI's --stats and the benchmarks (header-only: libveil itself never reads the
 * clock; verifiers take `now` from their caller). */
#ifndef VEIL_CORE_MEASURE_H
#define VEIL_CORE_MEASURE_H

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double veil_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One "Field: N kB" line of /proc/self/status, in KiB; -1 when unknown. */
static inline long veil_proc_status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256], name[32];
    long kib = -1, v = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "%31[^:]: %ld kB", name, &v) == 2 && strcmp(name, field) == 0) {
            kib = v;
            break;
        }
    if (f != NULL)
        fclose(f);
    return kib;
}

/* VmHWM, the peak resident set of this process image in KiB (getrusage's ru_maxrss would include the peak of the
 * process that exec'ed it); -1 when unknown. */
static inline long veil_peak_rss_kib(void)
{
    return veil_proc_status_kib("VmHWM");
}

/* VmRSS, the resident set of this process now, in KiB; -1 when unknown. */
static inline long veil_rss_kib(void)
{
    return veil_proc_status_kib("VmRSS");
}

/* qsort comparator for doubles, ascending. */
static inline int veil_double_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

#endif
