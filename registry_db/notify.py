"""PostgreSQL ``LISTEN`` on the registry channel: wakes workers as soon as a change commits.

Polling the generation counter stays the source of truth (it also serves SQLite and recovers from missed
notifications); a notification only shortens the wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from registry_db.repository import NOTIFY_CHANNEL

__all__ = ("listen",)

_log = structlog.get_logger(__name__)


async def listen(url: str, on_change: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
    """Start listening; returns an async closer, or None when the database is not PostgreSQL or unreachable."""
    if not url.startswith("postgresql"):
        return None
    try:
        import asyncpg
    except ImportError:
        return None
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn: Any = await asyncpg.connect(dsn, timeout=5)
        await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: on_change())
    except Exception as exc:  # noqa: BLE001 - polling still works
        _log.warning("registry_listen_unavailable", error=f"{type(exc).__name__}: {exc}")
        return None

    async def close() -> None:
        try:
            await conn.close(timeout=2)
        except Exception:  # noqa: BLE001
            conn.terminate()

    return close
