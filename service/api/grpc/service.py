"""The ``inference.GRPCInferenceService`` methods: each decodes, calls the data plane (or the repository), encodes.

No routing, validation or statistics here: inference is ``DataPlane.infer`` exactly as on HTTP (its observers
count gRPC calls under the routes ``grpc_infer`` and ``grpc_stream_infer``); readiness, metadata, configuration,
statistics and the repository verbs come from :class:`~service.inference.repository.ModelRepository` and the
data plane. Metadata in: ``x-routing-key`` (the routing rule's key), ``x-request-id`` (for logs; else one is
made; it names the prediction for outcome feedback), ``authorization`` (repository load/unload need an admin key).
Metadata out: ``x-model-version`` and ``x-request-id`` (initial metadata of inference calls that resolved a
version, errors included; a stream's initial metadata carries its ``x-request-id``, request ``i`` being
``<id>.<i>``). A stream's responses carry the version in
``model_version``; a failed request in a stream is answered by a response with ``error_message`` and the stream
goes on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any, NoReturn

from google.protobuf.message import DecodeError

from service import __version__
from service.api.grpc._protocol import Context, config_pb, pb
from service.api.grpc.codec import decode_infer_request, encode_infer_response
from service.api.grpc.status import grpc_error
from service.errors import EngineUnavailable, NotFound, NotImplementedFeature
from service.inference.dataplane import DataPlane, InferCall
from service.inference.repository import ModelRepository
from service.plugins import TensorSpec
from service.request_ids import RequestIds
from service.security.auth import Authenticator
from service.security.shared_memory_access import SharedMemoryAccess, grpc_peer_host

__all__ = ("EXTENSIONS", "InferenceService")

EXTENSIONS = ("classification", "model_configuration", "model_repository", "statistics")
"""Triton's extension names this gRPC service implements (``ServerMetadata``)."""
_STREAM_INFLIGHT = 64
"""Requests of one stream in flight at once; the stream reads no further until one finishes."""
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _Metadata:
    """The invocation metadata the service reads, looked up once per call."""

    __slots__ = ("authorization", "request_id", "routing_key")

    def __init__(self, context: Context, fresh_id: str) -> None:
        self.routing_key: str | None = None
        self.authorization: str | None = None
        request_id = None
        for key, value in context.invocation_metadata() or ():
            if key == "x-routing-key":
                self.routing_key = value
            elif key == "x-request-id":
                request_id = value
            elif key == "authorization":
                self.authorization = value
        self.request_id = request_id if isinstance(request_id, str) and _REQUEST_ID.match(request_id) else fresh_id


def _datatype(datatype: str) -> Any:
    return config_pb.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")


def _tensor_metadata(spec: TensorSpec) -> Any:
    return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype, shape=spec.shape)


class InferenceService:
    """One per worker; the method names are the RPC names (see :mod:`service.api.grpc.server`)."""

    def __init__(
        self,
        *,
        dataplane: DataPlane,
        repository: ModelRepository,
        auth: Authenticator,
        queue_timeout_ms: float,
        shared_memory: SharedMemoryAccess | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._shared_memory = shared_memory
        self._extensions = EXTENSIONS + (shared_memory.extensions if shared_memory is not None else ())
        self._repository = repository
        self._auth = auth
        self._default_timeout_s = queue_timeout_ms / 1000.0 if queue_timeout_ms > 0 else None
        self._ids = RequestIds("g")  # as the HTTP edge's (ids name predictions for feedback), marked as gRPC's
        self._detached: set[asyncio.Task[Any]] = set()
        """Inference tasks a client stopped waiting for: they finish (and are observed) as on HTTP."""

    def metadata(self, context: Context) -> _Metadata:
        return _Metadata(context, self._ids.next())

    async def fail(self, context: Context, exc: BaseException, request_id: str, version: str | None) -> NoReturn:
        """End the RPC with the status that mirrors ``exc``'s HTTP status."""
        code, message, trailing = grpc_error(exc, request_id)
        if version is not None:
            await context.send_initial_metadata((("x-model-version", version), ("x-request-id", request_id)))
        await context.abort(code, message, trailing)
        raise AssertionError("abort always raises")

    # -- health and metadata ----------------------------------------------------------------------------
    async def ServerLive(self, request: Any, context: Context) -> Any:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: Any, context: Context) -> Any:
        try:
            self._dataplane.server_ready()
        except EngineUnavailable:
            return pb.ServerReadyResponse(ready=False)
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: Context) -> Any:
        meta = self.metadata(context)
        try:
            version = await self._dataplane.model_ready(request.name, request.version or None, meta.routing_key)
        except (NotFound, EngineUnavailable):
            return pb.ModelReadyResponse(ready=False)
        await context.send_initial_metadata((("x-model-version", version),))
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Context) -> Any:
        return pb.ServerMetadataResponse(name="modelport", version=__version__, extensions=self._extensions)

    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        meta = self.metadata(context)
        described = await self._dataplane.model_metadata(request.name, request.version or None, meta.routing_key)
        await context.send_initial_metadata((("x-model-version", described.version),))
        return pb.ModelMetadataResponse(
            name=described.name,
            versions=described.versions,
            platform=described.platform,
            inputs=[_tensor_metadata(spec) for spec in described.inputs],
            outputs=[_tensor_metadata(spec) for spec in described.outputs],
        )

    # -- inference ----------------------------------------------------------------------------------------
    async def _infer(self, request: Any, call: InferCall, context: Context) -> Any:
        """decode -> DataPlane.infer -> encode; a gRPC deadline also bounds the queue wait."""
        shm = self._shared_memory
        try:
            decoded = decode_infer_request(
                request, shm.for_request(lambda: grpc_peer_host(context.peer())) if shm else None
            )
        except Exception as exc:  # noqa: BLE001 - every refusal is observed, then answered
            self._dataplane.reject(call, exc)
            raise
        call.inputs = decoded.inputs
        call.requested_outputs = decoded.outputs
        timeout_s = decoded.timeout_us / 1e6 if decoded.timeout_us else self._default_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:
            timeout_s = remaining if timeout_s is None else min(timeout_s, remaining)
        call.timeout_s = timeout_s
        return await self._dataplane.infer(call, lambda result: encode_infer_response(result, decoded))

    def _detach(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        return task

    async def ModelInfer(self, request: Any, context: Context) -> Any:
        meta = self.metadata(context)
        call = InferCall(
            request.model_name, request.model_version or None, "grpc_infer", meta.request_id, (), meta.routing_key
        )
        try:
            # never cancelled by the edge: a client that goes away does not stop work mid-pipeline (nor count as
            # our fault); its answer is dropped (service.api.grpc.transport)
            response = await self._infer(request, call, context)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            await self.fail(context, exc, meta.request_id, call.served_version)
        await context.send_initial_metadata(
            (("x-model-version", response.model_version), ("x-request-id", call.request_id))
        )
        return response

    async def _stream_one(self, raw: bytes, meta: _Metadata, index: int, context: Context) -> Any:
        request_id = f"{meta.request_id}.{index}"
        try:
            request = pb.ModelInferRequest.FromString(raw)
        except DecodeError as exc:
            return pb.ModelStreamInferResponse(error_message=f"malformed ModelInferRequest: {exc}")
        call = InferCall(
            request.model_name, request.model_version or None, "grpc_stream_infer", request_id, (), meta.routing_key
        )
        try:
            return pb.ModelStreamInferResponse(infer_response=await self._infer(request, call, context))
        except Exception as exc:  # noqa: BLE001 - a failed request is a response; the stream goes on
            _, message, _ = grpc_error(exc, request_id)
            failed = pb.ModelInferResponse(
                model_name=request.model_name, model_version=call.served_version or "", id=request.id
            )
            return pb.ModelStreamInferResponse(error_message=message, infer_response=failed)

    async def ModelStreamInfer(self, requests: AsyncIterator[bytes], context: Context) -> None:
        """Answers each request as it completes (at most ``_STREAM_INFLIGHT`` at once), so responses may come
        out of order; clients match them by ``id``. Requests are read as raw bytes so that one that does not
        parse is answered with an ``error_message`` instead of ending the stream."""
        meta = self.metadata(context)
        await context.send_initial_metadata((("x-request-id", meta.request_id),))  # request i is '<id>.<i>'
        slots = asyncio.Semaphore(_STREAM_INFLIGHT)
        writing = asyncio.Lock()
        pending: set[asyncio.Task[Any]] = set()

        async def answer(raw: bytes, index: int) -> None:
            try:
                response = await self._stream_one(raw, meta, index, context)
                async with writing:
                    if not context.done():
                        await context.write(response)
            except Exception:  # noqa: BLE001, S110 - the client went away; nothing is left to tell it
                pass
            finally:
                slots.release()

        index = 0
        try:
            async for raw in requests:
                await slots.acquire()
                task = self._detach(answer(raw, index))
                pending.add(task)
                task.add_done_callback(pending.discard)
                index += 1
            if pending:
                await asyncio.gather(*pending)
        except asyncio.CancelledError:
            # The client went away (or shutdown's grace ran out). Its answers in flight still finish, as a unary
            # call's do, and this handler waits for them, so the edge counts them as this call's running work: a
            # client that opens a stream, sends 64 requests and resets it, again and again, is stopped at the
            # edge's limit of running handlers instead of leaving unbounded inference behind (rapid reset).
            if pending:
                await asyncio.wait(set(pending))
            raise

    # -- configuration, statistics, repository ---------------------------------------------------------------
    async def ModelConfig(self, request: Any, context: Context) -> Any:
        meta = self.metadata(context)
        found = await self._repository.config(request.name, request.version or None, meta.routing_key)
        await context.send_initial_metadata((("x-model-version", found.version),))
        batching = None
        if found.max_batch_size:
            batching = config_pb.ModelDynamicBatching(
                max_queue_delay_microseconds=found.max_queue_delay_us,
                default_queue_policy=config_pb.ModelQueuePolicy(max_queue_size=found.max_queue_size),
            )
        config = config_pb.ModelConfig(
            name=found.name,
            platform=found.platform,
            backend=found.backend,
            max_batch_size=found.max_batch_size,
            input=[
                config_pb.ModelInput(name=s.name, data_type=_datatype(s.datatype), dims=s.shape) for s in found.inputs
            ],
            output=[
                config_pb.ModelOutput(name=s.name, data_type=_datatype(s.datatype), dims=s.shape) for s in found.outputs
            ],
            dynamic_batching=batching,
        )
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request: Any, context: Context) -> Any:
        found = await self._repository.statistics(request.name, request.version or None)
        return pb.ModelStatisticsResponse(
            model_stats=[
                pb.ModelStatistics(
                    name=s.name,
                    version=s.version,
                    inference_count=s.inference_count,
                    execution_count=s.execution_count,
                    inference_stats=pb.InferStatistics(
                        success=pb.StatisticDuration(count=s.success.count, ns=s.success.ns),
                        fail=pb.StatisticDuration(count=s.fail.count, ns=s.fail.ns),
                    ),
                )
                for s in found
            ]
        )

    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        Index = pb.RepositoryIndexResponse.ModelIndex
        entries = self._repository.index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(
            models=[Index(name=e.name, version=e.version, state=e.state, reason=e.reason) for e in entries]
        )

    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        await self._auth.require(self.metadata(context).authorization, "admin")
        if request.parameters:
            raise NotImplementedFeature(
                "loading with a config or files is not supported: register versions through the admin API "
                "(POST /admin/models/{name}/versions)"
            )
        await self._repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        await self._auth.require(self.metadata(context).authorization, "admin")
        self._repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()
