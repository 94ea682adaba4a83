"""veil.sealed through the public API: seal, inspect, unseal, open, rewrap, reseal, and the status-to-exception
map."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import veil
from veil import errors
from veil.sealed import numpy_dtype

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"


def _raw(name: str, dtype: int, dims: list[int], data: bytes) -> TensorProto:
    return helper.make_tensor(name, dtype, dims, vals=data, raw=True)


def make_model(rng: np.random.Generator | None = None) -> onnx.ModelProto:
    """A small valid ONNX model whose initializers cover every storage form Veil must round-trip."""
    rng = rng or np.random.default_rng(7)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    big = rng.standard_normal((50, 41)).astype(np.float32)  # 8200 bytes: spans chunks at chunk_size 4096
    inits = [
        numpy_helper.from_array(w, "w"),  # raw_data
        helper.make_tensor("b", TensorProto.FLOAT, [3], [0.5, -1.25, 3.0]),  # float_data
        helper.make_tensor("idx", TensorProto.INT64, [4], [3, -1, 2**40, 0]),  # int64_data
        helper.make_tensor("i32", TensorProto.INT32, [2, 2], [1, -2, 3, -4]),  # int32_data
        helper.make_tensor("f64", TensorProto.DOUBLE, [2], [1e300, -0.0]),  # double_data
        helper.make_tensor("u64", TensorProto.UINT64, [1], [2**64 - 1]),  # uint64_data
        numpy_helper.from_array(rng.standard_normal((3, 2)).astype(np.float16), "h"),
        _raw("bf", TensorProto.BFLOAT16, [2, 3], rng.integers(0, 2**16, 6, dtype=np.uint16).tobytes()),
        _raw("f8", TensorProto.FLOAT8E4M3FN, [5], bytes([0, 1, 0x7E, 0x80, 0xFE])),
        numpy_helper.from_array(np.array([True, False, True]), "mask"),
        numpy_helper.from_array(np.arange(7, dtype=np.uint8), "u8"),
        numpy_helper.from_array(np.array(2.5, dtype=np.float32), "scalar"),  # 0-d
        numpy_helper.from_array(np.zeros((3, 0), dtype=np.float32), "empty"),  # no data, no chunks
        helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"]),  # stays in the graph
        numpy_helper.from_array(big, "big"),
    ]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="veil-tests")
    onnx.checker.check_model(model)
    return model


NUMERIC = [t for t in make_model().graph.initializer if t.data_type != TensorProto.STRING]


@pytest.fixture
def model() -> onnx.ModelProto:
    return make_model()


@pytest.fixture
def sealed(tmp_path: Path, key: bytes, model: onnx.ModelProto) -> Path:
    path = tmp_path / "m.veil"
    veil.seal_onnx(model.SerializeToString(), path, model_id="small-model_1.0", key=key, model_version=7)
    return path


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# --- keys and library -----------------------------------------------------------------------------------------


def test_keygen(libveil: str) -> None:
    a, b = veil.keygen(), veil.keygen()
    assert isinstance(a, bytes) and len(a) == veil.KEY_SIZE == 32
    assert a != b
    assert veil.library_version()


def test_library_not_found_is_a_clear_import_error(tmp_path: Path) -> None:
    code = (
        "import veil\n"
        "try:\n    veil.keygen()\n"
        "except veil.LibraryNotFoundError as e:\n"
        "    assert isinstance(e, ImportError) and 'VEIL_LIBRARY' in str(e), e\n    print('ok')\n"
    )
    env = {**os.environ, "VEIL_LIBRARY": str(tmp_path / "missing.so"), "PYTHONPATH": str(PYTHON_DIR)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_library_from_env_var(libveil: str) -> None:
    code = "import veil; print(veil.library_path()); assert len(veil.keygen()) == 32"
    env = {**os.environ, "VEIL_LIBRARY": libveil, "PYTHONPATH": str(PYTHON_DIR)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == libveil


# --- seal, inspect, unseal ------------------------------------------------------------------------------------


def test_round_trip_is_bit_exact(sealed: Path, key: bytes, model: onnx.ModelProto, assert_same_model) -> None:
    restored = onnx.load_from_string(veil.unseal(sealed, key))
    assert_same_model(model, restored)
    for init in restored.graph.initializer:  # spec 9: extracted tensors come back as raw_data
        if init.data_type != TensorProto.STRING and init.dims and 0 not in init.dims:
            assert init.raw_data


def test_inspect_needs_no_key(sealed: Path) -> None:
    info = veil.inspect(sealed)
    assert isinstance(info, veil.SealedInfo)
    assert info.model_id == "small-model_1.0"
    assert (info.format_major, info.format_version) == (1, "1.0")
    assert (info.key_version, info.model_version) == (1, 7)
    assert info.chunk_size == veil.DEFAULT_CHUNK_SIZE and not info.public_graph
    assert len(info.file_id) == 16
    assert info.tensor_count == len(NUMERIC)
    assert info.tensor_data_size == sum(len(numpy_helper.to_array(t).tobytes()) for t in NUMERIC)
    assert info.file_size == sealed.stat().st_size
    with pytest.raises(AttributeError):
        info.model_id = "x"  # type: ignore[misc]  # frozen


def test_seal_from_path_small_chunks_16_byte_key(tmp_path: Path, model: onnx.ModelProto, assert_same_model) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    key16 = os.urandom(16)
    info = veil.seal_onnx(src, tmp_path / "m.veil", model_id="m", key=key16, key_version=3, chunk_size=4096,
                          public_graph=True)
    assert (info.chunk_size, info.key_version, info.public_graph) == (4096, 3, True)
    assert_same_model(model, onnx.load_from_string(veil.unseal(tmp_path / "m.veil", key16)))
    out = tmp_path / "back.onnx"
    veil.unseal_file(tmp_path / "m.veil", key16, out, threads=2)
    assert_same_model(model, onnx.load(str(out)))


def test_private_graph_hides_names_and_weights(tmp_path: Path, key: bytes, model: onnx.ModelProto) -> None:
    blob = model.SerializeToString()
    big = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "big")).tobytes()
    veil.seal_onnx(blob, tmp_path / "private.veil", model_id="m", key=key)
    veil.seal_onnx(blob, tmp_path / "public.veil", model_id="m", key=key, public_graph=True)
    private, public = (tmp_path / "private.veil").read_bytes(), (tmp_path / "public.veil").read_bytes()
    assert b"veil-tests" not in private and b"labels" not in private
    assert b"veil-tests" in public  # the stripped graph is stored in the clear, still authenticated
    for data in (private, public):
        assert big[:64] not in data and big[-64:] not in data


def test_progress_is_reported(tmp_path: Path, key: bytes, model: onnx.ModelProto) -> None:
    sealing: list[tuple[int, int]] = []
    unsealing: list[tuple[int, int]] = []
    veil.seal_onnx(model.SerializeToString(), tmp_path / "m.veil", model_id="m", key=key,
                   progress=lambda done, total: sealing.append((done, total)))
    veil.unseal(tmp_path / "m.veil", key, progress=lambda done, total: unsealing.append((done, total)))
    for what, calls in (("seal", sealing), ("unseal", unsealing)):
        assert calls, f"{what} never reported progress"
        assert all(0 <= done <= total for done, total in calls), (what, calls)
        assert calls[-1][0] == calls[-1][1] > 0, f"{what} did not report completion: {calls[-1]}"

    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        veil.unseal(tmp_path / "m.veil", key, progress=boom)


# --- open_model -----------------------------------------------------------------------------------------------


def test_open_model_tensors(sealed: Path, key: bytes, model: onnx.ModelProto) -> None:
    with veil.open_model(sealed, key, threads=2) as m:
        assert m.info == veil.inspect(sealed)
        assert m.names() == [t.name for t in NUMERIC] and len(m) == len(NUMERIC)
        assert "labels" not in m and "w" in m
        for t in NUMERIC:
            expected = numpy_helper.to_array(t)
            info = m.tensor_info(t.name)
            assert (info.dtype, info.shape, info.size) == (t.data_type, tuple(t.dims), expected.nbytes)
            got = m.array(t.name)
            assert got.dtype == numpy_dtype(t.data_type) and got.shape == expected.shape
            assert got.tobytes() == expected.tobytes()
            assert got.flags.writeable
        stripped = onnx.load_from_string(m.graph)
        assert [t.name for t in stripped.graph.initializer] == [t.name for t in model.graph.initializer]
        for t in stripped.graph.initializer:
            if t.data_type != TensorProto.STRING:
                assert not (t.raw_data or t.float_data or t.int64_data or t.int32_data or t.double_data)
        assert [bytes(s) for s in next(t for t in stripped.graph.initializer if t.name == "labels").string_data] \
            == [b"cat", b"dog"]
        big = m.array("big", copy=False)
        assert not big.flags.writeable and big.ctypes.data % 64 == 0
        expected_big = big.copy()
    assert m.closed
    with pytest.raises(ValueError):
        m.array("w")
    np.testing.assert_array_equal(big, expected_big)  # a view keeps the plaintext alive after close
    del big


def test_open_model_bfloat16_values(sealed: Path, key: bytes) -> None:
    with veil.open_model(sealed, key) as m:
        bf = m["bf"]
    expected = next(t for t in NUMERIC if t.name == "bf").raw_data
    assert bf.tobytes() == expected and bf.shape == (2, 3) and bf.dtype.itemsize == 2


# --- rewrap ---------------------------------------------------------------------------------------------------


def test_rewrap(sealed: Path, key: bytes, other_key: bytes, model: onnx.ModelProto, assert_same_model) -> None:
    before = veil.inspect(sealed)
    out = sealed.with_name("rotated.veil")
    info = veil.rewrap(sealed, key, other_key, new_key_version=2, out_path=out)
    assert info.key_version == 2 and info.file_id == before.file_id and info.file_size == before.file_size
    assert_same_model(model, onnx.load_from_string(veil.unseal(out, other_key)))
    with pytest.raises(veil.KeyUnwrapError):
        veil.unseal(out, key)
    veil.rewrap(sealed, key, other_key, new_key_version=5)  # in place
    assert veil.inspect(sealed).key_version == 5
    with pytest.raises(veil.KeyUnwrapError):
        veil.rewrap(sealed, key, other_key, new_key_version=6)


# --- reseal (issue 11, Low 6), header digest, anti-rollback (Medium 3), no random hook (Low 10) -----------------


def _data_key(path: Path, key: bytes) -> bytes:
    """The file's data key, unwrapped from the spec alone (sections 5 and 6) with `cryptography`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    data = path.read_bytes()
    h = int.from_bytes(data[12:16], "little")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data[: 16 + h])
    wrap = data[16 + h : 16 + h + 64]
    kek = HKDF(hashes.SHA256(), 32, salt=None, info=b"veil/sealed/v1/key-wrap").derive(key)
    return AESGCM(kek).decrypt(wrap[4:16], wrap[16:64], digest.finalize() + wrap[0:4])


def test_reseal_is_not_rewrap(sealed: Path, key: bytes, other_key: bytes, model: onnx.ModelProto,
                              assert_same_model) -> None:
    before = veil.inspect(sealed)
    rotated, fresh = sealed.with_name("rotated.veil"), sealed.with_name("fresh.veil")
    veil.rewrap(sealed, key, other_key, new_key_version=2, out_path=rotated)
    assert _data_key(rotated, other_key) == _data_key(sealed, key)  # rotation keeps the data key
    info = veil.reseal(sealed, key, new_key=other_key, new_key_version=2, model_version=8, out_path=fresh)
    assert info.key_version == 2 and info.model_version == 8 and info.model_id == before.model_id
    assert info.file_id != before.file_id and info.chunk_size == before.chunk_size
    assert _data_key(fresh, other_key) != _data_key(sealed, key)
    assert_same_model(model, onnx.load_from_string(veil.unseal(fresh, other_key)))
    with pytest.raises(veil.KeyUnwrapError):
        veil.unseal(fresh, key)
    # Same key, in place: still a new file.
    veil.reseal(sealed, key)
    assert veil.inspect(sealed).file_id != before.file_id and veil.inspect(sealed).key_version == before.key_version
    assert_same_model(model, onnx.load_from_string(veil.unseal(sealed, key)))
    with pytest.raises(veil.ArgumentError, match="new_key_version"):
        veil.reseal(sealed, key, new_key=other_key)  # a new key needs its version
    with pytest.raises(veil.ArgumentError, match="model.version"):
        veil.reseal(sealed, key, model_version=6)  # lower than 7
    with pytest.raises(veil.KeyUnwrapError):
        veil.reseal(sealed, other_key, out_path=sealed.with_name("never.veil"))
    assert not sealed.with_name("never.veil").exists()


def test_header_sha256_and_min_model_version(sealed: Path, key: bytes, model: onnx.ModelProto,
                                             tmp_path: Path) -> None:
    import hashlib

    data = sealed.read_bytes()
    header = data[: 16 + int.from_bytes(data[12:16], "little")]
    with veil.open_model(sealed, key, min_model_version=7) as m:
        assert m.header_sha256 == hashlib.sha256(header).digest()
    newer = tmp_path / "v9.veil"
    veil.seal_onnx(model.SerializeToString(), newer, model_id="small-model_1.0", key=key, model_version=9)
    with pytest.raises(veil.VersionError, match="older than the required minimum 9"):
        veil.open_model(sealed, key, min_model_version=9)
    with veil.open_model(newer, key, min_model_version=9) as m:
        assert m.info.model_version == 9 and m.header_sha256 != hashlib.sha256(header).digest()


def test_no_random_source_in_the_public_abi(libveil: str) -> None:
    import ctypes

    lib = ctypes.CDLL(libveil)
    assert not hasattr(lib, "veil_seal_with_random")  # the test-only seeded sealing is not exported
    assert [name for name, _ in veil._lib.SealOptions._fields_][-1] == "progress_ctx"


# --- errors ---------------------------------------------------------------------------------------------------


def test_wrong_key_is_key_unwrap_error(sealed: Path, other_key: bytes, tmp_path: Path) -> None:
    for call in (
        lambda: veil.unseal(sealed, other_key),
        lambda: veil.open_model(sealed, other_key),
        lambda: veil.unseal_file(sealed, other_key, tmp_path / "out.onnx"),
    ):
        with pytest.raises(veil.KeyUnwrapError) as e:
            call()
        assert isinstance(e.value, veil.AuthenticationError)
        assert e.value.status == veil.Status.ERR_KEY and str(e.value) == e.value.detail != ""
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("where", ["magic", "model_version", "key_wrap_tag", "graph", "tensor", "tag_table"])
def test_any_corrupted_byte_is_detected(sealed: Path, key: bytes, where: str) -> None:
    info = veil.inspect(sealed)
    size = info.file_size
    tags = 16 * (1 + sum(1 for t in NUMERIC if numpy_helper.to_array(t).nbytes))  # 1 MiB chunks: one per section
    data_end = size - tags
    data_offset = data_end - _data_size(info)
    offset = {
        "magic": 0,
        "model_version": 16 + 8,
        "key_wrap_tag": data_offset - 1,  # may be zero padding: also checked
        "graph": data_offset + 3,
        "tensor": data_end - 5,
        "tag_table": size - 1,
    }[where]
    _flip(sealed, offset)
    with pytest.raises(veil.VeilError) as e:
        veil.unseal(sealed, key)
    assert type(e.value) is not veil.VeilError and e.value.status is not None
    key_wrap_end = 16 + int.from_bytes(sealed.read_bytes()[12:16], "little") + 64  # preamble, header, key wrap
    expected = {  # the check each byte is under
        "magic": veil.FormatError,
        "model_version": veil.KeyUnwrapError,  # the header is authenticated by the key unwrap
        "key_wrap_tag": veil.KeyUnwrapError if offset < key_wrap_end else veil.FormatError,  # tag, or padding
        "graph": veil.DataAuthenticationError,
        "tensor": veil.DataAuthenticationError,
        "tag_table": veil.DataAuthenticationError,
    }[where]
    assert isinstance(e.value, expected), f"{where}: {type(e.value).__name__}: {e.value}"
    if expected is veil.FormatError:
        assert ("padding" if where == "key_wrap_tag" else "magic") in str(e.value), str(e.value)
    if where == "magic":
        with pytest.raises(veil.FormatError, match="magic"):
            veil.inspect(sealed)


def _data_size(info: veil.SealedInfo) -> int:
    total = info.graph_size
    for t in NUMERIC:
        total = (total + 63) // 64 * 64 + numpy_helper.to_array(t).nbytes
    return total


def test_truncated_or_extended_file(sealed: Path, key: bytes) -> None:
    data = sealed.read_bytes()
    for bad in (data[:-1], data + b"\0", data[:10]):
        sealed.write_bytes(bad)
        with pytest.raises(veil.FormatError):
            veil.inspect(sealed)
        with pytest.raises(veil.FormatError):
            veil.open_model(sealed, key)


def test_missing_file_is_file_error(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(veil.FileError):
        veil.inspect(tmp_path / "nope.veil")
    with pytest.raises(veil.FileError):
        veil.unseal(tmp_path / "nope.veil", key)


def test_bad_onnx_writes_nothing(tmp_path: Path, key: bytes) -> None:
    for blob in (b"definitely not onnx", b"\x08", bytes(range(256))):
        with pytest.raises(veil.OnnxError) as e:
            veil.seal_onnx(blob, tmp_path / "bad.veil", model_id="bad", key=key)
        assert e.value.status == veil.Status.ERR_ONNX and isinstance(e.value, veil.InputError)
    assert list(tmp_path.iterdir()) == []


def test_failed_seal_leaves_existing_file(sealed: Path, key: bytes) -> None:
    before = sealed.read_bytes()
    with pytest.raises(veil.OnnxError):
        veil.seal_onnx(b"garbage", sealed, model_id="bad", key=key)
    assert sealed.read_bytes() == before
    assert sorted(p.name for p in sealed.parent.iterdir()) == [sealed.name]


def test_external_data_is_unsupported(tmp_path: Path, key: bytes, model: onnx.ModelProto) -> None:
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="weights.bin")
    with pytest.raises(veil.UnsupportedError):
        veil.seal_onnx(model.SerializeToString(), tmp_path / "m.veil", model_id="m", key=key)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_id": ""},
        {"model_id": "-starts-with-dash"},
        {"model_id": "has space"},
        {"model_id": "x" * 129},
        {"model_id": "naïve"},
        {"chunk_size": 1000},
        {"chunk_size": 3 * 4096},
        {"key_version": 0},
        {"key": b"short"},
    ],
)
def test_bad_arguments(tmp_path: Path, key: bytes, model: onnx.ModelProto, kwargs: dict) -> None:
    args = {"model_id": "ok", "key": key, **kwargs}
    with pytest.raises(veil.ArgumentError) as e:
        veil.seal_onnx(model.SerializeToString(), tmp_path / "m.veil", **args)
    assert isinstance(e.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_error_map_covers_every_status() -> None:
    expected = {
        100: veil.FileError, 101: veil.FormatError, 102: veil.VersionError, 103: veil.TruncatedError,
        104: veil.OnnxError, 105: veil.UnsupportedError, 106: veil.LimitError, 200: veil.KeyUnwrapError,
        201: veil.DataAuthenticationError, 300: veil.ArgumentError, 400: veil.OutOfMemoryError,
        401: veil.CryptoError, 402: veil.InternalError, 107: veil.EvidenceError, 202: veil.VerificationError,
        203: veil.PolicyError, 204: veil.ExpiredError,
    }
    assert set(expected) == {int(s) for s in veil.Status if s != veil.Status.OK}
    for status, cls in expected.items():
        e = errors.error_for_status(status, "detail text")
        assert type(e) is cls and e.status == status and e.detail == "detail text" and str(e) == "detail text"
    assert issubclass(veil.VersionError, veil.FormatError) and issubclass(veil.TruncatedError, veil.FormatError)
    assert issubclass(veil.EvidenceError, veil.InputError)
    assert all(issubclass(c, veil.AuthenticationError) for c in (veil.VerificationError, veil.PolicyError,
                                                                   veil.ExpiredError))
    assert type(errors.error_for_status(108, "")) is veil.InputError  # unknown codes fall back to the category
    assert type(errors.error_for_status(999, "")) is veil.VeilError
    assert str(errors.error_for_status(201, "", "authentication failed")) == "authentication failed"
