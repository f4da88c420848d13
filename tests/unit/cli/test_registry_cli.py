"""The registry verbs through click, on SQLite and PostgreSQL: tables and --json, audit actor, exit codes,
one-line errors without tracebacks. Versions are seeded through the Registry API and a real store."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import service.cli.registry_cmds  # noqa: F401 - attaches the verbs to the group
import service.cli.rollout_cmds  # noqa: F401
from registry_db.migrate import head_revision, upgrade_async
from registry_db.records import VersionRecord
from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore
from service.cli._app import cli
from service.context import open_artifact_store
from service.settings import Settings
from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.s3 import S3Server

ACTOR = f"cli:{getpass.getuser()}"


@dataclass
class Env:
    url: str
    settings: Settings

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), catch_exceptions=True)

    def ok(self, *args: str) -> Result:
        result = self.invoke(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def fails(self, *args: str, code: int = 1) -> str:
        """Run a verb that must fail cleanly; returns its one-line error."""
        result = self.invoke(*args)
        assert result.exit_code == code, (result.stdout, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if code == 1:
            assert len(lines) == 1, lines
        return lines[-1]

    def store(self) -> ArtifactStore:
        return open_artifact_store(self.settings)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` (``"<repository>.<method>"``, e.g. ``"catalog.add_version"``) on a fresh registry."""
        repository, name = method.split(".")

        async def run() -> Any:
            registry = Registry(create_engine(self.url))
            try:
                return await getattr(getattr(registry, repository), name)(*args, **kwargs)
            finally:
                await registry.close()

        return asyncio.run(run())

    def seed(self, model: str, data: bytes, version: str | None = None) -> VersionRecord:
        async def put() -> Any:
            async def chunks() -> Any:
                yield data

            return await self.store().put_stream(chunks())

        stored = asyncio.run(put())
        record: VersionRecord = self.call(
            "catalog.add_version",
            model,
            version=version,
            backend="onnx",
            architecture=None,
            architecture_config={},
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            storage_path=stored.storage_path,
            signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": []},
            preprocessing=None,
            postprocessing=None,
            card={"summary": f"{model} {version}"},
            actor="seed",
        )
        return record

    def seed_servable(self, model: str, seed: int, tmp_path: Path) -> VersionRecord:
        """A version that really loads (an ONNX MLP), for the verbs that refuse unloadable targets."""
        path = tmp_path / f"{model}-{seed}.onnx"
        make_mlp_onnx(path, in_dim=4, hidden=8, out=3, seed=seed, input_name="x", output_name="y")
        record = self.seed(model, path.read_bytes())
        return record


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    asyncio.run(upgrade_async(db_url))
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key in list(os.environ):
        if key.startswith("MODELPORT_") and key != "MODELPORT_TEST_PG_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELPORT_DATABASE_URL", db_url)
    yield Env(db_url, Settings(_env_file=None))  # type: ignore[call-arg]


def test_list_and_show(env: Env) -> None:
    assert env.ok("list").stdout.splitlines()[0].split() == ["model", "description", "created_at"]
    data = b"onnx-bytes" * 300
    env.seed("digits", data)
    env.seed("digits", b"second")
    env.call("routing.set_alias", "digits", "production", "1", actor="t")
    env.call("routing.set_traffic", "digits", [("1", 90), ("2", 10)], actor="t")
    models = env.ok("list").stdout
    assert "digits" in models
    table = env.ok("list", "digits").stdout.splitlines()
    assert table[0].split()[:5] == ["version", "backend", "status", "aliases", "weight"]
    assert table[2].split()[:5] == ["1", "onnx", "active", "production", "90"]
    assert table[3].split()[:4] == ["2", "onnx", "active", "10"]
    listed = json.loads(env.ok("list", "digits", "--json").stdout)
    assert [v["version"] for v in listed["versions"]] == ["1", "2"]
    assert listed["aliases"][0]["alias"] == "production" and listed["traffic"]["splits"][0]["weight"] == 90

    shown = env.ok("show", "digits", "1").stdout
    fields = dict(line.split(":", 1) for line in shown.splitlines() if ":" in line and not line.startswith(" "))
    assert fields["sha256"].strip() == hashlib.sha256(data).hexdigest()
    assert fields["size_bytes"].strip() == str(len(data))
    assert fields["created_at"].strip().endswith("+00:00")
    record = json.loads(env.ok("show", "digits", "1", "--json").stdout)
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["size_bytes"] == len(data)
    assert record["signature"]["inputs"][0]["shape"] == [-1, 4] and record["created_by"] == "seed"


def test_promote_split_archive_with_audit(env: Env, tmp_path: Path) -> None:
    for seed in range(3):
        env.seed_servable("m", seed, tmp_path)
    assert env.ok("promote", "m", "2").stdout.strip() == "m/production -> 2"
    assert env.ok("promote", "m", "2", "--alias", "staging").stdout.strip() == "m/staging -> 2"
    assert env.ok("split", "m", "1=90", "2=10").stdout.strip() == "m: 1=90, 2=10"
    assert json.loads(env.ok("split", "m", "1=50", "2=50", "--json").stdout)["splits"][1] == {
        "version": "2",
        "weight": 50,
    }
    assert "alias 'production', 'staging'" in env.fails("archive", "m", "2")
    assert "traffic split" in env.fails("archive", "m", "1", "--json")
    assert env.ok("archive", "m", "3").stdout.strip() == "m version 3: archived"
    assert env.ok("split", "m", "--clear").stdout.strip() == "m: split cleared"
    audit = env.call("audit.list_audit", model="m")
    cli_rows = [a for a in audit if a.actor == ACTOR]
    assert [a.action for a in reversed(cli_rows)] == [
        "alias.set",
        "alias.set",
        "traffic.set",
        "traffic.set",
        "version.archive",
        "traffic.clear",
    ]
    routing = env.call("routing.routing_snapshot").models["m"]
    assert routing.aliases == {"production": "2", "staging": "2"} and routing.splits == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["split", "m", "1=60", "2=60"], "sum to 100"),
        (["split", "m", "1=100", "9=0"], "positive integer"),
        (["split", "m", "7=100"], "no version '7'"),
        (["promote", "m", "9"], "no version '9'"),
        (["promote", "nope", "1"], "unknown model 'nope'"),
        (["promote", "m", "1", "--alias", "../x"], "invalid alias"),
        (["show", "m", "../../etc/passwd"], "invalid version label"),
        (["show", "/etc/passwd", "1"], "invalid model name"),
        (["list", "nope"], "unknown model"),
        (["archive", "m", "7"], "no version '7'"),
        (["token", "revoke", "nobody"], "no API key named 'nobody'"),
    ],
)
def test_refusals_are_one_clear_line_and_write_nothing(env: Env, args: list[str], message: str, tmp_path: Path) -> None:
    env.seed_servable("m", 0, tmp_path)
    env.seed_servable("m", 1, tmp_path)
    before = (env.call("audit.list_audit", limit=1000), env.call("routing.generation"))
    assert message in env.fails(*args)
    assert (env.call("audit.list_audit", limit=1000), env.call("routing.generation")) == before


@pytest.mark.parametrize("verb", [["promote", "m", "2"], ["split", "m", "1=50", "2=50"]])
def test_a_target_that_cannot_load_is_refused_as_the_server_would(env: Env, verb: list[str], tmp_path: Path) -> None:
    """The CLI runs the server's routing operations: a version whose artifact cannot load is never routed."""
    env.seed_servable("m", 0, tmp_path)
    env.seed("m", b"not an onnx model at all")
    before = (
        env.call("audit.list_audit", limit=1000),
        env.call("routing.generation"),
        env.call("routing.routing_snapshot"),
    )
    message = env.fails(*verb)
    assert message.startswith("Error: not changed: model 'm' version '2' failed to load"), message
    assert (
        env.call("audit.list_audit", limit=1000),
        env.call("routing.generation"),
        env.call("routing.routing_snapshot"),
    ) == before


@pytest.mark.parametrize(
    "args", [["split", "m", "1=abc"], ["split", "m", "1"], ["split", "m"], ["split", "m", "1=100", "--clear"]]
)
def test_split_usage_errors(env: Env, args: list[str]) -> None:
    assert "Error" in env.fails(*args, code=2)


def test_tokens(env: Env) -> None:
    created = json.loads(env.ok("token", "create", "ops", "--scope", "admin", "--json").stdout)
    assert created["name"] == "ops" and created["scopes"] == ["admin"] and created["token"].startswith("mp_")
    principal = env.call("keys.authenticate", created["token"])
    assert principal is not None and principal.has("admin")
    plain = env.ok("token", "create", "dash")
    reader = plain.stdout.strip()
    assert reader.startswith("mp_") and "read" in plain.stderr
    reader_principal = env.call("keys.authenticate", reader)
    assert reader_principal is not None and not reader_principal.has("admin")
    assert "already exists" in env.fails("token", "create", "ops")
    assert env.invoke("token", "create", "x", "--scope", "root").exit_code == 2
    listing = env.ok("token", "list").stdout
    assert "ops" in listing and "dash" in listing and created["token"] not in listing
    assert env.ok("token", "revoke", "ops").stdout.strip() == "key 'ops' revoked"
    assert env.call("keys.authenticate", created["token"]) is None
    keys = {k["name"]: k for k in json.loads(env.ok("token", "list", "--json").stdout)}
    assert keys["ops"]["revoked_at"] and keys["dash"]["revoked_at"] is None
    assert {a.actor for a in env.call("audit.list_audit", limit=100) if a.action.startswith("key.")} == {ACTOR}


def test_verify_names_each_mismatch(env: Env) -> None:
    good = env.seed("m", b"good bytes")
    bad = env.seed("m", b"bad bytes")
    gone = env.seed("other", b"gone bytes")
    report = env.ok("verify")
    assert "3 ok, 0 failed" in report.stderr
    store = env.store()
    path = store.path_for(bad.sha256)
    path.chmod(0o600)
    path.write_bytes(b"tampered")
    store.delete(gone.sha256)
    result = env.invoke("verify")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"m version {bad.version} ({bad.sha256})" in result.stderr and "integrity" in result.stderr
    assert f"other version {gone.version} ({gone.sha256})" in result.stderr and "missing" in result.stderr
    assert good.sha256 not in result.stderr
    as_json = env.invoke("verify", "--json")
    assert as_json.exit_code == 1
    statuses = {(r["model"], r["version"]): r["status"] for r in json.loads(as_json.stdout)}
    assert statuses[("m", good.version)] == "ok" and statuses[("m", bad.version)].startswith("FAILED")


def test_gc_removes_only_old_unreferenced_blobs_and_stale_temp_files(env: Env) -> None:
    kept = env.seed("m", b"referenced")
    store = env.store()

    async def put(data: bytes) -> Any:
        async def chunks() -> Any:
            yield data

        return await store.put_stream(chunks())

    orphan = asyncio.run(put(b"orphan"))
    young = asyncio.run(put(b"young orphan"))
    stale = store.root / "tmp" / "upload-1-1.part"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    for path in (orphan.path, stale, store.path_for(kept.sha256)):
        os.utime(path, (old, old))

    dry = env.ok("gc", "--dry-run")
    assert f"would remove blob {orphan.sha256}" in dry.stdout and orphan.path.exists()
    result = json.loads(env.ok("gc", "--json").stdout)
    assert result == {"dry_run": False, "blobs": [orphan.sha256], "temp_files": [stale.name]}
    assert not orphan.path.exists() and not stale.exists()
    assert young.path.exists() and store.verified_path(kept.sha256)
    assert env.ok("gc", "--min-age", "0").stdout.strip() == f"removed blob {young.sha256}"
    assert env.ok("verify").exit_code == 0


def test_verify_and_gc_act_on_the_bucket_of_record(
    env: Env, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.create_bucket()
    for key, value in s3_server.env(f"s3://{bucket}/cli").items():
        monkeypatch.setenv(key, value)
    env.settings = Settings(_env_file=None)  # type: ignore[call-arg]
    good, bad = env.seed("m", b"good bytes"), env.seed("m", b"bad bytes")
    orphan = asyncio.run(env.store().put_stream(_chunks(b"orphan bytes")))
    assert s3_server.keys(bucket) == sorted(f"cli/{r.storage_path}" for r in (good, bad, orphan))
    assert "2 ok, 0 failed" in env.ok("verify").stderr

    s3_server.put(bucket, f"cli/{bad.storage_path}", b"tampered")  # the bucket is the truth, not a cache
    result = env.invoke("verify")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"m version {bad.version} ({bad.sha256})" in result.stderr and "integrity" in result.stderr
    assert good.sha256 not in result.stderr

    assert json.loads(env.ok("gc", "--json").stdout)["blobs"] == []  # the orphan is young
    assert env.ok("gc", "--min-age", "0").stdout.strip() == f"removed blob {orphan.sha256}"
    assert s3_server.keys(bucket) == sorted(f"cli/{r.storage_path}" for r in (good, bad))


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_bad_json_options_are_usage_errors(env: Env, tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"x")
    assert "--config" in env.fails("register", "m", str(artifact), "--backend", "onnx", "--config", "{nope", code=2)
    assert "--signature" in env.fails("register", "m", str(artifact), "--backend", "onnx", "--signature", "[]", code=2)
    card = tmp_path / "card.json"
    card.write_text("not json")
    assert "--card" in env.fails("register", "m", str(artifact), "--backend", "onnx", "--card", str(card), code=2)
    assert env.call("catalog.list_models") == []


def test_register_checks_the_manifest_like_the_api(env: Env, tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"x")
    bad_tensor = '{"inputs": [{"name": "x", "datatype": "FP33", "shape": [-1, 4]}]}'
    message = env.fails("register", "m", str(artifact), "--backend", "onnx", "--signature", bad_tensor)
    assert message.startswith("Error: invalid manifest: signature.inputs.0.datatype: unknown V2 datatype 'FP33'")
    message = env.fails("register", "m", str(artifact), "--backend", "onnx", "--version", "../1")
    assert "invalid manifest: version: invalid version label '../1'" in message
    message = env.fails("register", "m", str(artifact), "--backend", "onnx", "--config", '{"hidden": 4}')
    assert "architecture_config is given without an architecture" in message
    assert env.call("catalog.list_models") == []


def test_unreachable_database_is_one_line(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert "unavailable" in env.fails("list")


def test_unmigrated_postgres_asks_for_upgrade(
    fresh_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELPORT_ARTIFACT_DIR", raising=False)
    monkeypatch.setenv("MODELPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELPORT_DATABASE_URL", fresh_pg_url)
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"Error: registry schema is at nothing, not {head_revision()}: run 'modelport db upgrade'"
    )


def test_embedded_sqlite_migrates_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELPORT_DATABASE_URL", raising=False)
    monkeypatch.delenv("MODELPORT_ARTIFACT_DIR", raising=False)
    monkeypatch.setenv("MODELPORT_DATA_DIR", str(tmp_path / "fresh"))
    result = CliRunner().invoke(cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"models": []}
    assert (tmp_path / "fresh" / "registry.db").exists()


def test_bad_setting_is_one_line_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELPORT_MAX_ARTIFACT_BYTES", "lots")
    for args in (["list"], ["db", "current"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.stderr.startswith("Error: invalid settings: MODELPORT_MAX_ARTIFACT_BYTES")


def test_shadow_and_rollout_verbs(env: Env, tmp_path: Path) -> None:
    for seed in range(3):
        env.seed_servable("m", seed, tmp_path)
    env.ok("promote", "m", "1")
    assert env.ok("split", "m", "1=100", "--shadow", "3=25").stdout.strip() == "m: 1=100; shadow 3 at 25%"
    assert env.call("routing.routing_snapshot").models["m"].shadow_version == "3"
    assert "already in the split" in env.fails("split", "m", "1=100", "--shadow", "1=25")
    assert "VERSION=PERCENT" in env.fails("split", "m", "1=100", "--shadow", "3", code=2)
    env.ok("split", "m", "--clear")
    started = json.loads(env.ok("rollout", "start", "m", "2", "--steps", "0,50,100", "--json").stdout)
    assert (started["state"], started["control"], started["weight"]) == ("running", "1", 0)
    assert env.call("routing.get_traffic", "m").shadow_version == "2"  # step 0: a shadow stage
    assert "already has a running rollout" in env.fails("rollout", "start", "m", "3")
    assert "must increase" in env.fails("rollout", "start", "m", "3", "--steps", "50,40")
    listed = json.loads(env.ok("rollout", "status", "m", "--json").stdout)
    assert [r["id"] for r in listed] == [started["id"]]
    aborted = json.loads(env.ok("rollout", "abort", "m", str(started["id"]), "--json").stdout)
    assert aborted["state"] == "aborted" and [d["action"] for d in aborted["decisions"]] == ["start", "abort"]
    assert env.call("routing.get_traffic", "m") is None
    assert "already ended" in env.fails("rollout", "abort", "m", str(started["id"]))
    assert "no rollout 99" in env.fails("rollout", "status", "m", "99")


def test_register_says_it_created_the_model_and_refuses_the_same_bytes(env: Env, tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    make_mlp_onnx(artifact, in_dim=4, hidden=8, out=3, seed=5)
    first = env.ok("register", "m", str(artifact), "--backend", "onnx", "--json")
    record = json.loads(first.stdout)  # stdout is the one JSON document; the notice is on stderr
    assert record["model_created"] is True and record["version"] == "1"
    assert "created model m (it did not exist)" in first.stderr
    message = env.fails("register", "m", str(artifact), "--backend", "onnx", "--json")
    assert "already has these bytes as version '1'" in message and "--allow-duplicate" in message
    again = env.ok("register", "m", str(artifact), "--backend", "onnx", "--allow-duplicate")
    assert again.stdout.startswith("registered m version 2 ") and "created model" not in again.stderr
