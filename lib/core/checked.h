/* SPDX-License-Identifier: Apache-2.0 */
/* Overflow-checked arithmetic for sizes derived from untrusted input. */
#ifndef VEIL_CORE_CHECKED_H
#define VEIL_CORE_CHECKED_H

#include <stdint.h>

#include "core/result.h"

static inline VEIL_RESULT veil_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (__builtin_add_overflow(a, b, out))
        VEIL_BAIL(VEIL_ERR_LIMIT, "size overflow");
    return VEIL_RESULT_OK;
}

static inline VEIL_RESULT veil_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (__builtin_mul_overflow(a, b, out))
        VEIL_BAIL(VEIL_ERR_LIMIT, "size overflow");
    return VEIL_RESULT_OK;
}

static inline VEIL_RESULT veil_align64_u64(uint64_t a, uint64_t *out)
{
    VEIL_GUARD(veil_add_u64(a, 63, out));
    *out &= ~UINT64_C(63);
    return VEIL_RESULT_OK;
}

static inline uint64_t veil_ceil_div_u64(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

#endif
