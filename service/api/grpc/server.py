"""The gRPC server of one worker: :mod:`service.api.grpc.transport` (our own HTTP/2 and gRPC framing) on the
worker's event loop, started and drained by its lifespan.

The method table is built here: requests arrive as bytes and are parsed in the handler, so a message that does
not parse is INVALID_ARGUMENT naming the message type (generated code would answer INTERNAL), and a stream
survives one bad message. Messages are capped at ``MODELPORT_MAX_BODY_BYTES`` (beyond it gRPC answers
RESOURCE_EXHAUSTED, as HTTP answers 413). With several workers each binds the same port with ``SO_REUSEPORT``
and the kernel spreads connections; with one, the port is exclusive, so a second server on it fails at start
instead of silently sharing it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from google.protobuf.message import DecodeError

from service.api.grpc._protocol import SERVICE, Context, pb
from service.api.grpc.codes import StatusCode
from service.api.grpc.service import InferenceService
from service.api.grpc.shared_memory import SHARED_MEMORY_RPCS, SharedMemoryService
from service.api.grpc.transport import Abort, GrpcEdge, Method, StreamMethod, UnaryMethod
from service.api.limits import BodyBudget
from service.connection_guard import ConnectionLimits
from service.errors import NotImplementedFeature
from service.inference.repository import ModelRepository
from service.runtime import Runtime

__all__ = ("GrpcServer",)

_log = structlog.get_logger(__name__)

_UNARY = (
    ("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse),
    ("ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse),
    ("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse),
    ("ServerMetadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    ("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    ("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse),
    ("ModelConfig", pb.ModelConfigRequest, pb.ModelConfigResponse),
    ("ModelStatistics", pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    ("RepositoryIndex", pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    ("RepositoryModelLoad", pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
)
_UNIMPLEMENTED = {
    "CudaSharedMemoryStatus": "the CUDA shared-memory extension is not supported: send tensors in the request",
    "CudaSharedMemoryRegister": "the CUDA shared-memory extension is not supported: send tensors in the request",
    "CudaSharedMemoryUnregister": "the CUDA shared-memory extension is not supported: send tensors in the request",
    "TraceSetting": "the trace extension is not supported: modelport exports Prometheus metrics at /metrics",
    "LogSettings": "the logging extension is not supported: set MODELPORT_LOG_LEVEL at start-up",
}


def _unary(
    service: InferenceService, name: str, request_type: Any, response_type: Any, owner: object = None
) -> UnaryMethod:
    """The handler of RPC ``name``: the method of that name on ``owner`` (default: ``service``)."""
    method: Callable[[Any, Context], Awaitable[Any]] = getattr(owner or service, name)
    type_name = request_type.DESCRIPTOR.name
    parse = request_type.FromString

    async def handle(raw: bytes, context: Context) -> Any:
        try:
            request = parse(raw)
        except DecodeError as exc:
            await context.abort(StatusCode.INVALID_ARGUMENT, f"malformed {type_name}: {exc}")
        try:
            return await method(request, context)
        except Abort:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes the status mirroring its HTTP one
            await service.fail(context, exc, service.metadata(context).request_id, None)

    return UnaryMethod(handle, response_type.SerializeToString)


def _refused(service: InferenceService, message: str) -> UnaryMethod:
    async def handle(_: bytes, context: Context) -> Any:
        await service.fail(context, NotImplementedFeature(message), service.metadata(context).request_id, None)

    return UnaryMethod(handle, bytes)


def _stream(service: InferenceService) -> StreamMethod:
    async def handle(requests: AsyncIterator[bytes], context: Context) -> None:
        await service.ModelStreamInfer(requests, context)

    return StreamMethod(handle, pb.ModelStreamInferResponse.SerializeToString)


def method_handlers(service: InferenceService, shared_memory: SharedMemoryService) -> dict[str, Method]:
    """Every RPC of ``inference.GRPCInferenceService``, by method name."""
    handlers: dict[str, Method] = {name: _unary(service, name, request, response) for name, request, response in _UNARY}
    handlers.update(
        {
            name: _unary(service, name, request, response, shared_memory)
            for name, request, response in SHARED_MEMORY_RPCS
        }
    )
    handlers["ModelStreamInfer"] = _stream(service)
    handlers.update({name: _refused(service, message) for name, message in _UNIMPLEMENTED.items()})
    return handlers


class GrpcServer:
    """Built with the worker's runtime (no I/O); :meth:`start` binds ``MODELPORT_GRPC_PORT`` (0: no server).

    ``budget`` is the worker's inference body budget, shared with the HTTP edge
    (``MODELPORT_MAX_INFLIGHT_BODY_BYTES`` bounds what both hold together)."""

    def __init__(self, runtime: Runtime, budget: BodyBudget) -> None:
        self._runtime = runtime
        self._budget = budget
        self._edge: GrpcEdge | None = None
        self.port = 0
        """The bound port once started (0 before, or when gRPC is off)."""

    async def start(self) -> None:
        settings = self._runtime.settings
        if not settings.grpc_port:
            return
        runtime = self._runtime
        repository = ModelRepository(
            dataplane=runtime.dataplane,
            routing=runtime.routing,
            pool=runtime.pool,
            metrics=runtime.metrics,
            settings=settings,
        )
        service = InferenceService(
            dataplane=runtime.dataplane,
            repository=repository,
            auth=runtime.auth,
            queue_timeout_ms=settings.queue_timeout_ms,
            shared_memory=runtime.shared_memory,
        )
        handlers = method_handlers(service, SharedMemoryService(runtime.shared_memory))
        edge = GrpcEdge(
            {f"/{SERVICE}/{name}": method for name, method in handlers.items()},
            max_message_bytes=settings.max_body_bytes,
            budget=self._budget,
            max_connections=ConnectionLimits.from_settings(settings).max_connections,
            handshake_timeout_s=settings.header_timeout_s,
            body_idle_timeout_s=settings.body_idle_timeout_s,
        )
        try:
            self.port = await edge.bind(settings.host, settings.grpc_port, reuse_port=settings.workers > 1)
        except OSError as exc:
            raise RuntimeError(f"cannot serve gRPC on {settings.host}:{settings.grpc_port}: {exc}") from None
        self._edge = edge
        _log.info("grpc_serving", host=settings.host, port=self.port)

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs, give in-flight ones ``grace_s`` to finish, then cancel the rest."""
        if self._edge is not None:
            await self._edge.stop(grace_s)
            self._edge = None
