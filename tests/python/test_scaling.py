# SPDX-License-Identifier: Apache-2.0
"""docs/scaling.md's tables are scripts/lease_load.py's output, and the script models the code it describes:

    * each table between its `<!-- scripts/lease_load.py --table T: begin/end -->` markers equals the script's
      output, byte for byte;
    * the simulated mean equals 2·N·M/TTL, nodes started together renew together (N·M in one second), and a
      hand-checked schedule (2 leases, TTL 10 s, 1 s exchanges) comes out as the cache would run it;
    * the constants it copies still match the code: renewal at TTL/2 of the exchange's start (lib/cache/lease.c),
      retries every min(TTL/4, 5 s) (src/cache/broker.c), two audited releases per renewal (src/kbs/rcar.c).
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


@pytest.mark.parametrize("table", ["load", "pg"])
def test_doc_table_is_the_scripts_output(table: str) -> None:
    doc = (ROOT / "docs" / "scaling.md").read_text()
    m = re.search(rf"<!-- scripts/lease_load.py --table {table}: begin -->\n(.*?)"
                  rf"<!-- scripts/lease_load.py --table {table}: end -->", doc, re.S)
    assert m is not None, f"docs/scaling.md has no {table} table markers"
    p = subprocess.run([sys.executable, str(SCRIPT), "--table", table], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert m.group(1) == p.stdout, "docs/scaling.md's table differs from scripts/lease_load.py's output"


def test_simulation_agrees_with_the_formula_and_the_schedule() -> None:
    for n, m, ttl in lease_load.FLEETS:
        r = lease_load.simulate(n, m, ttl)
        assert abs(r.mean - 2 * n * m / ttl) < 1e-9 * max(1, r.mean), (n, m, ttl, r)
        # Started together: every node's M exchanges fall in the same second, once per TTL/2 (twice a second at 1 s).
        assert r.peak_together == n * m * (2 if ttl == 1 else 1), (n, m, ttl, r)
        assert r.peak_spread <= r.peak_together
    # Two leases, TTL 10 s, exchanges of 1 s: preload at 0 and 1 s; renewals at 5 and 6 s, then 10 and 11 s ...
    assert lease_load.node_exchanges(2, 10_000, 1_000, 16_000) == [0, 1000, 5000, 6000, 10000, 11000, 15000]
    # ... and exchanges longer than the spacing push the next lease back (one exchange at a time).
    assert lease_load.node_exchanges(3, 4_000, 1_500, 6_000) == [0, 1500, 3000, 4500]
    assert lease_load.simulate(1, 1, 300).retry == pytest.approx(1 / 5)  # min(75 s, 5 s)
    assert lease_load.simulate(1, 1, 8).retry == pytest.approx(1 / 2)  # min(2 s, 5 s)


def test_the_script_copies_the_code_faithfully() -> None:
    lease = (ROOT / "lib" / "cache" / "lease.c").read_text()
    assert "l->renew_ms = g->fetched_ms + g->ttl_ms / 2;" in lease
    broker = (ROOT / "src" / "cache" / "broker.c").read_text()
    assert f"#define RETRY_MAX_MS {lease_load.RETRY_MAX_MS}u" in broker
    assert re.search(r"uint64_t r = ttl_ms / 4;", broker)
    assert re.search(r"f->started_ms = vd_now_ms\(\);\s*f->status = veil_kbs_fetch_model", broker)
    assert ".with_usage_policy = 1" in broker  # every renewal also fetches the usage policy
    rcar = (ROOT / "src" / "kbs" / "rcar.c").read_text()
    audited = re.findall(r'struct kbs_audit_event e = \{\.event = "(release|usage-release)"\}', rcar)
    assert sorted(audited) == ["release", "usage-release"] and lease_load.AUDIT_RECORDS_PER_RENEWAL == 2
