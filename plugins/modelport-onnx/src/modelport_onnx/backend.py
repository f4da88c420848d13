"""The ``onnx`` backend: one InferenceSession per served version."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import structlog

from service.plugins import Backend, Engine, LoadRequest, TensorSpec
from service.plugins.contract import ArtifactFormat

__all__ = ("OnnxBackend", "OnnxEngine")

_log = structlog.get_logger(__name__)

_ORT_TO_V2 = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any) -> TensorSpec:
    datatype = _ORT_TO_V2.get(arg.type)
    if datatype is None:
        raise ValueError(f"tensor '{arg.name}' has unsupported type {arg.type}")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


def _refuse_external_data(path: Any) -> None:
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            raise ValueError(
                f"initializer '{tensor.name}' uses external data; modelport accepts single-file ONNX models only "
                "(re-save with onnx.save(model, path, save_as_external_data=False))"
            )


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen: list[str] = []
    if device in ("cuda", "auto"):
        for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
            if provider in available:
                chosen.append(provider)
        if device == "cuda" and not chosen:
            _log.warning("device_fallback", requested="cuda", used="cpu", reason="no CUDA provider in onnxruntime")
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxEngine(Engine):
    """Thread-safe: ``InferenceSession.run`` may be called from several threads at once."""

    platform = "onnxruntime_onnx"

    def __init__(self, session: Any) -> None:
        self._session = session
        self._inputs = tuple(_spec(a) for a in session.get_inputs())
        self._outputs = tuple(_spec(a) for a in session.get_outputs())
        self._output_names = [o.name for o in self._outputs]
        providers = session.get_providers()
        self._device = (
            "cuda:0" if providers and providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        )

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def device(self) -> str:
        return self._device

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``inputs``: one ``(batch, *dims)`` array per input name; returns the same per output."""
        results = self._session.run(self._output_names, inputs)
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


class OnnxBackend(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("onnx",)
    description = "ONNX Runtime (CPU; CUDA/TensorRT when available)"

    def load(self, request: LoadRequest) -> OnnxEngine:
        import onnxruntime as ort

        _refuse_external_data(request.artifact_path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if request.intra_op_threads:
            options.intra_op_num_threads = request.intra_op_threads
        if request.inter_op_threads:
            options.inter_op_num_threads = request.inter_op_threads
        providers = _providers(request.device)
        session = ort.InferenceSession(str(request.artifact_path), sess_options=options, providers=providers)
        return OnnxEngine(session)
