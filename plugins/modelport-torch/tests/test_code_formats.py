"""``torchscript`` and ``torch_export``: signatures, conformance, and the refusals around code-carrying files."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from modelport_torch import TorchExportBackend, TorchScriptBackend
from service.errors import ArtifactRejected
from service.plugins import LoadRequest, TensorSpec
from service.plugins.testing import check_backend

INPUT = (TensorSpec("input", "FP32", (-1, 16)),)


def _script(module: nn.Module, path: Path, *, trace: bool = False) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled = torch.jit.trace(module, torch.zeros(2, 16)) if trace else torch.jit.script(module)
        torch.jit.save(compiled, str(path))
    return path


def _export(module: nn.Module, path: Path, *, dynamic: bool = True) -> Path:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(module, (torch.zeros(4, 16),), dynamic_shapes=shapes), str(path))
    return path


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, h.argmax(dim=1)


# ------------------------------------------------------------------------------------------- torchscript


@pytest.mark.parametrize("trace", [False, True])
def test_torchscript_conformance_and_inferred_outputs(tmp_path: Path, trained: Any, trace: bool) -> None:
    path = _script(trained, tmp_path / "m.ts", trace=trace)
    engine = check_backend(TorchScriptBackend(), path, "torchscript", batches=(1, 5), declared_inputs=INPUT)
    assert engine.outputs == (TensorSpec("output", "FP32", (-1, 3)),)
    assert engine.platform == "pytorch_torchscript"
    x = np.random.default_rng(0).random((5, 16), dtype=np.float32)
    with torch.inference_mode():
        expected = trained(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(engine.predict({"input": x})["output"], expected, rtol=1e-5, atol=1e-5)


def test_torchscript_tuple_outputs_named_in_order(tmp_path: Path) -> None:
    path = _script(TwoHeads().eval(), tmp_path / "two.ts")
    engine = TorchScriptBackend().load(
        LoadRequest(artifact_path=path, artifact_format="torchscript", device="cpu", declared_inputs=INPUT)
    )
    assert engine.outputs == (TensorSpec("output_0", "FP32", (-1, 4)), TensorSpec("output_1", "INT64", (-1,)))
    out = engine.predict({"input": np.ones((3, 16), np.float32)})
    assert out["output_0"].shape == (3, 4) and out["output_1"].dtype == np.int64


def test_torchscript_needs_declared_inputs_and_an_admin(
    tmp_path: Path, trained: Any, core_load: Callable[..., Any]
) -> None:
    path = _script(trained, tmp_path / "m.ts")
    with pytest.raises(ArtifactRejected, match="declare signature.inputs"):
        core_load(path, "torchscript")
    signature = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}]}
    with pytest.raises(ArtifactRejected, match="only admin keys"):
        core_load(path, "torchscript", signature=signature, admin=False)
    assert core_load(path, "torchscript", signature=signature).engine.inputs == INPUT


def test_png_and_truncated_files_refused(tmp_path: Path, trained: Any, core_load: Callable[..., Any]) -> None:
    png = tmp_path / "model.pt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    with pytest.raises(ArtifactRejected, match="looks like a PNG image"):
        core_load(png, "torchscript", signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]})
    whole = _script(trained, tmp_path / "m.ts").read_bytes()
    truncated = tmp_path / "truncated.ts"
    truncated.write_bytes(whole[: len(whole) - 200])
    with pytest.raises(ArtifactRejected, match="damaged or truncated zip"):
        core_load(
            truncated, "torchscript", signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]}
        )
    state = tmp_path / "w.pt"
    torch.save(trained.state_dict(), state)
    with pytest.raises(ArtifactRejected, match="backend 'torchscript' cannot load a torch_pickle_zip artifact"):
        core_load(state, "torchscript")


# ------------------------------------------------------------------------------------------ torch_export


def test_export_signature_comes_from_the_program(tmp_path: Path, trained: Any) -> None:
    path = _export(trained, tmp_path / "m.pt2")
    engine = check_backend(TorchExportBackend(), path, "torch_export", batches=(1, 5))
    assert engine.inputs == (TensorSpec("x", "FP32", (-1, 16)),)  # the forward() parameter's name
    assert engine.outputs == (TensorSpec("output", "FP32", (-1, 3)),)
    assert engine.platform == "pytorch_export"


def test_export_with_a_static_batch_reports_it(tmp_path: Path, trained: Any) -> None:
    path = _export(trained, tmp_path / "static.pt2", dynamic=False)
    engine = check_backend(TorchExportBackend(), path, "torch_export")
    assert engine.inputs == (TensorSpec("x", "FP32", (4, 16)),)
    assert engine.outputs[0].shape == (4, 3)


def test_export_declared_inputs_rename_or_are_refused(tmp_path: Path, trained: Any) -> None:
    path = _export(trained, tmp_path / "m.pt2")
    request = {"artifact_path": path, "artifact_format": "torch_export", "device": "cpu"}
    engine = TorchExportBackend().load(LoadRequest(**request, declared_inputs=INPUT))
    assert engine.inputs == INPUT
    with pytest.raises(ValueError, match="does not match the program's 'x'"):
        TorchExportBackend().load(LoadRequest(**request, declared_inputs=(TensorSpec("input", "FP32", (-1, 15)),)))
    with pytest.raises(ValueError, match="declares 2 inputs but the program takes 1"):
        TorchExportBackend().load(LoadRequest(**request, declared_inputs=INPUT * 2))


def test_export_needs_an_admin(tmp_path: Path, trained: Any, core_load: Callable[..., Any]) -> None:
    path = _export(trained, tmp_path / "m.pt2")
    with pytest.raises(ArtifactRejected, match="only admin keys"):
        core_load(path, "torch_export", admin=False)
