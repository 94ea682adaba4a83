/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "core/result.h"

static _Thread_local char last_error[512];

const char *veil_status_str(veil_status status)
{
    switch (status) {
    case VEIL_OK: return "ok";
    case VEIL_ERR_IO: return "input/output error";
    case VEIL_ERR_FORMAT: return "malformed sealed file";
    case VEIL_ERR_VERSION: return "unsupported format version";
    case VEIL_ERR_TRUNCATED: return "truncated or oversized input";
    case VEIL_ERR_ONNX: return "invalid ONNX model";
    case VEIL_ERR_UNSUPPORTED: return "unsupported feature";
    case VEIL_ERR_LIMIT: return "limit exceeded";
    case VEIL_ERR_EVIDENCE: return "malformed evidence";
    case VEIL_ERR_KEY: return "key unwrap failed";
    case VEIL_ERR_AUTH: return "authentication failed";
    case VEIL_ERR_VERIFY: return "evidence verification failed";
    case VEIL_ERR_POLICY: return "policy refused";
    case VEIL_ERR_EXPIRED: return "expired";
    case VEIL_ERR_ARG: return "invalid argument";
    case VEIL_ERR_NOMEM: return "out of memory";
    case VEIL_ERR_CRYPTO: return "crypto library failure";
    case VEIL_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *veil_last_error(void)
{
    return last_error;
}

void veil_error_clear(void)
{
    last_error[0] = '\0';
}

struct veil_result veil_error_raise(veil_status status, const char *file, int line, const char *fmt, ...)
{
    (void)file;
    (void)line;
    /* Formatted aside first: callers often pass veil_last_error() itself as an argument ("model x: %s"), and
     * vsnprintf into the buffer it reads from is undefined (in practice, a garbled message). */
    char text[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(last_error, text, sizeof last_error);
    return (struct veil_result){status};
}

struct veil_result veil_error_raise_ossl(veil_status status, const char *file, int line, const char *what)
{
    (void)file;
    (void)line;
    unsigned long code = ERR_get_error();
    char reason[256] = "no detail";
    if (code != 0)
        ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    snprintf(last_error, sizeof last_error, "crypto library: %s failed (%s)", what, reason);
    return (struct veil_result){status};
}

void veil_free(void *ptr)
{
    free(ptr);
}
