"""`make demo`: the owner's side of Veil, end to end, on a real torchvision ResNet-18.

1. make a model key; 2. export and seal the model from PyTorch in memory (plaintext ONNX never touches disk);
3. inspect the sealed file without the key; 4. show that no weight appears in it; 5. unseal with the key and
check every tensor is bit-identical; 6. rotate the key without re-encrypting; 7. show that a modified file and
a wrong key are refused; 8. run the sealed model's whole graph in Veil's oneDNN engine and compare with PyTorch;
9. key release: a development key broker (veil-kbs --dev) generates the model key and holds it under a release
policy; the model, sealed under that key, runs in a *simulated* TEE that attests to the broker (RCAR) and
receives the key in memory only: first refused (the policy names another measurement), then released once the
owner sets the right one. The simulation TEE protects nothing: it shows the protocol, not the protection.
(The node cache and the serving runtime arrive with later work.)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VEIL = os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil"))
KBS = os.environ.get("VEIL_KBS_BIN", str(ROOT / "build" / "release" / "veil-kbs"))
WORK = ROOT / "build" / "demo"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run_veil(*args: str, check: bool = True, echo: bool = True) -> subprocess.CompletedProcess[str]:
    print("$ veil " + " ".join(args), flush=True)
    proc = subprocess.run([VEIL, *args], capture_output=True, text=True)
    if echo:
        sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: veil {args[0]} failed with exit code {proc.returncode}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(data: Path, sim_pub: Path) -> tuple[subprocess.Popen[bytes], str]:
    """veil-kbs --dev on a free loopback port; its log goes to DATA.log."""
    port = free_port()
    cmd = [KBS, "--dev", "--listen", f"127.0.0.1:{port}", "--data", str(data), "--sim-key", str(sim_pub)]
    print("$ veil-kbs " + " ".join(cmd[1:]) + f"   (log: {data.name}.log)", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{data}.log", "wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: veil-kbs exited with {proc.returncode}; see {data}.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("demo: veil-kbs did not start listening")


def key_release(sealed: Path, key: Path, photo: Path, torch_logits: np.ndarray) -> None:
    """Step 9: the broker generates and holds the key; a simulated TEE attests and receives it."""
    kbs_data, sim_dir = WORK / "kbs", WORK / "sim"
    for d in (kbs_data, sim_dir):
        shutil.rmtree(d, ignore_errors=True)
    print("SIMULATION TEE: its 'platform key' is a file on this machine, so this protects nothing; it runs the "
          "real protocol and policy checks that an SGX, TDX or SEV-SNP TEE would pass with hardware evidence.")
    run_veil("attest", "sim-init", "--dir", str(sim_dir))
    broker, url = start_broker(kbs_data, sim_dir / "platform.pub")
    try:
        admin = ["--url", url, "--token-file", str(kbs_data / "admin.token")]
        evidence = WORK / "sim-evidence.json"
        run_veil("attest", "collect", "--provider", "sim", "--sim-dir", str(sim_dir), "--report-data", "00" * 64,
                 "-o", str(evidence))
        measurement = json.loads(evidence.read_text())["measurement"]
        print(f"the simulated TEE (this veil binary) measures {measurement[:24]}...")
        wrong, right = WORK / "policy-wrong.json", WORK / "policy.json"
        for path, m in ((wrong, "00" * 48), (right, measurement)):
            path.write_text(json.dumps({"version": 1, "allow_sim": True, "sim": {"measurements": [m]}}) + "\n")
        kbs_key, kbs_sealed = WORK / "resnet18-kbs.key", WORK / "resnet18-kbs.veil"
        kbs_key.unlink(missing_ok=True)
        kbs_sealed.unlink(missing_ok=True)
        run_veil("kbs", "create", "resnet18", "-o", str(kbs_key), "--policy", str(wrong), *admin)
        # Sealed under the broker's key: rewrapping the sealed file is sealing without re-encrypting the weights.
        run_veil("rewrap", str(sealed), "--key", str(key), "--new-key", str(kbs_key), "--new-key-version", "1",
                 "-o", str(kbs_sealed))
        logits = WORK / "logits-kbs.npy"
        logits.unlink(missing_ok=True)
        run = ["run", str(kbs_sealed), "--kbs", url, "--tee", "sim", "--sim-dir", str(sim_dir),
               "--input", str(photo), "-o", str(logits), "--threads", "2"]
        print("-- the policy names another measurement: the broker refuses")
        if run_veil(*run, check=False).returncode != 1 or logits.exists():
            raise SystemExit("demo: the broker released a key its policy forbids")
        print("-- the owner sets the policy to this TEE's measurement")
        run_veil("kbs", "policy", "set", "resnet18", str(right), *admin)
        run_veil(*run)
        veil_logits = np.load(logits)
        err = float(np.abs(veil_logits - torch_logits).max() / np.abs(torch_logits).max())
        print(f"the key reached the TEE process in memory only; max relative error against PyTorch {err:.1e}")
        if err > 1e-4:
            raise SystemExit("demo: the engine disagrees with PyTorch")
        audit = run_veil("kbs", "audit", "list", *admin, echo=False).stdout
        records = [json.loads(line) for line in audit.splitlines()]
        for rec in [r for r in records if r.get("model") == "resnet18" and r["decision"] in ("deny", "release")]:
            print(f"audit: {rec['decision']:7} {rec['model']} key v{rec.get('key_version')} to tee {rec.get('tee')}"
                  f" ({rec.get('reason') or 'policy satisfied'})")
    finally:
        broker.terminate()
        broker.wait(timeout=30)


def main() -> int:
    import onnx
    import torch
    import torchvision
    from onnx import numpy_helper

    import veil as veil_py
    import veil.torch

    WORK.mkdir(parents=True, exist_ok=True)
    key, key2, sealed = WORK / "resnet18.key", WORK / "resnet18-v2.key", WORK / "resnet18.veil"
    for k in (key, key2):
        k.unlink(missing_ok=True)

    step("1. the owner makes a model key (32 random bytes, mode 0600)")
    run_veil("keygen", "-o", str(key))

    step("2. seal a torchvision ResNet-18 from PyTorch (random weights: this machine cannot download any)")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    info = veil.torch.seal(model, (torch.randn(1, 3, 224, 224),), sealed, model_id="resnet18",
                           key=key.read_bytes(), model_version=1)
    print(f"sealed {info.tensor_count} tensors, {info.tensor_data_size / 1e6:.1f} MB, into {sealed}")

    step("3. anyone can read the public header; nothing else")
    run_veil("inspect", str(sealed))

    step("4. no weight of the model appears in the sealed file")
    reference = onnx.load_from_string(veil.torch.export_onnx(model, (torch.randn(1, 3, 224, 224),)))
    blob = sealed.read_bytes()
    # Probe with the first 32 bytes of every tensor that has varied content (an all-zero bias would match the
    # file's zero padding and prove nothing).
    probes = [p for p in (numpy_helper.to_array(t).tobytes()[:32] for t in reference.graph.initializer)
              if len(p) == 32 and len(set(p)) > 8]
    found = sum(p in blob for p in probes)
    names = [n.name.encode() for n in reference.graph.node if len(n.name) >= 8]
    leaked = sum(n in blob for n in names)
    print(f"{len(probes)} weight prefixes searched, {found} found; {len(names)} graph node names searched, "
          f"{leaked} found")
    if found or leaked:
        raise SystemExit("demo: plaintext found in the sealed file")

    step("5. the owner unseals with the key: every tensor comes back bit-identical")
    out = WORK / "resnet18.unsealed.onnx"
    run_veil("unseal", str(sealed), "-o", str(out), "--key", str(key))
    back = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    same = all(np.array_equal(numpy_helper.to_array(t), back[t.name]) and
               numpy_helper.to_array(t).tobytes() == back[t.name].tobytes() for t in reference.graph.initializer)
    print(f"{len(back)} tensors compared: {'all identical' if same else 'MISMATCH'}")
    if not same:
        raise SystemExit("demo: unsealed tensors differ")
    out.unlink()

    step("6. rotate the model key: only the 64-byte key wrap changes")
    run_veil("keygen", "-o", str(key2))
    run_veil("rewrap", str(sealed), "--key", str(key), "--new-key", str(key2), "--new-key-version", "2")
    print(f"key version now {veil_py.inspect(sealed).key_version}")

    step("7. a wrong key, and a file with one flipped bit, are refused (exit 1, nothing written)")
    run_veil("unseal", str(sealed), "-o", str(out), "--key", str(key), check=False)
    tampered = WORK / "tampered.veil"
    data = bytearray(blob)
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    run_veil("unseal", str(tampered), "-o", str(out), "--key", str(key), check=False)
    if out.exists():
        raise SystemExit("demo: a refused unseal left a file behind")

    step("8. run the whole sealed graph in Veil's engine (oneDNN), weights decrypted only in its memory")
    torch.manual_seed(1)
    image = torch.rand(1, 3, 224, 224)  # stands in for a photo: no image data set can be downloaded here
    np.save(WORK / "photo.npy", image.numpy())
    logits_path = WORK / "logits.npy"
    run_veil("run", str(sealed), "--key", str(key2), "--input", str(WORK / "photo.npy"), "-o", str(logits_path),
             "--threads", "2")
    veil_logits = np.load(logits_path)
    with torch.no_grad():
        torch_logits = model(image).numpy()
    err = float(np.abs(veil_logits - torch_logits).max() / np.abs(torch_logits).max())
    top_veil, top_torch = np.argsort(-veil_logits[0])[:5], np.argsort(-torch_logits[0])[:5]
    print(f"top-5 classes, Veil: {top_veil.tolist()}  PyTorch: {top_torch.tolist()}  max relative error {err:.1e}")
    if err > 1e-4 or top_veil.tolist() != top_torch.tolist():
        raise SystemExit("demo: the engine disagrees with PyTorch")

    step("9. key release: a development broker holds the key; a SIMULATED TEE attests and receives it in memory")
    key_release(sealed, key2, WORK / "photo.npy", torch_logits)
    print("\ndemo: done. Files are in", WORK.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
