"""The veil CLI as a user meets it: --help everywhere, exit codes 0/1/2, one error line, no partial files."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VEIL = os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil"))
GOLDEN = ROOT / "tests" / "vectors" / "sealed"


@pytest.fixture(scope="module", autouse=True)
def _binary() -> None:
    if not Path(VEIL).exists():
        if os.environ.get("VEIL_BIN"):
            pytest.fail(f"VEIL_BIN={VEIL} does not exist")
        pytest.skip("veil CLI not built (make build)")


@pytest.fixture
def gkey(tmp_path: Path) -> Path:
    """The golden key, copied with mode 0600 (git keeps it 0644, which the CLI warns about)."""
    k = tmp_path / "golden.key"
    k.write_bytes((GOLDEN / "key.bin").read_bytes())
    k.chmod(0o600)
    return k


def veil(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEIL, *map(str, args)], capture_output=True, text=True, timeout=120)


def assert_failed(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert p.returncode == 1, p
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("veil: error: "), p.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("cmd", ["keygen", "seal", "inspect", "unseal", "rewrap", "reseal", "attest", "run"])
def test_every_command_has_help(cmd: str) -> None:
    p = veil(cmd, "--help")
    assert p.returncode == 0
    assert p.stdout.startswith(f"usage: veil {cmd}")


def test_top_level_usage_and_version() -> None:
    assert veil("--help").returncode == 0
    assert "commands:" in veil("--help").stdout
    assert veil().returncode == 2
    p = veil("frobnicate")
    assert p.returncode == 2 and "unknown command" in p.stderr
    assert veil("--version").stdout.startswith("veil ")


@pytest.mark.parametrize("args", [
    ["seal", "m.onnx"],                                              # missing -o, --key, --model-id
    ["seal", "m.onnx", "-o", "x", "--key", "k"],                     # missing --model-id
    ["seal", "m.onnx", "-o", "x", "--key", "k", "--model-id", "m", "--key-version", "0"],
    ["seal", "m.onnx", "-o", "x", "--key", "k", "--model-id", "m", "--key-version", "-1"],
    ["seal", "m.onnx", "-o", "x", "--key", "k", "--model-id", "m", "--model-version", "12abc"],
    ["seal", "m.onnx", "-o", "x", "--key", "k", "--model-id", "m", "--chunk-size", "99999999999"],
    ["seal", "m.onnx", "-o", "x", "--key", "k", "--model-id", "m", "--bogus"],
    ["seal", "m.onnx", "extra", "-o", "x", "--key", "k", "--model-id", "m"],
    ["inspect"],
    ["inspect", "a", "--key", "k"],                                   # inspect takes no key
    ["unseal", "a.veil", "--key", "k"],
    ["rewrap", "a.veil", "--key", "k", "--new-key", "n"],             # missing --new-key-version
    ["reseal", "a.veil"],                                             # missing --key
    ["reseal", "a.veil", "--key", "k", "--new-key", "n"],             # --new-key without --new-key-version
    ["reseal", "a.veil", "--key", "k", "--new-key-version", "2"],     # and the other way round
    ["reseal", "a.veil", "--key", "k", "--model-id", "m"],            # not an option of reseal
    ["keygen"],
    ["keygen", "-o"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    p = veil(*args)
    assert p.returncode == 2, p
    assert p.stdout == ""
    assert "--help" in p.stderr


def test_option_of_another_command_is_named() -> None:
    p = veil("seal", "m.onnx", "--new-key", "k", "-o", "x", "--key", "k", "--model-id", "m")
    assert p.returncode == 2
    assert "--new-key does not apply" in p.stderr


def test_keygen_mode_and_no_clobber(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert veil("keygen", "-o", key).returncode == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_bytes()
    assert len(first) == 32
    assert_failed(veil("keygen", "-o", key), "already exists")
    assert key.read_bytes() == first
    assert veil("keygen", "-o", key, "--force").returncode == 0
    assert key.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_seal_inspect_unseal_rewrap(tmp_path: Path, gkey: Path) -> None:
    key, key2 = gkey, tmp_path / "k2"
    assert veil("keygen", "-o", key2).returncode == 0
    sealed, out = tmp_path / "m.veil", tmp_path / "back.onnx"
    p = veil("seal", GOLDEN / "model.onnx", "-o", sealed, "--key", GOLDEN / "key.bin", "--model-id", "cli-test",
             "--model-version", "9", "--chunk-size", "4096", "--threads", "2")
    assert p.returncode == 0, p.stderr
    assert "accessible by group or others" in p.stderr  # the golden key file is mode 0644 in git
    assert p.stderr.startswith("veil: warning: ")
    info = veil("inspect", sealed, "--json")
    assert '"model_id": "cli-test"' in info.stdout and '"model_version": 9' in info.stdout
    assert veil("unseal", sealed, "-o", out, "--key", key).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes() == (GOLDEN / "model.onnx").read_bytes()
    assert veil("rewrap", sealed, "--key", key, "--new-key", key2, "--new-key-version", "2").returncode == 0
    assert '"key_version": 2' in veil("inspect", sealed, "--json").stdout
    assert_failed(veil("unseal", sealed, "-o", out, "--key", key), "key unwrap failed")


def test_reseal(tmp_path: Path, gkey: Path) -> None:
    """veil reseal: a new file id (fresh data key), the same model; rewrap keeps the file id (and data key)."""
    key2 = tmp_path / "k2"
    assert veil("keygen", "-o", key2).returncode == 0
    sealed, out = tmp_path / "m.veil", tmp_path / "back.onnx"
    assert veil("seal", GOLDEN / "model.onnx", "-o", sealed, "--key", gkey, "--model-id", "cli-reseal",
                "--model-version", "4", "--chunk-size", "4096").returncode == 0

    def file_id(path: Path) -> str:
        p = veil("inspect", path)
        return next(line for line in p.stdout.splitlines() if line.startswith("file id:")).split()[-1]

    first = file_id(sealed)
    rewrapped = tmp_path / "w.veil"
    assert veil("rewrap", sealed, "--key", gkey, "--new-key", key2, "--new-key-version", "2", "-o",
                rewrapped).returncode == 0
    assert file_id(rewrapped) == first
    resealed = tmp_path / "r.veil"
    p = veil("reseal", sealed, "--key", gkey, "--new-key", key2, "--new-key-version", "2", "--model-version", "5",
             "-o", resealed)
    assert p.returncode == 0, p.stderr
    assert file_id(resealed) != first
    info = veil("inspect", resealed, "--json").stdout
    assert '"model_version": 5' in info and '"key_version": 2' in info and '"model_id": "cli-reseal"' in info
    assert veil("unseal", resealed, "-o", out, "--key", key2).returncode == 0
    assert out.read_bytes() == (GOLDEN / "model.onnx").read_bytes()
    assert_failed(veil("unseal", resealed, "-o", tmp_path / "x.onnx", "--key", gkey), "key unwrap failed")
    assert veil("reseal", sealed, "--key", gkey).returncode == 0  # in place, same key
    assert file_id(sealed) != first
    assert_failed(veil("reseal", sealed, "--key", gkey, "--model-version", "3", "-o", tmp_path / "n.veil"),
                  "may not go down")
    assert not (tmp_path / "n.veil").exists()
    assert "rotation, not compromise recovery" in veil("rewrap", "--help").stdout


def test_failures_leave_nothing(tmp_path: Path, gkey: Path) -> None:
    key = gkey
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"\x08\x01this is not a model")
    out = tmp_path / "out.veil"
    assert_failed(veil("seal", bad_model, "-o", out, "--key", key, "--model-id", "m"), "ONNX")
    assert_failed(veil("seal", tmp_path / "missing.onnx", "-o", out, "--key", key, "--model-id", "m"),
                  "cannot open")
    assert_failed(veil("seal", GOLDEN / "model.onnx", "-o", out, "--key", tmp_path / "nokey",
                       "--model-id", "m"), "cannot open key file")
    assert_failed(veil("seal", GOLDEN / "model.onnx", "-o", out, "--key", key, "--model-id", "a/b"),
                  "model id")
    assert_failed(veil("inspect", bad_model), "bad magic")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "golden.key"]


def test_unseal_failure_keeps_existing_output(tmp_path: Path, gkey: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"precious")
    damaged = tmp_path / "d.veil"
    data = bytearray((GOLDEN / "basic.veil").read_bytes())
    data[-1] ^= 0x80
    damaged.write_bytes(bytes(data))
    assert_failed(veil("unseal", damaged, "-o", out, "--key", gkey), "authentication failed")
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.veil", "golden.key", "model.onnx"]
