# SPDX-License-Identifier: Apache-2.0
"""veil-kbs usage policies (docs/kbs.md, "Usage policies"), end to end:

    * the admin API: GET/PUT/DELETE /admin/v1/models/{id}/usage (set, read back, clear to null); an invalid policy
      refused 400 with the parser's message and the stored policy unchanged; 404 for an unknown model, 400 for a
      malformed model id, 401 without admin credentials; every change audited (usage-set, usage-clear) without the
      policy's API-key hashes in the audit record or the log;
    * the CLI: veil kbs usage set/get/clear, usage key (a fresh vk_ key whose SHA-256 is printed, --json), --help
      for each subcommand, usage errors;
    * the RCAR resource veil/usage-policy/<model>: a JWE to the TEE's key whose plaintext is the stored policy
      (compact JSON) or the text null, released to an attested session (cookie or bearer token) whose claims the
      model's release policy accepts, with sample and with sim evidence; refused to one it does not accept, to an
      unauthenticated or unattested requester and when every key version is revoked; 404 for an unknown model;
      releases and refusals audited as usage-release; key releases unchanged and still counted apart;
    * an SQLite store made before usage policies existed (no usage table) is migrated at start.

The broker, the RCAR client (which decrypts JWEs) and the evidence helpers are test_kbs.py's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from refusal import assert_refused
from test_kbs import (  # noqa: F401  (sim is a fixture used by name)
    DEV_KEYS,
    ERR_PREFIX,
    TIMEOUT,
    VEIL,
    Broker,
    Reply,
    Session,
    attested,
    make_broker,
    report_digest,
    sample_evidence,
    sim,
    sim_evidence_fn,
)

ALLOW_ALL = {"version": 1, "allow_sim": True, "allow_sample": True}
HASH_A = hashlib.sha256(b"vk_alice-test-key").hexdigest()
HASH_B = hashlib.sha256(b"vk_bob-test-key").hexdigest()
POLICY = {"version": 1,
          "clients": [{"name": "alice", "api_key_sha256": HASH_A, "budget": 1000, "rate_per_s": 5, "burst": 10},
                      {"name": "bob@example", "api_key_sha256": HASH_B}],
          "global": {"rate_per_s": 50},
          "output": {"classification_only": True, "max_top_k": 5, "round_decimals": 3}}
OPEN_SHAPED = {"version": 1, "output": {"round_decimals": 2}}


def usage_path(model: str) -> str:
    return f"/kbs/v0/resource/veil/usage-policy/{model}"


def fetch_usage(s: Session, model: str, cookie: str | None = None, bearer: str | None = None) -> Reply:
    return s.resource("", cookie=cookie, bearer=bearer, path=usage_path(model))


def records(b: Broker, start: int = 0) -> list[dict[str, Any]]:
    return [json.loads(e["record"]) for e in b.audit()[start:]]


def create(b: Broker, model: str, policy: Any = ALLOW_ALL) -> bytes:
    r = b.admin("POST", "/models", {"model_id": model} | ({"policy": policy} if policy is not None else {}))
    assert r.status == 201, r.body
    return base64.b64decode(r.json()["key"])


def refused(r: Reply, status: int, kind: str) -> None:
    assert r.status == status, (r.status, r.body)
    body = r.json()
    assert set(body) == {"type", "detail"} and body["type"] == ERR_PREFIX + kind, body
    assert b"ciphertext" not in r.body and b"encrypted_key" not in r.body


def metric(b: Broker, name: str, tee: str) -> float:
    r = b.request("GET", "/metrics", None, {"Authorization": f"Bearer {b.admin_token}"})
    assert r.status == 200
    m = re.search(rf'^{name}{{tee="{tee}"}} (\S+)$', r.body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, sim: dict[str, Any]):
    b = make_broker(tmp_path_factory.mktemp("kbs-usage"), "data", sim)
    yield b
    assert b.stop() == 0


# ---- admin API --------------------------------------------------------------------------------------------------


def test_admin_set_get_clear(broker: Broker) -> None:
    create(broker, "adm")
    assert broker.admin("GET", "/models/adm/usage").json() == {"usage": None}  # none set: open
    start = len(broker.audit())
    r = broker.admin("PUT", "/models/adm/usage", POLICY)
    assert r.status == 200 and r.json() == {"usage": POLICY}, r.body
    r = broker.admin("GET", "/models/adm/usage")
    assert r.status == 200 and r.json() == {"usage": POLICY}
    assert list(r.json()["usage"]) == list(POLICY)  # members in the owner's order
    r = broker.admin("PUT", "/models/adm/usage", OPEN_SHAPED)  # replaced
    assert r.status == 200 and broker.admin("GET", "/models/adm/usage").json() == {"usage": OPEN_SHAPED}
    r = broker.admin("DELETE", "/models/adm/usage")
    assert r.status == 200 and r.json() == {"usage": None}
    assert broker.admin("GET", "/models/adm/usage").json() == {"usage": None}
    assert broker.admin("DELETE", "/models/adm/usage").status == 200  # clearing twice is fine
    # The release policy and the keys are untouched.
    assert broker.admin("GET", "/models/adm/policy").json() == ALLOW_ALL
    new = records(broker, start)
    assert [(d["event"], d["decision"], d["model"]) for d in new] == [
        ("usage-set", "allow", "adm"), ("usage-set", "allow", "adm"), ("usage-clear", "allow", "adm"),
        ("usage-clear", "allow", "adm")]
    compact = json.dumps(POLICY, separators=(",", ":")).encode()
    assert new[0]["reason"] == f"usage policy with 2 client(s), sha256 {hashlib.sha256(compact).hexdigest()}"
    assert "0 client(s)" in new[1]["reason"]
    # Neither the audit log nor the broker's log holds the API-key hashes: the model and the client count only.
    everything = json.dumps(broker.audit()) + broker.log.read_text()
    assert HASH_A not in everything and HASH_B not in everything
    logged = [json.loads(x) for x in broker.log.read_text().splitlines() if '"usage-set"' in x]
    assert logged and logged[0]["model"] == "adm" and logged[0]["clients"] == 2


@pytest.mark.parametrize("bad,message", [
    ({"version": 2}, "version 2 is not supported"),
    ({"version": 1, "clients": []}, "\"clients\" is empty"),
    ({"version": 1, "clients": [{"name": "a", "api_key_sha256": "AB" * 32}]}, "64 lower-case hex digits"),
    ({"version": 1, "clients": [{"name": "a", "api_key_sha256": HASH_A}, {"name": "a", "api_key_sha256": HASH_B}]},
     "appears twice"),
    ({"version": 1, "rate": 3}, "rate"),
    ({"version": 1, "global": {"burst": 3}}, "\"burst\" needs \"rate_per_s\""),
    ({"version": 1, "output": {"max_top_k": 0}}, "max_top_k"),
    (b'{"version":1,"version":1}', "usage policy"),
    (b"[1]", "usage policy"),
    (b"not json", "usage policy"),
    (b"", "usage policy"),
    (b"null", "usage policy"),
], ids=["version", "empty-clients", "upper-hex", "duplicate-name", "unknown-member", "burst-without-rate",
        "top-k-0", "duplicate-member", "array", "not-json", "empty", "null"])
def test_invalid_policy_refused_and_stored_policy_unchanged(broker: Broker, bad: Any, message: str) -> None:
    model = "inv-" + hashlib.sha256(repr(bad).encode()).hexdigest()[:12]
    create(broker, model)
    assert broker.admin("PUT", f"/models/{model}/usage", POLICY).status == 200
    start = len(broker.audit())
    r = broker.admin("PUT", f"/models/{model}/usage", bad)
    assert r.status == 400, r.body
    body = r.json()
    assert body["error"] == "bad_request" and message in body["message"], body
    assert HASH_A not in body["message"]
    assert broker.admin("GET", f"/models/{model}/usage").json() == {"usage": POLICY}
    assert len(broker.audit()) == start  # nothing written, nothing audited


def test_admin_errors(broker: Broker) -> None:
    for method, body in (("GET", None), ("PUT", POLICY), ("DELETE", None)):
        r = broker.admin(method, "/models/no-such-model/usage", body)
        assert r.status == 404 and r.json() == {"error": "not_found", "message": "no such model"}, (method, r.body)
        r = broker.admin(method, "/models/.bad/usage", body)
        assert r.status == 400 and r.json()["error"] == "bad_request", (method, r.body)
        r = broker.admin(method, "/models/test-0/usage", body, token="wrong" * 10)
        assert r.status == 401 and r.json()["error"] == "unauthorized", (method, r.body)
        r = broker.request(method, "/admin/v1/models/test-0/usage")
        assert r.status == 401
    assert broker.admin("POST", "/models/test-0/usage", POLICY).status == 405
    assert broker.admin("GET", "/models/test-0/usage").json() == {"usage": None}  # the refusals changed nothing


# ---- CLI ----------------------------------------------------------------------------------------------------------


def veil(*args: str, broker: Broker | None = None) -> subprocess.CompletedProcess:
    common = ["--url", broker.url, "--token-file", str(broker.data / "admin.token")] if broker else []
    return subprocess.run([VEIL, "kbs", *args, *common], capture_output=True, text=True, timeout=TIMEOUT)


def test_cli_set_get_clear(broker: Broker, tmp_path: Path) -> None:
    create(broker, "cli-usage")
    f = tmp_path / "usage.json"
    f.write_text(json.dumps(POLICY, indent=2))
    r = veil("usage", "set", "cli-usage", "--file", str(f), broker=broker)
    assert r.returncode == 0, r.stderr
    assert "2 API clients" in r.stdout
    r = veil("usage", "get", "cli-usage", broker=broker)
    assert r.returncode == 0 and json.loads(r.stdout) == POLICY, r.stderr
    assert broker.admin("GET", "/models/cli-usage/usage").json() == {"usage": POLICY}
    # Invalid: exit 1 with the parser's message; the stored policy stays.
    f.write_text('{"version": 1, "clients": []}')
    r = veil("usage", "set", "cli-usage", "--file", str(f), broker=broker)
    assert r.returncode == 1 and "400" in r.stderr and "\"clients\" is empty" in r.stderr, r.stderr
    assert json.loads(veil("usage", "get", "cli-usage", broker=broker).stdout) == POLICY
    r = veil("usage", "clear", "cli-usage", broker=broker)
    assert r.returncode == 0 and "open" in r.stdout, r.stderr
    r = veil("usage", "get", "cli-usage", broker=broker)
    assert r.returncode == 0 and json.loads(r.stdout) is None
    # Unknown model: the broker's 404.
    r = veil("usage", "get", "no-such-model", broker=broker)
    assert r.returncode == 1 and "404" in r.stderr
    r = veil("usage", "set", "no-such-model", "--file", str(f), broker=broker)
    assert r.returncode == 1


def test_cli_usage_key() -> None:
    r = veil("usage", "key", "alice")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert re.fullmatch(r"vk_[A-Za-z0-9_-]{43}", key), key
    assert len(base64.urlsafe_b64decode(key[3:] + "=")) == 32
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert digest in r.stderr and key not in r.stderr
    entry = json.loads(r.stderr.strip().splitlines()[-1].split(": ", 1)[1])
    assert entry == {"name": "alice", "api_key_sha256": digest}
    r = veil("usage", "key", "bob@example", "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    o = json.loads(r.stdout)
    assert set(o) == {"name", "api_key", "api_key_sha256"} and o["name"] == "bob@example"
    assert o["api_key_sha256"] == hashlib.sha256(o["api_key"].encode()).hexdigest()
    assert o["api_key"] != key  # fresh each time
    # The entry is accepted by the broker's parser (and so veil-runtime's).
    assert re.fullmatch(r"vk_[A-Za-z0-9_-]{43}", o["api_key"])


def test_cli_usage_key_entry_is_a_valid_policy(broker: Broker) -> None:
    create(broker, "keyed")
    clients = []
    for name in ("c1", "c2"):
        r = veil("usage", "key", name, "--json")
        o = json.loads(r.stdout)
        clients.append({"name": o["name"], "api_key_sha256": o["api_key_sha256"]})
    assert broker.admin("PUT", "/models/keyed/usage", {"version": 1, "clients": clients}).status == 200


@pytest.mark.parametrize(("args", "reason"), [
    (["usage"], "usage: give a subcommand"), (["usage", "bogus", "m"], "unknown subcommand 'bogus'"),
    (["usage", "get"], "usage get: give exactly one MODEL"),
    (["usage", "get", "a", "b"], "usage get: give exactly one MODEL"),
    (["usage", "set", "m"], "usage set: give the policy with --file"),
    (["usage", "get", "m", "--file", "x"], "--file goes with 'usage set'"),
    (["usage", "get", "m", "--json"], "--json goes with 'usage key'"),
    (["usage", "key", "bad name"], "NAME: usage policy: the name of client 0 may hold only"),
    (["usage", "key", "x" * 65], "NAME: usage policy: the name of client 0 must be 1 to 64 characters"),
    (["usage", "key"], "usage key: give exactly one NAME"),
    (["models", "--json"], "--file and --json go with 'usage set' and 'usage key'"),
    (["usage", "get", "../m"], "'../m' is not a model id"),
])
def test_cli_usage_errors(broker: Broker, args: list[str], reason: str) -> None:
    r = veil(*args, broker=broker)
    assert_refused(r, reason, exit_code=2, what=" ".join(args))
    assert r.stdout == ""


@pytest.mark.parametrize("sub,needle", [(None, "usage: veil kbs usage get MODEL | set MODEL --file"),
                                        ("get", "usage: veil kbs usage get MODEL"),
                                        ("set", "usage: veil kbs usage set MODEL --file POLICY.json"),
                                        ("clear", "usage: veil kbs usage clear MODEL"),
                                        ("key", "usage: veil kbs usage key NAME [--json]")])
def test_cli_usage_help(sub: str | None, needle: str) -> None:
    r = subprocess.run([VEIL, "kbs", "usage", *([sub] if sub else []), "--help"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0 and r.stdout.startswith(needle), r.stdout
    r = subprocess.run([VEIL, "kbs", "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and "usage set MODEL --file POLICY.json" in r.stdout


# ---- the RCAR resource --------------------------------------------------------------------------------------------


def test_released_to_an_accepted_session(broker: Broker) -> None:
    key = create(broker, "served", {"version": 1, "allow_sample": True})
    assert broker.admin("PUT", "/models/served/usage", POLICY).status == 200
    s = attested(broker, "sample", sample_evidence)
    releases = metric(broker, "veil_kbs_key_releases_total", "sample")
    start = len(broker.audit())
    # The key first, then the usage policy, in the same session: the order veil-runtime uses.
    assert s.decrypt(s.resource("served")) == key
    plain = s.decrypt(fetch_usage(s, "served"))
    assert plain == json.dumps(POLICY, separators=(",", ":")).encode()  # the stored text: compact, owner's order
    assert json.loads(plain) == POLICY
    # The attestation token alone works too, as for keys.
    assert json.loads(s.decrypt(fetch_usage(s, "served", cookie="", bearer=s.token))) == POLICY
    new = records(broker, start)
    assert [d["event"] for d in new] == ["release", "usage-release", "usage-release"]
    u = new[1]
    assert u["decision"] == "release" and u["model"] == "served" and u["tee"] == "sample"
    # The session is recorded as its tag (12 hex of its SHA-256), never the cookie itself (a bearer secret).
    assert u["session"] == hashlib.sha256(s.cookie.encode()).hexdigest()[:12] and "key_version" not in u
    assert u["reason"] == "policy allows; usage policy sha256 " + hashlib.sha256(plain).hexdigest()
    # A usage policy is not a key: only the one key release was counted.
    assert metric(broker, "veil_kbs_key_releases_total", "sample") == releases + 1
    assert HASH_A not in broker.log.read_text()


def test_null_when_none_set(broker: Broker) -> None:
    s = attested(broker, "sample", sample_evidence)
    start = len(broker.audit())
    assert s.decrypt(fetch_usage(s, "test-0")) == b"null"
    d = records(broker, start)[-1]
    assert d["event"] == "usage-release" and d["decision"] == "release" and "no usage policy" in d["reason"]
    # Set, then cleared: null again.
    create(broker, "cleared", {"version": 1, "allow_sample": True})
    assert broker.admin("PUT", "/models/cleared/usage", OPEN_SHAPED).status == 200
    assert json.loads(s.decrypt(fetch_usage(s, "cleared"))) == OPEN_SHAPED
    assert broker.admin("DELETE", "/models/cleared/usage").status == 200
    assert s.decrypt(fetch_usage(s, "cleared")) == b"null"


def test_sim_claims_decide(broker: Broker, sim: dict[str, Any]) -> None:
    """A strict sim policy: the session with the listed measurement gets the usage policy, a sample session and a
    sim session from an untrusted platform's measurement list do not."""
    s = Session(broker, "sim")
    assert s.auth().status == 200
    ev = sim_evidence_fn(sim["dir"], sim["tmp"])(report_digest(s.nonce, s.key.jwk))
    assert s.attest(s.attestation(ev)).status == 200
    measurement = ev["measurement"]
    t = attested(broker, "sample", sample_evidence)
    create(broker, "strict", {"version": 1, "allow_sim": True, "sim": {"measurements": [measurement]}})
    create(broker, "other-measurement", {"version": 1, "allow_sim": True, "sim": {"measurements": ["ab" * 48]}})
    for m in ("strict", "other-measurement"):
        assert broker.admin("PUT", f"/models/{m}/usage", POLICY).status == 200
    assert json.loads(s.decrypt(fetch_usage(s, "strict"))) == POLICY
    start = len(broker.audit())
    # The same rule as the key: whoever may not have the key may not have the usage policy.
    for sess, model in ((t, "strict"), (s, "other-measurement")):
        refused(sess.resource(model), 401, "PolicyDeny")
        refused(fetch_usage(sess, model), 401, "PolicyDeny")
    new = records(broker, start)
    assert [(d["event"], d["decision"]) for d in new] == [("release", "deny"), ("usage-release", "deny")] * 2
    assert new[1]["model"] == "strict" and new[1]["tee"] == "sample"
    assert not any(d["decision"] == "release" for d in new)


def test_refusals(broker: Broker) -> None:
    create(broker, "revoked-all")
    assert broker.admin("PUT", "/models/revoked-all/usage", POLICY).status == 200
    assert broker.admin("POST", "/models/revoked-all/versions/1/revoke").status == 200
    create(broker, "default-deny", None)  # created without a policy: the broker's default refuses every TEE
    assert broker.admin("PUT", "/models/default-deny/usage", POLICY).status == 200
    s = attested(broker, "sample", sample_evidence)
    start = len(broker.audit())
    refused(fetch_usage(s, "no-such-model"), 404, "ResourceNotFound")
    refused(fetch_usage(s, "revoked-all"), 401, "PolicyDeny")
    refused(fetch_usage(s, "default-deny"), 401, "PolicyDeny")
    refused(fetch_usage(Session(broker, "sample"), "test-0", cookie=""), 401, "TokenNotFound")
    refused(fetch_usage(s, "test-0", cookie="", bearer="not.a.jwt"), 401, "TokenVerifierError")
    fresh = Session(broker, "sample")
    assert fresh.auth().status == 200
    refused(fetch_usage(fresh, "test-0"), 401, "TokenVerifierError")  # challenged, never attested
    refused(fetch_usage(s, "test-0@1"), 404, "InvalidRequestPath")  # no versions: the policy is the model's
    refused(fetch_usage(s, ".hidden"), 404, "InvalidRequestPath")
    refused(s.resource("", path="/kbs/v0/resource/veil/usage-policies/test-0"), 404, "InvalidRequestPath")
    refused(s.resource("", path="/kbs/v0/resource/other/usage-policy/test-0"), 404, "InvalidRequestPath")
    new = records(broker, start)
    # Only the refusals of authenticated requests are audited (the first three); the seven refused before
    # authentication (no or bad credentials, malformed paths) are counted in the metrics instead.
    assert len(new) == 3 and all(d["decision"] == "deny" and d["event"] == "usage-release" for d in new), new
    by_model = {d.get("model"): d for d in new if d["event"] == "usage-release"}
    assert by_model["no-such-model"]["reason"] == "unknown model"
    assert "revoked" in by_model["revoked-all"]["reason"]
    # The key path is unchanged.
    assert s.decrypt(s.resource("test-0")) == DEV_KEYS["test-0"]
    refused(s.resource("no-such-model@1"), 404, "ResourceNotFound")


def test_policy_survives_restart_and_old_stores_migrate(tmp_path: Path, sim: dict[str, Any]) -> None:
    b = make_broker(tmp_path, "mig", sim)
    try:
        create(b, "kept")
        assert b.admin("PUT", "/models/kept/usage", POLICY).status == 200
    finally:
        assert b.stop() == 0
    b.start()
    try:
        assert b.admin("GET", "/models/kept/usage").json() == {"usage": POLICY}
    finally:
        assert b.stop() == 0
    # A store from before usage policies: no usage table. The broker creates it at start.
    with sqlite3.connect(b.data / "kbs.sqlite") as db:
        db.execute("DROP TABLE usage")
    with sqlite3.connect(b.data / "kbs.sqlite") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'usage'").fetchone() == (0,)
    b.start()
    try:
        assert b.admin("GET", "/models/kept/usage").json() == {"usage": None}
        assert b.admin("PUT", "/models/kept/usage", OPEN_SHAPED).status == 200
        s = attested(b, "sample", sample_evidence)
        assert json.loads(s.decrypt(fetch_usage(s, "kept"))) == OPEN_SHAPED
    finally:
        assert b.stop() == 0


# ---- usage counters: POST /kbs/v0/veil-usage/<model> (docs/spec/usage-policy.md §4) ----------------------------


def report_usage(s: Session, model: str, body: Any, cookie: str | None = None) -> Reply:
    """A usage report as veil-cache sends it; body: a JSON value, or bytes sent as they are."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c = s.cookie if cookie is None else cookie
    headers = {"Content-Type": "application/json"} | ({"Cookie": f"kbs-session-id={c}"} if c else {})
    return s.broker.request("POST", f"/kbs/v0/veil-usage/{model}", data, headers)


def counted(s: Session, model: str, report: dict[str, int]) -> dict[str, int]:
    plain = json.loads(s.decrypt(report_usage(s, model, {"report": report})))
    assert set(plain) == {"used"}
    return plain["used"]


def reports_metric(b: Broker) -> float:
    r = b.request("GET", "/metrics", None, {"Authorization": f"Bearer {b.admin_token}"})
    m = re.search(r"^veil_kbs_usage_reports_total (\S+)$", r.body.decode(), re.M)
    assert m is not None
    return float(m.group(1))


COUNTED = {"version": 1, "clients": [{"name": n, "api_key_sha256": hashlib.sha256(n.encode()).hexdigest()}
                                     for n in ("alice", "bob@example", "carol")]}


def test_usage_counters_add_up(broker: Broker) -> None:
    create(broker, "metered", {"version": 1, "allow_sample": True})
    assert broker.admin("PUT", "/models/metered/usage", COUNTED).status == 200
    s = attested(broker, "sample", sample_evidence)
    before = reports_metric(broker)
    start = len(broker.audit())
    assert counted(s, "metered", {}) == {}  # a read: nothing counted yet
    assert counted(s, "metered", {"alice": 3, "bob@example": 0}) == {"alice": 3}  # zero counts are not stored
    assert counted(s, "metered", {"alice": 2, "carol": 1}) == {"alice": 5, "carol": 1}
    # A second TEE (another node's cache) adds to the same counters and sees the first one's.
    t = attested(broker, "sample", sample_evidence)
    assert counted(t, "metered", {"bob@example": 7}) == {"alice": 5, "bob@example": 7, "carol": 1}
    assert broker.admin("GET", "/models/metered/usage/counters").json() == {
        "used": {"alice": 5, "bob@example": 7, "carol": 1}}
    assert reports_metric(broker) == before + 4
    # Each report that raised a count is audited (who raised which budget's counts); the read is not.
    new = [d for d in records(broker, start) if d["event"] == "usage-report"]
    assert [(d["decision"], d["reason"]) for d in new] == [
        ("count", "1 client counter(s) raised by 3 request(s)"), ("count", "2 client counter(s) raised by 3 request(s)"),
        ("count", "1 client counter(s) raised by 7 request(s)")]
    assert new[0]["model"] == "metered" and new[0]["tee"] == "sample"
    # A name the policy does not list is neither counted nor answered (a report cannot grow the counters past the
    # policy's clients); a client the owner removes stops being answered.
    assert counted(s, "metered", {"mallory": 5, "alice": 1}) == {"alice": 6, "bob@example": 7, "carol": 1}
    assert "mallory" not in broker.admin("GET", "/models/metered/usage/counters").json()["used"]
    fewer = {"version": 1, "clients": COUNTED["clients"][:2]}
    assert broker.admin("PUT", "/models/metered/usage", fewer).status == 200
    assert counted(s, "metered", {"carol": 1}) == {"alice": 6, "bob@example": 7}
    assert broker.admin("PUT", "/models/metered/usage", COUNTED).status == 200
    assert counted(s, "metered", {}) == {"alice": 6, "bob@example": 7, "carol": 1}  # kept, not counted meanwhile
    # A count never passes 2^53, the largest budget.
    assert counted(s, "metered", {"carol": 2 ** 53})["carol"] == 2 ** 53
    assert counted(s, "metered", {"carol": 5})["carol"] == 2 ** 53
    # An open model (no usage policy) has no clients: nothing is counted.
    create(broker, "metered-open", {"version": 1, "allow_sample": True})
    assert counted(s, "metered-open", {"alice": 4}) == {}
    # The admin read is 404 for no model, 400 for a malformed id; the CLI prints the counters.
    assert broker.admin("GET", "/models/no-such-model/usage/counters").status == 404
    assert broker.admin("GET", "/models/.bad/usage/counters").status == 400
    p = veil("usage", "counters", "metered", broker=broker)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"alice": 6, "bob@example": 7, "carol": 2 ** 53}
    assert_refused(veil("usage", "counters", "no-such-model", broker=broker), "404")
    assert "counters MODEL" in veil("usage", "counters", "--help").stdout


@pytest.mark.parametrize("body, why", [
    (b"not json", "not JSON"),
    ({"report": []}, "report is a list"),
    ({"report": {"alice": -1}}, "a negative count"),
    ({"report": {"alice": 1.5}}, "a fractional count"),
    ({"report": {"alice": 2 ** 53 + 1}}, "past 2^53"),
    ({"report": {"al ice": 1}}, "a name with a blank"),
    ({"report": {"": 1}}, "an empty name"),
    ({"report": {"x" * 65: 1}}, "a name of 65 characters"),
    ({"report": {f"c{i}": 1 for i in range(1025)}}, "1025 clients"),
    ({"report": {}, "extra": 1}, "an unknown member"),
    ({}, "no report"),
])
def test_usage_report_refusals(broker: Broker, body: Any, why: str) -> None:
    model = "metered-bad"
    if broker.admin("GET", f"/models/{model}").status == 404:
        create(broker, model, {"version": 1, "allow_sample": True})
        assert broker.admin("PUT", f"/models/{model}/usage", COUNTED).status == 200
    s = attested(broker, "sample", sample_evidence)
    assert counted(s, model, {"alice": 1})["alice"] >= 1
    have = broker.admin("GET", f"/models/{model}/usage/counters").json()
    start = len(broker.audit())
    r = report_usage(s, model, body)
    refused(r, 400, "SerdeError")
    assert broker.admin("GET", f"/models/{model}/usage/counters").json() == have, why  # nothing counted
    d = records(broker, start)
    assert [(e["event"], e["decision"]) for e in d] == [("usage-report", "deny")], why  # authenticated: audited


def test_usage_report_authorisation(broker: Broker, sim: dict[str, Any]) -> None:
    create(broker, "metered-strict", {"version": 1, "allow_sim": True, "sim": {"measurements": ["ab" * 48]}})
    create(broker, "metered-revoked", {"version": 1, "allow_sample": True})
    assert broker.admin("POST", "/models/metered-revoked/versions/1/revoke").status == 200
    s = attested(broker, "sample", sample_evidence)
    start = len(broker.audit())
    # The same rule as the key and the usage policy: who may not have the key may not count against its budgets.
    refused(report_usage(s, "metered-strict", {"report": {"alice": 1}}), 401, "PolicyDeny")
    refused(report_usage(s, "metered-revoked", {"report": {"alice": 1}}), 401, "PolicyDeny")
    refused(report_usage(s, "no-such-model", {"report": {"alice": 1}}), 404, "ResourceNotFound")
    audited = records(broker, start)
    assert [(e["event"], e["decision"], e["model"]) for e in audited] == [
        ("usage-report", "deny", "metered-strict"), ("usage-report", "deny", "metered-revoked"),
        ("usage-report", "deny", "no-such-model")]
    assert "revoked" in audited[1]["reason"] and audited[2]["reason"] == "unknown model"
    # Before authentication: refused, counted, not audited.
    refused(report_usage(Session(broker, "sample"), "test-0", {"report": {"alice": 1}}, cookie=""), 401,
            "TokenNotFound")
    fresh = Session(broker, "sample")
    assert fresh.auth().status == 200
    refused(report_usage(fresh, "test-0", {"report": {"alice": 1}}), 401, "TokenVerifierError")
    refused(report_usage(s, ".hidden", {"report": {"alice": 1}}), 404, "InvalidRequestPath")
    assert len(records(broker, start)) == 3
    for m in ("metered-strict", "metered-revoked"):
        assert broker.admin("GET", f"/models/{m}/usage/counters").json() == {"used": {}}
    r = broker.request("GET", "/kbs/v0/veil-usage/test-0", None, {})
    assert r.status in (404, 405)


def test_usage_counters_survive_restart(tmp_path: Path, sim: dict[str, Any]) -> None:
    b = make_broker(tmp_path, "counters", sim)
    try:
        create(b, "durable", {"version": 1, "allow_sample": True})
        assert b.admin("PUT", "/models/durable/usage", COUNTED).status == 200
        s = attested(b, "sample", sample_evidence)
        assert counted(s, "durable", {"alice": 41}) == {"alice": 41}
    finally:
        assert b.stop() == 0
    b.start()
    try:
        s = attested(b, "sample", sample_evidence)
        assert counted(s, "durable", {"alice": 1}) == {"alice": 42}
        assert b.admin("GET", "/models/durable/usage/counters").json() == {"used": {"alice": 42}}
    finally:
        assert b.stop() == 0
