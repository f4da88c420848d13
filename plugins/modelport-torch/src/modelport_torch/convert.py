"""PyTorch -> ONNX with a parity check: refuse the export when outputs drift beyond a tolerance."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ("ConvertResult", "convert_to_onnx", "load_module")


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    max_abs_diff: float
    samples: int


def load_module(source: Path, *, architecture: Any = None, config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A TorchScript file, or a state_dict (safetensors / torch.save) loaded into ``architecture(**config)``."""
    import zipfile

    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            if any("/code/" in name for name in archive.namelist()):
                return torch.jit.load(str(source), map_location="cpu").eval()
    if architecture is None:
        raise ValueError("a state_dict needs --architecture")
    module = architecture(**(config or {}))
    if source.read_bytes()[:1] == b"\x80" or zipfile.is_zipfile(source):
        state = torch.load(str(source), map_location="cpu", weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(source))
    module.load_state_dict(state, strict=True)
    return module.eval()


def convert_to_onnx(
    module: torch.nn.Module,
    example: np.ndarray,
    out_path: Path,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    tolerance: float = 1e-4,
    samples: int = 8,
    seed: int = 0,
) -> ConvertResult:
    """Export with a dynamic batch dim, then compare onnxruntime with torch on ``samples`` random batches.

    Args:
        example: one input batch ``(batch, *dims)`` that fixes dtype and trailing dims.
    Raises:
        ValueError: when the max abs difference exceeds ``tolerance`` (the file is removed).
    """
    import onnxruntime as ort

    module = module.eval()
    tensor = torch.from_numpy(np.ascontiguousarray(example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (tensor,),
            str(out_path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for index in range(samples):
        batch = rng.random((1 + index % 4, *example.shape[1:])).astype(example.dtype)
        with torch.inference_mode():
            expected = module(torch.from_numpy(batch)).numpy()
        got = session.run(None, {input_name: batch})[0]
        worst = max(worst, float(np.max(np.abs(got - expected))))
    if worst > tolerance:
        out_path.unlink(missing_ok=True)
        raise ValueError(f"ONNX export refused: max abs difference {worst:.3g} exceeds tolerance {tolerance:g}")
    return ConvertResult(out_path, worst, samples)
