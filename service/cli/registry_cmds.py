"""Registry verbs: db, register, list, show, promote, split, archive, token, verify, gc.

Each verb is a thin call into the same repository, store and services the HTTP API uses, with the same
settings (``MODELPORT_*``). Output is a table for people or ``--json`` for scripts; errors are one line on
stderr and a non-zero exit, never a traceback. Changes are audited as ``cli:<os user>``.

The embedded SQLite database is migrated on first use; a PostgreSQL registry must be upgraded explicitly
(``modelport db upgrade``, e.g. as a deploy job) and the verbs refuse to run against an outdated schema.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from pydantic import ValidationError

from registry_db.errors import IntegrityError, RegistryError
from registry_db.records import Principal, VersionRecord
from registry_db.repository import Registry
from registry_db.session import create_engine, is_sqlite
from registry_db.store import ArtifactStore
from service.cli._app import cli
from service.errors import ModelportError
from service.settings import Settings

if TYPE_CHECKING:
    from service.management.operations import RoutingOperations

__all__ = ()

T = TypeVar("T")
_STALE_S = 3600.0


def _actor() -> str:
    """Audit identity of CLI changes: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message.strip().splitlines()[0] if message.strip() else "failed")


def _settings() -> Settings:
    """Settings from the environment; a bad value is one line naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MODELPORT_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        _fail(f"invalid settings: {problems}")


@dataclass(frozen=True, slots=True)
class _Registry:
    """What the maintenance verbs need: no plugins are loaded for them."""

    settings: Settings
    registry: Registry
    store: ArtifactStore


async def _prepare_schema(settings: Settings) -> None:
    from registry_db.migrate import current_async, head_revision, upgrade_async

    url = settings.resolved_database_url
    if is_sqlite(url):
        await upgrade_async(url)  # the embedded default migrates itself (a no-op at head)
        return
    current = await current_async(url)
    if current != head_revision():
        _fail(f"registry schema is at {current or 'nothing'}, not {head_revision()}: run 'modelport db upgrade'")


def _run(work: Callable[[Any], Awaitable[T]], *, with_plugins: bool = False) -> T:
    """Open the registry and store from settings (all services with ``with_plugins``), run ``work``, close.

    Domain and database errors become one clear line and exit status 1.
    """

    async def main() -> T:
        settings = _settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await _prepare_schema(settings)
        if with_plugins:
            from service.context import Services

            services = await Services.open(settings)
            try:
                return await work(services)
            finally:
                await services.close()
        registry = Registry(
            create_engine(
                settings.resolved_database_url,
                connect_timeout_s=settings.db_connect_timeout_s,
                statement_timeout_s=settings.db_statement_timeout_s,
            )
        )
        try:
            from service.context import open_artifact_store

            return await work(_Registry(settings, registry, open_artifact_store(settings)))
        finally:
            await registry.close()

    try:
        return asyncio.run(main())
    except click.ClickException:
        raise
    except ModelportError as exc:
        _fail(exc.message)
    except RegistryError as exc:
        _fail(str(exc))
    except (OSError, ValueError) as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - the contract is one clear line, never a traceback
        _fail(f"unexpected error: {type(exc).__name__}: {exc}")


def _routing_change(change: Callable[[RoutingOperations], Awaitable[T]]) -> T:
    """Run ``change`` through the routing operations the admin API runs: a target must load to be routed."""
    from service.management.operations import RoutingOperations, checked_by_loading

    async def work(services: Any) -> T:
        async with checked_by_loading(services) as ensure_loads:
            return await change(RoutingOperations(services.registry, ensure_loads=ensure_loads))

    return _run(work, with_plugins=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return str(value)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_default, indent=2, sort_keys=True))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned text table (also used by the plugins verb)."""
    cells = [[str(c) for c in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            click.echo("  ".join("-" * w for w in widths))


def _json_option(arg: str | None, what: str) -> Any:
    if arg is None:
        return None
    try:
        value = json.loads(arg)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None
    if not isinstance(value, dict):
        raise click.BadParameter("expected a JSON object", param_hint=what)
    return value


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


# -- db ---------------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Registry schema migrations (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Upgrade the registry schema (run once per release, before the new servers start)."""
    from registry_db.migrate import current_async, upgrade_async

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def work() -> str | None:
        await upgrade_async(settings.resolved_database_url, revision)
        return await current_async(settings.resolved_database_url)

    try:
        now = asyncio.run(work())
    except RegistryError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - one clear line
        _fail(f"upgrade failed: {type(exc).__name__}: {exc}")
    click.echo(f"registry schema at {now or 'base'}")


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the registry database and whether it is at head."""
    from registry_db.migrate import current_async, head_revision

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        rev = asyncio.run(current_async(settings.resolved_database_url))
    except RegistryError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        _fail(f"cannot read the schema revision: {type(exc).__name__}: {exc}")
    head = head_revision()
    state = "up to date" if rev == head else "run: modelport db upgrade"
    click.echo(f"{rev or 'none'} (head {head}, {state})")


# -- versions ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("name")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--backend", required=True, help="Backend entry point, e.g. onnx, torchscript, pytorch.")
@click.option("--version", "version", default=None, help="Version label (default: the next number).")
@click.option("--architecture", default=None, help="Architecture entry point (state_dict backends).")
@click.option("--config", "config", default=None, help="Architecture config as a JSON object.")
@click.option("--card", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Model card JSON file.")
@click.option("--signature", default=None, help='Signature JSON: {"inputs": [...], "outputs": [...]}.')
@click.option("--preprocessing", default=None, help="Preprocessing spec JSON.")
@click.option("--postprocessing", default=None, help="Postprocessing spec JSON.")
@click.option(
    "--allow-duplicate",
    is_flag=True,
    help="Register bytes identical to an existing version of NAME anyway (refused by default, naming it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the version record as JSON.")
def register(
    name: str,
    artifact: Path,
    backend: str,
    version: str | None,
    architecture: str | None,
    config: str | None,
    card: Path | None,
    signature: str | None,
    preprocessing: str | None,
    postprocessing: str | None,
    allow_duplicate: bool,
    as_json: bool,
) -> None:
    """Store, verify, load, smoke-test and register ARTIFACT as a new version of model NAME.

    A NAME that does not exist yet is created (and the command says so). Bytes identical to an existing version
    of NAME are refused with the version they duplicate, unless --allow-duplicate.
    """
    from service.errors import InvalidInput
    from service.management.manifest import manifest_from
    from service.management.registration import register_version

    try:
        card_data = json.loads(card.read_text(encoding="utf-8")) if card else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"cannot read a JSON model card: {exc}", param_hint="--card") from None
    try:
        manifest = manifest_from(
            {
                "backend": backend,
                "version": version,
                "architecture": architecture,
                "architecture_config": _json_option(config, "--config") or {},
                "signature": _json_option(signature, "--signature"),
                "preprocessing": _json_option(preprocessing, "--preprocessing"),
                "postprocessing": _json_option(postprocessing, "--postprocessing"),
                "card": card_data,
            }
        )
    except InvalidInput as exc:
        _fail(exc.message)
    principal = Principal(name=_actor(), scopes=frozenset({"admin", "read"}))
    record: VersionRecord = _run(
        lambda s: register_version(
            s, name, artifact=artifact, manifest=manifest, principal=principal, allow_duplicate=allow_duplicate
        ),
        with_plugins=True,
    )
    if record.model_created:
        click.echo(f"created model {record.model_name} (it did not exist)", err=True)
    if as_json:
        _emit_json(record)
    else:
        click.echo(
            f"registered {record.model_name} version {record.version} "
            f"(sha256 {record.sha256}, {record.size_bytes} bytes)"
        )


@cli.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(name: str | None, as_json: bool) -> None:
    """List models, or the versions, aliases and split of model NAME."""

    async def work(s: _Registry) -> Any:
        if name is None:
            return await s.registry.catalog.list_models(), None, None
        return (
            await s.registry.catalog.list_versions(name),
            await s.registry.routing.list_aliases(name),
            await s.registry.routing.get_traffic(name),
        )

    items, aliases, traffic = _run(work)
    if as_json:
        _emit_json({"models": items} if name is None else {"versions": items, "aliases": aliases, "traffic": traffic})
        return
    if name is None:
        _table(("model", "description", "created_at"), [(m.name, m.description, _when(m.created_at)) for m in items])
        return
    by_version: dict[str, list[str]] = {}
    for alias in aliases:
        by_version.setdefault(alias.version, []).append(alias.alias)
    weights = {e.version: e.weight for e in traffic.splits} if traffic else {}
    _table(
        ("version", "backend", "status", "aliases", "weight", "size", "sha256", "created_at", "created_by"),
        [
            (
                v.version,
                v.backend,
                v.status,
                ",".join(by_version.get(v.version, [])),
                weights.get(v.version, ""),
                v.size_bytes,
                v.sha256[:16],
                _when(v.created_at),
                v.created_by,
            )
            for v in items
        ],
    )


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(name: str, version: str, as_json: bool) -> None:
    """Show one version: sha256, size, created_at, signature, card."""
    record: VersionRecord = _run(lambda s: s.registry.catalog.get_version(name, version))
    if as_json:
        _emit_json(record)
        return
    fields = ("model_name", "version", "number", "status", "backend", "architecture", "sha256", "size_bytes")
    for key in fields:
        click.echo(f"{key + ':':<14}{'' if getattr(record, key) is None else getattr(record, key)}")
    click.echo(f"{'created_at:':<14}{record.created_at.isoformat()}")
    click.echo(f"{'created_by:':<14}{record.created_by}")
    click.echo(f"{'storage_path:':<14}{record.storage_path}")
    click.echo(f"{'signature:':<14}{json.dumps(record.signature)}")
    if record.architecture_config:
        click.echo(f"{'config:':<14}{json.dumps(record.architecture_config)}")
    click.echo(f"{'card:':<14}{json.dumps(record.card, indent=2)}")


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="production", show_default=True, help="Alias to move.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def promote(name: str, version: str, alias: str, as_json: bool) -> None:
    """Point ALIAS (default production) of model NAME at VERSION; also how to roll back."""
    record = _routing_change(lambda ops: ops.promote(name, alias, version, actor=_actor()))
    if as_json:
        _emit_json(record)
    else:
        click.echo(f"{name}/{record.alias} -> {record.version}")


@cli.command()
@click.argument("name")
@click.argument("weights", nargs=-1)
@click.option("--clear", is_flag=True, help="Remove the split (unversioned calls follow 'production').")
@click.option(
    "--shadow",
    metavar="VERSION=PERCENT",
    default=None,
    help="Also copy PERCENT % of the split's calls to VERSION (outside the split); its answers are never returned.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def split(name: str, weights: tuple[str, ...], clear: bool, shadow: str | None, as_json: bool) -> None:
    """Set the A/B split of model NAME: VERSION=WEIGHT ... with weights summing to 100, or --clear."""
    if clear:
        if weights:
            raise click.UsageError("--clear takes no VERSION=WEIGHT arguments")
        _routing_change(lambda ops: ops.clear_traffic(name, actor=_actor()))
        if as_json:
            _emit_json({"model_name": name, "splits": []})
        else:
            click.echo(f"{name}: split cleared")
        return
    pairs = [_version_number(item, "VERSION=WEIGHT") for item in weights]
    if not pairs:
        raise click.UsageError("give VERSION=WEIGHT pairs, or --clear")
    mirror = _version_number(shadow, "--shadow VERSION=PERCENT") if shadow is not None else None
    record = _routing_change(lambda ops: ops.set_traffic(name, pairs, actor=_actor(), shadow=mirror))
    if as_json:
        _emit_json(record)
    else:
        arms = ", ".join(f"{e.version}={e.weight}" for e in record.splits)
        mirrored = f"; shadow {record.shadow_version} at {record.shadow_percent}%" if record.shadow_version else ""
        click.echo(f"{name}: {arms}{mirrored}")


def _version_number(item: str, form: str) -> tuple[str, int]:
    version, sep, number = item.partition("=")
    try:
        if not sep:
            raise ValueError(item)
        return version, int(number)
    except ValueError:
        raise click.UsageError(f"expected {form} with an integer, got {item!r}") from None


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def archive(name: str, version: str, as_json: bool) -> None:
    """Archive a version: no longer routable (refused while an alias or split uses it)."""
    record = _routing_change(lambda ops: ops.archive(name, version, actor=_actor()))
    if as_json:
        _emit_json(record)
    else:
        click.echo(f"{name} version {record.version}: {record.status}")


# -- keys -------------------------------------------------------------------------------------------
@cli.group()
def token() -> None:
    """API keys for the admin API (stored as hashes only)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["admin", "read"]),
    help="Repeatable; default read. admin implies read.",
)
@click.option("--json", "as_json", is_flag=True, help="Print name, scopes and token as JSON.")
def token_create(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a key. It is printed once (stdout) and only its hash is stored."""
    key, record = _run(lambda s: s.registry.keys.create_api_key(name, scopes or ("read",), actor=_actor()))
    if as_json:
        _emit_json({"name": record.name, "scopes": record.scopes, "token": key})
    else:
        click.echo(key)
        click.echo(
            f"(key '{record.name}', scopes {','.join(record.scopes)}: store it now, it is not shown again)", err=True
        )


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke a key; requests using it fail from now on."""
    _run(lambda s: s.registry.keys.revoke_api_key(name, actor=_actor()))
    click.echo(f"key '{name}' revoked")


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def token_list(as_json: bool) -> None:
    """List keys (names, scopes, dates; never the keys)."""
    keys = _run(lambda s: s.registry.keys.list_api_keys())
    if as_json:
        _emit_json(
            [{"name": k.name, "scopes": k.scopes, "created_at": k.created_at, "revoked_at": k.revoked_at} for k in keys]
        )
        return
    _table(
        ("name", "scopes", "created_at", "revoked_at"),
        [(k.name, ",".join(k.scopes), _when(k.created_at), _when(k.revoked_at)) for k in keys],
    )


# -- store maintenance ------------------------------------------------------------------------------
def _check_version(store: ArtifactStore, v: VersionRecord) -> str:
    """``ok`` or why the version's blob cannot be trusted."""
    try:
        if store.resolve(v.storage_path) != store.path_for(v.sha256):
            return "FAILED: storage_path does not match the sha256"
        size = store.verify_blob(v.sha256)
    except IntegrityError as exc:
        return f"FAILED: {exc}"
    if size != v.size_bytes:
        return f"FAILED: size is {size} bytes, the registry says {v.size_bytes}"
    return "ok"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(as_json: bool) -> None:
    """Re-hash every version's artifact; exit 1 naming each mismatch or missing blob."""

    async def work(s: _Registry) -> list[tuple[VersionRecord, str]]:
        return [
            (v, await asyncio.to_thread(_check_version, s.store, v)) for v in await s.registry.catalog.all_versions()
        ]

    results = _run(work)
    bad = [(v, status) for v, status in results if status != "ok"]
    if as_json:
        _emit_json(
            [{"model": v.model_name, "version": v.version, "sha256": v.sha256, "status": st} for v, st in results]
        )
    else:
        _table(
            ("model", "version", "sha256", "size", "status"),
            [(v.model_name, v.version, v.sha256[:16], v.size_bytes, st) for v, st in results],
        )
        click.echo(f"{len(results) - len(bad)} ok, {len(bad)} failed", err=True)
    if bad:
        for v, status in bad:
            click.echo(f"error: {v.model_name} version {v.version} ({v.sha256}): {status}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--min-age",
    "min_age_s",
    type=click.FloatRange(min=0),
    default=_STALE_S,
    show_default=True,
    help="Seconds a blob or temp file must be old before removal (spares registrations in flight).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gc(dry_run: bool, min_age_s: float, as_json: bool) -> None:
    """Remove blobs that no version references, and temp files left by interrupted uploads."""

    async def work(s: _Registry) -> tuple[list[str], list[Path]]:
        candidates = s.store.orphans(set(), older_than_s=min_age_s)  # list blobs before reading references
        referenced = await s.registry.catalog.referenced_sha256s()
        orphans = [sha for sha in candidates if sha not in referenced]
        stale = s.store.stale_temp_files(older_than_s=min_age_s)
        if not dry_run:
            # re-check each blob's age right before removing it: a registration that deduplicated into it
            # meanwhile refreshed its mtime and is about to commit a row pointing at it
            orphans = [sha for sha in orphans if s.store.delete(sha, older_than_s=min_age_s)]
            for path in stale:
                path.unlink(missing_ok=True)
        return orphans, stale

    orphans, stale = _run(work)
    verb = "would remove" if dry_run else "removed"
    if as_json:
        _emit_json({"dry_run": dry_run, "blobs": orphans, "temp_files": [p.name for p in stale]})
        return
    for sha in orphans:
        click.echo(f"{verb} blob {sha}")
    for path in stale:
        click.echo(f"{verb} temp file {path.name}")
    click.echo(f"{verb} {len(orphans)} blob(s), {len(stale)} temp file(s)", err=True)
