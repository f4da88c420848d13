"""One torch module serving batches: inference mode, explicit device placement, numpy in and out.

Shared by the three torch backends. Imports torch: only the backends' ``load`` imports this module, so
discovering the plugin never pays torch's import time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import structlog
import torch

from service.plugins import Engine, TensorSpec

__all__ = (
    "ExportedProgramEngine",
    "StateDictEngine",
    "TorchEngine",
    "TorchScriptEngine",
    "configure_threads",
    "resolve_device",
    "spec_from_module",
    "torch_dtype",
    "v2_from_torch",
)

_log = structlog.get_logger(__name__)
_threads_lock = threading.Lock()
_threads_configured = False

_TORCH_TO_V2: dict[torch.dtype, str] = {
    torch.float32: "FP32",
    torch.float64: "FP64",
    torch.float16: "FP16",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.uint8: "UINT8",
    torch.uint16: "UINT16",
    torch.uint32: "UINT32",
    torch.uint64: "UINT64",
    torch.bool: "BOOL",
}
_V2_TO_TORCH = {name: dtype for dtype, name in _TORCH_TO_V2.items()}


def v2_from_torch(dtype: torch.dtype, *, what: str) -> str:
    """The V2 datatype of a torch dtype; ValueError naming ``what`` for dtypes V2 cannot carry (bfloat16)."""
    try:
        return _TORCH_TO_V2[dtype]
    except KeyError:
        raise ValueError(f"{what} has dtype {dtype}, which has no V2 datatype (cast it to float32)") from None


def torch_dtype(datatype: str, *, what: str) -> torch.dtype:
    """The torch dtype of a V2 datatype; ValueError for BYTES and unknown names."""
    try:
        return _V2_TO_TORCH[datatype]
    except KeyError:
        raise ValueError(f"{what}: datatype {datatype} cannot be fed to a torch model") from None


def configure_threads(intra_op: int, inter_op: int) -> None:
    """Set torch's process-wide thread pools once, from the first load that asks (later asks are ignored)."""
    global _threads_configured
    with _threads_lock:
        if _threads_configured:
            return
        if intra_op > 0:
            torch.set_num_threads(intra_op)
        if inter_op > 0:
            try:
                torch.set_num_interop_threads(inter_op)
            except RuntimeError:  # inter-op work already started in this process: keep the default
                _log.warning("torch_interop_threads_unchanged", requested=inter_op)
        _threads_configured = True


def resolve_device(requested: str) -> torch.device:
    """CUDA when asked (or ``auto``) and available, MPS when asked and available, else CPU, logging why."""
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if requested == "mps" and mps is not None and mps.is_available():
        return torch.device("mps")
    if requested in ("cuda", "mps"):
        _log.warning("device_fallback", backend="torch", requested=requested, used="cpu", reason="not available")
    elif requested == "auto":
        _log.info("device_auto_cpu", backend="torch", reason="CUDA not available")
    return torch.device("cpu")


def _to_tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, copy=True, order="C")  # read-only views come from the binary codec
    tensor = torch.from_numpy(array)
    if device.type != "cpu":
        tensor = tensor.to(device, non_blocking=True)
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor


def _to_numpy(tensor: Any, what: str) -> np.ndarray:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{what} is a {type(tensor).__name__}, not a tensor")
    tensor = tensor.detach()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()  # fp16 serving is an internal detail: clients always get FP32
    return tensor.cpu().numpy()


def _flatten(result: Any) -> list[tuple[str | None, Any]]:
    """A model's return value as ``(name or None, tensor)`` pairs: tensor, tuple/list, or dict."""
    if isinstance(result, torch.Tensor):
        return [(None, result)]
    if isinstance(result, dict):
        return [(str(k), v) for k, v in result.items()]
    if isinstance(result, (tuple, list)):
        return [(None, v) for v in result]
    raise TypeError(f"model returned {type(result).__name__}; expected a tensor, a tuple/list or a dict of tensors")


class TorchEngine(Engine):
    """A torch module (eager, TorchScript or an exported program) serving whole batches.

    Thread-safe: the module is in eval mode and runs under ``torch.inference_mode``, which keeps no
    per-call state, and every call builds its own tensors.
    """

    platform: ClassVar[str] = "pytorch"

    def __init__(
        self,
        module: Callable[..., Any],
        *,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...] | None,
        device: torch.device,
        half: bool = False,
    ) -> None:
        """Wrap ``module``; when ``outputs`` is None they are inferred by one batch-of-1 dry run on zeros."""
        for spec in inputs:
            torch_dtype(spec.datatype, what=f"input '{spec.name}'")
        self._module = module
        self._inputs = inputs
        self._device = device
        self._half = half
        self._outputs = self._check_outputs(outputs)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def device(self) -> str:
        return str(self._device)

    def _run(self, inputs: dict[str, np.ndarray]) -> list[tuple[str | None, Any]]:
        module = self._module
        if module is None:
            raise RuntimeError("engine is closed")
        dtype = torch.float16 if self._half else None
        with torch.inference_mode():
            args = [_to_tensor(inputs[spec.name], self._device, dtype) for spec in self._inputs]
            return _flatten(module(*args))

    def _dry_run(self) -> list[tuple[str | None, np.ndarray]]:
        batch = {
            spec.name: np.zeros(tuple(1 if d < 0 else d for d in spec.shape), dtype=spec.dtype) for spec in self._inputs
        }
        try:
            produced = self._run(batch)
        except Exception as exc:  # noqa: BLE001 - a model that cannot run its own signature is refused
            shapes = ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in self._inputs)
            raise ValueError(f"the model fails on a zero batch of its input signature ({shapes}): {exc}") from exc
        if not produced:
            raise ValueError("the model returns no tensors")
        return [(name, _to_numpy(value, f"output {i}")) for i, (name, value) in enumerate(produced)]

    def _check_outputs(self, declared: tuple[TensorSpec, ...] | None) -> tuple[TensorSpec, ...]:
        """Infer outputs from a dry run, or check the declared ones against it (count, datatype, dims)."""
        produced = self._dry_run()
        batch_dynamic = not self._inputs or self._inputs[0].shape[0] < 0
        if declared is None:
            unnamed = len(produced) == 1
            return tuple(
                TensorSpec(
                    name if name is not None else ("output" if unnamed else f"output_{i}"),
                    v2_from_torch(torch.from_numpy(array).dtype, what=f"output {i}"),
                    ((-1,) if batch_dynamic else array.shape[:1]) + tuple(array.shape[1:]),
                )
                for i, (name, array) in enumerate(produced)
            )
        if len(declared) != len(produced):
            raise ValueError(f"the signature declares {len(declared)} outputs but the model returns {len(produced)}")
        if produced[0][0] is not None:  # a dict: match by name
            by_name = dict(produced)
            missing = [spec.name for spec in declared if spec.name not in by_name]
            if missing:
                raise ValueError(f"the model returns {sorted(map(str, by_name))}, not the declared outputs {missing}")
            produced = [(spec.name, by_name[spec.name]) for spec in declared]
        for spec, (_name, array) in zip(declared, produced, strict=True):
            actual = v2_from_torch(torch.from_numpy(array).dtype, what=f"output '{spec.name}'")
            if actual != spec.datatype:
                raise ValueError(f"output '{spec.name}' is {actual} but the signature declares {spec.datatype}")
            dims = tuple(array.shape)
            if len(dims) != len(spec.shape) or any(
                d >= 0 and d != a for d, a in zip(spec.shape[1:], dims[1:], strict=True)
            ):
                raise ValueError(f"output '{spec.name}' has shape {list(dims)}; the signature declares {spec.shape}")
        return declared

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            inputs: one ``(batch, *dims)`` array per declared input; passed to the module positionally, in
                signature order.

        Returns:
            one ``(batch, *dims)`` array per output (fp16 results come back as float32).
        """
        produced = self._run(inputs)
        if len(produced) != len(self._outputs):
            raise RuntimeError(f"model returned {len(produced)} outputs; its signature has {len(self._outputs)}")
        if produced[0][0] is not None:  # a dict of outputs: by name, whatever its order
            by_name = dict(produced)
            return {spec.name: _to_numpy(by_name[spec.name], f"output '{spec.name}'") for spec in self._outputs}
        return {
            spec.name: _to_numpy(value, f"output '{spec.name}'")
            for spec, (_name, value) in zip(self._outputs, produced, strict=True)
        }

    def close(self) -> None:
        """Drop the module; on CUDA also return cached blocks to the driver."""
        self._module = None  # type: ignore[assignment]
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


class TorchScriptEngine(TorchEngine):
    """A TorchScript module (``torchscript`` backend)."""

    platform: ClassVar[str] = "pytorch_torchscript"


class ExportedProgramEngine(TorchEngine):
    """The module of a ``torch.export`` program (``torch_export`` backend)."""

    platform: ClassVar[str] = "pytorch_export"


class StateDictEngine(TorchEngine):
    """An architecture with a loaded state_dict (``pytorch`` backend)."""

    platform: ClassVar[str] = "pytorch_state_dict"


def spec_from_module(module: Any, attribute: str) -> tuple[TensorSpec, ...] | None:
    """An architecture's self-description (``input_spec``/``output_spec``: a TensorSpec or a tuple of them)."""
    spec = getattr(module, attribute, None)
    if isinstance(spec, TensorSpec):
        return (spec,)
    if isinstance(spec, Sequence) and spec and all(isinstance(s, TensorSpec) for s in spec):
        return tuple(spec)
    return None
