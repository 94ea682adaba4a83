"""Attestation verification throughput (issue: attestation), one JSON line each, with a same-run reference.

dcap_verify: veil_evidence_verify of the dcap-qvl SGX sample quote with its collateral read from a file (parsed
    and signature-checked on every verification), vs the dcap-qvl PyPI package verifying the same quote with the
    same, already parsed, collateral (its Rust core, called from Python).
sim_verify: veil_evidence_verify of sim evidence (JSON parse, P-256 key check, trust check against the PEM key,
    ECDSA P-256/SHA-256) vs a bare ECDSA P-256/SHA-256 verification of the same 185 bytes by Python `cryptography`
    (OpenSSL) - the floor.
Both single-threaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "release"
DCAP = ROOT / "tests" / "vectors" / "attest" / "dcap" / "dcap-qvl"
SGX_NOW = 1752919277
SECONDS = 3.0


def _rate(fn) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def _veil_rate(*args: str) -> float:
    out = subprocess.run([str(BUILD / "bench_verify"), *args, str(SECONDS)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)["per_second"]


def bench_dcap() -> dict:
    import dcap_qvl

    quote, collateral = DCAP / "sgx_quote", DCAP / "sgx_quote_collateral.json"
    veil = _veil_rate("dcap", str(quote), str(collateral), str(SGX_NOW))
    coll = dcap_qvl.QuoteCollateralV3.from_json(collateral.read_text())
    raw = quote.read_bytes()
    ref = _rate(lambda: dcap_qvl.verify(raw, coll, SGX_NOW))
    return {"bench": "dcap_verify", "quote": "dcap-qvl sgx_quote (SGX v3)", "now": SGX_NOW, "threads": 1,
            "veil_per_s": round(veil, 1), "dcap_qvl_per_s": round(ref, 1), "ratio": round(veil / ref, 3)}


def bench_sim() -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    veil_bin = str(BUILD / "veil")
    with tempfile.TemporaryDirectory() as d:
        plat, ev = os.path.join(d, "platform"), os.path.join(d, "evidence.json")
        subprocess.run([veil_bin, "attest", "sim-init", "--dir", plat], check=True, capture_output=True)
        subprocess.run([veil_bin, "attest", "collect", "--provider", "sim", "--sim-dir", plat, "--report-data",
                        "ab" * 64, "-o", ev], check=True, capture_output=True)
        veil = _veil_rate("sim", ev, os.path.join(plat, "platform.pub"), "1")
    key = ec.generate_private_key(ec.SECP256R1())
    msg = os.urandom(185)
    sig = key.sign(msg, ec.ECDSA(hashes.SHA256()))
    pub = key.public_key()
    ref = _rate(lambda: pub.verify(sig, msg, ec.ECDSA(hashes.SHA256())))
    return {"bench": "sim_verify", "threads": 1, "veil_per_s": round(veil, 1),
            "bare_ecdsa_p256_verify_per_s": round(ref, 1), "ratio": round(veil / ref, 3)}


def main() -> None:
    for fn in (bench_dcap, bench_sim):
        print(json.dumps(fn()), flush=True)


if __name__ == "__main__":
    main()
