"""Admission: refuse a call whose engine queue is full before its body is read or decoded (issue 12 item 6).

The batcher refuses a full queue too, but only after the edge has read the body, decoded and validated it:
under overload that work is spent on requests that are then refused, and the refusal waits behind it in the
event loop (503s took a median 79-137 ms and up to 9 s at 512 connections). This check costs a few dict
lookups. It answers only what it can know without the body: an explicit version, a routing key, or a model
whose unversioned calls have one target; with a random split it refuses only when every arm is full, and
the batcher stays the exact check.
"""

from __future__ import annotations

from service.errors import Overloaded
from service.inference.engine_pool import EnginePool
from service.inference.routing import choose_version, targets
from service.inference.routing_state import RoutingState

__all__ = ("Admission",)


class Admission:
    """Reads the routing snapshot and the loaded engines' queue depths; never waits, never raises itself."""

    __slots__ = ("_pool", "_routing")

    def __init__(self, routing: RoutingState, pool: EnginePool) -> None:
        self._routing = routing
        self._pool = pool

    def refusal(self, model: str, version: str | None, routing_key: str | None) -> tuple[str, Overloaded] | None:
        """The version and the Overloaded to answer with when every version this call may land on is full;
        None to let the call through (unknown model, engine not loaded, or room somewhere)."""
        if not self._pool.pressure.full_queues:  # the common case: no queue is full anywhere in this process
            return None
        if version is not None:
            candidates: tuple[str, ...] = (version,)
        else:
            routing = self._routing.model_routing(model)
            if routing is None:
                return None
            if routing_key is not None:
                chosen = choose_version(routing, routing_key, model=model)
                candidates = (chosen,) if chosen is not None else ()
            else:
                candidates = targets(routing)
        refusal: tuple[str, Overloaded] | None = None
        for candidate in candidates:
            served = self._pool.get_loaded(model, candidate)
            if served is None or not served.batcher.full:
                return None
            if refusal is None:
                refusal = (candidate, served.batcher.overloaded())
        return refusal
