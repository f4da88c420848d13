"""Which demo ``modelport demo`` and ``serve --demo`` run: one found under ``modelport.demos``, never an import.

The core knows no demo: the zoo (or any distribution) declares one as an entry point, and a broken one is
reported by name, as every other plugin is.
"""

from __future__ import annotations

import click

from service.plugins import DEMOS_GROUP, Demo, PluginRegistry

__all__ = ("choose_demo",)

_INSTALL = "pip install -e plugins/modelport-onnx -e plugins/modelport-torch -e plugins/modelport-zoo"


def choose_demo(plugins: PluginRegistry, name: str | None = None) -> Demo:
    """The demo called ``name``, or the only one installed; a ClickException says why there is none.

    Raises:
        click.ClickException: no demo installed (naming the distribution that ships one), the demo is
            installed but broken (its entry point and error), or several are installed and none was named.
    """
    demos = plugins.demos()
    broken = {i.name: i for i in plugins.infos() if i.kind == "demo" and not i.ok}
    if name is not None and name in demos:
        return demos[name]
    if name is not None and name in broken:
        raise click.ClickException(f"demo '{name}' is installed but unusable: {broken[name].error}")
    if name is not None:
        raise click.ClickException(f"unknown demo '{name}' (available: {', '.join(demos) or 'none installed'})")
    if len(demos) == 1:
        return next(iter(demos.values()))
    if demos:
        raise click.ClickException(f"several demos are installed ({', '.join(demos)}): name one")
    if broken:
        problems = "; ".join(str(info.error) for info in broken.values())
        raise click.ClickException(f"the installed demo is unusable: {problems}")
    raise click.ClickException(
        f"no demo is installed (entry-point group {DEMOS_GROUP}): the modelport-zoo plugin ships one; install "
        f"plugins/modelport-zoo ({_INSTALL})"
    )
