"""The plugin verbs through click: ``plugins``, ``demo`` (and its missing-plugin message), ``convert``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import save_file

import service.cli.plugin_cmds  # noqa: F401 - attaches the verbs to the group
import service.cli.registry_cmds  # noqa: F401
from modelport_zoo.architectures import mlp
from service.cli._app import cli


def _invoke(tmp_path: Path, *args: str) -> Result:
    env = {"MODELPORT_DATA_DIR": str(tmp_path / "data"), "MODELPORT_DEVICE": "cpu"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_plugins_table_and_json(tmp_path: Path) -> None:
    table = _invoke(tmp_path, "plugins")
    assert table.exit_code == 0, table.output
    header, rule, *rows = table.output.splitlines()
    assert header.split() == ["kind", "name", "distribution", "version", "status"]
    assert any(row.split()[:5] == ["backend", "onnx", "modelport-onnx", "0.1.0", "ok"] for row in rows), rows
    listed = json.loads(_invoke(tmp_path, "plugins", "--json").output)
    by_name = {(p["kind"], p["name"]): p for p in listed}
    assert {("backend", n) for n in ("onnx", "pytorch", "torchscript", "torch_export")} <= set(by_name)
    assert by_name[("architecture", "cnn")] | {"error": None} == by_name[("architecture", "cnn")]
    assert by_name[("architecture", "mlp")]["distribution"] == "modelport-zoo"
    assert by_name[("backend", "pytorch")]["status"] == "ok"


def test_demo_is_found_through_its_entry_point() -> None:
    from modelport_zoo.entrypoints import digits
    from service.plugins import PluginRegistry

    registry = PluginRegistry()
    assert registry.demos()["digits"] is digits
    info = next(i for i in registry.infos() if (i.kind, i.name) == ("demo", "digits"))
    assert (info.distribution, info.ok) == ("modelport-zoo", True)


def test_demo_without_a_demo_plugin_names_the_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.plugins import DEMOS_GROUP, discovery

    real = discovery.entry_points

    def hide_demos(group: str) -> Any:
        return [] if group == DEMOS_GROUP else real(group=group)

    monkeypatch.setattr(discovery, "entry_points", hide_demos)
    monkeypatch.setattr(discovery, "_default", None)
    result = CliRunner().invoke(cli, ["demo"], env={"MODELPORT_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "no demo is installed" in result.output and "install plugins/modelport-zoo" in result.output


def test_convert_state_dict_to_onnx_with_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "mlp.safetensors"
    save_file({k: v.contiguous() for k, v in mlp(hidden=[32]).state_dict().items()}, str(weights))
    out = tmp_path / "mlp.onnx"
    config = json.dumps({"hidden": [32]})
    result = _invoke(tmp_path, "convert", str(weights), str(out), "--architecture", "mlp", "--config", config)
    assert result.exit_code == 0, result.output
    assert "max abs difference" in result.output and "over 8 random batches" in result.output
    assert out.exists()
    refused = CliRunner().invoke(
        cli,
        ["convert", str(weights), str(tmp_path / "bad.onnx"), "--architecture", "mlp", "--config", config]
        + ["--tolerance", "-1"],
    )
    assert refused.exit_code == 1 and "exceeds tolerance" in refused.output
    assert not (tmp_path / "bad.onnx").exists()
    unknown = CliRunner().invoke(cli, ["convert", str(weights), str(tmp_path / "x.onnx"), "--architecture", "nope"])
    assert unknown.exit_code == 1 and "unknown architecture 'nope'" in unknown.output


def test_a_broken_plugin_is_listed_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint, entry_points

    from service.plugins import discovery

    broken = EntryPoint("broken", "no_such_module_for_modelport:Backend", discovery.BACKENDS_GROUP)
    monkeypatch.setattr(
        discovery,
        "entry_points",
        lambda group: [*entry_points(group=group), *([broken] if group == discovery.BACKENDS_GROUP else [])],
    )
    monkeypatch.setattr(discovery, "_default", None)
    table = _invoke(tmp_path, "plugins")
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if " broken " in line)
    assert "ERROR:" in row and "import failed" in row and "no_such_module_for_modelport" in row
    assert any(
        line.split()[:2] == ["backend", "onnx"] and line.rstrip().endswith("ok") for line in table.output.splitlines()
    )
    listed = {p["name"]: p for p in json.loads(_invoke(tmp_path, "plugins", "--json").output)}
    assert listed["broken"]["status"] == "error" and "ModuleNotFoundError" in listed["broken"]["error"]
