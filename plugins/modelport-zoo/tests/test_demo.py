"""``modelport demo`` on a fresh data dir trains on real digits, registers both versions with measured cards,
routes them, and both serve with the accuracy their cards state. One demo run serves every assertion."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import service.cli.plugin_cmds  # noqa: F401 - attaches the verbs to the group
from modelport_zoo.demo import load_digits_784, run_demo
from service.cli._app import cli
from service.context import Services
from service.inference.loader import load_engine
from service.settings import Settings


def test_data_is_mnist_shaped_and_split_deterministically() -> None:
    x_train, x_test, y_train, y_test = load_digits_784()
    assert x_train.shape == (1437, 784) and x_test.shape == (360, 784)
    assert x_train.dtype == np.float32 and x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))
    again = load_digits_784()
    np.testing.assert_array_equal(again[1], x_test)


def test_demo_registers_digits_and_both_versions_serve(tmp_path: Path) -> None:
    env = {"MODELPORT_DATA_DIR": str(tmp_path), "MODELPORT_DEVICE": "cpu"}
    cli_run = CliRunner().invoke(cli, ["demo"], env=env, catch_exceptions=False)
    assert cli_run.exit_code == 0, cli_run.output
    print("\n" + cli_run.output.strip())
    printed = dict(re.findall(r"digits version (\d+): held-out accuracy ([0-9.]+)", cli_run.output))
    assert printed.keys() == {"1", "2"}
    assert "production -> 1; split 1=90 2=10" in cli_run.output
    again = CliRunner().invoke(cli, ["demo"], env=env, catch_exceptions=False)
    assert again.exit_code == 0 and "nothing to do" in again.output
    asyncio.run(_check_registered(tmp_path, printed))


async def _check_registered(tmp_path: Path, printed: dict[str, str]) -> None:
    services = await Services.open(Settings(data_dir=tmp_path, device="cpu"), migrate=True)
    try:
        versions = await services.registry.catalog.list_versions("digits")
        assert [(v.version, v.backend, v.architecture) for v in versions] == [
            ("1", "onnx", "mlp"),
            ("2", "pytorch", "cnn"),
        ]
        assert versions[0].card["export"]["parity_max_abs_diff"] <= 1e-4
        _, x_test, _, y_test = load_digits_784()
        for version in versions:
            card = version.card
            assert card["eval_metrics"]["accuracy"] > 0.9
            assert abs(card["eval_metrics"]["accuracy"] - float(printed[version.version])) < 1e-3
            for key in ("architecture", "training_data", "intended_use", "limitations"):
                assert card[key], key
            assert version.postprocessing == {"type": "classification", "labels": [str(i) for i in range(10)]}
            assert version.signature["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]
            assert version.signature["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
            # served from the store, through the guard: the served accuracy is the card's
            engine = load_engine(
                settings=services.settings,
                store=services.store,
                plugins=services.plugins,
                sha256=version.sha256,
                backend_name=version.backend,
                architecture=version.architecture,
                architecture_config=version.architecture_config,
                signature=version.signature,
                trusted=False,  # neither version needs an admin to load: no code-carrying format
            ).engine
            served = float((engine.predict({"input": x_test})["logits"].argmax(1) == y_test).mean())
            assert abs(served - card["eval_metrics"]["accuracy"]) < 1e-3
            engine.close()
        routing = (await services.registry.routing.routing_snapshot()).models["digits"]
        assert routing.aliases == {"production": "1"}
        assert [(e.version, e.weight) for e in routing.splits] == [("1", 90), ("2", 10)]
        assert (await run_demo(services)).skipped
        assert len(await services.registry.catalog.list_versions("digits")) == 2
    finally:
        await services.close()
