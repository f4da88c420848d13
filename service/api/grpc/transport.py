"""A lean gRPC server: HTTP/2 (RFC 9113) framing and the gRPC wire protocol on the worker's own asyncio loop.

Why not ``grpc.aio``: on one core its C-core and poller thread cost about 0.5 ms of CPU per call before any of
our code runs (a ``ServerLive`` floor), and every step of a call (accept, read, send metadata, send message and
status) is a hop between the poller thread and the event loop. Here a call costs one ``data_received`` that
parses its frames, one task that runs the handler, and one ``transport.write`` that carries its whole answer
(headers, message, trailers; answers finished in the same loop iteration share the write). Messages are parsed
with protobuf's upb parser from the bytes of the DATA frames, once.

What it implements, and the rules it keeps:

* **HTTP/2**: the preface, SETTINGS (ours: ``MAX_CONCURRENT_STREAMS``, a large stream window and frame size),
  PING, GOAWAY both ways, RST_STREAM, CONTINUATION, padding and priority fields, and flow control both ways
  (what we receive is acknowledged in large steps; what we send waits for the peer's windows). HPACK decoding
  uses the ``hpack`` library; responses are encoded without the dynamic table (static-table indices and
  literals), so no encoder state has to match the peer's.
* **gRPC**: ``content-type: application/grpc``, length-prefixed messages (``identity``, ``gzip`` and
  ``deflate`` requests), ``grpc-timeout``, metadata (``-bin`` keys base64), ``grpc-status`` and a
  percent-encoded ``grpc-message`` in trailers (a trailers-only answer when nothing was sent before), unknown
  methods UNIMPLEMENTED, messages over ``max_message_bytes`` RESOURCE_EXHAUSTED.
* **Cancellation**: a unary handler always runs to completion; when its client went away (RST_STREAM, a lost
  connection or a passed deadline) the answer is dropped. A streaming handler is cancelled when its client
  goes away, as its request iterator would otherwise never end. A passed deadline is answered
  DEADLINE_EXCEEDED at once.
* **Limits against hostile peers** (RFC 9113 section 10.5): handlers running per connection, reset streams
  included (rapid reset); control frames without requests between them (floods end in GOAWAY
  ENHANCE_YOUR_CALM); header blocks by their wire and decoded size; request bytes held by all connections
  together (a :class:`~service.api.limits.BodyBudget`, inflated bytes included, inflation capped at
  ``max_message_bytes``); reading stops while the socket's send buffer is full (a client that never reads
  cannot make us buffer answers); a connection must send its preface within ``handshake_timeout_s``, and at
  ``max_connections`` silent or idle ones make room. Malformed frames are connection or stream errors.
* **Shutdown**: :meth:`GrpcEdge.stop` stops listening, sends GOAWAY so clients open no new streams, lets the
  calls in flight finish within the grace period, then cancels what is left and closes the connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
from hpack import Decoder, HPACKError

from service.api.grpc.codes import StatusCode
from service.api.limits import BodyBudget, Reservation
from service.codecs.v2 import decompress_body
from service.errors import ModelportError, Overloaded, PayloadTooLarge

__all__ = ("Abort", "Call", "GrpcEdge", "StreamMethod", "UnaryMethod")

_log = structlog.get_logger(__name__)

Metadata = Sequence[tuple[str, str | bytes]]
"""gRPC metadata: ``(key, value)`` pairs, keys lowercase; values of ``-bin`` keys are bytes."""
Headers = tuple[tuple[str, str], ...]
"""A request's decoded header fields, pseudo-headers included, in order."""

# -- HTTP/2 constants --------------------------------------------------------------------------------------------
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = (
    range(10)
)
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
_NO_ERROR, _PROTOCOL_ERROR, _INTERNAL_ERROR, _FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
_STREAM_CLOSED, _FRAME_SIZE_ERROR, _REFUSED_STREAM, _CANCEL, _COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x8, 0x9
_ENHANCE_YOUR_CALM = 0xB
_FRAME = struct.Struct(">HBBBL")
"""A frame header: length (24 bits, as 16 + 8), type, flags, stream id (with the reserved bit)."""
_MESSAGE = struct.Struct(">BL")
"""A gRPC message prefix: compressed flag, length."""
_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65_535

_MAX_STREAMS = 1024
"""Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused."""
_STREAM_WINDOW = 1 << 22
"""The receive window of each stream (4 MiB): a stream sends that much before we acknowledge any of it."""
_CONNECTION_WINDOW = 1 << 24
"""The receive window of each connection (16 MiB), shared by its streams."""
_MAX_FRAME = 1 << 20
"""The largest frame we accept (SETTINGS_MAX_FRAME_SIZE): big messages arrive in few frames."""
_MAX_HEADER_LIST = 1 << 16
"""The most header bytes (decoded, RFC 9113 section 6.5.2) of one request."""
_HEADER_CACHE = 64
"""Decoded header blocks one connection remembers (see ``_Connection._decode_headers``)."""
_MAX_PING_FLOOD = 10_000
"""Frames that cost us work but carry no request (PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA and
CONTINUATION frames, unknown types, refused streams) a connection may send in a row, without a stream we accept or
request data between them, before we go away (ENHANCE_YOUR_CALM)."""
_MAX_HANDLERS = _MAX_STREAMS
"""Handlers one connection may have running at once, those of streams its client reset included: a unary handler
runs to completion after RST_STREAM, so counting open streams alone would let a client open and reset streams
without bound, each leaving inference work behind (rapid reset, CVE-2023-44487). Streams past it are refused."""
_MAX_QUEUED_OUT = 16 << 20
"""Answer bytes one connection may have waiting for its client's flow-control windows before it is refused new
streams: a client that never opens its windows would otherwise have every answer it asks for held in memory."""
_CACHED_BLOCK = 4096
"""The largest header block ``_decode_headers`` remembers: real requests' blocks are a few hundred bytes."""
_HANDSHAKE_TIMEOUT_S = 10.0
"""Seconds a new connection has to send the HTTP/2 preface, else it is closed (``MODELPORT_HEADER_TIMEOUT_S``)."""
_BODY_IDLE_TIMEOUT_S = 30.0
"""Longest pause in a unary call's unfinished request (``MODELPORT_BODY_IDLE_TIMEOUT_S``): a stream opened and
left without its message would otherwise hold its slot, its call and its buffered bytes for good."""
_MAX_CONNECTIONS = 4096
"""Connections the edge keeps open at once (``MODELPORT_MAX_CONNECTIONS``); see :meth:`GrpcEdge.admit`."""

# -- gRPC ---------------------------------------------------------------------------------------------------------
_RESERVED = frozenset(("te", "content-type", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"))
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_ENCODINGS = ("identity", "gzip", "deflate")
_INLINE_INFLATE = 16 << 10
"""Compressed messages up to this size inflate on the loop; larger ones in a worker thread (a 16 KiB bomb
inflates to at most about 16 MB, some 10 ms)."""
_ACCEPT_ENCODING = ",".join(_ENCODINGS)


def _hpack_int(value: int, prefix_bits: int, flags: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing, with a new name (no dynamic table)."""
    return b"\x00" + _hpack_int(len(name), 7, 0) + name + _hpack_int(len(value), 7, 0) + value


_CONTENT_TYPE = b"\x0f\x10" + _hpack_int(len(b"application/grpc"), 7, 0) + b"application/grpc"
"""``content-type: application/grpc``: static-table name 31, literal value without indexing."""
_RESPONSE_HEADERS = b"\x88" + _CONTENT_TYPE
"""``:status: 200`` (static index 8) and the content type: the start of every answer's first header block."""
_STATUS_OK = _literal(b"grpc-status", b"0")
_UNSAFE = re.compile(rb"[^\x20-\x24\x26-\x7e]")


def _percent_encode(message: str) -> bytes:
    """``grpc-message``: UTF-8, then every byte outside printable ASCII, and ``%``, as ``%XX``."""
    return _UNSAFE.sub(lambda match: b"%%%02X" % match.group()[0], message.encode("utf-8", "replace"))


def _encode_metadata(metadata: Metadata | None) -> bytes:
    if not metadata:
        return b""
    parts = []
    for key, value in metadata:
        name = key.lower()
        if name.endswith("-bin"):
            encoded = base64.b64encode(value if isinstance(value, bytes) else value.encode()).rstrip(b"=")
        else:
            encoded = value.encode() if isinstance(value, str) else bytes(value)
        parts.append(_literal(name.encode(), encoded))
    return b"".join(parts)


def _status_block(code: StatusCode, details: str, trailing: Metadata | None) -> bytes:
    if code.value[0] == 0 and not details:
        return _STATUS_OK + _encode_metadata(trailing)
    block = _literal(b"grpc-status", str(code.value[0]).encode())
    if details:
        block += _literal(b"grpc-message", _percent_encode(details))
    return block + _encode_metadata(trailing)


def _parse_timeout(value: str) -> float | None:
    """``grpc-timeout`` (at most 8 digits and a unit) in seconds, or None when malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit() or value[-1] not in _TIMEOUT_UNITS:
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


class Abort(Exception):  # noqa: N818 - named like grpc.aio's AbortError, which it replaces
    """Raised by :meth:`Call.abort`: the call ends with this status (caught by the edge, never seen by clients)."""

    def __init__(self, code: StatusCode, details: str, trailing: Metadata | None) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details
        self.trailing = trailing


# -- the method table ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UnaryMethod:
    """A unary RPC: ``handle(request_bytes, call)`` returns the response message, ``serialize`` makes its bytes."""

    handle: Callable[[bytes, Call], Awaitable[Any]]
    serialize: Callable[[Any], bytes]


@dataclass(frozen=True, slots=True)
class StreamMethod:
    """A bidirectional streaming RPC: ``handle(request_bytes_iterator, call)`` writes responses with
    :meth:`Call.write` (serialised by ``serialize``) and returns when the stream is done."""

    handle: Callable[[AsyncIterator[bytes], Call], Awaitable[None]]
    serialize: Callable[[Any], bytes]


Method = UnaryMethod | StreamMethod


# -- one call ------------------------------------------------------------------------------------------------------
class Call:
    """What a handler sees of its call: the ``grpc.aio.ServicerContext`` methods the service uses.

    One per stream; touched only on the event loop.
    """

    __slots__ = (
        "_connection",
        "_deadline",
        "_done",
        "_headers",
        "_metadata",
        "_serialize",
        "_timer",
        "headers_sent",
        "requests",
        "stream_id",
        "task",
    )

    def __init__(
        self,
        connection: _Connection,
        stream_id: int,
        headers: Headers,
        serialize: Callable[[Any], bytes],
        deadline: float | None,
    ) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self._headers = headers
        self._metadata: tuple[tuple[str, str | bytes], ...] | None = None
        self._serialize = serialize
        self._deadline = deadline
        self._done = False
        self.requests: _Requests | None = None
        """A streaming call's request messages (None for a unary call)."""
        self._timer: asyncio.TimerHandle | None = None
        self.headers_sent = False
        self.task: asyncio.Task[None] | None = None

    # -- grpc.aio.ServicerContext -------------------------------------------------------------------------------
    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """The client's metadata: every header but the pseudo-headers and gRPC's own."""
        if self._metadata is None:
            pairs: list[tuple[str, str | bytes]] = []
            for name, value in self._headers:
                if name.startswith(":") or name in _RESERVED:
                    continue
                if name.endswith("-bin"):
                    try:
                        pairs.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
                    except ValueError:
                        continue
                else:
                    pairs.append((name, value))
            self._metadata = tuple(pairs)
        return self._metadata

    def peer(self) -> str:
        """The client's address as grpc writes it (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``; ``unknown``)."""
        return self._connection.peer()

    def time_remaining(self) -> float | None:
        """Seconds until the client's deadline (``grpc-timeout``), or None without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._connection.loop.time())

    def done(self) -> bool:
        """Whether the call has ended: answered, cancelled by the client, or past its deadline."""
        return self._done

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        """Send the response headers now, with ``metadata``; once per call."""
        if self.headers_sent:
            raise RuntimeError("initial metadata was already sent")
        if not self._done:
            self.headers_sent = True
            self._connection.send_headers(self.stream_id, _RESPONSE_HEADERS + _encode_metadata(metadata), False)

    async def abort(self, code: StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        """End the call with ``code``; always raises :class:`Abort`."""
        raise Abort(code, details, trailing_metadata)

    async def write(self, message: Any) -> None:
        """Send one response of a streaming call; waits while the client's window or the socket is full."""
        if self._done:
            return
        self._connection.send_message(self, self._serialize(message))
        await self._connection.drained(self.stream_id)

    # -- the edge's side ------------------------------------------------------------------------------------------
    def finish(self, code: StatusCode, details: str = "", trailing: Metadata | None = None) -> None:
        """Send the status (trailers) and end the call; nothing is sent once it is done."""
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        block = _status_block(code, details, trailing)
        if self.headers_sent:
            self._connection.send_trailers(self.stream_id, block)
        else:
            self.headers_sent = True
            self._connection.send_headers(self.stream_id, _RESPONSE_HEADERS + block, True)

    def respond(self, payload: bytes) -> None:
        """Answer a unary call with one message and OK."""
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        self._connection.send_unary(self, payload)

    def cancelled(self) -> None:
        """The client went away: nothing more is sent; a streaming handler is cancelled."""
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if self.requests is not None:
            self.requests.close()
            if self.task is not None:
                self.task.cancel()

    def start_timer(self) -> None:
        """Arm the deadline (when the client set one): :meth:`expire` runs when it passes."""
        if self._deadline is not None:
            self._timer = self._connection.loop.call_at(self._deadline, self.expire)

    def expire(self) -> None:
        """The deadline passed: DEADLINE_EXCEEDED, and the call counts as cancelled."""
        self._timer = None
        if not self._done:
            self.finish(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            self.cancelled()


class _Requests:
    """The request messages of a streaming call, as an async iterator of bytes.

    Each queued message holds its bytes in the edge's :class:`BodyBudget` until the handler takes it, so a client
    that sends faster than its handler reads is stopped by the budget rather than filling memory. A large
    compressed message is queued as the future of its inflation in a worker thread (order is kept); one that does
    not inflate ends the call through ``fail``.
    """

    __slots__ = ("_budget", "_closed", "_fail", "_messages", "_waiter")

    def __init__(self, budget: BodyBudget, fail: Callable[[ModelportError], None]) -> None:
        self._budget = budget
        self._fail = fail
        self._messages: deque[tuple[bytes | asyncio.Future[bytes], int, Reservation | None]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def put(self, message: bytes | asyncio.Future[bytes], held: int, reservation: Reservation | None = None) -> None:
        """Queue ``message`` (or its inflation), which holds ``held`` bytes of the budget (and what
        ``reservation`` takes as it inflates) until it is taken."""
        self._messages.append((message, held, reservation))
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def waiting(self) -> bool:
        """Whether messages wait to be taken."""
        return bool(self._messages)

    def discard(self) -> None:
        """The handler ended: give back what the messages it never took held."""
        self._closed = True
        while self._messages:
            message, held, reservation = self._messages.popleft()
            self._give(held, reservation)
            if isinstance(message, asyncio.Future):
                message.add_done_callback(_retrieve)
                message.cancel()

    def _give(self, held: int, reservation: Reservation | None) -> None:
        self._budget.give(held)
        if reservation is not None:
            reservation.release()  # an inflation still running in its thread is refused its next step

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> bytes:
        while not self._messages:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message, held, reservation = self._messages.popleft()
        if isinstance(message, bytes):
            self._give(held, reservation)
            return message
        try:
            return await message
        except ModelportError as exc:
            self.discard()
            self._fail(exc)
            raise StopAsyncIteration from None
        finally:
            self._give(held, reservation)


def _retrieve(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        future.exception()


class _Stream:
    """One HTTP/2 stream: what has arrived of its request and what waits to be sent."""

    __slots__ = (
        "body",
        "call",
        "encoding",
        "held",
        "last_seen",
        "method",
        "outbound",
        "refused",
        "remote_closed",
        "send_window",
        "unacked",
    )

    def __init__(self, send_window: int, now: float) -> None:
        self.last_seen = now
        """When the client last sent this stream data (or its headers): see ``_Connection.check_stalled``."""
        self.body = bytearray()
        self.call: Call | None = None
        self.method: Method | None = None
        self.encoding: str | None = None
        """``gzip`` or ``deflate`` when the client compresses its messages (``grpc-encoding``)."""
        self.held = 0
        """Bytes of ``body`` reserved in the edge's budget (given back when the stream ends or hands them on)."""
        self.outbound: deque[memoryview] = deque()
        """Message bytes the windows do not let out yet, then (``None`` marks) the trailers."""
        self.send_window = send_window
        self.unacked = 0
        self.remote_closed = False
        self.refused = False
        """The call was answered before its request arrived whole: the rest of its data is dropped."""


class _ProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- one connection ------------------------------------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    def __init__(self, edge: GrpcEdge) -> None:
        self._edge = edge
        self.loop = edge.loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface = False
        self._decoder = Decoder(max_header_list_size=_MAX_HEADER_LIST)
        self._header_cache: dict[bytes, Headers] = {}
        self._streams: dict[int, _Stream] = {}
        self._last_stream = 0
        self._send_window = _DEFAULT_WINDOW
        self._peer_window = _DEFAULT_WINDOW
        self._peer_frame = 16_384
        self._table_reset = False
        self._unacked = 0
        self._continuation: tuple[int, int, bytearray] | None = None
        self._out = bytearray()
        self._flush_scheduled = False
        self._blocked: dict[int, None] = {}
        self._drain_waiters: dict[int, asyncio.Future[None]] = {}
        self._paused = False
        self._going_away = False
        self._closed = False
        self._pings = 0
        self._running = 0
        """Handlers of this connection's calls still running, those of streams already reset included."""
        self._handshake: asyncio.TimerHandle | None = None
        self.idle_since: float | None = None
        """When the last stream ended (None while a stream is open or before the handshake): eviction order."""

    def peer(self) -> str:
        address = self._transport.get_extra_info("peername") if self._transport is not None else None
        if not isinstance(address, tuple) or len(address) < 2:
            return "unknown"
        host, port = address[0], address[1]
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        if not self._edge.admit(self):
            self._closed = True
            self._transport.close()
            return
        self._handshake = self.loop.call_later(self._edge.handshake_timeout_s, self._handshake_expired)
        settings = struct.pack(
            ">HLHLHLHL",
            0x3,
            _MAX_STREAMS,
            0x4,
            _STREAM_WINDOW,
            0x5,
            _MAX_FRAME,
            0x6,
            _MAX_HEADER_LIST,
        )
        self._frame(_SETTINGS, 0, 0, settings)
        self._frame(_WINDOW_UPDATE, 0, 0, struct.pack(">L", _CONNECTION_WINDOW - _DEFAULT_WINDOW))
        if self._edge.draining:
            self.go_away()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._edge.connections.pop(self, None)
        if self._handshake is not None:
            self._handshake.cancel()
            self._handshake = None
        for stream in self._streams.values():
            self._give(stream)
            if stream.call is not None:
                stream.call.cancelled()
        self._streams.clear()
        for waiter in self._drain_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        """The socket's send buffer is full: stop reading too, so a client that does not read cannot make us
        buffer the answers to its PINGs, SETTINGS, resets and requests without bound (RFC 9113 section 10.5)."""
        self._paused = True
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()
        for stream_id in list(self._drain_waiters):
            self._wake_drained(stream_id)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            offset = 0
            if not self._preface:
                if len(buffer) < len(_PREFACE):
                    if not _PREFACE.startswith(bytes(buffer)):
                        raise _ProtocolError(_PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    return
                if not buffer.startswith(_PREFACE):
                    raise _ProtocolError(_PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                self._preface = True
                offset = len(_PREFACE)
                if self._handshake is not None:
                    self._handshake.cancel()
                    self._handshake = None
                self.idle_since = self.loop.time()
            end = len(buffer)
            while end - offset >= 9:
                high, low, kind, flags, stream_id = _FRAME.unpack_from(buffer, offset)
                length = (high << 8) | low
                if length > _MAX_FRAME:
                    raise _ProtocolError(_FRAME_SIZE_ERROR, f"a frame of {length} bytes (most {_MAX_FRAME})")
                if end - offset - 9 < length:
                    break
                start = offset + 9
                offset = start + length
                self._on_frame(kind, flags, stream_id & 0x7FFFFFFF, memoryview(buffer)[start:offset])
                if self._closed:
                    return
            del buffer[:offset]
        except _ProtocolError as exc:
            _log.debug("grpc_connection_error", error=str(exc))
            self._abandon(exc.code, str(exc))
        except (HPACKError, UnicodeDecodeError) as exc:  # hpack decodes values as UTF-8 and lets that error out
            _log.debug("grpc_connection_error", error=f"header decoding: {exc}")
            self._abandon(_COMPRESSION_ERROR, "header block could not be decoded")

    def check_stalled(self, now: float, timeout_s: float) -> None:
        """Answer CANCELLED to unary calls whose request has not moved for ``timeout_s`` (run by the edge's sweep).

        Streaming calls are left alone: a bidirectional stream may rightly be quiet for long."""
        for stream_id, stream in list(self._streams.items()):
            call = stream.call
            if stream.remote_closed or call is None or call.requests is not None or stream.refused:
                continue
            if now - stream.last_seen > timeout_s:
                self._refuse(stream_id, stream, StatusCode.CANCELLED, f"no request data for {timeout_s:g} s")

    def handshaking(self) -> bool:
        return not self._preface

    def has_streams(self) -> bool:
        return bool(self._streams) or self._running > 0

    def evict(self) -> None:
        """Make room for a newer connection (see :meth:`GrpcEdge.admit`)."""
        if not self._preface:
            self._closed = True
            if self._transport is not None:
                self._transport.close()
            self._edge.connections.pop(self, None)
        else:
            self.go_away()
            self._edge.connections.pop(self, None)  # no longer counted: it closes as soon as its streams end

    def _handshake_expired(self) -> None:
        self._handshake = None
        if not self._preface and not self._closed:
            _log.debug("grpc_connection_error", error="no HTTP/2 preface in time")
            self._abandon(_PROTOCOL_ERROR, "no HTTP/2 preface in time")

    def spawn(self, work: Coroutine[Any, Any, None], call: Call, held: int = 0) -> None:
        """Run a call's handler in the edge's task set, counted against this connection until it ends; then give
        back the ``held`` bytes of the budget its request message holds."""
        self._running += 1
        task = self._edge.spawn(work, call)
        requests = call.requests
        budget = self._edge.budget
        tasks = self._edge.tasks

        def done(finished: asyncio.Task[None]) -> None:  # one callback per task: each is a loop iteration's handle
            tasks.discard(finished)
            self._running -= 1
            if held:
                budget.give(held)
            if requests is not None:
                requests.discard()

        task.add_done_callback(done)

    # -- frames in --------------------------------------------------------------------------------------------------
    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if self._continuation is not None and kind != _CONTINUATION:
            raise _ProtocolError(_PROTOCOL_ERROR, "a header block was interrupted")
        if kind == _DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == _HEADERS:
            self._on_headers(flags, stream_id, payload)
        elif kind == _CONTINUATION:
            if self._continuation is None or self._continuation[0] != stream_id:
                raise _ProtocolError(_PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            _, first_flags, block = self._continuation
            if not payload and not flags & _END_HEADERS:
                self._flood()
            block += payload
            if len(block) > _MAX_HEADER_LIST * 2:
                raise _ProtocolError(_ENHANCE_YOUR_CALM, "header block too large")
            if flags & _END_HEADERS:
                self._continuation = None
                self._on_header_block(stream_id, first_flags, bytes(block))
        elif kind == _WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == _SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif kind == _PING:
            if len(payload) != 8:
                raise _ProtocolError(_FRAME_SIZE_ERROR, "a PING must carry 8 bytes")
            if stream_id:
                raise _ProtocolError(_PROTOCOL_ERROR, "a PING on a stream")
            self._flood()
            if not flags & _ACK:
                self._frame(_PING, _ACK, 0, bytes(payload))
        elif kind == _RST_STREAM:
            self._on_reset(stream_id, payload)
        elif kind == _PRIORITY:
            if not stream_id:
                raise _ProtocolError(_PROTOCOL_ERROR, "PRIORITY on stream 0")
            self._flood()
            if len(payload) != 5:
                if stream_id not in self._streams:  # a stream error needs a stream: idle or closed, the connection's
                    raise _ProtocolError(_FRAME_SIZE_ERROR, "PRIORITY must carry 5 bytes")
                self._reset_stream(stream_id, _FRAME_SIZE_ERROR)
        elif kind == _GOAWAY:
            if stream_id:
                raise _ProtocolError(_PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise _ProtocolError(_FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
            self._going_away = True
            if not self._streams:
                self._close()
        elif kind == _PUSH_PROMISE:
            raise _ProtocolError(_PROTOCOL_ERROR, "clients may not push")
        else:
            self._flood()  # unknown frame types are ignored (RFC 9113 section 5.5), but not without end

    def _on_reset(self, stream_id: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise _ProtocolError(_FRAME_SIZE_ERROR, "RST_STREAM must carry 4 bytes")
        if not stream_id:
            raise _ProtocolError(_PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if stream_id > self._last_stream:
            raise _ProtocolError(_PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        self._flood()  # a stream's reset costs a decoded header block and maybe a handler's work: count them
        stream = self._streams.pop(stream_id, None)
        self._blocked.pop(stream_id, None)
        self._wake_drained(stream_id)
        if stream is not None:
            self._give(stream)
            if stream.call is not None:
                stream.call.cancelled()
            self._maybe_close()

    def _reset_stream(self, stream_id: int, code: int) -> None:
        """A stream error (RFC 9113 section 5.4.2): reset the stream and end its call; the connection goes on."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.call is not None:
            stream.call.cancelled()
        self.reset(stream_id, code)

    def _flood(self) -> None:
        self._pings += 1
        if self._pings > _MAX_PING_FLOOD:
            raise _ProtocolError(_ENHANCE_YOUR_CALM, "too many control frames")

    def _on_settings(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id:
            raise _ProtocolError(_PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & _ACK:
            if payload:
                raise _ProtocolError(_FRAME_SIZE_ERROR, "a SETTINGS acknowledgement with a payload")
            return
        if len(payload) % 6:
            raise _ProtocolError(_FRAME_SIZE_ERROR, "SETTINGS length is not a multiple of 6")
        self._flood()
        for index in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HL", payload, index)
            if key == 0x1:  # HEADER_TABLE_SIZE: we never index, but must say so after a change
                self._table_reset = True
            elif key == 0x2 and value > 1:
                raise _ProtocolError(_PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH is neither 0 nor 1")
            elif key == 0x4:
                if value > _MAX_WINDOW:
                    raise _ProtocolError(_FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                delta = value - self._peer_window
                self._peer_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > _MAX_WINDOW:
                        raise _ProtocolError(_FLOW_CONTROL_ERROR, "a stream window overflows")
                if delta > 0:
                    self._pump_all()
            elif key == 0x5:
                if not 16_384 <= value <= 16_777_215:
                    raise _ProtocolError(_PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self._peer_frame = value
        self._frame(_SETTINGS, _ACK, 0, b"")

    def _on_window_update(self, stream_id: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise _ProtocolError(_FRAME_SIZE_ERROR, "WINDOW_UPDATE must carry 4 bytes")
        increment = struct.unpack_from(">L", payload)[0] & 0x7FFFFFFF
        if stream_id > self._last_stream:
            raise _ProtocolError(_PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
        if not increment:
            if not stream_id:
                raise _ProtocolError(_PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self._reset_stream(stream_id, _PROTOCOL_ERROR)
            return
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ProtocolError(_FLOW_CONTROL_ERROR, "connection window overflow")
            self._pump_all()
            return
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.send_window += increment
            if stream.send_window > _MAX_WINDOW:
                self._reset_stream(stream_id, _FLOW_CONTROL_ERROR)
                return
            self._pump(stream_id, stream)

    def _strip(self, flags: int, payload: memoryview, priority: bool) -> memoryview:
        if flags & _PADDED:
            if not payload:
                raise _ProtocolError(_PROTOCOL_ERROR, "padded frame without a pad length")
            pad = payload[0]
            if pad >= len(payload):
                raise _ProtocolError(_PROTOCOL_ERROR, "padding exceeds the frame")
            payload = payload[1 : len(payload) - pad]
        if priority and flags & _PRIORITY_FLAG:
            if len(payload) < 5:
                raise _ProtocolError(_FRAME_SIZE_ERROR, "HEADERS too short for its priority fields")
            payload = payload[5:]
        return payload

    def _on_headers(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if not stream_id:
            raise _ProtocolError(_PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._strip(flags, payload, True)
        if len(block) > _MAX_HEADER_LIST * 2:  # hpack decodes in Python: a 1 MiB block would hold the loop
            raise _ProtocolError(_ENHANCE_YOUR_CALM, "header block too large")
        if flags & _END_HEADERS:
            self._on_header_block(stream_id, flags, bytes(block))
        else:
            self._continuation = (stream_id, flags, bytearray(block))

    def _on_header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decode_headers(block)
        end_stream = bool(flags & _END_STREAM)
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers from the client
            if stream.remote_closed:
                self._reset_stream(stream_id, _STREAM_CLOSED)
                return
            if not end_stream:
                raise _ProtocolError(_PROTOCOL_ERROR, "a second header block without END_STREAM")
            self._end_of_request(stream_id, stream)
            return
        if stream_id <= self._last_stream or not stream_id & 1:
            if stream_id > self._last_stream:
                raise _ProtocolError(_PROTOCOL_ERROR, "an even stream id from a client")
            self._flood()
            return  # a stream we already closed (its trailers, say): nothing to do
        self._last_stream = stream_id
        if (
            self._going_away
            or len(self._streams) >= _MAX_STREAMS
            or self._running >= _MAX_HANDLERS
            or (self._blocked and self._queued_out() > _MAX_QUEUED_OUT)
        ):
            self._flood()  # a client that keeps opening streams past the limits is told to calm down
            self.reset(stream_id, _REFUSED_STREAM)
            return
        self._pings = 0
        self.idle_since = None
        stream = _Stream(self._peer_window, self.loop.time())
        stream.remote_closed = end_stream
        self._streams[stream_id] = stream
        self._open(stream_id, stream, headers)
        if end_stream and stream_id in self._streams:
            self._end_of_request(stream_id, stream)

    def _queued_out(self) -> int:
        """Answer bytes waiting for the client's windows (only blocked streams hold any for long)."""
        streams = self._streams
        return sum(sum(map(len, streams[i].outbound)) for i in self._blocked if i in streams)

    def _decode_headers(self, block: bytes) -> Headers:
        """Decode a header block, every one (even a refused stream's: the dynamic table must follow them all).

        Clients send the same block again and again (the same method, fields indexed once), and ``hpack`` takes
        about 80 us for one: a block that left the dynamic table as it was is remembered, and the same bytes
        decode to the same headers for as long as the table does not change. Any block that changes it (an
        insertion, an eviction, a size update) forgets them all.
        """
        headers = self._header_cache.get(block)
        if headers is not None:
            return headers
        table = self._decoder.header_table
        entries = table.dynamic_entries
        size, first, limit = len(entries), entries[0] if entries else None, table.maxsize
        headers = tuple(cast("list[tuple[str, str]]", self._decoder.decode(block)))
        unchanged = len(entries) == size and (entries[0] if entries else None) is first and table.maxsize == limit
        if unchanged and len(block) <= _CACHED_BLOCK:
            if len(self._header_cache) >= _HEADER_CACHE:
                self._header_cache.clear()
            self._header_cache[block] = headers
        elif not unchanged and self._header_cache:
            self._header_cache.clear()
        return headers

    def _open(self, stream_id: int, stream: _Stream, headers: Headers) -> None:
        path = method = content_type = encoding = timeout = ""
        for name, value in headers:
            if name[:1] == ":":
                if name == ":path":
                    path = value
                elif name == ":method":
                    method = value
            elif name == "content-type":
                content_type = value
            elif name == "grpc-timeout":
                timeout = value
            elif name == "grpc-encoding":
                encoding = value
        handler = self._edge.methods.get(path)
        deadline = None
        if timeout:
            seconds = _parse_timeout(timeout)
            if seconds is not None:
                deadline = self.loop.time() + seconds
        call = Call(self, stream_id, headers, handler.serialize if handler else bytes, deadline)
        stream.call = call
        if method != "POST" or not content_type.startswith("application/grpc"):
            stream.refused = True
            call.headers_sent = True
            call.cancelled()
            # :status (static name 8) 405 or 415 as a literal: neither is in the static table
            self.send_headers(stream_id, b"\x08\x03405" if method != "POST" else b"\x08\x03415", True)
            return
        if handler is None:
            stream.refused = True
            call.finish(StatusCode.UNIMPLEMENTED, f"Method not found: {path}")
            return
        if encoding and encoding != "identity":
            if encoding not in _ENCODINGS:
                stream.refused = True
                message = f"grpc-encoding '{encoding}' is not supported"
                call.finish(StatusCode.UNIMPLEMENTED, message, (("grpc-accept-encoding", _ACCEPT_ENCODING),))
                return
            stream.encoding = encoding
        stream.method = handler
        call.start_timer()
        if isinstance(handler, StreamMethod):
            requests = _Requests(self._edge.budget, lambda exc: self._inflate_failed(stream_id, call, stream, exc))
            call.requests = requests
            self.spawn(self._edge.run_stream(handler, requests, call), call)

    def _on_data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if not stream_id:
            raise _ProtocolError(_PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._unacked += size
        if self._unacked > _CONNECTION_WINDOW:
            raise _ProtocolError(_FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        if self._unacked >= _CONNECTION_WINDOW // 2:
            self._frame(_WINDOW_UPDATE, 0, 0, struct.pack(">L", self._unacked))
            self._unacked = 0
        end_stream = flags & _END_STREAM
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream:
                raise _ProtocolError(_PROTOCOL_ERROR, "DATA on an idle stream")
            self._flood()  # a stream we reset or answered already: allowed, but not without end
            return
        if stream.remote_closed:
            self._reset_stream(stream_id, _STREAM_CLOSED)
            return
        if not end_stream:
            if stream.unacked + size > _STREAM_WINDOW:
                self._reset_stream(stream_id, _FLOW_CONTROL_ERROR)
                return
            if size:
                self._pings = 0  # a long stream's data comes with the client's BDP pings: they are not a flood
            else:
                self._flood()
        data = self._strip(flags, payload, False)
        stream.last_seen = self.loop.time()
        if not stream.refused and data:
            try:
                self._edge.budget.take(len(data))
            except Overloaded as exc:
                self._refuse(stream_id, stream, StatusCode.UNAVAILABLE, str(exc))
            else:
                stream.held += len(data)
                stream.body += data
                self._take_messages(stream_id, stream)
        if stream_id not in self._streams:
            return
        if not end_stream:
            stream.unacked += size
            if stream.unacked >= _STREAM_WINDOW // 2:
                self._frame(_WINDOW_UPDATE, 0, stream_id, struct.pack(">L", stream.unacked))
                stream.unacked = 0
        else:
            self._end_of_request(stream_id, stream)

    def _refuse(self, stream_id: int, stream: _Stream, code: StatusCode, details: str) -> None:
        """Answer ``code`` before the request arrived whole: the rest of its data is dropped."""
        call = stream.call
        assert call is not None
        stream.refused = True
        self._give(stream)
        stream.body = bytearray()
        call.finish(code, details)
        self._finished(stream_id, stream)
        if call.requests is not None:
            call.cancelled()

    def _inflate_failed(self, stream_id: int, call: Call, stream: _Stream, exc: ModelportError) -> None:
        """A streaming call's message inflated in a thread did not: the call ends with the status that says why."""
        if stream_id in self._streams:
            self._refuse(stream_id, stream, _inflate_status(exc), _inflate_problem(exc, stream))
        else:
            call.finish(_inflate_status(exc), _inflate_problem(exc, stream))
            call.cancelled()

    def _give(self, stream: _Stream) -> None:
        """Give back the budget ``stream``'s body holds (it ended, or its bytes are dropped)."""
        if stream.held:
            self._edge.budget.give(stream.held)
            stream.held = 0

    def _take_messages(self, stream_id: int, stream: _Stream) -> None:
        """Check the size of the message that is arriving; hand whole messages of a stream to its handler."""
        body = stream.body
        call = stream.call
        assert call is not None
        limit = self._edge.max_message_bytes
        while len(body) >= 5:
            compressed, length = _MESSAGE.unpack_from(body)
            if length > limit:
                self._refuse(
                    stream_id,
                    stream,
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"Received message larger than max ({length} vs. {limit})",
                )
                return
            requests = call.requests
            if requests is None:  # a unary call's message is taken whole at the end of the stream
                if len(body) > 5 + length:
                    self._refuse(stream_id, stream, StatusCode.INTERNAL, "a unary call must carry exactly one message")
                return
            if len(body) < 5 + length:
                return
            message = bytes(body[5 : 5 + length])
            del body[: 5 + length]
            held = min(stream.held, 5 + length)
            stream.held -= held
            if compressed and stream.encoding is not None and (len(message) > _INLINE_INFLATE or requests.waiting()):
                # large, or behind messages the handler has not taken: in a thread, its outcome kept in order
                reservation = self._edge.budget.reservation()
                inflating = self.loop.run_in_executor(None, self._inflate, stream, message, reservation.take)
                requests.put(inflating, held, reservation)
                continue
            if compressed:
                reservation = self._edge.budget.reservation()
                try:
                    message = self._inflate(stream, message, reservation.take)
                except ModelportError as exc:
                    reservation.release()
                    self._edge.budget.give(held)
                    self._refuse(stream_id, stream, _inflate_status(exc), _inflate_problem(exc, stream))
                    return
                held += reservation.size
                reservation.size = 0  # the queue entry holds it now
            requests.put(message, held)

    def _inflate(self, stream: _Stream, message: bytes, reserve: Callable[[int], None]) -> bytes:
        """``message`` inflated (``stream.encoding``), at most ``max_message_bytes``, each step reserved."""
        if stream.encoding is None:
            raise _NotCompressed("a compressed message without grpc-encoding")
        inflated = decompress_body(message, stream.encoding, max_bytes=self._edge.max_message_bytes, reserve=reserve)
        return inflated if isinstance(inflated, bytes) else bytes(inflated)

    async def _inflated_unary(self, method: UnaryMethod, call: Call, stream: _Stream, message: bytes) -> None:
        """A compressed unary call's task: inflate its message (in a thread when large), then run the handler;
        the inflated bytes hold the budget until it ends."""
        reservation = self._edge.budget.reservation()
        try:
            try:
                if len(message) <= _INLINE_INFLATE:
                    message = self._inflate(stream, message, reservation.take)
                else:
                    message = await asyncio.to_thread(self._inflate, stream, message, reservation.take)
            except ModelportError as exc:
                call.finish(_inflate_status(exc), _inflate_problem(exc, stream))
                return
            await self._edge.run_unary(method, message, call)
        finally:
            reservation.release()

    def _end_of_request(self, stream_id: int, stream: _Stream) -> None:
        stream.remote_closed = True
        call = stream.call
        assert call is not None
        if stream.refused:
            self._finished(stream_id, stream)
            return
        if call.requests is not None:
            if stream.body:
                self._refuse(stream_id, stream, StatusCode.INTERNAL, "the stream ended inside a message")
            else:
                call.requests.close()
            return
        body = stream.body
        if len(body) < 5:
            problem = "the request carried no message" if not body else "truncated message"
            self._refuse(stream_id, stream, StatusCode.INTERNAL, problem)
            return
        compressed, length = _MESSAGE.unpack_from(body)
        if len(body) != 5 + length:
            self._refuse(stream_id, stream, StatusCode.INTERNAL, "a unary call must carry exactly one whole message")
            return
        stream.body = bytearray()
        held, stream.held = stream.held, 0
        method = stream.method
        assert isinstance(method, UnaryMethod)
        message = bytes(memoryview(body)[5:])
        if compressed:
            self.spawn(self._inflated_unary(method, call, stream, message), call, held)
        else:
            self.spawn(self._edge.run_unary(method, message, call), call, held)

    # -- frames out -------------------------------------------------------------------------------------------------
    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes | memoryview) -> None:
        length = len(payload)
        out = self._out
        out += _FRAME.pack(length >> 8, length & 0xFF, kind, flags, stream_id)
        out += payload
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and not self._closed:
            self._transport.write(bytes(self._out))
        self._out.clear()

    def send_headers(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        if self._table_reset:
            self._table_reset = False
            block = b"\x20" + block  # a dynamic table size update to 0: we never index
        flags = _END_STREAM if end_stream else 0
        limit = self._peer_frame
        if len(block) <= limit:
            self._frame(_HEADERS, flags | _END_HEADERS, stream_id, block)
        else:
            self._frame(_HEADERS, flags, stream_id, block[:limit])
            for start in range(limit, len(block), limit):
                last = start + limit >= len(block)
                self._frame(_CONTINUATION, _END_HEADERS if last else 0, stream_id, block[start : start + limit])
        if end_stream:
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._finished(stream_id, stream)

    def send_trailers(self, stream_id: int, block: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.outbound:
            stream.outbound.append(memoryview(block))
            stream.outbound.append(memoryview(b""))  # the marker: what precedes it is the trailers block
            return
        self.send_headers(stream_id, block, True)

    def send_message(self, call: Call, payload: bytes) -> None:
        stream = self._streams.get(call.stream_id)
        if stream is None:
            return
        if not call.headers_sent:
            call.headers_sent = True
            self.send_headers(call.stream_id, _RESPONSE_HEADERS, False)
        message = _MESSAGE.pack(0, len(payload)) + payload
        size = len(message)
        if not stream.outbound and size <= min(stream.send_window, self._send_window, self._peer_frame):
            stream.send_window -= size
            self._send_window -= size
            self._frame(_DATA, 0, call.stream_id, message)
            return
        stream.outbound.append(memoryview(message))
        self._pump(call.stream_id, stream)

    def send_unary(self, call: Call, payload: bytes) -> None:
        """Headers (unless sent), the message and OK trailers: the whole answer of a unary call."""
        stream_id = call.stream_id
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        size = len(payload) + 5
        if (
            not stream.outbound
            and size <= stream.send_window
            and size <= self._send_window
            and size <= self._peer_frame
            and not self._table_reset
        ):  # the usual case, in one go
            stream.send_window -= size
            self._send_window -= size
            out = self._out
            if not call.headers_sent:
                call.headers_sent = True
                out += _FRAME.pack(0, len(_RESPONSE_HEADERS), _HEADERS, _END_HEADERS, stream_id)
                out += _RESPONSE_HEADERS
            out += _FRAME.pack(size >> 8, size & 0xFF, _DATA, 0, stream_id)
            out += _MESSAGE.pack(0, len(payload))
            out += payload
            self._frame(_HEADERS, _END_STREAM | _END_HEADERS, stream_id, _STATUS_OK)
            self._finished(stream_id, stream)
            return
        self.send_message(call, payload)
        self.send_trailers(stream_id, _STATUS_OK)

    def _pump(self, stream_id: int, stream: _Stream) -> None:
        """Send what the windows let out of ``stream``'s queue; the trailers follow its last byte."""
        outbound = stream.outbound
        while outbound:
            chunk = outbound[0]
            if len(outbound) >= 2 and not outbound[1]:  # trailers, then the marker
                outbound.clear()
                self.send_headers(stream_id, bytes(chunk), True)
                return
            room = min(stream.send_window, self._send_window, self._peer_frame)
            if room <= 0:
                self._blocked[stream_id] = None
                return
            piece = chunk[:room]
            if len(piece) == len(chunk):
                outbound.popleft()
            else:
                outbound[0] = chunk[room:]
            stream.send_window -= len(piece)
            self._send_window -= len(piece)
            self._frame(_DATA, 0, stream_id, piece)
        self._blocked.pop(stream_id, None)
        self._wake_drained(stream_id)

    def _pump_all(self) -> None:
        for stream_id in list(self._blocked):
            stream = self._streams.get(stream_id)
            if stream is None:
                self._blocked.pop(stream_id, None)
            else:
                self._pump(stream_id, stream)
            if self._send_window <= 0:
                return

    async def drained(self, stream_id: int) -> None:
        """Wait until ``stream_id``'s queue is out and the socket takes more (back-pressure for streams)."""
        stream = self._streams.get(stream_id)
        if self._closed or stream is None or (not stream.outbound and not self._paused):
            return
        waiter = self.loop.create_future()
        self._drain_waiters[stream_id] = waiter
        await waiter

    def _wake_drained(self, stream_id: int) -> None:
        waiter = self._drain_waiters.get(stream_id)
        if waiter is None:
            return
        stream = self._streams.get(stream_id)
        if self._paused and stream is not None:
            return
        if stream is None or not stream.outbound:
            del self._drain_waiters[stream_id]
            if not waiter.done():
                waiter.set_result(None)

    def reset(self, stream_id: int, code: int) -> None:
        self._frame(_RST_STREAM, 0, stream_id, struct.pack(">L", code))
        stream = self._streams.pop(stream_id, None)
        self._blocked.pop(stream_id, None)
        self._wake_drained(stream_id)
        if stream is not None:
            self._give(stream)
            self._maybe_close()

    def _finished(self, stream_id: int, stream: _Stream) -> None:
        """Our side of the stream ended (END_STREAM sent): forget it, resetting it when the client is not done."""
        if stream.outbound:
            return
        if not stream.remote_closed:
            self._frame(_RST_STREAM, 0, stream_id, struct.pack(">L", _NO_ERROR))
        if self._streams.pop(stream_id, None) is not None:
            self._give(stream)
            self._blocked.pop(stream_id, None)
            self._wake_drained(stream_id)
            self._maybe_close()

    def _maybe_close(self) -> None:
        if self._streams:
            return
        self.idle_since = self.loop.time()
        if self._going_away:
            self._close()

    def go_away(self) -> None:
        """No new streams (GOAWAY NO_ERROR naming the last one we take); closes once the open ones end."""
        if self._going_away:
            return
        self._going_away = True
        self._frame(_GOAWAY, 0, 0, struct.pack(">LL", self._last_stream, _NO_ERROR))
        if not self._streams:
            self._close()

    def _close(self) -> None:
        if self._closed or self._transport is None:
            return
        self._flush()
        self._closed = True
        self._transport.close()

    def _abandon(self, code: int, message: str) -> None:
        if self._closed:
            return
        self._frame(_GOAWAY, 0, 0, struct.pack(">LL", self._last_stream, code) + message.encode()[:256])
        for stream in self._streams.values():
            self._give(stream)
            if stream.call is not None:
                stream.call.cancelled()
        self._streams.clear()
        self._close()

    def abort(self) -> None:
        """Shutdown after the grace period: cancel what is left and close."""
        for stream in list(self._streams.values()):
            self._give(stream)
            if stream.call is not None:
                stream.call.cancelled()
                if stream.call.task is not None:
                    stream.call.task.cancel()
        self._streams.clear()
        self._close()


class _NotCompressed(ModelportError):
    """A message flagged compressed on a stream without ``grpc-encoding`` (the client's mistake; gRPC's spec has
    it answered INTERNAL, which :func:`_inflate_status` does)."""

    status = 400


def _inflate_status(exc: ModelportError) -> StatusCode:
    if isinstance(exc, Overloaded):
        return StatusCode.UNAVAILABLE
    return StatusCode.RESOURCE_EXHAUSTED if isinstance(exc, PayloadTooLarge) else StatusCode.INTERNAL


def _inflate_problem(exc: ModelportError, stream: _Stream) -> str:
    if isinstance(exc, _NotCompressed):
        return "a compressed message without grpc-encoding"
    if isinstance(exc, Overloaded | PayloadTooLarge):
        return str(exc)
    return f"a {stream.encoding} message that does not decompress: {exc}"


# -- the server ----------------------------------------------------------------------------------------------------
class GrpcEdge:
    """Serves ``methods`` (``"/package.Service/Method"`` -> method) on one listening socket of this loop."""

    def __init__(
        self,
        methods: Mapping[str, Method],
        *,
        max_message_bytes: int,
        budget: BodyBudget | None = None,
        max_connections: int = _MAX_CONNECTIONS,
        handshake_timeout_s: float = _HANDSHAKE_TIMEOUT_S,
        body_idle_timeout_s: float = _BODY_IDLE_TIMEOUT_S,
    ) -> None:
        """``budget`` bounds the request bytes all connections hold at once (default: four largest messages);
        ``max_connections``, ``handshake_timeout_s`` and ``body_idle_timeout_s`` as :meth:`admit`,
        ``_HANDSHAKE_TIMEOUT_S`` and ``_BODY_IDLE_TIMEOUT_S`` say."""
        self.methods = dict(methods)
        self.max_message_bytes = max_message_bytes
        self.budget = budget if budget is not None else BodyBudget(4 * max_message_bytes)
        self.max_connections = max_connections
        self.handshake_timeout_s = handshake_timeout_s
        self.body_idle_timeout_s = body_idle_timeout_s
        self._sweep_handle: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.connections: dict[_Connection, None] = {}
        """The open connections, oldest first."""
        self.draining = False
        self._server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        """Every handler running; each removes itself when it ends (see ``_Connection.spawn``)."""

    async def bind(self, host: str, port: int, *, reuse_port: bool) -> int:
        """Listen on ``host:port`` (``reuse_port``: share it with other processes); the bound port."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=reuse_port or None, backlog=1024
        )
        sockets: Iterable[Any] = self._server.sockets
        return int(next(iter(sockets)).getsockname()[1])

    def admit(self, connection: _Connection) -> bool:
        """Take a new connection, or say no. At ``max_connections`` the one doing least makes room: the oldest
        still without its preface, else the one idle (no stream open) longest, which is sent GOAWAY; with neither,
        the newcomer is refused (closed at once), so idle or silent sockets never lock clients out."""
        connections = self.connections
        if len(connections) >= self.max_connections:
            waiting = [c for c in connections if c.handshaking()]
            idle = [c for c in connections if not c.handshaking() and not c.has_streams()]
            if waiting:
                waiting[0].evict()  # sets keep insertion order: the first is the oldest
            elif idle:
                min(idle, key=lambda c: c.idle_since or 0.0).evict()
            else:
                return False
        connections[connection] = None
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(self._sweep_interval_s(), self._sweep)
        return True

    def _sweep_interval_s(self) -> float:
        return min(1.0, max(0.05, self.body_idle_timeout_s / 4))

    def _sweep(self) -> None:
        """One timer per edge, re-armed while connections are open: stalled requests end (see check_stalled)."""
        self._sweep_handle = None
        now = self.loop.time()
        for connection in list(self.connections):
            connection.check_stalled(now, self.body_idle_timeout_s)
        if self.connections and self._server is not None:
            self._sweep_handle = self.loop.call_later(self._sweep_interval_s(), self._sweep)

    def spawn(self, work: Coroutine[Any, Any, None], call: Call) -> asyncio.Task[None]:
        """Run a call's handler in its own task, held in :attr:`tasks` (the caller discards it when it ends)."""
        task = self.loop.create_task(work)
        call.task = task
        self.tasks.add(task)
        return task

    async def run_unary(self, method: UnaryMethod, message: bytes, call: Call) -> None:
        try:
            response = await method.handle(message, call)
            payload = method.serialize(response)
        except Abort as abort:
            call.finish(abort.code, abort.details, abort.trailing)
        except Exception as exc:  # noqa: BLE001 - a handler's bug is the call's UNKNOWN, never the connection's
            _log.exception("grpc_handler_failed", stream=call.stream_id)
            call.finish(StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}")
        else:
            call.respond(payload)

    async def run_stream(self, method: StreamMethod, requests: _Requests, call: Call) -> None:
        try:
            await method.handle(requests, call)
        except Abort as abort:
            call.finish(abort.code, abort.details, abort.trailing)
        except asyncio.CancelledError:
            call.cancelled()
            raise
        except Exception as exc:  # noqa: BLE001
            _log.exception("grpc_handler_failed", stream=call.stream_id)
            call.finish(StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}")
        else:
            call.finish(StatusCode.OK)

    async def stop(self, grace_s: float) -> None:
        """Refuse new connections and streams, give the calls in flight ``grace_s``, then cancel the rest."""
        self.draining = True
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.go_away()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await asyncio.sleep(0)  # the last answers' write
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
