/* SPDX-License-Identifier: Apache-2.0 */
/* The TEE table (attest/tee_table.h) and what reads it by type or name. */
#include <stdio.h>
#include <string.h>

#include "attest/attest_internal.h"
#include "attest/tee_table.h"

#define VEIL_TEE_ROW_ADDRESS(desc) &desc,
static const struct veil_tee_desc *const table[] = {VEIL_TEE_TABLE(VEIL_TEE_ROW_ADDRESS)};

size_t veil_tee_count(void)
{
    return sizeof table / sizeof table[0];
}

const struct veil_tee_desc *veil_tee_at(size_t index)
{
    return index < veil_tee_count() ? table[index] : NULL;
}

const struct veil_tee_desc *veil_tee_find(veil_tee type)
{
    for (size_t i = 0; i < veil_tee_count(); i++)
        if (table[i]->type == type)
            return table[i];
    return NULL;
}

const struct veil_tee_desc *veil_tee_find_name(const char *name)
{
    for (size_t i = 0; i < veil_tee_count(); i++)
        if (strcmp(name, table[i]->name) == 0)
            return table[i];
    return NULL;
}

void veil_tee_join(char *out, size_t size, const char *(*pick)(const struct veil_tee_desc *), const char *last_sep)
{
    size_t n = 0, total = 0;
    for (size_t i = 0; i < veil_tee_count(); i++)
        total += pick(table[i]) != NULL;
    out[0] = '\0';
    for (size_t i = 0, k = 0; i < veil_tee_count(); i++) {
        const char *s = pick(table[i]);
        if (s == NULL)
            continue;
        const char *sep = k == 0 ? "" : k + 1 == total ? last_sep : ", ";
        int w = snprintf(out + n, size - n, "%s%s", sep, s);
        if (w < 0 || (size_t)w >= size - n)
            return; /* truncated */
        n += (size_t)w;
        k++;
    }
}

const char *veil_tee_name(veil_tee tee)
{
    if (tee == VEIL_TEE_AUTO)
        return "auto";
    const struct veil_tee_desc *d = veil_tee_find(tee);
    return d != NULL ? d->name : "unknown";
}

static const char *any_name(const struct veil_tee_desc *tee)
{
    return tee->name;
}

veil_status veil_tee_from_name(const char *name, veil_tee *out)
{
    veil_error_clear();
    if (name == NULL || out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no TEE name given").status;
    const struct veil_tee_desc *d = veil_tee_find_name(name);
    if (d != NULL || strcmp(name, "auto") == 0) {
        *out = d != NULL ? d->type : VEIL_TEE_AUTO;
        return VEIL_OK;
    }
    char names[128];
    veil_tee_join(names, sizeof names, any_name, " or ");
    return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "unknown TEE \"%.32s\" (expected auto, %s)", name,
                            names)
        .status;
}
