"""Plugin verbs: ``plugins`` (what is installed), ``demo`` (an installed demo), ``convert`` (-> ONNX).

The demo is found through its entry point; ``convert``'s plugin module is imported inside the command only,
through importlib: the core never imports a plugin at import time, and a missing plugin is one line naming
the distribution to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from service.cli._app import cli

__all__ = ("convert", "demo", "plugins")

_INSTALL = {"modelport_torch": "pip install -e plugins/modelport-onnx -e plugins/modelport-torch"}
_DISTRIBUTION = {"modelport_torch": "modelport-torch"}


def _plugin_module(module: str, purpose: str) -> ModuleType:
    """Import ``module`` of a plugin distribution, or fail with the exact install line."""
    package = module.split(".", 1)[0]
    if importlib.util.find_spec(package) is None:
        raise click.ClickException(
            f"{purpose} needs the {_DISTRIBUTION[package]} plugin, which is not installed: install "
            f"plugins/{_DISTRIBUTION[package]} ({_INSTALL[package]})"
        )
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise click.ClickException(
            f"{purpose}: {_DISTRIBUTION[package]} is installed but cannot be imported ({exc}); reinstall it "
            f"({_INSTALL[package]})"
        ) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List backends and architectures found through entry points, broken ones with their error."""
    from service.cli.registry_cmds import _table
    from service.plugins import default_registry

    infos = default_registry().infos()
    if as_json:
        rows = [
            {
                "kind": i.kind,
                "name": i.name,
                "entry_point": i.value,
                "distribution": i.distribution,
                "version": i.version,
                "status": "ok" if i.ok else "error",
                "error": i.error,
                "description": i.description,
            }
            for i in infos
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not infos:
        click.echo("no plugins installed: pip install -e plugins/modelport-onnx (see docs/plugins.md)")
        return
    _table(
        ("kind", "name", "distribution", "version", "status"),
        [(i.kind, i.name, i.distribution, i.version, "ok" if i.ok else f"ERROR: {i.error}") for i in infos],
    )


@cli.command()
@click.argument("name", required=False)
@click.option("--force", is_flag=True, help="Register new versions even if the demo's models already have some.")
def demo(name: str | None, force: bool) -> None:
    """Run a demo found under the modelport.demos entry points (the zoo's 'digits': an MLP and a CNN trained
    on scikit-learn's digits, v1 'production', unversioned traffic split 90/10).

    NAME picks one when several are installed.
    """
    from service.cli._demo import choose_demo
    from service.cli.registry_cmds import _run
    from service.plugins import default_registry

    demo = choose_demo(default_registry(), name)

    async def work(services: Any) -> Any:
        return await demo.run_with_progress(services, skip_if_present=not force)

    report = _run(work, with_plugins=True)
    for line in report.lines:
        click.echo(line)


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers, got {text!r}", param_hint="--input-shape"
        ) from None
    if not shape or any(d <= 0 for d in shape):
        raise click.BadParameter("dimensions must be positive, batch first (e.g. 1,784)", param_hint="--input-shape")
    return shape


@cli.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.option("--architecture", default=None, help="Architecture (modelport.architectures) for a state_dict source.")
@click.option("--config", "config_json", default=None, help="Architecture config as a JSON object.")
@click.option(
    "--input-shape",
    default=None,
    help="Example input shape, batch first (default: the architecture's input_spec, e.g. 1,784).",
)
@click.option("--tolerance", type=float, default=1e-4, show_default=True, help="Largest abs difference allowed.")
@click.option("--samples", type=click.IntRange(1, 1000), default=8, show_default=True, help="Random batches compared.")
@click.option("--input-name", default="input", show_default=True)
@click.option("--output-name", default="logits", show_default=True)
def convert(
    source: Path,
    out: Path,
    architecture: str | None,
    config_json: str | None,
    input_shape: str | None,
    tolerance: float,
    samples: int,
    input_name: str,
    output_name: str,
) -> None:
    """Convert a PyTorch model to ONNX and check parity on random inputs.

    SOURCE is a TorchScript file, a torch.export .pt2, or a state_dict (safetensors or torch.save) with
    --architecture. The ONNX file is written to OUT only if the max abs difference stays within --tolerance.
    """
    converter = _plugin_module("modelport_torch.convert", "convert")
    import numpy as np

    from service.plugins import UnknownPlugin, default_registry

    try:
        config = json.loads(config_json) if config_json else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--config") from None
    if not isinstance(config, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--config")
    try:
        factory = default_registry().architecture(architecture) if architecture else None
        module = converter.load_module(source, architecture=factory, config=config)
    except (UnknownPlugin, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    if input_shape is not None:
        shape = _parse_shape(input_shape)
    else:
        spec = getattr(module, "input_spec", None)
        if spec is None:
            raise click.UsageError("--input-shape is required: the model does not describe its input")
        shape = (1, *(1 if d < 0 else d for d in spec.shape[1:]))
    try:
        result = converter.convert_to_onnx(
            module,
            np.zeros(shape, dtype=np.float32),
            out,
            input_name=input_name,
            output_name=output_name,
            tolerance=tolerance,
            samples=samples,
        )
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    click.echo(
        f"wrote {result.path} ({result.exporter} exporter, {result.seconds:.1f} s): max abs difference "
        f"{result.max_abs_diff:.3g} over {result.samples} random batches (tolerance {tolerance:g})"
    )
