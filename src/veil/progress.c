/* SPDX-License-Identifier: Apache-2.0 */
/* A progress bar for long seals and unseals, drawn only when stderr is a terminal. */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

void cli_progress_init(struct cli_progress *p, const char *label)
{
    *p = (struct cli_progress){.label = label, .enabled = isatty(STDERR_FILENO), .last_permille = -1};
}

void cli_progress_cb(void *ctx, uint64_t done, uint64_t total)
{
    struct cli_progress *p = ctx;
    if (!p->enabled || total == 0)
        return;
    int permille = (int)(done * 1000 / total);
    if (permille == p->last_permille)
        return;
    p->last_permille = permille;
    char bar[41];
    int filled = permille * 40 / 1000;
    for (int i = 0; i < 40; i++)
        bar[i] = i < filled ? '=' : ' ';
    bar[40] = '\0';
    fprintf(stderr, "\r%s [%s] %5.1f%%  %.1f/%.1f MB", p->label, bar, permille / 10.0, (double)done / 1e6,
            (double)total / 1e6);
    fflush(stderr);
}

void cli_progress_finish(struct cli_progress *p)
{
    if (p->enabled && p->last_permille >= 0)
        fputc('\n', stderr);
}
