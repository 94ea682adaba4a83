/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/secret.h"

void veil_wipe(void *p, size_t size)
{
    if (p != NULL && size > 0)
        OPENSSL_cleanse(p, size);
}

int veil_ct_compare(const void *a, const void *b, size_t size)
{
    return CRYPTO_memcmp(a, b, size);
}

size_t veil_page_size(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)page : 4096;
}

VEIL_RESULT veil_secure_alloc(struct veil_secure_mem *m, size_t size, int lock)
{
    *m = (struct veil_secure_mem){0};
    size_t p = veil_page_size();
    size_t want = size == 0 ? 1 : size;
    VEIL_ENSURE(want <= SIZE_MAX - p, VEIL_ERR_LIMIT, "allocation too large");
    size_t map_size = (want + p - 1) / p * p;
    void *addr = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    VEIL_ENSURE(addr != MAP_FAILED, VEIL_ERR_NOMEM, "out of memory (%zu bytes)", map_size);
    (void)madvise(addr, map_size, MADV_DONTDUMP);
    /* Large regions (decrypted weights) fault in 2 MiB at a time instead of 4 KiB where THP allows it. */
    if (map_size >= (2u << 20))
        (void)madvise(addr, map_size, MADV_HUGEPAGE);
    if (lock && mlock(addr, map_size) != 0) {
        munmap(addr, map_size);
        VEIL_BAIL(VEIL_ERR_NOMEM, "cannot lock %zu bytes in memory (raise RLIMIT_MEMLOCK)", map_size);
    }
    *m = (struct veil_secure_mem){.data = addr, .size = size, .map_size = map_size, .locked = lock};
    return VEIL_RESULT_OK;
}

static int record_hole(struct veil_secure_mem *m, size_t offset, size_t size)
{
    if (m->hole_count == m->hole_cap) {
        size_t cap = m->hole_cap ? 2 * m->hole_cap : 16;
        struct veil_secure_hole *h = realloc(m->holes, cap * sizeof *h);
        if (h == NULL)
            return 0;
        m->holes = h;
        m->hole_cap = cap;
    }
    m->holes[m->hole_count++] = (struct veil_secure_hole){offset, size};
    return 1;
}

void veil_secure_give_back(struct veil_secure_mem *m, size_t offset, size_t size)
{
    if (m->data == NULL || offset > m->map_size || size > m->map_size - offset)
        return;
    size_t p = veil_page_size();
    size_t first = (offset + p - 1) / p * p, end = (offset + size) / p * p;
    if (first >= end)
        return;
    uint8_t *at = m->data + first;
    if (m->locked)
        (void)munlock(at, end - first);
    (void)madvise(at, end - first, MADV_DONTNEED);
    if (record_hole(m, first, end - first))
        (void)mprotect(at, end - first, PROT_NONE);
}

static int hole_compare(const void *a, const void *b)
{
    const struct veil_secure_hole *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Wipes every usable byte outside the holes (which were wiped before they were given back). */
static void wipe_around_holes(struct veil_secure_mem *m)
{
    qsort(m->holes, m->hole_count, sizeof *m->holes, hole_compare);
    size_t at = 0;
    for (size_t i = 0; i < m->hole_count && at < m->size; i++) {
        size_t start = m->holes[i].offset < m->size ? m->holes[i].offset : m->size;
        if (start > at)
            veil_wipe(m->data + at, start - at);
        if (m->holes[i].offset + m->holes[i].size > at)
            at = m->holes[i].offset + m->holes[i].size;
    }
    if (at < m->size)
        veil_wipe(m->data + at, m->size - at);
}

void veil_secure_free(struct veil_secure_mem *m)
{
    if (m->data == NULL)
        return;
    if (m->hole_count > 0)
        wipe_around_holes(m);
    else
        veil_wipe(m->data, m->size);
    if (m->locked)
        munlock(m->data, m->map_size);
    munmap(m->data, m->map_size);
    free(m->holes);
    *m = (struct veil_secure_mem){0};
}

void veil_disable_core_dumps(void)
{
    struct rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
