"""DCAP: libveil's verifier (through `veil attest verify`) cross-checked against the `dcap_qvl` PyPI package.

The same quotes and collateral go to both; when dcap-qvl accepts, libveil must accept with the same TCB status
and the same advisories (in the same order); when dcap-qvl refuses, libveil must refuse for the same reason
(REASONS: each verifier's wording of it), with exit 1 and one `veil: error:` line (tests/python/refusal.py): a
crash, a usage error or a file it cannot open is not a refusal. The vectors are
tests/vectors/attest/dcap (see its SOURCES.txt). The PCCS path is tested against a tiny local HTTP server that
serves the vector collateral the way a PCCS does (issuer chains URL-encoded in headers, signed bodies).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refusal import assert_refused  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "attest" / "dcap" / "dcap-qvl"

# A refusal's reason as each verifier words it: (libveil's message after `veil: error: `, dcap-qvl's ValueError),
# regexes searched case-insensitively.
REASONS = {
    "qe_identity_expired": (r"^DCAP: the QE identity has expired", r"QE Identity expired"),
    "tcb_info_not_yet_valid": (r"^DCAP: the TCB info is not valid yet", r"TCBInfo issue date is in the future"),
    "crl_expired": (r"^DCAP: certificate chain: CRL has expired", r"\bCrlExpired\b"),
    "no_tcb_level": (r"^DCAP: no matching TCB level", r"No matching TCB level found"),
    # Foreign collateral: both refuse it, at different checks. libveil checks the PCK chain first and the other
    # TEE's collateral carries the CRL of the other PCK CA; dcap-qvl checks the QE identity's id first.
    "foreign_collateral": (r"^DCAP: certificate chain: unable to get certificate CRL",
                           r"Unsupported QE Identity id/version for the quote TEE type"),
    "tcb_info_signature": (r"^DCAP: the TCB info signature does not verify", r"Signature is invalid for tcb_info"),
    # single-byte changes of a quote (test_quote_mutations_refused)
    "quote_signature": (r"^DCAP: the quote signature does not verify", r"ISV enclave report signature is invalid"),
    "qe_report_signature": (r"^DCAP: the QE report signature does not verify", r"Signature is invalid for qe_report"),
    "quote_version": (r"^DCAP quote: version \d+ is not supported", r"Unsupported quote version"),
}
PCK_CHAIN = r"^DCAP: (certificate chain: |the PCK chain |a certificate chain needs)"

# (quote, collateral, now, expected status, or the REASONS key when verification must fail)
CASES = [
    ("sgx_quote", "sgx_quote_collateral.json", 1752919277, "ConfigurationAndSWHardeningNeeded"),
    ("sgx_quote", "sgx_quote_collateral.json", 1750330571, "ConfigurationAndSWHardeningNeeded"),
    ("sgx_quote", "sgx_quote_collateral.json", 1752919279, "qe_identity_expired"),
    ("sgx_quote", "sgx_quote_collateral.json", 1750330570, "tcb_info_not_yet_valid"),
    ("tdx_quote", "tdx_quote_collateral.json", 1752919234, "UpToDate"),
    ("tdx_quote", "tdx_quote_collateral.json", 1752919236, "crl_expired"),
    ("tdx_quote_outdated", "tdx_quote_outdated_collateral.json", 1772000000, "no_tcb_level"),
    ("tdx_quote", "sgx_quote_collateral.json", 1752919234, "foreign_collateral"),
    ("sgx_quote", "tdx_quote_collateral.json", 1752919234, "foreign_collateral"),
]


def _veil_bin() -> Path:
    env = os.environ.get("VEIL_BIN")
    for p in ([Path(env)] if env else []) + [ROOT / "build" / "release" / "veil", ROOT / "build" / "asan" / "veil"]:
        if p.is_file():
            return p
    pytest.skip("the veil CLI is not built")


def _tee(quote: bytes) -> str:
    return "sgx" if int.from_bytes(quote[0:2], "little") == 3 else "tdx"


def _veil_run(quote_path: Path, now: int, *extra: str) -> subprocess.CompletedProcess[str]:
    quote = quote_path.read_bytes()
    cmd = [str(_veil_bin()), "attest", "verify", "--type", _tee(quote), "--now", str(now), "--json", *extra,
           str(quote_path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def veil_verify(quote_path: Path, now: int, *extra: str) -> dict:
    """libveil's claims; fails the test when it refuses."""
    r = _veil_run(quote_path, now, *extra)
    assert r.returncode == 0, f"veil attest verify refused ({r.returncode}): {r.stderr}"
    return json.loads(r.stdout)


def veil_refuses(quote_path: Path, now: int, reason: str, *extra: str) -> str:
    """Asserts libveil refuses with exit 1 and one error line matching the regex reason; returns the message."""
    r = _veil_run(quote_path, now, *extra)
    return assert_refused(r, re.compile(reason, re.IGNORECASE), what=f"veil attest verify {quote_path.name} @{now}")


def qvl_verify(quote: bytes, collateral_json: str, now: int):
    """dcap-qvl's verdict; raises ValueError (its refusal) with its reason."""
    dcap_qvl = pytest.importorskip("dcap_qvl")
    coll = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
    return dcap_qvl.verify(quote, coll, now)


def qvl_refuses(quote: bytes, collateral_json: str, now: int, reason: str) -> str:
    """Asserts dcap-qvl refuses (ValueError) for the regex reason; returns its message."""
    try:
        got = qvl_verify(quote, collateral_json, now)
    except ValueError as e:
        message = str(e)
    else:
        pytest.fail(f"dcap-qvl accepted: {got}")
    assert re.search(reason, message, re.IGNORECASE), f"dcap-qvl refused, but not for /{reason}/: {message}"
    return message


@pytest.mark.parametrize("quote,collateral,now,expected", CASES)
def test_same_verdict_as_dcap_qvl(quote: str, collateral: str, now: int, expected: str) -> None:
    qpath, cpath = VECTORS / quote, VECTORS / collateral
    if expected in REASONS:
        veil_reason, qvl_reason = REASONS[expected]
        qvl_refuses(qpath.read_bytes(), cpath.read_text(), now, qvl_reason)
        veil_refuses(qpath, now, veil_reason, "--collateral", str(cpath))
        return
    ref = qvl_verify(qpath.read_bytes(), cpath.read_text(), now)
    ours = veil_verify(qpath, now, "--collateral", str(cpath))
    assert ref.status == ours["tcb_status"] == expected
    assert list(ref.advisory_ids) == ours["advisories"]
    import dcap_qvl

    parsed = dcap_qvl.parse_quote(qpath.read_bytes())
    assert bytes(parsed.report.report_data).hex() == ours["report_data"]
    assert ours["tee"] == parsed.quote_type().lower()


def test_tampered_collateral_refused_by_both(tmp_path: Path) -> None:
    coll = json.loads((VECTORS / "sgx_quote_collateral.json").read_text())
    coll["tcb_info"] = coll["tcb_info"].replace('"tcbEvaluationDataNumber":1', '"tcbEvaluationDataNumber":2', 1)
    f = tmp_path / "c.json"
    f.write_text(json.dumps(coll))
    quote = VECTORS / "sgx_quote"
    veil_reason, qvl_reason = REASONS["tcb_info_signature"]
    qvl_refuses(quote.read_bytes(), f.read_text(), 1752919277, qvl_reason)
    veil_refuses(quote, 1752919277, veil_reason, "--collateral", str(f))


def test_quote_mutations_refused(tmp_path: Path) -> None:
    """A sample of single-byte changes across header, body and signature data (the C test does every byte).

    libveil refuses every one. dcap-qvl refuses those up to the PEM chain; inside the chain it accepts changes
    to the copy of the Intel root that the quote carries (webpki ignores it and uses its own root), where libveil
    requires the chain to end in the pinned root byte for byte and to be canonical PEM. Before the chain, both
    must name the same broken check (REASONS); inside it, libveil must name the PCK chain.
    """
    src = (VECTORS / "tdx_quote").read_bytes()
    coll = (VECTORS / "tdx_quote_collateral.json").read_text()
    pem_start = 1258  # v4: QE auth data length at 1218, 32 bytes of it, certification data type and size
    assert src[pem_start:pem_start + 11] == b"-----BEGIN "
    mutation_reasons = ("quote_signature", "qe_report_signature", "quote_version")
    compared = 0
    for i in range(0, 4936, 97):
        q = bytearray(src)
        q[i] ^= 0x10
        f = tmp_path / "q"
        f.write_bytes(bytes(q))
        veil_reason = PCK_CHAIN
        if i < pem_start:
            qvl_message = qvl_refuses(bytes(q), coll, 1752919234, ".")
            named = [k for k in mutation_reasons if re.search(REASONS[k][1], qvl_message, re.IGNORECASE)]
            assert len(named) == 1, f"byte {i}: dcap-qvl's reason is not in REASONS: {qvl_message}"
            veil_reason = REASONS[named[0]][0]
            compared += 1
        veil_refuses(f, 1752919234, veil_reason, "--collateral", str(VECTORS / "tdx_quote_collateral.json"))
    assert compared >= 10


# ---- PCCS --------------------------------------------------------------------------------------------------


class _Pccs(http.server.BaseHTTPRequestHandler):
    collateral: dict = {}
    requests: list = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, urllib.parse.quote(v, safe=""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        c = self.collateral
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        type(self).requests.append(self.path)
        if url.path == "/sgx/certification/v4/pckcrl":
            self._send(bytes.fromhex(c["pck_crl"]), {"SGX-PCK-CRL-Issuer-Chain": c["pck_crl_issuer_chain"]})
        elif url.path == "/sgx/certification/v4/rootcacrl":
            self.send_response(200)
            body = c["root_ca_crl"].encode()  # PCCS serves the root CA CRL as hex
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path.endswith("/certification/v4/tcb") and q.get("fmspc"):
            body = '{"tcbInfo":' + c["tcb_info"] + ',"signature":"' + c["tcb_info_signature"] + '"}'
            self._send(body.encode(), {"TCB-Info-Issuer-Chain": c["tcb_info_issuer_chain"]})
        elif url.path.endswith("/certification/v4/qe/identity"):
            body = '{"enclaveIdentity":' + c["qe_identity"] + ',"signature":"' + c["qe_identity_signature"] + '"}'
            self._send(body.encode(), {"SGX-Enclave-Identity-Issuer-Chain": c["qe_identity_issuer_chain"]})
        else:
            self.send_error(404)


@pytest.fixture
def pccs():
    def start(collateral_file: str) -> str:
        handler = type("H", (_Pccs,), {"collateral": json.loads((VECTORS / collateral_file).read_text()),
                                       "requests": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        start.handler = handler
        return f"http://127.0.0.1:{server.server_address[1]}"

    servers: list = []
    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("quote,collateral,now,expected", [c for c in CASES[:7] if c[3] not in REASONS])
def test_pccs_fetch_and_cache(pccs, tmp_path: Path, quote: str, collateral: str, now: int, expected: str) -> None:
    url = pccs(collateral)
    cache = tmp_path / "cache"
    cache.mkdir()
    claims = veil_verify(VECTORS / quote, now, "--pccs", url, "--collateral-cache", str(cache))
    assert claims["tcb_status"] == expected
    fetched = list(pccs.handler.requests)
    assert any("fmspc=" in r for r in fetched) and any("pckcrl?ca=" in r for r in fetched)
    assert len(list(cache.iterdir())) == 1
    # Second run: served from the cache, no request.
    pccs.handler.requests.clear()
    claims2 = veil_verify(VECTORS / quote, now, "--pccs", url, "--collateral-cache", str(cache))
    assert claims2 == claims and pccs.handler.requests == []
    # Outside the window the cached entry is stale: fetched again, and the answer is "expired".
    veil_refuses(VECTORS / quote, now + 40 * 86400, r"^DCAP: .*\bexpired\b", "--pccs", url,
                 "--collateral-cache", str(cache))
    assert pccs.handler.requests != []


def test_pccs_tampered_body_refused(pccs, tmp_path: Path) -> None:
    url = pccs("sgx_quote_collateral.json")
    pccs.handler.collateral["tcb_info"] = pccs.handler.collateral["tcb_info"].replace(
        '"tcbEvaluationDataNumber":1', '"tcbEvaluationDataNumber":2', 1)
    cache = tmp_path / "cache"
    cache.mkdir()
    veil_refuses(VECTORS / "sgx_quote", 1752919277, REASONS["tcb_info_signature"][0], "--pccs", url,
                 "--collateral-cache", str(cache))
    assert list(cache.iterdir()) == []  # only collateral that verified is cached


def test_pccs_unreachable(tmp_path: Path) -> None:
    veil_refuses(VECTORS / "sgx_quote", 1752919277, r"^PCCS: http://127\.0\.0\.1:9/.*connect", "--pccs",
                 "http://127.0.0.1:9")
