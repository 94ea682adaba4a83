#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What the lease TTL does to the key broker's load, for N nodes holding M models each (docs/scaling.md).

    scripts/lease_load.py [--table load|burst|pg]   # the tables of docs/scaling.md, in Markdown, as the doc has them
    scripts/lease_load.py --nodes 500 --models 4 --ttl 120 [--exchange-ms 10]   # one fleet

Every node runs one veil-cache, which holds one lease per (model, key version) and renews it with a complete RCAR
exchange (auth, attest with fresh evidence, the key, the usage policy) due TTL/2 after the previous exchange began,
less a jitter drawn at random at every fetch and renewal: uniform in [0, TTL/10), capped at TTL/4
(lib/cache/lease.c: renew_ms = fetched_ms + ttl_ms / 2 - early, early = min(renew_early_ms, ttl_ms / 4),
fetched_ms = the exchange's start; src/cache/broker.c, jitter_ms: renew_early_ms = r % (ttl_ms / 10), 0 below
10 ms). So a renewal comes 0.4 to 0.5 TTL after the previous exchange began, 0.45 TTL on average.
A cache renews one lease at a time (its broker_lock), in the order they fall due; runtimes on the node get sub-leases
from the cache over its socket and never reach the broker. So the steady load is

    renewals/s = N * M / (0.45 * TTL)

The first fetch (the preload at start) is not jittered: nodes started together send their first exchanges together.
Each renewal after it draws its own jitter, so the k-th renewals of such a fleet spread over k tenths of a TTL (a
sum of k independent draws): the burst flattens as the fleet runs, renewal after renewal.

The simulation replays that schedule per node and per lease (the preload fetches the M models one after another at
start, then the renewer picks the earliest due lease, one exchange of --exchange-ms at a time), with the jitter
drawn from random.Random seeded with SEED and the fleet's parameters, for nodes started spread evenly over one mean
renewal interval (0.45 TTL) and for nodes started together. It counts exchanges per second over two renewal
intervals after the first TTL (TTL to 2 TTL): the mean, and the busiest second. The burst table follows a fleet
started together wave by wave (its preload, then every lease's 1st, 2nd, ... renewal), and gives its busiest second
in the 10th TTL after the start. A broker that cannot answer in time makes each lease retry every min(TTL/4, 5 s)
instead (src/cache/broker.c, retry_ms): the load table's last column.

The last table is the PostgreSQL audit ceiling (docs/scaling.md, "Where PostgreSQL becomes the limit"): a model,
not a measurement. Standard library only; the jitter comes from a seeded PRNG, so the output is deterministic and
the doc's tables are this output.
"""
from __future__ import annotations

import argparse
import heapq
import random
import sys
from dataclasses import dataclass
from typing import Protocol

# lib/cache/lease.c and src/cache/broker.c
RETRY_MAX_MS = 5000
JITTER_DIVISOR = 10      # src/cache/broker.c, jitter_ms: renew_early_ms uniform in [0, ttl_ms / 10)
EARLY_CAP_DIVISOR = 4    # lib/cache/lease.c: early = min(renew_early_ms, ttl_ms / 4)
MEAN_RENEWAL_TTL = 0.45  # TTL/2 less a mean jitter of TTL/20
SEED = 20261207          # the PRNG's seed (any fixed value: the tables are this seed's output)
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
BURST_FLEETS = [(1000, 10, 60), (1000, 10, 300), (10000, 1, 300), (10000, 10, 300), (10000, 10, 3600)]
BURST_WAVES = 4  # renewals followed after the preload; from the 5th on, successive waves overlap in time
LATE_TTL = 10    # and the busiest second in the 10th TTL after the start, all waves together
PG_LINKS = [  # (round trip broker <-> PostgreSQL ms, WAL flush ms)
    (0.05, 0.1), (0.2, 0.5), (0.5, 1.0), (0.5, 5.0), (2.0, 5.0),
]
PG_BATCHES = (1, 8, 64)


class Draws(Protocol):
    def randrange(self, stop: int, /) -> int: ...


@dataclass(frozen=True)
class Load:
    formula: float       # renewals/s = N M / (0.45 TTL)
    mean: float          # simulated, over the window
    peak_spread: int     # busiest second, nodes started spread over 0.45 TTL
    peak_together: int   # busiest second, nodes started at the same instant
    retry: float         # attempts/s while the broker does not answer


def jitter_ms(rng: Draws | None, ttl_ms: int) -> int:
    """src/cache/broker.c, jitter_ms: uniform in [0, ttl_ms / 10), none below 10 ms (or without a PRNG)."""
    if rng is None or ttl_ms < JITTER_DIVISOR:
        return 0
    return rng.randrange(ttl_ms // JITTER_DIVISOR)


def renew_at(fetched_ms: int, ttl_ms: int, early_ms: int) -> int:
    """lib/cache/lease.c, lease_fill."""
    return fetched_ms + ttl_ms // 2 - min(early_ms, ttl_ms // EARLY_CAP_DIVISOR)


def node_schedule(models: int, ttl_ms: int, exchange_ms: int, horizon_ms: int,
                  rng: Draws | None = None) -> list[tuple[int, int]]:
    """(start in ms from the node's start, wave) of every exchange one cache makes before horizon_ms; wave 0 is the
    preload, wave k a lease's k-th renewal. Without rng, no jitter (renewal at exactly TTL/2)."""
    out: list[tuple[int, int]] = []
    due: list[tuple[int, int, int]] = []  # (renew_ms, lease, wave of the next exchange)
    t = 0
    for lease in range(models):  # cc_broker_preload: one fetch after another
        if t >= horizon_ms:
            return out
        out.append((t, 0))
        heapq.heappush(due, (renew_at(t, ttl_ms, jitter_ms(rng, ttl_ms)), lease, 1))
        t += exchange_ms
    while due:
        renew, lease, wave = heapq.heappop(due)
        t = max(t, renew)  # the renewer starts the earliest due lease once the previous exchange is done
        if t >= horizon_ms:
            break
        out.append((t, wave))
        # renewed: due again TTL/2 after this exchange began, less a fresh jitter (src/cache/broker.c, store)
        heapq.heappush(due, (renew_at(t, ttl_ms, jitter_ms(rng, ttl_ms)), lease, wave + 1))
        t += exchange_ms
    return out


def node_exchanges(models: int, ttl_ms: int, exchange_ms: int, horizon_ms: int,
                   rng: Draws | None = None) -> list[int]:
    """Start times (ms from the node's start) of every exchange one cache makes before horizon_ms."""
    return [t for t, _ in node_schedule(models, ttl_ms, exchange_ms, horizon_ms, rng)]


def fleet_rng(kind: str, nodes: int, models: int, ttl_s: int, exchange_ms: int) -> random.Random:
    return random.Random(f"{SEED}:{kind}:{nodes}:{models}:{ttl_s}:{exchange_ms}")


def simulate(nodes: int, models: int, ttl_s: int, exchange_ms: int = EXCHANGE_MS) -> Load:
    ttl_ms = ttl_s * 1000
    window = (ttl_ms, 2 * ttl_ms)  # two renewal intervals, after every lease renewed at least once
    seconds = (window[1] - window[0]) // 1000
    spread = [0] * seconds
    together = [0] * seconds
    period = int(ttl_ms * MEAN_RENEWAL_TTL)
    for counts, kind in ((spread, "spread"), (together, "together")):
        rng = fleet_rng(kind, nodes, models, ttl_s, exchange_ms)
        for i in range(nodes):
            shift = i * period // nodes if kind == "spread" else 0  # node i starts at i/N of a renewal interval
            for t in node_exchanges(models, ttl_ms, exchange_ms, window[1] - shift, rng):
                t += shift
                if t >= window[0]:
                    counts[(t - window[0]) // 1000] += 1
    retry_ms = min(ttl_ms // 4, RETRY_MAX_MS)
    return Load(formula=nodes * models / (MEAN_RENEWAL_TTL * ttl_s), mean=sum(spread) / seconds,
                peak_spread=max(spread), peak_together=max(together), retry=nodes * models * 1000 / retry_ms)


@dataclass(frozen=True)
class Wave:
    first_s: float   # first exchange of the wave, s after the fleet's start
    last_s: float    # last one
    peak: int        # busiest second (exchanges of this wave only)


def burst(nodes: int, models: int, ttl_s: int, waves: int = BURST_WAVES,
          exchange_ms: int = EXCHANGE_MS) -> tuple[list[Wave], int]:
    """A fleet started together, wave by wave: the preload (wave 0), then every lease's 1st ... waves-th renewal; and
    the busiest second, all exchanges counted, in the LATE_TTL-th TTL after the start (from (LATE_TTL - 1)·TTL)."""
    ttl_ms = ttl_s * 1000
    rng = fleet_rng("burst", nodes, models, ttl_s, exchange_ms)
    per_wave: list[dict[int, int]] = [{} for _ in range(waves + 1)]
    first: list[int | None] = [None] * (waves + 1)
    last = [0] * (waves + 1)
    late = [0] * ttl_s
    late_from = (LATE_TTL - 1) * ttl_ms
    for _ in range(nodes):
        for t, k in node_schedule(models, ttl_ms, exchange_ms, LATE_TTL * ttl_ms, rng):
            if t >= late_from:
                late[(t - late_from) // 1000] += 1
            if k > waves:
                continue
            per_wave[k][t // 1000] = per_wave[k].get(t // 1000, 0) + 1
            f = first[k]
            first[k] = t if f is None else min(f, t)
            last[k] = max(last[k], t)
    return [Wave(first_s=(f or 0) / 1000, last_s=l / 1000, peak=max(c.values()))
            for f, l, c in zip(first, last, per_wave)], max(late)


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"


def load_table(exchange_ms: int = EXCHANGE_MS) -> str:
    head = ["nodes", "models per node", "lease TTL (s)", "renewals/s = N·M/(0.45·TTL)", "simulated mean/s",
            "busiest second, nodes started spread out",
            "busiest second, nodes started together (from TTL to 2·TTL after their start)",
            f"broker CPU (cores, {CPU_MS_PER_RENEWAL} ms per renewal)", "audit records/s",
            "attempts/s while the broker does not answer"]
    rows = []
    for n, m, ttl in FLEETS:
        r = simulate(n, m, ttl, exchange_ms)
        rows.append([f"{n:,}", str(m), f"{ttl:,}", fmt(r.formula), fmt(r.mean), f"{r.peak_spread:,}",
                     f"{r.peak_together:,}", fmt(r.formula * CPU_MS_PER_RENEWAL / 1000),
                     fmt(r.formula * AUDIT_RECORDS_PER_RENEWAL), fmt(r.retry)])
    return markdown(head, rows)


def burst_table(exchange_ms: int = EXCHANGE_MS) -> str:
    head = ["nodes", "models per node", "lease TTL (s)", "steady renewals/s", "busiest second at start (preload)"]
    head += [f"{k}{'st' if k == 1 else 'nd' if k == 2 else 'rd' if k == 3 else 'th'} renewals: busiest second "
             "(first–last, s after start)" for k in range(1, BURST_WAVES + 1)]
    head += [f"busiest second, from {LATE_TTL - 1}·TTL to {LATE_TTL}·TTL after start",
             "busiest second, nodes started spread out (load table)"]
    rows = []
    for n, m, ttl in BURST_FLEETS:
        waves, late = burst(n, m, ttl, BURST_WAVES, exchange_ms)
        row = [f"{n:,}", str(m), f"{ttl:,}", fmt(n * m / (MEAN_RENEWAL_TTL * ttl)), f"{waves[0].peak:,}"]
        row += [f"{w.peak:,} ({w.first_s:,.0f}–{w.last_s:,.0f})" for w in waves[1:]]
        row += [f"{late:,}", f"{simulate(n, m, ttl, exchange_ms).peak_spread:,}"]
        rows.append(row)
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
    ap.add_argument("--table", choices=("load", "burst", "pg"), help="print only this table of docs/scaling.md")
    ap.add_argument("--nodes", type=int, help="one fleet: this many nodes (veil-cache instances)")
    ap.add_argument("--models", type=int, default=1, help="models (leases) each node holds")
    ap.add_argument("--ttl", type=int, default=300, help="the models' lease_ttl_s (policy; 1..86400, default 300)")
    ap.add_argument("--exchange-ms", type=int, default=EXCHANGE_MS, help="one RCAR exchange, as the cache sees it")
    a = ap.parse_args()
    if a.table is not None:
        tables = {"load": load_table, "burst": burst_table}
        sys.stdout.write(tables[a.table](a.exchange_ms) if a.table in tables else pg_table())
        return 0
    if a.nodes is None:
        sys.stdout.write("Broker load from lease renewals:\n\n" + load_table(a.exchange_ms))
        sys.stdout.write("\nA fleet started together, renewal after renewal:\n\n" + burst_table(a.exchange_ms))
        sys.stdout.write("\nPostgreSQL audit ceiling (model):\n\n" + pg_table())
        return 0
    if not (a.nodes > 0 and 0 < a.models <= 256 and 1 <= a.ttl <= 86400 and a.exchange_ms > 0):
        print("lease_load: nodes > 0, 1 <= models <= 256, 1 <= ttl <= 86400, exchange-ms > 0", file=sys.stderr)
        return 2
    r = simulate(a.nodes, a.models, a.ttl, a.exchange_ms)
    print(f"renewals/s {r.formula:.3f} (simulated mean {r.mean:.3f}); busiest second {r.peak_spread} (nodes started "
          f"spread out), {r.peak_together} (started together); broker CPU {r.formula * CPU_MS_PER_RENEWAL / 1000:.3f} "
          f"cores; {r.retry:.1f} attempts/s while the broker does not answer")
    waves, late = burst(a.nodes, a.models, a.ttl, BURST_WAVES, a.exchange_ms)
    print("started together, busiest second: at start " + str(waves[0].peak) + "; " + "; ".join(
        f"renewal {k}: {w.peak} ({w.first_s:.1f}-{w.last_s:.1f} s)" for k, w in enumerate(waves) if k > 0)
        + f"; from {LATE_TTL - 1}·TTL to {LATE_TTL}·TTL: {late}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
