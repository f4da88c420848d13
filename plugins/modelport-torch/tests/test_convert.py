"""PyTorch -> ONNX: dynamic batch, single file, parity measured and enforced; sources loaded safely."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelport_onnx import OnnxBackend
from modelport_torch.convert import ParityError, convert_to_onnx, load_module
from service.plugins.testing import check_backend


def test_eager_module_exported_with_parity_and_a_dynamic_batch(tmp_path: Path, trained: Any) -> None:
    out = tmp_path / "m.onnx"
    result = convert_to_onnx(trained, np.zeros((1, 16), np.float32), out, samples=8)
    print(f"\nconvert: {result.exporter} exporter, {result.seconds:.2f} s, max abs diff {result.max_abs_diff:.2e}")
    assert result.exporter == "dynamo" and result.samples == 8
    assert 0 <= result.max_abs_diff <= 1e-4
    engine = check_backend(OnnxBackend(), out, "onnx", batches=(1, 7))  # the guard accepts it: one self-contained file
    assert engine.inputs[0].name == "input" and engine.inputs[0].shape == (-1, 16)
    assert engine.outputs[0].name == "logits"


def test_torchscript_source_uses_the_torchscript_exporter(tmp_path: Path, trained: Any) -> None:
    source = tmp_path / "m.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(trained), str(source))
    module = load_module(source)
    result = convert_to_onnx(module, np.zeros((2, 16), np.float32), tmp_path / "m.onnx")
    assert result.exporter == "torchscript" and result.max_abs_diff <= 1e-4


def test_parity_above_tolerance_refused_and_file_removed(tmp_path: Path, trained: Any) -> None:
    out = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match="exceeds tolerance"):
        convert_to_onnx(trained, np.zeros((1, 16), np.float32), out, tolerance=-1.0, samples=2)
    assert not out.exists()


def test_state_dict_sources_need_their_architecture_and_are_scanned(tmp_path: Path, trained: Any, plugins: Any) -> None:
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(weights))
    with pytest.raises(ValueError, match="--architecture"):
        load_module(weights)
    module = load_module(weights, architecture=plugins.architecture("tiny"), config={"hidden": 8})
    x = torch.rand(3, 16)
    with torch.inference_mode():
        torch.testing.assert_close(module(x), trained(x))
    with pytest.raises(ValueError, match="cannot load the weights"):
        load_module(weights, architecture=plugins.architecture("tiny"), config={"hidden": 9})
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"fc1.weight": Payload()}, evil)
    with pytest.raises(ValueError, match="refused"):
        load_module(evil, architecture=plugins.architecture("tiny"))
    assert not marker.exists()
    png = tmp_path / "m.pt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ValueError, match="looks like a PNG image"):
        load_module(png)
