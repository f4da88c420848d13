"""The routing rule: which version serves an unversioned call. Pure functions over a model's routing record.

The one rule, used by infer, metadata and readiness alike: the model's traffic split if one is set
(weighted), else its ``production`` alias, else nothing (the caller answers 404 saying why). With a routing
key (``X-Routing-Key``) the arm is a deterministic hash of the model and the key, placed on the split's
cumulative weights in version-label order, so the same key lands on the same version for the same split on
every replica with no shared state. The hash does not depend on the weights: a ramp (90/10 -> 80/20) only
moves keys across the boundary, and every key already in the growing arm stays there, which keeps A/B
cohorts stable while traffic shifts.

Without a key, infer draws a random point; metadata and readiness, which must not change from call to call,
describe the arm most calls land on (the heaviest, ties to the lower label).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from typing import NamedTuple

from registry_db.records import ModelRouting, SplitEntry

__all__ = ("PRODUCTION_ALIAS", "Arms", "arms", "choose_version", "describe_version", "key_fraction", "targets")

PRODUCTION_ALIAS = "production"
_TWO_64 = float(1 << 64)


class Arms(NamedTuple):
    """A split's arms with positive weight, in replica-independent (label) order."""

    versions: tuple[str, ...]
    cumulative: tuple[int, ...]
    total: int


@functools.lru_cache(maxsize=1024)
def _arms(splits: tuple[SplitEntry, ...]) -> Arms:
    versions: list[str] = []
    cumulative: list[int] = []
    total = 0
    for version, weight in sorted((e.version, max(int(e.weight), 0)) for e in splits):
        if weight > 0:
            total += weight
            versions.append(version)
            cumulative.append(total)
    return Arms(tuple(versions), tuple(cumulative), total)


def arms(routing: ModelRouting) -> Arms:
    """The arms of the model's split (empty when it has none or all weights are 0)."""
    return _arms(tuple(routing.splits))


def key_fraction(model: str, routing_key: str) -> float:
    """Where a routing key falls in ``[0, 1)`` for one model: the same on every replica and every release."""
    # the empty field between the colons is kept so keys land where earlier releases put them
    digest = hashlib.sha256(f"{model}::{routing_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_64


def _at(split: Arms, fraction: float) -> str:
    point = fraction * split.total
    for version, bound in zip(split.versions, split.cumulative, strict=True):
        if point < bound:
            return version
    return split.versions[-1]


def choose_version(
    routing: ModelRouting,
    routing_key: str | None,
    *,
    model: str = "",
    rng: Callable[[], float] = random.random,
) -> str | None:
    """The version an unversioned call is served by, or None when the model has neither split nor production.

    Args:
        routing: the model's aliases and split.
        routing_key: ``X-Routing-Key`` if the client sent one (sticky assignment), else None (random).
        model: the model name, mixed into the sticky hash so that keys are dealt independently per model.
        rng: source of uniform ``[0, 1)`` numbers for key-less calls (injectable for tests).
    """
    split = arms(routing)
    if split.total > 0:
        return _at(split, key_fraction(model, routing_key) if routing_key is not None else rng())
    return routing.aliases.get(PRODUCTION_ALIAS)


def describe_version(routing: ModelRouting, routing_key: str | None, *, model: str) -> str | None:
    """The version metadata and readiness speak for: what :func:`choose_version` picks for this key, and
    without a key the arm most calls land on (the heaviest; ties to the lower label)."""
    split = arms(routing)
    if split.total > 0:
        if routing_key is not None:
            return _at(split, key_fraction(model, routing_key))
        weights = [b - a for a, b in zip((0, *split.cumulative), split.cumulative, strict=False)]
        return split.versions[weights.index(max(weights))]
    return routing.aliases.get(PRODUCTION_ALIAS)


def targets(routing: ModelRouting) -> tuple[str, ...]:
    """Every version an unversioned call may land on (the split's arms, else production, else none)."""
    split = arms(routing)
    if split.total > 0:
        return split.versions
    production = routing.aliases.get(PRODUCTION_ALIAS)
    return (production,) if production is not None else ()
