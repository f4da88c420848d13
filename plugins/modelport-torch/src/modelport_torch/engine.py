"""One torch module serving batches: inference mode, explicit device placement, numpy in and out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog
import torch

from service.plugins import Engine, TensorSpec

__all__ = ("TorchEngine", "configure_threads", "resolve_device")

_log = structlog.get_logger(__name__)
_threads_lock = threading.Lock()
_threads_set = False


def configure_threads(intra_op: int, inter_op: int) -> None:
    """torch's thread pools are process-wide: set them once, from the first load that asks."""
    global _threads_set
    with _threads_lock:
        if _threads_set:
            return
        if intra_op > 0:
            torch.set_num_threads(intra_op)
        if inter_op > 0:
            try:
                torch.set_num_interop_threads(inter_op)
            except RuntimeError:  # already started parallel work: keep the default
                _log.warning("torch_interop_threads_unchanged", requested=inter_op)
        _threads_set = True


def resolve_device(requested: str) -> torch.device:
    """CUDA when asked (or auto) and available, MPS when asked and available, else CPU with a logged reason."""
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    if requested == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    if requested in ("cuda", "mps"):
        _log.warning("device_fallback", requested=requested, used="cpu", reason=f"{requested} not available")
    return torch.device("cpu")


def _to_tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, copy=True, order="C")  # read-only views come from the binary codec
    tensor = torch.from_numpy(array).to(device, non_blocking=True)
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor


class TorchEngine(Engine):
    """Thread-safe: modules in eval mode under ``torch.inference_mode`` keep no per-call state."""

    def __init__(
        self,
        module: Callable[..., Any],
        *,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        device: torch.device,
        platform: str,
        half: bool = False,
    ) -> None:
        self._module = module
        self._inputs = inputs
        self._outputs = outputs
        self._device = device
        self._half = half
        self.platform = platform  # type: ignore[misc]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def device(self) -> str:
        return str(self._device)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``(batch, *dims)`` array per declared input, in signature order; returns one per output."""
        dtype = torch.float16 if self._half else None
        with torch.inference_mode():
            args = [_to_tensor(inputs[spec.name], self._device, dtype) for spec in self._inputs]
            result = self._module(*args)
        return self._name_outputs(result)

    def _name_outputs(self, result: Any) -> dict[str, np.ndarray]:
        def to_numpy(tensor: torch.Tensor) -> np.ndarray:
            tensor = tensor.detach()
            if tensor.dtype in (torch.float16, torch.bfloat16):
                tensor = tensor.float()
            return tensor.cpu().numpy()

        if isinstance(result, torch.Tensor):
            return {self._outputs[0].name: to_numpy(result)}
        if isinstance(result, dict):
            return {str(k): to_numpy(v) for k, v in result.items()}
        if isinstance(result, (tuple, list)):
            return {spec.name: to_numpy(t) for spec, t in zip(self._outputs, result, strict=True)}
        raise TypeError(f"model returned {type(result).__name__}; expected a tensor, tuple or dict of tensors")

    def close(self) -> None:
        self._module = None  # type: ignore[assignment]
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
