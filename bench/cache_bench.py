"""The key cache benchmarks (bench/run.py calls main(); `VEIL_BENCH_ONLY=cache` runs only them): veil-kbs (--dev)
-> veil-cache (sim TEE) -> veil-runtime --cache SOCKET, set up as tests/python/test_cache.py does (the broker's release
policy pins the sim measurement of the cache, and for the direct reference also the runtime's; the cache's allow-list
pins the runtime's). One JSON line per measurement, each a ratio against a reference measured in the same run; goals
are fields ("goal", "met"), never asserted.

    cache_start_ready   veil-runtime process start -> /v2/health/ready (polled every 2 ms), one tiny model, its key
                        from veil-cache (--cache SOCKET; the cache already holds the key) vs from veil-kbs by RCAR
                        (--kbs URL). Medians of START_REPEATS starts each, taking turns. Goal <= 0.2.
    cache_key_fetch     the same starts, the key-fetch step alone: the runtime's own "model-loaded" key_fetch_us
                        (monotonic clock around its key source's fetch: from the cache, connect + peer check + local
                        attestation + KEY; from the broker, the whole RCAR exchange with sim evidence). Goal <= 0.2.
    cache_renewal_cost  the broker's CPU per lease renewal (utime + stime from /proc/PID/stat, and the sum of its
                        threads' /proc/PID/task/TID/schedstat run time, ns resolution) over RENEWALS renewals by one
                        cache holding RENEW_MODELS keys with lease_ttl_s = RENEW_TTL_S; reported per node (one key)
                        per TTL (a key is renewed at TTL/2: two renewals per TTL). Ratio against the broker's CPU per
                        key release to a runtime started with --kbs (measured during cache_start_ready). No goal is
                        set for it.
    cache_revocation    `veil kbs revoke MODEL 1` (the admin API, through the CLI) -> the runtime's first 503 on
                        /v2/models/MODEL/infer (polled every 10 ms), lease_ttl_s = REVOKE_TTL_S; REVOKE_RUNS models
                        revoked one after another at spread moments of the renewal cycle. Goal: median <= TTL + 1 s;
                        ratio = median / TTL.

Binaries: $VEIL_CACHE_BIN (default next to $VEIL_BIN), $VEIL_RUNTIME_BIN, $VEIL_KBS_BIN, $VEIL_BIN; PYTHONPATH=python.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import serve_bench  # noqa: E402
from serve_bench import (BUILD, KBS, RUNTIME, VEIL, WORK, cpu_s, free_port, goal_fields, ms,  # noqa: E402
                         sim_measurement, stop)

CACHE = Path(os.environ.get("VEIL_CACHE_BIN", BUILD / "veil-cache"))

START_REPEATS = 15
RENEW_TTL_S = 1  # the smallest lease a policy may set: renewals every 0.5 s per key
RENEW_MODELS = 6  # keys held by the one cache: 12 renewals a second
RENEWALS = 60
REVOKE_TTL_S = 2
REVOKE_RUNS = 5
TIMEOUT = 60.0
MODEL = "tiny CNN: Conv(3->4, 3x3) + ReLU + Linear(256->5), input x [1,3,8,8] (as tests/python/test_runtime.py)"
THREADS = "veil-runtime --set workers=1 --set engine_threads=1"


def emit(rec: dict) -> None:
    serve_bench.emit({**rec, "cores": os.cpu_count()})


def task_cpu_ns(pid: int) -> int:
    """Sum of the run time of the process's live threads (/proc/PID/task/*/schedstat, ns; threads that exited are
    not counted)."""
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((t / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_both(pid: int) -> tuple[float, int]:
    return cpu_s(pid), task_cpu_ns(pid)


def tiny_onnx(path: Path) -> None:
    """A small CNN classifier with a symbolic batch: input x [N,3,8,8], output y [N,5]."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 5)).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})


def events(log: Path, name: str) -> list[dict]:
    """The JSON log lines of one event (the sim TEE's banner is plain text)."""
    lines = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return [e for e in lines if e.get("event") == name]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class Setup:
    """The broker (serve_bench's Broker), the sim platform, the tiny ONNX and the two measurements."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.plat = tmp / "platform"
        subprocess.run([str(VEIL), "attest", "sim-init", "--dir", str(self.plat)], check=True, capture_output=True)
        self.onnx = tmp / "tiny.onnx"
        tiny_onnx(self.onnx)
        self.runtime_m = sim_measurement(RUNTIME)
        self.cache_m = sim_measurement(CACHE)
        self.broker = serve_bench.Broker(tmp, self.plat)
        self.token_file = self.broker.data / "admin.token"
        self.procs: list[subprocess.Popen] = [self.broker.proc]
        self.dirs: list[Path] = []

    def model(self, name: str, measurements: list[str], ttl: int | None, seal: bool = True) -> Path:
        """A model at the broker whose policy admits these measurements (lease ttl seconds), sealed with its key."""
        policy: dict = {"version": 1, "allow_sim": True, "sim": {"measurements": measurements}}
        if ttl is not None:
            policy["lease_ttl_s"] = ttl
        token = self.token_file.read_text().strip()
        status, body = request(self.broker.port, "POST", "/admin/v1/models",
                               json.dumps({"model_id": name, "policy": policy}).encode(),
                               {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if status != 201:
            raise RuntimeError(f"creating model {name} at the broker: {status}")
        sealed = self.tmp / f"{name}.veil"
        if seal:
            key = self.tmp / f"{name}.key"
            key.write_bytes(base64.b64decode(json.loads(body)["key"]))
            key.chmod(0o600)
            try:
                subprocess.run([str(VEIL), "seal", str(self.onnx), "-o", str(sealed), "--model-id", name, "--key",
                                str(key)], check=True, capture_output=True)
            finally:
                key.unlink()
        return sealed

    def cache(self, name: str, models: list[str], allow: list[str]) -> tuple[subprocess.Popen, Path, int]:
        """veil-cache holding models (MODEL@1: fetched at start), the runtime allowed for allow; waits for its
        "ready" line. Returns (process, socket, metrics port)."""
        sock_dir = Path(tempfile.mkdtemp(prefix="vcb-", dir="/tmp"))  # a socket path must be short
        self.dirs.append(sock_dir)
        sock = sock_dir / "cache.sock"
        port = free_port()
        log = self.tmp / f"cache-{name}.log"
        cmd = [str(CACHE), "--socket", str(sock), "--listen", f"127.0.0.1:{port}", "--tee", "sim", "--sim-dir",
               str(self.plat), "--kbs", self.broker.url]
        cmd += [a for m in models for a in ("--model", m)]
        cmd += [a for m in allow for a in ("--allow", f"{m}:{self.runtime_m}")]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
        self.procs.append(proc)
        deadline = time.monotonic() + TIMEOUT
        while '"event":"ready"' not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"veil-cache did not start: {log.read_text()[-2000:]}")
            time.sleep(0.01)
        return proc, sock, port

    def runtime(self, name: str, source: list[str], models: dict[str, Path]) -> tuple[subprocess.Popen, int, Path]:
        port = free_port()
        log = self.tmp / f"runtime-{name}-{port}.log"
        cmd = [str(RUNTIME), "--listen", f"127.0.0.1:{port}", "--tls", "off", "--tee", "sim", "--sim-dir",
               str(self.plat), *source, "--set", "workers=1", "--set", "engine_threads=1"]
        cmd += [a for m, p in models.items() for a in ("--model", f"{m}:{p}")]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
        self.procs.append(proc)
        return proc, port, log

    def close(self) -> None:
        for p in reversed(self.procs):
            stop(p)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def cache_metric(port: int, name: str) -> float:
    status, body = request(port, "GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"veil-cache /metrics answered {status}")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---- 1. key fetch by a starting runtime ------------------------------------------------------------------------


def start_once(s: Setup, source: list[str], sealed: Path, tag: str) -> tuple[float, int]:
    """(seconds from Popen to /v2/health/ready, the runtime's model-loaded key_fetch_us)."""
    t0 = time.perf_counter()
    proc, port, log = s.runtime(tag, source, {"tiny": sealed})
    try:
        serve_bench.wait_http(port, "/v2/health/ready", proc, log, poll_s=0.002)
        ready = time.perf_counter() - t0
    finally:
        stop(proc)
    loaded = events(log, "model-loaded")
    if len(loaded) != 1:
        raise RuntimeError(f"no model-loaded line in {log}")
    return ready, int(loaded[0]["key_fetch_us"])


def bench_start(s: Setup) -> dict:
    sealed = s.model("tiny", [s.cache_m, s.runtime_m], None)
    _, sock, _ = s.cache("start", ["tiny@1"], ["tiny"])
    sources = {"cache": ["--cache", str(sock)], "kbs": ["--kbs", s.broker.url]}
    for mode, src in sources.items():  # warm-up: page cache, the broker's store
        start_once(s, src, sealed, f"warm-{mode}")
    ready: dict[str, list[float]] = {"cache": [], "kbs": []}
    fetch: dict[str, list[int]] = {"cache": [], "kbs": []}
    broker_cpu: dict[str, list[float]] = {"cache": [0.0, 0.0], "kbs": [0.0, 0.0]}  # stat s, schedstat s
    for _ in range(START_REPEATS):
        for mode, src in sources.items():
            c0, n0 = cpu_both(s.broker.proc.pid)
            r, lm = start_once(s, src, sealed, mode)
            c1, n1 = cpu_both(s.broker.proc.pid)
            broker_cpu[mode][0] += c1 - c0
            broker_cpu[mode][1] += (n1 - n0) / 1e9
            ready[mode].append(r)
            fetch[mode].append(lm)
    common = {"model": MODEL, "repeats": START_REPEATS, "thread_budget": THREADS, "page_cache": "warm",
              "transport": "runtime <-> cache: Unix socket, sim local attestation; runtime/cache <-> broker: RCAR "
                           "over plain HTTP on loopback, sim evidence",
              "veil_process": "veil-runtime --cache SOCKET (the cache already holds the key under its lease)",
              "reference_process": "veil-runtime --kbs URL (RCAR key release from veil-kbs --dev)"}
    rc, rk = statistics.median(ready["cache"]), statistics.median(ready["kbs"])
    emit({"bench": "cache_start_ready", **common,
          "measured": "process start (Popen) -> /v2/health/ready answered 200 (polled every 2 ms)",
          "cache_ready_s": round(rc, 4), "cache_ready_all_s": [round(x, 4) for x in ready["cache"]],
          "kbs_ready_s": round(rk, 4), "kbs_ready_all_s": [round(x, 4) for x in ready["kbs"]],
          "ratio": round(rc / rk, 4), **goal_fields(rc / rk, "<=", 0.2)})
    lc, lk = statistics.median(fetch["cache"]), statistics.median(fetch["kbs"])
    emit({"bench": "cache_key_fetch", **common,
          "measured": "the runtime's model-loaded key_fetch_us: its key source's fetch, timed inside the runtime "
                      "(monotonic clock, microseconds)",
          "cache_fetch_us": lc, "cache_fetch_all_us": fetch["cache"], "kbs_fetch_us": lk,
          "kbs_fetch_all_us": fetch["kbs"],
          "broker_cpu_ms_per_start": {m: {"stat": ms(v[0] / START_REPEATS), "schedstat": ms(v[1] / START_REPEATS)}
                                      for m, v in broker_cpu.items()},
          "ratio": round(lc / lk, 4), **goal_fields(lc / lk, "<=", 0.2)})
    return {"stat_ms": broker_cpu["kbs"][0] / START_REPEATS * 1e3,
            "schedstat_ms": broker_cpu["kbs"][1] / START_REPEATS * 1e3}


# ---- 2. renewal cost on the broker -------------------------------------------------------------------------------


def bench_renewal(s: Setup, release_cpu: dict) -> None:
    pid = s.broker.proc.pid
    idle_s = 1.0
    c0, n0 = cpu_both(pid)
    time.sleep(idle_s)
    c1, n1 = cpu_both(pid)
    idle_ms_per_s = {"stat": ms((c1 - c0) / idle_s), "schedstat": ms((n1 - n0) / 1e9 / idle_s)}
    names = [f"renew-{i}" for i in range(RENEW_MODELS)]
    for n in names:
        s.model(n, [s.cache_m], RENEW_TTL_S, seal=False)
    proc, _, port = s.cache("renew", [f"{n}@1" for n in names], names)
    ok = 'veil_cache_renewals_total{result="ok"}'
    base = cache_metric(port, ok)
    deadline = time.monotonic() + TIMEOUT
    while (first := cache_metric(port, ok)) == base:  # start right after a renewal finished
        if time.monotonic() > deadline:
            raise RuntimeError("the cache renews no lease")
        time.sleep(0.002)
    t0 = time.perf_counter()
    c0, n0 = cpu_both(pid)
    while (count := cache_metric(port, ok)) < first + RENEWALS:
        if time.monotonic() > deadline:
            raise RuntimeError("the cache's renewals are too slow")
        time.sleep(0.002)
    c1, n1 = cpu_both(pid)
    elapsed = time.perf_counter() - t0
    done = count - first
    failed = {r: cache_metric(port, f'veil_cache_renewals_total{{result="{r}"}}') for r in ("denied", "failed")}
    stop(proc)
    per_stat, per_sched = (c1 - c0) * 1e3 / done, (n1 - n0) / 1e6 / done
    ref = release_cpu["schedstat_ms"]
    emit({"bench": "cache_renewal_cost", "renewals": int(done), "seconds": round(elapsed, 3),
          "keys_held": RENEW_MODELS, "lease_ttl_s": RENEW_TTL_S,
          "renewal": "a complete RCAR exchange (auth, attest with fresh sim evidence, resource) by veil-cache, plain "
                     "HTTP on loopback; due at TTL/2, so 2 renewals per key per TTL",
          "renewals_not_ok": failed,
          "broker_cpu_ms_per_renewal": round(per_stat, 3), "broker_cpu_ms_per_renewal_schedstat": round(per_sched, 3),
          "broker_idle_cpu_ms_per_s": idle_ms_per_s,
          "broker_cpu_ms_per_node_per_ttl": round(2 * per_sched, 3),
          "per_node": "one node = one cache holding one key (a node holding K keys costs K times this)",
          "broker_core_fraction_per_node": {f"ttl_{t}_s": round(2 * per_sched / (t * 1e3), 7)
                                            for t in (RENEW_TTL_S, 300)},
          "reference": "broker CPU (schedstat) per key release to a veil-runtime started with --kbs, "
                       "from cache_start_ready's starts",
          "reference_broker_cpu_ms_per_release": round(ref, 3),
          "reference_broker_cpu_ms_per_release_stat": round(release_cpu["stat_ms"], 3),
          "ratio": round(per_sched / ref, 4) if ref > 0 else None, "goal": None, "met": None})


# ---- 3. revocation -> first 503 --------------------------------------------------------------------------------


def infer_status(port: int, model: str) -> int:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32",
                                   "data": [0.5] * 192}]}).encode()
    return request(port, "POST", f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"})[0]


def bench_revocation(s: Setup) -> None:
    names = [f"rev-{i}" for i in range(REVOKE_RUNS)]
    sealed = {n: s.model(n, [s.cache_m], REVOKE_TTL_S) for n in names}
    _, sock, _ = s.cache("revoke", [f"{n}@1" for n in names], names)
    proc, port, log = s.runtime("revoke", ["--cache", str(sock)], sealed)
    serve_bench.wait_http(port, "/v2/health/ready", proc, log)
    delays, cli = [], []
    for i, name in enumerate(names):
        if infer_status(port, name) != 200:
            raise RuntimeError(f"{name} is not served before its revocation")
        time.sleep(0.15 + (i * 0.37) % 1.0)  # spread the revocations over the renewal cycle
        t0 = time.monotonic()
        subprocess.run([str(VEIL), "kbs", "revoke", name, "1", "--url", s.broker.url, "--token-file",
                        str(s.token_file)], check=True, capture_output=True)
        cli.append(time.monotonic() - t0)
        while (status := infer_status(port, name)) != 503:
            if status != 200 or time.monotonic() - t0 > REVOKE_TTL_S + 5:
                raise RuntimeError(f"{name}: {status} after its revocation, no 503 within TTL + 5 s")
            time.sleep(0.01)
        delays.append(time.monotonic() - t0)
    stop(proc)
    med, limit = statistics.median(delays), REVOKE_TTL_S + 1.0
    emit({"bench": "cache_revocation", "runs": REVOKE_RUNS, "lease_ttl_s": REVOKE_TTL_S, "model": MODEL,
          "measured": "`veil kbs revoke MODEL 1` started (admin API) -> first 503 from the runtime's "
                      "/v2/models/MODEL/infer (JSON request, polled every 10 ms); one cache and one runtime holding "
                      f"{REVOKE_RUNS} models, revoked one after another",
          "revoke_cli_s": round(statistics.median(cli), 4), "delay_s": round(med, 4),
          "delay_all_s": [round(d, 4) for d in delays], "delay_max_s": round(max(delays), 4),
          "reference": "the lease TTL", "ratio": round(med / REVOKE_TTL_S, 4),
          "all_within_goal": all(d <= limit for d in delays), **goal_fields(med, "<=", limit)})


def main() -> int:
    for exe in (VEIL, RUNTIME, KBS, CACHE):
        if not exe.exists():
            emit({"bench": "cache", "skipped": f"{exe} is not built"})
            return 0
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="veil-cache-bench-") as name:
        tmp = Path(name)
        s = Setup(tmp)
        try:
            release_cpu = bench_start(s)
            bench_renewal(s, release_cpu)
            bench_revocation(s)
        finally:
            s.close()
            logs = WORK / "cache-logs"  # the daemons' logs of the last run, for a look after a failure
            logs.mkdir(exist_ok=True)
            for old in logs.glob("*.log"):
                old.unlink()
            for log in tmp.glob("*.log"):
                shutil.move(str(log), str(logs / log.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
