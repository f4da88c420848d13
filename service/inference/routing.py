"""Which version serves an unversioned call: pure functions over a model's routing state.

Order: the model's traffic split if one is set (weighted), else its ``production`` alias, else None (the
caller answers 404 saying why). With a routing key (``X-Routing-Key``) the choice is a deterministic hash
of the model and the key, placed on the split's cumulative weights in version-label order, so the same key
lands on the same version for the same split on every replica with no shared state. Because the hash does
not depend on the weights, a ramp (90/10 -> 80/20) only moves keys across the boundary: every key already
in the growing arm stays there, which keeps A/B cohorts stable while traffic shifts.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Sequence

from registry_db.records import ModelRouting, SplitEntry

__all__ = ("PRODUCTION_ALIAS", "choose_version", "key_fraction", "split_fingerprint")

PRODUCTION_ALIAS = "production"
_TWO_64 = float(1 << 64)


@functools.lru_cache(maxsize=1024)
def _prepared(splits: tuple[SplitEntry, ...]) -> tuple[str, tuple[str, ...], tuple[int, ...], int]:
    """(fingerprint, versions, cumulative weights, total), in a replica-independent order."""
    entries = sorted((e.version, max(int(e.weight), 0)) for e in splits)
    fingerprint = hashlib.sha256(",".join(f"{v}={w}" for v, w in entries).encode()).hexdigest()[:16]
    versions: list[str] = []
    cumulative: list[int] = []
    total = 0
    for version, weight in entries:
        if weight > 0:
            total += weight
            versions.append(version)
            cumulative.append(total)
    return fingerprint, tuple(versions), tuple(cumulative), total


def split_fingerprint(splits: Sequence[SplitEntry]) -> str:
    """A short stable id of a split (its versions and weights, order-independent)."""
    return _prepared(tuple(splits))[0]


def key_fraction(model: str, fingerprint: str, routing_key: str) -> float:
    """Where a routing key falls in ``[0, 1)`` for one model and split: the same on every replica."""
    digest = hashlib.sha256(f"{model}:{fingerprint}:{routing_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_64


def choose_version(
    routing: ModelRouting,
    routing_key: str | None,
    *,
    model: str = "",
    rng: Callable[[], float] = random.random,
) -> str | None:
    """The version for an unversioned call, or None when the model has neither a split nor ``production``.

    Args:
        routing: the model's aliases and split.
        routing_key: ``X-Routing-Key`` if the client sent one (sticky assignment), else None (random).
        model: the model name, mixed into the sticky hash so that keys are dealt independently per model.
        rng: source of uniform ``[0, 1)`` numbers for key-less calls (injectable for tests).
    """
    if routing.splits:
        _, versions, cumulative, total = _prepared(tuple(routing.splits))
        if total > 0:
            fraction = key_fraction(model, "", routing_key) if routing_key is not None else rng()
            point = fraction * total
            for version, bound in zip(versions, cumulative, strict=True):
                if point < bound:
                    return version
            return versions[-1]
    return routing.aliases.get(PRODUCTION_ALIAS)
