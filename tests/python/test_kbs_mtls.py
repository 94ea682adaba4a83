# SPDX-License-Identifier: Apache-2.0
"""veil-kbs mutual TLS for the admin API (admin_client_ca; docs/kbs.md, "Mutual TLS for the admin API"), end to end
over HTTPS with certificates made here by `cryptography`:

    * an admin request is authorized by a client certificate that verifies against admin_client_ca, or by the
      bearer token; a certificate from another CA, an expired one, or one whose extended key usage excludes TLS
      client authentication counts as absent (the token still works, nothing else does), and is logged by subject;
    * the log names the method that authenticated each admin request;
    * /metrics (metrics_auth=admin) takes the client certificate too;
    * an RCAR sample-evidence key release over the same listener, without a client certificate, still works;
    * admin_client_ca without tls_cert refuses to start (exit 2); a CA file without a certificate refuses too.

The broker and the RCAR client are test_kbs.py's.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import ssl
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from test_kbs import DEV_KEYS, KBS, TIMEOUT, VEIL, Broker, Reply, attested, free_port, sample_evidence

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)

# ---- a small PKI -----------------------------------------------------------------------------------------------


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_path: Path
    key_path: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Veil Test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(d: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Issued:
    cp, kp = d / f"{stem}.crt", d / f"{stem}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return Issued(key, cert, cp, kp)


def make_ca(d: Path, cn: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _write(d, cn, key, cert)


def make_leaf(d: Path, ca: Issued, cn: str, eku: list[x509.ObjectIdentifier], not_before: datetime.datetime = NOW - DAY,
              not_after: datetime.datetime = NOW + 30 * DAY, ip: str | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(eku), critical=False))
    if ip is not None:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address(ip))]), critical=False)
    return _write(d, cn, key, b.sign(ca.key, hashes.SHA256()))


CLIENT = [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    d = tmp_path_factory.mktemp("pki")
    server_ca, admin_ca, other_ca = make_ca(d, "server-ca"), make_ca(d, "admin-ca"), make_ca(d, "other-ca")
    return {
        "server_ca": server_ca,
        "server": make_leaf(d, server_ca, "kbs-server", [ExtendedKeyUsageOID.SERVER_AUTH], ip="127.0.0.1"),
        "admin_ca": admin_ca,
        "admin": make_leaf(d, admin_ca, "veil-admin", CLIENT),
        "expired": make_leaf(d, admin_ca, "expired-admin", CLIENT, NOW - 10 * DAY, NOW - DAY),
        "server_only": make_leaf(d, admin_ca, "server-purpose-only", [ExtendedKeyUsageOID.SERVER_AUTH]),
        "other": make_leaf(d, other_ca, "intruder", CLIENT),
    }


# ---- the broker over HTTPS -------------------------------------------------------------------------------------


@dataclass
class TlsBroker(Broker):
    server_ca: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                cert: Issued | None = None) -> Reply:
        ctx = ssl.create_default_context(cafile=str(self.server_ca))  # verifies the server, IP SAN included
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT, context=ctx)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def models(self, cert: Issued | None, token: str | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.request("GET", "/admin/v1/models", None, headers, cert)

    def log_events(self, event: str) -> list[dict[str, Any]]:
        assert self.log is not None
        lines = [x for x in self.log.read_text().splitlines() if x.startswith("{")]  # not the --dev banner
        return [e for e in map(json.loads, lines) if e.get("event") == event]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Issued]):
    tmp = tmp_path_factory.mktemp("kbs-mtls")
    b = TlsBroker(tmp / "data", free_port(), [
        "--set", f"tls_cert={pki['server'].cert_path}", "--set", f"tls_key={pki['server'].key_path}",
        "--set", f"admin_client_ca={pki['admin_ca'].cert_path}", "--set", "rate_limit_per_s=0"],
        server_ca=pki["server_ca"].cert_path)
    b.start()
    yield b
    assert b.stop() == 0


# ---- tests -----------------------------------------------------------------------------------------------------


def test_valid_client_cert_without_token(broker: TlsBroker, pki: dict[str, Issued]) -> None:
    r = broker.models(pki["admin"])
    assert r.status == 200, r.body
    assert {"test-0", "test-1"} <= {m["model_id"] for m in r.json()["models"]}
    auths = broker.log_events("admin-auth")
    assert auths[-1]["auth"] == "client-certificate" and "CN=veil-admin" in auths[-1]["subject"]
    # A write works the same way.
    r = broker.request("POST", "/admin/v1/models", json.dumps({"model_id": "by-cert"}).encode(), {}, pki["admin"])
    assert r.status == 201 and len(r.json()["key"]) == 44


@pytest.mark.parametrize("which,why", [("other", "issuer is unknown"), ("expired", "expired"),
                                       ("server_only", "purpose")])
def test_unverifiable_client_cert_is_absent(broker: TlsBroker, pki: dict[str, Issued], which: str, why: str) -> None:
    cn = pki[which].cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    r = broker.models(pki[which])
    assert r.status == 401 and r.json()["error"] == "unauthorized"
    rejected = broker.log_events("client-cert-rejected")
    assert rejected and f"CN={cn}" in rejected[-1]["subject"] and why in rejected[-1]["reason"]
    assert broker.log_events("admin-denied")[-1]["client"] == "127.0.0.1"
    # It is treated as absent, not as a refusal: the token still authorizes.
    r = broker.models(pki[which], token=broker.admin_token)
    assert r.status == 200
    assert broker.log_events("admin-auth")[-1]["auth"] == "token"


def test_no_cert_token_only(broker: TlsBroker) -> None:
    assert broker.models(None, token=broker.admin_token).status == 200
    assert broker.log_events("admin-auth")[-1]["auth"] == "token"
    assert broker.models(None).status == 401
    assert broker.models(None, token="f" * 64).status == 401


def test_valid_cert_with_wrong_token_is_still_admin(broker: TlsBroker, pki: dict[str, Issued]) -> None:
    assert broker.models(pki["admin"], token="f" * 64).status == 200


def test_metrics_accepts_the_client_cert(broker: TlsBroker, pki: dict[str, Issued]) -> None:
    assert broker.request("GET", "/metrics").status == 401
    r = broker.request("GET", "/metrics", None, {}, pki["admin"])
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert broker.request("GET", "/metrics", None, {}, pki["other"]).status == 401


def test_rcar_release_without_client_cert(broker: TlsBroker) -> None:
    s = attested(broker, "sample", sample_evidence)
    assert s.decrypt(s.resource("test-0")) == DEV_KEYS["test-0"]


def test_rcar_ignores_an_admin_cert(broker: TlsBroker, pki: dict[str, Issued]) -> None:
    """A client certificate grants nothing on the protocol routes: no session, no key."""
    r = broker.request("GET", "/kbs/v0/resource/veil/model-key/test-0", None, {}, pki["admin"])
    assert r.status == 401 and b"ciphertext" not in r.body


def test_secrets_not_logged(broker: TlsBroker, pki: dict[str, Issued]) -> None:
    text = broker.log.read_text() if broker.log else ""
    assert broker.admin_token not in text
    for which in ("admin", "other"):
        pem = pki[which].key_path.read_text()
        assert pem.splitlines()[1] not in text


def test_cli_client_cert(broker: TlsBroker, pki: dict[str, Issued]) -> None:
    """veil kbs --client-cert/--client-key: no token file needed; a certificate from another CA gets 401."""
    env = {k: v for k, v in os.environ.items() if k != "VEIL_KBS_TOKEN_FILE"}

    def cli(which: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([VEIL, "kbs", *args, "--url", broker.url, "--cacert", str(broker.server_ca),
                               "--client-cert", str(pki[which].cert_path), "--client-key", str(pki[which].key_path)],
                              capture_output=True, text=True, timeout=TIMEOUT, env=env)

    r = cli("admin", "models")
    assert r.returncode == 0, r.stderr
    assert "test-0" in r.stdout
    r = cli("admin", "audit", "verify")
    assert r.returncode == 0 and "hash chain verified" in r.stdout, r.stderr
    r = cli("other", "models")
    assert r.returncode == 1 and "401" in r.stderr
    r = subprocess.run([VEIL, "kbs", "models", "--url", broker.url, "--client-key", str(pki["admin"].key_path)],
                       capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert r.returncode == 2 and "--client-cert" in r.stderr


def test_client_ca_needs_https(tmp_path: Path, pki: dict[str, Issued]) -> None:
    r = subprocess.run([KBS, "--dev", "--listen", f"127.0.0.1:{free_port()}", "--data", str(tmp_path / "d"),
                        "--set", f"admin_client_ca={pki['admin_ca'].cert_path}"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 2
    assert "admin_client_ca" in r.stderr and "tls_cert" in r.stderr


def test_client_ca_without_certificate_refused(tmp_path: Path, pki: dict[str, Issued]) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    r = subprocess.run([KBS, "--dev", "--listen", f"127.0.0.1:{free_port()}", "--data", str(tmp_path / "d"),
                        "--set", f"tls_cert={pki['server'].cert_path}", "--set", f"tls_key={pki['server'].key_path}",
                        "--set", f"admin_client_ca={bogus}"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 1
    assert "admin_client_ca" in r.stderr and "no PEM certificate" in r.stderr
