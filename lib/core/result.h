/* SPDX-License-Identifier: Apache-2.0 */
/* The internal result type and the guard macros: the only macros in Veil that change control flow. */
#ifndef VEIL_CORE_RESULT_H
#define VEIL_CORE_RESULT_H

#include "veil/status.h"

/* A one-field struct so that a result cannot be silently dropped or confused with an int (s2n's reason). */
struct veil_result {
    veil_status status;
};
#define VEIL_RESULT __attribute__((warn_unused_result)) struct veil_result
#define VEIL_RESULT_OK ((struct veil_result){VEIL_OK})

/* Records status and a printf-style message for veil_last_error(), with file:line for debug builds. */
struct veil_result veil_error_raise(veil_status status, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, appending the reason at the top of OpenSSL's error queue (and clearing the queue). */
struct veil_result veil_error_raise_ossl(veil_status status, const char *file, int line, const char *what);
/* Forgets the last error of this thread. */
void veil_error_clear(void);

#define VEIL_BAIL(status, ...) return veil_error_raise((status), __FILE__, __LINE__, __VA_ARGS__)

#define VEIL_ENSURE(cond, status, ...)                                                                         \
    do {                                                                                                       \
        if (!(cond))                                                                                           \
            VEIL_BAIL((status), __VA_ARGS__);                                                                  \
    } while (0)

#define VEIL_GUARD(expr)                                                                                       \
    do {                                                                                                       \
        struct veil_result veil_guard_r_ = (expr);                                                             \
        if (veil_guard_r_.status != VEIL_OK)                                                                   \
            return veil_guard_r_;                                                                              \
    } while (0)

/* OpenSSL reports success with 1. */
#define VEIL_GUARD_OSSL(call, status)                                                                          \
    do {                                                                                                       \
        if ((call) != 1)                                                                                       \
            return veil_error_raise_ossl((status), __FILE__, __LINE__, #call);                                 \
    } while (0)

/* Runs fn(&var) when var leaves scope: one cleanup style for library code. */
#define VEIL_DEFER(fn) __attribute__((cleanup(fn)))

static inline int veil_ok(struct veil_result r) { return r.status == VEIL_OK; }

#endif
