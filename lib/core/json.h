/* SPDX-License-Identifier: Apache-2.0 */
/* jansson glue for untrusted JSON, shared by lib/attest (evidence, collateral, policies) and lib/protocol (RCAR,
 * JOSE): one object per document, no duplicate keys, bounded sizes, strict members, one-line errors.
 *
 * Every reader takes the status to raise for malformed input (err: VEIL_ERR_EVIDENCE for evidence,
 * VEIL_ERR_FORMAT for protocol messages, VEIL_ERR_ARG for policies ...) and a name for the messages (what).
 * Size limits always raise VEIL_ERR_LIMIT. */
#ifndef VEIL_CORE_JSON_H
#define VEIL_CORE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/result.h"

/* For VEIL_DEFER: json_decref(*j) and *j = NULL. */
void veil_json_done(json_t **j);
/* Parses data[0..size) (at most max_size bytes) as exactly one JSON value, which must be an object: no trailing
 * bytes, no duplicate keys (JSON_REJECT_DUPLICATES), no NUL in strings. Caller owns *out (json_decref). */
VEIL_RESULT veil_json_load_object(const uint8_t *data, size_t size, size_t max_size, veil_status err,
                                  const char *what, json_t **out);
/* Fails with err naming the first member of obj that is not in allowed (a NULL-terminated list). */
VEIL_RESULT veil_json_only_keys(const json_t *obj, const char *const *allowed, veil_status err, const char *what);
/* A string member without NUL characters, borrowed from obj; *out is NULL when absent and !required. */
VEIL_RESULT veil_json_string(const json_t *obj, const char *key, int required, veil_status err, const char *what,
                             const char **out);
/* A non-negative integer member no larger than max; *out untouched when absent and !required. */
VEIL_RESULT veil_json_uint(const json_t *obj, const char *key, int required, uint64_t max, veil_status err,
                           const char *what, uint64_t *out);
/* A boolean member; *out untouched when absent. */
VEIL_RESULT veil_json_bool(const json_t *obj, const char *key, veil_status err, const char *what, int *out);
/* A string member holding strict base64 of the given kind (core/base64.h), decoded and appended to out.
 * The decoded size must lie in min_size..max_size. Malformed text, or a fixed-size member (min_size == max_size)
 * of another size, fails with err; a variable-size member over max_size with VEIL_ERR_LIMIT. *present (when
 * not NULL) says whether the member was there. out is unchanged on failure. */
VEIL_RESULT veil_json_b64(const json_t *obj, const char *key, enum veil_b64 kind, int required, size_t min_size,
                          size_t max_size, veil_status err, const char *what, struct veil_buf *out, int *present);
/* json_object_set_new that fails with VEIL_ERR_NOMEM when value is NULL (value is always consumed). */
VEIL_RESULT veil_json_set(json_t *obj, const char *key, json_t *value);

#endif
