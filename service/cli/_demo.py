"""Which demo ``modelport demo`` and ``serve --demo`` run: one found under ``modelport.demos``, never an import.

The core knows no demo: the zoo (or any distribution) declares one as an entry point, and a broken one is
reported by name, as every other plugin is.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from service.plugins import DEMOS_GROUP, Demo, DemoReport, PluginRegistry

if TYPE_CHECKING:
    from service.context import Services

__all__ = ("ChosenDemo", "choose_demo")

_INSTALL = "pip install -e plugins/modelport-onnx -e plugins/modelport-torch -e plugins/modelport-zoo"


_TICK_S = 10.0
"""How often a demo that is still running says so (stderr), so that a minute of training is never silent."""


@dataclass(frozen=True, slots=True)
class ChosenDemo:
    """An installed demo with the name and description its entry point gave, run with progress on stderr."""

    name: str
    description: str
    run: Demo

    async def run_with_progress(self, services: Services, *, skip_if_present: bool) -> DemoReport:
        """Run the demo, saying on stderr that it started (what it does), that it is still running every
        ``_TICK_S`` s (a spinner with the elapsed time on a terminal), and how long it took. Its report lines
        (the zoo's: held-out accuracy per version, routing) are the caller's to print."""
        started = time.perf_counter()
        what = self.description.replace("``", "'") or "running"
        click.echo(f"demo '{self.name}': {what}", err=True)
        with _still_running(self.name, started):
            report = await self.run(services, skip_if_present=skip_if_present)
        if report.skipped:
            click.echo(f"demo '{self.name}': already registered, nothing to do", err=True)
        else:
            click.echo(f"demo '{self.name}': done in {time.perf_counter() - started:.1f} s", err=True)
        return report


@contextlib.contextmanager
def _still_running(name: str, started: float) -> Iterator[None]:
    """A rich spinner with the elapsed time while stderr is a terminal; else a plain line every ``_TICK_S`` s."""
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(f"demo '{name}': training…"):
            yield
        return

    async def tick() -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            click.echo(f"demo '{name}': still running ({time.perf_counter() - started:.0f} s)", err=True)

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()


def choose_demo(plugins: PluginRegistry, name: str | None = None) -> ChosenDemo:
    """The demo called ``name``, or the only one installed; a ClickException says why there is none.

    Raises:
        click.ClickException: no demo installed (naming the distribution that ships one), the demo is
            installed but broken (its entry point and error), or several are installed and none was named.
    """
    demos = plugins.demos()
    infos = {i.name: i for i in plugins.infos() if i.kind == "demo"}
    broken = {n: i for n, i in infos.items() if not i.ok}

    def chosen(found: str) -> ChosenDemo:
        return ChosenDemo(found, infos[found].description if found in infos else "", demos[found])

    if name is not None and name in demos:
        return chosen(name)
    if name is not None and name in broken:
        raise click.ClickException(f"demo '{name}' is installed but unusable: {broken[name].error}")
    if name is not None:
        raise click.ClickException(f"unknown demo '{name}' (available: {', '.join(demos) or 'none installed'})")
    if len(demos) == 1:
        return chosen(next(iter(demos)))
    if demos:
        raise click.ClickException(f"several demos are installed ({', '.join(demos)}): name one")
    if broken:
        problems = "; ".join(str(info.error) for info in broken.values())
        raise click.ClickException(f"the installed demo is unusable: {problems}")
    raise click.ClickException(
        f"no demo is installed (entry-point group {DEMOS_GROUP}): the modelport-zoo plugin ships one; install "
        f"plugins/modelport-zoo ({_INSTALL})"
    )
