# SPDX-License-Identifier: Apache-2.0
"""Cross-checks the `veil` CLI (libveil) against the independent reference tests/vectors/sealed_ref.py.

    (a) files sealed by the CLI parse and decrypt with the reference, and hold the stripped graph and the
        initializers' raw bytes in graph order (encrypted and --public-graph);
    (b) files sealed by the reference are accepted by `veil unseal` and give back the same tensors;
    (c) every variant written by tests/attacks/tamper.py is refused by `veil unseal` with exit 1, exactly one
        `veil: error: ` line on stderr naming the check its manifest layer implies (the reference's own verdict on
        the variant: header parse, key unwrap, chunk authentication or graph/section mismatch; see
        _expected_reason), and no output file (an existing one is left byte-identical).

The binary comes from $VEIL_BIN (default build/release/veil); the module is skipped when it does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from refusal import refusal_problems  # noqa: E402
from test_sealed_ref import (  # noqa: E402
    PY,
    TAMPER,
    accept_variants,
    make_edge_model,
    make_model,
    ref,
    strip_model,
    tensor_raw_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
VEIL = Path(os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil")))

pytestmark = pytest.mark.skipif(
    not (VEIL.is_file() and os.access(VEIL, os.X_OK)),
    reason=f"veil CLI not found at {VEIL} (build it, or set VEIL_BIN)",
)


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str


def veil(*args: object, timeout: float = 120) -> Run:
    r = subprocess.run([str(VEIL), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return Run(r.returncode, r.stdout, r.stderr)


def ok(*args: object) -> Run:
    r = veil(*args)
    assert r.rc == 0, f"veil {' '.join(map(str, args))} failed ({r.rc}): {r.stderr}"
    return r


def keygen(path: Path) -> bytes:
    ok("keygen", "-o", path)
    key = path.read_bytes()
    assert len(key) == 32
    return key


def torch_model(path: Path) -> onnx.ModelProto:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 300), torch.nn.ReLU(), torch.nn.Linear(300, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3)
    )
    net.eval()
    torch.onnx.export(net, (torch.zeros(1, 16),), str(path), dynamo=False, input_names=["x"], output_names=["y"])
    return onnx.load(str(path))


def check_cli_file(data: bytes, key: bytes, model: onnx.ModelProto) -> ref.SealedFile:
    """The reference opens a CLI-sealed file; its sections are the stripped graph and the raw tensors."""
    sf = ref.parse(data)
    graph, tensors = ref.open_sealed(data, key)
    expected_graph, expected_tensors = strip_model(model)
    got = onnx.ModelProto.FromString(graph)
    assert got == expected_graph, "graph section differs from the input model with its initializer data removed"
    assert len(tensors) == len(expected_tensors)
    for k, (t, e) in enumerate(zip(tensors, expected_tensors)):
        assert t == e, f"tensor section {k + 1} differs from the initializer's raw bytes"
    extracted = ref.check_graph(graph, tensors)
    names = [i.name for i in model.graph.initializer if i.data_type != onnx.TensorProto.STRING]
    assert [i.name for i in extracted] == names
    if sf.header.public_graph:
        assert sf.header.graph_digest == hashlib.sha256(graph).digest()
    return sf


# --- (a) CLI-sealed files read by the reference --------------------------------------------------------------


@pytest.mark.parametrize("public", [False, True])
def test_cli_sealed_file_conforms(tmp_path: Path, public: bool) -> None:
    key = keygen(tmp_path / "k")
    model = make_model()
    onnx.save(model, str(tmp_path / "m.onnx"))
    args = ["seal", tmp_path / "m.onnx", "-o", tmp_path / "m.veil", "--model-id", "mlp.v2-x_y", "--key",
            tmp_path / "k", "--key-version", "3", "--model-version", "77", "--chunk-size", "4096"]
    ok(*args, *(["--public-graph"] if public else []))
    data = (tmp_path / "m.veil").read_bytes()
    sf = check_cli_file(data, key, model)
    h = sf.header
    assert (h.model_id, h.model_version, h.chunk_size, sf.key_wrap.key_version) == (b"mlp.v2-x_y", 77, 4096, 3)
    assert h.public_graph == public and h.optional_flags == 0 and (sf.major, sf.minor) == (1, 0)
    assert h.required_flags == (1 if public else 0)
    assert [len(s.chunks) for s in sf.sections[1:]] == [7, 1, 7, 1, 1]

    info = json.loads(ok("inspect", tmp_path / "m.veil", "--json").stdout)
    expected = {
        "model_id": "mlp.v2-x_y", "model_version": 77, "key_version": 3, "chunk_size": 4096,
        "file_id": h.file_id.hex(), "file_size": len(data), "graph_size": sf.sections[0].size,
        "tensor_count": len(sf.sections) - 1, "tensor_data_size": sum(s.size for s in sf.sections[1:]),
        "graph_encrypted": not public,
    }
    missing = sorted(set(expected) - set(info))
    assert not missing, f"inspect --json dropped {missing}: {info}"
    for k, v in expected.items():
        assert info[k] == v, f"inspect --json {k}: {info[k]!r}, reference says {v!r}"


def test_cli_sealed_torch_model_default_chunk(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    model = torch_model(tmp_path / "t.onnx")
    ok("seal", tmp_path / "t.onnx", "-o", tmp_path / "t.veil", "--model-id", "torch-mlp", "--key", tmp_path / "k")
    sf = check_cli_file((tmp_path / "t.veil").read_bytes(), key, model)
    assert sf.header.chunk_size == 1 << 20 and sf.key_wrap.key_version == 1 and sf.header.model_version == 1
    assert not sf.header.public_graph


@pytest.mark.parametrize("public", [False, True])
def test_cli_sealed_edge_types(tmp_path: Path, public: bool) -> None:
    """Typed storage (float_data, int64_data, ...), float16, bool, an empty tensor, a scalar, a string."""
    key = keygen(tmp_path / "k")
    model = make_edge_model()
    onnx.save(model, str(tmp_path / "e.onnx"))
    ok("seal", tmp_path / "e.onnx", "-o", tmp_path / "e.veil", "--model-id", "edge", "--key", tmp_path / "k",
       "--chunk-size", "4096", *(["--public-graph"] if public else []))
    sf = check_cli_file((tmp_path / "e.veil").read_bytes(), key, model)
    assert any(s.size == 0 for s in sf.sections[1:])


def test_cli_files_differ_per_seal(tmp_path: Path) -> None:
    """file_id, data key and wrap nonce are fresh for every file."""
    key = keygen(tmp_path / "k")
    onnx.save(make_model(), str(tmp_path / "m.onnx"))
    for n in ("a", "b"):
        ok("seal", tmp_path / "m.onnx", "-o", tmp_path / f"{n}.veil", "--model-id", "m", "--key", tmp_path / "k")
    a, b = (ref.parse((tmp_path / f"{n}.veil").read_bytes()) for n in ("a", "b"))
    assert a.header.file_id != b.header.file_id
    assert a.key_wrap.nonce != b.key_wrap.nonce
    da = ref.unwrap_data_key(a, key)
    db = ref.unwrap_data_key(b, key)
    assert da != db


def test_cli_rewrap_touches_only_the_key_wrap(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    new = keygen(tmp_path / "k2")
    onnx.save(make_model(), str(tmp_path / "m.onnx"))
    ok("seal", tmp_path / "m.onnx", "-o", tmp_path / "m.veil", "--model-id", "m", "--key", tmp_path / "k",
       "--chunk-size", "4096")
    ok("rewrap", tmp_path / "m.veil", "--key", tmp_path / "k", "--new-key", tmp_path / "k2", "--new-key-version", "9",
       "-o", tmp_path / "r.veil")
    before, after = (tmp_path / "m.veil").read_bytes(), (tmp_path / "r.veil").read_bytes()
    sf = ref.parse(after)
    kw = sf.key_wrap_offset
    assert len(before) == len(after)
    assert before[:kw] == after[:kw] and before[kw + 64 :] == after[kw + 64 :], "rewrap changed bytes outside the key wrap"
    assert sf.key_wrap.key_version == 9 and sf.key_wrap.nonce != ref.parse(before).key_wrap.nonce
    assert ref.open_sealed(after, new) == ref.open_sealed(before, key)
    with pytest.raises(ref.UnwrapError):
        ref.open_sealed(after, key)


# --- (b) reference-sealed files read by the CLI --------------------------------------------------------------


def assert_same_model(unsealed: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """The same graph, and every initializer bit-identical as a tensor (section 9)."""
    us, ut = strip_model(unsealed)
    os_, ot = strip_model(original)
    assert us == os_, "unsealed graph differs from the original"
    assert ut == ot, "unsealed tensors differ from the original"
    for u, o in zip(unsealed.graph.initializer, original.graph.initializer):
        assert u.name == o.name and u.data_type == o.data_type and list(u.dims) == list(o.dims)
        if o.data_type != onnx.TensorProto.STRING:
            assert u.HasField("raw_data"), f"{u.name}: tensors come back as raw_data"
            a, b = numpy_helper.to_array(u), numpy_helper.to_array(o)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        else:
            assert u == o


@pytest.mark.parametrize(
    ("which", "public", "chunk_size"),
    [("mlp", False, 4096), ("mlp", True, 4096), ("mlp", False, 1 << 20), ("edge", False, 4096), ("edge", True, 8192)],
)
def test_reference_sealed_file_unseals(tmp_path: Path, which: str, public: bool, chunk_size: int) -> None:
    key = keygen(tmp_path / "k")
    model = make_model() if which == "mlp" else make_edge_model()
    stripped, tensors = strip_model(model)
    data = ref.seal(stripped.SerializeToString(), tensors, key, "ref-made", key_version=4, model_version=5,
                    chunk_size=chunk_size, public_graph=public)
    (tmp_path / "r.veil").write_bytes(data)
    ok("unseal", tmp_path / "r.veil", "-o", tmp_path / "out.onnx", "--key", tmp_path / "k")
    assert_same_model(onnx.load(str(tmp_path / "out.onnx")), model)
    info = json.loads(ok("inspect", tmp_path / "r.veil", "--json").stdout)
    assert info["model_id"] == "ref-made" and info["key_version"] == 4 and info["model_version"] == 5, info


def test_reference_sealed_torch_model_unseals(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    model = torch_model(tmp_path / "t.onnx")
    stripped, tensors = strip_model(model)
    (tmp_path / "r.veil").write_bytes(ref.seal(stripped.SerializeToString(), tensors, key, "torch"))
    ok("unseal", tmp_path / "r.veil", "-o", tmp_path / "out.onnx", "--key", tmp_path / "k")
    assert_same_model(onnx.load(str(tmp_path / "out.onnx")), model)


def test_cli_accepts_conforming_oddities(tmp_path: Path) -> None:
    """Any minor version, unknown optional flags, extreme versions, a 128-byte id: a reader MUST accept them."""
    key = keygen(tmp_path / "k")
    model = make_model()
    failures = []
    for name, data in accept_variants(model, key).items():
        (tmp_path / f"{name}.veil").write_bytes(data)
        out = tmp_path / f"{name}.onnx"
        r = veil("unseal", tmp_path / f"{name}.veil", "-o", out, "--key", tmp_path / "k")
        if r.rc != 0:
            failures.append(f"{name}: rc={r.rc} {r.stderr.strip()}")
            continue
        assert_same_model(onnx.load(str(out)), model)
    assert not failures, "veil unseal refused conforming files:\n" + "\n".join(failures)


# --- (c) tampered files refused by the CLI -------------------------------------------------------------------

# The check a refusal must name, by the reference's verdict on the file (messages of lib/format and lib/onnx;
# matched at the start of the text after `veil: error: `).
HEADER_PARSE = re.compile(
    r"^(truncated sealed file|sealed file has trailing bytes|unexpected trailing bytes|input ends early|"
    r"nonzero padding |sealed format version \d+ is not supported|unknown required flags |not a sealed Veil model|"
    r"header: |header size \d+ out of bounds|section table: |key wrap: key version 0|data region too large)")
KEY_UNWRAP = re.compile(r"^key unwrap failed: ")
CHUNK_AUTH = re.compile(r"^(graph|tensor data) authentication failed: ")
GRAPH_MISMATCH = re.compile(r"^(the graph has \d+ initializers but the file \d+ tensor sections|tensor section \d+ "
                            r"does not match|malformed ModelProto|not a valid ONNX model|initializer )")

# What the reference must say about a variant of each manifest layer (tests/attacks/tamper.py's docstring).
LAYER_VERDICTS: dict[str, tuple[type[ref.SealedError], ...]] = {
    "format": (ref.FormatError, ref.VersionError, ref.TruncatedError, ref.UnwrapError, ref.AuthError),
    "key": (ref.UnwrapError,),
    "graph": (ref.GraphMismatchError,),
}
# Families tamper.py writes for any file with several chunks and sections: a manifest without one is incomplete.
TAMPER_FAMILIES = ("truncate_", "flip_", "splice_", "swap_", "lie_", "auth_", "wrong_key")


def _reference_verdict(data: bytes, key: bytes) -> type[ref.SealedError] | None:
    """The class of the reference's objection to the file opened with key (None: it accepts the file)."""
    try:
        graph, tensors = ref.open_sealed(data, key)
        ref.check_graph(graph, tensors)
    except ref.SealedError as e:
        return type(e)
    return None


def _reason_for(verdict: type[ref.SealedError]) -> re.Pattern[str]:
    if issubclass(verdict, ref.UnwrapError):
        return KEY_UNWRAP
    if issubclass(verdict, ref.AuthError):
        return CHUNK_AUTH
    if issubclass(verdict, ref.GraphMismatchError):
        return GRAPH_MISMATCH
    return HEADER_PARSE  # FormatError (padding, trailing data), VersionError, TruncatedError


def _check_manifest(vdir: Path, manifest: list[dict[str, str]]) -> None:
    """Non-empty, one entry per written file, every layer and family present, every named file there."""
    assert manifest, "tamper.py wrote an empty manifest"
    files = [m["file"] for m in manifest]
    assert len(set(files)) == len(files), "duplicate files in the manifest"
    assert set(files) == {p.name for p in vdir.glob("*.veil")}, "manifest and written variants differ"
    assert {m["layer"] for m in manifest} == set(LAYER_VERDICTS), "a layer has no variant (or an unknown layer)"
    missing = [f for f in TAMPER_FAMILIES if not any(m["kind"].startswith(f) for m in manifest)]
    assert not missing, f"tamper families missing from the manifest: {missing}"
    for m in manifest:
        if "key" in m:
            assert (vdir / m["key"]).is_file(), f"{m['kind']}: key file {m['key']} missing"


@pytest.fixture(scope="module")
def tamper_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, str]]]:
    d = tmp_path_factory.mktemp("tamper")
    keygen(d / "model.key")
    onnx.save(make_model(), str(d / "m.onnx"))
    for n in ("valid", "other"):
        ok("seal", d / "m.onnx", "-o", d / f"{n}.veil", "--model-id", "mlp", "--key", d / "model.key",
           "--chunk-size", "4096")
    r = subprocess.run([PY, str(TAMPER), d / "valid.veil", d / "other.veil", d / "model.key", d / "variants"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((d / "variants" / "manifest.json").read_text())
    _check_manifest(d / "variants", manifest)
    return d, d / "variants", manifest


def _key_for(d: Path, vdir: Path, m: dict[str, str]) -> Path:
    return vdir / m["key"] if "key" in m else d / "model.key"


def _variant_reason(d: Path, vdir: Path, m: dict[str, str]) -> tuple[re.Pattern[str] | None, str]:
    """The reason the CLI must give for variant m, from the reference's verdict; (None, why) when the verdict
    contradicts the manifest's layer (or the variant or its key is missing), which is itself a failure."""
    path, key_path = vdir / m["file"], _key_for(d, vdir, m)
    if not path.is_file() or not key_path.is_file():
        return None, f"missing {path if not path.is_file() else key_path}"
    verdict = _reference_verdict(path.read_bytes(), key_path.read_bytes())
    if verdict is None or not issubclass(verdict, LAYER_VERDICTS[m["layer"]]):
        return None, f"layer {m['layer']!r} but the reference says {verdict.__name__ if verdict else 'accept'}"
    return _reason_for(verdict), verdict.__name__


def _refusal_problems(r: Run, reason: re.Pattern[str] | str) -> list[str]:
    return refusal_problems(r, reason)


def test_tamper_variants_refused_by_cli(tamper_set: tuple[Path, Path, list[dict[str, str]]]) -> None:
    d, vdir, manifest = tamper_set
    ok("unseal", d / "valid.veil", "-o", d / "valid.onnx", "--key", d / "model.key")  # the control
    failures = []
    for m in manifest:
        reason, verdict = _variant_reason(d, vdir, m)
        if reason is None:
            failures.append(f"{m['kind']}: {verdict}")
            continue
        out = d / f"out-{m['kind']}.onnx"
        r = veil("unseal", vdir / m["file"], "-o", out, "--key", _key_for(d, vdir, m))
        problems = _refusal_problems(r, reason)
        if out.exists():
            problems.append("output file exists")
            out.unlink()
        if problems:
            failures.append(f"{m['kind']} [{m['layer']}, {verdict}] ({m['description']}): {'; '.join(problems)}")
    assert not failures, f"{len(failures)}/{len(manifest)} variants not refused properly:\n" + "\n".join(failures)


def test_tamper_variants_leave_existing_output_untouched(tamper_set: tuple[Path, Path, list[dict[str, str]]]) -> None:
    d, vdir, manifest = tamper_set
    good = d / "good.onnx"
    ok("unseal", d / "valid.veil", "-o", good, "--key", d / "model.key")
    reference = good.read_bytes()
    failures = []
    for m in manifest:
        reason, verdict = _variant_reason(d, vdir, m)
        if reason is None:
            failures.append(f"{m['kind']}: {verdict}")
            continue
        r = veil("unseal", vdir / m["file"], "-o", good, "--key", _key_for(d, vdir, m))
        problems = _refusal_problems(r, reason)
        if good.read_bytes() != reference:
            problems.append("output changed")
            good.write_bytes(reference)
        if problems:
            failures.append(f"{m['kind']} [{verdict}]: {'; '.join(problems)}")
    leftovers = sorted(p.name for p in d.iterdir() if p.name.startswith("good.onnx") and p.name != "good.onnx")
    assert not leftovers, f"temporary files left next to the output: {leftovers}"
    assert not failures, "unseal of a bad file changed an existing output:\n" + "\n".join(failures)


def test_tamper_variants_of_public_graph_refused_by_cli(tmp_path: Path) -> None:
    keygen(tmp_path / "model.key")
    onnx.save(make_model(), str(tmp_path / "m.onnx"))
    for n in ("valid", "other"):
        ok("seal", tmp_path / "m.onnx", "-o", tmp_path / f"{n}.veil", "--model-id", "mlp", "--key",
           tmp_path / "model.key", "--chunk-size", "4096", "--public-graph")
    r = subprocess.run([PY, str(TAMPER), tmp_path / "valid.veil", tmp_path / "other.veil", tmp_path / "model.key",
                        tmp_path / "v"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    _check_manifest(tmp_path / "v", manifest)
    failures = []
    for m in manifest:
        reason, verdict = _variant_reason(tmp_path, tmp_path / "v", m)
        if reason is None:
            failures.append(f"{m['kind']}: {verdict}")
            continue
        out = tmp_path / "out.onnx"
        r2 = veil("unseal", tmp_path / "v" / m["file"], "-o", out, "--key", _key_for(tmp_path, tmp_path / "v", m))
        problems = _refusal_problems(r2, reason)
        if out.exists():
            problems.append("output file exists")
            out.unlink()
        if problems:
            failures.append(f"{m['kind']} [{m['layer']}, {verdict}]: {'; '.join(problems)}")
    assert not failures, "public-graph variants not refused properly:\n" + "\n".join(failures)


def test_inspect_refuses_key_less_damage(tamper_set: tuple[Path, Path, list[dict[str, str]]]) -> None:
    """`veil inspect` checks the layout and padding without a key (veil_inspect_file): every variant that the
    reference's key-less parse() rejects must be refused by inspect too."""
    d, vdir, manifest = tamper_set
    failures = []
    checked = 0
    for m in manifest:
        data = (vdir / m["file"]).read_bytes()
        try:
            ref.parse(data)
            continue  # needs the key to detect
        except ref.SealedError as e:
            why = f"{type(e).__name__}: {e}"
        checked += 1
        r = veil("inspect", vdir / m["file"])
        problems = _refusal_problems(r, HEADER_PARSE)
        if problems:
            failures.append(f"{m['kind']} ({why}): {'; '.join(problems)}")
    assert checked >= 20, f"only {checked} variants are detectable without a key: the manifest lost its layout damage"
    assert not failures, "inspect accepted files the spec rejects without a key:\n" + "\n".join(failures)


def test_cli_tensors_match_numpy(tmp_path: Path) -> None:
    """Sanity: tensor sections decrypted by the reference are the initializers as numpy arrays."""
    key = keygen(tmp_path / "k")
    model = make_model(seed=3)
    onnx.save(model, str(tmp_path / "m.onnx"))
    ok("seal", tmp_path / "m.onnx", "-o", tmp_path / "m.veil", "--model-id", "m", "--key", tmp_path / "k")
    _, tensors = ref.open_sealed((tmp_path / "m.veil").read_bytes(), key)
    for init, t in zip(model.graph.initializer, tensors):
        arr = numpy_helper.to_array(init)
        assert np.array_equal(np.frombuffer(t, dtype=arr.dtype.newbyteorder("<")).reshape(arr.shape), arr)
        assert tensor_raw_bytes(init) == t


# --- section 9 at sealing time ---------------------------------------------------------------------------------


def test_cli_strips_only_top_level_initializers(tmp_path: Path) -> None:
    """Initializers of a subgraph (an If branch) are not extracted: they stay in the graph with their data."""
    from onnx import TensorProto, helper

    branch_init = numpy_helper.from_array(np.arange(8, dtype=np.float32), "branch_c")
    then_g = helper.make_graph([helper.make_node("Identity", ["branch_c"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [8])], [branch_init])
    else_g = helper.make_graph([helper.make_node("Identity", ["top_c"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [8])])
    top = numpy_helper.from_array(np.ones(8, dtype=np.float32), "top_c")
    g = helper.make_graph([helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)], "g",
                          [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])], [top])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    key = keygen(tmp_path / "k")
    onnx.save(model, str(tmp_path / "m.onnx"))
    ok("seal", tmp_path / "m.onnx", "-o", tmp_path / "m.veil", "--model-id", "if", "--key", tmp_path / "k")
    sf = check_cli_file((tmp_path / "m.veil").read_bytes(), key, model)
    assert len(sf.sections) == 2
    ok("unseal", tmp_path / "m.veil", "-o", tmp_path / "u.onnx", "--key", tmp_path / "k")
    assert_same_model(onnx.load(str(tmp_path / "u.onnx")), model)


def _refused_at_sealing(tmp_path: Path, model: onnx.ModelProto, name: str, reason: re.Pattern[str] | str,
                        **save: object) -> None:
    keygen(tmp_path / "k")
    onnx.save(model, str(tmp_path / f"{name}.onnx"), **save)  # type: ignore[arg-type]
    out = tmp_path / f"{name}.veil"
    r = veil("seal", tmp_path / f"{name}.onnx", "-o", out, "--model-id", "x", "--key", tmp_path / "k")
    assert _refusal_problems(r, reason) == [], f"{name}: rc={r.rc} stderr={r.stderr!r}"
    assert not out.exists()


def test_cli_seals_external_data_as_the_inline_model(tmp_path: Path) -> None:
    """A model saved with ONNX external data: the reference reads the CLI's sealed file as the inline model's (the
    graph with every initializer's data, external_data and data_location removed; the tensors' raw bytes)."""
    key = keygen(tmp_path / "k")
    inline = make_model()
    external = onnx.ModelProto()
    external.CopyFrom(inline)
    onnx.save(external, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    assert any(i.data_location == onnx.TensorProto.EXTERNAL
               for i in onnx.load(str(tmp_path / "m.onnx"), load_external_data=False).graph.initializer)
    ok("seal", tmp_path / "m.onnx", "-o", tmp_path / "m.veil", "--model-id", "x", "--key", tmp_path / "k")
    check_cli_file((tmp_path / "m.veil").read_bytes(), key, inline)


def test_cli_refuses_external_data_outside_the_model_directory(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    external = onnx.ModelProto()
    external.CopyFrom(make_model())
    onnx.save(external, str(tmp_path / "m" / "x.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    model = onnx.load(str(tmp_path / "m" / "x.onnx"), load_external_data=False)
    for e in model.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = "../weights.bin"
    (tmp_path / "weights.bin").write_bytes((tmp_path / "m" / "weights.bin").read_bytes())
    _refused_at_sealing(tmp_path, model, "external",
                        re.compile(r"^not a valid ONNX model: tensor \S+ external data location leaves"))


def test_cli_refuses_segment(tmp_path: Path) -> None:
    model = make_model()
    model.graph.initializer[1].segment.begin = 0
    model.graph.initializer[1].segment.end = 100
    _refused_at_sealing(tmp_path, model, "segment", re.compile(r"^tensor \S+ is segmented"))


def test_cli_refuses_sparse_initializer(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    model = make_model()
    values = helper.make_tensor("sp", TensorProto.FLOAT, [2], [1.0, 2.0])
    indices = helper.make_tensor("sp_idx", TensorProto.INT64, [2], [0, 3])
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    _refused_at_sealing(tmp_path, model, "sparse", "the graph has a sparse_initializer")


def test_cli_rewrap_in_place(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    new = keygen(tmp_path / "k2")
    onnx.save(make_model(), str(tmp_path / "m.onnx"))
    ok("seal", tmp_path / "m.onnx", "-o", tmp_path / "m.veil", "--model-id", "m", "--key", tmp_path / "k")
    before = (tmp_path / "m.veil").read_bytes()
    ok("rewrap", tmp_path / "m.veil", "--key", tmp_path / "k", "--new-key", tmp_path / "k2", "--new-key-version", "2")
    after = (tmp_path / "m.veil").read_bytes()
    kw = ref.parse(after).key_wrap_offset
    assert before[:kw] == after[:kw] and before[kw + 64 :] == after[kw + 64 :]
    assert ref.open_sealed(after, new) == ref.open_sealed(before, key)
    # a wrong old key refuses, and leaves the file alone
    r = veil("rewrap", tmp_path / "m.veil", "--key", tmp_path / "k", "--new-key", tmp_path / "k2",
             "--new-key-version", "3")
    assert _refusal_problems(r, KEY_UNWRAP) == [] and (tmp_path / "m.veil").read_bytes() == after


def test_cli_refuses_every_head_byte_flip_and_truncation(tamper_set: tuple[Path, Path, list[dict[str, str]]]) -> None:
    """Every byte of the preamble, header, key wrap and padding is checked: flip each one (and cut the file at
    each of those lengths), and `veil unseal` must refuse."""
    d, _, _ = tamper_set
    data = (d / "valid.veil").read_bytes()
    sf = ref.parse(data)
    bad = d / "head.veil"
    out = d / "head.onnx"
    failures = []
    cases = [(f"flip byte {i}", data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]) for i in range(sf.data_offset)]
    cases += [(f"truncate to {n}", data[:n]) for n in range(0, sf.data_offset + 1, 3)]
    key = (d / "model.key").read_bytes()
    for name, variant in cases:
        verdict = _reference_verdict(variant, key)
        if verdict is None:
            failures.append(f"{name}: the reference accepts it")
            continue
        bad.write_bytes(variant)
        r = veil("unseal", bad, "-o", out, "--key", d / "model.key")
        problems = _refusal_problems(r, _reason_for(verdict))
        if out.exists():
            problems.append("output file exists")
            out.unlink()
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)
