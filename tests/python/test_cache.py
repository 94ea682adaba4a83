# SPDX-License-Identifier: Apache-2.0
"""veil-cache end to end: veil-kbs (--dev) -> veil-cache (sim TEE) -> veil-runtime --cache SOCKET -> KServe clients.

    * a runtime gets its key from the cache (the broker's policy pins the cache's measurement, the cache's allow-list
      pins the runtime's) and answers as `veil run --key` does; the broker sends the policy's lease_ttl_s;
    * revoking the key version, or a release policy that drops the node, stops every runtime within one TTL: the
      cache's renewal is refused, it wipes the key, the runtime's next renewal is refused and the model answers 503
      (ready and infer, KServe error body). The measured delay is printed and must stay under TTL + 3 s (scheduling);
    * broker outage: the cache keeps serving from its lease, says so in its log and metrics, and the runtime stops
      when the lease ends;
    * kill -9 of the cache under load: the runtime keeps serving until its lease ends, then 503; a restarted cache
      brings it back; a cache restarted at once never interrupts it;
    * the socket: a process of another uid, another executable, and a runtime not allowed for the model are refused;
      an independent client written here (the protocol and the sim local reports from docs/cache.md) is served
      only what its measurement allows, and malformed, replayed and wrongly bound messages get an ERROR while the
      cache keeps serving;
    * keys never reach the disk; the cache's keys are in locked memory; SIGTERM wipes them and exits 0.

Binaries: $VEIL_CACHE_BIN (default build/release/veil-cache), $VEIL_RUNTIME_BIN, $VEIL_KBS_BIN, $VEIL_BIN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from test_kbs import ROOT, TIMEOUT, Broker, free_port, make_broker
from test_runtime import RUNTIME, Runtime, infer_binary, sim_measurement, tiny_onnx, veil

CACHE = os.environ.get("VEIL_CACHE_BIN", str(Path(RUNTIME).parent / "veil-cache"))
if not Path(CACHE).exists():
    if os.environ.get("VEIL_BIN"):
        raise RuntimeError(f"veil-cache not built ({CACHE})")
    pytest.skip("veil-cache not built", allow_module_level=True)

TTL = 2  # seconds: the lease of the models revoked or dropped below
# What a refusal may take past a lease's end on a loaded 2-core machine: polling, a busy server, a slow renewal. The
# bound stays meaningful: a lease that never lapses never gives the 503 the tests wait for.
SCHED_MARGIN = 3.0
X = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)

# ---- the local protocol, written again from docs/cache.md (an independent client) ------------------------------

HELLO, CHALLENGE, ATTEST, READY, KEY_REQUEST, KEY, RENEW, LEASE, ERROR = range(1, 10)
LA_VERSION = 2
KIND_SIM = 1
ERRORS = {1: "bad-message", 2: "peer", 3: "report", 4: "not-allowed", 5: "revoked", 6: "unavailable", 7: "internal"}


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def msg(mtype: int, payload: bytes = b"") -> bytes:
    return frame(bytes([LA_VERSION, mtype]) + payload)


def report_key(sim_dir: Path) -> bytes:
    return HKDF(hashes.SHA256(), 32, b"", b"VEIL-SIM-REPORT-KEY-V1").derive((sim_dir / "platform.key").read_bytes())


def sim_report(key: bytes, target: bytes, measurement: bytes, report_data: bytes) -> bytes:
    mac = hmac.new(key, b"VEIL-SIM-LOCAL-REPORT-V1\0" + target + measurement + report_data, hashlib.sha256).digest()
    return measurement + report_data + mac


def binding(role: bytes, nonce_r: bytes, nonce_c: bytes, target_r: bytes, target_c: bytes) -> bytes:
    h = hashlib.sha512(b"VEIL-LOCAL-ATTESTATION-V1\0" + role + nonce_r + nonce_c)
    for t in (target_r, target_c):
        h.update(struct.pack("<H", len(t)) + t)
    return h.digest()


class LocalClient:
    """One connection to the cache's socket, speaking as the process that runs this test (python)."""

    def __init__(self, path: Path) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(TIMEOUT)
        self.s.connect(str(path))

    def close(self) -> None:
        self.s.close()

    def send(self, data: bytes) -> None:
        self.s.sendall(data)

    def recv(self) -> tuple[int, bytes]:
        """(type, payload) of the next message; (0, b"") when the cache closed the connection."""
        head = self._exact(4)
        if head is None:
            return 0, b""
        body = self._exact(struct.unpack("<I", head)[0])
        assert body is not None and body[0] == LA_VERSION
        return body[1], body[2:]

    def _exact(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            try:
                chunk = self.s.recv(n - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def error(self) -> str:
        t, p = self.recv()
        assert t == ERROR, (t, p)
        code, n = struct.unpack("<HB", p[:3])
        assert len(p) == 3 + n
        return ERRORS[code]

    def handshake(self, key: bytes, me: bytes) -> tuple[bytes, bytes, bytes]:
        """HELLO .. READY as a sim runtime of measurement me; returns (nonce_r, nonce_c, cache measurement)."""
        nonce_r = os.urandom(32)
        self.send(msg(HELLO, nonce_r + bytes([KIND_SIM]) + struct.pack("<H", 48) + me))
        t, p = self.recv()
        assert t == CHALLENGE, (t, p)
        nonce_c, kind, tsize = p[:32], p[32], struct.unpack("<H", p[33:35])[0]
        target_c = p[35:35 + tsize]
        rsize = struct.unpack("<H", p[35 + tsize:37 + tsize])[0]
        report_c = p[37 + tsize:]
        assert kind == KIND_SIM and tsize == 48 and rsize == len(report_c) == 144
        # the cache's report is made for us, of the identity it announced, bound to this handshake
        expect_c = binding(b"C", nonce_r, nonce_c, me, target_c)
        assert report_c == sim_report(key, me, target_c, expect_c)
        self.attest(key, me, target_c, binding(b"R", nonce_r, nonce_c, me, target_c))
        return nonce_r, nonce_c, target_c

    def attest(self, key: bytes, me: bytes, target_c: bytes, report_data: bytes) -> None:
        self.send(msg(ATTEST, bytes([KIND_SIM]) + struct.pack("<H", 144) + sim_report(key, target_c, me, report_data)))

    def ask(self, mtype: int, model: str, version: int = 1, counts: bytes = b"") -> tuple[int, bytes]:
        """KEY_REQUEST, or RENEW with a usage report (counts: a JSON count document, empty for none)."""
        tail = struct.pack("<I", len(counts)) + counts if mtype == RENEW else b""
        self.send(msg(mtype, struct.pack("<IB", version, len(model)) + model.encode() + tail))
        return self.recv()


def events(log: str, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event (the sim TEE's banner is plain text)."""
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [e for e in lines if e.get("event") == name]


def exe_measurement() -> bytes:
    """This interpreter's measurement as the cache computes it from /proc/PID/exe."""
    return bytes.fromhex(sim_measurement(Path(os.path.realpath("/proc/self/exe"))))


# ---- the daemons --------------------------------------------------------------------------------------------------


@dataclass
class Cache:
    base: Path
    socket: Path
    args: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def start(self) -> None:
        self.log = self.base / f"cache-{self.port}.log"
        seen = self.log.stat().st_size if self.log.exists() else 0
        cmd = [CACHE, "--socket", str(self.socket), "--listen", f"127.0.0.1:{self.port}", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"veil-cache exited: {self.log_text()}"
            if '"event":"ready"' in self.log.read_bytes()[seen:].decode(errors="replace"):
                return
            time.sleep(0.02)
        raise AssertionError("veil-cache did not become ready")

    def log_text(self) -> str:
        return self.log.read_text() if self.log else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        return events(self.log_text(), name)

    def metrics(self) -> dict[str, float]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=TIMEOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)


@dataclass
class Env:
    base: Path
    sock_dir: Path
    broker: Broker
    sim_dir: Path
    onnx: Path
    runtime_m: str
    cache_m: str
    keys: dict[str, bytes] = field(default_factory=dict)
    sealed: dict[str, Path] = field(default_factory=dict)
    procs: list[Any] = field(default_factory=list)

    def model(self, name: str, ttl: int | None, measurement: str | None = None) -> Path:
        """A model in the broker whose release policy admits the cache (lease ttl seconds), sealed."""
        policy: dict[str, Any] = {"version": 1, "allow_sim": True,
                                  "sim": {"measurements": [measurement or self.cache_m]}}
        if ttl is not None:
            policy["lease_ttl_s"] = ttl
        r = self.broker.admin("POST", "/models", {"model_id": name, "policy": policy})
        assert r.status == 201, r.body
        self.keys[name] = base64.b64decode(r.json()["key"])
        key = self.base / f"{name}.key"
        key.write_bytes(self.keys[name])
        key.chmod(0o600)
        sealed = self.base / f"{name}.veil"
        p = veil("seal", self.onnx, "-o", sealed, "--model-id", name, "--key", key)
        assert p.returncode == 0, p.stderr
        key.unlink()  # from here on the key exists only in the broker, the cache and the runtime
        self.sealed[name] = sealed
        return sealed

    def cache(self, *models: str, allow: list[tuple[str, str]] | None = None, extra: tuple[str, ...] = (),
              broker: Broker | None = None) -> Cache:
        sock = self.sock_dir / f"cache-{os.urandom(4).hex()}.sock"
        args = ["--tee", "sim", "--sim-dir", str(self.sim_dir), "--kbs", (broker or self.broker).url,
                "--set", "denied_retry_s=1", *extra]
        for m in models:
            args += ["--model", m]
        for model, meas in allow if allow is not None else [(m.split("@")[0], self.runtime_m) for m in models]:
            args += ["--allow", f"{model}:{meas}"]
        c = Cache(self.base, sock, args)
        c.start()
        self.procs.append(c)
        return c

    def runtime(self, cache: Cache, *models: str, expect_ready: bool = True) -> Runtime:
        args = ["--tee", "sim", "--sim-dir", str(self.sim_dir), "--cache", str(cache.socket),
                *[a for m in models for a in ("--model", f"{m}:{self.sealed[m]}")]]
        rt = Runtime(self.base, args, False)
        rt.start(expect_ready=expect_ready)
        self.procs.append(rt)
        return rt


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("cache")
    sock_dir = Path(tempfile.mkdtemp(prefix="veil-cache-", dir="/tmp"))
    sock_dir.chmod(0o755)  # another uid must reach the socket for the cache's own check to be what refuses it
    sim_dir = base / "sim"
    assert veil("attest", "sim-init", "--dir", sim_dir).returncode == 0
    onnx = base / "tiny.onnx"
    tiny_onnx(onnx)
    broker = make_broker(base, "kbs", {"pub": sim_dir / "platform.pub"})
    e = Env(base, sock_dir, broker, sim_dir, onnx, sim_measurement(Path(RUNTIME)), sim_measurement(Path(CACHE)))
    try:
        yield e
    finally:
        for p in reversed(e.procs):
            if p.proc is not None and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(timeout=TIMEOUT)
        broker.stop()
        check_no_keys_on_disk(e, [base, sock_dir])
        shutil.rmtree(sock_dir, ignore_errors=True)


def check_no_keys_on_disk(e: Env, dirs: list[Path]) -> None:
    """No file the daemons could write holds a model key, in any of the spellings it travels in."""
    spellings = [s for k in e.keys.values() for s in (k, k.hex().encode(), base64.b64encode(k),
                                                        base64.urlsafe_b64encode(k).rstrip(b"="))]
    for d in dirs:
        for f in d.rglob("*"):
            # the broker's own store holds them, sealed under its master key
            if f.is_file() and not any(part.startswith("kbs") for part in f.relative_to(d).parts):
                data = f.read_bytes()
                assert not any(s in data for s in spellings), f"a model key is in {f}"


def ok(rt: Runtime, model: str) -> int:
    return infer_binary(rt, X, path=f"/v2/models/{model}/infer").status


def wait_status(rt: Runtime, model: str, status: int, limit: float) -> float:
    """Seconds until infer answers status (polling every 20 ms); fails after limit."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if ok(rt, model) == status:
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"{model} did not answer {status} within {limit} s")


def refused_503(rt: Runtime, model: str) -> None:
    r = infer_binary(rt, X, path=f"/v2/models/{model}/infer")
    assert r.status == 503 and r.headers["content-type"].startswith("application/json")
    assert "lease" in r.json()["error"]
    r = rt.request("GET", f"/v2/models/{model}/ready")
    assert r.status == 503 and "error" in r.json()


# ---- tests ---------------------------------------------------------------------------------------------------------


def test_infer_through_cache(env: Env) -> None:
    env.model("tiny", None)
    cache = env.cache("tiny")
    rt = env.runtime(cache, "tiny")
    r = infer_binary(rt, X, path="/v2/models/tiny/infer")
    assert r.status == 200
    xp, yp = env.base / "x.npy", env.base / "y.npy"
    np.save(xp, X)
    key = env.base / "tiny.key"
    key.write_bytes(env.keys["tiny"])
    p = veil("run", env.sealed["tiny"], "--key", key, "-i", xp, "-o", yp)
    key.unlink()
    assert p.returncode == 0, p.stderr
    head_len = int(r.headers["inference-header-content-length"])
    got = np.frombuffer(r.body[head_len:], dtype=np.float32).reshape(np.load(yp).shape)
    np.testing.assert_array_equal(got, np.load(yp))
    assert rt.request("GET", "/v2/models/tiny/ready").status == 200
    # the broker's default lease when the policy names none, sent with the key and used by the cache
    fetched = cache.events("key-fetched")
    assert fetched and fetched[0]["lease_ttl_ms"] == 300_000 and fetched[0]["model_id"] == "tiny"
    m = cache.metrics()
    assert m["veil_cache_keys_held"] == 1 and m['veil_cache_local_served_total{kind="key"}'] >= 1
    # keys live in locked memory (AddressSanitizer turns mlock into a no-op: not visible in a sanitizer build)
    if b"__asan_init" not in Path(CACHE).read_bytes():
        status = Path(f"/proc/{cache.proc.pid}/status").read_text()
        assert int(re.search(r"VmLck:\s+(\d+)", status).group(1)) > 0
    assert cache.stop() == 0
    assert cache.events("keys-wiped")[-1]["keys"] == 1
    assert not cache.socket.exists()
    # the runtime keeps its lease (300 s) without the cache
    assert ok(rt, "tiny") == 200
    assert rt.stop() == 0


@pytest.mark.parametrize("how", ["revoke", "policy"])
def test_revocation_reaches_the_runtime_within_the_ttl(env: Env, how: str) -> None:
    name = f"rev-{how}"
    env.model(name, TTL)
    cache = env.cache(f"{name}@1")
    rt = env.runtime(cache, name)
    assert ok(rt, name) == 200
    assert cache.events("key-fetched")[0]["lease_ttl_ms"] == TTL * 1000
    time.sleep(0.3)
    t0 = time.monotonic()
    if how == "revoke":
        assert env.broker.admin("POST", f"/models/{name}/versions/1/revoke").status == 200
    else:  # the owner's policy no longer admits this node's cache
        other = {"version": 1, "allow_sim": True, "sim": {"measurements": ["ab" * 48]}}
        assert env.broker.admin("PUT", f"/models/{name}/policy", other).status == 200
    delay = wait_status(rt, name, 503, TTL + 2 * SCHED_MARGIN)
    print(f"\n{how}: {delay:.2f} s from the broker's answer to the runtime's first refusal (TTL {TTL} s)")
    assert delay <= TTL + SCHED_MARGIN
    refused_503(rt, name)
    assert any(e["model_id"] == name for e in cache.events("key-wiped"))
    m = cache.metrics()
    assert m['veil_cache_renewals_total{result="denied"}'] >= 1 and m["veil_cache_keys_held"] == 0
    rm = rt.request("GET", "/metrics").body.decode()
    assert re.search(r'veil_runtime_refusals_total\{reason="lease-lapsed"\} [1-9]', rm)
    time.sleep(1.2)  # it stays refused: the cache keeps answering "revoked"
    refused_503(rt, name)
    assert rt.stop() == 0 and cache.stop() == 0


def test_broker_outage_serves_until_the_lease_ends(env: Env) -> None:
    broker = make_broker(env.base, "kbs-outage", {"pub": env.sim_dir / "platform.pub"})
    policy = {"version": 1, "allow_sim": True, "sim": {"measurements": [env.cache_m]}, "lease_ttl_s": TTL}
    r = broker.admin("POST", "/models", {"model_id": "outage", "policy": policy})
    assert r.status == 201
    env.keys["outage"] = base64.b64decode(r.json()["key"])
    key = env.base / "outage.key"
    key.write_bytes(env.keys["outage"])
    assert veil("seal", env.onnx, "-o", env.base / "outage.veil", "--model-id", "outage", "--key", key).returncode == 0
    key.unlink()
    env.sealed["outage"] = env.base / "outage.veil"
    cache = env.cache("outage@1", broker=broker)
    rt = env.runtime(cache, "outage")
    assert ok(rt, "outage") == 200
    broker.kill9()
    t0 = time.monotonic()
    assert ok(rt, "outage") == 200  # served from the lease
    delay = wait_status(rt, "outage", 503, TTL + 2 * SCHED_MARGIN)
    assert delay <= TTL + SCHED_MARGIN
    refused_503(rt, "outage")
    assert cache.events("serving-from-lease"), "the cache did not say it served from its lease"
    assert cache.events("lease-expired")
    m = cache.metrics()
    assert m["veil_cache_broker_reachable"] == 0 and m['veil_cache_renewals_total{result="failed"}'] >= 1
    assert m["veil_cache_lease_expiries_total"] >= 1 and m["veil_cache_keys_held"] == 0
    assert rt.stop() == 0 and cache.stop() == 0


def test_cache_killed_under_load(env: Env) -> None:
    name = "restart"
    env.model(name, 4)
    cache = env.cache(f"{name}@1")
    rt = env.runtime(cache, name)
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            statuses.append((time.monotonic(), ok(rt, name)))

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.5)
        # killed and restarted at once: the runtime renews with the new cache, never interrupted
        cache.kill9()
        cache.start()
        time.sleep(5)
        assert statuses and all(s == 200 for _, s in statuses), "interrupted by a cache restart"
        # killed for good: served until the runtime's lease ends (at most the TTL, 4 s), then refused
        cache.kill9()
        killed = time.monotonic()
        delay = wait_status(rt, name, 503, 4 + 2 * SCHED_MARGIN)
    finally:
        stop.set()
        t.join()
    print(f"\ncache killed: the runtime served {delay:.2f} s more from its lease")
    assert delay <= 4 + SCHED_MARGIN
    assert any(ts > killed + 0.1 and s == 200 for ts, s in statuses), "not served from the lease"
    refused_503(rt, name)
    # a cache started again gives the key back: the runtime restores the model
    cache.start()
    wait_status(rt, name, 200, 5)
    assert any(e["model"] == name for e in events(rt.log_text(), "model-restored"))
    assert rt.stop() == 0 and cache.stop() == 0


def test_socket_refuses_other_processes(env: Env) -> None:
    env.model("guarded", TTL)
    env.model("other", TTL)
    # the runtime may have "guarded"; "other" only a measurement no runtime has
    cache = env.cache("guarded@1", "other", allow=[("guarded", env.runtime_m), ("other", "cd" * 48)],
                      extra=("--set", "socket_mode=0666"))
    # another executable (this python interpreter), same uid
    c = LocalClient(cache.socket)
    assert c.error() == "peer"
    c.close()
    # another uid (nobody), refused by the cache itself: the socket and its directory are open to everyone
    code = ("import socket,sys,struct; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "h=s.recv(4); b=s.recv(struct.unpack('<I',h)[0]); print(b[1], struct.unpack('<H',b[2:4])[0])")
    p = subprocess.run(["/usr/bin/python3", "-c", code, str(cache.socket)], capture_output=True, timeout=TIMEOUT,
                       preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(ERROR).encode(), b"2"]  # ERROR peer
    # a runtime whose measurement is not allowed for the model it serves gets no key and does not start
    rt = env.runtime(cache, "other", expect_ready=False)
    assert rt.proc.wait(timeout=TIMEOUT) == 1
    assert "not-allowed" in rt.log_text() and "not allowed" in rt.log_text()
    refusals = [e["reason"] for e in cache.events("local-refused")]
    assert refusals.count("peer") >= 2 and "not-allowed" in refusals
    m = cache.metrics()
    assert m['veil_cache_local_refusals_total{reason="peer"}'] >= 2
    assert cache.stop() == 0


def test_protocol_independent_client_and_bad_messages(env: Env) -> None:
    env.model("proto", TTL)
    me = exe_measurement()
    # this interpreter is allowed "decoy" (which the broker does not have), not "proto"
    cache = env.cache("proto@1", "decoy", allow=[("proto", env.runtime_m), ("decoy", me.hex())])
    rt = env.runtime(cache, "proto")
    key = report_key(env.sim_dir)

    c = LocalClient(cache.socket)
    nonce_r, nonce_c, target_c = c.handshake(key, me)
    assert c.recv()[0] == READY
    t, p = c.ask(KEY_REQUEST, "proto")
    assert t == ERROR and struct.unpack("<H", p[:2])[0] == 4  # not-allowed; the connection stays usable
    t, p = c.ask(KEY_REQUEST, "decoy")
    assert t == ERROR and struct.unpack("<H", p[:2])[0] == 5  # the broker refuses: no such model
    t, p = c.ask(RENEW, "decoy")
    assert t == ERROR and struct.unpack("<H", p[:2])[0] == 5  # remembered: the broker is not asked again
    c.close()

    def fresh() -> LocalClient:
        return LocalClient(cache.socket)

    bad: list[tuple[str, bytes]] = [
        ("empty frame", struct.pack("<I", 0)),
        ("huge frame", struct.pack("<I", 0x7FFFFFFF)),
        ("wrong version", frame(b"\x01\x01" + os.urandom(40))),
        ("unknown type", msg(42)),
        ("truncated HELLO", msg(HELLO, os.urandom(10))),
        ("HELLO of another report kind", msg(HELLO, os.urandom(32) + b"\x00\x00\x00")),
        ("trailing byte", msg(HELLO, os.urandom(32) + bytes([KIND_SIM]) + struct.pack("<H", 48) + me + b"x")),
        ("request before attestation", msg(KEY_REQUEST, struct.pack("<IB", 1, 5) + b"proto")),
        ("garbage", b"\xff" * 4 + os.urandom(60)),
    ]
    for what, data in bad:
        c = fresh()
        c.send(data)
        assert c.error() == "bad-message", what
        assert c.recv() == (0, b""), what  # and the connection is closed
        c.close()

    # a HELLO claiming another identity than the executable's
    c = fresh()
    c.send(msg(HELLO, os.urandom(32) + bytes([KIND_SIM]) + struct.pack("<H", 48) + bytes.fromhex(env.runtime_m)))
    assert c.error() == "report"
    c.close()
    # an ATTEST whose report is MACed with another key, made for another target, or bound to another handshake
    # (replayed from the first one above)
    cases = {
        "another key": lambda t, nr, nc: sim_report(os.urandom(32), t, me, binding(b"R", nr, nc, me, t)),
        "another target": lambda t, nr, nc: sim_report(key, me, me, binding(b"R", nr, nc, me, t)),
        "replayed": lambda t, nr, nc: sim_report(key, t, me, binding(b"R", nonce_r, nonce_c, me, target_c)),
        "reflected": lambda t, nr, nc: sim_report(key, t, me, binding(b"C", nr, nc, me, t)),
    }
    for what, make in cases.items():
        c = fresh()
        nr = os.urandom(32)
        c.send(msg(HELLO, nr + bytes([KIND_SIM]) + struct.pack("<H", 48) + me))
        t, p = c.recv()
        assert t == CHALLENGE
        nc, tc = p[:32], p[35:83]
        c.send(msg(ATTEST, bytes([KIND_SIM]) + struct.pack("<H", 144) + make(tc, nr, nc)))
        assert c.error() == "report", what
        c.close()

    # the cache kept serving all along: the runtime renews its leases (at half its lease) and infers
    deadline = time.monotonic() + TTL + 2 * SCHED_MARGIN
    while not cache.events("lease-granted") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.events("lease-granted"), "the runtime did not renew"
    assert ok(rt, "proto") == 200
    m = cache.metrics()
    assert m['veil_cache_local_refusals_total{reason="bad-message"}'] >= len(bad)
    assert m['veil_cache_local_refusals_total{reason="report"}'] >= 1 + len(cases)
    assert rt.stop() == 0 and cache.stop() == 0


def test_budgets_survive_restarts_and_replicas(env: Env) -> None:
    """Usage counts go runtime -> cache -> broker (docs/spec/usage-policy.md §5): a runtime restart, a cache restart
    or a second replica does not give a client a fresh budget."""
    name = "budgeted"
    env.model(name, TTL)
    api_key = "vk_" + os.urandom(16).hex()
    policy = {"version": 1, "clients": [{"name": "alice", "api_key_sha256": hashlib.sha256(api_key.encode()).hexdigest(),
                                         "budget": 6}]}
    assert env.broker.admin("PUT", f"/models/{name}/usage", policy).status == 200

    def call(rt: Runtime) -> int:
        return infer_binary(rt, X, path=f"/v2/models/{name}/infer",
                            headers={"Authorization": f"Bearer {api_key}"}).status

    def broker_counts() -> dict[str, int]:
        r = env.broker.admin("GET", f"/models/{name}/usage/counters")
        assert r.status == 200, r.body
        return r.json()["used"]

    cache = env.cache(f"{name}@1")
    rt = env.runtime(cache, name)
    assert [call(rt) for _ in range(2)] == [200, 200]
    assert rt.stop() == 0  # its last report goes to the cache
    assert any(e["model"] == name and e["ok"] for e in events(rt.log_text(), "usage-flushed"))
    assert cache.stop() == 0  # and the cache's to the broker
    assert any(e["model_id"] == name and e["ok"] for e in cache.events("usage-flushed"))
    assert broker_counts() == {"alice": 2}

    # A new cache and a new runtime start from the broker's counts: 4 left of 6.
    cache = env.cache(f"{name}@1")
    rt = env.runtime(cache, name)
    assert [call(rt) for _ in range(5)] == [200, 200, 200, 200, 429]
    reply = infer_binary(rt, X, path=f"/v2/models/{name}/infer", headers={"Authorization": f"Bearer {api_key}"})
    assert reply.status == 429 and "retry-after" not in reply.headers
    # A second replica on the same node sees the first one's usage once it is reported (here: at its stop).
    assert rt.stop() == 0
    replica = env.runtime(cache, name)
    assert call(replica) == 429
    assert replica.stop() == 0 and cache.stop() == 0
    assert broker_counts() == {"alice": 6}
    # The owner raises the budget: the next runtime serves exactly the difference.
    policy["clients"][0]["budget"] = 7
    assert env.broker.admin("PUT", f"/models/{name}/usage", policy).status == 200
    cache = env.cache(f"{name}@1")
    rt = env.runtime(cache, name)
    assert [call(rt) for _ in range(2)] == [200, 429]
    assert rt.stop() == 0 and cache.stop() == 0
    assert broker_counts() == {"alice": 7}


def test_usage_reported_at_renewal(env: Env) -> None:
    """A running runtime reports at each lease renewal and the cache at each of its own, so a runtime killed -9
    loses at most what it admitted since its last renewal."""
    name = "renewed-usage"
    env.model(name, 2)
    api_key = "vk_" + os.urandom(16).hex()
    policy = {"version": 1, "clients": [{"name": "bob", "api_key_sha256": hashlib.sha256(api_key.encode()).hexdigest(),
                                         "budget": 100}]}
    assert env.broker.admin("PUT", f"/models/{name}/usage", policy).status == 200
    cache = env.cache(f"{name}@1")
    rt = env.runtime(cache, name)
    for _ in range(3):
        assert infer_binary(rt, X, path=f"/v2/models/{name}/infer",
                            headers={"Authorization": f"Bearer {api_key}"}).status == 200
    # the runtime renews at half its lease (<= 1 s), the cache at half the 2 s TTL: wait for the broker to count 3
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if env.broker.admin("GET", f"/models/{name}/usage/counters").json()["used"] == {"bob": 3}:
            break
        time.sleep(0.1)
    assert env.broker.admin("GET", f"/models/{name}/usage/counters").json()["used"] == {"bob": 3}
    rt.proc.kill()
    rt.proc.wait(timeout=TIMEOUT)
    rt = env.runtime(cache, name)
    r = rt.request("GET", f"/v2/models/{name}", None, {})
    assert r.status == 200
    assert rt.stop() == 0 and cache.stop() == 0
    assert env.broker.admin("GET", f"/models/{name}/usage/counters").json()["used"] == {"bob": 3}

# ---- SGX: the daemons on a fake Gramine tree, up to the first EGETKEY ---------------------------------------------
#
# Two enclaves talk over TLS 1.3 on loopback with mutual EREPORTs bound to the TLS session (docs/cache.md, "SGX").
# The whole handshake with an injected report key is tests/unit/test_cache_sgx.c; here the daemons themselves run
# with tee = sgx against fake /dev/attestation trees as far as they can without SGX: the first thing each would do
# next is EGETKEY (to check the other side's REPORT), which faults outside an enclave, so no ATTEST is sent to the
# cache and no CHALLENGE to the runtime.

KIND_SGX = 2
CACHE_MRENCLAVE = bytes([0xCA]) * 32
RUNTIME_MRENCLAVE = bytes([0xA1]) * 32


def fake_gramine(root: Path, mrenclave: bytes) -> Path:
    """A /dev/attestation stand-in: this enclave's TARGETINFO and the REPORT its 'EREPORT' answers with."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "my_target_info").write_bytes(mrenclave + bytes(480))
    (root / "target_info").write_bytes(b"")
    (root / "user_report_data").write_bytes(b"")
    (root / "report").write_bytes(b"R" * 432)
    (root / "quote").write_bytes(b"\x03\x00fake quote")
    return root


def tls_client(port: int, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the certificate is ephemeral: identity comes from the REPORTs
    ctx.minimum_version = ctx.maximum_version = version
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return ctx.wrap_socket(s)


class TlsClient(LocalClient):
    """The local protocol inside a TLS 1.3 session, as a runtime in another enclave speaks it."""

    def __init__(self, port: int) -> None:  # noqa: super().__init__ connects a Unix socket
        self.s = tls_client(port)


def sgx_cache(base: Path, gramine: Path, port: int, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = base / f"cache-sgx-{port}.log"
    cmd = [CACHE, "--tee", "sgx", "--set", f"gramine_root={gramine}", "--kbs", "https://127.0.0.1:9",
           "--local-listen", f"127.0.0.1:{port}", "--listen", "", "--model", "m",
           "--allow", f"m:{RUNTIME_MRENCLAVE.hex()}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb")), log


def wait_event(proc: subprocess.Popen, log: Path, name: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited: {log.read_text()}"
        if events(log.read_text(), name):
            return
        time.sleep(0.02)
    raise AssertionError(f"no {name} event: {log.read_text()}")


def test_sgx_cache_starts_and_answers_up_to_egetkey(env: Env) -> None:
    gramine = fake_gramine(env.base / "gramine-cache", CACHE_MRENCLAVE)
    port = free_port()
    proc, log = sgx_cache(env.base, gramine, port)
    try:
        wait_event(proc, log, "ready")
        assert events(log.read_text(), "ready")[0]["tee"] == "sgx"
        # TLS 1.3 only
        with pytest.raises(ssl.SSLError):
            tls_client(port, ssl.TLSVersion.TLSv1_2)
        wait_event(proc, log, "local-refused")  # logged and counted, though nothing can be answered outside TLS
        refused = events(log.read_text(), "local-refused")[0]
        assert refused["reason"] == "bad-message" and "TLS 1.3" in refused["detail"], refused
        ti_r = RUNTIME_MRENCLAVE + bytes(480)
        seen: list[bytes] = []
        for _ in range(2):
            c = TlsClient(port)
            nonce_r = os.urandom(32)
            c.send(msg(HELLO, nonce_r + bytes([KIND_SGX]) + struct.pack("<H", 512) + ti_r))
            t, p = c.recv()
            assert t == CHALLENGE, (t, p)
            nonce_c, kind, tsize = p[:32], p[32], struct.unpack("<H", p[33:35])[0]
            target_c, rsize = p[35:35 + tsize], struct.unpack("<H", p[35 + tsize:37 + tsize])[0]
            # the cache's TARGETINFO, and the REPORT 'EREPORT' made: for our TARGETINFO, written just before
            assert kind == KIND_SGX and tsize == 512 and target_c == CACHE_MRENCLAVE + bytes(480)
            assert rsize == 432 and p[37 + tsize:] == b"R" * 432
            assert (gramine / "target_info").read_bytes() == ti_r
            rd = (gramine / "user_report_data").read_bytes()
            # 64 bytes of report data: the binding with the TLS exporter folded in, so not the Unix-socket binding
            assert len(rd) == 64 and rd != binding(b"C", nonce_r, nonce_c, ti_r, target_c)
            seen.append(rd)
            c.close()  # an ATTEST would make the cache call EGETKEY: not here
        assert seen[0] != seen[1]
        # a HELLO of another report kind inside TLS: bad-message
        c = TlsClient(port)
        c.send(msg(HELLO, os.urandom(32) + bytes([KIND_SIM]) + struct.pack("<H", 48) + bytes(48)))
        assert c.error() == "bad-message"
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
        assert events(log.read_text(), "keys-wiped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)


@pytest.mark.parametrize("extra, reason", [
    (("--set", "local_listen=10.1.2.3:7443"), "is not a loopback address"),
    (("--set", "local_listen=0.0.0.0:7443"), "is not a loopback address"),
    (("--set", "local_listen=localhost:7443"), "is not A.B.C.D:PORT"),
    (("--set", "local_listen=127.0.0.1:0"), "is not A.B.C.D:PORT"),
    (("--set", "local_listen="), "or with tee = sgx local_listen"),
    (("--socket", "/tmp/x.sock"), "takes no socket"),
    (("--allow", "m:" + "ab" * 48), "with tee = sgx each entry is"),
    (("--allow", "m:" + "ab" * 31), "is not MODEL_ID:MEASUREMENT"),
    (("--allow", "m:" + "ab" * 32 + ":9"), "is not MODEL_ID:MEASUREMENT"),
])
def test_sgx_cache_configuration_refused(env: Env, extra: tuple[str, ...], reason: str) -> None:
    gramine = fake_gramine(env.base / "gramine-cache", CACHE_MRENCLAVE)
    proc, log = sgx_cache(env.base, gramine, free_port(), *extra)
    assert proc.wait(timeout=TIMEOUT) == 2
    assert reason in log.read_text(), log.read_text()


def test_sim_cache_refuses_local_listen(env: Env) -> None:
    r = subprocess.run([CACHE, "--tee", "sim", "--sim-dir", str(env.sim_dir), "--kbs", env.broker.url,
                        "--socket", "/tmp/x.sock", "--local-listen", "127.0.0.1:7443", "--model", "m",
                        "--allow", f"m:{env.runtime_m}"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and "local_listen is the transport between SGX enclaves" in r.stderr, r.stderr


class FakeSgxCache(threading.Thread):
    """A TLS 1.3 server that reads the runtime's HELLO and refuses it (it cannot verify a REPORT without SGX)."""

    def __init__(self, base: Path) -> None:
        super().__init__(daemon=True)
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        import datetime

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-cache")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        (base / "fake-cache.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(base / "fake-cache.pem")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.hellos: list[bytes] = []
        self.versions: list[str] = []

    def run(self) -> None:
        try:
            while True:
                conn, _ = self.sock.accept()
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    self.versions.append(s.version() or "")
                    head = self._exact(s, 4)
                    self.hellos.append(self._exact(s, struct.unpack("<I", head)[0]))
                    s.sendall(msg(ERROR, struct.pack("<HB", 5, 7) + b"revoked"))
        except (OSError, struct.error):
            return

    @staticmethod
    def _exact(s: ssl.SSLSocket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data


def test_sgx_runtime_speaks_tls_and_hello_up_to_egetkey(env: Env) -> None:
    if "gram" not in env.sealed:
        env.model("gram", None)
    gramine = fake_gramine(env.base / "gramine-runtime", RUNTIME_MRENCLAVE)
    fake = FakeSgxCache(env.base)
    fake.start()
    args = ["--tee", "sgx", "--set", f"gramine_root={gramine}", "--cache", f"tls://127.0.0.1:{fake.port}",
            "--set", f"cache_measurement={CACHE_MRENCLAVE.hex()}", "--model", f"gram:{env.sealed['gram']}"]
    rt = Runtime(env.base, args, True)
    rt.start(expect_ready=False)
    assert rt.proc is not None and rt.proc.wait(timeout=TIMEOUT) == 1  # no key: it does not start
    assert "veil-cache refused (revoked)" in rt.log_text(), rt.log_text()
    # TLS 1.3, then a HELLO of kind SGX carrying this enclave's TARGETINFO
    assert fake.versions and all(v == "TLSv1.3" for v in fake.versions)
    body = fake.hellos[0]
    assert body[:2] == bytes([LA_VERSION, HELLO]) and body[34] == KIND_SGX
    assert struct.unpack("<H", body[35:37])[0] == 512 and body[37:] == RUNTIME_MRENCLAVE + bytes(480)


@pytest.mark.parametrize("extra, reason", [
    (("--cache", "tls://10.0.0.1:7443", "--set", "cache_measurement=" + "ca" * 32), "is not a loopback address"),
    (("--cache", "tls://127.0.0.1:x", "--set", "cache_measurement=" + "ca" * 32), "is not tls://A.B.C.D:PORT"),
    (("--cache", "tls://127.0.0.1:7443"), "set cache_measurement"),
    (("--cache", "tls://127.0.0.1:7443", "--set", "cache_measurement=" + "ca" * 48), "SGX identity"),
    (("--cache", "/tmp/x.sock"), "two enclaves cannot share a Unix socket"),
])
def test_sgx_runtime_configuration_refused(env: Env, extra: tuple[str, ...], reason: str) -> None:
    gramine = fake_gramine(env.base / "gramine-runtime", RUNTIME_MRENCLAVE)
    r = subprocess.run([RUNTIME, "--tee", "sgx", "--set", f"gramine_root={gramine}", "--model", "m:/nonexistent.veil",
                        *extra], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and reason in r.stderr, r.stderr


def test_sim_runtime_refuses_tls_cache(env: Env) -> None:
    r = subprocess.run([RUNTIME, "--tee", "sim", "--sim-dir", str(env.sim_dir), "--model", "m:/nonexistent.veil",
                        "--cache", "tls://127.0.0.1:7443"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and "the TLS transport is for two SGX enclaves" in r.stderr, r.stderr
