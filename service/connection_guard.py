"""Connection-level limits for ``modelport serve``: what uvicorn's httptools protocol does not bound.

uvicorn (0.29 - 0.54) has no header-read timeout, no body-read timeout, no header size cap with httptools
(h11 caps the header block but is the slower parser) and no bound on open connections short of the process's
file-descriptor limit, past which ``accept`` fails and every new client is refused. A few idle or dribbling
sockets could therefore hold a worker's memory and descriptors indefinitely. :class:`GuardedHttpToolsProtocol`
is uvicorn's httptools protocol plus:

* **Header caps.** The request line and headers together may hold ``max_header_bytes``, one header field
  ``max_header_field_bytes``; beyond either the client gets 431 and the connection closes. The bytes are
  counted as they arrive, so a 50 MB header is refused after the first read past the cap, not parsed
  (httptools concatenates a growing header value, which is quadratic).
* **Header timeout.** From a request's first byte to the end of its headers: ``header_timeout_s``, else 408
  and close. A connection that sends nothing at all closes after the keep-alive timeout.
* **Body idle timeout.** While a request body is incomplete and the server is reading it, the client must
  send some of it at least every ``body_idle_timeout_s``, else 408 and close.
* **Connection cap.** At most ``max_connections`` open per worker (never more than the descriptor limit
  allows). One more evicts the connection that is doing the least: first the oldest one still sending
  headers (a slowloris), else the longest-idle keep-alive one; with none to evict, the newcomer gets 503.
  A normal request therefore always gets a socket, however many idle ones an attacker opens.
* **One write per response.** Writes go through :class:`~service.write_coalescing.CoalescingTransport`, which
  sends a reply's head and body together.

Timeouts are checked by one sweep per worker (a timer over the open connections), so the per-request cost is
two attribute writes and a clock read.
"""

from __future__ import annotations

import asyncio
import resource
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.settings import Settings
from service.write_coalescing import CoalescingTransport

__all__ = ("ConnectionLimits", "GuardedHttpToolsProtocol", "raise_fd_limit")

_log = structlog.get_logger(__name__)

FD_RESERVE = 64
"""Descriptors kept free for what is not a client connection: the database pool, logs, artifacts, pipes."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits one worker enforces (from :class:`~service.settings.Settings`)."""

    max_header_bytes: int
    max_header_field_bytes: int
    header_timeout_s: float
    body_idle_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = settings.max_connections
        if soft != resource.RLIM_INFINITY:
            cap = max(1, min(cap, soft - FD_RESERVE))
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_header_field_bytes=settings.max_header_field_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_idle_timeout_s=settings.body_idle_timeout_s,
            max_connections=cap,
        )

    @property
    def sweep_interval_s(self) -> float:
        return min(1.0, max(0.05, min(self.header_timeout_s, self.body_idle_timeout_s) / 4))


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit (workers inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class _Refused(Exception):
    """Stops the parser after this protocol answered the request itself."""


def _response(status: int, message: str) -> bytes:
    body = b'{"error":"' + message.encode() + b'"}'
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


class _Sweeper:
    """One timer per server: checks every open connection's deadlines, re-armed while connections exist."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any], interval_s: float) -> None:
        self._loop = loop
        self._connections = connections
        self._interval_s = interval_s
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self._interval_s, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        for connection in list(self._connections):
            if isinstance(connection, GuardedHttpToolsProtocol):
                connection.check_deadlines(now)
        if self._connections:
            self.arm()


_sweepers: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring (``Config(http=...)``)."""

    limits: ClassVar[ConnectionLimits | None] = None
    """Set by ``modelport serve``; a worker process started by import string reads its settings instead."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = type(self).limits
        if limits is None:
            limits = GuardedHttpToolsProtocol.limits = ConnectionLimits.from_settings(Settings())
        self._limits = limits
        self._in_headers = False
        self._header_bytes = 0
        self._request_started = 0.0
        self._last_data = self.loop.time()
        self._refused = False
        self._cycles: list[Any] = []
        """Requests of this connection not yet answered: uvicorn forgets a running one when a pipelined request
        replaces it as ``self.cycle``, and then never tells it that the connection went away."""
        sweeper = _sweepers.get(server_state)
        if sweeper is None:
            sweeper = _sweepers[server_state] = _Sweeper(self.loop, self.connections, limits.sweep_interval_s)
        self._sweeper = sweeper

    # -- connection -----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # every write of this connection goes through the coalescer, so replies keep their order
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        # uvicorn arms its keep-alive timer only after a response; a socket that never sends closes too
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._sweeper.arm()
        if len(self.connections) > self._limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        victim: GuardedHttpToolsProtocol | None = None
        best: tuple[int, float] | None = None
        for connection in self.connections:
            if connection is self or not isinstance(connection, GuardedHttpToolsProtocol):
                continue
            rank = connection._eviction_rank()
            if rank is not None and (best is None or rank < best):
                victim, best = connection, rank
        if victim is None:
            self._refuse(503, "too many connections: try again")
            return
        _log.warning("connection_evicted", open=len(self.connections), cap=self._limits.max_connections)
        if victim._in_headers:
            victim._refuse(503, "too many connections: this one was idle")
        else:
            victim.transport.close()

    def _eviction_rank(self) -> tuple[int, float] | None:
        """None while a request is in progress; else lower is evicted first (sending headers, then idle)."""
        if self._refused:
            return None
        if self._in_headers:
            return (0, self._request_started)
        if self.cycle is None or self.cycle.response_complete:
            return (1, self._last_data)
        return None

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._in_headers = False
        if not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
                self.transport.write(_response(status, message))
            self.transport.close()
        self._abandon_cycle()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's reply to bytes the parser refuses, which closes the connection, also under a request still
        being answered (a valid request followed by pipelined garbage)."""
        super().send_400_response(msg)
        self._abandon_cycle()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._abandon_cycle()

    def _abandon_cycle(self) -> None:
        """The transport is closing under requests whose handlers still run: let each see the disconnect now.

        uvicorn marks only ``self.cycle``, and only in ``connection_lost`` (a later loop iteration): a request
        answered while a pipelined one waits, or between the close and ``connection_lost``, wrote its reply to a
        closed transport, which uvloop answers with ``RuntimeError: unable to perform operation on <TCPTransport
        closed=True>``, a traceback in the log per case (found by ``tests/integration/test_http_fuzz``)."""
        for cycle in (*self._cycles, self.cycle):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def check_deadlines(self, now: float) -> None:
        """Called by the sweep: enforce the header timeout and the body idle timeout."""
        if self._refused:
            return
        limits = self._limits
        if self._in_headers:
            if now - self._request_started > limits.header_timeout_s:
                self._refuse(408, f"request headers not received within {limits.header_timeout_s:g} s")
            return
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.more_body
            and not cycle.response_complete
            and not self.flow.read_paused  # paused: the server is not reading, so the client cannot send
            and now - self._last_data > limits.body_idle_timeout_s
        ):
            self._refuse(408, f"request body stalled: no data for {limits.body_idle_timeout_s:g} s")

    # -- parsing --------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._refused:
                return
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_headers:
            # headers still incomplete: count what they took so far, before the parser buffers more
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse(431, f"request headers exceed {self._limits.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._request_started = self._last_data

    def on_headers_complete(self) -> None:
        self._in_headers = False
        limits = self._limits
        total = len(self.url)
        for name, value in self.headers:
            size = len(name) + len(value)
            if size > limits.max_header_field_bytes:
                self._refuse(431, f"a request header field exceeds {limits.max_header_field_bytes} bytes")
                raise _Refused
            total += size
        if total > limits.max_header_bytes:
            self._refuse(431, f"request headers exceed {limits.max_header_bytes} bytes")
            raise _Refused
        super().on_headers_complete()
        self._cycles = [cycle for cycle in self._cycles if not cycle.response_complete]
        self._cycles.append(self.cycle)
