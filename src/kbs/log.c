/* SPDX-License-Identifier: Apache-2.0 */
/* Structured logs: one JSON object per line on stderr. Never a key, a token or a nonce in full. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kbsd.h"

static FILE *log_stream;

void kbs_log_to(FILE *stream)
{
    log_stream = stream;
}

int64_t kbs_now(void)
{
    return (int64_t)time(NULL);
}

uint64_t kbs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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

void kbs_log(const char *level, const char *event, const char *fields, ...)
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
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
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
