"""The ``pytorch`` backend: weights strictly into an architecture, safe loading, clear refusals."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelport_torch import StateDictBackend
from service.errors import ArtifactRejected
from service.plugins import LoadRequest, TensorSpec
from service.plugins.testing import check_backend


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _safetensors(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_conformance_with_the_architecture_signature(tmp_path: Path, trained: Any, plugins: Any) -> None:
    path = _safetensors(trained, tmp_path / "w.safetensors")
    engine = check_backend(
        StateDictBackend(), path, "safetensors", batches=(1, 5), architecture=plugins.architecture("tiny")
    )
    assert engine.inputs == (TensorSpec("input", "FP32", (-1, 16)),)
    assert engine.outputs == (TensorSpec("logits", "FP32", (-1, 3)),)
    assert engine.platform == "pytorch_state_dict" and engine.device == "cpu"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hidden": 12}, r"shape mismatch \(weights vs architecture\): fc1.weight \[8, 16\] vs \[12, 16\]"),
        ({"extra_layer": True}, r"missing keys: extra.weight, extra.bias"),
        ({"classes": 4}, r"fc2.weight \[3, 8\] vs \[4, 8\]"),
        ({"hidden": "wide"}, r"rejects its config|fails on a zero batch"),
    ],
)
def test_weights_that_do_not_fit_are_refused_naming_why(
    tmp_path: Path, trained: Any, core_load: Callable[..., Any], config: dict[str, Any], message: str
) -> None:
    path = _safetensors(trained, tmp_path / "w.safetensors")
    with pytest.raises(ArtifactRejected, match=message):
        core_load(path, "pytorch", architecture="tiny", config=config)


def test_unexpected_keys_are_named(tmp_path: Path, trained: Any, core_load: Callable[..., Any]) -> None:
    state = {**trained.state_dict(), "head.weight": torch.zeros(2, 2)}
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(ArtifactRejected, match="unexpected keys: head.weight"):
        core_load(path, "pytorch", architecture="tiny")


def test_malicious_torch_save_refused_and_payload_never_runs(
    tmp_path: Path, trained: Any, core_load: Callable[..., Any], plugins: Any
) -> None:
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pt"
    torch.save({**trained.state_dict(), "x": Payload(marker)}, zipped)  # a genuine torch zip carrying a payload
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"fc1.weight": Payload(marker)}, protocol=2))
    for path in (zipped, raw):
        with pytest.raises(ArtifactRejected, match=r"refused: the pickle references '(posix|os)\.system'"):
            core_load(path, "pytorch", architecture="tiny")
    # the backend on its own (no core guard in front) refuses too: it re-scans before torch.load
    for path, fmt in ((zipped, "torch_pickle_zip"), (raw, "pickle")):
        with pytest.raises(ArtifactRejected, match="refused"):
            StateDictBackend().load(
                LoadRequest(artifact_path=path, artifact_format=fmt, architecture=plugins.architecture("tiny"))
            )
    assert not marker.exists()


def test_checkpoint_wrapper_unwrapped_and_non_tensors_refused(
    tmp_path: Path, trained: Any, core_load: Callable[..., Any]
) -> None:
    wrapped = tmp_path / "ckpt.pt"
    torch.save({"state_dict": trained.state_dict()}, wrapped)
    engine = core_load(wrapped, "pytorch", architecture="tiny").engine
    assert engine.predict({"input": np.zeros((2, 16), np.float32)})["logits"].shape == (2, 3)
    extra = tmp_path / "extra.pt"
    torch.save({**trained.state_dict(), "epoch": 3}, extra)
    with pytest.raises(ArtifactRejected, match="non-tensor values under: epoch"):
        core_load(extra, "pytorch", architecture="tiny")


def test_signature_declared_checked_or_required(tmp_path: Path, trained: Any, plugins: Any) -> None:
    path = _safetensors(trained, tmp_path / "w.safetensors")

    def bare(**config: Any) -> torch.nn.Module:  # an architecture that does not describe its tensors
        module = plugins.architecture("tiny")(**config)
        del module.input_spec, module.output_spec
        return module

    request = {"artifact_path": path, "artifact_format": "safetensors", "architecture": bare}
    with pytest.raises(ValueError, match="declare signature.inputs"):
        StateDictBackend().load(LoadRequest(**request))
    declared = (TensorSpec("pixels", "FP32", (-1, 16)),)
    engine = StateDictBackend().load(LoadRequest(**request, declared_inputs=declared))
    assert engine.inputs == declared and engine.outputs == (TensorSpec("output", "FP32", (-1, 3)),)
    wrong = (TensorSpec("logits", "INT64", (-1, 3)),)
    with pytest.raises(ValueError, match="output 'logits' is FP32 but the signature declares INT64"):
        StateDictBackend().load(LoadRequest(**request, declared_inputs=declared, declared_outputs=wrong))
    with pytest.raises(ValueError, match="fails on a zero batch"):
        StateDictBackend().load(LoadRequest(**request, declared_inputs=(TensorSpec("x", "FP32", (-1, 15)),)))


def test_fp16_is_ignored_on_cpu(tmp_path: Path, trained: Any, plugins: Any) -> None:
    path = _safetensors(trained, tmp_path / "w.safetensors")
    engine = StateDictBackend().load(
        LoadRequest(
            artifact_path=path,
            artifact_format="safetensors",
            device="cpu",
            use_fp16=True,
            architecture=plugins.architecture("tiny"),
        )
    )
    out = engine.predict({"input": np.ones((2, 16), np.float32)})["logits"]
    assert out.dtype == np.float32 and engine.device == "cpu"
