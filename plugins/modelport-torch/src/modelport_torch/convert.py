"""PyTorch -> ONNX with a parity check: the export is refused when outputs drift beyond a tolerance.

``modelport convert`` calls :func:`load_module` then :func:`convert_to_onnx`. The source is classified by
the core's sniffer and state_dicts go through the same pickle pre-scan as uploads, so converting a file is
as safe as registering it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from modelport_torch.backends import load_state_dict_file

__all__ = ("ConvertResult", "ParityError", "convert_to_onnx", "load_module")

_log = structlog.get_logger(__name__)


class ParityError(ValueError):
    """The ONNX model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """Where the ONNX file went and how close it is to the PyTorch model."""

    path: Path
    max_abs_diff: float
    """Largest absolute difference over every output element of every sample batch."""
    samples: int
    """Number of random batches compared."""
    exporter: str
    """``dynamo`` (torch.export-based, the default) or ``torchscript`` (for TorchScript sources)."""
    seconds: float


def load_module(
    source: Path, *, architecture: Any = None, config: Mapping[str, Any] | None = None
) -> torch.nn.Module | torch.jit.ScriptModule:
    """Load a TorchScript file, a ``.pt2`` program, or a state_dict into ``architecture(**config)``.

    The format is sniffed from the bytes; state_dicts are pre-scanned and read with ``weights_only=True``.

    Raises:
        ValueError: the file is no PyTorch model, or a state_dict came without an architecture, or the
            weights do not fit it.
    """
    from service.errors import ArtifactRejected
    from service.security.sniff import sniff_format

    try:
        fmt = sniff_format(source)
    except ArtifactRejected as exc:
        raise ValueError(str(exc)) from None
    if fmt == "torchscript":
        return torch.jit.load(str(source), map_location="cpu").eval()
    if fmt == "torch_export":
        return torch.export.load(io.BytesIO(source.read_bytes())).module()
    if fmt == "onnx":
        raise ValueError("the source is already an ONNX model")
    if architecture is None:
        raise ValueError("the source is a state_dict: name its architecture (--architecture)")
    module = architecture(**dict(config or {}))
    try:
        state = load_state_dict_file(source, fmt)
        module.load_state_dict(state, strict=True)
    except (ArtifactRejected, RuntimeError) as exc:
        raise ValueError(f"cannot load the weights: {exc}") from None
    return module.eval()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters print progress and warn about optional packages (torchvision): keep the CLI readable."""
    noisy = logging.getLogger("torch.onnx")
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        noisy.setLevel(level)


def _export(module: Any, example: torch.Tensor, out_path: Path, input_name: str, output_name: str) -> str:
    """Export with a dynamic batch dim; torch.export-based for eager modules, TorchScript-based otherwise."""
    if not isinstance(module, torch.jit.ScriptModule):
        try:
            with _quiet_exporter():
                torch.onnx.export(
                    module,
                    (example,),
                    str(out_path),
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    input_names=[input_name],
                    output_names=[output_name],
                )
            return "dynamo"
        except Exception as exc:  # noqa: BLE001 - fall back to the TorchScript-based exporter
            _log.info("onnx_dynamo_export_failed", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
    with _quiet_exporter():
        torch.onnx.export(
            module,
            (example,),
            str(out_path),
            dynamo=False,
            opset_version=17,
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            input_names=[input_name],
            output_names=[output_name],
        )
    return "torchscript"


def convert_to_onnx(
    module: Any,
    example: np.ndarray,
    out_path: Path,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    tolerance: float = 1e-4,
    samples: int = 8,
    seed: int = 0,
) -> ConvertResult:
    """Export ``module`` to a single-file ONNX model and compare it with PyTorch on random batches.

    Args:
        module: an eager ``nn.Module`` or a TorchScript module taking one tensor.
        example: one input batch ``(batch, *dims)``; fixes the dtype and the trailing dims.
        out_path: where the ``.onnx`` file goes (removed again when parity fails).
        tolerance: largest allowed absolute difference on any output element.
        samples: random batches compared, of sizes 1..4 and standard-normal values.

    Raises:
        ParityError: when the max abs difference exceeds ``tolerance``.
    """
    import onnxruntime as ort

    started = time.perf_counter()
    module = module.eval()
    example_tensor = torch.from_numpy(np.ascontiguousarray(example))
    exporter = _export(module, example_tensor, out_path, input_name, output_name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as served
    session = ort.InferenceSession(str(out_path), sess_options=options, providers=["CPUExecutionProvider"])
    if isinstance(session.get_inputs()[0].shape[0], int) and session.get_inputs()[0].shape[0] > 0:
        out_path.unlink(missing_ok=True)
        raise ValueError("the exported model has a fixed batch dimension; modelport needs a dynamic one")
    rng = np.random.default_rng(seed)
    worst = 0.0
    for index in range(samples):
        batch = rng.standard_normal((1 + index % 4, *example.shape[1:])).astype(example.dtype)
        with torch.no_grad():  # not inference_mode: TorchScript modules just traced by the exporter reject it
            expected = module(torch.from_numpy(batch))
        expected = expected[0] if isinstance(expected, (tuple, list)) else expected
        got = session.run([output_name], {input_name: batch})[0]
        worst = max(worst, float(np.max(np.abs(got - expected.detach().numpy()))))
    if not worst <= tolerance:  # also refuses NaN
        out_path.unlink(missing_ok=True)
        raise ParityError(
            f"ONNX export refused: max abs difference {worst:.3g} over {samples} batches exceeds "
            f"tolerance {tolerance:g}"
        )
    return ConvertResult(out_path, worst, samples, exporter, time.perf_counter() - started)
