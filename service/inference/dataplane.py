"""The data plane: the one pipeline behind every protocol edge (the shape of MLServer's ``DataPlane``).

Edges (HTTP V2, HTTP V1 predict, later gRPC) only decode their wire format into an :class:`InferCall`, call
:meth:`DataPlane.infer`, and encode the :class:`InferResult` or map the error. Everything in between lives
here, in this order:

    resolve (the one routing rule) -> select outputs -> validate -> preprocess -> queue + batch ->
    postprocess -> observe

Observation is a hook: every call, served or refused, reaches each :class:`InferenceObserver` exactly once
(metrics, per-version stats and failure logs today; shadow traffic and feedback attach there). Metadata and
readiness are answered here too, through the same rule, so that ``GET /v2/models/m``, ``.../ready`` and
``infer`` name the same version for the same routing key. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from registry_db.records import VersionRecord
from service import __version__
from service.codecs.v2 import DecodedTensor, OutputRequest
from service.errors import EngineUnavailable, InvalidInput, status_of
from service.inference.engine_pool import EnginePool
from service.inference.processing import Postprocessed
from service.inference.routing import targets
from service.inference.routing_state import RoutingState, held_back_message
from service.plugins import PluginRegistry, TensorSpec, UnknownPlugin

__all__ = (
    "EXTENSIONS",
    "DataPlane",
    "InferCall",
    "InferResult",
    "InferenceEvent",
    "InferenceObserver",
    "InputBinder",
    "ModelDescription",
)

EXTENSIONS = ("binary_tensor_data", "model_configuration", "model_repository", "statistics")
"""Protocol extensions this server always implements (``GET /v2``); the runtime adds those its settings serve."""

_T = TypeVar("_T")

InputBinder = Callable[[tuple[TensorSpec, ...]], Sequence[DecodedTensor]]
"""Decodes inputs that need the served version's signature first (V1 instances carry no names)."""


@dataclass(slots=True)
class InferCall:
    """One inference call as an edge hands it over; the data plane fills in ``served_version``."""

    model: str
    version: str | None
    """An explicit version, or None for the routing rule."""
    protocol: str
    """Which edge and route (``v2_infer``, ``v1_predict``); the metrics ``route`` label."""
    request_id: str
    inputs: Sequence[DecodedTensor] | InputBinder
    routing_key: str | None = None
    requested_outputs: Sequence[OutputRequest] | None = None
    """The outputs asked for, in the order to return them (None: all, in signature order)."""
    timeout_s: float | None = None
    """Longest wait in the queue (None: no bound)."""
    postprocess: bool = False
    """Run the version's postprocessor (the predict route's predictions and confidence scores)."""
    served_version: str | None = None
    """The version routing resolved, once it did (edges echo it, on errors too)."""
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class InferResult:
    """What a call produced, protocol-neutral."""

    model: str
    version: str
    outputs: dict[str, np.ndarray]
    """The selected outputs, each ``(batch, *dims)``."""
    output_specs: tuple[TensorSpec, ...]
    postprocessed: Postprocessed | None
    preprocessing_ms: float
    inference_ms: float
    postprocessing_ms: float


@dataclass(slots=True)
class InferenceEvent:
    """One finished call, as observers see it (inputs are there for shadows; never log them)."""

    call: InferCall
    result: InferResult | None
    error: BaseException | None
    status: int
    """The outcome as an HTTP status number (200 served; else the error's class status)."""
    duration_s: float


class InferenceObserver(Protocol):
    """Sees every call once, after it finished; must be cheap and must not raise."""

    def observe(self, event: InferenceEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """What metadata says about a model version (the V2 metadata response, protocol-neutral)."""

    name: str
    version: str
    """The version described: explicit, or the one the routing rule names."""
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _specs(record: VersionRecord, key: str) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t["name"], t["datatype"], tuple(t["shape"])) for t in record.signature.get(key, []))


def _select(outputs: dict[str, np.ndarray], requested: Sequence[OutputRequest] | None) -> dict[str, np.ndarray]:
    """The outputs to answer with: the requested ones, else all (encoders order them by the signature)."""
    if requested:
        return {entry.name: outputs[entry.name] for entry in requested}
    return outputs


class DataPlane:
    """One per worker process; shared by every protocol edge."""

    def __init__(
        self,
        *,
        routing: RoutingState,
        pool: EnginePool,
        plugins: PluginRegistry,
        observers: Sequence[InferenceObserver] = (),
        extensions: Sequence[str] = EXTENSIONS,
    ) -> None:
        self._routing = routing
        self._extensions = list(extensions)
        self._pool = pool
        self._plugins = plugins
        self._observers = tuple(observers)
        self.ready = False
        """False until start-up loaded the routed engines, and again once draining begins."""
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.calm_below = 0
        """:meth:`calm` returns once at most this many calls are in flight (0: only when idle)."""
        self._calm = asyncio.Event()
        self._calm.set()

    # -- inference ----------------------------------------------------------------------------------
    async def infer(self, call: InferCall, encode: Callable[[InferResult], _T]) -> _T:
        """Run the whole pipeline for one call and ``encode`` its result for the edge's wire.

        Raises the domain error that refused the call. Observers see the call after ``encode`` ran, so a
        result that could not be encoded counts as the failure the client saw. (One coroutine, on purpose:
        every extra frame on this path costs about a microsecond per request.)
        """
        self.inflight += 1
        self._idle.clear()
        result: InferResult | None = None
        error: BaseException | None = None
        try:
            # resolve: the one routing rule, then the loaded engine (loading it on first use)
            record = await self._routing.resolve(call.model, call.version, call.routing_key)
            served = self._pool.get_loaded(record.model_name, record.version)
            if served is None or served.record.sha256 != record.sha256:
                served = await self._pool.acquire(record)
            call.served_version = record.version
            # select outputs: refuse unknown names before spending compute
            requested = call.requested_outputs
            if requested:
                known = {spec.name for spec in served.outputs}
                for entry in requested:
                    if entry.name not in known:
                        raise InvalidInput(
                            f"unknown output '{entry.name}' requested: the model's outputs are {sorted(known)}"
                        )
            # validate -> preprocess -> queue + batch -> postprocess
            started = time.perf_counter()
            tensors = call.inputs(served.inputs) if callable(call.inputs) else call.inputs
            inputs = served.validator.validate(tensors)
            if served.preprocess is not None:
                inputs = served.preprocess(inputs)
            queued = time.perf_counter()
            outputs = await served.batcher.submit(inputs, timeout_s=call.timeout_s)
            done = time.perf_counter()
            selected = _select(outputs, requested)
            postprocessed = served.postprocess(selected, served.outputs) if call.postprocess else None
            result = InferResult(
                call.model,
                record.version,
                selected,
                served.outputs,
                postprocessed,
                (queued - started) * 1000.0,
                (done - queued) * 1000.0,
                (time.perf_counter() - done) * 1000.0 if call.postprocess else 0.0,
            )
            return encode(result)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.inflight -= 1
            if self.inflight <= self.calm_below:
                self._calm.set()
                if not self.inflight:
                    self._idle.set()
            self._observe(call, result, error)

    async def run_version(
        self, model: str, version: str, inputs: Sequence[DecodedTensor] | InputBinder
    ) -> tuple[dict[str, np.ndarray], tuple[TensorSpec, ...]]:
        """The pipeline for one explicit version without routing by the split or observation (shadow copies):
        validate -> preprocess -> queue + batch. Returns every output, ``(batch, *dims)``, and their specs."""
        record = await self._routing.resolve(model, version, None)
        served = self._pool.get_loaded(record.model_name, record.version)
        if served is None or served.record.sha256 != record.sha256:
            served = await self._pool.acquire(record)
        tensors = inputs(served.inputs) if callable(inputs) else inputs
        batch = served.validator.validate(tensors)
        if served.preprocess is not None:
            batch = served.preprocess(batch)
        return await served.batcher.submit(batch, timeout_s=None), served.outputs

    def reject(self, call: InferCall, error: BaseException) -> None:
        """Account a call its edge refused before it reached :meth:`infer` (an undecodable body)."""
        self._observe(call, None, error)

    def _observe(self, call: InferCall, result: InferResult | None, error: BaseException | None) -> None:
        status = 200 if error is None else status_of(error)
        event = InferenceEvent(call, result, error, status, time.perf_counter() - call.started)
        for observer in self._observers:
            observer.observe(event)

    # -- metadata and health --------------------------------------------------------------------------
    @staticmethod
    def live() -> bool:
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelport", "version": __version__, "extensions": list(self._extensions)}

    def server_ready(self) -> dict[str, Any]:
        """Readiness detail, or EngineUnavailable while starting up, draining, or serving a model by routing the
        registry no longer says (a held-back target: traffic belongs on replicas that serve the routed version)."""
        if not self.ready:
            raise EngineUnavailable("not ready: starting up or draining", retry_after_s=1)
        if self._routing.held_back:
            raise EngineUnavailable(held_back_message(self._routing.held_back))
        return {"ready": True, "held_back": self._routing.held_back, "generation": self._routing.snapshot.generation}

    async def model_metadata(self, model: str, version: str | None, routing_key: str | None) -> ModelDescription:
        """The version the routing rule names for this key (or the explicit one), described."""
        record = await self._routing.resolve(model, version, routing_key, describe=True)
        routing = self._routing.model_routing(model)
        served = self._pool.get_loaded(model, record.version)
        return ModelDescription(
            name=model,
            version=record.version,
            versions=routing.active_versions if routing is not None else (record.version,),
            platform=served.engine.platform if served is not None else self._platform(record.backend),
            inputs=_specs(record, "inputs"),
            outputs=_specs(record, "outputs"),
        )

    def _platform(self, backend: str) -> str:
        try:
            return self._plugins.backend(backend).platform
        except UnknownPlugin:
            return backend

    async def model_ready(self, model: str, version: str | None, routing_key: str | None) -> str:
        """The version that would serve this call, if its engine is loaded; else EngineUnavailable saying why.

        Without a version or key every arm an unversioned call may land on must be loaded.
        """
        record = await self._routing.resolve(model, version, routing_key, describe=True)
        needed: tuple[str, ...] = (record.version,)
        routing = self._routing.model_routing(model)
        if version is None and routing_key is None and routing is not None:
            needed = targets(routing) or needed
        for candidate in needed:
            if not self._pool.is_loaded(model, candidate):
                reason = self._pool.failure(model, candidate) or "not loaded yet"
                raise EngineUnavailable(f"model '{model}' version '{candidate}' is not ready: {reason}")
        return record.version

    async def calm(self) -> None:
        """Wait until at most ``calm_below`` calls are in flight: background work (shadow copies) runs in the
        primary traffic's spare capacity, never ahead of it."""
        while self.inflight > self.calm_below:
            self._calm.clear()
            await self._calm.wait()

    # -- drain ----------------------------------------------------------------------------------------
    async def drained(self, timeout_s: float) -> bool:
        """Wait until no call is in flight (at most ``timeout_s``); whether it got there."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True
