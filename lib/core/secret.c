/* SPDX-License-Identifier: Apache-2.0 */
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

VEIL_RESULT veil_secure_alloc(struct veil_secure_mem *m, size_t size, int lock)
{
    *m = (struct veil_secure_mem){0};
    long page = sysconf(_SC_PAGESIZE);
    size_t p = page > 0 ? (size_t)page : 4096;
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

void veil_secure_free(struct veil_secure_mem *m)
{
    if (m->data == NULL)
        return;
    veil_wipe(m->data, m->size);
    if (m->locked)
        munlock(m->data, m->map_size);
    munmap(m->data, m->map_size);
    *m = (struct veil_secure_mem){0};
}

void veil_disable_core_dumps(void)
{
    struct rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
