"""Discovery: every plugin listed with provenance; broken, invalid, duplicate and blocked ones are reported
by name and never take the registry down; discovery itself never imports torch."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from service.plugins import BACKENDS_GROUP, Backend, PluginRegistry, UnknownPlugin, discovery


class GoodBackend(Backend):
    formats = ("onnx",)

    def load(self, request: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


class NoFormats(Backend):
    def load(self, request: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, points: list[EntryPoint]) -> None:
    def select(group: str) -> list[EntryPoint]:
        return [p for p in points if p.group == group]

    monkeypatch.setattr(discovery, "entry_points", select)


def test_broken_plugins_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    here = __name__
    fake_entry_points(
        monkeypatch,
        [
            EntryPoint("good", f"{here}:GoodBackend", BACKENDS_GROUP),
            EntryPoint("missing", "no_such_module_xyz:Backend", BACKENDS_GROUP),
            EntryPoint("notabackend", "json:dumps", BACKENDS_GROUP),
            EntryPoint("noformats", f"{here}:NoFormats", BACKENDS_GROUP),
            EntryPoint("blocked", f"{here}:GoodBackend", BACKENDS_GROUP),
        ],
    )
    registry = PluginRegistry(blocked=frozenset({"blocked"}))
    infos = {i.name: i for i in registry.infos()}
    assert infos["good"].ok
    assert "import failed" in (infos["missing"].error or "") and "no_such_module_xyz" in (infos["missing"].error or "")
    assert not infos["notabackend"].ok and not infos["noformats"].ok
    assert "blocked" in (infos["blocked"].error or "")
    assert registry.backend_names() == ["good"]
    with pytest.raises(UnknownPlugin, match="installed but unusable"):
        registry.backend("missing")
    with pytest.raises(UnknownPlugin, match="available: good"):
        registry.backend("nope")


def test_discovery_does_not_import_torch() -> None:
    code = (
        "import sys; from service.plugins import default_registry; r = default_registry(); "
        "assert r.infos(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
