"""Which demo ``modelport demo`` / ``serve --demo`` run: found through ``modelport.demos``, never imported by name."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import click
import pytest

from service.cli._demo import choose_demo
from service.plugins import DEMOS_GROUP, PluginRegistry, discovery


async def first(services: Any, *, skip_if_present: bool) -> Any:  # pragma: no cover
    """First demo."""


async def second(services: Any, *, skip_if_present: bool) -> Any:  # pragma: no cover
    """Second demo."""


def _registry(monkeypatch: pytest.MonkeyPatch, *points: tuple[str, str]) -> PluginRegistry:
    eps = [EntryPoint(name, value, DEMOS_GROUP) for name, value in points]
    monkeypatch.setattr(discovery, "entry_points", lambda group: [p for p in eps if p.group == group])
    return PluginRegistry()


def test_the_only_demo_is_chosen_or_the_named_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_demo(_registry(monkeypatch, ("a", f"{__name__}:first"))) is first
    several = _registry(monkeypatch, ("a", f"{__name__}:first"), ("b", f"{__name__}:second"))
    assert choose_demo(several, "b") is second
    with pytest.raises(click.ClickException, match=r"several demos are installed \(a, b\): name one"):
        choose_demo(several)
    with pytest.raises(click.ClickException, match=r"unknown demo 'c' \(available: a, b\)"):
        choose_demo(several, "c")


def test_no_demo_names_the_distribution_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(click.ClickException, match="no demo is installed .*install plugins/modelport-zoo"):
        choose_demo(_registry(monkeypatch))


def test_a_broken_demo_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _registry(monkeypatch, ("digits", "no_such_zoo_xyz:digits"))
    with pytest.raises(click.ClickException, match="unusable: demo 'digits' .*import failed.*no_such_zoo_xyz"):
        choose_demo(broken)
    with pytest.raises(click.ClickException, match="demo 'digits' is installed but unusable"):
        choose_demo(broken, "digits")
