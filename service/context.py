"""The long-lived parts one process shares: settings, registry, artifact store and plugins."""

from __future__ import annotations

from dataclasses import dataclass

from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore
from service.plugins import PluginRegistry, default_registry
from service.settings import Settings

__all__ = ("Services", "open_artifact_store")


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """The artifact store the settings describe: a directory, or a bucket with the directory as its cache."""
    remote = None
    if settings.artifact_url:
        from registry_db.object_store import ObjectStoreBlobs, S3Options

        secret = settings.s3_secret_access_key
        remote = ObjectStoreBlobs(
            settings.artifact_url,
            S3Options(
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=secret.get_secret_value() if secret is not None else None,
                allow_http=settings.s3_allow_http,
                transfer_timeout_s=settings.artifact_transfer_timeout_s,
            ),
        )
    return ArtifactStore(
        settings.resolved_artifact_dir,
        max_bytes=settings.max_artifact_bytes,
        remote=remote,
        cache_max_bytes=settings.artifact_cache_max_bytes,
    )


@dataclass(slots=True)
class Services:
    """Opened once per process (server worker or CLI call) and closed on exit."""

    settings: Settings
    registry: Registry
    store: ArtifactStore
    plugins: PluginRegistry

    @classmethod
    def build(cls, settings: Settings, *, plugins: PluginRegistry | None = None) -> Services:
        """The registry (connecting lazily), the store and the plugins the settings describe."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            settings.resolved_database_url,
            connect_timeout_s=settings.db_connect_timeout_s,
            statement_timeout_s=settings.db_statement_timeout_s,
        )
        return cls(settings, Registry(engine), open_artifact_store(settings), plugins or default_registry())

    @classmethod
    async def open(
        cls, settings: Settings, *, plugins: PluginRegistry | None = None, migrate: bool = False
    ) -> Services:
        """:meth:`build`, after upgrading the schema to head when ``migrate`` is set."""
        if migrate:
            from registry_db.migrate import upgrade_async

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            await upgrade_async(settings.resolved_database_url)
        return cls.build(settings, plugins=plugins)

    async def close(self) -> None:
        """Dispose of database connections."""
        await self.registry.close()
