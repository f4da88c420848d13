"""Per-worker limits the inference edge applies before it spends memory or CPU on a request.

:class:`BodyBudget` bounds the inference bytes one worker holds at once: the bodies being read plus the ones
decoded, queued or running (their arrays view the body's buffer). Without it, ``MAX_BODY_BYTES`` bounds one
request but not the sum: 16 unfinished 60 MB chunked uploads held about 1 GB, and the defaults allowed 256
queued requests of 64 MB per engine. A request that would pass the budget gets 503 + Retry-After (the
server is full now, not the request too large), before the rest of its body is read. A compressed body counts
twice while it is held: its wire bytes, and what it inflates to as the inflater produces it
(:class:`Reservation`), so a 64 KiB gzip body that inflates to 64 MB takes 64 MB of the budget, not 64 KiB.
"""

from __future__ import annotations

import threading

from service.errors import Overloaded

__all__ = ("BodyBudget", "Reservation")


class BodyBudget:
    """Bytes reserved by in-flight requests, against a fixed per-worker limit.

    Taken and given on the event loop and, while a large body inflates, from a worker thread: a lock keeps the
    count exact (uncontended, it costs well under a microsecond).
    """

    __slots__ = ("_lock", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        """Reserve ``size`` more bytes, or raise Overloaded (503 + Retry-After) reserving nothing."""
        with self._lock:
            if self.used + size > self.limit:
                raise Overloaded(
                    f"server busy: {self.used} bytes of request bodies in flight, the limit is {self.limit}",
                    reason="body_budget",
                )
            self.used += size

    def give(self, size: int) -> None:
        """Release ``size`` bytes reserved by :meth:`take`."""
        with self._lock:
            self.used -= size

    def reservation(self) -> Reservation:
        """A new, empty reservation for one request's derived bytes (its inflated body)."""
        return Reservation(self)


class Reservation:
    """Bytes one request holds in a :class:`BodyBudget` beyond its wire body, given back together at its end.

    :meth:`take` is handed to the inflater (``service.codecs.v2.decompress_body``), which calls it per step from
    whichever thread inflates; :meth:`release` runs once, on the event loop, after the request is answered. Both
    hold the budget's lock, and a take after the release is refused, so an inflater still running in its thread
    when the request ends (cancelled) cannot leave bytes reserved.
    """

    __slots__ = ("_budget", "_released", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self._released = False
        self.size = 0

    def take(self, size: int) -> None:
        """Reserve ``size`` more bytes, or raise Overloaded (503 + Retry-After) reserving nothing."""
        budget = self._budget
        with budget._lock:
            if self._released:
                raise Overloaded("the request ended while its body was being inflated", reason="body_budget")
            if budget.used + size > budget.limit:
                raise Overloaded(
                    f"server busy: {budget.used} bytes of request bodies in flight (inflated bodies included), "
                    f"the limit is {budget.limit}",
                    reason="body_budget",
                )
            budget.used += size
            self.size += size

    def release(self) -> None:
        """Give everything back; later takes are refused."""
        budget = self._budget
        with budget._lock:
            budget.used -= self.size
            self.size = 0
            self._released = True
