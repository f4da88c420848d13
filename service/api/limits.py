"""Per-worker limits the inference edge applies before it spends memory or CPU on a request.

:class:`BodyBudget` bounds the inference bytes one worker holds at once: the bodies being read plus the ones
decoded, queued or running (their arrays view the body's buffer). Without it, ``MAX_BODY_BYTES`` bounds one
request but not the sum: 16 unfinished 60 MB chunked uploads held about 1 GB, and the defaults allowed 256
queued requests of 64 MB per engine. A request that would pass the budget gets 503 + Retry-After (the
server is full now, not the request too large), before the rest of its body is read.
"""

from __future__ import annotations

from service.errors import Overloaded

__all__ = ("BodyBudget",)


class BodyBudget:
    """Bytes reserved by in-flight requests, against a fixed per-worker limit (one event loop: no lock)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> None:
        """Reserve ``size`` more bytes, or raise Overloaded (503 + Retry-After) reserving nothing."""
        if self.used + size > self.limit:
            raise Overloaded(
                f"server busy: {self.used} bytes of request bodies in flight, the limit is {self.limit}",
                reason="body_budget",
            )
        self.used += size

    def give(self, size: int) -> None:
        """Release ``size`` bytes reserved by :meth:`take`."""
        self.used -= size
