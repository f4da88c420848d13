"""The throughput ceiling: a bare ASGI app that does only what any V2 server must do per request.

It reads the whole body, decodes it with msgspec into the typed V2 Structs (the same decode modelport
does) and sends a canned V2 reply. No framework, no routing, no inference: whatever Python + uvicorn
(uvloop, httptools) can do per core on this body is the ceiling modelport's req/s is compared against.

Serve with ``uvicorn benchmarks.servers.ceiling:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from benchmarks.servers._v2 import InferOutput, InferResponse, decode_request, encode_response

__all__ = ("app",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_CANNED = encode_response(
    InferResponse(
        model_name="bench",
        model_version="1",
        outputs=[InferOutput(name="logits", shape=[1, 10], datatype="FP32", data=[0.125] * 10)],
    )
)
_OK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_CANNED)).encode())]
_HEALTH = b'{"live":true}'


async def _read_body(receive: Callable[[], Awaitable[Message]]) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) > 1 else chunks[0]


async def _send(send: Callable[[Message], Awaitable[None]], status: int, body: bytes, headers: list[Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """ASGI entry point: ``GET`` anything -> 200 (readiness); ``POST`` anything -> decode + canned reply."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await _send(send, 200, _HEALTH, [(b"content-type", b"application/json")])
        return
    body = await _read_body(receive)
    try:
        request = decode_request(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        error = msgspec.json.encode({"error": str(exc)})
        await _send(send, 400, error, [(b"content-type", b"application/json")])
        return
    if not request.inputs:
        await _send(send, 400, b'{"error":"no inputs"}', [(b"content-type", b"application/json")])
        return
    await _send(send, 200, _CANNED, _OK_HEADERS)
