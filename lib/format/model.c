/* SPDX-License-Identifier: Apache-2.0 */
/* An opened sealed model: the decrypted region plus the tensor table read from the graph (spec section 9). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "format/format.h"
#include "onnx/onnx.h"

struct veil_model {
    atomic_uint refs;            /* the caller's, plus one per engine using its tensors in place */
    struct veil_sealed_plain plain;
    struct veil_sealed_info info;
    struct veil_onnx_tensor *tensors;
    size_t tensor_count;
};

/* Every extracted initializer of the graph must own exactly its section. */
static VEIL_RESULT bind_tensors(struct veil_model *m)
{
    const struct veil_sealed_header *h = &m->plain.h;
    VEIL_GUARD(veil_onnx_tensor_table(m->plain.region.data, (size_t)h->sections[0].size, &m->tensors,
                                      &m->tensor_count));
    VEIL_ENSURE(m->tensor_count == h->section_count - 1u, VEIL_ERR_FORMAT,
                "the graph has %zu initializers but the file %u tensor sections", m->tensor_count,
                h->section_count - 1u);
    for (size_t i = 0; i < m->tensor_count; i++) {
        const struct veil_section *s = &h->sections[i + 1];
        VEIL_ENSURE(m->tensors[i].size == s->size, VEIL_ERR_FORMAT,
                    "tensor section %zu does not match its initializer's shape", i + 1);
        m->tensors[i].data = m->plain.region.data + s->offset;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT open_impl(const char *path, const uint8_t *key, size_t key_size,
                             const struct veil_open_options *opt, struct veil_model *m)
{
    VEIL_GUARD(veil_sealed_decrypt_file(path, key, key_size, opt, &m->plain));
    veil_sealed_info_from_header(&m->plain.h, &m->info);
    return bind_tensors(m);
}

veil_status veil_model_open(const char *path, const uint8_t *key, size_t key_size,
                            const struct veil_open_options *options, veil_model **out)
{
    veil_error_clear();
    if (out == NULL)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "no output given").status;
    *out = NULL;
    struct veil_model *m = calloc(1, sizeof *m);
    if (m == NULL)
        return veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory").status;
    atomic_init(&m->refs, 1u);
    struct veil_result r = open_impl(path, key, key_size, options, m);
    if (!veil_ok(r)) {
        veil_model_free(m);
        return r.status;
    }
    *out = m;
    return VEIL_OK;
}

veil_model *veil_model_retain(const veil_model *m)
{
    veil_model *w = (veil_model *)(uintptr_t)m; /* the count is the one mutable part of a shared model */
    atomic_fetch_add(&w->refs, 1u);
    return w;
}

int veil_model_exclusive(const veil_model *m)
{
    return atomic_load(&m->refs) == 1u;
}

/* Section s (>= 1) holds no bytes anyone may still read: its tensor was given back, or is empty. */
static int section_gone(const struct veil_model *m, uint32_t s)
{
    const struct veil_onnx_tensor *t = &m->tensors[s - 1];
    return t->size == 0 || t->data == NULL;
}

/* Where the range to give back starts: section s's first byte, or the start of its first page when every other
 * section reaching into that page is gone (padding between sections holds nothing). */
static size_t left_edge(const struct veil_model *m, uint32_t s, size_t page)
{
    const struct veil_section *sec = m->plain.h.sections;
    size_t start = (size_t)sec[s].offset, floor = start / page * page;
    for (uint32_t k = s; k-- > 0;) {
        if (sec[k].offset + sec[k].size <= floor)
            break;
        if (k == 0 || !section_gone(m, k))
            return start; /* the graph, or a tensor still held, shares the page */
    }
    return floor;
}

static size_t right_edge(const struct veil_model *m, uint32_t s, size_t page)
{
    const struct veil_section *sec = m->plain.h.sections;
    size_t end = (size_t)(sec[s].offset + sec[s].size), ceil = (end + page - 1) / page * page;
    for (uint32_t k = s + 1; k < m->plain.h.section_count && sec[k].offset < ceil; k++)
        if (!section_gone(m, k))
            return end;
    return ceil < m->plain.region.map_size ? ceil : m->plain.region.map_size;
}

void veil_model_release_tensor(veil_model *m, size_t index)
{
    struct veil_onnx_tensor *t = &m->tensors[index];
    if (t->data == NULL || t->size == 0)
        return;
    veil_wipe(m->plain.region.data + (t->data - m->plain.region.data), (size_t)t->size);
    t->data = NULL;
    size_t page = veil_page_size();
    uint32_t s = (uint32_t)index + 1u;
    size_t lo = left_edge(m, s, page), hi = right_edge(m, s, page);
    veil_secure_give_back(&m->plain.region, lo, hi - lo);
}

int veil_model_locked(const veil_model *m)
{
    return m->plain.region.locked;
}

void veil_model_free(veil_model *m)
{
    if (m == NULL || atomic_fetch_sub(&m->refs, 1u) != 1u)
        return;
    veil_onnx_tensors_free(m->tensors, m->tensor_count);
    veil_sealed_plain_cleanup(&m->plain);
    free(m);
}

const struct veil_sealed_info *veil_model_info(const veil_model *m)
{
    return &m->info;
}

const uint8_t *veil_model_header_sha256(const veil_model *m)
{
    return m->plain.h.digest;
}

const uint8_t *veil_model_graph(const veil_model *m, size_t *size_out)
{
    *size_out = (size_t)m->plain.h.sections[0].size;
    return m->plain.region.data;
}

size_t veil_model_tensor_count(const veil_model *m)
{
    return m->tensor_count;
}

veil_status veil_model_tensor(const veil_model *m, size_t index, struct veil_tensor_view *out)
{
    veil_error_clear();
    if (m == NULL || out == NULL || index >= m->tensor_count)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "tensor index out of range").status;
    const struct veil_onnx_tensor *t = &m->tensors[index];
    if (t->data == NULL && t->size > 0)
        return veil_error_raise(VEIL_ERR_ARG, __FILE__, __LINE__, "tensor '%s' is gone: an engine consumed this "
                                "model (veil_engine_load_model_releasing)", t->name).status;
    *out = (struct veil_tensor_view){.name = t->name, .dtype = t->dtype, .rank = t->rank, .dims = t->dims,
                                     .data = t->data, .size = (size_t)t->size};
    return VEIL_OK;
}
