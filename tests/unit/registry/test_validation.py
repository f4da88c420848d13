"""Name, label, digest, scope and split rules (pure functions, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from registry_db.errors import InvalidName
from registry_db.validation import (
    storage_path_for,
    validate_actor,
    validate_alias,
    validate_model_name,
    validate_scopes,
    validate_sha256,
    validate_splits,
    validate_version_label,
)

BAD_NAMES = ["../x", "/etc/passwd", "", "a\x00b", "x" * 4096, "-lead", ".hidden", "sp ace", "é", "a/b", "a\nb", None, 7]


@pytest.mark.parametrize("check", [validate_model_name, validate_version_label, validate_alias])
@pytest.mark.parametrize("value", BAD_NAMES)
def test_bad_names_refused(check: Any, value: object) -> None:
    with pytest.raises(InvalidName) as info:
        check(value)
    message = str(info.value)
    assert "\x00" not in message and "\n" not in message and len(message) < 300


@pytest.mark.parametrize("value", ["a", "1", "digits", "v1.2.3", "model_x-2", "A" * 64, "9" * 64])
def test_good_names_pass(value: str) -> None:
    assert validate_model_name(value) == value
    assert validate_version_label(value) == value
    assert validate_alias(value) == value


def test_sixty_five_characters_is_one_too_many() -> None:
    with pytest.raises(InvalidName):
        validate_model_name("a" * 65)


@pytest.mark.parametrize("bad", ["", "ab" * 31, "AB" * 32, "zz" * 32, "ab" * 32 + "\n", 5])
def test_sha256_must_be_lowercase_hex(bad: object) -> None:
    with pytest.raises(InvalidName):
        validate_sha256(bad)


def test_storage_path_layout() -> None:
    digest = "0f" * 32
    assert storage_path_for(digest) == f"sha256/0f/{digest}"


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [(["read"], ("read",)), (["admin", "read", "admin"], ("admin", "read")), ("admin", ("admin",))],
)
def test_scopes_normalised(scopes: Any, expected: tuple[str, ...]) -> None:
    assert validate_scopes(scopes) == expected


@pytest.mark.parametrize("scopes", [[], ["root"], ["read", "write"], [""]])
def test_unknown_or_empty_scopes_refused(scopes: list[str]) -> None:
    with pytest.raises(InvalidName):
        validate_scopes(scopes)


@pytest.mark.parametrize("actor", ["", "   ", "x" * 129, "a\x00b", None])
def test_actor_required(actor: object) -> None:
    with pytest.raises(InvalidName):
        validate_actor(actor)


@pytest.mark.parametrize(
    ("splits", "match"),
    [
        ([], "at least one"),
        ([("1", 50)], "sum to 100"),
        ([("1", 60), ("2", 60)], "sum to 100"),
        ([("1", 0), ("2", 100)], "positive"),
        ([("1", -10), ("2", 110)], "positive"),
        ([("1", 50), ("1", 50)], "twice"),
        ([("1", 50.0), ("2", 50)], "positive integer"),
        ([("1", True), ("2", 99)], "positive integer"),
        ([("../1", 100)], "invalid version"),
    ],
)
def test_bad_splits(splits: list[tuple[Any, Any]], match: str) -> None:
    with pytest.raises(InvalidName, match=match):
        validate_splits(splits)


def test_good_split() -> None:
    validate_splits([("1", 90), ("2", 10)])
    validate_splits([("only", 100)])
