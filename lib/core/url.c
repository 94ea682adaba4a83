/* SPDX-License-Identifier: Apache-2.0 */
/* Host names in URLs (url.h). */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "core/url.h"

int veil_url_host_is_loopback(const char *host)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return strcmp(host, "[::1]") == 0 || strcasecmp(host, "localhost") == 0;
}
