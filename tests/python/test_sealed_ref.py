# SPDX-License-Identifier: Apache-2.0
"""Self-tests of the independent reference (tests/vectors/sealed_ref.py) and of the tamper tool, with no libveil.

Also holds the small ONNX helpers (make_model, strip_model) that test_format_independent.py reuses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "vectors"))
sys.path.insert(0, str(ROOT / "tests" / "attacks"))

import sealed_ref as ref  # noqa: E402
import tamper  # noqa: E402

PY = sys.executable
CHECK = ROOT / "tests" / "vectors" / "check_sealed.py"
VECTORS = ROOT / "tests" / "vectors"
TAMPER = ROOT / "tests" / "attacks" / "tamper.py"

DATA_FIELDS = ("float_data", "int32_data", "int64_data", "raw_data", "double_data", "uint64_data")


# --- ONNX helpers (shared with test_format_independent.py) ---------------------------------------------------


def make_model(seed: int = 0) -> onnx.ModelProto:
    """X[1,64] -> MatMul W1[64,100] -> Add b1 -> Relu -> MatMul W2[100,64] -> Add b2 -> Reshape(shape) -> Y.

    W1 and W2 are 25,600 bytes (7 chunks of 4 KiB, the last one short), the biases are not multiples of 64 bytes,
    so a 4 KiB chunk size exercises multi-chunk sections, short last chunks, equal-size sections and padding."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, 100)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.standard_normal(100).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((100, 64)).astype(np.float32), "W2"),
        numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b2"),
        numpy_helper.from_array(np.array([1, 64], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "W2"], ["h4"]),
        helper.make_node("Add", ["h4", "b2"], ["h5"]),
        helper.make_node("Reshape", ["h5", "shape"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 64])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="veil-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_edge_model() -> onnx.ModelProto:
    """Initializers of several types and storages: typed float_data, float16, bool, int8, double, uint64,
    an empty tensor, a scalar, and a string initializer (which stays in the graph)."""
    inits = [
        helper.make_tensor("typed_f32", TensorProto.FLOAT, [3, 2], [1.5, -2.0, 3.25, 0.0, -0.0, 7.0]),
        numpy_helper.from_array(np.arange(37, dtype=np.float16), "f16"),
        helper.make_tensor("names", TensorProto.STRING, [2], [b"alpha", b"beta"]),
        numpy_helper.from_array(np.array([True, False, True]), "flags"),
        numpy_helper.from_array(np.arange(-5, 6, dtype=np.int8), "i8"),
        helper.make_tensor("typed_f64", TensorProto.DOUBLE, [2], [1.0, -1e300]),
        helper.make_tensor("typed_u64", TensorProto.UINT64, [2], [1, 2**64 - 1]),
        numpy_helper.from_array(np.zeros((0, 4), dtype=np.float32), "empty"),
        numpy_helper.from_array(np.array(42, dtype=np.int32), "scalar"),
        helper.make_tensor("typed_i64", TensorProto.INT64, [3], [-1, 0, 2**62]),
    ]
    nodes = [helper.make_node("Identity", ["X"], ["Y"])]
    graph = helper.make_graph(
        nodes,
        "edge",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def tensor_raw_bytes(t: onnx.TensorProto) -> bytes:
    """The tensor's data in ONNX raw little-endian layout (raw_data semantics)."""
    if t.HasField("raw_data"):
        return t.raw_data
    arr = numpy_helper.to_array(t)
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def strip_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[bytes]]:
    """Section 9: every non-string initializer of the top-level graph loses its data fields; its raw bytes become
    the next tensor section, in graph order."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    tensors: list[bytes] = []
    for init in stripped.graph.initializer:
        if init.data_type == TensorProto.STRING:
            continue
        tensors.append(tensor_raw_bytes(init))
        for f in DATA_FIELDS:
            init.ClearField(f)
    return stripped, tensors


def seal_model(model: onnx.ModelProto, key: bytes, **kw: object) -> bytes:
    stripped, tensors = strip_model(model)
    return ref.seal(stripped.SerializeToString(), tensors, key, **kw)  # type: ignore[arg-type]


# --- fixtures ------------------------------------------------------------------------------------------------

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return make_model()


# --- independent known answers -------------------------------------------------------------------------------


def _hkdf_rfc5869(ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()  # empty salt = HashLen zero bytes
    okm, t = b"", b""
    for i in range((length + 31) // 32):
        t = hmac.new(prk, t + info + bytes([i + 1]), hashlib.sha256).digest()
        okm += t
    return okm[:length]


def test_kek_matches_rfc5869_by_hand() -> None:
    assert ref.kek_from_model_key(KEY) == _hkdf_rfc5869(KEY, b"veil/sealed/v1/key-wrap", 32)


def test_layout_by_hand() -> None:
    """A tiny file assembled field by field from the spec, independently of Header.encode/build."""
    graph, tensor = b"G" * 70, b"T" * 5000
    file_id, data_key, nonce = b"\x11" * 16, b"\x22" * 32, b"\x33" * 12
    out = ref.seal(graph, [tensor], KEY, "m-1", key_version=2, model_version=9, chunk_size=4096,
                   file_id=file_id, data_key=data_key, wrap_nonce=nonce)
    hdr = struct.pack("<IIQI", 0, 0, 9, 4096) + file_id + bytes(32) + b"\x03m-1" + struct.pack("<I", 2)
    hdr += struct.pack("<QQ", 0, 70) + struct.pack("<QQ", 128, 5000)
    pre = b"\x89VEIL\r\n\x1a" + struct.pack("<HHI", 1, 0, len(hdr))
    hd = hashlib.sha256(pre + hdr).digest()
    kek = _hkdf_rfc5869(KEY, b"veil/sealed/v1/key-wrap", 32)
    wk = AESGCM(kek).encrypt(nonce, data_key, hd + struct.pack("<I", 2))
    head = pre + hdr + struct.pack("<I", 2) + nonce + wk
    data_offset = (len(head) + 63) // 64 * 64
    g = AESGCM(data_key)
    c0 = g.encrypt(struct.pack("<IQ", 0, 0), graph, hd + struct.pack("<IQB", 0, 0, 1))
    t0 = g.encrypt(struct.pack("<IQ", 1, 0), tensor[:4096], hd + struct.pack("<IQB", 1, 0, 0))
    t1 = g.encrypt(struct.pack("<IQ", 1, 1), tensor[4096:], hd + struct.pack("<IQB", 1, 1, 1))
    region = c0[:-16] + bytes(128 - 70) + t0[:-16] + t1[:-16]
    expected = head + bytes(data_offset - len(head)) + region + c0[-16:] + t0[-16:] + t1[-16:]
    assert out == expected
    sf = ref.parse(out)
    assert (sf.data_offset, sf.data_size, sf.tag_table_size) == (data_offset, 128 + 5000, 48)


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("chunk_size", [4096, 8192, 1 << 20])
def test_round_trip(model: onnx.ModelProto, public: bool, chunk_size: int) -> None:
    stripped, tensors = strip_model(model)
    g = stripped.SerializeToString()
    data = ref.seal(g, tensors, KEY, "mlp.v1_test", chunk_size=chunk_size, public_graph=public,
                    key_version=5, model_version=123)
    sf = ref.parse(data)
    assert sf.header.public_graph == public
    assert sf.header.chunk_size == chunk_size
    assert sf.key_wrap.key_version == 5 and sf.header.model_version == 123
    assert sf.header.model_id == b"mlp.v1_test"
    assert all(s.abs_offset % 64 == 0 for s in sf.sections)
    graph, out = ref.open_sealed(data, KEY)
    assert graph == g and out == tensors
    inits = ref.check_graph(graph, out)
    assert [i.name for i in inits] == ["W1", "b1", "W2", "b2", "shape"]
    if public:
        assert data[sf.sections[0].abs_offset : sf.sections[0].abs_offset + len(g)] == g


def test_edge_model_round_trip() -> None:
    stripped, tensors = strip_model(make_edge_model())
    assert len(tensors) == 9 and tensors[6] == b""  # the empty tensor has an empty section
    data = ref.seal(stripped.SerializeToString(), tensors, KEY, "edge", chunk_size=4096)
    sf = ref.parse(data)
    assert sf.sections[7].size == 0 and sf.sections[7].chunks == ()
    graph, out = ref.open_sealed(data, KEY)
    assert out == tensors
    names = [i.name for i in ref.check_graph(graph, out)]
    assert "names" not in names and len(names) == 9


def test_graph_only_file() -> None:
    data = ref.seal(b"g", [], KEY, "a")
    assert ref.open_sealed(data, KEY) == (b"g", [])


def test_chunk_boundaries() -> None:
    for size in (4095, 4096, 4097, 8192, 8193):
        t = os.urandom(size)
        data = ref.seal(b"graph", [t, b"", t], KEY, "x", chunk_size=4096)
        assert ref.open_sealed(data, KEY)[1] == [t, b"", t]
        sf = ref.parse(data)
        assert sf.tag_table_size == 16 * (1 + 2 * -(-size // 4096))


def test_deterministic_with_fixed_randomness(model: onnx.ModelProto) -> None:
    kw = dict(file_id=b"\x01" * 16, data_key=b"\x02" * 32, wrap_nonce=b"\x03" * 12)
    assert seal_model(model, KEY, model_id="m", **kw) == seal_model(model, KEY, model_id="m", **kw)
    assert seal_model(model, KEY, model_id="m") != seal_model(model, KEY, model_id="m")


def test_wrong_key_and_16_byte_key(model: onnx.ModelProto) -> None:
    data = seal_model(model, KEY, model_id="m")
    with pytest.raises(ref.UnwrapError):
        ref.open_sealed(data, bytes(32))
    short = seal_model(model, KEY[:16], model_id="m")
    ref.open_sealed(short, KEY[:16])
    with pytest.raises(ValueError):
        ref.open_sealed(data, KEY[:31])


# --- things a reader MUST accept -----------------------------------------------------------------------------


def accept_variants(model: onnx.ModelProto, key: bytes) -> dict[str, bytes]:
    """Authenticated files that are unusual but conform: a reader MUST accept each of them."""
    stripped, tensors = strip_model(model)
    g = stripped.SerializeToString()
    plains = [g] + tensors
    base = ref.Header(0, 0, 1, 4096, b"\x07" * 16, bytes(32), b"m", ref.section_table([len(p) for p in plains]))
    return {
        "minor_7": ref.build(base, plains, key, minor=7),
        "minor_ffff": ref.build(base, plains, key, minor=0xFFFF),
        "optional_flags_all": ref.build(replace(base, optional_flags=0xFFFFFFFF), plains, key),
        "key_version_max": ref.build(base, plains, key, key_version=0xFFFFFFFF),
        "model_version_max": ref.build(replace(base, model_version=2**64 - 1), plains, key),
        "model_id_128": ref.build(replace(base, model_id=b"A-z0_9." * 18 + b"ab"), plains, key),
        "chunk_size_max": ref.build(replace(base, chunk_size=1 << 30), plains, key),
        "public_chunk_4k": ref.build(
            replace(base, required_flags=1, graph_digest=hashlib.sha256(g).digest()), plains, key
        ),
    }


def test_accept_variants(model: onnx.ModelProto) -> None:
    for name, data in accept_variants(model, KEY).items():
        graph, tensors = ref.open_sealed(data, KEY)
        ref.check_graph(graph, tensors)
        assert len(ref.parse(data).header.model_id) <= 128, name


# --- rejection -----------------------------------------------------------------------------------------------


def test_every_truncation_rejected_before_unwrap(model: onnx.ModelProto) -> None:
    data = seal_model(model, KEY, model_id="m", chunk_size=4096)
    for n in range(len(data)):
        with pytest.raises((ref.TruncatedError, ref.FormatError)):
            ref.parse(data[:n])
    with pytest.raises(ref.TrailingDataError):
        ref.parse(data + b"\0")


def test_every_head_byte_flip_rejected(model: onnx.ModelProto) -> None:
    """Every bit of the preamble, header, key wrap and padding matters."""
    data = seal_model(model, KEY, model_id="m", chunk_size=4096)
    sf = ref.parse(data)
    for pos in range(sf.data_offset):
        for bit in (0, 7):
            b = bytearray(data)
            b[pos] ^= 1 << bit
            # the head is parsed (FormatError, VersionError, TruncatedError) or authenticated by the key unwrap:
            # never a chunk's AuthError, nor a graph check
            with pytest.raises((ref.FormatError, ref.VersionError, ref.TruncatedError, ref.UnwrapError)):
                ref.open_sealed(bytes(b), KEY)


@pytest.mark.parametrize(
    ("mutate", "exc"),
    [
        (lambda b: b.__setitem__(slice(0, 1), b"\x88"), ref.FormatError),
        (lambda b: b.__setitem__(slice(8, 10), b"\x02\x00"), ref.VersionError),
        (lambda b: b.__setitem__(slice(12, 16), struct.pack("<I", (16 << 20) + 1)), ref.FormatError),
        (lambda b: b.__setitem__(slice(12, 16), struct.pack("<I", 0xFFFFFF)), ref.TruncatedError),
        (lambda b: b.__setitem__(slice(16, 20), b"\x02\x00\x00\x00"), ref.FormatError),
        (lambda b: b.__setitem__(slice(20, 24), b"\xff\xff\xff\xff"), ref.UnwrapError),  # optional: ignored
        (lambda b: b.__setitem__(slice(10, 12), b"\x05\x00"), ref.UnwrapError),  # minor: accepted, digest differs
    ],
)
def test_error_classes(model: onnx.ModelProto, mutate: object, exc: type[Exception]) -> None:
    data = bytearray(seal_model(model, KEY, model_id="m", chunk_size=4096))
    mutate(data)  # type: ignore[operator]
    with pytest.raises(exc):
        ref.open_sealed(bytes(data), KEY)


REQUIRED_KINDS = {
    "truncate_empty", "truncate_at_major", "truncate_at_header_size", "truncate_at_required_flags",
    "truncate_at_key_version", "truncate_at_wrap_tag", "truncate_at_wrap_padding", "truncate_inside_data",
    "truncate_at_tag_table", "truncate_inside_tag_table", "truncate_one_byte_short", "trailing_byte",
    "flip_magic_first", "flip_major", "flip_minor", "flip_header_size_low", "flip_required_flags_public",
    "flip_required_flags_unknown", "flip_optional_flags", "flip_model_version", "flip_chunk_size", "flip_file_id",
    "flip_graph_digest", "flip_model_id", "flip_section_count_low", "flip_section1_offset", "flip_section1_size",
    "flip_key_version", "flip_wrap_nonce", "flip_wrapped_key_first", "flip_wrap_tag", "padding_after_key_wrap",
    "padding_after_graph", "padding_between_tensors", "flip_graph_middle", "flip_tensor_first_chunk",
    "flip_tensor_middle_chunk", "flip_tensor_last_chunk", "flip_tag_first", "flip_tag_middle", "flip_tag_last",
    "swap_chunks_in_section", "swap_chunks_between_sections", "duplicate_chunk", "swap_sections_same_size",
    "reorder_sections", "splice_chunk_from_other", "splice_key_wrap_from_other", "splice_data_from_other",
    "lie_drop_last_tensor", "lie_swap_tensors_diff_size", "lie_extra_tensor", "lie_graph_only",
    "auth_unknown_required_flag", "auth_unaligned_sections", "auth_section_hole", "auth_header_trailing_bytes",
    "wrong_key",
}


def make_tamper_set(model: onnx.ModelProto, outdir: Path, key: bytes = KEY) -> list[dict[str, str]]:
    valid = seal_model(model, key, model_id="mlp", chunk_size=4096)
    other = seal_model(model, key, model_id="mlp", chunk_size=4096)
    (outdir / "valid.veil").write_bytes(valid)
    (outdir / "other.veil").write_bytes(other)
    (outdir / "model.key").write_bytes(key)
    return tamper.write(valid, other, key, outdir / "variants")


@pytest.mark.parametrize("public", [False, True])
def test_tamper_variants_rejected_by_reference(model: onnx.ModelProto, tmp_path: Path, public: bool) -> None:
    if public:
        valid = seal_model(model, KEY, model_id="mlp", chunk_size=4096, public_graph=True)
        other = seal_model(model, KEY, model_id="mlp", chunk_size=4096, public_graph=True)
        manifest = tamper.write(valid, other, KEY, tmp_path)
    else:
        manifest = make_tamper_set(model, tmp_path)
        tmp_path = tmp_path / "variants"
    kinds = {m["kind"] for m in manifest}
    missing = REQUIRED_KINDS - kinds - ({"padding_after_graph"} if public else set())
    assert not missing, f"tamper.py skipped required mutations: {sorted(missing)}"
    assert len(kinds) == len(manifest)
    for m in manifest:
        data = (tmp_path / m["file"]).read_bytes()
        if m["layer"] == "key":
            with pytest.raises(ref.UnwrapError):
                ref.open_sealed(data, (tmp_path / m["key"]).read_bytes())
        elif m["layer"] == "graph":
            graph, tensors = ref.open_sealed(data, KEY)  # authenticates ...
            with pytest.raises(ref.GraphMismatchError):  # ... but lies about the model
                ref.check_graph(graph, tensors)
        else:
            assert m["layer"] == "format"
            with pytest.raises(ref.SealedError):
                ref.open_sealed(data, KEY)


def test_tamper_cli(model: onnx.ModelProto, tmp_path: Path) -> None:
    valid = seal_model(model, KEY, model_id="mlp", chunk_size=4096)
    other = seal_model(model, KEY, model_id="mlp", chunk_size=4096)
    for name, data in (("v.veil", valid), ("o.veil", other), ("k.key", KEY)):
        (tmp_path / name).write_bytes(data)
    r = subprocess.run([PY, str(TAMPER), str(tmp_path / "v.veil"), str(tmp_path / "o.veil"), str(tmp_path / "k.key"),
                        str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest) > 100
    for m in manifest:
        assert (tmp_path / "out" / m["file"]).exists()
        assert set(m) >= {"file", "kind", "description"}


def test_check_sealed_cli(model: onnx.ModelProto, tmp_path: Path) -> None:
    stripped, tensors = strip_model(model)
    g = stripped.SerializeToString()
    (tmp_path / "k").write_bytes(KEY)
    (tmp_path / "f.veil").write_bytes(ref.seal(g, tensors, KEY, "mlp", key_version=3, model_version=4))
    r = subprocess.run([PY, str(CHECK), str(tmp_path / "f.veil"), "--key", str(tmp_path / "k"), "--check-graph",
                        "--expect-graph-sha256", hashlib.sha256(g).hexdigest()], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["model_id"] == "mlp" and s["key_version"] == 3 and s["model_version"] == 4
    assert s["tensor_sizes"] == [len(t) for t in tensors]
    assert s["tensor_sha256"] == [hashlib.sha256(t).hexdigest() for t in tensors]
    r = subprocess.run([PY, str(CHECK), str(tmp_path / "f.veil"), "--key", str(tmp_path / "k"),
                        "--expect-graph-sha256", "00" * 32], capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("check_sealed: ") and "graph" in r.stderr and "sha256" in r.stderr.lower(), r.stderr
    (tmp_path / "bad.veil").write_bytes((tmp_path / "f.veil").read_bytes()[:-1])
    r = subprocess.run([PY, str(CHECK), str(tmp_path / "bad.veil"), "--key", str(tmp_path / "k")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("check_sealed: TruncatedError: "), r.stderr
    assert "TruncatedError" in r.stderr


# --- the golden vectors, read by the reference and compared with the model they were sealed from ------------------

# What tests/vectors/gen_vectors.c seals (libveil, fixed random source): model.onnx and key.bin sit beside each vector.
GOLDEN_HEADER = {"model_id": "golden-model", "key_version": 2, "model_version": 42, "chunk_size": 4096}


def golden_vector_files() -> dict[Path, Path]:
    """Every .veil file under tests/, mapped to the directory holding its model.onnx and key.bin: its own directory
    under tests/vectors/, or, for a copy elsewhere (the fuzz seed corpus), the golden vector it is a byte copy of."""
    golden = {p: p.parent for p in sorted(VECTORS.rglob("*.veil"))}
    by_bytes = {p.read_bytes(): p for p in golden}
    out = dict(golden)
    for p in sorted((ROOT / "tests").rglob("*.veil")):
        if p in golden:
            continue
        original = by_bytes.get(p.read_bytes())
        assert original is not None, f"{p.relative_to(ROOT)} is neither a golden vector nor a copy of one"
        out[p] = golden[original]
    return out


def check_golden_vector(path: Path, source_dir: Path) -> int:
    """Decrypts path with the reference alone and compares it with source_dir/model.onnx: each tensor's name,
    data type, shape and SHA-256 of its raw bytes, then the graph without weights. Returns the tensors compared."""
    source = onnx.load(str(source_dir / "model.onnx"))
    key_file = source_dir / "key.bin"
    expected = [i for i in source.graph.initializer if i.data_type != TensorProto.STRING]
    want_sha = [hashlib.sha256(tensor_raw_bytes(i)).hexdigest() for i in expected]
    assert expected and any(i.raw_data for i in expected), f"{source_dir}/model.onnx has no weights to compare"

    r = subprocess.run([PY, str(CHECK), str(path), "--key", str(key_file), "--check-graph"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{path}: {r.stderr}"
    summary = json.loads(r.stdout)
    assert {k: summary[k] for k in GOLDEN_HEADER} == GOLDEN_HEADER, path
    assert summary["public_graph"] == (path.stem == "public-graph"), path
    assert summary["tensor_sha256"] == want_sha, path

    graph, tensors = ref.open_sealed(path.read_bytes(), key_file.read_bytes())
    assert [hashlib.sha256(t).hexdigest() for t in tensors] == want_sha, path
    assert summary["graph_sha256"] == hashlib.sha256(graph).hexdigest(), path
    described = [(i.name, i.data_type, i.dims, i.has_data) for i in ref.check_graph(graph, tensors)]
    assert described == [(i.name, i.data_type, tuple(i.dims), False) for i in expected], path
    stripped, _ = strip_model(source)
    assert onnx.ModelProto.FromString(graph) == stripped, f"{path}: the sealed graph is not the source without weights"
    return len(tensors)


def test_every_golden_vector_decrypts_to_its_source_model() -> None:
    """The independent check of the files gen_vectors wrote with libveil: the reference (never libveil) decrypts
    every one and finds the source model's tensors and graph, so a libveil bug that its own --check reproduces
    cannot hide here."""
    vectors = golden_vector_files()
    on_disk = sorted((ROOT / "tests").rglob("*.veil"))
    assert len([p for p in vectors if VECTORS in p.parents]) >= 2, "the golden vectors are missing"
    checked = {p: check_golden_vector(p, d) for p, d in vectors.items()}
    assert sorted(checked) == on_disk and len(checked) == len(on_disk)
    assert all(n > 0 for n in checked.values()), checked
