/* SPDX-License-Identifier: Apache-2.0 */
/* Host names in URLs. */
#ifndef VEIL_CORE_URL_H
#define VEIL_CORE_URL_H

/* 1 when host (as libcurl's URL parser gives it: IPv6 in brackets) is 127.0.0.0/8, [::1] or "localhost": where
 * plain HTTP cannot be read by anyone but this machine. */
int veil_url_host_is_loopback(const char *host);

#endif
