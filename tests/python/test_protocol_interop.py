# SPDX-License-Identifier: Apache-2.0
"""Cross-checks lib/protocol (through the test driver tests/protocol/protocol_tool.c) against independent code:

    (a) JWEs made by libveil (ECDH-ES+A256KW on P-256/P-384/P-521, RSA-OAEP-256; A256GCM) decrypt with joserfc,
        and their protected header is byte-for-byte the form Rust clients rebuild (reference section 0.3);
    (b) JWEs made by joserfc, and by a from-scratch re-implementation of Trustee's encryptor (section 1.4,
        `cryptography` only), decrypt with libveil; tampered ones are refused;
    (c) ES256 JWTs signed by libveil verify with joserfc and vice versa; wrong keys and bad times are refused;
    (d) JCS output equals the `rfc8785` package on randomized JSON, and the report_data digest equals
        SHA-384(rfc8785(...)) including the section 1.3 vectors.

The driver comes from $VEIL_PROTOCOL_TOOL (default build/release/tests/protocol_tool); the module is skipped when
it does not exist, unless `make test` says a build is expected ($VEIL_LIBRARY set).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from joserfc import jwe, jwt
from joserfc.jwe import FlattenedJSONEncryption
from joserfc.jwk import ECKey, RSAKey

ROOT = Path(__file__).resolve().parents[2]
TOOL = Path(os.environ.get("VEIL_PROTOCOL_TOOL", ROOT / "build" / "release" / "tests" / "protocol_tool"))

if not TOOL.exists():
    if os.environ.get("VEIL_LIBRARY"):
        raise RuntimeError(f"protocol_tool not built at {TOOL}")
    pytest.skip(f"protocol_tool not built at {TOOL}", allow_module_level=True)

JWE_ALGS = ["ECDH-ES+A256KW", "RSA-OAEP-256", "A256GCM"]
CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
VEC_NONCE = "nQSoI5AzvDif7aNKX9GjGoTkmwLsfqzqovrpFJJwibk="
VEC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "alg": "ECDH-ES+A256KW",
    "x": "a_cLHk1O51CNzekSTdnXhcFRf6aa3pTAjHg5j4VTuuk",
    "y": "qWtHvGT_q8opJeYqxTiNO1OCsr77qRKpL-94G_wUfr0",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tool(*args: str, stdin: bytes = b"", ok: bool = True) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([str(TOOL), *args], input=stdin, capture_output=True, timeout=60)
    if ok and p.returncode != 0:
        raise AssertionError(f"protocol_tool {args[0]} failed: {p.stderr.decode()}")
    return p


def status_of(p: subprocess.CompletedProcess[bytes]) -> int:
    m = re.match(rb"veil status (\d+):", p.stderr)
    assert p.returncode == 1 and m, p.stderr
    return int(m.group(1))


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, tmp_path: Path) -> str:
    path = tmp_path / f"key{random.getrandbits(32)}.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(path)


def new_key(kind: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(CURVES[kind])


KINDS = ["P-256", "P-384", "P-521", "RSA"]

# ---- (a) libveil encrypts, joserfc decrypts ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_libveil_jwe_decrypts_with_joserfc(kind: str) -> None:
    priv = new_key(kind)
    jkey = RSAKey.import_key(priv) if kind == "RSA" else ECKey.import_key(priv)
    plaintext = os.urandom(33)
    req = {"jwk": jkey.as_dict(private=False), "plaintext": b64url(plaintext)}
    out = json.loads(tool("jwe-encrypt", stdin=json.dumps(req).encode()).stdout)
    assert list(out) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    header = unb64url(out["protected"]).decode()
    if kind == "RSA":
        assert header == '{"alg":"RSA-OAEP-256","enc":"A256GCM"}'
    else:
        assert re.fullmatch(
            r'\{"alg":"ECDH-ES\+A256KW","enc":"A256GCM","epk":\{"crv":"%s","kty":"EC","x":"[A-Za-z0-9_-]+",'
            r'"y":"[A-Za-z0-9_-]+"\}\}' % kind,
            header,
        ), header
        # Exactly what serde_json rebuilds from the parsed header (compact, struct field order).
        h = json.loads(header)
        rebuilt = json.dumps(
            {"alg": h["alg"], "enc": h["enc"], "epk": {k: h["epk"][k] for k in ("crv", "kty", "x", "y")}},
            separators=(",", ":"),
        )
        assert rebuilt == header
    assert len(unb64url(out["iv"])) == 12 and len(unb64url(out["tag"])) == 16
    got = jwe.decrypt_json(out, jkey, algorithms=JWE_ALGS)
    assert got.plaintext == plaintext


# ---- (b) joserfc and a Trustee re-implementation encrypt, libveil decrypts -----------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_joserfc_jwe_decrypts_with_libveil(kind: str, tmp_path: Path) -> None:
    priv = new_key(kind)
    jkey = RSAKey.import_key(priv) if kind == "RSA" else ECKey.import_key(priv)
    alg = "RSA-OAEP-256" if kind == "RSA" else "ECDH-ES+A256KW"
    plaintext = os.urandom(32)
    obj = FlattenedJSONEncryption({"alg": alg, "enc": "A256GCM"}, plaintext)
    obj.add_recipient({"kid": "tee"}, jkey)  # joserfc's flattened form needs a per-recipient header
    data = jwe.encrypt_json(obj, None, algorithms=JWE_ALGS)
    keyfile = pem(priv, tmp_path)
    assert tool("jwe-decrypt", keyfile, stdin=json.dumps(data).encode()).stdout == plaintext
    # Tampered ciphertext: GCM refuses (VEIL_ERR_AUTH = 201).
    bad = dict(data, ciphertext=b64url(bytes([unb64url(data["ciphertext"])[0] ^ 1]) + unb64url(data["ciphertext"])[1:]))
    assert status_of(tool("jwe-decrypt", keyfile, stdin=json.dumps(bad).encode(), ok=False)) == 201
    # Another recipient's key: the unwrap fails (VEIL_ERR_KEY = 200).
    other = pem(new_key(kind), tmp_path)
    assert status_of(tool("jwe-decrypt", other, stdin=json.dumps(data).encode(), ok=False)) == 200


def trustee_encrypt(pub: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, plaintext: bytes) -> dict[str, str]:
    """Reference section 1.4, written from the description, sharing nothing with libveil."""
    cek, iv = os.urandom(32), os.urandom(12)
    if isinstance(pub, rsa.RSAPublicKey):
        header = '{"alg":"RSA-OAEP-256","enc":"A256GCM"}'
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        encrypted_key = pub.encrypt(cek, oaep)
    else:
        eph = ec.generate_private_key(pub.curve)
        z = eph.exchange(ec.ECDH(), pub)
        alg = b"ECDH-ES+A256KW"
        other = len(alg).to_bytes(4, "big") + alg + bytes(8) + (256).to_bytes(4, "big")
        kek = hashlib.sha256((1).to_bytes(4, "big") + z + other).digest()
        encrypted_key = aes_key_wrap(kek, cek)
        n = (pub.curve.key_size + 7) // 8
        nums = eph.public_key().public_numbers()
        crv = {256: "P-256", 384: "P-384", 521: "P-521"}[pub.curve.key_size]
        header = (
            '{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"%s","kty":"EC","x":"%s","y":"%s"}}'
            % (crv, b64url(nums.x.to_bytes(n, "big")), b64url(nums.y.to_bytes(n, "big")))
        )
    protected = b64url(header.encode())
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    return {
        "protected": protected,
        "encrypted_key": b64url(encrypted_key),
        "iv": b64url(iv),
        "ciphertext": b64url(sealed[:-16]),
        "tag": b64url(sealed[-16:]),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_trustee_shaped_jwe_decrypts_with_libveil(kind: str, tmp_path: Path) -> None:
    priv = new_key(kind)
    plaintext = os.urandom(32)
    data = trustee_encrypt(priv.public_key(), plaintext)
    keyfile = pem(priv, tmp_path)
    assert tool("jwe-decrypt", keyfile, stdin=json.dumps(data).encode()).stdout == plaintext
    # The header re-serialised with another key order is another AAD: refused (section 0.3's pitfall).
    h = json.loads(unb64url(data["protected"]))
    moved = dict(data, protected=b64url(json.dumps(dict(reversed(list(h.items())))).encode()))
    assert status_of(tool("jwe-decrypt", keyfile, stdin=json.dumps(moved).encode(), ok=False)) == 201


# ---- (c) JWT ES256 both ways -----------------------------------------------------------------------------------


def test_libveil_jwt_verifies_with_joserfc(tmp_path: Path) -> None:
    priv = ec.generate_private_key(ec.SECP256R1())
    claims = {"eat_profile": "tag:github.com,2024:confidential-containers/Trustee", "iat": 1000, "exp": 1300,
              "submods": {"cpu0": {"ear.status": "affirming"}}}
    token = tool("jwt-sign", pem(priv, tmp_path), "broker-1", stdin=json.dumps(claims).encode()).stdout.decode()
    tok = jwt.decode(token, ECKey.import_key(priv.public_key()), algorithms=["ES256"])
    assert tok.header == {"alg": "ES256", "typ": "JWT", "kid": "broker-1"}
    assert tok.claims == claims
    other = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(Exception):
        jwt.decode(token, other, algorithms=["ES256"])


def test_joserfc_jwt_verifies_with_libveil(tmp_path: Path) -> None:
    priv = ec.generate_private_key(ec.SECP256R1())
    key = ECKey.import_key(priv)
    claims = {"iss": "py", "iat": 1000, "nbf": 1000, "exp": 1300}
    token = jwt.encode({"alg": "ES256", "typ": "JWT"}, claims, key)
    req = {"jwk": key.as_dict(private=False), "token": token}
    assert json.loads(tool("jwt-verify", "1100", stdin=json.dumps(req).encode()).stdout) == claims
    assert status_of(tool("jwt-verify", "1300", stdin=json.dumps(req).encode(), ok=False)) == 204  # expired
    assert status_of(tool("jwt-verify", "999", stdin=json.dumps(req).encode(), ok=False)) == 204  # nbf
    assert tool("jwt-verify", "1305", "10", stdin=json.dumps(req).encode()).returncode == 0  # leeway
    other = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    wrong = dict(req, jwk=other.as_dict(private=False))
    assert status_of(tool("jwt-verify", "1100", stdin=json.dumps(wrong).encode(), ok=False)) == 202
    hs = jwt.encode({"alg": "HS256"}, claims, __import__("joserfc.jwk", fromlist=["OctKey"]).OctKey.generate_key(256))
    hs_req = dict(req, token=hs)
    assert status_of(tool("jwt-verify", "1100", stdin=json.dumps(hs_req).encode(), ok=False)) == 105


def test_jwk_export_matches_cryptography(tmp_path: Path) -> None:
    for kind in KINDS:
        priv = new_key(kind)
        got = json.loads(tool("jwk-export", pem(priv, tmp_path)).stdout)
        want = (RSAKey if kind == "RSA" else ECKey).import_key(priv.public_key()).as_dict(private=False)
        want.pop("kid", None)
        assert got == want
        assert list(got) == (["kty", "n", "e"] if kind == "RSA" else ["kty", "crv", "x", "y"])


# ---- (d) JCS and report_data ------------------------------------------------------------------------------------


def random_string(rng: random.Random, key: bool = False) -> str:
    pools = [(0x01 if key else 0x00, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(rng.randrange(0, 8)):
        lo, hi = rng.choice(pools)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def random_number(rng: random.Random) -> int | float:
    r = rng.random()
    if r < 0.3:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if r < 0.5:
        return rng.randint(-1000, 1000)
    if r < 0.7:
        return rng.choice([0.0, -0.0, 1e21, 1e-7, 1e-6, 5e-324, 1.7976931348623157e308, 0.1, 123.456, 1e300, 2.5e-8])
    while True:
        bits = rng.getrandbits(64)
        f = __import__("struct").unpack("<d", bits.to_bytes(8, "little"))[0]
        if f == f and f not in (float("inf"), float("-inf")):
            return f


def random_json(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth < 4 and r < 0.2:
        return {random_string(rng, key=True): random_json(rng, depth + 1) for _ in range(rng.randrange(0, 6))}
    if depth < 4 and r < 0.35:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    if r < 0.6:
        return random_string(rng)
    if r < 0.9:
        return random_number(rng)
    return rng.choice([True, False, None])


def test_jcs_matches_rfc8785_randomized() -> None:
    rng = random.Random(8785)
    for i in range(300):
        value = {random_string(rng, key=True): random_json(rng) for _ in range(rng.randrange(1, 6))}
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        got = tool("jcs", stdin=text).stdout
        assert got == rfc8785.dumps(value), f"case {i}: {text!r}"


def test_jcs_refuses_unsafe_integers() -> None:
    assert status_of(tool("jcs", stdin=b"[9007199254740992]", ok=False)) == 105
    assert tool("jcs", stdin=b"[-9007199254740991]").stdout == b"[-9007199254740991]"


def test_report_data_vectors() -> None:
    jwk = json.dumps(VEC_JWK).encode()
    out = tool("report-data", VEC_NONCE, "sha384", "", stdin=jwk).stdout.decode().split()
    digest = "2a2ec23f833906e7ed2adf76866bd1116e1378223f4f388c86d1c3784aedca65e176c7feb1591cb6811b4c0d8a012056"
    assert out == [digest, digest + "00" * 16]
    assert base64.b64encode(bytes.fromhex(out[0])).decode() == (
        "Ki7CP4M5BuftKt92hmvREW4TeCI/TziMhtHDeErtymXhdsf+sVkctoEbTA2KASBW"
    )
    device = tool("report-data", VEC_NONCE, "sha384", stdin=jwk).stdout.decode().split()[0]
    assert device == "c33c8d5812da0dc09f6321d6675edfef3ff604ff9503964930018867dd68435395d01e739a12740c1985e6d7cd8db992"
    # The vector's private key really is SHA256("kbs-test-vector-tee-key").
    d = int.from_bytes(hashlib.sha256(b"kbs-test-vector-tee-key").digest(), "big")
    nums = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers()
    assert b64url(nums.x.to_bytes(32, "big")) == VEC_JWK["x"] and b64url(nums.y.to_bytes(32, "big")) == VEC_JWK["y"]


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_report_data_matches_python(hash_name: str) -> None:
    rng = random.Random(hash_name)
    for _ in range(10):
        jwk = ECKey.generate_key("P-256").as_dict(private=False)
        jwk["alg"] = "ECDH-ES+A256KW"
        nonce = base64.b64encode(rng.randbytes(32)).decode()
        add = rng.choice(["", json.dumps({"nvidia": {"evidence": random_string(rng)}})])
        out = tool("report-data", nonce, hash_name, add, stdin=json.dumps(jwk).encode()).stdout.decode().split()
        want = hashlib.new(hash_name, rfc8785.dumps({"tee-pubkey": jwk, "nonce": nonce, "additional-evidence": add}))
        assert out[0] == want.hexdigest()
        assert out[1] == (want.digest() + bytes(64 - want.digest_size)).hex()
