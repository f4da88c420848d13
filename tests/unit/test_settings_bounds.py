"""Settings refuse values that would only fail later, or never: unbounded or non-finite numbers, and database URLs
of registries modelport does not support (issue 12: ``QUEUE_TIMEOUT_MS=inf`` and ``mysql://`` used to pass)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("queue_timeout_ms", float("inf"), "finite number"),
        ("queue_timeout_ms", float("nan"), "finite number"),
        ("queue_timeout_ms", 10_000_000, "less than or equal to 600000"),
        ("max_batch_delay_ms", float("inf"), "finite number"),
        ("drain_timeout_s", float("nan"), "finite number"),
        ("max_body_bytes", 1 << 40, "less than or equal to 2147483648"),
        ("database_url", "mysql://root@localhost/registry", "unsupported database URL scheme 'mysql'"),
        ("database_url", "registry.db", "unsupported database URL scheme"),
    ],
)
def test_unusable_values_are_refused_naming_the_problem(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(**{field: value})


@pytest.mark.parametrize(
    "url", ["sqlite:///tmp/r.db", "sqlite+aiosqlite:///tmp/r.db", "postgresql://u@h/db", "postgresql+asyncpg://u@h/db"]
)
def test_supported_database_urls_pass(url: str) -> None:
    assert _settings(database_url=url).resolved_database_url.split("://")[0] in (
        "sqlite+aiosqlite",
        "postgresql+asyncpg",
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_body_bytes": 512 << 20, "max_inflight_body_bytes": 256 << 20}, "must be at least max_body_bytes"),
        ({"max_header_bytes": 4096, "max_header_field_bytes": 8192}, "must not exceed max_header_bytes"),
        ({"header_timeout_s": float("inf")}, "finite number"),
        ({"body_idle_timeout_s": 0}, "greater than 0"),
        ({"max_connections": 0}, "greater than or equal to 1"),
    ],
)
def test_connection_limits_are_bounded_and_cross_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(**values)


def test_raising_the_body_cap_with_the_budget_passes() -> None:
    settings = _settings(max_body_bytes=512 << 20, max_inflight_body_bytes=1 << 30)
    assert settings.max_inflight_body_bytes == 1 << 30
