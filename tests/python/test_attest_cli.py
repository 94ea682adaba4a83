"""`veil attest` end to end: sim-init, collect, verify with and without a policy, exit codes 0/1/2, one error line.

The sim measurement and signature are recomputed here from docs/spec/evidence.md with `cryptography`, as an
independent check of the spec.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refusal import refusal_problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VEIL = os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil"))
RD = "00112233445566778899aabbccddeeff" * 3  # 48 bytes, zero-padded to 64 by the CLI
RD64 = bytes.fromhex(RD) + bytes(16)


@pytest.fixture(scope="module", autouse=True)
def _binary() -> None:
    if not Path(VEIL).exists():
        if os.environ.get("VEIL_BIN"):
            pytest.fail(f"VEIL_BIN={VEIL} does not exist")
        pytest.skip("veil CLI not built (make build)")


def veil(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEIL, *map(str, args)], capture_output=True, text=True, timeout=60)


def assert_failed(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert p.returncode == 1, p
    errors = [line for line in p.stderr.splitlines() if line.startswith("veil: error: ")]
    others = [line for line in p.stderr.splitlines() if not line.startswith(("veil: error: ", "veil: warning: "))]
    assert len(errors) == 1 and not others, p.stderr
    assert needle in errors[0], errors[0]


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    d = tmp_path / "plat"
    p = veil("attest", "sim-init", "--dir", d)
    assert p.returncode == 0, p.stderr
    assert "SIMULATION" in p.stderr
    return d


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, Path]:
    exe, cfg = tmp_path / "app.bin", tmp_path / "app.toml"
    exe.write_bytes(b"\x7fELF pretend" * 100)
    cfg.write_bytes(b"threads = 2\n")
    return exe, cfg


@pytest.fixture
def evidence(tmp_path: Path, platform: Path, app: tuple[Path, Path]) -> Path:
    out = tmp_path / "ev.json"
    p = veil("attest", "collect", "--provider", "sim", "--report-data", RD, "--sim-dir", platform,
             "--sim-executable", app[0], "--sim-config", app[1], "--sim-svn", "5", "-o", out)
    assert p.returncode == 0, p.stderr
    assert "warning: SIMULATION TEE" in p.stderr
    return out


def sim_measurement(exe: bytes, cfg: bytes) -> bytes:
    h = hashlib.sha384(b"VEIL-SIM-MEASUREMENT-V1\0")
    for part in (exe, cfg):
        h.update(struct.pack("<Q", len(part)) + part)
    return h.digest()


@pytest.mark.parametrize("sub", ["collect", "verify", "sim-init"])
def test_help(sub: str) -> None:
    p = veil("attest", sub, "--help")
    assert p.returncode == 0 and p.stdout.startswith(f"usage: veil attest {sub}")
    assert veil("attest", "--help").returncode == 0


def test_sim_init_files_and_refuses_to_replace(platform: Path) -> None:
    assert (platform.stat().st_mode & 0o777) == 0o700
    assert (platform / "platform.key").stat().st_mode & 0o777 == 0o600
    before = (platform / "platform.key").read_bytes()
    assert_failed(veil("attest", "sim-init", "--dir", platform), "already exists")
    assert (platform / "platform.key").read_bytes() == before


def test_sim_evidence_matches_the_spec(evidence: Path, platform: Path, app: tuple[Path, Path]) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ev = json.loads(evidence.read_text())
    assert set(ev) == {"tee", "measurement", "report_data", "svn", "platform_key", "signature"}
    assert ev["tee"] == "sim" and ev["svn"] == 5
    assert ev["report_data"] == RD64.hex()
    measurement = sim_measurement(app[0].read_bytes(), app[1].read_bytes())
    assert ev["measurement"] == measurement.hex()
    # platform_key: base64 of the 91-byte DER SubjectPublicKeyInfo of platform.pub, a P-256 key
    pub = serialization.load_pem_public_key((platform / "platform.pub").read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    spki = base64.b64decode(ev["platform_key"], validate=True)
    assert base64.b64encode(spki).decode() == ev["platform_key"]
    assert spki == pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert len(spki) == 91 and spki[:27] == bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200" "04")
    assert spki[27:] == pub.public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)[1:]
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    tbs = b"VEIL-SIM-EVIDENCE-V2\0" + measurement + RD64 + struct.pack("<I", 5) + hashlib.sha384(spki).digest()
    assert len(tbs) == 185
    sig = base64.b64decode(ev["signature"], validate=True)
    assert len(sig) <= 72
    key.verify(sig, tbs, ec.ECDSA(hashes.SHA256()))


def test_verify_without_policy(evidence: Path, platform: Path) -> None:
    p = veil("attest", "verify", evidence, "--sim-key", platform / "platform.pub", "--json")
    assert p.returncode == 0, p.stderr
    assert "warning: SIMULATION TEE" in p.stderr
    claims = json.loads(p.stdout)
    assert claims["tee"] == "sim" and claims["tcb_status"] == "Simulated" and claims["svn"] == 5
    assert claims["report_data"] == RD64.hex()
    p = veil("attest", "verify", evidence, "--sim-key", platform / "platform.pub", "--report-data", RD)
    assert p.returncode == 0 and "tcb status:   Simulated" in p.stdout
    assert_failed(veil("attest", "verify", evidence, "--sim-key", platform / "platform.pub", "--report-data", "00"),
                  "report data does not match")


def test_verify_refusals(tmp_path: Path, evidence: Path, platform: Path) -> None:
    assert_failed(veil("attest", "verify", evidence), "no simulation platform key is trusted")
    other = tmp_path / "other"
    assert veil("attest", "sim-init", "--dir", other).returncode == 0
    assert_failed(veil("attest", "verify", evidence, "--sim-key", other / "platform.pub"), "not trusted")
    ev = json.loads(evidence.read_text())
    ev["svn"] = 6
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(ev))
    assert_failed(veil("attest", "verify", forged, "--sim-key", platform / "platform.pub"), "signature")
    ev["svn"] = 5
    ev["platform_key"] = (platform / "platform.pub").read_text()  # the V1 form: PEM in the evidence
    forged.write_text(json.dumps(ev))
    assert_failed(veil("attest", "verify", forged, "--sim-key", platform / "platform.pub"), '"platform_key"')
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert_failed(veil("attest", "verify", evidence, "--sim-key", bad_key), "not a PEM P-256 public key")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert_failed(veil("attest", "verify", junk), "not valid JSON")
    assert_failed(veil("attest", "verify", evidence, "--type", "sgx"), "evidence is for sim, not sgx")
    assert_failed(veil("attest", "verify", tmp_path / "missing.json"), "cannot open")


def test_verify_with_policy(tmp_path: Path, evidence: Path, platform: Path, app: tuple[Path, Path]) -> None:
    key = ["--sim-key", str(platform / "platform.pub")]
    pol = tmp_path / "policy.json"
    pol.write_text('{"sgx": {"measurements": []}}')
    assert_failed(veil("attest", "verify", evidence, *key, "--policy", pol), "simulation TEE is not allowed")
    m = sim_measurement(app[0].read_bytes(), app[1].read_bytes()).hex()
    pol.write_text(json.dumps({"allow_sim": True, "sim": {"measurements": [m], "min_svn": 5}}))
    p = veil("attest", "verify", evidence, *key, "--policy", pol, "--report-data", RD)
    assert p.returncode == 0, p.stderr
    pol.write_text(json.dumps({"allow_sim": True, "sim": {"measurements": [m], "min_svn": 6}}))
    assert_failed(veil("attest", "verify", evidence, *key, "--policy", pol), "svn 5 is below the minimum 6")
    pol.write_text(json.dumps({"allow_sim": True, "sim": {"measurements": ["00" * 48]}}))
    assert_failed(veil("attest", "verify", evidence, *key, "--policy", pol), f"measurement {m} is not allowed")
    pol.write_text('{"allow_sim": true, "allow_simulation": true}')
    assert_failed(veil("attest", "verify", evidence, *key, "--policy", pol), 'unknown member "allow_simulation"')


def test_sample_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "sample.json"
    assert veil("attest", "collect", "-p", "sample", "--report-data", RD, "-o", out).returncode == 0
    ev = json.loads(out.read_text())
    assert ev == {"tee": "sample", "svn": "1", "report_data": base64.b64encode(bytes.fromhex(RD)).decode()}
    pol = tmp_path / "p.json"
    pol.write_text('{"allow_sample": true}')
    p = veil("attest", "verify", out, "--policy", pol, "--report-data", RD, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["tcb_status"] == "Unverified"
    pol.write_text("{}")
    assert_failed(veil("attest", "verify", out, "--policy", pol), "sample TEE is not allowed")


def test_fake_gramine_tree(tmp_path: Path) -> None:
    root = tmp_path / "dev-attestation"
    root.mkdir()
    (root / "attestation_type").write_text("dcap")
    (root / "user_report_data").write_bytes(b"")
    (root / "quote").write_bytes(b"\x03\x00fake quote")
    out = tmp_path / "sgx.json"
    p = veil("attest", "collect", "-p", "auto", "--root", root, "--report-data", RD, "-o", out)
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text()) == {"tee": "sgx", "quote": base64.b64encode(b"\x03\x00fake quote").decode()}
    assert (root / "user_report_data").read_bytes() == RD64
    (root / "attestation_type").write_text("none")
    assert_failed(veil("attest", "collect", "-p", "sgx", "--root", root, "--report-data", RD, "-o", out), "dcap")


def test_usage_errors(tmp_path: Path, platform: Path) -> None:
    out = tmp_path / "x.json"
    cases = [  # (arguments, the usage error's reason)
        (["attest"], "usage: veil attest <collect|verify|sim-init>"),
        (["attest", "frobnicate"], "unknown subcommand 'frobnicate'"),
        (["attest", "collect", "--provider", "sim", "--report-data", RD], "-o EVIDENCE.json is required"),
        (["attest", "collect", "--provider", "tpm", "--report-data", RD, "-o", out], "--provider must be"),
        (["attest", "collect", "--provider", "sim", "--report-data", "abc", "--sim-dir", platform, "-o", out],
         "--report-data must be 2 to 128 hex digits"),
        (["attest", "collect", "--provider", "sim", "--report-data", "zz", "--sim-dir", platform, "-o", out],
         "--report-data is not hex"),
        (["attest", "collect", "--provider", "sim", "--report-data", "00" * 65, "--sim-dir", platform, "-o", out],
         "--report-data must be 2 to 128 hex digits"),
        (["attest", "collect", "--provider", "sim", "--report-data", RD, "-o", out], "--provider sim needs --sim-dir"),
        (["attest", "verify"], "missing evidence file"),
        (["attest", "verify", "a", "b"], "unexpected argument 'b'"),
        (["attest", "verify", "a", "--type", "tpm"], "--type must be"),
        (["attest", "verify", "a", "--now", "yesterday"], "--now must be seconds since the epoch"),
        (["attest", "verify", "a", "--collateral", "c", "--pccs", "https://x"],
         "give --collateral or --pccs, not both"),
        (["attest", "verify", "a", "--sim-dir", "x"], "option --sim-dir does not apply here"),
        (["attest", "sim-init"], "--dir DIR is required"),
    ]
    failures = []
    for args, reason in cases:
        problems = refusal_problems(veil(*args), reason, exit_code=2)
        if problems:
            failures.append(f"{args}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)
    assert not out.exists()


def test_no_tee_here(tmp_path: Path) -> None:
    p = veil("attest", "collect", "-p", "auto", "--root", tmp_path / "nothing", "--report-data", RD, "-o",
             tmp_path / "e.json")
    assert_failed(p, "no TEE found")
