"""The serving benchmarks (bench/run.py calls main(); `make bench`): veil-runtime serving sealed models over KServe
v2 REST on loopback, its key released by `veil-kbs --dev` to a simulated TEE (the broker's policy pins the sim
measurement of the veil-runtime binary, as in tests/python/test_runtime.py). One JSON line per measurement, each a
ratio against a reference measured in the same run; goals are fields ("goal", "met"), never asserted.

    serve_latency    ResNet-50 and EfficientNet-Lite0, batch 1, binary tensors over one keep-alive HTTP/1.1
                     connection (http.client, plain HTTP: --tls off), p50 and p99 over LATENCY[model] requests after
                     warm-up, vs the faster of PyTorch eager and onnxruntime in-process on the same input (one line
                     per percentile; goals <= 1.05 at p50, <= 1.20 at p99). The in-process measurements are
                     bench/engine_bench.py serve processes (bench/run.py's Server); they, the runtime and the KServe
                     server (for information) take turns in rounds, so other load on the machine hits all alike.
    serve_overhead   served p50 minus Veil's own engine in-process (veil.Engine over ctypes) p50, ms. Goal <= 0.5.
    serve_throughput ResNet-50 requests/s with 1, 4 and 16 concurrent clients (threads, one keep-alive connection
                     each, binary tensors; THROUGHPUT_S-second windows after a warm-up) vs the KServe Python model
                     server (PyPI kserve, a kserve.Model subclass serving the same PyTorch model with the v2
                     protocol). Server and client CPU per request are in the line. Goal >= 1.8.
    serve_cold_start process start -> key released -> first inference answered, vs a plain Python script that
                     imports torch, builds ResNet-50, torch.loads its state dict and answers one inference. Medians.
                     Goal <= 0.2.
    serve_peak_rss   VmHWM of the runtime serving ResNet-50 after the latency run vs the KServe server's VmHWM after
                     the same run. Goal <= 0.35.

Thread budget, the same everywhere: veil-runtime --set workers=1 --set engine_threads=2; torch.set_num_threads(2);
onnxruntime intra-op 2, inter-op 1; veil.Engine threads=2.

kserve pins protobuf < 7 (this venv has protobuf 7) and brings ~50 packages (an anyio pytest plugin among them), so
it is not installed into the test venv: the first run creates $VEIL_KSERVE_VENV (default ~/.cache/veil/kserve-venv)
with kserve==KSERVE_VERSION and this venv's numpy version, and a .pth that appends this venv's site-packages (for
torch and torchvision, which are not installed twice) after its own. When that cannot be done, the KServe
comparisons are skipped with the reason.

    serve_bench.py                                    all of the above
    serve_bench.py kserve-server NAME STATE PORT THREADS   (run by the KServe venv's python) the reference server
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engine_bench  # noqa: E402
import run as bench_run  # noqa: E402

ROOT = HERE.parent
WORK = ROOT / "build" / "bench"
BUILD = Path(os.environ["VEIL_BIN"]).resolve().parent if os.environ.get("VEIL_BIN") else ROOT / "build" / "release"
VEIL = Path(os.environ.get("VEIL_BIN", BUILD / "veil"))
RUNTIME = Path(os.environ.get("VEIL_RUNTIME_BIN", BUILD / "veil-runtime"))
KBS = Path(os.environ.get("VEIL_KBS_BIN", BUILD / "veil-kbs"))

KSERVE_VERSION = "0.21.0"
KSERVE_VENV = Path(os.environ.get("VEIL_KSERVE_VENV", Path.home() / ".cache" / "veil" / "kserve-venv"))

THREADS = bench_run.ENGINE_THREADS  # the in-process servers (bench/run.py's Server) use this many
# model -> (requests per participant after warm-up, requests per round): ResNet-50 takes ~40-100 ms a run on this
# 2-core machine (more when other work shares the cores) and five participants take turns, so it gets fewer
# requests (its p99 is then their maximum).
LATENCY = {"resnet50": (50, 10), "efficientnet_lite0": (200, 25)}
WARMUP = 5
# Fixed-length windows: the throughput runs take the same time whatever the model.
THROUGHPUT_MODEL = "resnet50"
THROUGHPUT_CLIENTS = (1, 4, 16)
THROUGHPUT_WARMUP_S = 2.0
THROUGHPUT_S = 8.0
COLD_REPEATS = 3
TIMEOUT = 180.0
IDLE_S = 0.25  # after each round, as engine_bench.py serve: spinning worker threads fall asleep

THREAD_BUDGET = {"veil_runtime": f"--set workers=1 --set engine_threads={THREADS}",
                 "veil_engine": f"veil.Engine threads={THREADS}", "pytorch": f"torch.set_num_threads({THREADS})",
                 "onnxruntime": f"intra_op_num_threads={THREADS}, inter_op_num_threads=1",
                 "kserve": f"torch.set_num_threads({THREADS}), one uvicorn worker, synchronous predict"}
KSERVE_NOTE = (f"kserve {KSERVE_VERSION} as shipped: InferRequest.from_bytes turns each binary input tensor into a "
               "Python list (set_data_from_numpy(binary_data=False)) before predict; that cost is part of its "
               "measurement")
TRANSPORT = "HTTP/1.1 keep-alive on loopback, plain HTTP (veil-runtime --tls off), binary tensors, http.client"


def emit(rec: dict) -> None:
    """One JSON line; with the machine's 1-minute load average (other work on the shared cores shows in p99)."""
    bench_run.emit({**rec, "machine_loadavg_1m": round(os.getloadavg()[0], 2)})


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def goal_fields(value: float, op: str, goal: float) -> dict:
    met = value <= goal if op == "<=" else value >= goal
    return {"goal": f"{op}{goal}", "met": bool(met)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def bench_input() -> np.ndarray:
    """engine_bench.py serve's input: the in-process and served runs see the same tensor."""
    return np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)


def sim_measurement(exe: Path) -> str:
    """The sim TEE's measurement of a program without a measured config (lib/attest/tees/sim.c)."""
    h = hashlib.sha384(b"VEIL-SIM-MEASUREMENT-V1\0")
    data = exe.read_bytes()
    h.update(len(data).to_bytes(8, "little") + data)
    h.update((0).to_bytes(8, "little"))
    return h.hexdigest()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the processes ---------------------------------------------------------------------------------------------


def wait_http(port: int, path: str, proc: subprocess.Popen, log: Path, poll_s: float = 0.005) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(poll_s)
    raise RuntimeError(f"{proc.args[0]} not ready after {TIMEOUT} s")


class Broker:
    """`veil-kbs --dev` trusting a fresh simulation platform; models are created through its admin API."""

    def __init__(self, tmp: Path, plat: Path) -> None:
        self.port = free_port()
        self.data = tmp / "kbs"
        self.log = tmp / "kbs.log"
        self.proc = subprocess.Popen([str(KBS), "--dev", "--listen", f"127.0.0.1:{self.port}", "--data",
                                      str(self.data), "--sim-key", str(plat / "platform.pub"), "--set",
                                      "rate_limit_per_s=0"], stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"veil-kbs did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_model(self, model_id: str, measurement: str) -> bytes:
        token = (self.data / "admin.token").read_text().strip()
        policy = {"version": 1, "allow_sim": True, "sim": {"measurements": [measurement]}}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/admin/v1/models", json.dumps({"model_id": model_id, "policy": policy}),
                         {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        if r.status != 201:
            raise RuntimeError(f"creating model {model_id} at the broker: {r.status}")
        return base64.b64decode(json.loads(body)["key"])


class Runtime:
    """veil-runtime on loopback, plain HTTP, sim TEE, one model; started at construction."""

    def __init__(self, tmp: Path, broker: Broker, plat: Path, name: str, sealed: Path) -> None:
        self.port = free_port()
        self.name = name
        self.log = tmp / f"runtime-{name}-{self.port}.log"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(RUNTIME), "--listen", f"127.0.0.1:{self.port}", "--tls", "off", "--tee", "sim", "--sim-dir",
             str(plat), "--kbs", broker.url, "--model", f"{name}:{sealed}", "--set", "workers=1", "--set",
             f"engine_threads={THREADS}"], stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))

    def wait_ready(self) -> float:
        wait_http(self.port, "/v2/health/ready", self.proc, self.log)
        return time.perf_counter() - self.started


class KServeServer:
    """The reference: this file's kserve-server mode under the KServe venv's python, one model; started at
    construction. (kserve's REST server binds 0.0.0.0; the clients use loopback.)"""

    def __init__(self, python: Path, tmp: Path, name: str, state: Path) -> None:
        self.port = free_port()
        self.name = name
        self.log = tmp / f"kserve-{name}.log"
        self.started = time.perf_counter()
        self.start_s = 0.0
        self.proc = subprocess.Popen([str(python), str(Path(__file__).resolve()), "kserve-server", name, str(state),
                                      str(self.port), str(THREADS)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "wb"), cwd=str(tmp))

    def wait_ready(self) -> None:
        wait_http(self.port, f"/v2/models/{self.name}/ready", self.proc, self.log, poll_s=0.05)
        self.start_s = time.perf_counter() - self.started


# ---- the client ------------------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection sending the same binary-tensor v2 request again and again."""

    def __init__(self, port: int, model: str, input_name: str, x: np.ndarray) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        head = json.dumps({"inputs": [{"name": input_name, "shape": list(x.shape), "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "parameters": {"binary_data_output": True}}, separators=(",", ":")).encode()
        self.body = head + x.tobytes()
        self.headers = {"Inference-Header-Content-Length": str(len(head)),
                        "Content-Type": "application/octet-stream"}
        self.path = f"/v2/models/{model}/infer"
        self.reconnects = 0

    def infer(self) -> tuple[http.client.HTTPResponse, bytes]:
        """One request; a keep-alive connection the server closed meanwhile is reopened once (as HTTP clients do)
        and counted in .reconnects, the reconnection inside the request's time."""
        for attempt in (0, 1):
            try:
                self.conn.request("POST", self.path, self.body, self.headers)
                r = self.conn.getresponse()
                body = r.read()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as e:
                self.conn.close()
                if attempt:
                    raise RuntimeError(f"{self.path} on port {self.conn.port}: {e!r}, also on a new connection") from e
                self.reconnects += 1
        if r.status != 200:
            raise RuntimeError(f"{self.path}: HTTP {r.status}: {body[:300]!r}")
        return r, body

    def output(self) -> np.ndarray:
        r, body = self.infer()
        n = int(r.getheader("Inference-Header-Content-Length"))
        out = json.loads(body[:n])["outputs"][0]
        return np.frombuffer(body[n:], dtype="<f4").reshape(out["shape"])

    def close(self) -> None:
        self.conn.close()


class HttpParticipant:
    """A served participant of the latency rounds, with run.Server's interface."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.times: list[float] = []

    def command(self, text: str) -> None:
        words = text.split()
        times = []
        for _ in range(int(words[-1])):
            t = time.perf_counter()
            self.client.infer()
            times.append(time.perf_counter() - t)
        time.sleep(IDLE_S)
        if words[0] != "W":
            self.times += times

    def close(self) -> None:
        self.client.close()


def model_input_name(port: int, model: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", f"/v2/models/{model}")
        r = conn.getresponse()
        meta = json.loads(r.read())
    finally:
        conn.close()
    return meta["inputs"][0]["name"]


# ---- preparation -----------------------------------------------------------------------------------------------


def prepare_models(tmp: Path, broker: Broker) -> dict[str, Path]:
    """ONNX exports (engine_bench.py prepare, cached in build/bench), each sealed under a key the broker created."""
    measurement = sim_measurement(RUNTIME)
    sealed = {}
    for name in LATENCY:
        subprocess.run([sys.executable, str(HERE / "engine_bench.py"), "prepare", name], check=True,
                       capture_output=True)
        key = tmp / f"{name}.key"
        key.write_bytes(broker.create_model(f"serve-{name}", measurement))
        key.chmod(0o600)
        sealed[name] = tmp / f"{name}.veil"
        subprocess.run([str(VEIL), "seal", str(engine_bench.onnx_path(name)), "-o", str(sealed[name]),
                        "--model-id", f"serve-{name}", "--key", str(key)], check=True, capture_output=True)
    return sealed


def prepare_state(name: str) -> Path:
    """The PyTorch state dict of the same seeded model (engine_bench.module), for KServe and the cold start."""
    state = WORK / f"{name}.pt"
    if not state.exists():
        tmp = state.with_suffix(".pt.tmp")
        subprocess.run([sys.executable, "-c", "import sys, torch; sys.path.insert(0, sys.argv[1]); "
                        "import engine_bench; torch.save(engine_bench.module(sys.argv[2]).state_dict(), sys.argv[3])",
                        str(HERE), name, str(tmp)], check=True, capture_output=True)
        tmp.rename(state)
    return state


def kserve_python() -> tuple[Path | None, str]:
    """The KServe venv's python (created on first use), or None and why not."""
    py = KSERVE_VENV / "bin" / "python"
    probe = ["-c", "import importlib.metadata as m, kserve, torch, torchvision; print(m.version('kserve'))"]

    def ready() -> bool:
        if not py.exists():
            return False
        p = subprocess.run([str(py), *probe], capture_output=True, text=True)
        return p.returncode == 0 and p.stdout.strip() == KSERVE_VERSION

    if ready():
        return py, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(KSERVE_VENV)], check=True, capture_output=True, text=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"kserve=={KSERVE_VERSION}", f"numpy=={np.__version__}"], check=True, capture_output=True,
                       text=True, timeout=900)
        import sysconfig

        theirs = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip()
        (Path(theirs) / "zz-veil-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = (getattr(e, "stderr", "") or str(e)).strip().splitlines()
        return None, f"kserve=={KSERVE_VERSION} could not be installed into {KSERVE_VENV}: {detail[-1:]}"
    if not ready():
        return None, f"kserve=={KSERVE_VERSION} installed into {KSERVE_VENV} but does not import with torch"
    return py, ""


# ---- the measurements ------------------------------------------------------------------------------------------


def stats(times: list[float]) -> dict:
    return {"p50": statistics.median(times), "p99": bench_run.percentile(times, 0.99), "min": min(times)}


def latency_rounds(participants: dict, requests: int, per_round: int) -> dict[str, dict]:
    for p in participants.values():
        p.command(f"W {WARMUP}")
    for _ in range(requests // per_round):
        for p in participants.values():
            p.command(str(per_round))
    return {k: stats(p.times) for k, p in participants.items()}


def bench_latency(name: str, rt: Runtime, x: np.ndarray, kserve: KServeServer | None) -> dict:
    input_name = model_input_name(rt.port, name)
    participants: dict = {"served": HttpParticipant(Client(rt.port, name, input_name, x))}
    agree = None
    if kserve is not None:
        participants["kserve"] = HttpParticipant(Client(kserve.port, name, input_name, x))
        a, b = participants["served"].client.output(), participants["kserve"].client.output()
        agree = bool(a.shape == b.shape and np.max(np.abs(a - b)) <= 1e-3 * max(1.0, float(np.max(np.abs(b)))))
    for fw in ("veil", "torch", "ort"):
        participants[fw] = bench_run.Server(fw, name, 1)
    try:
        res = latency_rounds(participants, *LATENCY[name])
    finally:
        for p in participants.values():
            p.close()
    common = {"model": name, "batch": 1, "clients": 1, "requests": LATENCY[name][0], "warmup": WARMUP,
              "threads": THREADS, "thread_budget": THREAD_BUDGET, "cores": os.cpu_count(), "transport": TRANSPORT,
              "veil_served": "veil-runtime, sealed model, key by RCAR from veil-kbs --dev (sim TEE)",
              "in_process": "bench/engine_bench.py serve processes, timed in-process from Python",
              "reconnects": {k: p.client.reconnects for k, p in participants.items() if isinstance(p, HttpParticipant)}}
    if agree is not None:
        common["served_output_matches_kserve_pytorch"] = agree
    names = {"torch": "pytorch", "ort": "onnxruntime"}
    for q, goal in (("p50", 1.05), ("p99", 1.20)):
        ref = min(("torch", "ort"), key=lambda fw: res[fw][q])
        ratio = res["served"][q] / res[ref][q]
        rec = {"bench": "serve_latency", "percentile": q, **common, "reference": names[ref],
               f"veil_served_{q}_ms": ms(res["served"][q]), f"pytorch_{q}_ms": ms(res["torch"][q]),
               f"onnxruntime_{q}_ms": ms(res["ort"][q]), f"veil_engine_{q}_ms": ms(res["veil"][q]),
               "veil_served_min_ms": ms(res["served"]["min"]), "pytorch_min_ms": ms(res["torch"]["min"]),
               "onnxruntime_min_ms": ms(res["ort"]["min"]), "veil_engine_min_ms": ms(res["veil"]["min"])}
        if "kserve" in res:
            rec[f"kserve_served_{q}_ms"] = ms(res["kserve"][q])
        emit({**rec, "ratio": round(ratio, 4), **goal_fields(ratio, "<=", goal)})
    overhead = (res["served"]["p50"] - res["veil"]["p50"]) * 1e3
    emit({"bench": "serve_overhead", **common, "reference": "veil.Engine in-process (ctypes), same model",
          "veil_served_p50_ms": ms(res["served"]["p50"]), "veil_engine_p50_ms": ms(res["veil"]["p50"]),
          "overhead_min_ms": round((res["served"]["min"] - res["veil"]["min"]) * 1e3, 3),
          "overhead_p50_ms": round(overhead, 3), "unit": "ms", **goal_fields(round(overhead, 3), "<=", 0.5)})
    return res


def load(port: int, model: str, input_name: str, x: np.ndarray, clients: int, seconds: float, pid: int) -> dict:
    """`clients` threads, one keep-alive connection each, back to back for `seconds`; requests/s over the span."""
    conns = [Client(port, model, input_name, x) for _ in range(clients)]
    times: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(i: int) -> None:
        barrier.wait()
        try:
            while time.perf_counter() < deadline[0]:
                t = time.perf_counter()
                conns[i].infer()
                times[i].append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - reported in the JSON line
            errors.append(str(e)[:200])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    server_cpu, client_cpu = cpu_s(pid), time.process_time()
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    span = time.perf_counter() - start
    server_cpu, client_cpu = cpu_s(pid) - server_cpu, time.process_time() - client_cpu
    for c in conns:
        c.close()
    if errors:
        raise RuntimeError(f"load with {clients} clients: {errors[0]}")
    flat = [t for ts in times for t in ts]
    return {"requests": len(flat), "seconds": span, "rps": len(flat) / span, **stats(flat),
            "reconnects": sum(c.reconnects for c in conns), "server_cpu_ms": server_cpu * 1e3 / len(flat),
            "client_cpu_ms": client_cpu * 1e3 / len(flat)}


def bench_throughput(rt: Runtime, kserve: KServeServer | None, skip: str, x: np.ndarray) -> None:
    name = THROUGHPUT_MODEL
    input_name = model_input_name(rt.port, name)
    common = {"bench": "serve_throughput", "model": name, "batch": 1, "threads": THREADS,
              "thread_budget": THREAD_BUDGET, "cores": os.cpu_count(), "transport": TRANSPORT,
              "clients_are": "threads of one Python process, one keep-alive connection each, on the same cores",
              "seconds": THROUGHPUT_S, "warmup_s": THROUGHPUT_WARMUP_S}
    for clients in THROUGHPUT_CLIENTS:
        servers = {"veil": rt.proc} | ({"kserve": kserve.proc} if kserve is not None else {})
        ports = {"veil": rt.port} | ({"kserve": kserve.port} if kserve is not None else {})
        res = {}
        for who, proc in servers.items():
            load(ports[who], name, input_name, x, clients, THROUGHPUT_WARMUP_S, proc.pid)
            res[who] = load(ports[who], name, input_name, x, clients, THROUGHPUT_S, proc.pid)
            time.sleep(IDLE_S)
        rec = {**common, "clients": clients, "veil_requests": res["veil"]["requests"],
               "veil_rps": round(res["veil"]["rps"], 3), "veil_p50_ms": ms(res["veil"]["p50"]),
               "veil_p99_ms": ms(res["veil"]["p99"]), "veil_reconnects": res["veil"]["reconnects"],
               "veil_server_cpu_ms_per_request": round(res["veil"]["server_cpu_ms"], 3),
               "veil_client_cpu_ms_per_request": round(res["veil"]["client_cpu_ms"], 3)}
        if kserve is None:
            emit({**rec, "skipped": skip, "reference": None, "goal": ">=1.8", "met": None})
            continue
        ratio = res["veil"]["rps"] / res["kserve"]["rps"]
        emit({**rec, "reference": f"kserve {KSERVE_VERSION} Python model server (PyTorch eager)",
              "kserve_requests": res["kserve"]["requests"], "kserve_rps": round(res["kserve"]["rps"], 3),
              "kserve_p50_ms": ms(res["kserve"]["p50"]), "kserve_p99_ms": ms(res["kserve"]["p99"]),
              "kserve_reconnects": res["kserve"]["reconnects"],
              "kserve_server_cpu_ms_per_request": round(res["kserve"]["server_cpu_ms"], 3),
              "kserve_client_cpu_ms_per_request": round(res["kserve"]["client_cpu_ms"], 3),
              "kserve_note": KSERVE_NOTE,
              "ratio": round(ratio, 4), **goal_fields(ratio, ">=", 1.8)})


TORCH_SCRIPT = """
import sys
import numpy as np
import torch
import torchvision
torch.set_num_threads(int(sys.argv[3]))
model = torchvision.models.resnet50(weights=None).eval()
model.load_state_dict(torch.load(sys.argv[1], weights_only=True))
with torch.inference_mode():
    y = model(torch.from_numpy(np.load(sys.argv[2])))
print(int(y.argmax()), flush=True)
"""


def cold_torch(state: Path, x_path: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", TORCH_SCRIPT, str(state), str(x_path), str(THREADS)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    t = time.perf_counter() - t0
    if p.wait() != 0 or not line.strip():
        raise RuntimeError("the PyTorch cold-start script failed")
    return t


def cold_veil(tmp: Path, broker: Broker, plat: Path, sealed: Path, x: np.ndarray) -> tuple[float, float]:
    rt = Runtime(tmp, broker, plat, "resnet50", sealed)
    try:
        ready = rt.wait_ready()
        c = Client(rt.port, "resnet50", model_input_name(rt.port, "resnet50"), x)
        c.infer()
        first = time.perf_counter() - rt.started
        c.close()
    finally:
        stop(rt.proc)
    return ready, first


def bench_cold_start(tmp: Path, broker: Broker, plat: Path, sealed: Path, state: Path, x: np.ndarray) -> None:
    x_path = tmp / "input.npy"
    np.save(x_path, x)
    cold_torch(state, x_path)  # page cache warm for both (the sealed file was read by the latency run)
    veil_ready, veil_first, torch_first = [], [], []
    for _ in range(COLD_REPEATS):
        r, f = cold_veil(tmp, broker, plat, sealed, x)
        veil_ready.append(r)
        veil_first.append(f)
        torch_first.append(cold_torch(state, x_path))
    v, t = statistics.median(veil_first), statistics.median(torch_first)
    emit({"bench": "serve_cold_start", "model": "resnet50", "batch": 1, "threads": THREADS,
          "thread_budget": THREAD_BUDGET, "cores": os.cpu_count(), "repeats": COLD_REPEATS, "page_cache": "warm",
          "veil_process": "veil-runtime start -> RCAR key release from veil-kbs --dev (sim) -> open + decrypt + plan "
                          "-> /v2/health/ready (polled every 5 ms) -> one binary infer over HTTP answered",
          "reference_process": "python -c: import torch, torchvision; build resnet50; load_state_dict(torch.load("
                               "state dict file)); one inference printed",
          "veil_ready_s": round(statistics.median(veil_ready), 4), "veil_first_inference_s": round(v, 4),
          "veil_first_inference_all_s": [round(s, 4) for s in veil_first],
          "torch_first_inference_s": round(t, 4), "torch_first_inference_all_s": [round(s, 4) for s in torch_first],
          "ratio": round(v / t, 4), **goal_fields(v / t, "<=", 0.2)})


def bench_rss(rt: Runtime, kserve: KServeServer | None, skip: str) -> None:
    veil = vm_hwm_kib(rt.proc.pid) * 1024
    rec = {"bench": "serve_peak_rss", "model": "resnet50", "batch": 1, "threads": THREADS,
           "thread_budget": THREAD_BUDGET, "cores": os.cpu_count(),
           "after": f"the serve_latency run ({WARMUP} warm-up + {LATENCY['resnet50'][0]} requests, one connection)",
           "veil_process": "veil-runtime serving the sealed ResNet-50 only", "veil_peak_rss_bytes": veil}
    if kserve is None:
        emit({**rec, "skipped": skip, "reference": None, "goal": "<=0.35", "met": None})
        return
    ref = vm_hwm_kib(kserve.proc.pid) * 1024
    emit({**rec, "reference": f"kserve {KSERVE_VERSION} model server process serving ResNet-50 (PyTorch eager)",
          "kserve_peak_rss_bytes": ref, "kserve_start_s": round(kserve.start_s, 3),
          "ratio": round(veil / ref, 4), **goal_fields(veil / ref, "<=", 0.35)})


def main() -> int:
    for exe in (VEIL, RUNTIME, KBS):
        if not exe.exists():
            emit({"bench": "serve", "skipped": f"{exe} is not built"})
            return 0
    WORK.mkdir(parents=True, exist_ok=True)
    x = bench_input()
    kpy, skip = kserve_python()
    with tempfile.TemporaryDirectory(prefix="veil-serve-bench-") as name:
        tmp = Path(name)
        plat = tmp / "platform"
        subprocess.run([str(VEIL), "attest", "sim-init", "--dir", str(plat)], check=True, capture_output=True)
        broker = Broker(tmp, plat)
        procs: list[subprocess.Popen] = []
        try:
            sealed = prepare_models(tmp, broker)
            states = {model: prepare_state(model) for model in LATENCY}
            runtimes = {model: Runtime(tmp, broker, plat, model, sealed[model]) for model in LATENCY}
            procs += [rt.proc for rt in runtimes.values()]
            kservers: dict[str, KServeServer] = {}
            if kpy is not None:
                kservers = {model: KServeServer(kpy, tmp, model, states[model]) for model in LATENCY}
                procs += [k.proc for k in kservers.values()]
            for rt in runtimes.values():
                rt.wait_ready()
            for model, k in list(kservers.items()):
                try:
                    k.wait_ready()
                except RuntimeError as e:
                    skip = f"the kserve model server did not start: {str(e)[-300:]}"
                    stop(k.proc)
                    del kservers[model]
            for model in LATENCY:
                bench_latency(model, runtimes[model], x, kservers.get(model))
                if model == "resnet50":
                    bench_rss(runtimes[model], kservers.get(model), skip)
                if model != THROUGHPUT_MODEL:  # free the cores and memory for what follows
                    stop(runtimes[model].proc)
                    if model in kservers:
                        stop(kservers[model].proc)
            bench_throughput(runtimes[THROUGHPUT_MODEL], kservers.get(THROUGHPUT_MODEL), skip, x)
            for p in procs:
                stop(p)
            bench_cold_start(tmp, broker, plat, sealed["resnet50"], states["resnet50"], x)
        finally:
            for p in procs:
                stop(p)
            stop(broker.proc)
            logs = WORK / "serve-logs"  # the servers' logs of the last run, for a look after a failure
            logs.mkdir(exist_ok=True)
            for old in logs.glob("*.log"):
                old.unlink()
            for log in tmp.glob("*.log"):
                shutil.move(str(log), str(logs / log.name))
    return 0


# ---- the reference server (run by the KServe venv's python) ------------------------------------------------------


def kserve_server(name: str, state: str, port: int, threads: int) -> None:
    import kserve
    import torch
    from kserve import InferOutput, InferRequest, InferResponse

    class TorchModel(kserve.Model):
        def __init__(self) -> None:
            super().__init__(name)
            self.model = None
            self.load()

        def load(self) -> bool:
            torch.set_num_threads(threads)
            model = engine_bench.module(name)
            model.load_state_dict(torch.load(state, weights_only=True))
            self.model = model
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
            x = payload.inputs[0].as_numpy()
            with torch.inference_mode():
                y = self.model(torch.from_numpy(x)).numpy()
            out = InferOutput(name="output", shape=list(y.shape), datatype="FP32")
            out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
            return InferResponse(response_id=payload.id or "", model_name=name, infer_outputs=[out],
                                 use_binary_outputs=payload.use_binary_outputs)

    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False).start(
        [TorchModel()])


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "kserve-server":
        kserve_server(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    sys.exit(main())
