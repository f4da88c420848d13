"""The outer ASGI app: Host allow-list, request ids, and the lean path for the inference routes.

Inference POSTs (``/v2/models/{m}[/versions/{v}]/infer`` and ``/v1/models/{m}[/versions/{v}]/predict``) are
handed here straight from raw ASGI messages to the HTTP inference edge (``service.api.inference_http``):
Litestar's per-request machinery (connection objects, dependency resolution, response objects) buys nothing
on those routes and costs about half the throughput. The Litestar handlers of the same routes call the same
edge function (they document the routes in OpenAPI and serve them when the Litestar app is mounted alone);
everything else is Litestar's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal
from urllib.parse import unquote

import structlog

from service.api.http_body import inference_headers
from service.api.inference_http import InferenceHTTP, Reply
from service.request_ids import RequestIds
from service.runtime import Runtime

__all__ = ("ASGIApp", "ModelportASGI")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Route = Literal["v2_infer", "v1_predict"]

_HOST_EXEMPT = ("/v2/health/", "/metrics")
"""Read-only probes and scrapes arrive with a pod IP as Host (kubelet, Prometheus); they change nothing."""
_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_PREDICT = re.compile(r"^/v1/models/([^/]+)(?:/versions/([^/]+))?/predict$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    if "*" in allowed:
        return True
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower()
    return any(name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])) for pattern in allowed)


class ModelportASGI:
    """Wraps the Litestar app; see the module docstring."""

    def __init__(self, inner: ASGIApp, runtime: Runtime, inference: InferenceHTTP) -> None:
        self.inner = inner
        self.runtime = runtime
        self.inference = inference
        self._allowed = runtime.settings.allowed_hosts
        self._host_verdicts: dict[str, bool] = {}
        self._ids = RequestIds()

    def _host_ok(self, host: str) -> bool:
        verdict = self._host_verdicts.get(host)
        if verdict is None:
            if len(self._host_verdicts) > 1024:
                self._host_verdicts.clear()
            verdict = self._host_verdicts[host] = _host_allowed(host, self._allowed)
        return verdict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope["path"]
        fast = None
        route: Route = "v2_infer"
        if scope["method"] == "POST":
            fast = _INFER.match(path)
            if fast is None:
                fast = _PREDICT.match(path)
                route = "v1_predict"
        headers = inference_headers(scope["headers"])
        request_id = headers.get("x-request-id", "")
        if not request_id or not _REQUEST_ID.match(request_id):
            request_id = self._ids.next()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        if not self._host_ok(headers.get("host", "")) and not path.startswith(_HOST_EXEMPT):
            await self._send_reply(send, Reply(400, b'{"error":"Host header not allowed"}'), request_id)
            return
        if fast is not None:
            # the lean path passes the request id to its few log calls instead of binding contextvars
            await self._fast(route, fast, scope, receive, send, headers, request_id)
            return
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        await self.inner(scope, receive, send_with_id)

    async def _fast(
        self,
        route: Route,
        match: re.Match[str],
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        request_id: str,
    ) -> None:
        model = unquote(match.group(1))
        version = unquote(match.group(2)) if match.group(2) is not None else None
        client = scope.get("client")
        peer = client[0] if client else None
        reply = await self.inference.serve(route, model, version, receive, headers, request_id, peer)
        await self._send_reply(send, reply, request_id)

    @staticmethod
    async def _send_reply(send: Send, reply: Reply, request_id: str) -> None:
        raw_headers = [
            (b"content-type", reply.media_type.encode()),
            (b"content-length", str(len(reply.body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        raw_headers.extend((k.lower().encode(), v.encode()) for k, v in reply.headers.items())
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": reply.body})
