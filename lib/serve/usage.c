/* SPDX-License-Identifier: Apache-2.0 */
/* The owner's usage policy: strict parser, API-key admission, budgets and token buckets; see usage.h and
 * docs/spec/usage-policy.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/hex.h"
#include "core/json.h"
#include "core/secret.h"
#include "serve/usage.h"

#define WHAT "usage policy"

/* ---- parsing ---------------------------------------------------------------------------------------------- */

/* A number member in (0, max]; *out untouched when absent. */
static VEIL_RESULT positive_number(const json_t *obj, const char *key, double max, const char *what, double *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_number(v), VEIL_ERR_ARG, "%s: member \"%s\" must be a number", what, key);
    double d = json_number_value(v);
    VEIL_ENSURE(d > 0 && d <= max, VEIL_ERR_ARG, "%s: member \"%s\" must be above 0 and at most %g", what, key, max);
    *out = d;
    return VEIL_RESULT_OK;
}

/* {"rate_per_s": r, "burst": b} members of obj: burst needs a rate and defaults to max(1, rate). */
static VEIL_RESULT parse_bucket(const json_t *obj, const char *what, struct veil_usage_bucket *b)
{
    double rate = 0, burst = 0;
    VEIL_GUARD(positive_number(obj, "rate_per_s", VEIL_USAGE_MAX_RATE, what, &rate));
    VEIL_GUARD(positive_number(obj, "burst", VEIL_USAGE_MAX_BURST, what, &burst));
    VEIL_ENSURE(burst == 0 || rate > 0, VEIL_ERR_ARG, "%s: \"burst\" needs \"rate_per_s\"", what);
    VEIL_ENSURE(burst == 0 || burst >= 1, VEIL_ERR_ARG, "%s: \"burst\" must be at least 1", what);
    *b = (struct veil_usage_bucket){.rate_per_s = rate, .burst = burst > 0 ? burst : fmax(1.0, rate)};
    return VEIL_RESULT_OK;
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '@';
}

int veil_usage_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len > VEIL_USAGE_MAX_NAME_SIZE)
        return 0;
    for (size_t k = 0; k < len; k++)
        if (!name_char(name[k]))
            return 0;
    return 1;
}

static VEIL_RESULT parse_name(const json_t *obj, size_t i, char out[VEIL_USAGE_MAX_NAME_SIZE + 1])
{
    const char *name = NULL;
    VEIL_GUARD(veil_json_string(obj, "name", 1, VEIL_ERR_ARG, WHAT ": a client", &name));
    size_t len = strlen(name);
    VEIL_ENSURE(len >= 1 && len <= VEIL_USAGE_MAX_NAME_SIZE, VEIL_ERR_ARG, WHAT ": the name of client %zu must be "
                "1 to %u characters", i, VEIL_USAGE_MAX_NAME_SIZE);
    for (size_t k = 0; k < len; k++)
        VEIL_ENSURE(name_char(name[k]), VEIL_ERR_ARG, WHAT ": the name of client %zu may hold only A-Z a-z 0-9 . _ "
                    "- @", i);
    memcpy(out, name, len + 1);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_client(const json_t *obj, size_t i, struct veil_usage_client *c)
{
    static const char *const keys[] = {"name", "api_key_sha256", "budget", "rate_per_s", "burst", NULL};
    VEIL_ENSURE(json_is_object(obj), VEIL_ERR_ARG, WHAT ": client %zu must be an object", i);
    VEIL_GUARD(veil_json_only_keys(obj, keys, VEIL_ERR_ARG, WHAT ": a client"));
    VEIL_GUARD(parse_name(obj, i, c->name));
    const char *hash = NULL;
    VEIL_GUARD(veil_json_string(obj, "api_key_sha256", 1, VEIL_ERR_ARG, WHAT ": a client", &hash));
    VEIL_ENSURE(veil_ok(veil_hex_decode(VEIL_HEX_LOWER, hash, strlen(hash), c->key_hash, sizeof c->key_hash,
                                        VEIL_ERR_ARG, "api_key_sha256")),
                VEIL_ERR_ARG, WHAT ": api_key_sha256 of client '%s' must be 64 lower-case hex digits", c->name);
    c->has_budget = json_object_get(obj, "budget") != NULL; /* a budget: upstream + used - reported < budget */
    VEIL_GUARD(veil_json_uint(obj, "budget", 0, VEIL_USAGE_MAX_BUDGET, VEIL_ERR_ARG, WHAT ": a client", &c->budget));
    return parse_bucket(obj, WHAT ": a client", &c->rate);
}

static VEIL_RESULT check_unique(const struct veil_usage_client *clients, size_t i)
{
    for (size_t j = 0; j < i; j++) {
        VEIL_ENSURE(strcmp(clients[i].name, clients[j].name) != 0, VEIL_ERR_ARG, WHAT ": client name '%s' appears "
                    "twice", clients[i].name);
        VEIL_ENSURE(memcmp(clients[i].key_hash, clients[j].key_hash, VEIL_USAGE_KEY_HASH_SIZE) != 0, VEIL_ERR_ARG,
                    WHAT ": clients '%s' and '%s' have the same api_key_sha256", clients[j].name, clients[i].name);
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_clients(const json_t *list, struct veil_usage_policy *p)
{
    if (list == NULL)
        return VEIL_RESULT_OK; /* open */
    VEIL_ENSURE(json_is_array(list), VEIL_ERR_ARG, WHAT ": \"clients\" must be a list");
    size_t n = json_array_size(list);
    VEIL_ENSURE(n > 0, VEIL_ERR_ARG, WHAT ": \"clients\" is empty; leave it out for an open policy");
    VEIL_ENSURE(n <= VEIL_USAGE_MAX_CLIENTS, VEIL_ERR_LIMIT, WHAT ": more than %u clients", VEIL_USAGE_MAX_CLIENTS);
    p->clients = calloc(n, sizeof *p->clients);
    VEIL_ENSURE(p->clients != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        VEIL_GUARD(parse_client(json_array_get(list, i), i, &p->clients[i]));
        VEIL_GUARD(check_unique(p->clients, i));
        p->client_count = i + 1;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_global(const json_t *obj, struct veil_usage_policy *p)
{
    static const char *const keys[] = {"rate_per_s", "burst", NULL};
    if (obj == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(obj), VEIL_ERR_ARG, WHAT ": \"global\" must be an object");
    VEIL_GUARD(veil_json_only_keys(obj, keys, VEIL_ERR_ARG, WHAT ": global"));
    return parse_bucket(obj, WHAT ": global", &p->global);
}

static VEIL_RESULT parse_output(const json_t *obj, struct veil_serve_shaping *s)
{
    static const char *const keys[] = {"classification_only", "max_top_k", "round_decimals", NULL};
    *s = (struct veil_serve_shaping){.round_decimals = -1};
    if (obj == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_object(obj), VEIL_ERR_ARG, WHAT ": \"output\" must be an object");
    VEIL_GUARD(veil_json_only_keys(obj, keys, VEIL_ERR_ARG, WHAT ": output"));
    VEIL_GUARD(veil_json_bool(obj, "classification_only", VEIL_ERR_ARG, WHAT ": output", &s->classification_only));
    uint64_t k = 0, decimals = UINT64_MAX;
    VEIL_GUARD(veil_json_uint(obj, "max_top_k", 0, VEIL_SERVE_MAX_TOP_K, VEIL_ERR_ARG, WHAT ": output", &k));
    VEIL_ENSURE(json_object_get(obj, "max_top_k") == NULL || k >= 1, VEIL_ERR_ARG, WHAT ": output: member "
                "\"max_top_k\" must be from 1 to %u", VEIL_SERVE_MAX_TOP_K);
    VEIL_GUARD(veil_json_uint(obj, "round_decimals", 0, VEIL_SERVE_MAX_ROUND_DECIMALS, VEIL_ERR_ARG, WHAT ": output",
                              &decimals));
    s->max_top_k = (uint32_t)k;
    s->round_decimals = decimals == UINT64_MAX ? -1 : (int)decimals;
    return VEIL_RESULT_OK;
}

/* "precisions": a non-empty list of distinct "fp32" / "bf16" (absent: any). */
static VEIL_RESULT parse_precisions(const json_t *list, uint32_t *out)
{
    *out = 0;
    if (list == NULL)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(json_is_array(list) && json_array_size(list) > 0, VEIL_ERR_ARG, WHAT ": \"precisions\" must be a "
                "non-empty list of \"fp32\" and \"bf16\"");
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *s = json_string_value(json_array_get(list, i));
        uint32_t bit = s == NULL ? 0 : strcmp(s, "fp32") == 0 ? VEIL_USAGE_PRECISION_FP32
                                  : strcmp(s, "bf16") == 0 ? VEIL_USAGE_PRECISION_BF16 : 0;
        VEIL_ENSURE(bit != 0, VEIL_ERR_ARG, WHAT ": \"precisions\" may hold only \"fp32\" and \"bf16\"");
        VEIL_ENSURE(!(*out & bit), VEIL_ERR_ARG, WHAT ": \"precisions\" names \"%s\" twice", s);
        *out |= bit;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_policy(const json_t *root, struct veil_usage_policy *p)
{
    static const char *const keys[] = {"version", "clients", "global", "output", "precisions", NULL};
    VEIL_GUARD(veil_json_only_keys(root, keys, VEIL_ERR_ARG, WHAT));
    uint64_t version = 0;
    VEIL_GUARD(veil_json_uint(root, "version", 1, UINT32_MAX, VEIL_ERR_ARG, WHAT, &version));
    VEIL_ENSURE(version == 1, VEIL_ERR_ARG, WHAT ": version %llu is not supported (1 is)", (unsigned long long)version);
    VEIL_GUARD(parse_clients(json_object_get(root, "clients"), p));
    VEIL_GUARD(parse_global(json_object_get(root, "global"), p));
    VEIL_GUARD(parse_precisions(json_object_get(root, "precisions"), &p->precisions));
    return parse_output(json_object_get(root, "output"), &p->shaping);
}

VEIL_RESULT veil_usage_parse(const char *json, size_t size, struct veil_usage_policy **out)
{
    *out = NULL;
    VEIL_DEFER(veil_json_done) json_t *root = NULL;
    VEIL_GUARD(veil_json_load_object((const uint8_t *)json, size, VEIL_USAGE_MAX_SIZE, VEIL_ERR_ARG, WHAT, &root));
    struct veil_usage_policy *p = calloc(1, sizeof *p);
    VEIL_ENSURE(p != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = parse_policy(root, p);
    if (veil_ok(r) && pthread_mutex_init(&p->lock, NULL) != 0)
        r = veil_error_raise(VEIL_ERR_INTERNAL, __FILE__, __LINE__, WHAT ": mutex");
    if (!veil_ok(r)) {
        free(p->clients);
        free(p);
        return r;
    }
    *out = p;
    return VEIL_RESULT_OK;
}

void veil_usage_free(struct veil_usage_policy *policy)
{
    if (policy == NULL)
        return;
    pthread_mutex_destroy(&policy->lock);
    free(policy->clients);
    free(policy);
}

const struct veil_serve_shaping *veil_usage_shaping(const struct veil_usage_policy *policy)
{
    return &policy->shaping;
}

/* ---- admission -------------------------------------------------------------------------------------------- */

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

static int ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* The token of "Bearer <token>" (RFC 6750 §2.1, scheme case-insensitive), or NULL. */
static const char *bearer_token(const char *header, size_t *len)
{
    static const char scheme[] = "bearer";
    if (header == NULL)
        return NULL;
    while (blank(*header))
        header++;
    for (size_t i = 0; i < sizeof scheme - 1; i++)
        if (ascii_lower(header[i]) != scheme[i]) /* stops at the NUL, which matches no letter */
            return NULL;
    const char *t = header + sizeof scheme - 1;
    if (!blank(*t))
        return NULL;
    while (blank(*t))
        t++;
    size_t n = strlen(t);
    while (n > 0 && blank(t[n - 1]))
        n--;
    *len = n;
    return n > 0 ? t : NULL;
}

/* The client whose hash equals SHA-256(token), comparing with every client in constant time, or NULL. */
static VEIL_RESULT find_client(struct veil_usage_policy *p, const char *token, size_t len,
                               struct veil_usage_client **out)
{
    *out = NULL;
    if (len > VEIL_USAGE_MAX_API_KEY_SIZE)
        return VEIL_RESULT_OK;
    uint8_t hash[VEIL_USAGE_KEY_HASH_SIZE];
    unsigned int hash_size = 0;
    VEIL_GUARD_OSSL(EVP_Digest(token, len, hash, &hash_size, EVP_sha256(), NULL), VEIL_ERR_CRYPTO);
    for (size_t i = 0; i < p->client_count; i++)
        if (veil_ct_compare(hash, p->clients[i].key_hash, sizeof hash) == 0)
            *out = &p->clients[i];
    return VEIL_RESULT_OK;
}

static void refill(struct veil_usage_bucket *b, uint64_t now_ms)
{
    if (!b->started) {
        b->started = 1;
        b->tokens = b->burst;
        b->last_ms = now_ms;
    } else if (now_ms > b->last_ms) {
        b->tokens = fmin(b->burst, b->tokens + (double)(now_ms - b->last_ms) * b->rate_per_s / 1000.0);
        b->last_ms = now_ms;
    }
}

/* 1 when the bucket holds a token at now_ms (refilled, not taken); otherwise 0 and the wait in whole seconds. */
static int bucket_ready(struct veil_usage_bucket *b, uint64_t now_ms, uint32_t *retry_after_s)
{
    if (b->rate_per_s <= 0)
        return 1;
    refill(b, now_ms);
    if (b->tokens >= 1.0)
        return 1;
    double wait = ceil((1.0 - b->tokens) / b->rate_per_s);
    *retry_after_s = wait < 1 ? 1 : wait > UINT32_MAX ? UINT32_MAX : (uint32_t)wait;
    return 0;
}

static void take(struct veil_usage_bucket *b)
{
    if (b->rate_per_s > 0)
        b->tokens -= 1.0;
}

static void refuse(struct veil_usage_decision *d, int status, const char *reason)
{
    d->status = status;
    d->reason = reason;
}

/* Budget, client rate, global rate; counted against all three only when all three admit. Lock held. */
static void judge(struct veil_usage_policy *p, struct veil_usage_client *c, uint64_t now_ms,
                  struct veil_usage_decision *d)
{
    if (c != NULL && c->has_budget && c->upstream + (c->used - c->reported) >= c->budget)
        refuse(d, 429, VEIL_USAGE_BUDGET_EXHAUSTED);
    else if (c != NULL && !bucket_ready(&c->rate, now_ms, &d->retry_after_s))
        refuse(d, 429, VEIL_USAGE_CLIENT_RATE);
    else if (!bucket_ready(&p->global, now_ms, &d->retry_after_s))
        refuse(d, 429, VEIL_USAGE_GLOBAL_RATE);
    if (d->status != 0)
        return;
    if (c != NULL) {
        take(&c->rate);
        c->used++;
    }
    take(&p->global);
}

VEIL_RESULT veil_usage_admit(struct veil_usage_policy *policy, const char *authorization, uint64_t now_ms,
                             struct veil_usage_decision *decision)
{
    memset(decision, 0, sizeof *decision);
    struct veil_usage_client *c = NULL;
    if (policy->client_count > 0) {
        size_t len = 0;
        const char *token = bearer_token(authorization, &len);
        if (token == NULL) {
            refuse(decision, 401, VEIL_USAGE_MISSING_API_KEY);
            return VEIL_RESULT_OK;
        }
        refuse(decision, 401, VEIL_USAGE_UNKNOWN_API_KEY); /* until a key matches, also when hashing fails */
        VEIL_GUARD(find_client(policy, token, len, &c));
        if (c == NULL)
            return VEIL_RESULT_OK;
        memcpy(decision->client, c->name, sizeof decision->client);
        refuse(decision, 0, NULL);
    }
    pthread_mutex_lock(&policy->lock);
    judge(policy, c, now_ms, decision);
    pthread_mutex_unlock(&policy->lock);
    return VEIL_RESULT_OK;
}

/* ---- counts kept upstream ------------------------------------------------------------------------------- */

#define COUNTS "usage counts"

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A new object with obj's members in byte order of their names (obj's members checked already). */
static VEIL_RESULT sorted_copy(const json_t *obj, int drop_zero, json_t **out)
{
    size_t n = json_object_size(obj), i = 0;
    const char **names = calloc(n > 0 ? n : 1, sizeof *names);
    VEIL_ENSURE(names != NULL, VEIL_ERR_NOMEM, "out of memory");
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)(uintptr_t)obj, name, v) {
        names[i++] = name;
    }
    qsort(names, n, sizeof *names, name_cmp);
    json_t *o = json_object();
    struct veil_result r = VEIL_RESULT_OK;
    if (o == NULL)
        r = veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    for (i = 0; i < n && veil_ok(r); i++) {
        json_int_t count = json_integer_value(json_object_get(obj, names[i]));
        if ((count > 0 || !drop_zero) && json_object_set_new(o, names[i], json_integer(count)) != 0)
            r = veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    free(names);
    if (!veil_ok(r)) {
        json_decref(o);
        return r;
    }
    *out = o;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_usage_counts_parse(const char *json, size_t size, int drop_zero, json_t **out)
{
    *out = NULL;
    VEIL_DEFER(veil_json_done) json_t *root = NULL;
    VEIL_GUARD(veil_json_load_object((const uint8_t *)json, size, VEIL_USAGE_COUNTS_MAX_SIZE, VEIL_ERR_FORMAT, COUNTS,
                                     &root));
    VEIL_ENSURE(json_object_size(root) <= VEIL_USAGE_MAX_CLIENTS, VEIL_ERR_LIMIT, COUNTS ": more than %u clients",
                VEIL_USAGE_MAX_CLIENTS);
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        VEIL_ENSURE(veil_usage_name_valid(name), VEIL_ERR_FORMAT, COUNTS ": a client name must be 1 to %u of A-Z a-z "
                    "0-9 . _ - @", VEIL_USAGE_MAX_NAME_SIZE);
        VEIL_ENSURE(json_is_integer(v) && json_integer_value(v) >= 0 &&
                        (uint64_t)json_integer_value(v) <= VEIL_USAGE_MAX_BUDGET,
                    VEIL_ERR_FORMAT, COUNTS ": the count of '%s' must be an integer from 0 to 2^53", name);
    }
    return sorted_copy(root, drop_zero, out);
}

VEIL_RESULT veil_usage_counts_add(json_t *acc, const json_t *delta, int sign)
{
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)(uintptr_t)delta, name, v) {
        json_int_t have = json_integer_value(json_object_get(acc, name)), d = json_integer_value(v);
        json_int_t sum = sign < 0 ? (have > d ? have - d : 0)
                                  : (d > (json_int_t)VEIL_USAGE_MAX_BUDGET - have ? (json_int_t)VEIL_USAGE_MAX_BUDGET
                                                                                 : have + d);
        VEIL_ENSURE(json_object_get(acc, name) != NULL || json_object_size(acc) < VEIL_USAGE_MAX_CLIENTS,
                    VEIL_ERR_LIMIT, COUNTS ": more than %u clients", VEIL_USAGE_MAX_CLIENTS);
        VEIL_ENSURE(json_object_set_new(acc, name, json_integer(sum)) == 0, VEIL_ERR_NOMEM, "out of memory");
    }
    return VEIL_RESULT_OK;
}

void veil_usage_counts_restrict(json_t *counts, const struct veil_usage_policy *policy)
{
    const char *name;
    json_t *v, *tmp;
    json_object_foreach_safe(counts, tmp, name, v) {
        int known = 0;
        for (size_t i = 0; policy != NULL && i < policy->client_count && !known; i++)
            known = strcmp(policy->clients[i].name, name) == 0;
        if (!known)
            json_object_del(counts, name);
    }
}

VEIL_RESULT veil_usage_counts_restrict_text(json_t *counts, const char *policy)
{
    struct veil_usage_policy *p = NULL;
    if (policy != NULL)
        VEIL_GUARD(veil_usage_parse(policy, strlen(policy), &p));
    veil_usage_counts_restrict(counts, p);
    veil_usage_free(p);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT unreported_locked(const struct veil_usage_policy *p, json_t *doc)
{
    for (size_t i = 0; i < p->client_count; i++) {
        const struct veil_usage_client *c = &p->clients[i];
        if (c->used > c->reported)
            VEIL_ENSURE(json_object_set_new(doc, c->name, json_integer((json_int_t)(c->used - c->reported))) == 0,
                        VEIL_ERR_NOMEM, "out of memory");
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_usage_unreported(struct veil_usage_policy *policy, char **json)
{
    *json = NULL;
    VEIL_DEFER(veil_json_done) json_t *doc = json_object();
    VEIL_ENSURE(doc != NULL, VEIL_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&policy->lock);
    struct veil_result r = unreported_locked(policy, doc);
    pthread_mutex_unlock(&policy->lock);
    VEIL_GUARD(r);
    *json = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    VEIL_ENSURE(*json != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

void veil_usage_acknowledge(struct veil_usage_policy *policy, const json_t *report, const json_t *counts)
{
    pthread_mutex_lock(&policy->lock);
    for (size_t i = 0; i < policy->client_count; i++) {
        struct veil_usage_client *c = &policy->clients[i];
        uint64_t sent = report != NULL ? (uint64_t)json_integer_value(json_object_get(report, c->name)) : 0;
        c->reported = sent > c->used - c->reported ? c->used : c->reported + sent;
        c->upstream = (uint64_t)json_integer_value(json_object_get(counts, c->name));
    }
    pthread_mutex_unlock(&policy->lock);
}

/* ---- summary ---------------------------------------------------------------------------------------------- */

VEIL_RESULT veil_usage_summary_json(const struct veil_usage_policy *policy, json_t **out)
{
    VEIL_DEFER(veil_json_done) json_t *s = json_object();
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_GUARD(veil_json_set(s, "access", json_string(policy->client_count > 0 ? "restricted" : "open")));
    VEIL_GUARD(veil_json_set(s, "classification_only", json_boolean(policy->shaping.classification_only)));
    if (policy->shaping.max_top_k > 0)
        VEIL_GUARD(veil_json_set(s, "max_top_k", json_integer(policy->shaping.max_top_k)));
    if (policy->shaping.round_decimals >= 0)
        VEIL_GUARD(veil_json_set(s, "round_decimals", json_integer(policy->shaping.round_decimals)));
    if (policy->precisions != 0)
        VEIL_GUARD(veil_json_set(s, "precisions", json_pack("[s*s*]", (policy->precisions & VEIL_USAGE_PRECISION_FP32)
                                 ? "fp32" : NULL, (policy->precisions & VEIL_USAGE_PRECISION_BF16) ? "bf16" : NULL)));
    *out = s;
    s = NULL;
    return VEIL_RESULT_OK;
}
