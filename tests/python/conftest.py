"""Shared fixtures for the Python tests: the veil package on sys.path, libveil availability, fresh keys."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = ROOT / "python"
if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes a few seconds (exports and seals a full-size model)")


@pytest.fixture(scope="session")
def libveil() -> str:
    """The path of the loaded libveil; skips the test when libveil is not built or not loadable."""
    import veil

    try:
        return veil.library_path()
    except veil.LibraryNotFoundError as e:
        if os.environ.get("VEIL_LIBRARY"):  # `make test` names the library it built: missing is a failure
            pytest.fail(f"VEIL_LIBRARY is set but libveil cannot be loaded: {e}")
        pytest.skip(f"libveil not available: {e}")


@pytest.fixture
def key(libveil: str) -> bytes:
    """A fresh 32-byte model key."""
    import veil

    return veil.keygen()


@pytest.fixture
def other_key(libveil: str) -> bytes:
    """A second, different model key."""
    import veil

    return veil.keygen()


_DATA_FIELDS = ("float_data", "int32_data", "int64_data", "raw_data", "double_data", "uint64_data")


def _tensor_bytes(t: object) -> bytes:
    from onnx import numpy_helper

    return numpy_helper.to_array(t).tobytes()  # raw little-endian layout, whichever field held the data


def _assert_same_model(original: object, restored: object) -> None:
    """Asserts two ONNX ModelProtos are the same model: every initializer bit-identical as a tensor (name, data
    type, dims, bytes) and everything else equal (spec section 9: typed fields may come back as raw_data)."""
    import onnx

    a, b = onnx.ModelProto(), onnx.ModelProto()
    a.CopyFrom(original)
    b.CopyFrom(restored)
    assert [t.name for t in a.graph.initializer] == [t.name for t in b.graph.initializer]
    for ta, tb in zip(a.graph.initializer, b.graph.initializer):
        assert (ta.name, ta.data_type, list(ta.dims)) == (tb.name, tb.data_type, list(tb.dims))
        if ta.data_type == onnx.TensorProto.STRING:
            assert list(ta.string_data) == list(tb.string_data)
            continue
        assert _tensor_bytes(ta) == _tensor_bytes(tb), ta.name
        for t in (ta, tb):
            for field in _DATA_FIELDS:
                t.ClearField(field)
    assert a == b


@pytest.fixture
def assert_same_model():
    """assert_same_model(original, restored): see _assert_same_model."""
    return _assert_same_model
