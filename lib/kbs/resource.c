/* SPDX-License-Identifier: Apache-2.0 */
/* Model ids and the resource tag of veil/model-key/<tag>. */
#include <string.h>

#include "kbs/kbs.h"

static int id_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == '-';
}

VEIL_RESULT veil_kbs_model_id_check(const char *id, size_t len)
{
    VEIL_ENSURE(id != NULL && len >= 1 && len <= VEIL_KBS_MODEL_ID_MAX && id[0] != '.', VEIL_ERR_ARG,
                "a model id is 1 to %u characters and does not start with '.'", VEIL_KBS_MODEL_ID_MAX);
    for (size_t i = 0; i < len; i++)
        VEIL_ENSURE(id_char(id[i]), VEIL_ERR_ARG, "a model id holds only A-Z a-z 0-9 . _ -");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_version(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    VEIL_ENSURE(n >= 1 && n <= 10 && s[0] != '0', VEIL_ERR_ARG, "a key version is a number from 1 to 4294967295");
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        VEIL_ENSURE(s[i] >= '0' && s[i] <= '9', VEIL_ERR_ARG, "a key version is a decimal number");
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    VEIL_ENSURE(v <= UINT32_MAX, VEIL_ERR_ARG, "a key version is at most 4294967295");
    *out = (uint32_t)v;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_resource_tag_parse(const char *tag, char model_id[VEIL_KBS_MODEL_ID_MAX + 1],
                                        uint32_t *version)
{
    VEIL_ENSURE(tag != NULL, VEIL_ERR_ARG, "no resource tag");
    const char *at = strchr(tag, '@');
    size_t len = at != NULL ? (size_t)(at - tag) : strlen(tag);
    VEIL_GUARD(veil_kbs_model_id_check(tag, len));
    uint32_t v = 0;
    if (at != NULL)
        VEIL_GUARD(parse_version(at + 1, &v));
    memcpy(model_id, tag, len);
    model_id[len] = '\0';
    *version = v;
    return VEIL_RESULT_OK;
}
