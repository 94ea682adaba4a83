/* SPDX-License-Identifier: Apache-2.0 */
/* Secrets: one wipe, one constant-time compare, and page memory kept out of core dumps (and optionally
 * locked out of swap) for keys and plaintext weights. */
#ifndef VEIL_CORE_SECRET_H
#define VEIL_CORE_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"

void veil_wipe(void *p, size_t size);
/* 0 when equal; runs in time independent of the contents. */
int veil_ct_compare(const void *a, const void *b, size_t size);

/* Page-aligned anonymous memory marked MADV_DONTDUMP; with lock nonzero it is mlock'ed and the call fails
 * (VEIL_ERR_NOMEM) when the lock is refused. */
struct veil_secure_mem {
    uint8_t *data;
    size_t size;      /* usable bytes */
    size_t map_size;  /* mapped bytes */
    int locked;
    struct veil_secure_hole *holes; /* pages given back by veil_secure_discard */
    size_t hole_count, hole_cap;
};

struct veil_secure_hole {
    size_t offset, size; /* whole pages */
};

/* The system's page size (4096 when it cannot be read). */
size_t veil_page_size(void);
VEIL_RESULT veil_secure_alloc(struct veil_secure_mem *m, size_t size, int lock);
/* Gives the whole pages inside [offset, offset + size) back to the system: unlocked, discarded (MADV_DONTNEED) and
 * made inaccessible (PROT_NONE), so that a read of them afterwards faults instead of seeing zeros. The caller has
 * wiped every byte of the range already (pages given back before may lie inside it). Best effort: when the hole
 * cannot be recorded the pages are only discarded. The range must lie within the mapping. */
void veil_secure_give_back(struct veil_secure_mem *m, size_t offset, size_t size);
/* Wipes (all but the discarded pages), unlocks and unmaps. Accepts an empty struct. */
void veil_secure_free(struct veil_secure_mem *m);

/* Makes sure this process never writes a core dump (the CLI and daemons call it at start). */
void veil_disable_core_dumps(void);

#endif
