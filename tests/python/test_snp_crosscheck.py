"""SEV-SNP: an independent re-verification with the `cryptography` package, compared with libveil.

The reference below shares no code with lib/attest/snp_*.c: it reads the report with int.from_bytes at the
offsets of the SEV-SNP ABI (56860, Table 22), trusts the AMD PEM files in tests/vectors/attest/snp (not libveil's
embedded copies), checks the RSA-PSS chain and the ECDSA P-384 signature with `cryptography`, and compares the
VCEK's TCB and hwID extensions. libveil is called through ctypes: veil_evidence_verify(raw report,
VEIL_TEE_SNP, options with snp_cert_path) and veil_claims_to_json. Every vector, a few foreign pairs, an expired
time and single-byte mutations across the signed region and the signature must get the same verdict from both,
the same claims when both accept, and the same reason when both refuse (SAME_REASON).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "attest" / "snp"
NOW = 1756684800  # 2025-09-01T00:00:00Z: inside every certificate's validity window
VEIL_TEE_SNP = 5
VEIL_OK = 0
AMD = "1.3.6.1.4.1.3704.1."
PRODUCTS = ("milan", "genoa", "turin")


# ---- the independent reference ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    claims: dict | None = None


def _le(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _vendor_chain(product: str) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """(ASK, ARK, ASVK) in the order of trustee's files."""
    certs = x509.load_pem_x509_certificates((VECTORS / f"{product}_ask_ark_asvk.pem").read_bytes())
    assert len(certs) == 3
    return certs[0], certs[1], certs[2]


def _pss_verify(issuer: x509.Certificate, cert: x509.Certificate) -> None:
    issuer.public_key().verify(  # type: ignore[union-attr, call-arg]
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
        hashes.SHA384(),
    )


def _valid_at(cert: x509.Certificate, now: int) -> bool:
    t = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    return cert.not_valid_before_utc <= t <= cert.not_valid_after_utc


def _product_from_cpuid(version: int, fam: int, mod: int) -> str | None:
    if version < 3:
        return None
    if fam == 0x19 and mod <= 0x0F:
        return "milan"
    if fam == 0x19 and (0x10 <= mod <= 0x1F or 0xA0 <= mod <= 0xAF):
        return "genoa"
    if fam == 0x1A:
        return "turin"
    return None


def _der_int(value: bytes) -> int:
    assert value[0] == 0x02 and value[1] == len(value) - 2, "not a short DER INTEGER"
    return int.from_bytes(value[2:], "big", signed=True)


def _ext(cert: x509.Certificate, suffix: str) -> bytes | None:
    try:
        e = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(AMD + suffix))
    except x509.ExtensionNotFound:
        return None
    return e.value.value  # type: ignore[attr-defined]


def reference_verify(report: bytes, cert_der: bytes, now: int) -> Verdict:
    if len(report) != 0x4A0:
        return Verdict(False, "size")
    version = _le(report[0:4])
    if version not in (2, 3, 5):
        return Verdict(False, "version")
    if _le(report[0x34:0x38]) != 1:
        return Verdict(False, "signature_algo")
    key = (_le(report[0x48:0x4C]) >> 2) & 7
    if key not in (0, 1):
        return Verdict(False, "signing key")
    with warnings.catch_warnings():  # AMD's VCEKs and VLEKs have serial number 0, which RFC 5280 disallows
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        cert = x509.load_der_x509_certificate(cert_der)

    # Chain: the product line whose ASK (VCEK) or ASVK (VLEK) issued the certificate.
    for product in PRODUCTS:
        ask, ark, asvk = _vendor_chain(product)
        inter = ask if key == 0 else asvk
        if cert.issuer == inter.subject:
            break
    else:
        return Verdict(False, "issuer")
    try:
        _pss_verify(ark, ark)
        _pss_verify(ark, inter)
        _pss_verify(inter, cert)
    except InvalidSignature:
        return Verdict(False, "chain signature")
    if not all(_valid_at(c, now) for c in (ark, inter, cert)):
        return Verdict(False, "validity")
    cpu = _product_from_cpuid(version, report[0x188], report[0x189])
    if cpu is not None and cpu != product:
        return Verdict(False, "product")

    # Report signature.
    r, s = _le(report[0x2A0:0x2E8]), _le(report[0x2E8:0x330])
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp384r1":
        return Verdict(False, "key type")
    try:
        pub.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return Verdict(False, "report signature")

    # TCB and chip.
    tcb = report[0x180:0x188]
    layout = {"3.1": 0, "3.2": 1, "3.3": 6, "3.8": 7}
    if product == "turin":
        layout = {"3.9": 0, "3.1": 1, "3.2": 2, "3.3": 3, "3.8": 7}
    for suffix, byte in layout.items():
        value = _ext(cert, suffix)
        if value is None or _der_int(value) != tcb[byte]:
            return Verdict(False, f"tcb {suffix}")
    if key == 0:
        hwid = _ext(cert, "4")
        if hwid is None or hwid != report[0x1A0 : 0x1A0 + len(hwid)] or len(hwid) not in (8, 64):
            return Verdict(False, "hwid")

    id_key = report[0xE0:0x110]

    def spl(tcb_bytes: bytes) -> dict[str, int]:
        """A TCB_VERSION's components: Milan/Genoa BL, TEE, -, -, -, -, SNP, UCODE; Turin FMC, BL, TEE, SNP, ..."""
        b = tcb_bytes
        if product == "turin":
            return {"bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7], "fmc": b[0]}
        return {"bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7], "fmc": 0}

    claims = {
        "tee": "snp",
        "report_data": report[0x50:0x90].hex(),
        "measurement": report[0x90:0xC0].hex(),
        "config_id": report[0xC0:0xE0].hex(),
        "svn": _le(report[4:8]),
        "debug": bool((_le(report[8:16]) >> 19) & 1),
        "vmpl": _le(report[0x30:0x34]),
        "reported_tcb": spl(report[0x180:0x188]),
        "committed_tcb": spl(report[0x1E0:0x1E8]),
        "tcb_status": "NotJudged",  # AMD publishes no TCB status: the policy's min_tcb judges the two TCBs
    }
    if any(id_key):
        claims["signer"] = id_key.hex()
    return Verdict(True, "ok", claims)


# ---- libveil through ctypes ----------------------------------------------------------------------------------


class VerifyOptions(ctypes.Structure):
    """struct veil_verify_options (include/veil/attest.h)"""

    _fields_ = [
        ("now", ctypes.c_uint64),
        ("collateral_path", ctypes.c_char_p),
        ("pccs_url", ctypes.c_char_p),
        ("collateral_cache_dir", ctypes.c_char_p),
        ("sim_trusted_keys", ctypes.POINTER(ctypes.c_char_p)),
        ("sim_trusted_key_count", ctypes.c_size_t),
        ("snp_cert_path", ctypes.c_char_p),
    ]


CLAIMS_BUFFER_SIZE = 1 << 14  # larger than struct veil_claims; libveil writes it, veil_claims_to_json reads it


@pytest.fixture(scope="module")
def lib(libveil: str) -> ctypes.CDLL:
    so = ctypes.CDLL(libveil)
    so.veil_evidence_verify.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
                                        ctypes.POINTER(VerifyOptions), ctypes.c_void_p]
    so.veil_evidence_verify.restype = ctypes.c_int
    so.veil_claims_to_json.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    so.veil_claims_to_json.restype = ctypes.c_int
    so.veil_free.argtypes = [ctypes.c_void_p]
    so.veil_free.restype = None
    so.veil_last_error.restype = ctypes.c_char_p
    return so


def libveil_verify(lib: ctypes.CDLL, report: bytes, cert_path: Path, now: int) -> Verdict:
    opt = VerifyOptions(now=now, snp_cert_path=str(cert_path).encode())
    claims = ctypes.create_string_buffer(CLAIMS_BUFFER_SIZE)
    status = lib.veil_evidence_verify(report, len(report), VEIL_TEE_SNP, ctypes.byref(opt), claims)
    if status != VEIL_OK:
        return Verdict(False, f"{status}: {lib.veil_last_error().decode()}")
    out = ctypes.c_void_p()
    assert lib.veil_claims_to_json(claims, ctypes.byref(out)) == VEIL_OK
    try:
        text = ctypes.string_at(out.value).decode()
    finally:
        lib.veil_free(out)
    return Verdict(True, "ok", json.loads(text))


VEIL_ERR_UNSUPPORTED, VEIL_ERR_EVIDENCE, VEIL_ERR_VERIFY, VEIL_ERR_EXPIRED = 105, 107, 202, 204
# The reference's refusal reason -> libveil's (status, message regex): the same check, in libveil's words. A
# reserved field of the signed region that is not zero breaks the reference's report signature; libveil refuses
# it earlier, as a malformed report.
_MALFORMED_REPORT = (VEIL_ERR_EVIDENCE, r"^SEV-SNP report(:| version \d+:) (reserved |signature [RS] is longer)")
SAME_REASON: dict[str, list[tuple[int, str]]] = {
    "size": [(VEIL_ERR_EVIDENCE, r"^SEV-SNP report is \d+ bytes")],
    "version": [(VEIL_ERR_UNSUPPORTED, r"^SEV-SNP report version \d+ is not supported"),
                (VEIL_ERR_EVIDENCE, r"^SEV-SNP report version \d+ is not supported")],
    "signature_algo": [(VEIL_ERR_UNSUPPORTED, r"^SEV-SNP report signature algorithm \d+ is not ECDSA P-384")],
    "signing key": [(VEIL_ERR_EVIDENCE, r"^SEV-SNP report signing key \d+ is neither|reserved KEY_INFO bits"),
                    (VEIL_ERR_UNSUPPORTED, r"^SEV-SNP report signing key \d+ is neither")],
    "issuer": [(VEIL_ERR_VERIFY, r"^SEV-SNP V(CEK|LEK) is not issued by any AMD A(SK|SVK)")],
    "chain signature": [(VEIL_ERR_VERIFY, r"^SEV-SNP certificate chain: certificate signature failure")],
    "validity": [(VEIL_ERR_EXPIRED, r"^SEV-SNP certificate chain: certificate (has expired|is not yet valid)")],
    "product": [(VEIL_ERR_VERIFY, r"^SEV-SNP report comes from a \w+ CPU but its certificate chains to the \w+ ARK")],
    "key type": [(VEIL_ERR_VERIFY, r"^SEV-SNP certificate key is not on P-384")],
    "report signature": [(VEIL_ERR_VERIFY, r"^SEV-SNP report signature does not verify with the V(CEK|LEK)"),
                         _MALFORMED_REPORT],
    "hwid": [(VEIL_ERR_VERIFY, r"^SEV-SNP (VCEK belongs to another chip|VCEK has no hwID|VCEK: an 8-byte hwID|"
                               r"report masks CHIP_ID|certificate: hwID)")],
}


def _same_reason(ref_reason: str, got_reason: str) -> bool:
    """got_reason is libveil's "<status>: <message>"; the reference's tcb reasons are "tcb <extension>"."""
    status, _, message = got_reason.partition(": ")
    if ref_reason.startswith("tcb "):
        return int(status) == VEIL_ERR_VERIFY and re.match(r"^SEV-SNP REPORTED_TCB \S+ is \d+ but the certificate "
                                                           r"is for \d+", message) is not None
    allowed = SAME_REASON.get(ref_reason)
    assert allowed is not None, f"the reference's reason {ref_reason!r} has no entry in SAME_REASON"
    return any(int(status) == st and re.search(rx, message) for st, rx in allowed)


def _agree(lib: ctypes.CDLL, report: bytes, cert_name: str, now: int = NOW) -> Verdict:
    cert_path = VECTORS / cert_name
    ref = reference_verify(report, cert_path.read_bytes(), now)
    got = libveil_verify(lib, report, cert_path, now)
    assert got.ok == ref.ok, f"libveil: {got.reason}; reference: {ref.reason}"
    if not ref.ok:
        assert _same_reason(ref.reason, got.reason), f"refused for another reason: libveil {got.reason!r}, " \
                                                     f"reference {ref.reason!r}"
    if ref.ok:
        assert got.claims is not None and ref.claims is not None
        for k, v in ref.claims.items():
            assert got.claims.get(k) == v, k
        assert ("signer" in got.claims) == ("signer" in ref.claims)
    return ref


CASES = [
    ("test-report.bin", "test-vcek.der", True),
    ("test-vlek-report.bin", "test-vlek.der", True),
    ("report-from-evidence.bin", "vcek-from-evidence.der", True),
    ("test-report.bin", "test-vcek-invalid-legacy.der", False),
    ("test-report.bin", "test-vcek-invalid-new.der", False),
    ("test-report.bin", "vcek-from-evidence.der", False),  # another chip
    ("report-from-evidence.bin", "test-vcek.der", False),  # Genoa CPU, Milan certificate
    ("test-vlek-report.bin", "test-vcek.der", False),  # VLEK-signed report, VCEK given
]


@pytest.mark.parametrize(("report", "cert", "valid"), CASES)
def test_vectors_agree(lib: ctypes.CDLL, report: str, cert: str, valid: bool) -> None:
    verdict = _agree(lib, (VECTORS / report).read_bytes(), cert)
    assert verdict.ok == valid, verdict.reason


def test_vlek_claims_vmpl(lib: ctypes.CDLL) -> None:
    verdict = _agree(lib, (VECTORS / "test-vlek-report.bin").read_bytes(), "test-vlek.der")
    assert verdict.claims is not None and verdict.claims["vmpl"] == 1


@pytest.mark.parametrize("now", [1765411200, 1704067200])  # after the VLEK expires; before the Genoa VCEK
def test_validity_agrees(lib: ctypes.CDLL, now: int) -> None:
    cert = "test-vlek.der" if now > NOW else "vcek-from-evidence.der"
    report = "test-vlek-report.bin" if now > NOW else "report-from-evidence.bin"
    assert not _agree(lib, (VECTORS / report).read_bytes(), cert, now).ok


@pytest.mark.parametrize(("report", "cert"), [CASES[0][:2], CASES[2][:2]])
def test_mutations_agree(lib: ctypes.CDLL, report: str, cert: str) -> None:
    """Single-byte changes over the signed region and R, S (every 5th byte, plus the fields that decide)."""
    original = (VECTORS / report).read_bytes()
    offsets = sorted(set(range(0, 0x330, 5)) | {0x00, 0x34, 0x48, 0x180, 0x186, 0x187, 0x1A0, 0x2A0, 0x2E8})
    for off in offsets:
        damaged = bytearray(original)
        damaged[off] ^= 0x01
        assert not _agree(lib, bytes(damaged), cert).ok, hex(off)
