"""Request bodies and headers of the HTTP inference routes: read under the cap, checked, decompressed.

The one place each of these happens, for both ways an inference request arrives (the lean ASGI path and
the Litestar handlers that document the same routes): the header subset we read, the body cap while
reading, the Content-Type allow-list, the ``Content-Encoding`` decompression (also capped) and the
``Inference-Header-Content-Length`` value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from service.api.limits import BodyBudget
from service.codecs.v2 import decompress_body
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

__all__ = (
    "ALLOWED_CONTENT_TYPES",
    "INFERENCE_HEADERS",
    "header_length",
    "inference_headers",
    "plain_body",
    "read_body",
)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

INFERENCE_HEADERS = frozenset(
    {
        b"host",
        b"content-length",
        b"content-type",
        b"content-encoding",
        b"accept-encoding",
        b"inference-header-content-length",
        b"x-routing-key",
        b"x-request-id",
    }
)
"""The only headers the inference routes read (ASGI servers give lowercase names)."""

ALLOWED_CONTENT_TYPES = frozenset(
    {"", "application/json", "application/octet-stream", "text/plain", "application/x-www-form-urlencoded"}
)
"""The closed list of request media types we decode (JSON or the V2 binary extension). Anything else,
pickle above all, is refused with 415 before a byte is parsed."""

_ACCEPTED_RAW: set[str] = set()


def inference_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers an inference route reads, from ASGI's raw ``(name, value)`` pairs."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw if k in INFERENCE_HEADERS}


async def read_body(receive: Receive, headers: Mapping[str, str], max_bytes: int, budget: BodyBudget) -> bytes:
    """The whole request body, refused with PayloadTooLarge as soon as it passes ``max_bytes``.

    Its bytes are reserved in ``budget`` while they arrive (a declared Content-Length up front), so a body that
    does not fit is refused with Overloaded before the rest of it is read. On return ``len(body)`` bytes stay
    reserved: the caller gives them back once the request is answered.
    """
    declared = headers.get("content-length")
    held = 0
    if declared is not None and declared.isdigit():
        held = int(declared)
        if held > max_bytes:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {max_bytes} bytes")
        budget.take(held)
    try:
        message = await receive()
        body: bytes = message.get("body", b"")
        size = len(body)
        if message.get("more_body", False):
            chunks = [body]
            while message.get("more_body", False):
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
                if size > held:
                    budget.take(size - held)
                    held = size
                chunks.append(chunk)
            body = b"".join(chunks)
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected before the request body was complete")
        if size > max_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        if size > held:
            budget.take(size - held)
            held = size
    except BaseException:
        budget.give(held)
        raise
    budget.give(held - size)
    return body


def _check_content_type(headers: Mapping[str, str]) -> None:
    raw = headers.get("content-type", "")
    if raw in _ACCEPTED_RAW:
        return
    media = raw.split(";", 1)[0].strip().lower()
    if media not in ALLOWED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"unsupported Content-Type '{media}': send JSON or the V2 binary tensor extension "
            "(application/json or application/octet-stream)"
        )
    if len(_ACCEPTED_RAW) < 256:
        _ACCEPTED_RAW.add(raw)


def plain_body(
    body: bytes, headers: Mapping[str, str], max_bytes: int, reserve: Callable[[int], None] | None = None
) -> bytes | memoryview:
    """The body ready for a codec: media type checked, ``Content-Encoding`` undone, within ``max_bytes``; the
    inflated bytes are reserved through ``reserve`` as they are produced (see :func:`decompress_body`)."""
    _check_content_type(headers)
    encoding = headers.get("content-encoding")
    if encoding:
        return decompress_body(body, encoding, max_bytes=max_bytes, reserve=reserve)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    return body


def header_length(headers: Mapping[str, str]) -> int | None:
    """``Inference-Header-Content-Length``: the length of the JSON part of the (decompressed) body."""
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
