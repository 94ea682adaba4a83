/* SPDX-License-Identifier: Apache-2.0 */
/* The shared daemon layer under veil-kbs, veil-runtime and veil-cache: one libmicrohttpd server (http.h), one route
 * matcher (router.h), one log format (log.h), one metrics registry (metrics.h), one table-driven configuration
 * parser with its help text (config.h), one command line (args.h), one lifecycle (lifecycle.h). A daemon's own
 * folder holds only what is particular to it. */
#ifndef VEIL_DAEMON_H
#define VEIL_DAEMON_H

#include "args.h"
#include "config.h"
#include "http.h"
#include "lifecycle.h"
#include "log.h"
#include "metrics.h"
#include "router.h"

#endif
