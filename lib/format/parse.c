/* SPDX-License-Identifier: Apache-2.0 */
/* Reading and checking the public part of a sealed file: preamble, header, key wrap, padding
 * (docs/spec/sealed-format.md, sections 3 to 6 and 8). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/checked.h"
#include "core/cursor.h"
#include "core/file.h"
#include "core/limits.h"
#include "format/format.h"

void veil_sealed_header_cleanup(struct veil_sealed_header *h)
{
    free(h->sections);
    h->sections = NULL;
    veil_wipe(&h->wrap, sizeof h->wrap);
}

static int model_id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

VEIL_RESULT veil_sealed_check_model_id(const char *id, size_t size)
{
    VEIL_ENSURE(size >= 1 && size <= VEIL_MODEL_ID_MAX, VEIL_ERR_ARG, "model id must be 1 to %u bytes",
                VEIL_MODEL_ID_MAX);
    VEIL_ENSURE(id[0] != '.' && id[0] != '-', VEIL_ERR_ARG, "model id must not start with '.' or '-'");
    for (size_t i = 0; i < size; i++)
        VEIL_ENSURE(model_id_char_ok(id[i]), VEIL_ERR_ARG, "model id may only hold [A-Za-z0-9._-]");
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_sealed_layout(struct veil_sealed_header *h)
{
    uint64_t next = 0, tags = 0;
    int public_graph = (h->required_flags & VEIL_SEALED_FLAG_GRAPH_PUBLIC) != 0;
    for (uint32_t i = 0; i < h->section_count; i++) {
        struct veil_section *s = &h->sections[i];
        VEIL_ENSURE(s->offset == next, VEIL_ERR_FORMAT, "section table: section %u is not where the layout puts it", i);
        VEIL_ENSURE(s->size <= VEIL_SEALED_MAX_SECTION_SIZE, VEIL_ERR_LIMIT, "section table: section %u too large", i);
        VEIL_ENSURE(i != 0 || s->size > 0, VEIL_ERR_FORMAT, "section table: the graph section is empty");
        s->chunk_count = (i == 0 && public_graph) ? 0 : veil_ceil_div_u64(s->size, h->chunk_size);
        s->first_tag = tags;
        VEIL_GUARD(veil_add_u64(tags, s->chunk_count, &tags));
        VEIL_GUARD(veil_add_u64(s->offset, s->size, &h->data_size));
        VEIL_GUARD(veil_align64_u64(h->data_size, &next));
    }
    VEIL_ENSURE(h->data_size <= VEIL_SEALED_MAX_DATA_SIZE, VEIL_ERR_LIMIT, "data region too large");
    h->tag_count = tags;
    uint64_t end = 0;
    VEIL_GUARD(veil_add_u64(h->data_offset, h->data_size, &end));
    VEIL_GUARD(veil_add_u64(end, tags * VEIL_GCM_TAG_SIZE, &h->file_size));
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_sealed_encode_header(const struct veil_sealed_header *h, struct veil_buf *out)
{
    size_t id_size = strlen(h->model_id);
    VEIL_GUARD(veil_buf_append(out, VEIL_SEALED_MAGIC, VEIL_SEALED_MAGIC_SIZE));
    VEIL_GUARD(veil_buf_append_u16le(out, VEIL_SEALED_MAJOR));
    VEIL_GUARD(veil_buf_append_u16le(out, VEIL_SEALED_MINOR));
    VEIL_GUARD(veil_buf_append_u32le(out, h->header_size));
    VEIL_GUARD(veil_buf_append_u32le(out, h->required_flags));
    VEIL_GUARD(veil_buf_append_u32le(out, h->optional_flags));
    VEIL_GUARD(veil_buf_append_u64le(out, h->model_version));
    VEIL_GUARD(veil_buf_append_u32le(out, h->chunk_size));
    VEIL_GUARD(veil_buf_append(out, h->file_id, sizeof h->file_id));
    VEIL_GUARD(veil_buf_append(out, h->graph_digest, sizeof h->graph_digest));
    VEIL_GUARD(veil_buf_append_u8(out, (uint8_t)id_size));
    VEIL_GUARD(veil_buf_append(out, h->model_id, id_size));
    VEIL_GUARD(veil_buf_append_u32le(out, h->section_count));
    for (uint32_t i = 0; i < h->section_count; i++) {
        VEIL_GUARD(veil_buf_append_u64le(out, h->sections[i].offset));
        VEIL_GUARD(veil_buf_append_u64le(out, h->sections[i].size));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_preamble(struct veil_cursor *c, struct veil_sealed_header *h)
{
    const uint8_t *magic = NULL;
    VEIL_GUARD(veil_cursor_bytes(c, VEIL_SEALED_MAGIC_SIZE, &magic));
    VEIL_ENSURE(memcmp(magic, VEIL_SEALED_MAGIC, VEIL_SEALED_MAGIC_SIZE) == 0, VEIL_ERR_FORMAT,
                "not a sealed Veil model (bad magic)");
    VEIL_GUARD(veil_cursor_u16le(c, &h->major));
    VEIL_GUARD(veil_cursor_u16le(c, &h->minor));
    VEIL_ENSURE(h->major == VEIL_SEALED_MAJOR, VEIL_ERR_VERSION, "sealed format version %u is not supported",
                h->major);
    VEIL_GUARD(veil_cursor_u32le(c, &h->header_size));
    VEIL_ENSURE(h->header_size >= VEIL_SEALED_MIN_HEADER_SIZE && h->header_size <= VEIL_SEALED_MAX_HEADER_SIZE,
                VEIL_ERR_LIMIT, "header size %u out of bounds", h->header_size);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_fixed_fields(struct veil_cursor *c, struct veil_sealed_header *h)
{
    VEIL_GUARD(veil_cursor_u32le(c, &h->required_flags));
    VEIL_ENSURE((h->required_flags & ~VEIL_SEALED_KNOWN_REQUIRED_FLAGS) == 0, VEIL_ERR_VERSION,
                "unknown required flags 0x%08x", h->required_flags);
    VEIL_GUARD(veil_cursor_u32le(c, &h->optional_flags));
    VEIL_GUARD(veil_cursor_u64le(c, &h->model_version));
    VEIL_GUARD(veil_cursor_u32le(c, &h->chunk_size));
    uint32_t cs = h->chunk_size;
    VEIL_ENSURE(cs >= VEIL_SEALED_MIN_CHUNK_SIZE && cs <= VEIL_SEALED_MAX_CHUNK_SIZE && (cs & (cs - 1)) == 0,
                VEIL_ERR_FORMAT, "header: invalid chunk size %u", cs);
    VEIL_GUARD(veil_cursor_copy(c, h->file_id, sizeof h->file_id));
    VEIL_GUARD(veil_cursor_copy(c, h->graph_digest, sizeof h->graph_digest));
    if ((h->required_flags & VEIL_SEALED_FLAG_GRAPH_PUBLIC) == 0) {
        static const uint8_t zero[VEIL_SHA256_SIZE];
        VEIL_ENSURE(memcmp(h->graph_digest, zero, sizeof zero) == 0, VEIL_ERR_FORMAT,
                    "header: graph digest set on an encrypted graph");
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_model_id(struct veil_cursor *c, struct veil_sealed_header *h)
{
    uint8_t size = 0;
    const uint8_t *id = NULL;
    VEIL_GUARD(veil_cursor_u8(c, &size));
    VEIL_GUARD(veil_cursor_bytes(c, size, &id));
    struct veil_result r = veil_sealed_check_model_id((const char *)id, size);
    VEIL_ENSURE(veil_ok(r), VEIL_ERR_FORMAT, "header: invalid model id");
    memcpy(h->model_id, id, size);
    h->model_id[size] = '\0';
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_sections(struct veil_cursor *c, struct veil_sealed_header *h)
{
    VEIL_GUARD(veil_cursor_u32le(c, &h->section_count));
    VEIL_ENSURE(h->section_count >= 1 && h->section_count <= VEIL_SEALED_MAX_SECTIONS, VEIL_ERR_LIMIT,
                "header: section count %u out of bounds", h->section_count);
    VEIL_ENSURE(veil_cursor_left(c) / 16 >= h->section_count, VEIL_ERR_TRUNCATED, "header: section table ends early");
    h->sections = calloc(h->section_count, sizeof *h->sections);
    VEIL_ENSURE(h->sections != NULL, VEIL_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < h->section_count; i++) {
        VEIL_GUARD(veil_cursor_u64le(c, &h->sections[i].offset));
        VEIL_GUARD(veil_cursor_u64le(c, &h->sections[i].size));
    }
    return veil_cursor_expect_end(c);
}

static VEIL_RESULT parse_wrap(struct veil_cursor *c, struct veil_key_wrap *w)
{
    VEIL_GUARD(veil_cursor_u32le(c, &w->key_version));
    VEIL_ENSURE(w->key_version >= 1, VEIL_ERR_FORMAT, "key wrap: key version 0");
    VEIL_GUARD(veil_cursor_copy(c, w->nonce, sizeof w->nonce));
    VEIL_GUARD(veil_cursor_copy(c, w->wrapped_key, sizeof w->wrapped_key));
    VEIL_GUARD(veil_cursor_copy(c, w->tag, sizeof w->tag));
    return veil_cursor_expect_end(c);
}

static VEIL_RESULT check_zero(const uint8_t *p, size_t n, const char *where)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    VEIL_ENSURE(acc == 0, VEIL_ERR_FORMAT, "nonzero padding %s", where);
    return VEIL_RESULT_OK;
}

/* The gaps between sections are at most 63 bytes each. */
static VEIL_RESULT check_section_padding(int fd, const struct veil_sealed_header *h)
{
    for (uint32_t i = 1; i < h->section_count; i++) {
        uint64_t end = h->sections[i - 1].offset + h->sections[i - 1].size;
        size_t gap = (size_t)(h->sections[i].offset - end);
        if (gap == 0)
            continue;
        uint8_t pad[64];
        VEIL_GUARD(veil_file_pread(fd, pad, gap, h->data_offset + end));
        VEIL_GUARD(check_zero(pad, gap, "between sections"));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_header_bytes(const uint8_t *bytes, struct veil_sealed_header *h)
{
    struct veil_cursor c = veil_cursor_make(bytes + VEIL_SEALED_PREAMBLE_SIZE, h->header_size);
    VEIL_GUARD(parse_fixed_fields(&c, h));
    VEIL_GUARD(parse_model_id(&c, h));
    VEIL_GUARD(parse_sections(&c, h));
    VEIL_GUARD(veil_sha256(bytes, VEIL_SEALED_PREAMBLE_SIZE + (size_t)h->header_size, h->digest));
    struct veil_cursor w = veil_cursor_make(bytes + VEIL_SEALED_PREAMBLE_SIZE + h->header_size,
                                            VEIL_SEALED_WRAP_SIZE);
    VEIL_GUARD(parse_wrap(&w, &h->wrap));
    size_t end = VEIL_SEALED_PREAMBLE_SIZE + (size_t)h->header_size + VEIL_SEALED_WRAP_SIZE;
    return check_zero(bytes + end, (size_t)h->data_offset - end, "before the data region");
}

VEIL_RESULT veil_sealed_read_header(int fd, struct veil_sealed_header *h)
{
    *h = (struct veil_sealed_header){0};
    struct stat st;
    VEIL_ENSURE(fstat(fd, &st) == 0, VEIL_ERR_IO, "cannot stat the sealed file: %s", strerror(errno));
    uint64_t actual = (uint64_t)st.st_size;
    uint8_t pre[VEIL_SEALED_PREAMBLE_SIZE];
    VEIL_ENSURE(actual >= sizeof pre, VEIL_ERR_TRUNCATED, "truncated sealed file (no preamble)");
    VEIL_GUARD(veil_file_pread(fd, pre, sizeof pre, 0));
    struct veil_cursor c = veil_cursor_make(pre, sizeof pre);
    VEIL_GUARD(parse_preamble(&c, h));
    VEIL_GUARD(veil_align64_u64(VEIL_SEALED_PREAMBLE_SIZE + (uint64_t)h->header_size + VEIL_SEALED_WRAP_SIZE,
                                &h->data_offset));
    VEIL_ENSURE(actual >= h->data_offset, VEIL_ERR_TRUNCATED, "truncated sealed file (header)");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf bytes = {0};
    VEIL_GUARD(veil_buf_reserve(&bytes, (size_t)h->data_offset));
    VEIL_GUARD(veil_file_pread(fd, bytes.data, (size_t)h->data_offset, 0));
    VEIL_GUARD(parse_header_bytes(bytes.data, h));
    VEIL_GUARD(veil_sealed_layout(h));
    VEIL_ENSURE(actual >= h->file_size, VEIL_ERR_TRUNCATED, "truncated sealed file");
    VEIL_ENSURE(actual == h->file_size, VEIL_ERR_TRUNCATED, "sealed file has trailing bytes");
    return check_section_padding(fd, h);
}

void veil_sealed_chunk_nonce(uint32_t section, uint64_t chunk, uint8_t nonce[VEIL_GCM_NONCE_SIZE])
{
    veil_store_u32le(nonce, section);
    veil_store_u64le(nonce + 4, chunk);
}

void veil_sealed_chunk_aad(const uint8_t digest[VEIL_SHA256_SIZE], uint32_t section, uint64_t chunk, int last,
                           uint8_t aad[VEIL_SEALED_AAD_SIZE])
{
    memcpy(aad, digest, VEIL_SHA256_SIZE);
    veil_store_u32le(aad + 32, section);
    veil_store_u64le(aad + 36, chunk);
    aad[44] = last ? 1 : 0;
}

void veil_sealed_info_from_header(const struct veil_sealed_header *h, struct veil_sealed_info *info)
{
    *info = (struct veil_sealed_info){0};
    memcpy(info->model_id, h->model_id, sizeof info->model_id);
    info->format_major = h->major;
    info->format_minor = h->minor;
    info->key_version = h->wrap.key_version;
    info->model_version = h->model_version;
    info->chunk_size = h->chunk_size;
    info->public_graph = (h->required_flags & VEIL_SEALED_FLAG_GRAPH_PUBLIC) != 0;
    memcpy(info->file_id, h->file_id, sizeof info->file_id);
    info->graph_size = h->sections[0].size;
    info->tensor_count = h->section_count - 1u;
    for (uint32_t i = 1; i < h->section_count; i++)
        info->tensor_data_size += h->sections[i].size;
    info->file_size = h->file_size;
}
