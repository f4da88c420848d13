"""Background loops of a worker (routing watcher, experiment flusher, shadow runner, rollout controller)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ("cancel_and_wait",)


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Stop a background loop and wait until it has unwound (a no-op for a loop that never started)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
