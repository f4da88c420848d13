"""Which demo ``modelport demo`` / ``serve --demo`` run: found through ``modelport.demos``, never imported by name."""

from __future__ import annotations

import re
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
    assert choose_demo(_registry(monkeypatch, ("a", f"{__name__}:first"))).run is first
    several = _registry(monkeypatch, ("a", f"{__name__}:first"), ("b", f"{__name__}:second"))
    assert choose_demo(several, "b").run is second
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


async def test_a_running_demo_says_what_it_does_while_it_runs_and_how_long_it_took(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from service.cli import _demo
    from service.plugins import DemoReport

    async def slow(services: Any, *, skip_if_present: bool) -> DemoReport:
        await asyncio.sleep(0.25)
        return DemoReport(lines=("digits version 1: held-out accuracy 0.970",))

    monkeypatch.setattr(_demo, "_TICK_S", 0.05)
    chosen = _demo.ChosenDemo("digits", "Train ``two`` models.", slow)
    report = await chosen.run_with_progress(None, skip_if_present=True)  # type: ignore[arg-type]
    assert report.lines == ("digits version 1: held-out accuracy 0.970",)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "demo 'digits': Train 'two' models."
    assert any(line.startswith("demo 'digits': still running (") for line in err[1:-1])
    assert re.fullmatch(r"demo 'digits': done in \d+\.\d s", err[-1])
