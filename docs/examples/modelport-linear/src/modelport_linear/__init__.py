"""A complete third-party backend: numpy only, loaded through modelport's entry points."""

from __future__ import annotations

import json
import struct
from typing import ClassVar

import numpy as np

from service.plugins import Backend, Engine, LoadRequest, TensorSpec

_DTYPES = {"F32": np.float32, "F64": np.float64}


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """The safetensors layout: 8-byte little-endian header length, JSON header, raw tensor bytes."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
        data = fh.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = _DTYPES[meta["dtype"]]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(meta["shape"]).copy()
    return tensors


class LinearEngine(Engine):
    platform = "numpy_linear"

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self._w, self._b = weight.astype(np.float32), bias.astype(np.float32)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("x", "FP32", (-1, self._w.shape[0])),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("y", "FP32", (-1, self._w.shape[1])),)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``x``: (batch, in) float32 -> ``y``: (batch, out) float32. Pure numpy: thread-safe."""
        return {"y": inputs["x"] @ self._w + self._b}


class LinearBackend(Backend):
    formats: ClassVar = ("safetensors",)
    description = "y = x @ weight + bias from a safetensors file (example plugin)"

    def load(self, request: LoadRequest) -> LinearEngine:
        tensors = _read_safetensors(str(request.artifact_path))
        missing = {"weight", "bias"} - set(tensors)
        if missing:
            raise ValueError(f"safetensors file lacks tensors {sorted(missing)}")
        return LinearEngine(tensors["weight"], tensors["bias"])
