"""The long-lived parts one process shares: settings, registry, artifact store and plugins."""

from __future__ import annotations

from dataclasses import dataclass

from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore
from service.plugins import PluginRegistry, default_registry
from service.settings import Settings

__all__ = ("Services",)


@dataclass(slots=True)
class Services:
    """Opened once per process (server worker or CLI call) and closed on exit."""

    settings: Settings
    registry: Registry
    store: ArtifactStore
    plugins: PluginRegistry

    @classmethod
    async def open(
        cls, settings: Settings, *, plugins: PluginRegistry | None = None, migrate: bool = False
    ) -> Services:
        """Connect to the registry and the store; ``migrate`` upgrades the schema to head first."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if migrate:
            from registry_db.migrate import upgrade_async

            await upgrade_async(settings.resolved_database_url)
        engine = create_engine(settings.resolved_database_url)
        store = ArtifactStore(settings.resolved_artifact_dir, max_bytes=settings.max_artifact_bytes)
        return cls(settings, Registry(engine), store, plugins or default_registry())

    async def close(self) -> None:
        """Dispose of database connections."""
        await self.registry.close()
