/* SPDX-License-Identifier: Apache-2.0 */
/* AES-256-GCM over every chunk of a sealed file, on several threads (spec section 7). Workers take chunks from
 * one atomic counter; each chunk is read (when decrypting from a file) straight into its final place in the
 * region and processed in place, so the plaintext is written exactly once. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/limits.h"
#include "format/format.h"

struct crypt_run {
    const struct veil_crypt_job *job;
    uint64_t total_chunks;
    uint64_t total_bytes;
    atomic_uint_fast64_t next;
    atomic_uint_fast64_t done;
    atomic_int failed;
    pthread_mutex_t lock;
    veil_status status;
    uint32_t failed_section;
    char message[256];
};

unsigned veil_threads_default(unsigned requested)
{
    if (requested == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        requested = n > 0 ? (unsigned)n : 1u;
    }
    return requested > VEIL_MAX_THREADS ? VEIL_MAX_THREADS : requested;
}

/* The section holding global chunk k: the last encrypted section whose first_tag <= k. */
static uint32_t section_of_chunk(const struct veil_sealed_header *h, uint64_t k)
{
    uint32_t lo = 0, hi = h->section_count - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (h->sections[mid].first_tag <= k)
            lo = mid;
        else
            hi = mid - 1;
    }
    while (h->sections[lo].chunk_count == 0 || k >= h->sections[lo].first_tag + h->sections[lo].chunk_count)
        lo++; /* skips empty sections sharing the same first_tag */
    return lo;
}

static VEIL_RESULT process_chunk(struct crypt_run *run, struct veil_gcm *g, uint64_t k, size_t *len_out)
{
    const struct veil_crypt_job *job = run->job;
    const struct veil_sealed_header *h = job->h;
    uint32_t s = section_of_chunk(h, k);
    const struct veil_section *sec = &h->sections[s];
    uint64_t c = k - sec->first_tag;
    uint64_t start = c * h->chunk_size;
    size_t len = (size_t)(sec->size - start < h->chunk_size ? sec->size - start : h->chunk_size);
    uint8_t *p = job->region + sec->offset + start;
    uint8_t nonce[VEIL_GCM_NONCE_SIZE], aad[VEIL_SEALED_AAD_SIZE];
    veil_sealed_chunk_nonce(s, c, nonce);
    veil_sealed_chunk_aad(h->digest, s, c, c + 1 == sec->chunk_count, aad);
    uint8_t *tag = job->tags + k * VEIL_GCM_TAG_SIZE;
    *len_out = len;
    if (job->encrypt)
        return veil_gcm_seal(g, nonce, aad, sizeof aad, p, p, len, tag);
    if (job->fd >= 0)
        VEIL_GUARD(veil_file_pread(job->fd, p, len, h->data_offset + sec->offset + start));
    struct veil_result r = veil_gcm_open(g, nonce, aad, sizeof aad, p, p, len, tag);
    if (r.status == VEIL_ERR_AUTH)
        run->failed_section = s;
    return r;
}

static void record_failure(struct crypt_run *run, struct veil_result r)
{
    pthread_mutex_lock(&run->lock);
    if (run->status == VEIL_OK) {
        run->status = r.status;
        snprintf(run->message, sizeof run->message, "%s", veil_last_error());
    }
    pthread_mutex_unlock(&run->lock);
    atomic_store(&run->failed, 1);
}

static void run_chunks(struct crypt_run *run, int report)
{
    struct veil_gcm g = {0};
    struct veil_result r = veil_gcm_init(&g, run->job->data_key, run->job->encrypt);
    while (veil_ok(r) && !atomic_load(&run->failed)) {
        uint64_t k = atomic_fetch_add(&run->next, 1);
        if (k >= run->total_chunks)
            break;
        size_t len = 0;
        r = process_chunk(run, &g, k, &len);
        uint64_t done = atomic_fetch_add(&run->done, len) + len;
        if (report && run->job->progress != NULL)
            run->job->progress(run->job->progress_ctx, done, run->total_bytes);
    }
    if (!veil_ok(r))
        record_failure(run, r);
    veil_gcm_cleanup(&g);
}

static void *worker(void *arg)
{
    run_chunks(arg, 0);
    return NULL;
}

static uint64_t encrypted_bytes(const struct veil_sealed_header *h)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < h->section_count; i++)
        n += h->sections[i].chunk_count > 0 ? h->sections[i].size : 0;
    return n;
}

static VEIL_RESULT run_result(const struct crypt_run *run)
{
    if (run->status == VEIL_OK)
        return VEIL_RESULT_OK;
    if (run->status == VEIL_ERR_AUTH)
        VEIL_BAIL(VEIL_ERR_AUTH, "%s authentication failed: the sealed file was modified, truncated, reordered "
                  "or spliced", run->failed_section == 0 ? "graph" : "tensor data");
    VEIL_BAIL(run->status, "%s", run->message);
}

VEIL_RESULT veil_sealed_crypt(const struct veil_crypt_job *job)
{
    struct crypt_run run = {.job = job, .total_chunks = job->h->tag_count,
                            .total_bytes = encrypted_bytes(job->h), .status = VEIL_OK};
    pthread_mutex_init(&run.lock, NULL);
    unsigned threads = veil_threads_default(job->threads);
    if (threads > run.total_chunks)
        threads = run.total_chunks > 0 ? (unsigned)run.total_chunks : 1u;
    pthread_t tid[VEIL_MAX_THREADS];
    unsigned started = 0;
    while (started + 1 < threads && pthread_create(&tid[started], NULL, worker, &run) == 0)
        started++;
    run_chunks(&run, 1);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&run.lock);
    /* The workers may finish the last chunks after this thread's last report: completion is reported once more, so
     * that the last call says done == total (what the progress callbacks of the API promise). */
    if (run.status == VEIL_OK && job->progress != NULL && started > 0)
        job->progress(job->progress_ctx, run.total_bytes, run.total_bytes);
    return run_result(&run);
}
