/* SPDX-License-Identifier: Apache-2.0 */
/* jansson glue for untrusted JSON; see json.h. */
#include <string.h>

#include "core/json.h"
#include "core/secret.h"

void veil_json_done(json_t **j)
{
    json_decref(*j);
    *j = NULL;
}

VEIL_RESULT veil_json_load_object(const uint8_t *data, size_t size, size_t max_size, veil_status err,
                                  const char *what, json_t **out)
{
    VEIL_ENSURE(data != NULL || size == 0, VEIL_ERR_ARG, "no %s given", what);
    VEIL_ENSURE(size <= max_size, VEIL_ERR_LIMIT, "%s is larger than %zu bytes", what, max_size);
    json_error_t e;
    /* Without JSON_DISABLE_EOF_CHECK jansson refuses trailing bytes; without JSON_ALLOW_NUL, "\u0000". */
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
    VEIL_ENSURE(j != NULL, err, "%s is not valid JSON: %s (line %d)", what, e.text, e.line);
    if (!json_is_object(j)) {
        json_decref(j);
        VEIL_BAIL(err, "%s is not a JSON object", what);
    }
    *out = j;
    return VEIL_RESULT_OK;
}

static int key_in(const char *key, size_t len, const char *const *allowed)
{
    for (const char *const *a = allowed; *a != NULL; a++)
        if (strlen(*a) == len && memcmp(*a, key, len) == 0)
            return 1;
    return 0;
}

VEIL_RESULT veil_json_only_keys(const json_t *obj, const char *const *allowed, veil_status err, const char *what)
{
    json_t *o = (json_t *)(uintptr_t)obj; /* jansson's iterators take a non-const object */
    for (void *it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
        const char *key = json_object_iter_key(it);
        VEIL_ENSURE(key_in(key, json_object_iter_key_len(it), allowed), err, "%s: unknown member \"%.64s\"", what,
                    key);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_json_string(const json_t *obj, const char *key, int required, veil_status err, const char *what,
                             const char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL) {
        VEIL_ENSURE(!required, err, "%s: member \"%s\" is missing", what, key);
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(json_is_string(v), err, "%s: member \"%s\" must be a string", what, key);
    VEIL_ENSURE(strlen(json_string_value(v)) == json_string_length(v), err,
                "%s: member \"%s\" contains a NUL character", what, key);
    *out = json_string_value(v);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_json_uint(const json_t *obj, const char *key, int required, uint64_t max, veil_status err,
                           const char *what, uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        VEIL_ENSURE(!required, err, "%s: member \"%s\" is missing", what, key);
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(json_is_integer(v), err, "%s: member \"%s\" must be an integer", what, key);
    json_int_t n = json_integer_value(v);
    VEIL_ENSURE(n >= 0 && (uint64_t)n <= max, err, "%s: member \"%s\" must be from 0 to %llu", what, key,
                (unsigned long long)max);
    *out = (uint64_t)n;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_json_bool(const json_t *obj, const char *key, veil_status err, const char *what, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_boolean(v), err, "%s: member \"%s\" must be true or false", what, key);
    *out = json_is_true(v);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_json_b64(const json_t *obj, const char *key, enum veil_b64 kind, int required, size_t min_size,
                          size_t max_size, veil_status err, const char *what, struct veil_buf *out, int *present)
{
    const char *s = NULL;
    VEIL_GUARD(veil_json_string(obj, key, required, err, what, &s));
    if (present != NULL)
        *present = s != NULL;
    if (s == NULL)
        return VEIL_RESULT_OK;
    const char *name = kind == VEIL_B64_URL ? "base64url" : "base64";
    /* A fixed-size member of another size is malformed rather than over a limit. */
    veil_status too_large = min_size == max_size ? err : VEIL_ERR_LIMIT;
    size_t len = strlen(s);
    /* Text this long cannot decode to max_size bytes or fewer: refuse it before looking at it. */
    VEIL_ENSURE(len / 4 <= max_size / 3 + 1, too_large, "%s: member \"%s\" is larger than %zu bytes", what, key,
                max_size);
    size_t before = out->size;
    struct veil_result r = veil_b64_decode(kind, s, len, max_size, out);
    VEIL_ENSURE(r.status != VEIL_ERR_LIMIT, too_large, "%s: member \"%s\" is larger than %zu bytes", what, key,
                max_size);
    if (r.status != VEIL_ERR_FORMAT && !veil_ok(r))
        return r; /* out of memory */
    VEIL_ENSURE(veil_ok(r), err, "%s: member \"%s\" is not canonical %s", what, key, name);
    if (out->size - before < min_size) {
        if (out->data != NULL) /* nothing was decoded into an empty buffer */
            veil_wipe(out->data + before, out->size - before); /* out may be a secret buffer */
        out->size = before;
        VEIL_BAIL(err, "%s: member \"%s\" must decode to %s%zu bytes", what, key,
                  min_size == max_size ? "" : "at least ", min_size);
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_json_set(json_t *obj, const char *key, json_t *value)
{
    VEIL_ENSURE(value != NULL && json_object_set_new(obj, key, value) == 0, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}
