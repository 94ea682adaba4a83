# SPDX-License-Identifier: Apache-2.0
"""veil-kbs GET /metrics (docs/kbs.md, "Metrics"), end to end:

    * the exposition is Prometheus text format 0.0.4, checked by the strict parser below (families grouped and
      typed, label syntax, counters named *_total, histogram buckets cumulative with +Inf equal to _count);
    * after a known sequence (one sample-evidence key release, one denied attestation, one 404, one 429 from the
      rate limiter) every counter moved by exactly the expected amount, and nothing else moved;
    * metrics_auth=admin (the default) wants the admin token, metrics_auth=none does not;
    * no model id appears anywhere in the output.

The helpers (broker, RCAR client) are test_kbs.py's.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from test_kbs import (DEV_KEYS, Broker, Reply, Session, attested, free_port, report_digest, sample_evidence,
                      until_rate_limited)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = {"auth", "attest", "resource", "admin", "metrics", "other"}
TEES = {"unknown", "sim", "sample", "sgx", "tdx", "snp"}
LE = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
AUTH_BODY = b'{"version":"0.4.0","tee":"sample","extra-params":""}'

# ---- a strict parser of the text exposition format 0.0.4 -------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")
SUFFIXES = {"counter": [""], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


def parse_value(text: str) -> float:
    assert re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?Inf|NaN", text), text
    return float(text)


def parse_exposition(text: str) -> dict[str, Family]:
    assert text.endswith("\n"), "the exposition ends with a line feed"
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    current: Family | None = None
    for line in text[:-1].split("\n"):
        assert line != "", "no blank lines"
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and name not in helps and doc, line
            helps[name] = doc
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name in helps and name not in families, f"TYPE after its HELP, once: {line}"
            assert typ in SUFFIXES, line
            current = families[name] = Family(name, typ, helps[name])
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m is not None, f"not a sample line: {line!r}"
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(m.lastindex)
        assert current is not None and any(name == current.name + s for s in SUFFIXES[current.type]), \
            f"{name} outside its family's group"
        labels = tuple(re.findall(LABEL, labels_text))
        assert len({k for k, _ in labels}) == len(labels), f"repeated label: {line}"
        key = (name, labels)
        assert key not in current.samples, f"duplicate sample: {line}"
        current.samples[key] = parse_value(value)
    for f in families.values():
        if f.type == "counter":
            assert f.name.endswith("_total"), f.name
        if f.type == "histogram":
            check_histogram(f)
    return families


def check_histogram(f: Family) -> None:
    series: dict[tuple, list[tuple[str, float]]] = {}
    for (name, labels), v in f.samples.items():
        if name.endswith("_bucket"):
            le = dict(labels)["le"]
            series.setdefault(tuple(p for p in labels if p[0] != "le"), []).append((le, v))
    assert series, f.name
    for rest, buckets in series.items():
        les = [le for le, _ in buckets]
        assert les[-1] == "+Inf" and [float(x) for x in les] == sorted(float(x) for x in les), les
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"buckets are cumulative: {rest} {counts}"
        assert f.samples[(f.name + "_count", rest)] == counts[-1]
        assert f.samples[(f.name + "_sum", rest)] >= 0


# ---- helpers -------------------------------------------------------------------------------------------------


def scrape(b: Broker, token: str | None = "admin") -> tuple[Reply, dict[str, Family]]:
    headers = {} if token is None else {"Authorization": f"Bearer {b.admin_token if token == 'admin' else token}"}
    r = b.request("GET", "/metrics", None, headers)
    assert r.status == 200, r.body
    assert r.headers["content-type"] == CONTENT_TYPE
    return r, parse_exposition(r.body.decode("utf-8"))


def flat(families: dict[str, Family]) -> Counter:
    """Every sample as {(name, labels): value}, histograms without their _sum (a time, not a count)."""
    out: Counter = Counter()
    for f in families.values():
        for (name, labels), v in f.samples.items():
            if not name.endswith("_sum") and f.type != "gauge":
                out[(name, labels)] = v
    return out


def req(route: str, code: int) -> tuple[str, tuple]:
    return ("veil_kbs_requests_total", (("route", route), ("code", str(code))))


def per_tee(name: str, tee: str) -> tuple[str, tuple]:
    return (name, (("tee", tee),))


def histogram_delta(route: str, n: int) -> dict:
    """The count and +Inf bucket of route's duration histogram move by n."""
    return {("veil_kbs_request_duration_seconds_count", (("route", route),)): n,
            ("veil_kbs_request_duration_seconds_bucket", (("route", route), ("le", "+Inf"))): n}


def start_broker(tmp: Path, name: str, *sets: str) -> Broker:
    args: list[str] = []
    for s in sets:
        args += ["--set", s]
    b = Broker(tmp / name, free_port(), args)
    b.start()
    return b


@pytest.fixture
def rl_broker(tmp_path: Path):
    """A broker whose rate limiter is reachable: a burst of 6 at 1 request/second."""
    started = time.time()
    b = start_broker(tmp_path, "m", "rate_limit_per_s=1", "rate_limit_burst=6")
    b.started = started  # type: ignore[attr-defined]
    yield b
    assert b.stop() == 0


# ---- tests ---------------------------------------------------------------------------------------------------


def test_counters_move_by_exactly_the_expected_amounts(rl_broker: Broker) -> None:
    b = rl_broker
    started = b.started  # type: ignore[attr-defined]
    _, fam0 = scrape(b)
    before = flat(fam0)
    assert all(before[per_tee(n, t)] == 0 for t in TEES
               for n in ("veil_kbs_key_releases_total", "veil_kbs_release_denials_total"))

    # One full release with sample evidence (auth 200, attest 200, resource 200).
    s = attested(b, "sample", sample_evidence)
    assert s.decrypt(s.resource("test-0")) == DEV_KEYS["test-0"]
    # One denied attestation: evidence bound to another nonce (auth 200, attest 401, audited as a denial).
    d = Session(b, "sample")
    assert d.auth().status == 200
    bad = d.attest(d.attestation(sample_evidence(report_digest(d.nonce, d.key.jwk, "not-the-additional-evidence"))))
    assert bad.status == 401
    # One 404 (a path that names nothing).
    assert b.request("GET", "/kbs/v0/no-such-thing").status == 404
    # /auth until the limiter answers 429, once (however long the machine takes to get there).
    replies: list[Reply] = []

    def send() -> int:
        replies.append(b.request("POST", "/kbs/v0/auth", AUTH_BODY, {"Content-Type": "application/json"}))
        return replies[-1].status

    statuses = until_rate_limited(send, 1, 6)
    assert set(statuses[:-1]) <= {200}, statuses
    assert replies[-1].headers.get("retry-after") == "1"
    extra_auth = len(statuses) - 1

    _, fam1 = scrape(b)
    after = flat(fam1)
    want = Counter({
        req("auth", 200): 2 + extra_auth, req("auth", 429): 1,
        req("attest", 200): 1, req("attest", 401): 1,
        req("resource", 200): 1,
        req("other", 404): 1,
        req("metrics", 200): 1,  # the first scrape, counted once answered
        per_tee("veil_kbs_key_releases_total", "sample"): 1,
        per_tee("veil_kbs_release_denials_total", "sample"): 1,
        ("veil_kbs_rate_limited_total", ()): 1,
    })
    for route, n in (("auth", 3 + extra_auth), ("attest", 2), ("resource", 1), ("other", 1), ("metrics", 1)):
        want.update(histogram_delta(route, n))
    delta = Counter({k: after[k] - before[k] for k in set(after) | set(before)})
    moved = {k: v for k, v in delta.items() if v != 0 and not k[0].endswith("_bucket")}
    assert moved == {k: v for k, v in want.items() if not k[0].endswith("_bucket")}
    for k, v in want.items():
        assert delta[k] == v, (k, delta[k], v)
    # Nothing else moved: no other bucket can have grown by more than its route's count did.
    for (name, labels), v in delta.items():
        if name.endswith("_bucket"):
            route = dict(labels)["route"]
            assert 0 <= v <= want[("veil_kbs_request_duration_seconds_count", (("route", route),))]
    sums = {dict(k[1])["route"]: v for k, v in fam1["veil_kbs_request_duration_seconds"].samples.items()
            if k[0].endswith("_sum")}
    assert sums["attest"] > 0 and sums["resource"] > 0 and sums["admin"] == 0
    # The gauges.
    info = fam1["veil_kbs_build_info"].samples
    assert list(info.values()) == [1.0] and re.fullmatch(r"\d+\.\d+\.\d+", dict(next(iter(info))[1])["version"])
    start = fam1["veil_kbs_start_time_seconds"].samples[("veil_kbs_start_time_seconds", ())]
    assert started - 2 <= start <= time.time() + 2
    assert fam1["veil_kbs_audit_failures_total"].samples[("veil_kbs_audit_failures_total", ())] == 0
    # Every label set is bounded.
    for (name, labels), _ in flat(fam1).items():
        d = dict(labels)
        assert d.get("route", "auth") in ROUTES and d.get("tee", "sim") in TEES
        assert d.get("le", "1") in LE
        assert re.fullmatch(r"\d{3}|other", d.get("code", "200"))


def test_metrics_needs_the_admin_token_by_default(rl_broker: Broker) -> None:
    b = rl_broker
    r = b.request("GET", "/metrics")
    assert r.status == 401 and r.json()["error"] == "unauthorized"
    assert b.request("GET", "/metrics", None, {"Authorization": "Bearer " + "0" * 64}).status == 401
    assert b"veil_kbs" not in r.body
    scrape(b)  # with the token
    # The refusals were counted as such.
    _, fam = scrape(b)
    assert fam["veil_kbs_requests_total"].samples[req("metrics", 401)] == 2
    assert b.request("POST", "/metrics").status == 404  # only GET


def test_metrics_auth_none_is_open_and_never_names_a_model(tmp_path: Path) -> None:
    b = start_broker(tmp_path, "open", "metrics_auth=none", "rate_limit_per_s=0")
    try:
        model = "customer-secret-model-7f3a"
        r = b.admin("POST", "/models", {"model_id": model, "policy": {"version": 1, "allow_sample": True}})
        assert r.status == 201
        s = attested(b, "sample", sample_evidence)
        assert len(s.decrypt(s.resource(model))) == 32
        assert s.resource(f"{model}@7").status == 404  # an unknown version of it
        assert b.admin("GET", f"/models/{model}").status == 200
        r, fam = scrape(b, token=None)  # no token needed
        text = r.body.decode()
        for secret in (model, "test-0", "test-1", "customer", "127.0.0.1", b.admin_token):
            assert secret not in text
        assert fam["veil_kbs_key_releases_total"].samples[per_tee("veil_kbs_key_releases_total", "sample")] == 1
        assert fam["veil_kbs_requests_total"].samples[req("resource", 404)] == 1
        assert fam["veil_kbs_requests_total"].samples[req("admin", 201)] == 1
    finally:
        assert b.stop() == 0


def test_parser_is_strict() -> None:
    """The checker above refuses what Prometheus would refuse, so the passes above mean something."""
    good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1\n"
    parse_exposition(good)
    for bad in (good[:-1],                                            # no final newline
                good.replace('{k="v"}', '{k=v}'),                     # unquoted label value
                good + 'a_total{k="v"} 2\n',                          # duplicate sample
                good + "# HELP b x\n# TYPE b gauge\nb 1\na_total 3\n",  # family not grouped
                "a_total 1\n",                                        # no TYPE
                good.replace(" 1\n", " one\n")):                      # not a number
        with pytest.raises(AssertionError):
            parse_exposition(bad)
    hist = ("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\n"
            "h_count 1\n")
    with pytest.raises(AssertionError):
        parse_exposition(hist)  # not cumulative
