"""Registry test helpers: version fields with a pretend blob, and the footprint a refused call must not change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from registry_db.repository import Registry

SHA = "ab" * 32


def version_kwargs(**overrides: Any) -> dict[str, Any]:
    """Fields of a version whose (pretend) blob is already in the store."""
    sha = overrides.pop("sha256", SHA)
    base: dict[str, Any] = {
        "backend": "onnx",
        "architecture": None,
        "architecture_config": {},
        "sha256": sha,
        "size_bytes": 10,
        "storage_path": f"sha256/{sha[:2]}/{sha}",
        "signature": {"inputs": [], "outputs": []},
        "preprocessing": None,
        "postprocessing": None,
        "card": {"summary": "x"},
        "actor": "tester",
    }
    base.update(overrides)
    return base


async def row_counts(reg: Registry) -> dict[str, int]:
    tables = ("models", "model_versions", "aliases", "traffic_splits", "api_keys", "audit_log")
    async with reg.engine.connect() as conn:
        return {t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()) for t in tables}


async def footprint(reg: Registry) -> tuple[Any, ...]:
    """Everything a refused call must leave unchanged: row counts, contents, audit and generation."""
    models = await reg.catalog.list_models()
    versions = [await reg.catalog.list_versions(m.name) for m in models]
    aliases = [await reg.routing.list_aliases(m.name) for m in models]
    traffic = [await reg.routing.get_traffic(m.name) for m in models]
    return (await row_counts(reg), models, versions, aliases, traffic, await reg.routing.generation())
