/* SPDX-License-Identifier: Apache-2.0 */
/* Daemon lifecycle: the stop signals, and a draining stop of the HTTP server. */
#ifndef VEIL_DAEMON_LIFECYCLE_H
#define VEIL_DAEMON_LIFECYCLE_H

#include <signal.h>

#include "http.h"

/* Blocks SIGTERM and SIGINT in every thread (libmicrohttpd's threads inherit the mask) and ignores SIGPIPE; call
 * before starting any thread. */
void vd_signals_block(sigset_t *set);
/* Waits for one of the blocked stop signals and returns it. */
int vd_signals_wait(const sigset_t *set);
/* Stops accepting connections, waits up to timeout_ms for the requests under way to be answered, then stops the
 * server. Returns the number of requests still unanswered when it gave up (0: a clean drain). */
size_t vd_http_drain(struct vd_http *h, unsigned timeout_ms);

#endif
