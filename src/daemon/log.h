/* SPDX-License-Identifier: Apache-2.0 */
/* The daemons' structured log: one JSON object per line on stderr, {"ts","level","event", ...fields}. Never a key,
 * a token, a cookie, a tensor or a request body: log a short hash when correlation is needed (vd_log_tag). Also the
 * daemons' clocks: the one place a daemon reads the time. */
#ifndef VEIL_DAEMON_LOG_H
#define VEIL_DAEMON_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VD_TAG_SIZE 13u /* 12 hex characters of SHA-256 and a NUL */

/* One JSON line; fields is a jansson pack format of an object ("{s:s, s:I}") or NULL. */
void vd_log(const char *level, const char *event, const char *fields, ...);
/* Sends the log elsewhere (NULL: stderr again); fuzz harnesses silence it. */
void vd_log_to(FILE *stream);
/* A short, non-reversible tag of a secret-bearing value (session id, API key) for correlating log lines: the first
 * 12 hex characters of its SHA-256. */
void vd_log_tag(const char *value, char out[VD_TAG_SIZE]);

/* The wall clock, seconds since the epoch. */
int64_t vd_now(void);
/* A monotonic clock, milliseconds and nanoseconds. */
uint64_t vd_now_ms(void);
uint64_t vd_clock_ns(void);

#endif
