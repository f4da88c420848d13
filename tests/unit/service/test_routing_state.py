"""RoutingState: a new snapshot takes effect only once its targets load; a target that cannot load holds that
model back (reported) while the others move on; an unreachable registry keeps the last snapshot serving."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from registry_db.errors import DatabaseUnavailable
from registry_db.errors import NotFound as RegistryNotFound
from registry_db.records import ModelRouting, RoutingSnapshot, SplitEntry, VersionRecord
from service.errors import EngineUnavailable, NotFound
from service.inference.dataplane import DataPlane
from service.inference.engine_pool import EnginePool
from service.inference.routing_state import RoutingState
from service.observability.metrics import Metrics
from service.plugins import PluginRegistry
from service.settings import Settings
from tests.fakes.loading import CountingLoader, record


@dataclass
class FakeRegistry:
    """The three reads RoutingState makes (``routing.generation``, ``routing.routing_snapshot``,
    ``catalog.get_version``), over an in-memory snapshot."""

    snapshot: RoutingSnapshot
    shas: dict[str, str] = field(default_factory=dict)
    down: bool = False
    calls: int = 0

    async def generation(self) -> int:
        self.calls += 1
        if self.down:
            raise DatabaseUnavailable("registry database unreachable")
        return self.snapshot.generation

    async def routing_snapshot(self) -> RoutingSnapshot:
        return self.snapshot

    async def get_version(self, model: str, version: str) -> VersionRecord:
        if version not in self.shas:
            raise RegistryNotFound(f"model '{model}' has no version '{version}'")
        return record(version, sha=self.shas[version])

    @property
    def routing(self) -> FakeRegistry:
        return self  # generation and routing_snapshot live on the routing repository

    @property
    def catalog(self) -> FakeRegistry:
        return self  # get_version lives on the catalog

    def publish(self, routing: ModelRouting) -> None:
        self.snapshot = RoutingSnapshot(self.snapshot.generation + 1, {"m": routing})


def _routing(production: str, *splits: tuple[str, int]) -> ModelRouting:
    return ModelRouting(
        aliases={"production": production},
        splits=tuple(SplitEntry(v, w) for v, w in splits),
        active_versions=("1", "2", "3"),
    )


@pytest.fixture
def parts() -> tuple[FakeRegistry, CountingLoader, EnginePool, RoutingState]:
    shas = {"1": "11" * 32, "2": "22" * 32, "3": "33" * 32}
    registry = FakeRegistry(RoutingSnapshot(1, {"m": _routing("1")}), shas)
    loader = CountingLoader(fail={shas["3"]: RuntimeError("corrupt weights")})
    settings = Settings(max_batch_delay_ms=0.0, data_dir="/tmp/unused")  # type: ignore[call-arg]
    pool = EnginePool(
        settings=settings, store=None, plugins=PluginRegistry(autoload=False), metrics=Metrics(), loader=loader
    )
    state = RoutingState(registry=registry, pool=pool, metrics=Metrics(), poll_interval_s=60)
    return registry, loader, pool, state


async def test_a_new_target_loads_before_traffic_moves_and_a_broken_one_holds_the_model_back(
    parts: tuple[FakeRegistry, CountingLoader, EnginePool, RoutingState],
) -> None:
    registry, loader, pool, state = parts
    assert await state.refresh(force=True)
    assert (await state.resolve("m", None, None)).version == "1"
    assert pool.is_loaded("m", "1") and state.held_back == {}

    registry.publish(_routing("2"))
    assert await state.refresh()
    assert pool.is_loaded("m", "2")  # loaded and warm before the snapshot switched
    assert (await state.resolve("m", None, None)).version == "2"

    registry.publish(_routing("2", ("2", 50), ("3", 50)))  # version 3 cannot load
    assert await state.refresh()
    assert "corrupt weights" in state.held_back["m"]
    assert state.snapshot.generation == registry.snapshot.generation
    for i in range(50):  # the previous routing keeps serving: never the broken arm
        assert (await state.resolve("m", None, f"key-{i}")).version == "2"
    assert not await state.refresh()  # same generation: nothing to do
    await pool.close()
    assert loader.calls.count("33" * 32) == 1


async def test_an_unreachable_registry_keeps_the_last_snapshot(
    parts: tuple[FakeRegistry, CountingLoader, EnginePool, RoutingState],
) -> None:
    registry, _, pool, state = parts
    await state.refresh(force=True)
    registry.down = True
    assert not await state.refresh()
    assert state.last_error == "registry database unreachable"
    assert (await state.resolve("m", "1", None)).version == "1"
    registry.down = False
    registry.snapshot = replace(registry.snapshot, generation=registry.snapshot.generation + 1)
    assert await state.refresh() and state.last_error is None
    await pool.close()


async def test_unknown_names_say_what_is_missing(
    parts: tuple[FakeRegistry, CountingLoader, EnginePool, RoutingState],
) -> None:
    registry, _, pool, state = parts
    await state.refresh(force=True)
    # worded as Triton's (clients match on the prefix), with our detail after it
    with pytest.raises(NotFound, match=r"^Request for unknown model: 'nope' is not found$"):
        await state.resolve("nope", None, None)
    with pytest.raises(NotFound, match=r"^Request for unknown model: 'm' version 9 is not found \(active versions: 1"):
        await state.resolve("m", "9", None)
    registry.publish(ModelRouting(aliases={}, active_versions=("1",)))
    await state.refresh()
    with pytest.raises(
        NotFound, match=r"^Request for unknown model: 'm' has no available versions: .*no traffic split"
    ):
        await state.resolve("m", None, None)
    await pool.close()


async def test_unknown_names_do_not_wait_on_a_registry_known_to_be_down(
    parts: tuple[FakeRegistry, CountingLoader, EnginePool, RoutingState],
) -> None:
    registry, _, pool, state = parts
    await state.refresh(force=True)
    registry.down = True
    assert not await state.refresh() and state.last_error is not None
    calls_before = registry.calls
    state._last_refresh = 0.0  # noqa: SLF001 - a miss would otherwise look again at once
    with pytest.raises(NotFound, match="Request for unknown model: 'new' is not found"):
        await state.resolve("new", None, None)
    with pytest.raises(NotFound, match="Request for unknown model: 'm' version 7 is not found"):
        await state.resolve("m", "7", None)
    assert registry.calls == calls_before  # answered from the snapshot, no trip to the database
    await pool.close()


async def test_readiness_is_refused_while_a_model_is_held_back_and_recovers_on_retry(
    parts: tuple[FakeRegistry, CountingLoader, EnginePool, RoutingState], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 8: a replica serving a routing the registry no longer sets is not ready (503), so traffic
    goes to replicas that serve the routed version; the held-back target is retried without a new generation."""
    registry, loader, pool, state = parts
    dataplane = DataPlane(routing=state, pool=pool, plugins=PluginRegistry(autoload=False))
    dataplane.ready = True
    await state.refresh(force=True)
    assert dataplane.server_ready()["ready"] is True
    registry.publish(_routing("3"))  # version 3 cannot load: m stays on 1
    assert await state.refresh()
    with pytest.raises(EngineUnavailable, match="cannot serve the routing the registry sets for 'm': .*corrupt"):
        dataplane.server_ready()
    assert not await state.refresh()  # within the retry interval: no reload attempt
    loader.fail.clear()  # the blob is repaired
    monkeypatch.setattr("service.inference.routing_state.HELD_BACK_RETRY_S", 0.0)
    assert await state.refresh()  # same generation, retried because m was held back
    assert state.held_back == {} and dataplane.server_ready()["ready"] is True
    assert (await state.resolve("m", None, None)).version == "3"
    await pool.close()
