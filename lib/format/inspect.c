/* SPDX-License-Identifier: Apache-2.0 */
/* The public header of a sealed file, without a key. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/file.h"
#include "format/format.h"

static VEIL_RESULT inspect_impl(const char *path, struct veil_sealed_info *out)
{
    VEIL_ENSURE(path != NULL && out != NULL, VEIL_ERR_ARG, "no path or output given");
    VEIL_DEFER(veil_fd_close) int fd = open(path, O_RDONLY | O_CLOEXEC);
    VEIL_ENSURE(fd >= 0, VEIL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    VEIL_DEFER(veil_sealed_header_cleanup) struct veil_sealed_header h = {0};
    VEIL_GUARD(veil_sealed_read_header(fd, &h));
    veil_sealed_info_from_header(&h, out);
    return VEIL_RESULT_OK;
}

veil_status veil_inspect_file(const char *path, struct veil_sealed_info *out)
{
    veil_error_clear();
    return inspect_impl(path, out).status;
}

static void json_done(json_t **j)
{
    json_decref(*j);
}

static json_t *info_json(const struct veil_sealed_info *i)
{
    char file_id[33], format[16];
    for (size_t k = 0; k < sizeof i->file_id; k++)
        snprintf(file_id + 2 * k, 3, "%02x", i->file_id[k]);
    snprintf(format, sizeof format, "%u.%u", i->format_major, i->format_minor);
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:s, s:I, s:I, s:I, s:I}", "model_id", i->model_id,
                     "format", format, "model_version", (json_int_t)i->model_version, "key_version",
                     (json_int_t)i->key_version, "chunk_size", (json_int_t)i->chunk_size, "graph_encrypted",
                     !i->public_graph, "file_id", file_id, "graph_size", (json_int_t)i->graph_size,
                     "tensor_count", (json_int_t)i->tensor_count, "tensor_data_size",
                     (json_int_t)i->tensor_data_size, "file_size", (json_int_t)i->file_size);
}

veil_status veil_inspect_json(const char *path, char **json_out)
{
    veil_error_clear();
    if (json_out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    *json_out = NULL;
    struct veil_sealed_info info;
    struct veil_result r = inspect_impl(path, &info);
    if (!veil_ok(r))
        return r.status;
    VEIL_DEFER(json_done) json_t *j = info_json(&info);
    char *s = j != NULL ? json_dumps(j, JSON_SORT_KEYS) : NULL;
    if (s == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    *json_out = s;
    return VEIL_OK;
}

const char *veil_version(void)
{
    return VEIL_VERSION_STRING;
}

size_t veil_key_size(void)
{
    return VEIL_KEY_SIZE;
}

size_t veil_model_id_max(void)
{
    return VEIL_MODEL_ID_MAX;
}

size_t veil_default_chunk_size(void)
{
    return VEIL_DEFAULT_CHUNK_SIZE;
}
