"""The ``modelport`` command line: one thin verb per service call, same settings as the server."""

from __future__ import annotations

from service.cli._app import cli, main

__all__ = ("cli", "main")
