"""The click group; verbs live in their own modules and attach themselves here."""

from __future__ import annotations

import logging
import os

import click

__all__ = ("cli", "main")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelport")
def cli() -> None:
    """modelport: a versioned model registry and inference server."""
    # verbs are quiet: their result on stdout (one JSON document with --json), a failure as one line on stderr;
    # MODELPORT_LOG_LEVEL (e.g. INFO) adds the logs, on stderr. ``serve`` configures the server's own logging.
    from service.observability.logging import configure_logging

    level = os.environ.get("MODELPORT_LOG_LEVEL", "CRITICAL").upper()
    configure_logging(level if level in logging.getLevelNamesMapping() else "CRITICAL", "console", cache=False)


_VERB_MODULES = (
    "service.cli.serve_cmd",
    "service.cli.registry_cmds",
    "service.cli.rollout_cmds",
    "service.cli.plugin_cmds",
)


def _attach() -> None:
    """Importing the verb modules registers their commands on ``cli``."""
    import importlib

    for module in _VERB_MODULES:
        importlib.import_module(module)


def main() -> None:
    """Console-script entry point."""
    _attach()
    cli()
