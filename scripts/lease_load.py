#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What the lease TTL does to the key broker's load, for N nodes holding M models each (docs/scaling.md).

    scripts/lease_load.py [--table load|pg]   # the tables of docs/scaling.md, in Markdown, as the doc has them
    scripts/lease_load.py --nodes 500 --models 4 --ttl 120 [--exchange-ms 10]   # one fleet

Every node runs one veil-cache, which holds one lease per (model, key version) and renews it with a complete RCAR
exchange (auth, attest with fresh evidence, the key, the usage policy) due TTL/2 after the previous exchange began
(lib/cache/lease.c: renew_ms = fetched_ms + ttl_ms / 2, fetched_ms = the exchange's start, src/cache/broker.c).
A cache renews one lease at a time (its broker_lock), in the order they fall due; runtimes on the node get sub-leases
from the cache over its socket and never reach the broker. So the steady load is

    renewals/s = N * M / (TTL / 2) = 2 * N * M / TTL

and the schedule has no jitter: a lease renews at exactly TTL/2 after its last exchange began, so nodes that
fetched together (a fleet started or restarted at once) renew together, every TTL/2, for as long as they run.

The simulation replays that schedule per node (the preload fetches the M models one after another at start, then
the renewer picks the earliest due lease, one exchange of --exchange-ms at a time) for nodes started spread evenly
over one renewal interval and for nodes started together, and counts exchanges per second over two renewal
intervals after the first TTL: the mean, and the busiest second. A broker that cannot answer in time makes each
lease retry every min(TTL/4, 5 s) instead (src/cache/broker.c, retry_ms): the last column.

The second table is the PostgreSQL audit ceiling (docs/scaling.md, "Where PostgreSQL becomes the limit"): a model,
not a measurement. Standard library only; deterministic (no randomness), so the doc's tables are this output.
"""
from __future__ import annotations

import argparse
import heapq
import sys
from dataclasses import dataclass

# lib/cache/lease.c and src/cache/broker.c
RETRY_MAX_MS = 5000
# The broker's CPU per renewal: `make bench`, line "cache_renewal_cost", broker_cpu_ms_per_renewal_schedstat,
# measured 2026-12-07 on the 2-core development VM (docs/scaling.md quotes the line).
CPU_MS_PER_RENEWAL = 1.565
# One exchange's duration as a cache sees it (auth + attest + key + usage policy); loopback p50 of a bare release is
# 3.6 ms (`make bench`, kbs_release); 10 ms allows for a network and TLS.
EXCHANGE_MS = 10
# Audit records a renewal appends: "release" (the key) and "usage-release" (the usage policy), src/kbs/rcar.c.
AUDIT_RECORDS_PER_RENEWAL = 2

FLEETS = [  # (nodes, models per node, lease TTL s)
    (10, 1, 300), (100, 1, 300), (100, 10, 300), (1000, 1, 300), (1000, 10, 60), (1000, 10, 300),
    (1000, 10, 3600), (10000, 1, 300), (10000, 10, 300), (10000, 10, 3600), (10, 1, 1), (100, 10, 10),
]
PG_LINKS = [  # (round trip broker <-> PostgreSQL ms, WAL flush ms)
    (0.05, 0.1), (0.2, 0.5), (0.5, 1.0), (0.5, 5.0), (2.0, 5.0),
]
PG_BATCHES = (1, 8, 64)


@dataclass(frozen=True)
class Load:
    formula: float       # renewals/s = 2 N M / TTL
    mean: float          # simulated, over the window
    peak_spread: int     # busiest second, nodes started spread over TTL/2
    peak_together: int   # busiest second, nodes started at the same instant
    retry: float         # attempts/s while the broker does not answer


def node_exchanges(models: int, ttl_ms: int, exchange_ms: int, horizon_ms: int) -> list[int]:
    """Start times (ms from the node's start) of every exchange one cache makes before horizon_ms."""
    starts = []
    due: list[tuple[int, int]] = []  # (renew_ms, lease)
    t = 0
    for lease in range(models):  # cc_broker_preload: one fetch after another
        starts.append(t)
        heapq.heappush(due, (t + ttl_ms // 2, lease))
        t += exchange_ms
    while due:
        renew, lease = heapq.heappop(due)
        t = max(t, renew)  # the renewer starts the earliest due lease once the previous exchange is done
        if t >= horizon_ms:
            break
        starts.append(t)
        heapq.heappush(due, (t + ttl_ms // 2, lease))  # renewed: due again TTL/2 after this exchange began
        t += exchange_ms
    return starts


def simulate(nodes: int, models: int, ttl_s: int, exchange_ms: int = EXCHANGE_MS) -> Load:
    ttl_ms = ttl_s * 1000
    window = (ttl_ms, 2 * ttl_ms)  # two renewal intervals, after every lease renewed once
    one = node_exchanges(models, ttl_ms, exchange_ms, window[1])
    seconds = (window[1] - window[0]) // 1000
    spread = [0] * seconds
    together = [0] * seconds
    for t in one:
        if window[0] <= t < window[1]:
            together[(t - window[0]) // 1000] += nodes
    period = ttl_ms // 2
    for i in range(nodes):
        shift = i * period // nodes  # node i starts at i/N of a renewal interval
        for t in one:
            t += shift
            if window[0] <= t < window[1]:
                spread[(t - window[0]) // 1000] += 1
    retry_ms = min(ttl_ms // 4, RETRY_MAX_MS)
    return Load(formula=2 * nodes * models / ttl_s, mean=sum(spread) / seconds, peak_spread=max(spread),
                peak_together=max(together), retry=nodes * models * 1000 / retry_ms)


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"


def load_table(exchange_ms: int = EXCHANGE_MS) -> str:
    head = ["nodes", "models per node", "lease TTL (s)", "renewals/s = 2·N·M/TTL", "simulated mean/s",
            "busiest second, nodes started spread out", "busiest second, nodes started together",
            f"broker CPU (cores, {CPU_MS_PER_RENEWAL} ms per renewal)", "audit records/s",
            "attempts/s while the broker does not answer"]
    rows = []
    for n, m, ttl in FLEETS:
        r = simulate(n, m, ttl, exchange_ms)
        rows.append([f"{n:,}", str(m), f"{ttl:,}", fmt(r.formula), fmt(r.mean), f"{r.peak_spread:,}",
                     f"{r.peak_together:,}", fmt(r.formula * CPU_MS_PER_RENEWAL / 1000),
                     fmt(r.formula * AUDIT_RECORDS_PER_RENEWAL), fmt(r.retry)])
    return markdown(head, rows)


def pg_ceiling(rtt_ms: float, flush_ms: float, batch: int) -> float:
    """Audit records/s the whole cluster can append: every batch holds the one kbs_audit_tail row lock from its
    SELECT ... FOR UPDATE to its COMMIT, i.e. one round trip per INSERT plus the COMMIT's round trip and WAL flush
    (src/kbs/store_pg.c, audit_batch_tx), and batches from all replicas take turns on it."""
    return batch * 1000 / ((batch + 1) * rtt_ms + flush_ms)


def pg_table() -> str:
    head = ["round trip broker↔PostgreSQL (ms)", "WAL flush (ms)"]
    head += [f"renewals/s, {b} record{'s' if b > 1 else ''} per commit" for b in PG_BATCHES]
    head += ["renewals/s, limit as batches grow (one round trip per record)"]
    rows = []
    for rtt, flush in PG_LINKS:
        row = [f"{rtt:g}", f"{flush:g}"]
        row += [fmt(pg_ceiling(rtt, flush, b) / AUDIT_RECORDS_PER_RENEWAL) for b in PG_BATCHES]
        row.append(fmt(1000 / rtt / AUDIT_RECORDS_PER_RENEWAL))
        rows.append(row)
    return markdown(head, rows)


def markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" ---: " for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", choices=("load", "pg"), help="print only this table of docs/scaling.md")
    ap.add_argument("--nodes", type=int, help="one fleet: this many nodes (veil-cache instances)")
    ap.add_argument("--models", type=int, default=1, help="models (leases) each node holds")
    ap.add_argument("--ttl", type=int, default=300, help="the models' lease_ttl_s (policy; 1..86400, default 300)")
    ap.add_argument("--exchange-ms", type=int, default=EXCHANGE_MS, help="one RCAR exchange, as the cache sees it")
    a = ap.parse_args()
    if a.table is not None:
        sys.stdout.write(load_table(a.exchange_ms) if a.table == "load" else pg_table())
        return 0
    if a.nodes is None:
        sys.stdout.write("Broker load from lease renewals:\n\n" + load_table(a.exchange_ms))
        sys.stdout.write("\nPostgreSQL audit ceiling (model):\n\n" + pg_table())
        return 0
    if not (a.nodes > 0 and 0 < a.models <= 256 and 1 <= a.ttl <= 86400 and a.exchange_ms > 0):
        print("lease_load: nodes > 0, 1 <= models <= 256, 1 <= ttl <= 86400, exchange-ms > 0", file=sys.stderr)
        return 2
    r = simulate(a.nodes, a.models, a.ttl, a.exchange_ms)
    print(f"renewals/s {r.formula:.3f} (simulated mean {r.mean:.3f}); busiest second {r.peak_spread} (nodes started "
          f"spread out), {r.peak_together} (started together); broker CPU {r.formula * CPU_MS_PER_RENEWAL / 1000:.3f} "
          f"cores; {r.retry:.1f} attempts/s while the broker does not answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
