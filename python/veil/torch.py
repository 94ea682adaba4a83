"""PyTorch front: export a module to ONNX in memory and seal it, without plaintext ONNX ever touching disk.

This is the only Veil module that imports torch (and onnx). Export uses the TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) where torch still has it: it keeps initializers named after the
module's state_dict. Otherwise it falls back to the torch.export-based exporter with every weight embedded.
"""

from __future__ import annotations

import inspect as _inspect
import io
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from . import sealed as _sealed
from .errors import OnnxError, UnsupportedError

__all__ = ["SecureModel", "export_onnx", "seal", "state_dict_from_sealed", "to_secure"]

Exporter = Literal["auto", "torchscript", "dynamo"]
Inputs = Union[torch.Tensor, Sequence[Any]]


def _as_tuple(example_inputs: Inputs) -> tuple[Any, ...]:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    raise TypeError("example_inputs must be a tensor or a tuple of tensors")


def _flatten(outputs: Any) -> list[Any]:
    if isinstance(outputs, (tuple, list)):
        return [leaf for item in outputs for leaf in _flatten(item)]
    if isinstance(outputs, Mapping):
        return [leaf for item in outputs.values() for leaf in _flatten(item)]
    return [outputs]


def _default_names(prefix: str, count: int) -> list[str]:
    return [prefix] if count == 1 else [f"{prefix}_{i}" for i in range(count)]


def _torchscript_available() -> bool:
    return "dynamo" in _inspect.signature(torch.onnx.export).parameters and hasattr(torch.jit, "trace")


def export_onnx(
    module: torch.nn.Module,
    example_inputs: Inputs,
    *,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    exporter: Exporter = "auto",
) -> bytes:
    """Exports ``module`` (in eval mode; its mode is restored afterwards) to ONNX bytes held in memory, with
    every weight embedded. BatchNorm is not folded into convolutions, so parameters and buffers keep their
    state_dict names (identical tensors, tied weights included, are stored once). A model of 2 GiB or more
    cannot be one protobuf message: use ``seal``, which exports it with ONNX external data."""
    buf = io.BytesIO()
    _export(module, example_inputs, buf, opset=opset, input_names=input_names, output_names=output_names,
            dynamic_batch=dynamic_batch, exporter=exporter)
    return buf.getvalue()


def _export(
    module: torch.nn.Module,
    example_inputs: Inputs,
    target: io.BytesIO | str,
    *,
    opset: int | None,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    dynamic_batch: bool,
    exporter: Exporter,
) -> None:
    """Exports into target: a buffer (every weight embedded), or the path of an .onnx file, beside which the
    exporter writes the weights as ONNX external data when the model passes protobuf's 2 GiB limit."""
    args = _as_tuple(example_inputs)
    if exporter == "auto":
        exporter = "torchscript" if _torchscript_available() else "dynamo"
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            outputs = _flatten(module(*args))
        in_names = list(input_names) if input_names is not None else _default_names("input", len(args))
        out_names = list(output_names) if output_names is not None else _default_names("output", len(outputs))
        dynamic_axes: dict[str, dict[int, str]] | None = None
        if dynamic_batch:
            dynamic_axes = {}
            for name, value in [*zip(in_names, args), *zip(out_names, outputs)]:
                if isinstance(value, torch.Tensor) and value.dim() >= 1:
                    dynamic_axes[name] = {0: "batch"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its future
            # Generic advice for PRESERVE; the module is in eval mode here, so folding cannot touch training state.
            warnings.filterwarnings("ignore", message="It is recommended that constant folding", category=UserWarning)
            if exporter == "torchscript":
                # This exporter writes to file-like objects; its annotation only names paths.
                torch.onnx.export(
                    module, args, target,  # type: ignore[arg-type]
                    dynamo=False, export_params=True, opset_version=opset,
                    input_names=in_names, output_names=out_names, dynamic_axes=dynamic_axes,
                    training=torch.onnx.TrainingMode.PRESERVE,  # eval mode, without folding BN into Conv
                    do_constant_folding=True, keep_initializers_as_inputs=False,
                )
            elif exporter == "dynamo":
                dynamic_shapes = None
                if dynamic_batch:
                    dim = getattr(torch.export.Dim, "DYNAMIC", None) or torch.export.Dim("batch")
                    dynamic_shapes = tuple({0: dim} if isinstance(a, torch.Tensor) and a.dim() >= 1 else None
                                           for a in args)
                program = torch.onnx.export(
                    module, args, dynamo=True, external_data=False, opset_version=opset,
                    input_names=in_names, output_names=out_names, dynamic_shapes=dynamic_shapes, verbose=False,
                )
                if program is None:
                    raise OnnxError("torch.onnx.export returned no program")
                if isinstance(target, str):
                    program.save(target, external_data=True)
                else:
                    proto = program.model_proto  # serialized from memory: every initializer embedded
                    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
                        raise UnsupportedError("the exporter produced external data for an in-memory export")
                    target.write(proto.SerializeToString())
            else:
                raise ValueError(f"unknown exporter {exporter!r}")
    finally:
        module.train(was_training)


# Past this many bytes of parameters and buffers, seal exports to a file with external data: protobuf cannot
# serialise a message of 2 GiB, and the graph itself needs room beside the weights.
_IN_MEMORY_LIMIT = 2**31 - 2**27


def _state_bytes(module: torch.nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def seal(
    module: torch.nn.Module,
    example_inputs: Inputs,
    path: str | os.PathLike[str],
    *,
    model_id: str,
    key: bytes | bytearray | memoryview,
    key_version: int = 1,
    model_version: int = 1,
    public_graph: bool = False,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    exporter: Exporter = "auto",
    chunk_size: int | None = None,
) -> _sealed.SealedInfo:
    """Exports ``module`` to ONNX in memory (see export_onnx) and seals it into ``path`` with libveil.

    ``dynamic_batch`` makes dimension 0 of every input and output symbolic ("batch"). The plaintext ONNX
    never touches disk, except for a model whose parameters and buffers pass about 2 GiB: protobuf cannot hold
    it in one message, so it is exported to a private temporary directory (mode 0700) with ONNX external data,
    sealed from there, and the directory is removed. Returns the sealed file's public header.
    """
    options = dict(opset=opset, input_names=input_names, output_names=output_names, dynamic_batch=dynamic_batch,
                   exporter=exporter)
    seal_options = dict(model_id=model_id, key=key, key_version=key_version, model_version=model_version,
                        public_graph=public_graph, chunk_size=chunk_size)
    if _state_bytes(module) < _IN_MEMORY_LIMIT:
        return _sealed.seal_onnx(export_onnx(module, example_inputs, **options), path, **seal_options)
    with tempfile.TemporaryDirectory(prefix="veil-export-") as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        _export(module, example_inputs, onnx_path, **options)
        return _sealed.seal_onnx(onnx_path, path, **seal_options)


def to_secure(
    model: torch.nn.Module,
    key: bytes | bytearray | memoryview,
    model_id: str,
    example_inputs: Inputs | None = None,
    path: str | os.PathLike[str] | None = None,
) -> str:
    """Drop-in for the seed's ``torch.utils.secure_mkldnn.to_secure_mkldnn(model, key, model_id)`` (Intel's
    "PyTorch with SGX"): seals ``model`` into ``path`` (default ``f"{model_id}.veil"``) and returns the path.

    ``key`` may be 32 bytes (Veil's model key size) or 16 bytes, accepted only for compatibility with the seed's
    AES-128 keys; prefer 32. Unlike the seed, which encrypted weights in place, Veil seals an ONNX graph, so
    ``example_inputs`` (a tensor or a tuple of tensors with the model's input shapes) is required to export it.
    """
    if example_inputs is None:
        raise ValueError(
            "to_secure needs example_inputs: Veil seals an ONNX export of the model, and exporting traces the "
            "model with example inputs of the right shapes and dtypes, e.g. torch.randn(1, 3, 224, 224)"
        )
    out = os.fspath(path) if path is not None else f"{model_id}.veil"
    seal(model, example_inputs, out, model_id=model_id, key=key)
    return out


_TORCH_FROM_BITS: dict[int, tuple[str, np.dtype]] = {
    16: ("bfloat16", np.dtype("<u2")),
    17: ("float8_e4m3fn", np.dtype("u1")),
    18: ("float8_e4m3fnuz", np.dtype("u1")),
    19: ("float8_e5m2", np.dtype("u1")),
    20: ("float8_e5m2fnuz", np.dtype("u1")),
}


def _to_tensor(init: onnx.TensorProto) -> torch.Tensor:
    array = numpy_helper.to_array(init)
    if init.data_type in _TORCH_FROM_BITS:
        name, bits = _TORCH_FROM_BITS[init.data_type]
        dtype = getattr(torch, name)
        raw = np.ascontiguousarray(array).view(bits)
        return torch.from_numpy(raw.copy()).view(dtype)
    return torch.from_numpy(np.array(array, copy=True))


def state_dict_from_sealed(
    path: str | os.PathLike[str], key: bytes | bytearray | memoryview
) -> dict[str, torch.Tensor]:
    """Unseals ``path`` in memory and returns its numeric initializers as tensors, by ONNX name.

    With the TorchScript exporter those names are the module's state_dict keys; a tensor the exporter folded or
    deduplicated appears under its ONNX name instead, and buffers the graph does not use are absent.
    """
    model = onnx.load_from_string(_sealed.unseal(path, key))
    return {init.name: _to_tensor(init) for init in model.graph.initializer
            if init.data_type != onnx.TensorProto.STRING}


class SecureModel(torch.nn.Module):
    """A model served by an attested veil-runtime, used like a local ``nn.Module``: ``forward(*tensors)`` sends
    the tensors (in the order of the model's inputs) to ``/v2/models/<model>/infer`` through a ``veil.Client`` and
    returns the output tensor, or a tuple of them in the order of the model's outputs, on the first input's device.

        model = veil.torch.SecureModel("https://node:8443", "resnet50", policy="client-policy.json")
        logits = model(torch.randn(1, 3, 224, 224))

    The client attests the runtime before anything else is sent (see ``veil.Client``; ``client_kwargs`` go to
    it: ``sim_keys``, ``collateral``, ``snp_cert``, ``api_key``, ``timeout`` ...). No gradient flows through the
    remote call: the weights never leave the TEE. ``input_names`` / ``output_names`` override the names read from
    the model's metadata."""

    def __init__(self, url: str, model: str, *, policy: Any, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, **client_kwargs: Any) -> None:
        super().__init__()
        from .client import Client

        self.client = Client(url, policy=policy, **client_kwargs)
        self.model = model
        try:
            meta = self.client.model_metadata(model) if input_names is None or output_names is None else {}
        except BaseException:
            self.client.close()
            raise
        self.input_names = list(input_names) if input_names is not None else [i["name"] for i in meta["inputs"]]
        self.output_names = (list(output_names) if output_names is not None
                             else [o["name"] for o in meta["outputs"]])

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(tensors) != len(self.input_names):
            raise TypeError(f"{self.model} takes {len(self.input_names)} input tensor(s) "
                            f"({', '.join(self.input_names)}), got {len(tensors)}")
        inputs = {name: t.detach().cpu().numpy() for name, t in zip(self.input_names, tensors)}
        out = self.client.infer(self.model, inputs, outputs=self.output_names)
        device = tensors[0].device if tensors else torch.device("cpu")
        result = tuple(torch.from_numpy(np.ascontiguousarray(out[name])).to(device) for name in self.output_names)
        return result[0] if len(result) == 1 else result

    def close(self) -> None:
        """Closes the client's connection."""
        self.client.close()

    def extra_repr(self) -> str:
        return f"model={self.model!r}, runtime={self.client!r}"
