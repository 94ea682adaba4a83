/* SPDX-License-Identifier: Apache-2.0 */
/* Structured logs and clocks (log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "log.h"

static FILE *log_stream;

void vd_log_to(FILE *stream)
{
    log_stream = stream;
}

int64_t vd_now(void)
{
    return (int64_t)time(NULL);
}

uint64_t vd_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

uint64_t vd_now_ms(void)
{
    return vd_clock_ns() / UINT64_C(1000000);
}

void vd_log_tag(const char *value, char out[VD_TAG_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)value, strlen(value), d);
    for (size_t i = 0; i < (VD_TAG_SIZE - 1) / 2; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[VD_TAG_SIZE - 1] = '\0';
}

static void timestamp(char *out, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

static void write_line(json_t *line)
{
    char *text = json_dumps(line, JSON_COMPACT);
    if (text == NULL)
        return;
    FILE *out = log_stream != NULL ? log_stream : stderr;
    flockfile(out);
    fputs(text, out);
    fputc('\n', out);
    fflush(out);
    funlockfile(out);
    free(text);
}

void vd_log(const char *level, const char *event, const char *fields, ...)
{
    char ts[40];
    timestamp(ts, sizeof ts);
    json_t *line = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", level, "event", event);
    if (line == NULL)
        return;
    if (fields != NULL) {
        va_list ap;
        va_start(ap, fields);
        json_error_t e;
        json_t *extra = json_vpack_ex(&e, 0, fields, ap);
        va_end(ap);
        if (extra != NULL)
            json_object_update(line, extra);
        json_decref(extra);
    }
    write_line(line);
    json_decref(line);
}
