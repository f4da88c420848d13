"""The ``onnx`` backend: one ONNX Runtime ``InferenceSession`` per served version.

Safety: an artifact is one content-addressed blob, so a model whose tensors live in external files is
refused (its ``location`` could name any path, e.g. ``../../etc/passwd``); custom-op libraries are never
registered, so a model can only use the operators built into onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import structlog

from service.errors import InvalidInput
from service.plugins import ArtifactFormat, Backend, Engine, LoadRequest, TensorSpec

__all__ = ("ExternalDataRefused", "OnnxBackend", "OnnxEngine")

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
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class ExternalDataRefused(ValueError):
    """The model keeps tensor data outside the artifact file."""


def _spec(arg: Any) -> TensorSpec:
    """A TensorSpec from an ``onnxruntime.NodeArg``; symbolic or unknown dims become -1."""
    datatype = _ORT_TO_V2.get(arg.type)
    if datatype is None:
        raise ValueError(f"tensor '{arg.name}' has type {arg.type}, which has no V2 datatype")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


def _external_message(name: str, location: str) -> str:
    return (
        f"ONNX tensor '{name}' keeps its data in an external file ('{location[:100]}'); modelport serves "
        "single-file models only: re-save with onnx.save_model(model, path, save_as_external_data=False)"
    )


def refuse_external_data(path: Path) -> None:
    """Raise :class:`ExternalDataRefused` when any tensor of the model at ``path`` uses external data.

    Never opens a referenced file: the core's memory-mapped protobuf walk (``service.security.sniff``, the
    same one the upload guard runs) visits every place a tensor can live without reading tensor bytes. Not the
    onnx package: its import is ~4 MB of RSS in every serving process, and its parse a copy of the whole model.
    """
    from service.security.sniff import onnx_external_reference

    found = onnx_external_reference(path)
    if found is not None:
        raise ExternalDataRefused(_external_message(*found))


def _providers(device: str) -> list[str]:
    """Execution providers in priority order for a requested device; CPU always last, fallback logged."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in _GPU_PROVIDERS if p in available] if device in ("cuda", "auto") else []
    if not chosen and device != "cpu":
        reason = "onnxruntime has no CUDA/TensorRT provider" if device != "mps" else "no MPS provider for ONNX"
        if device == "auto":
            _log.info("device_auto_cpu", backend="onnx", reason=reason)
        else:
            _log.warning("device_fallback", backend="onnx", requested=device, used="cpu", reason=reason)
    return [*chosen, "CPUExecutionProvider"]


def _as_text(array: np.ndarray, name: str) -> np.ndarray:
    """BYTES elements as ``str`` for onnxruntime: given ``bytes`` it stores their repr (``"b'abc'"``), not the
    bytes. Its string tensors are UTF-8; other bytes are the caller's mistake (400 for that request alone)."""
    flat = array.reshape(-1)
    text = np.empty(flat.shape, dtype=object)
    for index, item in enumerate(flat):
        if isinstance(item, bytes | np.bytes_):
            try:
                text[index] = bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"input '{name}': element {index} is not UTF-8, which this ONNX model's string input requires"
                ) from None
        else:
            text[index] = item
    return text.reshape(array.shape)


class OnnxEngine(Engine):
    """An InferenceSession serving whole batches.

    Thread-safe: ``InferenceSession.run`` may be called from several threads at once, and the engine keeps
    no per-call state.
    """

    platform: ClassVar[str] = "onnxruntime_onnx"

    def __init__(self, session: Any) -> None:
        self._session = session
        self._inputs = tuple(_spec(a) for a in session.get_inputs())
        self._outputs = tuple(_spec(a) for a in session.get_outputs())
        self._input_names = [spec.name for spec in self._inputs]
        self._text_inputs = frozenset(spec.name for spec in self._inputs if spec.datatype == "BYTES")
        self._output_names = [spec.name for spec in self._outputs]
        providers = session.get_providers()
        self._device = "cuda:0" if providers and providers[0] in _GPU_PROVIDERS else "cpu"

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
        """Run one batch.

        Args:
            inputs: one ``(batch, *dims)`` array per input name, in the input's dtype.

        Returns:
            one ``(batch, *dims)`` array per output name.
        """
        session = self._session
        if session is None:
            raise RuntimeError("engine is closed")
        feed = {name: inputs[name] for name in self._input_names}
        for name in self._text_inputs:
            feed[name] = _as_text(feed[name], name)
        results = session.run(self._output_names, feed)
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        """Drop the session; onnxruntime frees its arena when the last reference goes."""
        self._session = None


class OnnxBackend(Backend):
    """Loads single-file ONNX models into onnxruntime sessions."""

    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("onnx",)
    platform: ClassVar[str] = "onnxruntime_onnx"
    description: ClassVar[str] = "ONNX Runtime (all graph optimisations; CUDA/TensorRT when available, else CPU)"

    def load(self, request: LoadRequest) -> OnnxEngine:
        """Refuse external data, then build a session with full graph optimisation and the requested threads.

        Runs in a worker thread, after the core verified the hash and sniffed the format.
        """
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - the distribution depends on it
            raise RuntimeError("the onnx backend needs onnxruntime: pip install modelport-onnx") from exc

        refuse_external_data(request.artifact_path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if request.intra_op_threads > 0:
            options.intra_op_num_threads = request.intra_op_threads
        if request.inter_op_threads > 0:
            options.inter_op_num_threads = request.inter_op_threads
        spin = "1" if request.allow_spinning else "0"  # idle threads spinning on a shared core starve the loop
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        session = ort.InferenceSession(
            str(request.artifact_path), sess_options=options, providers=_providers(request.device)
        )
        engine = OnnxEngine(session)
        _log.debug("onnx_session_ready", providers=session.get_providers(), device=engine.device)
        return engine
