"""Discovery: every plugin listed with provenance; broken, invalid, duplicate and blocked ones are reported
by name and never take the registry down; discovery itself never imports torch."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from service.plugins import BACKENDS_GROUP, DEMOS_GROUP, Backend, PluginRegistry, UnknownPlugin, discovery


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


class NotAnInspector:
    def inspect(self, artifact: Any) -> str:  # pragma: no cover
        return "onnx"


class BadInspector(GoodBackend):
    inspector = NotAnInspector()  # type: ignore[assignment]


class BadFormats(GoodBackend):
    formats = ("onnx", 3)  # type: ignore[assignment]


async def demo_ok(services: Any, *, skip_if_present: bool) -> Any:  # pragma: no cover
    """A demo that registers nothing."""


NOT_CALLABLE = 42


def registry_of(monkeypatch: pytest.MonkeyPatch, group: str, **targets: str) -> PluginRegistry:
    """A registry discovering only ``name=target`` entry points of one group (``:attr`` means this module)."""
    points = [EntryPoint(name, __name__ + t if t.startswith(":") else t, group) for name, t in targets.items()]
    fake_entry_points(monkeypatch, points)
    return PluginRegistry()


def test_backend_contract_checked_at_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_of(
        monkeypatch, BACKENDS_GROUP, badinspector=":BadInspector", badformats=":BadFormats", good=":GoodBackend"
    )
    infos = {i.name: i for i in registry.infos()}
    assert "not an ArtifactInspector" in (infos["badinspector"].error or "")
    assert "must be non-empty strings" in (infos["badformats"].error or "")
    assert registry.backend("good").platform == "unknown"  # the default when a backend names none


def test_demos_discovered_like_every_other_group(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_of(
        monkeypatch, DEMOS_GROUP, hello=":demo_ok", number=":NOT_CALLABLE", gone="no_such_demo_xyz:run"
    )
    assert list(registry.demos()) == ["hello"]
    infos = {i.name: i for i in registry.infos() if i.kind == "demo"}
    assert infos["hello"].ok and infos["hello"].description == "A demo that registers nothing."
    assert "not callable" in (infos["number"].error or "")
    assert "import failed" in (infos["gone"].error or "") and "no_such_demo_xyz" in (infos["gone"].error or "")
