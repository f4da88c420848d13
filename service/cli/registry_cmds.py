"""Registry verbs: db, register, list, show, promote, split, archive, token, verify, gc.

Each verb is a thin call into the same repository and services the HTTP API uses. Output is a table for
people or ``--json`` for scripts; errors are one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from registry_db.errors import RegistryError
from registry_db.records import Principal
from service.cli._app import cli
from service.errors import ModelportError
from service.settings import Settings

__all__ = ()

T = TypeVar("T")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _run(work: Callable[[Any], Awaitable[T]], *, migrate: bool = True) -> T:
    """Open services from settings, run ``work(services)``, close; domain errors become one clear line."""
    from service.context import Services

    async def main() -> T:
        settings = Settings()
        services = await Services.open(
            settings, migrate=migrate and settings.resolved_database_url.startswith("sqlite")
        )
        try:
            return await work(services)
        finally:
            await services.close()

    try:
        return asyncio.run(main())
    except (RegistryError, ModelportError) as exc:
        raise click.ClickException(getattr(exc, "message", None) or str(exc)) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return str(value)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_default, indent=2, sort_keys=True))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
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
        return json.loads(arg)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None


# -- db ---------------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Registry schema migrations (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Upgrade the registry schema (run once before rolling out a new release)."""
    from registry_db.migrate import upgrade_async

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(upgrade_async(settings.resolved_database_url, revision))
    except Exception as exc:  # noqa: BLE001 - one clear line
        raise click.ClickException(f"upgrade failed: {type(exc).__name__}: {exc}") from None
    click.echo(f"registry schema at {revision}")


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the registry database."""
    from registry_db.migrate import current_async, head_revision

    settings = Settings()
    try:
        rev = asyncio.run(current_async(settings.resolved_database_url))
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"cannot read the schema revision: {type(exc).__name__}: {exc}") from None
    head = head_revision()
    click.echo(f"{rev or 'none'} (head {head}{', up to date' if rev == head else ', run: modelport db upgrade'})")


# -- versions ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("name")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--backend", required=True, help="Backend entry point, e.g. onnx, torchscript, pytorch.")
@click.option("--version", "version", default=None, help="Version label (default: next integer).")
@click.option("--architecture", default=None, help="Architecture entry point (state_dict backends).")
@click.option("--config", "config", default=None, help="Architecture config as JSON.")
@click.option("--card", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Model card JSON file.")
@click.option("--signature", default=None, help='Signature JSON: {"inputs": [...], "outputs": [...]}.')
@click.option("--preprocessing", default=None, help="Preprocessing spec JSON.")
@click.option("--postprocessing", default=None, help="Postprocessing spec JSON.")
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
    as_json: bool,
) -> None:
    """Store, verify, load, smoke-test and register ARTIFACT as a new version of model NAME."""
    import msgspec

    from service.management.manifest import VersionManifest
    from service.management.registration import register_version

    try:
        manifest = msgspec.convert(
            {
                "backend": backend,
                "version": version,
                "architecture": architecture,
                "architecture_config": _json_option(config, "--config") or {},
                "signature": _json_option(signature, "--signature"),
                "preprocessing": _json_option(preprocessing, "--preprocessing"),
                "postprocessing": _json_option(postprocessing, "--postprocessing"),
                "card": json.loads(card.read_text()) if card else {},
            },
            VersionManifest,
        )
    except (msgspec.ValidationError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"invalid manifest: {exc}") from None
    principal = Principal(name=_actor(), scopes=frozenset({"admin", "read"}))
    record = _run(lambda s: register_version(s, name, artifact=artifact, manifest=manifest, principal=principal))
    if as_json:
        _emit_json(record)
    else:
        click.echo(
            f"registered {record.model_name} version {record.version} (sha256 {record.sha256}, "
            f"{record.size_bytes} bytes)"
        )


@cli.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def list_cmd(name: str | None, as_json: bool) -> None:
    """List models, or the versions, aliases and split of model NAME."""

    async def work(s: Any) -> Any:
        if name is None:
            return await s.registry.list_models(), None, None
        return (
            await s.registry.list_versions(name),
            await s.registry.list_aliases(name),
            await s.registry.get_traffic(name),
        )

    items, aliases, traffic = _run(work)
    if as_json:
        _emit_json({"models": items} if name is None else {"versions": items, "aliases": aliases, "traffic": traffic})
        return
    if name is None:
        _table(
            ("model", "description", "created_at"), [(m.name, m.description, m.created_at.isoformat()) for m in items]
        )
        return
    by_version: dict[str, list[str]] = {}
    for alias in aliases:
        by_version.setdefault(alias.version, []).append(alias.alias)
    weights = {e.version: e.weight for e in traffic.splits} if traffic else {}
    _table(
        ("version", "backend", "status", "aliases", "weight", "size", "sha256", "created_at"),
        [
            (
                v.version,
                v.backend,
                v.status,
                ",".join(by_version.get(v.version, [])),
                weights.get(v.version, ""),
                v.size_bytes,
                v.sha256[:16],
                v.created_at.isoformat(),
            )
            for v in items
        ],
    )


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True)
def show(name: str, version: str, as_json: bool) -> None:
    """Show one version: sha256, size, created_at, signature, card."""
    record = _run(lambda s: s.registry.get_version(name, version))
    if as_json:
        _emit_json(record)
        return
    for key in (
        "model_name",
        "version",
        "number",
        "status",
        "backend",
        "architecture",
        "sha256",
        "size_bytes",
        "created_at",
        "created_by",
    ):
        value = getattr(record, key)
        click.echo(f"{key + ':':<14}{value.isoformat() if isinstance(value, datetime) else value}")
    click.echo(f"{'signature:':<14}{json.dumps(record.signature)}")
    click.echo(f"{'card:':<14}{json.dumps(record.card, indent=2)}")


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="production", show_default=True)
def promote(name: str, version: str, alias: str) -> None:
    """Point ALIAS (default production) of model NAME at VERSION (also used to roll back)."""
    record = _run(lambda s: s.registry.set_alias(name, alias, version, actor=_actor()))
    click.echo(f"{name}/{record.alias} -> {record.version}")


@cli.command()
@click.argument("name")
@click.argument("weights", nargs=-1)
@click.option("--clear", is_flag=True, help="Remove the split (unversioned calls follow 'production').")
def split(name: str, weights: tuple[str, ...], clear: bool) -> None:
    """Set the A/B split of model NAME: V=W ... with weights summing to 100, or --clear."""
    if clear:
        if weights:
            raise click.UsageError("--clear takes no V=W arguments")
        _run(lambda s: s.registry.clear_traffic(name, actor=_actor()))
        click.echo(f"{name}: split cleared")
        return
    pairs: list[tuple[str, int]] = []
    for item in weights:
        version, sep, weight = item.partition("=")
        if not sep or not weight.strip().lstrip("-").isdigit():
            raise click.UsageError(f"expected VERSION=WEIGHT, got {item!r}")
        pairs.append((version, int(weight)))
    if not pairs:
        raise click.UsageError("give VERSION=WEIGHT pairs or --clear")
    record = _run(lambda s: s.registry.set_traffic(name, pairs, actor=_actor()))
    click.echo(f"{name}: " + ", ".join(f"{e.version}={e.weight}" for e in record.splits))


@cli.command()
@click.argument("name")
@click.argument("version")
def archive(name: str, version: str) -> None:
    """Archive a version (refused while an alias or split uses it)."""
    record = _run(lambda s: s.registry.archive_version(name, version, actor=_actor()))
    click.echo(f"{name} version {record.version}: {record.status}")


# -- keys -------------------------------------------------------------------------------------------
@cli.group()
def token() -> None:
    """API keys for the admin API."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope", "scopes", multiple=True, type=click.Choice(["admin", "read"]), help="Repeatable; default read."
)
@click.option("--json", "as_json", is_flag=True)
def token_create(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    key, record = _run(lambda s: s.registry.create_api_key(name, scopes or ("read",), actor=_actor()))
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
    """Revoke a key."""
    _run(lambda s: s.registry.revoke_api_key(name, actor=_actor()))
    click.echo(f"key '{name}' revoked")


@token.command("list")
def token_list() -> None:
    """List keys (never the keys themselves)."""
    keys = _run(lambda s: s.registry.list_api_keys())
    _table(
        ("name", "scopes", "created_at", "revoked_at"),
        [(k.name, ",".join(k.scopes), k.created_at.isoformat(), k.revoked_at or "") for k in keys],
    )


# -- store maintenance ------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True)
def verify(as_json: bool) -> None:
    """Re-hash every version's artifact; exit 1 naming any mismatch or missing blob."""
    from registry_db.errors import IntegrityError

    async def work(s: Any) -> list[tuple[str, str, str, str]]:
        results = []
        for v in await s.registry.all_versions():
            try:
                await asyncio.to_thread(s.store.verified_path, v.sha256)
                results.append((v.model_name, v.version, v.sha256, "ok"))
            except IntegrityError as exc:
                results.append((v.model_name, v.version, v.sha256, f"FAILED: {exc}"))
        return results

    results = _run(work)
    bad = [r for r in results if r[3] != "ok"]
    if as_json:
        _emit_json([{"model": m, "version": v, "sha256": h, "status": st} for m, v, h, st in results])
    else:
        _table(("model", "version", "sha256", "status"), [(m, v, h[:16], st) for m, v, h, st in results])
        click.echo(f"{len(results) - len(bad)} ok, {len(bad)} failed", err=True)
    if bad:
        sys.exit(1)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def gc(dry_run: bool) -> None:
    """Remove blobs that no version references, and stale upload temp files."""

    async def work(s: Any) -> tuple[list[str], list[Path]]:
        referenced = await s.registry.referenced_sha256s()
        orphans = [sha for sha in s.store.iter_blobs() if sha not in referenced]
        stale = s.store.stale_temp_files()
        if not dry_run:
            for sha in orphans:
                s.store.delete(sha)
            for path in stale:
                path.unlink(missing_ok=True)
        return orphans, stale

    orphans, stale = _run(work)
    verb = "would remove" if dry_run else "removed"
    for sha in orphans:
        click.echo(f"{verb} blob {sha}")
    for path in stale:
        click.echo(f"{verb} temp file {path.name}")
    click.echo(f"{verb} {len(orphans)} blob(s), {len(stale)} temp file(s)", err=True)
