/* SPDX-License-Identifier: Apache-2.0 */
/* One Prometheus registry per daemon process: every request is counted by route label and status code and timed into
 * a fixed-bucket histogram (a new endpoint gets both by being a row in the route table), plus the counter and gauge
 * families a daemon registers. C11 relaxed atomics: the request path takes no lock; a scrape reads each number once.
 * Label sets are fixed and small: no model ids from requests, no client addresses, no free text. Rendered in the
 * text exposition format 0.0.4. */
#ifndef VEIL_DAEMON_METRICS_H
#define VEIL_DAEMON_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/result.h"
#include "log.h"

#define VD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define VD_METRICS_MAX_ROUTE_LABELS 16u
#define VD_METRICS_MAX_FAMILIES 16u

enum vd_family_type { VD_COUNTER, VD_GAUGE };

/* A counter or gauge family with at most one label; the daemon owns the storage (static). */
struct vd_family {
    const char *name;             /* full metric name, e.g. "veil_kbs_key_releases_total" */
    const char *help;
    enum vd_family_type type;
    const char *label;            /* NULL: a single unlabelled cell */
    const char *const *values;    /* the label's values, one per cell */
    size_t count;                 /* cells (1 when unlabelled) */
    _Atomic int64_t *cells;
};

/* Sets the prefix ("veil_kbs"), the noun of its build_info help ("broker"), the version and the route labels
 * (route_labels[i] names label i of the route table). Call once before serving. */
VEIL_RESULT vd_metrics_init(const char *prefix, const char *noun, const char *version,
                            const char *const *route_labels, size_t label_count);
/* Adds a family to the exposition (rendered in registration order, after the request families). */
VEIL_RESULT vd_metrics_register(struct vd_family *family);
/* Records the time the daemon started serving (<prefix>_start_time_seconds). */
void vd_metrics_started(int64_t now);
/* One answered request: route label, HTTP status (codes outside the fixed set count as "other"), duration. */
void vd_metrics_request(size_t label, unsigned status, uint64_t elapsed_ns);
/* Adds n (may be negative for gauges) to cell i of a family. */
void vd_metrics_add(struct vd_family *family, size_t cell, int64_t n);
/* The exposition text (malloc'd, *size bytes, NUL-terminated). */
VEIL_RESULT vd_metrics_render(char **out, size_t *size);

struct vd_response;
/* GET /metrics: the exposition as a 200 answer. On failure rs is untouched and the daemon answers in its own error
 * shape. */
VEIL_RESULT vd_metrics_respond(struct vd_response *rs);

#endif
