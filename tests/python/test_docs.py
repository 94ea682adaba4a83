# SPDX-License-Identifier: Apache-2.0
"""The docs match the program, and errors say what to do next (issue 18).

Runnable blocks. A fenced block whose info string is exactly ``sh runnable`` (the opening fence is the line
```` ```sh runnable ````) in README.md or any Markdown file under docs/ is executed here, as written:

    * all runnable blocks of one file, in order, as one bash script (``set -euo pipefail``), so shell variables,
      ``export``s and ``$!`` carry from block to block as they would in one terminal;
    * in a fresh temporary directory holding a tiny ONNX model ``model.onnx`` and its float32 input ``x.npy``
      (what docs/quickstart.md, step 1, makes);
    * with the build under test first on PATH as ``veil`` and ``veil-kbs`` ($VEIL_BIN, $VEIL_KBS_BIN), this test's
      Python interpreter's directory next (``python3``: numpy, onnx), and no VEIL_KBS_* variables inherited;
    * with the port 8443 (the default of ``veil-kbs`` and ``veil kbs``) replaced by a free port in every block, so
      another broker on this machine cannot interfere;
    * whatever a block leaves running in the background (a ``veil-kbs &``) is killed when the file's script ends.

A block that fails names its file and line. A plain ``sh`` block is illustrative (production hosts, TEE hardware)
and is not run. The files that must keep runnable blocks are listed in MUST_RUN, so the marker cannot silently
disappear.

Hints. Every error the issue lists is provoked against a ``veil-kbs --dev`` (with and without the sim platform's
key), an HTTPS broker and the local CLI, and its message is checked for the way out it must name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from test_kbs import KBS, ROOT, TIMEOUT, VEIL, Broker, free_port

RUNTIME = os.environ.get("VEIL_RUNTIME_BIN", str(ROOT / "build" / "release" / "veil-runtime"))

ROOT = Path(__file__).resolve().parents[2]
MARKER = "sh runnable"
DEFAULT_PORT = "8443"
RUNTIME_PORT = "8000"  # veil-runtime's default port, replaced by another free port the same way
MUST_RUN = ["README.md", "docs/quickstart.md", "docs/kbs.md", "docs/runtime.md", "docs/spec/policy.md",
            "docs/spec/evidence.md"]
SCRIPT_TIMEOUT = 45.0
ERROR = "veil: error: "


# ---- runnable blocks --------------------------------------------------------------------------------------------


@dataclass
class Block:
    path: str  # relative to the repository root
    line: int  # of the opening fence
    text: str


def runnable_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```" + MARKER:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{path}:{start}: runnable block never closed"
            blocks.append(Block(str(path.relative_to(ROOT)), start, "\n".join(body) + "\n"))
        i += 1
    return blocks


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


DOCS = {str(p.relative_to(ROOT)): b for p in doc_files() if (b := runnable_blocks(p))}


def tiny_model(d: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(d / "model.onnx"))
    np.save(d / "x.npy", np.ones((1, 4), np.float32))


def tool_env(tmp: Path) -> dict[str, str]:
    """PATH with the binaries under test first; nothing of the caller's broker settings."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in (("veil", VEIL), ("veil-kbs", KBS), ("veil-runtime", RUNTIME)):
        link = bin_dir / name
        if not link.exists():
            link.symlink_to(Path(target).resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_KBS_")}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    return env


def script_for(blocks: list[Block], port: int, runtime_port: int) -> str:
    parts = ["set -euo pipefail",
             'trap \'rc=$?; [ "$rc" -eq 0 ] || echo "runnable block failed: $VEIL_DOC_BLOCK (exit $rc)" >&2\' EXIT']
    for b in blocks:
        parts.append(f"VEIL_DOC_BLOCK='{b.path}:{b.line}'")
        text = re.sub(rf"\b{DEFAULT_PORT}\b", str(port), b.text)
        parts.append(re.sub(rf"\b{RUNTIME_PORT}\b", str(runtime_port), text))
    return "\n".join(parts) + "\n"


def test_runnable_marker_is_used() -> None:
    missing = [p for p in MUST_RUN if p not in DOCS]
    assert not missing, f"no ```{MARKER} block left in {missing}"


def execute(blocks: list[Block], tmp: Path) -> tuple[int, str, str]:
    """Runs the blocks as described at the top; (exit status, stdout, stderr)."""
    work = tmp / "work"
    work.mkdir(parents=True)
    tiny_model(work)
    proc = subprocess.Popen(["bash", "-c", script_for(blocks, free_port(), free_port())], cwd=work, env=tool_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the runnable blocks did not finish in {SCRIPT_TIMEOUT:.0f} s\n{err.decode()[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # a broker a block left in the background
        except ProcessLookupError:
            pass
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_runnable_blocks(doc: str, tmp_path: Path) -> None:
    rc, out, err = execute(DOCS[doc], tmp_path)
    assert rc == 0, f"{doc}:\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-4000:]}"


def test_a_failing_block_fails(tmp_path: Path) -> None:
    """The harness is honest: a wrong flag, or a failure inside a pipeline, fails and names its block."""
    ok = Block("docs/x.md", 3, "veil keygen -o model.key\nexport K=model.key\n")
    for bad in ("veil seal model.onnx -o m.veil --model-identifier m --key \"$K\"\n",
                "veil inspect missing.veil | cat\necho never\n"):
        rc, out, err = execute([ok, Block("docs/x.md", 9, bad)], tmp_path / str(len(bad)))
        assert rc != 0 and "runnable block failed: docs/x.md:9" in err and "never" not in out, err
    rc, _, err = execute([ok, Block("docs/x.md", 9, "veil inspect missing.veil || true\n")], tmp_path / "ok")
    assert rc == 0, err


# ---- errors that say what to do ---------------------------------------------------------------------------------


def run(*args: Any, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEIL, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd,
                          env={k: v for k, v in os.environ.items() if not k.startswith("VEIL_KBS_")})


def failed(p: subprocess.CompletedProcess[str], *hints: str, code: int = 1) -> str:
    """The one error line of a failed command, checked for every hint."""
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = [x for x in p.stderr.splitlines() if x.startswith(ERROR)]
    assert len(lines) == (1 if code == 1 else 0), p.stderr
    text = lines[0] if lines else p.stderr
    for h in hints:
        assert h in text, f"{h!r} not in {text!r}"
    return text


@dataclass
class Env:
    base: Path
    sim: Path
    trusting: Broker  # a --dev broker with --sim-key
    untrusting: Broker  # a --dev broker without it

    def admin(self, b: Broker, *args: Any) -> subprocess.CompletedProcess[str]:
        return run("kbs", *args, "--url", b.url, "--token-file", b.data / "admin.token")

    def sealed(self, model_id: str, key: Path, name: str | None = None) -> Path:
        out = self.base / f"{name or model_id}.veil"
        p = run("seal", self.base / "model.onnx", "-o", out, "--model-id", model_id, "--key", key)
        assert p.returncode == 0, p.stderr
        return out

    def run_kbs(self, sealed: Path, url: str, *extra: Any) -> subprocess.CompletedProcess[str]:
        return run("run", sealed, "--kbs", url, "--tee", "sim", "--sim-dir", self.sim, "-i", self.base / "x.npy",
                   "-o", self.base / "y.npy", *extra)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("docs-hints")
    tiny_model(base)
    sim = base / "sim"
    assert run("attest", "sim-init", "--dir", sim).returncode == 0
    trusting = Broker(base / "trusting", free_port(), ["--sim-key", str(sim / "platform.pub")])
    untrusting = Broker(base / "untrusting", free_port(), [])
    trusting.start()
    try:
        untrusting.start()
        try:
            yield Env(base, sim, trusting, untrusting)
        finally:
            assert untrusting.stop() == 0
    finally:
        assert trusting.stop() == 0


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory):
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from test_kbs_mtls import make_ca, make_leaf

    d = tmp_path_factory.mktemp("docs-tls")
    ca = make_ca(d, "docs-ca")
    leaf = make_leaf(d, ca, "docs-kbs", [ExtendedKeyUsageOID.SERVER_AUTH], ip="127.0.0.1")
    b = Broker(d / "data", free_port(), ["--set", f"tls_cert={leaf.cert_path}", "--set", f"tls_key={leaf.key_path}"])
    b.start()
    try:
        yield b, ca.cert_path
    finally:
        assert b.stop() == 0


def test_https_to_a_plain_http_broker_suggests_http(env: Env) -> None:
    url = f"https://127.0.0.1:{env.trusting.port}"
    failed(run("kbs", "models", "--url", url, "--token-file", env.trusting.data / "admin.token"),
           "SSL connect error", "use http://")
    key = env.base / "https.key"
    assert run("keygen", "-o", key).returncode == 0
    failed(env.run_kbs(env.sealed("https-model", key), url), "SSL connect error", "use http://")


def test_http_to_an_https_broker_suggests_https(env: Env, tls_broker: tuple[Broker, Path]) -> None:
    b, ca = tls_broker
    token = ["--token-file", b.data / "admin.token"]
    failed(run("kbs", "models", "--url", f"http://127.0.0.1:{b.port}", *token), "use https://")
    failed(run("kbs", "models", "--url", f"https://127.0.0.1:{b.port}", *token), "does not verify",
           "--cacert")
    assert run("kbs", "models", "--url", f"https://127.0.0.1:{b.port}", "--cacert", ca, *token).returncode == 0


def test_missing_ca_file_is_named(env: Env, tls_broker: tuple[Broker, Path]) -> None:
    b, _ = tls_broker
    missing = env.base / "no-such-ca.pem"
    failed(run("kbs", "models", "--url", f"https://127.0.0.1:{b.port}", "--cacert", missing, "--token-file",
               b.data / "admin.token"), str(missing), "--cacert")
    key = env.base / "ca.key"
    assert run("keygen", "-o", key).returncode == 0
    sealed = env.sealed("ca-model", key)
    p = run("run", sealed, "--kbs", f"https://127.0.0.1:{b.port}", "--tee", "sample", "--kbs-cacert", missing,
            "-i", env.base / "x.npy", "-o", env.base / "y.npy")
    failed(p, "CA bundle", str(missing))


def test_untrusted_sim_platform_names_sim_key(env: Env) -> None:
    key = env.base / "untrusted.key"
    assert run("keygen", "-o", key).returncode == 0
    p = env.run_kbs(env.sealed("untrusted", key), env.untrusting.url)
    failed(p, "(401 AttestationError)", "does not trust this simulation platform", "--sim-key")


def test_unknown_model_is_named(env: Env) -> None:
    key = env.base / "unknown.key"
    assert run("keygen", "-o", key).returncode == 0
    sealed = env.sealed("never-registered", key)
    failed(env.run_kbs(sealed, env.trusting.url), "'never-registered'", "(401 PolicyDeny)", "veil inspect",
           "veil kbs show never-registered")
    pol = env.base / "any-sim.json"
    pol.write_text('{"version": 1, "allow_sim": true}')
    assert env.admin(env.trusting, "create", "no-v9", "-o", env.base / "no-v9.key", "--policy", pol).returncode == 0
    failed(env.run_kbs(env.sealed("no-v9", env.base / "no-v9.key"), env.trusting.url, "--key-version", "9"),
           "'no-v9'", "(404 ResourceNotFound)", "veil kbs show no-v9")
    failed(env.admin(env.trusting, "show", "never-registered"), "404", "veil kbs models")


def test_wrong_key_after_rewrap_names_the_header_version(env: Env) -> None:
    old, new = env.base / "old.key", env.base / "new.key"
    assert run("keygen", "-o", old).returncode == 0 and run("keygen", "-o", new).returncode == 0
    sealed = env.sealed("rewrapped", old)
    assert run("rewrap", sealed, "--key", old, "--new-key", new, "--new-key-version", "2").returncode == 0
    hint = "header names model 'rewrapped' key version 2"
    failed(run("run", sealed, "--key", old, "-i", env.base / "x.npy", "-o", env.base / "y.npy"), hint, str(old))
    failed(run("unseal", sealed, "--key", old, "-o", env.base / "back.onnx"), hint)
    assert not (env.base / "back.onnx").exists()
    # With the broker: its newest key is not the file's; the header's version is the way out.
    pol = env.base / "any-sim.json"
    pol.write_text('{"version": 1, "allow_sim": true}')
    k1 = env.base / "rot-v1.key"
    assert env.admin(env.trusting, "create", "rot", "-o", k1, "--policy", pol).returncode == 0
    sealed = env.sealed("rot", k1)
    assert env.admin(env.trusting, "rotate", "rot", "-o", env.base / "rot-v2.key").returncode == 0
    failed(env.run_kbs(sealed, env.trusting.url), "its header names key version 1", "--key-version 1")


def test_key_file_sizes_are_the_files(env: Env) -> None:
    big = env.base / "big.key"
    big.write_bytes(os.urandom(206))
    big.chmod(0o600)
    sealed = env.base / "sz.veil"
    failed(run("seal", env.base / "model.onnx", "-o", sealed, "--model-id", "sz", "--key", big),
           "holds 206 bytes", "exactly 32 raw bytes", "veil keygen")
    pem = env.sim / "platform.pub"
    assert pem.stat().st_size == 178
    failed(run("seal", env.base / "model.onnx", "-o", sealed, "--model-id", "sz", "--key", pem),
           "holds 178 bytes", "PEM")
    hexkey = env.base / "hex.key"
    hexkey.write_text(os.urandom(32).hex() + "\n")
    hexkey.chmod(0o600)
    failed(run("seal", env.base / "model.onnx", "-o", sealed, "--model-id", "sz", "--key", hexkey),
           "holds 65 bytes", "xxd -r -p")
    assert not sealed.exists()


def test_keygen_says_how_to_proceed(env: Env) -> None:
    key = env.base / "kg.key"
    assert run("keygen", "-o", key).returncode == 0
    first = key.read_bytes()
    failed(run("keygen", "-o", key), "already exists", "--force")
    assert key.read_bytes() == first
    failed(run("keygen", "-o", env.base / "no-dir" / "k"), "does not exist", "mkdir -p")


def test_config_typo_suggests_the_setting(tmp_path: Path) -> None:
    cfg = tmp_path / "kbs.conf"
    cfg.write_text(f"data_dir = {tmp_path / 'd'}\nlisten = 127.0.0.1:{free_port()}\nrate_limt_per_s = 5\n")
    r = subprocess.run([KBS, "--config", str(cfg)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2, r.stderr
    assert "line 3: unknown setting 'rate_limt_per_s' (did you mean rate_limit_per_s?)" in r.stderr
    assert "line 3: line 3" not in r.stderr and str(cfg) in r.stderr
    # Blank and comment lines count: the line number is the file's.
    cfg.write_text(f"# broker\n\ndata_dir = {tmp_path / 'd'}\n\nsesion_ttl_s = 5\n")
    r = subprocess.run([KBS, "--config", str(cfg)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and "line 5: unknown setting 'sesion_ttl_s' (did you mean session_ttl_s?)" in r.stderr
    r = subprocess.run([KBS, "--dev", "--data", str(tmp_path / "d"), "--set", "alowed_tees=sim"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and "(did you mean allowed_tees?)" in r.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("settings,code,hint", [
    (["--listen", "localhost:{port}"], 2, "numeric address"),
    (["--listen", "0.0.0.0:{port}"], 1, "tls_cert"),
    (["--set", "allowed_tees=sim,sgz"], 2, "unknown TEE 'sgz'"),
    (["--set", "tls_cert={tmp}/missing.pem", "--set", "tls_key={tmp}/missing.key"], 1, "missing.pem"),
    (["--sim-key", "{tmp}/missing.pub"], 1, "missing.pub"),
], ids=["hostname", "plain http off loopback", "unknown tee", "missing tls_cert", "missing sim key"])
def test_settings_checked_before_the_disk(tmp_path: Path, settings: list[str], code: int, hint: str) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "kbs.conf"
    cfg.write_text(f"data_dir = {data}\n")
    args = [a.format(port=free_port(), tmp=tmp_path) for a in settings]
    r = subprocess.run([KBS, "--config", str(cfg), *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == code and hint in r.stderr, r.stderr
    assert not data.exists(), "the broker touched the disk before refusing a setting"


def test_url_without_scheme_one_rule(env: Env) -> None:
    bare = f"127.0.0.1:{env.trusting.port}"
    want = f"the key broker URL '{bare}' is not an http:// or https:// URL"
    failed(run("kbs", "models", "--url", bare, "--token-file", env.trusting.data / "admin.token"), want,
           "http://127.0.0.1:8443")
    key = env.base / "bare.key"
    assert run("keygen", "-o", key).returncode == 0
    failed(env.run_kbs(env.sealed("bare", key), bare), want)
    # Plain HTTP off loopback: the admin token would cross the network in clear.
    failed(run("kbs", "models", "--url", "http://192.0.2.1:1", "--token-file", env.trusting.data / "admin.token"),
           "not a loopback address", "https://")


def test_silent_commands_confirm(env: Env) -> None:
    pol = env.base / "confirm.json"
    pol.write_text('{"version": 1, "allow_sim": true}')
    assert env.admin(env.trusting, "create", "confirm", "-o", env.base / "confirm.key").returncode == 0
    p = env.admin(env.trusting, "policy", "set", "confirm", pol)
    assert p.returncode == 0 and p.stdout == "confirm: release policy stored\n", p
    ev = env.base / "ev.json"
    assert run("attest", "collect", "--provider", "sim", "--sim-dir", env.sim, "--report-data", "00", "-o",
               ev).returncode == 0
    p = run("attest", "verify", ev, "--sim-key", env.sim / "platform.pub", "--policy", pol)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == f"policy:       {pol} allows this evidence", p
    p = run("attest", "verify", ev, "--sim-key", env.sim / "platform.pub", "--policy", pol, "--json")
    assert p.returncode == 0 and "allows this evidence" in p.stderr, p
    assert p.stdout.count("\n") == 1 and p.stdout.startswith("{")  # stdout stays one JSON object


def test_admin_cli_details(env: Env) -> None:
    p = run("kbs", "--help")
    assert "create MODEL (-o KEY | --key-file KEY)" in p.stdout and "rotate MODEL (-o KEY | --key-file KEY)" in p.stdout
    failed(env.admin(env.trusting, "create", "neither"), "-o KEY", code=2)
    # An existing -o file is refused before the broker makes a key that would be lost.
    existing = env.base / "existing.key"
    existing.write_bytes(b"keep")
    failed(env.admin(env.trusting, "create", "not-made", "-o", existing), "already exists")
    assert existing.read_bytes() == b"keep"
    failed(env.admin(env.trusting, "show", "not-made"), "no such model")
    # audit list: --from 0 is the start (as the OpenAPI file says), and every line carries its sequence number.
    p = env.admin(env.trusting, "audit", "list", "--from", "0")
    assert p.returncode == 0, p.stderr
    seqs = [json.loads(line)["seq"] for line in p.stdout.splitlines()]
    assert seqs[:2] == [1, 2] and seqs == sorted(seqs)
    p2 = env.admin(env.trusting, "audit", "list", "--from", str(seqs[-1]))
    assert [json.loads(line)["seq"] for line in p2.stdout.splitlines()] == [seqs[-1]]
    # A wrong token says where the right one is.
    bad = env.base / "bad.token"
    bad.write_text("f" * 64)
    failed(run("kbs", "models", "--url", env.trusting.url, "--token-file", bad), "401", "admin.token")
    failed(run("kbs", "models", "--url", f"http://127.0.0.1:{free_port()}", "--token-file", bad),
           "Couldn't connect", "is the broker running")

