"""The same trained weights give the same predictions through onnx, torchscript, torch_export and pytorch.

Every artifact goes through the core's loader (sha256, guard, load, warm-up); load times and parity figures
are printed (``pytest -s``) for the operator's note.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from modelport_torch.convert import convert_to_onnx
from service.plugins.testing import check_engine

SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
}
TINY = {"architecture": "tiny", "config": {"hidden": 8, "classes": 3}}


def _artifacts(model: torch.nn.Module, folder: Path, example: np.ndarray) -> dict[str, tuple[Path, str, dict]]:
    """One file per (format, backend) pair, all holding ``model``'s weights."""
    onnx_path = folder / "m.onnx"
    convert_to_onnx(model, example, onnx_path)
    script = folder / "m.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(script))
    program = folder / "m.pt2"
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (torch.from_numpy(example),), dynamic_shapes=({0: batch},))
    torch.export.save(exported, str(program))
    tensors = folder / "m.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tensors))
    zipped, legacy = folder / "m.pt", folder / "m_legacy.pt"
    torch.save(model.state_dict(), zipped)
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    return {
        "onnx": (onnx_path, "onnx", {}),
        "torchscript": (script, "torchscript", {"signature": SIGNATURE}),
        "torch_export": (program, "torch_export", {}),
        "pytorch (safetensors)": (tensors, "pytorch", TINY),
        "pytorch (torch.save zip)": (zipped, "pytorch", TINY),
        "pytorch (legacy torch.save)": (legacy, "pytorch", TINY),
    }


def test_same_weights_same_predictions_through_all_four_backends(
    tmp_path: Path, trained: torch.nn.Module, core_load: Callable[..., Any]
) -> None:
    rng = np.random.default_rng(3)
    batches = {size: rng.standard_normal((size, 16)).astype(np.float32) for size in (1, 5)}
    with torch.inference_mode():
        reference = {size: trained(torch.from_numpy(x)).numpy() for size, x in batches.items()}
    report = []
    for label, (path, backend, extra) in _artifacts(trained, tmp_path, batches[5]).items():
        loaded = core_load(path, backend, **extra)
        engine = loaded.engine
        check_engine(engine, batches=(1, 5))
        worst = 0.0
        for size, x in batches.items():
            (out,) = engine.predict({engine.inputs[0].name: x}).values()
            assert out.shape == (size, 3)
            worst = max(worst, float(np.abs(out - reference[size]).max()))
        report.append(
            f"{label:28s} load {1000 * loaded.load_seconds:6.1f} ms  warm-up {1000 * loaded.warmup_seconds:5.1f} ms  "
            f"max |diff| vs eager {worst:.1e}"
        )
        assert worst < 1e-4, f"{label}: {worst}"
        engine.close()
    print("\n" + "\n".join(report))
