/* SPDX-License-Identifier: Apache-2.0 */
/* .npy: magic "\x93NUMPY", major, minor, header length (u16 for 1.x, u32 for 2.x and 3.x), then an ASCII
 * Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (d0, d1, ...), } padded with spaces
 * and a newline, then the raw data. Every byte goes through the bounded cursor. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/checked.h"
#include "core/cursor.h"
#include "core/file.h"
#include "npy.h"

void npy_array_cleanup(struct npy_array *a)
{
    free(a->data);
    *a = (struct npy_array){0};
}

struct npy_header {
    struct veil_cursor c;
    int descr, fortran, shape;
    uint32_t rank;
    int64_t dims[NPY_MAX_RANK];
};

static void skip_space(struct veil_cursor *c)
{
    while (veil_cursor_left(c) > 0 && (c->data[c->off] == ' ' || c->data[c->off] == '\n'))
        c->off++;
}

static int peek(const struct veil_cursor *c)
{
    return veil_cursor_left(c) > 0 ? c->data[c->off] : -1;
}

static VEIL_RESULT expect_char(struct veil_cursor *c, char ch)
{
    skip_space(c);
    VEIL_ENSURE(peek(c) == ch, VEIL_ERR_FORMAT, ".npy header: expected '%c'", ch);
    c->off++;
    return VEIL_RESULT_OK;
}

/* A quoted string without escapes; *s and *n point into the header. */
static VEIL_RESULT read_string(struct veil_cursor *c, const uint8_t **s, size_t *n)
{
    skip_space(c);
    int q = peek(c);
    VEIL_ENSURE(q == '\'' || q == '"', VEIL_ERR_FORMAT, ".npy header: expected a string");
    c->off++;
    *s = c->data + c->off;
    while (veil_cursor_left(c) > 0 && c->data[c->off] != q)
        c->off++;
    VEIL_ENSURE(veil_cursor_left(c) > 0, VEIL_ERR_FORMAT, ".npy header: unterminated string");
    *n = (size_t)(c->data + c->off - *s);
    c->off++;
    return VEIL_RESULT_OK;
}

static int word_is(struct veil_cursor *c, const char *w)
{
    size_t n = strlen(w);
    if (veil_cursor_left(c) < n || memcmp(c->data + c->off, w, n) != 0)
        return 0;
    c->off += n;
    return 1;
}

static VEIL_RESULT read_dim(struct npy_header *h)
{
    uint64_t v = 0;
    int digits = 0;
    skip_space(&h->c);
    while (peek(&h->c) >= '0' && peek(&h->c) <= '9' && digits < 18) {
        v = v * 10 + (uint64_t)(h->c.data[h->c.off++] - '0');
        digits++;
    }
    VEIL_ENSURE(digits > 0 && !(peek(&h->c) >= '0' && peek(&h->c) <= '9'), VEIL_ERR_FORMAT,
                ".npy header: bad dimension");
    VEIL_ENSURE(h->rank < NPY_MAX_RANK, VEIL_ERR_LIMIT, ".npy: more than %u dimensions", NPY_MAX_RANK);
    h->dims[h->rank++] = (int64_t)v;
    skip_space(&h->c);
    if (peek(&h->c) == ',')
        h->c.off++;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT read_shape(struct npy_header *h)
{
    VEIL_GUARD(expect_char(&h->c, '('));
    skip_space(&h->c);
    while (peek(&h->c) != ')') {
        VEIL_ENSURE(peek(&h->c) >= 0, VEIL_ERR_FORMAT, ".npy header: unterminated shape");
        VEIL_GUARD(read_dim(h));
        skip_space(&h->c);
    }
    h->c.off++;
    h->shape++;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT read_entry(struct npy_header *h)
{
    const uint8_t *key = NULL, *s = NULL;
    size_t n = 0, sn = 0;
    VEIL_GUARD(read_string(&h->c, &key, &n));
    VEIL_GUARD(expect_char(&h->c, ':'));
    skip_space(&h->c);
    if (n == 5 && memcmp(key, "descr", 5) == 0) {
        VEIL_GUARD(read_string(&h->c, &s, &sn));
        VEIL_ENSURE(sn == 3 && memcmp(s, "<f4", 3) == 0, VEIL_ERR_UNSUPPORTED, ".npy: data type '%.*s' is not "
                    "supported; use float32 ('<f4')", sn > 16 ? 16 : (int)sn, (const char *)s);
        h->descr++;
    } else if (n == 13 && memcmp(key, "fortran_order", 13) == 0) {
        VEIL_ENSURE(!word_is(&h->c, "True"), VEIL_ERR_UNSUPPORTED, ".npy: Fortran order is not supported");
        VEIL_ENSURE(word_is(&h->c, "False"), VEIL_ERR_FORMAT, ".npy header: bad fortran_order");
        h->fortran++;
    } else if (n == 5 && memcmp(key, "shape", 5) == 0) {
        VEIL_GUARD(read_shape(h));
    } else {
        VEIL_BAIL(VEIL_ERR_FORMAT, ".npy header: unknown key");
    }
    skip_space(&h->c);
    if (peek(&h->c) == ',')
        h->c.off++;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT parse_header(struct npy_header *h)
{
    VEIL_GUARD(expect_char(&h->c, '{'));
    skip_space(&h->c);
    while (peek(&h->c) != '}') {
        VEIL_ENSURE(peek(&h->c) >= 0, VEIL_ERR_FORMAT, ".npy header: unterminated dict");
        VEIL_GUARD(read_entry(h));
        skip_space(&h->c);
    }
    h->c.off++;
    skip_space(&h->c);
    VEIL_ENSURE(veil_cursor_left(&h->c) == 0, VEIL_ERR_FORMAT, ".npy header: trailing bytes");
    VEIL_ENSURE(h->descr == 1 && h->fortran == 1 && h->shape == 1, VEIL_ERR_FORMAT,
                ".npy header: descr, fortran_order and shape must each appear once");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT read_preamble(struct veil_cursor *c, struct veil_cursor *header)
{
    const uint8_t *magic = NULL;
    uint8_t major = 0, minor = 0;
    VEIL_ENSURE(veil_ok(veil_cursor_bytes(c, 6, &magic)) && memcmp(magic, "\x93NUMPY", 6) == 0, VEIL_ERR_FORMAT,
                "not a .npy file");
    VEIL_GUARD(veil_cursor_u8(c, &major));
    VEIL_GUARD(veil_cursor_u8(c, &minor));
    VEIL_ENSURE(major >= 1 && major <= 3, VEIL_ERR_VERSION, ".npy format %u.%u is not supported", major, minor);
    uint32_t len = 0;
    uint16_t len16 = 0;
    if (major == 1) {
        VEIL_GUARD(veil_cursor_u16le(c, &len16));
        len = len16;
    } else {
        VEIL_GUARD(veil_cursor_u32le(c, &len));
    }
    VEIL_ENSURE(len <= NPY_MAX_HEADER_SIZE && len <= veil_cursor_left(c), VEIL_ERR_FORMAT, ".npy: bad header length");
    return veil_cursor_sub(c, len, header);
}

VEIL_RESULT npy_parse(const uint8_t *file, size_t size, struct npy_array *out)
{
    struct veil_cursor c = veil_cursor_make(file, size);
    struct npy_header h = {0};
    VEIL_GUARD(read_preamble(&c, &h.c));
    VEIL_GUARD(parse_header(&h));
    uint64_t count = 1, bytes = 0;
    for (uint32_t i = 0; i < h.rank; i++)
        VEIL_GUARD(veil_mul_u64(count, (uint64_t)h.dims[i], &count));
    VEIL_GUARD(veil_mul_u64(count, 4, &bytes));
    VEIL_ENSURE(bytes == veil_cursor_left(&c), VEIL_ERR_TRUNCATED, ".npy: the shape needs %" PRIu64 " bytes of "
                "data, the file holds %zu", bytes, veil_cursor_left(&c));
    float *data = malloc(bytes ? (size_t)bytes : 1);
    VEIL_ENSURE(data != NULL, VEIL_ERR_NOMEM, "out of memory");
    memcpy(data, c.data + c.off, (size_t)bytes);
    *out = (struct npy_array){.rank = h.rank, .data = data, .count = (size_t)count};
    memcpy(out->dims, h.dims, sizeof h.dims);
    return VEIL_RESULT_OK;
}

VEIL_RESULT npy_read(const char *path, uint64_t max_size, struct npy_array *out)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_file_read_all(path, max_size, &b));
    return npy_parse(b.data, b.size, out);
}

static VEIL_RESULT npy_header_text(uint32_t rank, const int64_t *dims, char *text, size_t size, size_t *len)
{
    int n = snprintf(text, size, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (uint32_t i = 0; i < rank && n > 0 && (size_t)n < size; i++)
        n += snprintf(text + n, size - (size_t)n, "%s%" PRId64 "%s", i ? ", " : "", dims[i], rank == 1 ? "," : "");
    if (n > 0 && (size_t)n < size)
        n += snprintf(text + n, size - (size_t)n, "), }");
    VEIL_ENSURE(n > 0 && (size_t)n + 65 < size, VEIL_ERR_INTERNAL, ".npy header too long");
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    memset(text + n, ' ', pad);
    text[(size_t)n + pad] = '\n';
    *len = (size_t)n + pad + 1;
    return VEIL_RESULT_OK;
}

VEIL_RESULT npy_write(const char *path, const float *data, uint32_t rank, const int64_t *dims)
{
    char text[512];
    size_t len = 0, count = 1;
    VEIL_ENSURE(rank <= NPY_MAX_RANK, VEIL_ERR_ARG, "rank too large");
    VEIL_GUARD(npy_header_text(rank, dims, text, sizeof text, &len));
    for (uint32_t i = 0; i < rank; i++)
        count *= (size_t)dims[i];
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    veil_store_u16le(pre + 8, (uint16_t)len);
    VEIL_DEFER(veil_outfile_cleanup) struct veil_outfile f = {.fd = -1};
    VEIL_GUARD(veil_outfile_open(&f, path, 0644));
    VEIL_GUARD(veil_file_write_all(f.fd, pre, sizeof pre));
    VEIL_GUARD(veil_file_write_all(f.fd, text, len));
    VEIL_GUARD(veil_file_write_all(f.fd, data, count * sizeof *data));
    return veil_outfile_commit(&f);
}
