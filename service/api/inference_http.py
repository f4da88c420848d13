"""The HTTP inference edge: ``/v2/.../infer`` and ``/v1/.../predict`` as decode -> DataPlane -> encode.

It works on raw bytes and lowercase header maps, so the same two functions serve the lean ASGI path
(``service.asgi``) and the Litestar handlers that document these routes in OpenAPI: there is one way an
inference request executes. The V1 predict route is a second codec over the same data-plane call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from service.api.http_body import Receive, header_length, plain_body, read_body
from service.api.limits import BodyBudget, Reservation
from service.api.response_compression import INLINE_COMPRESS_BYTES, accepted_coding, compress
from service.codecs.v1 import decode_predict_request, encode_predict_response
from service.codecs.v2 import DecodedTensor, decode_infer_request, encode_infer_response
from service.errors import InvalidInput, Overloaded, PayloadTooLarge
from service.exception_handlers import error_reply
from service.inference.admission import Admission
from service.inference.dataplane import DataPlane, InferCall, InferResult
from service.inference.shared_memory import RegionLookup
from service.plugins import TensorSpec
from service.security.shared_memory_access import SharedMemoryAccess

__all__ = ("InferenceHTTP", "Reply")

_KEEP_ALIVE_UNREAD_BYTES = 64 * 1024
"""A refused request whose unread body is at most this keeps its connection (no reconnect under overload)."""
_INLINE_INFLATE_BYTES = 64 * 1024
"""Compressed bodies up to this size inflate inline (microseconds); larger ones in a worker thread."""


@dataclass(slots=True)
class _Incoming:
    """One request as read: its body (reserved in the budget), headers and id, and the reservation for what the
    body inflates to; ``serve`` gives both back once the request is answered."""

    body: bytes
    headers: Mapping[str, str]
    request_id: str
    inflated: Reservation


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


class InferenceHTTP:
    """Builds replies for the inference routes; every failure becomes an ``{"error": ...}`` reply."""

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        max_body_bytes: int,
        queue_timeout_ms: float,
        max_inflight_body_bytes: int = 0,
        admission: Admission | None = None,
        compression_min_bytes: int = 1024,
        shared_memory: SharedMemoryAccess | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._shared_memory = shared_memory
        self._max_body = max_body_bytes
        self._compression_min = compression_min_bytes
        self.budget = BodyBudget(max_inflight_body_bytes or 4 * max_body_bytes)
        """Inference body bytes this worker holds now (``MODELPORT_MAX_INFLIGHT_BODY_BYTES``)."""
        self._admission = admission
        self._default_timeout_s = queue_timeout_ms / 1000.0 if queue_timeout_ms > 0 else None

    async def serve(
        self,
        route: Literal["v2_infer", "v1_predict"],
        model: str,
        version: str | None,
        receive: Receive,
        headers: Mapping[str, str],
        request_id: str,
        peer: str | None = "",
    ) -> Reply:
        """Read the body under the cap and answer one inference request: the entry point of both paths.

        ``peer`` is the client's host address (None: unknown), for the shared-memory extension's rule.
        """
        if self._admission is not None:
            refused = self._admission.refusal(model, version, headers.get("x-routing-key"))
            if refused is not None:  # the engine's queue is full: refuse before reading or decoding anything
                return self._refuse_unread(InferCall(model, version, route, request_id, ()), refused, headers)
        try:
            body = await read_body(receive, headers, self._max_body, self.budget)
        except Overloaded as exc:
            return self._refuse_unread(InferCall(model, version, route, request_id, ()), (None, exc), None)
        except (PayloadTooLarge, InvalidInput) as exc:
            status, payload, extra = error_reply(exc, request_id)
            return Reply(status, payload, extra)
        regions = None
        if self._shared_memory is not None and route == "v2_infer":  # tensors copied out of regions share the budget
            regions = self._shared_memory.for_request(lambda: peer, self.budget)
        incoming = _Incoming(body, headers, request_id, self.budget.reservation())
        try:
            if route == "v2_infer":
                return await self.v2_infer(model, version, incoming, regions)
            return await self.v1_predict(model, version, incoming)
        finally:
            incoming.inflated.release()  # what a compressed body inflated to, held as long as the body
            self.budget.give(len(body))
            if regions is not None:
                regions.release()

    def _refuse_unread(
        self, call: InferCall, refused: tuple[str | None, Overloaded], headers: Mapping[str, str] | None
    ) -> Reply:
        """503 for a call refused before its body was read, counted as rejected (for the version it names).

        The connection closes unless the client declared a small body (``headers``): uvicorn discards an unread
        body on a kept-alive connection, cheap for a few KiB but not for megabytes.
        """
        call.served_version, error = refused
        self._dataplane.reject(call, error)
        reply = _error(error, call)
        length = headers.get("content-length", "") if headers is not None else ""
        if not (length.isdigit() and int(length) <= _KEEP_ALIVE_UNREAD_BYTES):
            reply.headers["Connection"] = "close"
        return reply

    async def v2_infer(
        self, model: str, version: str | None, incoming: _Incoming, shared_memory: RegionLookup | None = None
    ) -> Reply:
        """``shared_memory``: the regions this request may name (None: the extension is not served here)."""
        headers = incoming.headers
        call = InferCall(model, version, "v2_infer", incoming.request_id, (), routing_key=headers.get("x-routing-key"))
        try:
            request = decode_infer_request(
                await self._plain(incoming), header_length=header_length(headers), shared_memory=shared_memory
            )
        except Exception as exc:  # noqa: BLE001 - every failure is an {"error": ...} reply
            self._dataplane.reject(call, exc)
            return _error(exc, call)
        call.inputs = request.inputs
        call.requested_outputs = request.outputs
        call.timeout_s = request.timeout_us / 1e6 if request.timeout_us else self._default_timeout_s

        def encode(result: InferResult) -> Reply:
            payload, json_length = encode_infer_response(
                model_name=model,
                model_version=result.version,
                request_id=request.id,
                outputs=result.outputs,
                output_specs=result.output_specs,
                requested_outputs=request.outputs,
                binary_data_output=request.binary_data_output,
            )
            if json_length is None:
                return Reply(200, payload, {"X-Model-Version": result.version})
            headers = {"X-Model-Version": result.version, "Inference-Header-Content-Length": str(json_length)}
            return Reply(200, payload, headers, "application/octet-stream")

        try:
            reply = await self._dataplane.infer(call, encode)
        except Exception as exc:  # noqa: BLE001
            return _error(exc, call)
        accept = headers.get("accept-encoding")
        if accept is None or len(reply.body) < self._compression_min:
            return reply
        return await _compressed(reply, accept)

    async def v1_predict(self, model: str, version: str | None, incoming: _Incoming) -> Reply:
        call = InferCall(
            model,
            version,
            "v1_predict",
            incoming.request_id,
            (),
            routing_key=incoming.headers.get("x-routing-key"),
            timeout_s=self._default_timeout_s,
            postprocess=True,
        )
        try:
            plain = await self._plain(incoming)
        except Exception as exc:  # noqa: BLE001
            self._dataplane.reject(call, exc)
            return _error(exc, call)

        def decode(specs: tuple[TensorSpec, ...]) -> list[DecodedTensor]:
            return decode_predict_request(plain, specs)  # instances need the served signature

        def encode(result: InferResult) -> Reply:
            assert result.postprocessed is not None  # asked for with postprocess=True
            payload = encode_predict_response(
                model_name=model,
                model_version=result.version,
                postprocessed=result.postprocessed,
                preprocessing_ms=result.preprocessing_ms,
                inference_ms=result.inference_ms,
                postprocessing_ms=result.postprocessing_ms,
            )
            return Reply(200, payload, {"X-Model-Version": result.version})

        call.inputs = decode
        try:
            return await self._dataplane.infer(call, encode)
        except Exception as exc:  # noqa: BLE001
            return _error(exc, call)

    async def _plain(self, incoming: _Incoming) -> bytes | memoryview:
        """The body ready for a codec; a large compressed one is inflated in a worker thread, so that up to
        ``MAX_BODY_BYTES`` of output never holds the event loop (and every other request) meanwhile. Inflated
        bytes are reserved in the in-flight budget as they are produced (503 once it is exhausted)."""
        body, headers, reserve = incoming.body, incoming.headers, incoming.inflated.take
        if len(body) > _INLINE_INFLATE_BYTES and headers.get("content-encoding"):
            return await asyncio.to_thread(plain_body, body, headers, self._max_body, reserve)
        return plain_body(body, headers, self._max_body, reserve)


async def _compressed(reply: Reply, accept_encoding: str) -> Reply:
    """A successful V2 infer reply compressed as ``Accept-Encoding`` asks (service.api.response_compression).

    The reply's headers, ``Inference-Header-Content-Length`` included, describe the uncompressed body and stay;
    ``Content-Encoding`` is added. A body that would not get smaller is sent as it is.
    """
    coding = accepted_coding(accept_encoding)
    if coding is None:
        return reply
    if len(reply.body) > INLINE_COMPRESS_BYTES:
        body = await asyncio.to_thread(compress, reply.body, coding)
    else:
        body = compress(reply.body, coding)
    if len(body) >= len(reply.body):
        return reply
    reply.body = body
    reply.headers["Content-Encoding"] = coding
    reply.headers["Vary"] = "Accept-Encoding"
    return reply


def _error(exc: BaseException, call: InferCall) -> Reply:
    status, payload, headers = error_reply(exc, call.request_id)
    if call.served_version is not None:  # only a version the registry resolved is ever echoed
        headers["X-Model-Version"] = call.served_version
    return Reply(status, payload, headers)
