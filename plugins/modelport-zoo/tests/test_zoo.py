"""Architectures build from configs; the demo trains on real digits and registers both versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelport_zoo.architectures import cnn, mlp
from modelport_zoo.demo import run_demo
from service.context import Services
from service.plugins import default_registry
from service.settings import Settings


@pytest.mark.parametrize(
    ("factory", "config", "inputs", "outputs"),
    [
        (mlp, {}, 784, 10),
        (mlp, {"input_dim": 20, "hidden": [16, 8], "num_classes": 3, "dropout": 0.1}, 20, 3),
        (cnn, {}, 784, 10),
        (cnn, {"channels": [4, 8], "num_classes": 5, "side": 16}, 256, 5),
    ],
)
def test_architectures_shapes_and_specs(factory, config, inputs, outputs) -> None:  # type: ignore[no-untyped-def]
    module = factory(**config).eval()
    with torch.inference_mode():
        assert module(torch.zeros(3, inputs)).shape == (3, outputs)
    assert module.input_spec.shape == (-1, inputs) and module.output_spec.shape == (-1, outputs)
    assert torch.jit.script(module)(torch.zeros(1, inputs)).shape == (1, outputs)


def test_bad_configs_refused() -> None:
    with pytest.raises(ValueError):
        mlp(num_classes=1)
    with pytest.raises(ValueError):
        cnn(side=30)


def test_entry_points_registered() -> None:
    assert {"mlp", "cnn"} <= set(default_registry().architecture_names())


async def test_demo_registers_digits_with_cards(tmp_path: Path) -> None:
    services = await Services.open(Settings(data_dir=tmp_path), migrate=True)
    try:
        result = await run_demo(services)
        print(f"\ndemo: {result.seconds:.1f} s, accuracy {result.accuracy}")
        assert result.versions == ["1", "2"] and result.seconds < 60
        versions = await services.registry.list_versions("digits")
        assert [v.backend for v in versions] == ["onnx", "torchscript"]
        for version in versions:
            card = version.card
            assert card["eval_metrics"]["accuracy"] > 0.9
            for key in ("architecture", "training_data", "intended_use", "limitations"):
                assert card[key]
        snapshot = await services.registry.routing_snapshot()
        routing = snapshot.models["digits"]
        assert routing.aliases == {"production": "1"}
        assert [(e.version, e.weight) for e in routing.splits] == [("1", 90), ("2", 10)]
        assert (await run_demo(services)).skipped
    finally:
        await services.close()
