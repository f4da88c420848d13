"""Server-made request ids: unguessable, time-ordered, and cheap enough to make one for every call.

Ids name predictions for outcome feedback, so one caller's id must not let it guess another caller's: each holds 96
bits from the OS's CSPRNG (24 hex characters). They are led by the time they were drawn (milliseconds since the
epoch, 12 hex characters), as UUIDv7 and ULID are, because the prediction log keeps a unique index on the id: random
keys put every row on a different index page, so each one-second flush dirtied thousands of pages and wrote them
all to SQLite's WAL (~25 us of kernel and Python a logged request at 6k req/s); time-ordered keys land on the
index's newest pages. Drawing 256 at a time costs one ``getrandom`` call per 256 requests; ids drawn together
share their time prefix.
"""

from __future__ import annotations

import os
import time

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
            lead = f"{self._prefix}{time.time_ns() // 1_000_000:012x}"
            pool.extend(lead + raw[i : i + _HEX_CHARS] for i in range(len(raw) - _HEX_CHARS, -1, -_HEX_CHARS))
        return pool.pop()
