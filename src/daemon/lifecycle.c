/* SPDX-License-Identifier: Apache-2.0 */
/* Signals and the draining stop (lifecycle.h). */
#include <pthread.h>
#include <time.h>

#include "lifecycle.h"
#include "log.h"

void vd_signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int vd_signals_wait(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0)
        ;
    return sig;
}

size_t vd_http_drain(struct vd_http *h, unsigned timeout_ms)
{
    if (h == NULL)
        return 0;
    vd_http_quiesce(h);
    uint64_t deadline = vd_now_ms() + timeout_ms;
    size_t left = vd_http_in_flight(h);
    while (left > 0 && vd_now_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        left = vd_http_in_flight(h);
    }
    vd_http_stop(h);
    return left;
}
