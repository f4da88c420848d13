"""Rules the registry enforces whatever the caller: names, labels, aliases, weights, digests, scopes.

Every check raises :class:`~registry_db.errors.InvalidName` with a message that is safe to show to a client
(long or binary input is shortened and ``repr``-escaped, never echoed raw).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from registry_db.errors import InvalidName

__all__ = (
    "NAME_PATTERN",
    "SCOPES",
    "storage_path_for",
    "validate_actor",
    "validate_alias",
    "validate_model_name",
    "validate_plugin_name",
    "validate_scopes",
    "validate_sha256",
    "validate_splits",
    "validate_version_label",
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SCOPES = frozenset({"admin", "feedback", "read"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_ACTOR = 128


def _shown(value: object) -> str:
    if isinstance(value, str) and len(value) > 70:
        return repr(value[:70]) + "…"
    return repr(value)[:80]


def _check(kind: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidName(
            f"invalid {kind} {_shown(value)}: use 1-64 characters from letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def validate_model_name(name: object) -> str:
    """A model name: also a URL path segment and part of metric labels, so no '/', '..' or whitespace."""
    return _check("model name", name)


def validate_version_label(label: object) -> str:
    return _check("version label", label)


def validate_alias(alias: object) -> str:
    return _check("alias", alias)


def validate_plugin_name(kind: str, name: object) -> str:
    """A backend or architecture entry-point name as stored on a version."""
    return _check(kind, name)


def validate_sha256(sha256: object) -> str:
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise InvalidName(f"invalid sha256 {_shown(sha256)}: expected 64 lowercase hex digits")
    return sha256


def storage_path_for(sha256: str) -> str:
    """The store-relative path of a blob, as recorded on its version row: ``sha256/<ab>/<hex>``."""
    validate_sha256(sha256)
    return f"sha256/{sha256[:2]}/{sha256}"


def validate_actor(actor: object) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > _MAX_ACTOR or "\x00" in actor:
        raise InvalidName(f"invalid actor {_shown(actor)}: 1-{_MAX_ACTOR} characters")
    return actor


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """A non-empty subset of :data:`SCOPES`, sorted and deduplicated."""
    given = list(scopes) if not isinstance(scopes, str) else [scopes]
    result = tuple(sorted(set(given)))
    if not result or not set(result) <= SCOPES:
        raise InvalidName(f"scopes must be a non-empty subset of {sorted(SCOPES)}, got {_shown(given)}")
    return result


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
            raise InvalidName(f"weight of version '{version}' must be a positive integer, got {_shown(weight)}")
    total = sum(weight for _, weight in splits)
    if total != 100:
        raise InvalidName(f"split weights must sum to 100, got {total}")
