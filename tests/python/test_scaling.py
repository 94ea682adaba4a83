# SPDX-License-Identifier: Apache-2.0
"""docs/scaling.md's tables are scripts/lease_load.py's output, and the script models the code it describes:

    * each table between its `<!-- scripts/lease_load.py --table T: begin/end -->` markers equals the script's
      output, byte for byte;
    * the simulated mean agrees with N·M/(0.45·TTL), the jitter spreads nodes started together (fewer than N·M in
      any second after their start, each renewal wave within its bounds), and hand-checked schedules (2 leases,
      TTL 10 s, 1 s exchanges, with and without a fixed jitter) come out as the cache would run them;
    * the constants it copies still match the code: renewal at TTL/2 of the exchange's start less min(jitter, TTL/4)
      (lib/cache/lease.c), jitter uniform in [0, TTL/10) drawn at every fetch and renewal, retries every
      min(TTL/4, 5 s) (src/cache/broker.c), two audited releases per renewal (src/kbs/rcar.c).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "lease_load.py"


def load():
    spec = importlib.util.spec_from_file_location("veil_lease_load", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through the module
    spec.loader.exec_module(module)
    return module


lease_load = load()


@pytest.mark.parametrize("table", ["load", "burst", "pg"])
def test_doc_table_is_the_scripts_output(table: str) -> None:
    doc = (ROOT / "docs" / "scaling.md").read_text()
    m = re.search(rf"<!-- scripts/lease_load.py --table {table}: begin -->\n(.*?)"
                  rf"<!-- scripts/lease_load.py --table {table}: end -->", doc, re.S)
    assert m is not None, f"docs/scaling.md has no {table} table markers"
    p = subprocess.run([sys.executable, str(SCRIPT), "--table", table], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert m.group(1) == p.stdout, "docs/scaling.md's table differs from scripts/lease_load.py's output"


class Fixed:
    """A stand-in for random.Random whose draws are known: always `value`, checked against the bound."""

    def __init__(self, value: int) -> None:
        self.value = value

    def randrange(self, stop: int) -> int:
        assert 0 <= self.value < stop
        return self.value


def test_simulation_agrees_with_the_formula_and_the_schedule() -> None:
    for n, m, ttl in lease_load.FLEETS:
        r = lease_load.simulate(n, m, ttl)
        assert r.formula == pytest.approx(n * m / (0.45 * ttl))
        # Each lease renews every 0.4 to 0.5 TTL, so its count in the window is off its mean by less than one ...
        assert abs(r.mean - r.formula) <= n * m / ttl, (n, m, ttl, r)  # the window: TTL to 2·TTL, TTL seconds
        # ... and over a thousand leases or more the simulated mean is within 2 % of the formula.
        if n * m >= 1000:
            assert r.mean == pytest.approx(r.formula, rel=0.02), (n, m, ttl, r)
        # Started together: the jitter has spread them, fewer than N·M exchanges in any second after the first TTL
        # once TTL/10 is a second or more (at TTL 1 s the window is one second holding two or three renewal waves).
        if ttl >= 10:
            assert r.peak_together < n * m, (n, m, ttl, r)
        assert r.peak_spread >= r.mean
    for n, m, ttl in lease_load.BURST_FLEETS:
        waves, late = lease_load.burst(n, m, ttl)
        assert waves[0].peak == n * m  # the preload is not jittered: all of it in the first second
        for k, w in enumerate(waves[1:], start=1):  # the k-th renewals: k draws of [0, TTL/10) before k·TTL/2
            assert k * 0.4 * ttl <= w.first_s and w.last_s <= k * 0.5 * ttl + m * lease_load.EXCHANGE_MS / 1000
            assert w.peak < n * m and w.peak <= 1.1 * waves[1].peak, (n, m, ttl, k, w)
        # the first renewals spread N·M exchanges uniformly over TTL/10 seconds: the busiest second is above that
        # average by a random fluctuation (a few standard deviations of a count, its square root), no more
        average = n * m / (ttl / 10)
        assert average <= waves[1].peak <= average + 6 * average**0.5, (n, m, ttl, waves)
        assert waves[-1].peak < waves[1].peak
        # ten TTLs on, the fleet is close to one started spread out: well under its 4th renewals, above the mean
        assert n * m / (0.45 * ttl) < late < waves[-1].peak, (n, m, ttl, late)
    # Two leases, TTL 10 s, exchanges of 1 s, no jitter: preload at 0 and 1 s; renewals at 5 and 6 s, then 10, 11 s ...
    assert lease_load.node_exchanges(2, 10_000, 1_000, 16_000) == [0, 1000, 5000, 6000, 10000, 11000, 15000]
    # ... with every draw 999 ms (the largest under TTL/10): each renewal 4.001 s after the previous exchange began ...
    assert lease_load.node_exchanges(2, 10_000, 1_000, 10_000, Fixed(999)) == [0, 1000, 4001, 5001, 8002, 9002]
    assert lease_load.node_schedule(2, 10_000, 1_000, 10_000, Fixed(999))[2:4] == [(4001, 1), (5001, 1)]
    # ... the jitter capped at TTL/4 and absent below 10 ms, as in the C code ...
    assert lease_load.renew_at(0, 10_000, 9_999) == 2_500 and lease_load.jitter_ms(Fixed(0), 9) == 0
    # ... and exchanges longer than the spacing push the next lease back (one exchange at a time).
    assert lease_load.node_exchanges(3, 4_000, 1_500, 6_000) == [0, 1500, 3000, 4500]
    assert lease_load.simulate(1, 1, 300).retry == pytest.approx(1 / 5)  # min(75 s, 5 s)
    assert lease_load.simulate(1, 1, 8).retry == pytest.approx(1 / 2)  # min(2 s, 5 s)
    # Deterministic: the same seed, the same tables.
    assert lease_load.simulate(100, 10, 10) == lease_load.simulate(100, 10, 10)


def test_the_script_copies_the_code_faithfully() -> None:
    lease = (ROOT / "lib" / "cache" / "lease.c").read_text()
    cap = lease_load.EARLY_CAP_DIVISOR
    assert (f"uint64_t early = g->renew_early_ms < g->ttl_ms / {cap} ? g->renew_early_ms : g->ttl_ms / {cap};"
            in lease)
    assert "l->renew_ms = g->fetched_ms + g->ttl_ms / 2 - early;" in lease
    broker = (ROOT / "src" / "cache" / "broker.c").read_text()
    div = lease_load.JITTER_DIVISOR
    jitter = re.search(r"static uint64_t jitter_ms\(uint64_t ttl_ms\)\n\{(.*?)\n\}", broker, re.S)
    assert jitter is not None, "src/cache/broker.c has no jitter_ms"
    assert f"if (ttl_ms < {div} ||" in jitter.group(1) and f"return r % (ttl_ms / {div});" in jitter.group(1)
    assert lease_load.MEAN_RENEWAL_TTL == pytest.approx(0.5 - 1 / (2 * div))
    # drawn afresh at every stored fetch, the preload's and every renewal's (store() serves both)
    assert re.search(r"\.fetched_ms = f->started_ms,\s*\.renew_early_ms = jitter_ms\(ttl\)", broker)
    assert len(re.findall(r"veil_ok\(store\(c, model, version, &?f\)\)", broker)) == 2
    assert f"#define RETRY_MAX_MS {lease_load.RETRY_MAX_MS}u" in broker
    assert re.search(r"uint64_t r = ttl_ms / 4;", broker)
    assert re.search(r"f->started_ms = vd_now_ms\(\);\s*f->status = veil_kbs_fetch_model", broker)
    assert ".with_usage_policy = 1" in broker  # every renewal also fetches the usage policy
    rcar = (ROOT / "src" / "kbs" / "rcar.c").read_text()
    audited = re.findall(r'struct kbs_audit_event e = \{\.event = "(release|usage-release)"\}', rcar)
    assert sorted(audited) == ["release", "usage-release"] and lease_load.AUDIT_RECORDS_PER_RENEWAL == 2
