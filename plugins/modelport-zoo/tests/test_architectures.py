"""The zoo's architectures build from JSON-style configs, describe their tensors, and export cleanly."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from modelport_zoo.architectures import cnn, mlp
from service.plugins import PluginRegistry, TensorSpec


@pytest.mark.parametrize(
    ("factory", "config", "features", "classes"),
    [
        (mlp, {}, 784, 10),
        (mlp, {"input_dim": 20, "hidden": [16, 8], "num_classes": 3, "dropout": 0.1}, 20, 3),
        (mlp, {"input_dim": 5, "hidden": [], "num_classes": 2}, 5, 2),
        (cnn, {}, 784, 10),
        (cnn, {"channels": [4, 8], "num_classes": 5, "side": 16, "dropout": 0.2}, 256, 5),
    ],
)
def test_shapes_specs_and_torchscript(
    factory: Callable[..., Any], config: dict[str, Any], features: int, classes: int
) -> None:
    module = factory(**config).eval()
    with torch.inference_mode():
        assert module(torch.zeros(3, features)).shape == (3, classes)
    assert module.input_spec == TensorSpec("input", "FP32", (-1, features))
    assert module.output_spec == TensorSpec("logits", "FP32", (-1, classes))
    assert "input_spec" not in module.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert torch.jit.script(module)(torch.zeros(1, features)).shape == (1, classes)


def test_defaults_match_the_documentation() -> None:
    model = mlp()
    assert [layer.out_features for layer in model.net if isinstance(layer, torch.nn.Linear)] == [256, 10]
    assert sum(p.numel() for p in cnn().parameters()) < 30_000


@pytest.mark.parametrize(
    ("factory", "config", "message"),
    [
        (mlp, {"num_classes": 1}, "num_classes"),
        (mlp, {"hidden": [0]}, "hidden must be positive"),
        (mlp, {"hidden": "256"}, "list of integers"),
        (mlp, {"dropout": 1.0}, "dropout"),
        (cnn, {"side": 30}, "multiple of 4"),
        (cnn, {"channels": [8]}, "two sizes"),
        (mlp, {"input_dim": 784, "depth": 3}, "unexpected keyword"),
    ],
)
def test_bad_configs_refused_with_the_reason(factory: Callable[..., Any], config: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        factory(**config)


def test_registered_as_entry_points_without_importing_torch() -> None:
    registry = PluginRegistry()
    infos = {i.name: i for i in registry.infos() if i.kind == "architecture"}
    assert infos["mlp"].ok and infos["cnn"].ok and infos["mlp"].distribution == "modelport-zoo"
    assert registry.architecture("cnn")(channels=[2, 4]).input_spec.shape == (-1, 784)
    probe = "import sys, modelport_zoo; from service.plugins import PluginRegistry; PluginRegistry().infos(); "
    probe += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
