"""Name rules the registry enforces whatever the caller: model names, version labels, aliases, weights."""

from __future__ import annotations

import re
from collections.abc import Sequence

from registry_db.errors import InvalidName

__all__ = ("NAME_PATTERN", "validate_alias", "validate_model_name", "validate_splits", "validate_version_label")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _check(kind: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        shown = repr(value)[:80] if not isinstance(value, str) or len(value) <= 70 else repr(value[:70]) + "…"
        raise InvalidName(
            f"invalid {kind} {shown}: use 1-64 characters from letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def validate_model_name(name: object) -> str:
    return _check("model name", name)


def validate_version_label(label: object) -> str:
    return _check("version label", label)


def validate_alias(alias: object) -> str:
    return _check("alias", alias)


def validate_splits(splits: Sequence[tuple[str, int]]) -> None:
    """Weights are positive integers summing to 100; each version at most once."""
    if not splits:
        raise InvalidName("a traffic split needs at least one version (clear it instead)")
    seen: set[str] = set()
    for version, weight in splits:
        validate_version_label(version)
        if version in seen:
            raise InvalidName(f"version '{version}' appears twice in the split")
        seen.add(version)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
            raise InvalidName(f"weight of version '{version}' must be a positive integer, got {weight!r}")
    total = sum(weight for _, weight in splits)
    if total != 100:
        raise InvalidName(f"split weights must sum to 100, got {total}")
