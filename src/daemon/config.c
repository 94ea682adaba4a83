/* SPDX-License-Identifier: Apache-2.0 */
/* The table-driven configuration parser (config.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/file.h"

#define VD_CONFIG_NAME_MAX 64u   /* longer names are never suggested */
#define VD_SUGGEST_MAX 3u        /* edits between a misspelt setting and the one suggested */
#define VD_CONFIG_ERROR_MAX 480u /* a setting's error, quoted after "line N: " */

static char **str_field(void *cfg, const struct vd_setting *s)
{
    return (char **)(void *)((char *)cfg + s->offset);
}

static uint64_t *u64_field(void *cfg, const struct vd_setting *s)
{
    return (uint64_t *)(void *)((char *)cfg + s->offset);
}

static const struct vd_setting *find(const struct vd_config_table *t, const char *name)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->settings[i].name, name) == 0)
            return &t->settings[i];
    return NULL;
}

/* Edit distance between a and b (insertions, deletions, substitutions, swaps of neighbours), on three rolling rows;
 * names longer than VD_CONFIG_NAME_MAX count as far from everything. */
static size_t distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > VD_CONFIG_NAME_MAX || m > VD_CONFIG_NAME_MAX)
        return SIZE_MAX;
    size_t rows[3][VD_CONFIG_NAME_MAX + 1];
    for (size_t j = 0; j <= m; j++)
        rows[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t *cur = rows[i % 3], *up = rows[(i - 1) % 3], *up2 = rows[(i + 1) % 3];
        cur[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t best = up[j - 1] + (a[i - 1] != b[j - 1]);
            if (up[j] + 1 < best)
                best = up[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && up2[j - 2] + 1 < best)
                best = up2[j - 2] + 1;
            cur[j] = best;
        }
    }
    return rows[n % 3][m];
}

/* The setting closest to a misspelt name: at most a third of its length in edits, between 1 and VD_SUGGEST_MAX.
 * NULL when none is that close. */
static const char *closest(const struct vd_config_table *t, const char *name)
{
    size_t limit = strlen(name) / 3;
    limit = limit < 1 ? 1 : limit > VD_SUGGEST_MAX ? VD_SUGGEST_MAX : limit;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; i < t->count; i++) {
        size_t d = distance(name, t->settings[i].name);
        if (d < best_d) {
            best_d = d;
            best = t->settings[i].name;
        }
    }
    return best;
}

static VEIL_RESULT parse_u64(const struct vd_setting *s, const char *v, uint64_t *out)
{
    errno = 0;
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    VEIL_ENSURE(v[0] >= '0' && v[0] <= '9' && errno == 0 && *end == '\0' && n >= s->min && n <= s->max,
                VEIL_ERR_ARG, "setting %s must be a whole number from %llu to %llu, not '%.64s'", s->name,
                (unsigned long long)s->min, (unsigned long long)s->max, v);
    *out = n;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT replace(void *cfg, const struct vd_setting *s, const char *value)
{
    char *copy = strdup(value);
    VEIL_ENSURE(copy != NULL, VEIL_ERR_NOMEM, "out of memory");
    free(*str_field(cfg, s));
    *str_field(cfg, s) = copy;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT append(void *cfg, const struct vd_setting *s, const char *value)
{
    char **f = str_field(cfg, s);
    size_t n = strlen(*f) + strlen(value) + 2;
    char *joined = malloc(n);
    VEIL_ENSURE(joined != NULL, VEIL_ERR_NOMEM, "out of memory");
    snprintf(joined, n, "%s%s%s", *f, (*f)[0] != '\0' ? "," : "", value);
    free(*f);
    *f = joined;
    return VEIL_RESULT_OK;
}

/* A value from the file or --set: numbers parsed, strings replaced, lists appended to. */
static VEIL_RESULT apply(void *cfg, const struct vd_setting *s, const char *value)
{
    if (s->type == VD_SET_U64)
        return parse_u64(s, value, u64_field(cfg, s));
    if (s->type == VD_SET_LIST)
        return append(cfg, s, value);
    return replace(cfg, s, value);
}

VEIL_RESULT vd_config_defaults(const struct vd_config_table *t, void *cfg, int dev)
{
    VEIL_ENSURE(t->count <= VD_CONFIG_MAX_SETTINGS, VEIL_ERR_INTERNAL, "too many settings");
    for (size_t i = 0; i < t->count; i++) {
        const struct vd_setting *s = &t->settings[i];
        const char *def = dev && s->dev_def != NULL ? s->dev_def : s->def;
        if (s->type == VD_SET_U64)
            VEIL_GUARD(parse_u64(s, def, u64_field(cfg, s)));
        else
            VEIL_GUARD(replace(cfg, s, def));
    }
    return VEIL_RESULT_OK;
}

void vd_config_cleanup(const struct vd_config_table *t, void *cfg)
{
    for (size_t i = 0; i < t->count; i++) {
        if (t->settings[i].type != VD_SET_U64) {
            free(*str_field(cfg, &t->settings[i]));
            *str_field(cfg, &t->settings[i]) = NULL;
        }
    }
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* "key = value" with the key looked up in the table. */
static VEIL_RESULT assign(const struct vd_config_table *t, void *cfg, char *line, const struct vd_setting **which)
{
    char *eq = strchr(line, '=');
    VEIL_ENSURE(eq != NULL, VEIL_ERR_ARG, "expected 'key = value'");
    *eq = '\0';
    char *key = trim(line), *value = trim(eq + 1);
    const struct vd_setting *s = find(t, key);
    const char *guess = s == NULL ? closest(t, key) : NULL;
    if (guess != NULL)
        VEIL_BAIL(VEIL_ERR_ARG, "unknown setting '%.64s' (did you mean %s?)", key, guess);
    VEIL_ENSURE(s != NULL, VEIL_ERR_ARG, "unknown setting '%.64s' (see %s --help for the settings)", key, t->daemon);
    *which = s;
    return apply(cfg, s, value);
}

VEIL_RESULT vd_config_set(const struct vd_config_table *t, void *cfg, const char *assignment)
{
    char line[VD_CONFIG_LINE_MAX];
    VEIL_ENSURE(strlen(assignment) < sizeof line, VEIL_ERR_LIMIT, "setting is too long");
    strcpy(line, assignment);
    const struct vd_setting *s = NULL;
    return assign(t, cfg, line, &s);
}

static VEIL_RESULT load_line(const struct vd_config_table *t, void *cfg, const char *path, char *line, size_t lineno,
                             int *seen)
{
    char *text = trim(line);
    if (text[0] == '\0' || text[0] == '#')
        return VEIL_RESULT_OK;
    const struct vd_setting *s = NULL;
    struct veil_result r = assign(t, cfg, text, &s);
    if (!veil_ok(r)) {
        char detail[VD_CONFIG_ERROR_MAX]; /* copied first: the message buffer is the one VEIL_BAIL writes */
        snprintf(detail, sizeof detail, "%s", veil_last_error());
        VEIL_BAIL(r.status, "%.200s line %zu: %s", path, lineno, detail);
    }
    size_t idx = (size_t)(s - t->settings);
    VEIL_ENSURE(!seen[idx] || s->type == VD_SET_LIST, VEIL_ERR_ARG, "%.200s line %zu: setting %s is given twice",
                path, lineno, s->name);
    seen[idx] = 1;
    return VEIL_RESULT_OK;
}

VEIL_RESULT vd_config_load_file(const struct vd_config_table *t, void *cfg, const char *path)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_file_read_all(path, VD_CONFIG_FILE_MAX_SIZE, &b));
    VEIL_GUARD(veil_buf_append_u8(&b, 0));
    VEIL_ENSURE(strlen((char *)b.data) == b.size - 1, VEIL_ERR_ARG, "config %s holds a NUL byte", path);
    int seen[VD_CONFIG_MAX_SETTINGS] = {0};
    size_t lineno = 0;
    for (char *line = (char *)b.data, *next = NULL; line != NULL; line = next) { /* blank lines counted too */
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        lineno++;
        VEIL_ENSURE(strlen(line) < VD_CONFIG_LINE_MAX, VEIL_ERR_LIMIT, "%.200s line %zu is too long", path, lineno);
        VEIL_GUARD(load_line(t, cfg, path, line, lineno, seen));
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT vd_config_append(const struct vd_config_table *t, void *cfg, const char *key, const char *value)
{
    const struct vd_setting *s = find(t, key);
    VEIL_ENSURE(s != NULL && s->type != VD_SET_U64, VEIL_ERR_INTERNAL, "no list setting %s", key);
    return append(cfg, s, value);
}

void vd_config_print_help(const struct vd_config_table *t, FILE *out)
{
    for (size_t i = 0; i < t->count; i++) {
        const struct vd_setting *s = &t->settings[i];
        fprintf(out, "  %-22s %s\n", s->name, s->doc);
        char dev[96] = "";
        if (s->dev_def != NULL)
            snprintf(dev, sizeof dev, " (--dev: %s)", s->dev_def);
        if (s->type == VD_SET_U64)
            fprintf(out, "  %-22s default %s%s, %llu..%llu\n", "", s->def, dev, (unsigned long long)s->min,
                    (unsigned long long)s->max);
        else if (s->def[0] != '\0' || s->dev_def != NULL)
            fprintf(out, "  %-22s default %s%s\n", "", s->def, dev);
        if (s->type == VD_SET_LIST)
            fprintf(out, "  %-22s (repeatable)\n", "");
    }
}
