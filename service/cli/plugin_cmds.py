"""Plugin verbs: ``plugins`` (what is installed), ``demo`` (train + register digits), ``convert`` (-> ONNX).

Plugin packages are imported inside the commands only: the core never imports them at import time.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

import click

from service.cli._app import cli
from service.settings import Settings

__all__ = ()

_INSTALL_ZOO = "pip install -e plugins/modelport-torch -e plugins/modelport-zoo"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List backends and architectures found through entry points, broken ones with their error."""
    from service.plugins import default_registry

    infos = default_registry().infos()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    from service.cli.registry_cmds import _table

    _table(
        ("kind", "name", "distribution", "version", "status"),
        [(i.kind, i.name, i.distribution, i.version, "ok" if i.ok else f"ERROR: {i.error}") for i in infos],
    )


@cli.command()
def demo() -> None:
    """Train two digit classifiers on scikit-learn's digits and register them as model 'digits'."""
    try:
        from modelport_zoo.demo import run_demo
    except ImportError as exc:
        raise click.ClickException(f"the demo needs the zoo plugin ({exc}): {_INSTALL_ZOO}") from None
    from service.context import Services

    async def main() -> object:
        settings = Settings()
        services = await Services.open(settings, migrate=settings.resolved_database_url.startswith("sqlite"))
        try:
            return await run_demo(services, skip_if_present=True)
        finally:
            await services.close()

    result = asyncio.run(main())
    if getattr(result, "skipped", False):
        click.echo("model 'digits' already registered: nothing to do")
        return
    for version, accuracy in result.accuracy.items():  # type: ignore[attr-defined]
        click.echo(f"digits version {version}: held-out accuracy {accuracy:.3f}")
    click.echo(f"production -> 1, split 1=90 2=10 ({result.seconds:.1f} s)")  # type: ignore[attr-defined]


@cli.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--architecture", default=None, help="Architecture entry point for a state_dict source.")
@click.option("--config", default=None, help="Architecture config JSON.")
@click.option("--input-shape", default="1,784", show_default=True, help="Example input shape, batch first.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True, help="Max abs difference allowed.")
def convert(
    source: Path, out: Path, architecture: str | None, config: str | None, input_shape: str, tolerance: float
) -> None:
    """Convert a PyTorch model (TorchScript, or state_dict + architecture) to ONNX, checking parity."""
    try:
        import numpy as np

        from modelport_torch.convert import convert_to_onnx, load_module
    except ImportError as exc:
        raise click.ClickException(f"convert needs the torch plugin ({exc}): {_INSTALL_ZOO}") from None
    from service.plugins import UnknownPlugin, default_registry

    try:
        factory = default_registry().architecture(architecture) if architecture else None
        module = load_module(source, architecture=factory, config=json.loads(config) if config else None)
        shape = tuple(int(d) for d in input_shape.split(","))
        result = convert_to_onnx(module, np.zeros(shape, dtype=np.float32), out, tolerance=tolerance)
    except (UnknownPlugin, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote {result.path}: max abs difference {result.max_abs_diff:.3g} over {result.samples} batches "
        f"(tolerance {tolerance:g})"
    )
