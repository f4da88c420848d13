"""Triton's model-repository and model-configuration extensions over a registry, protocol-neutral.

Triton's repository is a directory it loads models from; modelport's is the registry, which every replica
routes from. The verbs therefore mean what fits a registry:

* **index**: every model the routing snapshot knows, one entry per active version, with this replica's state:
  ``READY`` when its engine is loaded here, ``LOADING`` while it loads, else ``UNAVAILABLE`` with the reason
  (the last load error, or "not loaded on this replica").
* **load**: load and warm, on this replica, the engines of the versions an unversioned call may land on (the
  split's arms, else ``production``). Routing does not change: promotion and splits stay admin operations.
* **unload**: drop this replica's engines of the model. Routing does not change either, so the next call that
  routes there loads the engine again (on first use, as after an LRU eviction).

The configuration is Triton-shaped from what the registry and the settings say: inputs and outputs from the
signature (dims without the batch dimension when the model batches), ``max_batch_size`` and
``dynamic_batching`` from the batcher settings, platform and backend from the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import NotFound
from service.inference.dataplane import DataPlane
from service.inference.engine_pool import EnginePool
from service.inference.routing import targets
from service.inference.routing_state import RoutingState, unknown_model
from service.observability.metrics import Metrics
from service.observability.triton_stats import VersionStatistics, version_statistics
from service.plugins import TensorSpec
from service.settings import Settings

__all__ = ("IndexEntry", "ModelConfigDescription", "ModelRepository")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One model version in the repository index, with its state on this replica."""

    name: str
    version: str
    state: str
    """``READY``, ``LOADING`` or ``UNAVAILABLE`` (Triton's state names)."""
    reason: str


@dataclass(frozen=True, slots=True)
class ModelConfigDescription:
    """What the model-configuration extension reports for one version."""

    name: str
    version: str
    platform: str
    backend: str
    max_batch_size: int
    """0 when the model does not batch (a fixed first dimension); then ``dims`` are the full shapes."""
    inputs: tuple[TensorSpec, ...]
    """Shapes as Triton's ``dims``: without the batch dimension when ``max_batch_size`` > 0."""
    outputs: tuple[TensorSpec, ...]
    max_queue_delay_us: int
    max_queue_size: int


def _batchable(specs: tuple[TensorSpec, ...]) -> bool:
    """The validator's rule: every input has a dynamic first (batch) dimension."""
    return bool(specs) and all(spec.shape and spec.shape[0] < 0 for spec in specs)


def _dims(specs: tuple[TensorSpec, ...], batched: bool) -> tuple[TensorSpec, ...]:
    if not batched:
        return specs
    return tuple(
        TensorSpec(spec.name, spec.datatype, tuple(spec.shape[1:]) if spec.shape and spec.shape[0] < 0 else spec.shape)
        for spec in specs
    )


class ModelRepository:
    """The repository and configuration extensions for one worker; see the module docstring."""

    def __init__(
        self, *, dataplane: DataPlane, routing: RoutingState, pool: EnginePool, metrics: Metrics, settings: Settings
    ) -> None:
        self._dataplane = dataplane
        self._metrics = metrics
        self._routing = routing
        self._pool = pool
        self._settings = settings

    def index(self, *, ready_only: bool = False) -> list[IndexEntry]:
        """Every active version of every model in the routing snapshot (``ready_only``: loaded here)."""
        entries: list[IndexEntry] = []
        for name, routing in sorted(self._routing.snapshot.models.items()):
            for version in routing.active_versions:
                if self._pool.is_loaded(name, version):
                    entries.append(IndexEntry(name, version, "READY", ""))
                elif ready_only:
                    continue
                elif self._pool.is_loading(name, version):
                    entries.append(IndexEntry(name, version, "LOADING", ""))
                else:
                    reason = self._pool.failure(name, version) or "not loaded on this replica"
                    entries.append(IndexEntry(name, version, "UNAVAILABLE", reason))
        return entries

    async def load(self, model: str) -> tuple[str, ...]:
        """Load and warm the routed versions of ``model`` here; the versions now loaded.

        Raises NotFound for an unknown model or one with nothing routed, EngineUnavailable when a load fails.
        """
        versions = targets(await self._routing.known_routing(model))
        if not versions:
            raise NotFound(
                f"Request for unknown model: '{model}' has no available versions: nothing is routed to it "
                "(set a traffic split or promote a version first)"
            )
        for version in versions:
            record = await self._routing.resolve(model, version, None)
            await self._pool.acquire(record, retry_failed=True)
        return versions

    def unload(self, model: str) -> tuple[str, ...]:
        """Drop this replica's engines of ``model``; the versions dropped (NotFound for an unknown model)."""
        routing = self._routing.model_routing(model)
        loaded = tuple(version for name, version in self._pool.loaded_keys if name == model)
        if routing is None and not loaded:
            raise NotFound(unknown_model(model))
        for version in loaded:
            self._pool.unload(model, version)
        return loaded

    async def config(self, model: str, version: str | None, routing_key: str | None) -> ModelConfigDescription:
        """The configuration of the version metadata describes for this call (the routing rule's)."""
        described = await self._dataplane.model_metadata(model, version, routing_key)
        record = await self._routing.resolve(model, described.version, None)
        batched = _batchable(described.inputs)
        settings = self._settings
        return ModelConfigDescription(
            name=model,
            version=described.version,
            platform=described.platform,
            backend=record.backend,
            max_batch_size=settings.max_batch_size if batched else 0,
            inputs=_dims(described.inputs, batched),
            outputs=_dims(described.outputs, batched),
            max_queue_delay_us=int(settings.max_batch_delay_ms * 1000),
            max_queue_size=settings.max_queue,
        )

    async def statistics(self, model: str, version: str | None) -> list[VersionStatistics]:
        """Statistics of every active version (``model`` empty: of every model), or of the one named."""
        if not model:
            wanted = [(name, v) for name, r in sorted(self._routing.snapshot.models.items()) for v in r.active_versions]
            return version_statistics(self._metrics, wanted)
        if version is not None:
            await self._routing.resolve(model, version, None)  # NotFound for an unknown model or version
            return version_statistics(self._metrics, [(model, version)])
        routing = await self._routing.known_routing(model)
        return version_statistics(self._metrics, [(model, v) for v in routing.active_versions])
