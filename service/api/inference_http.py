"""HTTP adapters of the data plane for ``/v2/.../infer`` and ``/v1/.../predict``.

They work on raw bytes and lowercase header maps so that the same code serves both the lean ASGI fast
path (``service.asgi``) and the Litestar handlers that document these routes in OpenAPI.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from service.codecs.v1 import decode_predict_request, encode_predict_response
from service.codecs.v2 import check_requested_outputs, decode_infer_request, encode_infer_response
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.exception_handlers import error_reply
from service.runtime import Runtime

__all__ = ("InferenceHTTP", "Reply", "ALLOWED_CONTENT_TYPES")

_log = structlog.get_logger(__name__)

ALLOWED_CONTENT_TYPES = frozenset(
    {"", "application/json", "application/octet-stream", "text/plain", "application/x-www-form-urlencoded"}
)
"""The closed list of request media types we decode (JSON or the V2 binary extension). Anything else,
pickle above all, is refused with 415 before a byte is parsed."""


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


_ACCEPTED_RAW: set[str] = set()


def _check_content_type(headers: Mapping[str, str]) -> None:
    raw = headers.get("content-type", "")
    if raw in _ACCEPTED_RAW:
        return
    media = raw.split(";", 1)[0].strip().lower()
    if media in ALLOWED_CONTENT_TYPES:
        if len(_ACCEPTED_RAW) < 256:
            _ACCEPTED_RAW.add(raw)
        return
    if media not in ALLOWED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"unsupported Content-Type '{media}': send JSON or the V2 binary tensor extension "
            "(application/json or application/octet-stream)"
        )


def _header_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("inference-header-content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {raw[:32]!r}") from None
    if value < 0:
        raise InvalidInput("Inference-Header-Content-Length must not be negative")
    return value


class InferenceHTTP:
    """Builds replies for inference routes; every error becomes an ``{"error": ...}`` reply."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    async def v2_infer(
        self, model: str, version: str | None, body: bytes, headers: Mapping[str, str], request_id: str
    ) -> Reply:
        started = time.perf_counter()
        rt = self._rt
        served_version = "-"  # only a version the registry resolved is ever echoed or used as a label
        status = 500
        rt.enter()
        try:
            _check_content_type(headers)
            request = decode_infer_request(
                body,
                header_length=_header_length(headers),
                content_encoding=headers.get("content-encoding"),
                max_bytes=rt.settings.max_body_bytes,
            )
            dataplane = rt.dataplane
            assert dataplane is not None
            served = await dataplane.resolve(model, version, headers.get("x-routing-key"))
            served_version = served.record.version
            check_requested_outputs(request.outputs, served.outputs)  # before spending compute
            result = await dataplane.infer(served, request.inputs, timeout_s=self._timeout_s(request.timeout_us))
            payload, json_length = encode_infer_response(
                model_name=model,
                model_version=served_version,
                request_id=request.id,
                outputs=result.outputs,
                output_specs=served.outputs,
                requested_outputs=request.outputs,
                binary_data_output=request.binary_data_output,
            )
            status = 200
            reply_headers = {"X-Model-Version": served_version}
            if json_length is not None:
                reply_headers["Inference-Header-Content-Length"] = str(json_length)
                return Reply(200, payload, reply_headers, "application/octet-stream")
            return Reply(200, payload, reply_headers)
        except Exception as exc:  # noqa: BLE001 - every failure is an {"error": ...} reply
            reply = self._error_reply(exc, model, served_version, request_id)
            status = reply.status
            return reply
        finally:
            rt.leave()
            self._observe(model, served_version, "v2_infer", status, started, request_id)

    async def v1_predict(
        self, model: str, version: str | None, body: bytes, headers: Mapping[str, str], request_id: str
    ) -> Reply:
        started = time.perf_counter()
        rt = self._rt
        served_version = "-"
        status = 500
        predictions: list[str] | None = None
        rt.enter()
        try:
            _check_content_type(headers)
            if len(body) > rt.settings.max_body_bytes:
                raise PayloadTooLarge(f"request body exceeds the limit of {rt.settings.max_body_bytes} bytes")
            dataplane = rt.dataplane
            assert dataplane is not None
            served = await dataplane.resolve(model, version, headers.get("x-routing-key"))
            served_version = served.record.version
            tensors = decode_predict_request(body, served.inputs)
            result = await dataplane.infer(served, tensors, timeout_s=self._timeout_s(None))
            post_started = time.perf_counter()
            payload, predictions = encode_predict_response(
                model_name=model,
                model_version=served_version,
                outputs=result.outputs,
                output_specs=served.outputs,
                postprocess=served.postprocess,
                preprocessing_ms=result.preprocessing_ms,
                inference_ms=result.inference_ms,
                postprocessing_started=post_started,
            )
            status = 200
            return Reply(200, payload, {"X-Model-Version": served_version})
        except Exception as exc:  # noqa: BLE001 - every failure is an {"error": ...} reply
            reply = self._error_reply(exc, model, served_version, request_id)
            status = reply.status
            return reply
        finally:
            rt.leave()
            self._observe(model, served_version, "v1_predict", status, started, request_id, predictions)

    def _timeout_s(self, timeout_us: int | None) -> float | None:
        """The request's own queue timeout (V2 ``parameters.timeout``, µs), else the configured default."""
        if timeout_us:
            return timeout_us / 1e6
        default_ms = self._rt.settings.queue_timeout_ms
        return default_ms / 1000.0 if default_ms > 0 else None

    def _error_reply(self, exc: Exception, model: str, served_version: str, request_id: str) -> Reply:
        status, payload, extra = error_reply(exc, request_id)
        self._count_rejection(exc, model, served_version)
        if served_version != "-":
            extra["X-Model-Version"] = served_version
        return Reply(status, payload, extra)

    def _count_rejection(self, exc: Exception, model: str, version: str) -> None:
        from service.errors import EngineUnavailable, Overloaded

        if isinstance(exc, Overloaded):
            reason = exc.reason
        elif isinstance(exc, EngineUnavailable):
            reason = "not_ready"
        else:
            return
        self._rt.metrics.rejected.labels(model=model, version=version, reason=reason).inc()

    def _observe(
        self,
        model: str,
        version: str,
        route: str,
        status: int,
        started: float,
        request_id: str,
        predictions: list[str] | None = None,
    ) -> None:
        elapsed = time.perf_counter() - started
        if version == "-":
            model = "_unresolved"  # never label by a client-chosen name that did not resolve (cardinality)
        key = (model, version, route, status)
        children = self._children.get(key)
        if children is None:  # labels() costs microseconds: resolve each label set once
            m = self._rt.metrics
            children = self._children[key] = (
                m.requests.labels(model=model, version=version, route=route, status=str(status)),
                m.request_duration.labels(model=model, version=version, route=route),
            )
        children[0].inc()
        if status == 200:
            children[1].observe(elapsed)
        else:  # successful calls are counted, not logged: a log line per request would cost more than inference
            log = _log.error if status >= 500 else _log.info
            log(
                "inference_failed",
                request_id=request_id,
                model=model,
                version=version,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000.0, 3),
            )
        if version != "-" and status != 404:
            self._rt.stats.record(
                model, version, latency_ms=elapsed * 1000.0, error=status >= 500, predictions=predictions
            )
