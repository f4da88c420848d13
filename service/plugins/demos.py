"""The demo contract: what ``modelport demo`` and ``serve --demo`` call, found under ``modelport.demos``.

A demo is an async callable ``(services, *, skip_if_present) -> DemoReport``. It registers its models
through the same operations the admin API uses (``service.management.registration.register_version``), so
the core runs it without knowing what it trains or which backends it needs.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from service.context import Services

__all__ = ("Demo", "DemoReport")


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What a demo did, for the CLI to print line by line."""

    skipped: bool = False
    """True when the demo found its models already registered and left them untouched."""
    lines: tuple[str, ...] = ()
    """Human-readable summary (what was registered, measured accuracy, routing), one line each."""


class Demo(Protocol):
    """Registered under ``modelport.demos``; called once per ``modelport demo`` or ``serve --demo``.

    Runs on the CLI's event loop with open :class:`~service.context.Services` (database, store, plugins);
    do CPU-bound work (training) in a worker thread. With ``skip_if_present`` the demo must leave existing
    models untouched and return ``DemoReport(skipped=True, ...)``.
    """

    def __call__(self, services: Services, *, skip_if_present: bool) -> Awaitable[DemoReport]: ...
