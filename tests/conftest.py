"""Shared fixtures: settings in a temp dir, and a registry database parametrised over SQLite and PostgreSQL.

PostgreSQL comes from ``MODELPORT_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); each
test gets a fresh, uniquely named database that is dropped afterwards. Where the server is not reachable
the PostgreSQL cases are skipped with the reason, never silently passed.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

from registry_db.migrate import upgrade_async
from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore
from service.settings import Settings

# In-process apps never bind the default gRPC port (8001): parallel runs and a real server on this machine would
# collide. Tests of the gRPC edge give their server a free port (tests/helpers/server.py: run_server(grpc=True)).
os.environ.setdefault("MODELPORT_GRPC_PORT", "0")
# structlog's default console renderer draws rich tracebacks with every frame's locals: seconds per logged
# exception in tests that provoke backend failures on purpose. Same output otherwise, plain tracebacks.
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.dev.set_exc_info,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
    ]
)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering (higher-scoped fixtures)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``soak`` run only when asked for (``-m soak`` or ``MODELPORT_TEST_SOAK=1``): the default suite
    must stay within its time budget. Under pytest-xdist, the order of the modules changes (``_parallel_order``)."""
    _parallel_order(config, items)
    if "soak" in (config.getoption("markexpr", "") or "") or os.environ.get("MODELPORT_TEST_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: run with -m soak or MODELPORT_TEST_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


# --- parallel runs (pytest-xdist, scripts/test: -n 2 --dist loadfile) ---------------------------------------------

DEMO_SERVER_MODULES = frozenset(
    {
        "tests/browser/test_console.py",
        "tests/browser/test_docs.py",
        "tests/integration/test_openapi_examples.py",
        "tests/integration/test_serve_demo.py",
    }
)
"""The modules whose tests use the session's ``demo_server``: one unit of work under ``--dist loadfile``, so the
demo trains once. A module missing here still passes, on whichever worker gets it, at the cost of one more
training on that worker."""


SLOW_MODULES = (
    "tests/unit/test_code_style.py",
    "tests/integration/test_experiments_replicas.py",
    "tests/integration/test_cli_register.py",
    "tests/integration/test_fuzz_openapi.py",
    "tests/unit/cli/test_registry_cli.py",
    "tests/unit/registry/test_catalog.py",
    "tests/migrations/test_migrations.py",
    "tests/integration/test_registration_kill.py",
    "tests/integration/test_third_party_plugin.py",
)
"""The longest modules (10-45 s each on a 2-core box), handed out first under pytest-xdist (after the demo's) so
that no worker is left with one of them at the end while the other idles. Only the order changes."""


def _parallel_order(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (workers only: each sorts the same way, so their collections still agree), the demo's
    modules first, then ``SLOW_MODULES``, then the rest in collection order. Serial runs keep pytest's order."""
    if getattr(config, "workerinput", None) is None:
        return

    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0]
        if module in DEMO_SERVER_MODULES:
            return 0
        return 1 + SLOW_MODULES.index(module) if module in SLOW_MODULES else 1 + len(SLOW_MODULES)

    items.sort(key=rank)  # stable: a module's tests keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the ``DEMO_SERVER_MODULES`` as one file: a module's tests (and so its module-scoped
    server processes) stay on one worker, and the demo's. (``--dist loadgroup`` would do it with marks, but
    pytest-xdist 3.8 renames the node ids it groups through ``Item._nodeid``, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # units in collection order (see SLOW_MODULES), not by test count

    class ModulesAndDemo(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "demo_server" if module in DEMO_SERVER_MODULES else module

    return ModulesAndDemo(config, log)


class _MachineLock:
    """A fair readers-writer lock between the pytest-xdist workers of one run (``flock`` on two files in the
    run's shared temp dir): every test holds it shared, a test marked ``exclusive`` (timing assertions that
    need the machine's cores to themselves) holds it alone. ``gate`` makes it fair: a waiting exclusive test
    holds it, so the other worker cannot start its next test and starve it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._gate = (folder / "machine-gate.lock").open("a+")
        self._main = (folder / "machine.lock").open("a+")

    @contextmanager
    def hold(self, *, exclusive: bool) -> Iterator[None]:
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._main, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(self._gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self._main, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(self._gate, fcntl.LOCK_UN)


_machine_lock: list[_MachineLock] = []
_demo_started: list[bool] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under pytest-xdist, each test (setup, call, teardown) holds the workers' machine lock: alone where it is
    marked ``exclusive``, or where it is the one that starts ``demo_server`` (its start-up time is asserted by
    test_serve_demo.py); shared otherwise. Without xdist, nothing to do."""
    workerinput = getattr(item.config, "workerinput", None)
    if workerinput is None:
        return (yield)
    if not _machine_lock:
        _machine_lock.append(_MachineLock(Path(item.config.option.basetemp).parent / "modelport-machine-lock"))
    exclusive = item.get_closest_marker("exclusive") is not None or (
        "demo_server" in item.fixturenames and not _demo_started
    )
    with _machine_lock[0].hold(exclusive=exclusive):
        return (yield)


PG_URL = os.environ.get("MODELPORT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORE_MAX_BYTES = 10 * 1024 * 1024


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


_pg_state: dict[str, str | None] = {}


def pg_unavailable_reason() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can (checked once per session)."""
    if "reason" not in _pg_state:
        try:
            asyncio.run(_pg_admin("SELECT 1"))
            _pg_state["reason"] = None
        except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
            _pg_state["reason"] = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
    return _pg_state["reason"]


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A new empty PostgreSQL database (asyncpg URL), dropped after the test; skips with the reason if absent."""
    reason = pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = _asyncpg_dsn(PG_URL).rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty (unmigrated) database URL: SQLite in ``tmp_path``, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
async def registry(db_url: str) -> AsyncIterator[Registry]:
    """A registry on ``db_url``, migrated to head, closed after the test."""
    await upgrade_async(db_url)
    reg = Registry(create_engine(db_url))
    try:
        yield reg
    finally:
        await reg.close()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    """An empty artifact store in ``tmp_path/artifacts`` with a 10 MiB limit."""
    return ArtifactStore(tmp_path / "artifacts", max_bytes=STORE_MAX_BYTES)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings rooted in ``tmp_path/data`` (no ``.env``, environment still applies); overrides by name."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", **overrides}
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def tmp_settings(settings_factory: Callable[..., Settings]) -> Settings:
    """Default settings with the data dir (SQLite registry, artifacts) in ``tmp_path/data``."""
    return settings_factory()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3-compatible HTTP endpoint (moto's server process) shared by the session; one bucket per test."""
    from tests.helpers.s3 import run_s3_server

    with run_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``modelport serve --demo`` (``digits`` v1/v2, production v1, split 90/10) shared by the session:
    training the demo takes most of its start-up, so the browser and OpenAPI-example tests share it."""
    pytest.importorskip("modelport_zoo")
    from tests.helpers.server import run_server

    # training competes with whatever else the machine runs: allow for a loaded CI box (test_serve_demo.py asserts
    # the start-up time it records, ServerProcess.ready_after)
    with run_server(tmp_path_factory.mktemp("demo") / "data", args=("--demo",), ready_timeout=300) as server:
        _demo_started.append(True)
        yield server
