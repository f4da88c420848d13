"""Server-made request ids: unguessable, and cheap enough to make one for every call.

Ids name predictions for outcome feedback, so one caller's id must not let it guess another caller's: they are
24 hex characters (96 bits) from the OS's CSPRNG. Drawing 256 at a time costs one ``getrandom`` call per 256
requests instead of a syscall or a keyed hash per request.
"""

from __future__ import annotations

import os

__all__ = ("RequestIds",)

_BATCH = 256
_HEX_CHARS = 24


class RequestIds:
    """One per worker process (each app builds its own after the worker started, so forks never share one)."""

    __slots__ = ("_pool", "_prefix")

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._pool: list[str] = []

    def next(self) -> str:
        pool = self._pool
        if not pool:
            raw = os.urandom(_BATCH * _HEX_CHARS // 2).hex()
            pool.extend(self._prefix + raw[i : i + _HEX_CHARS] for i in range(0, len(raw), _HEX_CHARS))
        return pool.pop()
