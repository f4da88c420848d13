"""The gRPC edge against hostile HTTP/2 peers, over raw sockets: rapid reset, control-frame floods, header and
HPACK bombs, zip bombs, slow bodies, clients that never read or never send the preface, and malformed frames.

Each test checks the bound (what the edge holds, what it answers) rather than timings, and that the edge still
serves a well-behaved client afterwards. Limits are lowered per test (module constants, or the edge's arguments)
so a bound is reached in milliseconds.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

import grpc
import pytest
from hpack import Decoder, Encoder

from service.api.grpc import transport
from service.api.grpc.transport import Call, GrpcEdge, StreamMethod, UnaryMethod
from service.api.limits import BodyBudget

LIMIT = 4 << 20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR = 0x1, 0x3, 0x5, 0x6
REFUSED_STREAM, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x9, 0xB


class Frame(NamedTuple):
    kind: int
    flags: int
    stream: int
    payload: bytes

    @property
    def code(self) -> int:
        """The error code of a GOAWAY or RST_STREAM."""
        return int(struct.unpack_from(">L", self.payload, 4 if self.kind == GOAWAY else 0)[0])


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HBBBL", len(payload) >> 8, len(payload) & 0xFF, kind, flags, stream) + payload


def request_block(path: str = "/t.S/Echo", *extra: tuple[str, str]) -> bytes:
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path), ("content-type", "application/grpc")]
    return bytes(Encoder().encode([*fields, *extra]))


def message(body: bytes, compressed: int = 0) -> bytes:
    return struct.pack(">BL", compressed, len(body)) + body


def call_frames(stream: int, body: bytes = b"hi", path: str = "/t.S/Echo") -> bytes:
    return frame(HEADERS, END_HEADERS, stream, request_block(path)) + frame(DATA, END_STREAM, stream, message(body))


class Peer:
    """A raw HTTP/2 client: writes bytes as given, reads frames back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._pending = b""
        self.decoder = Decoder()

    @classmethod
    async def connect(cls, target: str, *, preface: bool = True) -> Peer:
        host, port = target.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        peer = cls(reader, writer)
        if preface:
            peer.send(PREFACE + frame(SETTINGS, 0, 0))
        return peer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read(self, until: int | Callable[[Frame], bool] | None = None, timeout: float = 3.0) -> list[Frame]:
        """Frames until one of kind ``until`` (or one ``until`` is true of) arrives, the connection closes, or
        ``timeout`` passes."""
        done = until if callable(until) else (lambda f: f.kind == until)
        frames: list[Frame] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            while len(self._pending) >= 9:
                high, low, kind, flags, stream = struct.unpack_from(">HBBBL", self._pending)
                length = (high << 8) | low
                if len(self._pending) < 9 + length:
                    break
                frames.append(Frame(kind, flags, stream & 0x7FFFFFFF, self._pending[9 : 9 + length]))
                self._pending = self._pending[9 + length :]
                if done(frames[-1]):
                    return frames
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return frames
            try:
                chunk = await asyncio.wait_for(self.reader.read(1 << 16), remaining)
            except (TimeoutError, ConnectionError):
                return frames
            if not chunk:
                return frames
            self._pending += chunk

    async def goaway(self, timeout: float = 3.0) -> Frame:
        frames = await self.read(GOAWAY, timeout)
        assert frames and frames[-1].kind == GOAWAY, frames
        return frames[-1]

    def status(self, frames: list[Frame], stream: int) -> str:
        """The ``grpc-status`` a stream was answered with (its header blocks decoded in order)."""
        fields: dict[str, str] = {}
        for each in frames:
            if each.kind == HEADERS and each.stream == stream:
                fields.update((str(name), str(value)) for name, value in self.decoder.decode(each.payload))
        return fields.get("grpc-status", "")

    def close(self) -> None:
        self.writer.close()


class Handlers:
    def __init__(self) -> None:
        self.started = 0
        self.gate = asyncio.Event()

    async def echo(self, raw: bytes, call: Call) -> bytes:
        return raw

    async def gated(self, raw: bytes, call: Call) -> bytes:
        self.started += 1
        await self.gate.wait()
        return raw

    async def chat(self, requests: AsyncIterator[bytes], call: Call) -> None:
        await self.gate.wait()
        async for raw in requests:
            await call.write(raw)


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def edge(handlers: Handlers) -> AsyncIterator[tuple[GrpcEdge, str]]:
    server = GrpcEdge(
        {
            "/t.S/Echo": UnaryMethod(handlers.echo, bytes),
            "/t.S/Gated": UnaryMethod(handlers.gated, bytes),
            "/t.S/Chat": StreamMethod(handlers.chat, bytes),
        },
        max_message_bytes=LIMIT,
        budget=BodyBudget(3 * LIMIT),
        max_connections=3,
        handshake_timeout_s=0.3,
        body_idle_timeout_s=0.3,
    )
    port = await server.bind("127.0.0.1", 0, reuse_port=False)
    yield server, f"127.0.0.1:{port}"
    handlers.gate.set()
    await server.stop(0.5)


async def serves(target: str) -> bool:
    """Whether a well-behaved client still gets its answer."""
    peer = await Peer.connect(target)
    try:
        peer.send(call_frames(1, b"ok"))
        frames = await peer.read(lambda f: f.kind == GOAWAY or (f.kind == HEADERS and bool(f.flags & END_STREAM)))
        return peer.status(frames, 1) == "0" and any(f.kind == DATA and f.payload.endswith(b"ok") for f in frames)
    finally:
        peer.close()


async def settled(edge: GrpcEdge) -> None:
    """Wait until every handler task ended (each gives its budget back as it ends)."""
    for _ in range(100):
        if not edge.tasks:
            return
        await asyncio.sleep(0.01)


async def test_rapid_reset_is_bounded_by_running_handlers_not_open_streams(
    edge: tuple[GrpcEdge, str], handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, target = edge
    monkeypatch.setattr(transport, "_MAX_HANDLERS", 8)
    monkeypatch.setattr(transport, "_MAX_PING_FLOOD", 200)
    peer = await Peer.connect(target)
    burst = b"".join(
        call_frames(s, path="/t.S/Gated") + frame(RST_STREAM, 0, s, struct.pack(">L", 8)) for s in range(1, 2001, 2)
    )
    peer.send(burst)
    frames = await peer.read(GOAWAY)
    assert handlers.started == 8  # each reset stream's handler still runs, and counts
    assert len(server.tasks) == 8
    refused = [f for f in frames if f.kind == RST_STREAM and f.code == REFUSED_STREAM]
    assert refused  # first refused, then told to calm down
    assert frames[-1].kind == GOAWAY and frames[-1].code == ENHANCE_YOUR_CALM
    handlers.gate.set()
    await settled(server)
    assert server.budget.used == 0
    assert await serves(target)


@pytest.mark.parametrize(
    "flood",
    [
        pytest.param(frame(PING, 0, 0, b"12345678"), id="ping"),
        pytest.param(frame(SETTINGS, 0, 0), id="settings"),
        pytest.param(frame(PRIORITY, 0, 3, b"\0\0\0\0\x10"), id="priority"),
        pytest.param(frame(DATA, 0, 1, b""), id="empty-data"),
        pytest.param(frame(0x20, 0, 0, b"x"), id="unknown-type"),
        pytest.param(frame(PING, 0, 0, b"12345678") + frame(DATA, 0, 99, b""), id="ping-and-data-on-a-closed-stream"),
        pytest.param(frame(RST_STREAM, 0, 99, b"\0\0\0\x08"), id="resets-of-closed-streams"),
    ],
)
async def test_control_frame_floods_end_in_enhance_your_calm(
    edge: tuple[GrpcEdge, str], monkeypatch: pytest.MonkeyPatch, flood: bytes
) -> None:
    _, target = edge
    monkeypatch.setattr(transport, "_MAX_PING_FLOOD", 100)
    peer = await Peer.connect(target)
    # stream 1 stays open (a gated call without END_STREAM); stream 99 is opened and answered first
    peer.send(frame(HEADERS, END_HEADERS, 1, request_block("/t.S/Gated")) + call_frames(99))
    peer.send(flood * 200)
    assert (await peer.goaway()).code == ENHANCE_YOUR_CALM
    peer.close()
    assert await serves(target)


@pytest.mark.exclusive  # asserts a refusal within 1 s: needs the machine's cores to itself under pytest-xdist
async def test_empty_continuation_frames_are_a_flood_and_a_growing_header_block_is_capped(
    edge: tuple[GrpcEdge, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, target = edge
    monkeypatch.setattr(transport, "_MAX_PING_FLOOD", 100)
    peer = await Peer.connect(target)
    peer.send(frame(HEADERS, 0, 1, b"\x83") + frame(CONTINUATION, 0, 1) * 200)
    assert (await peer.goaway()).code == ENHANCE_YOUR_CALM
    peer = await Peer.connect(target)
    peer.send(frame(HEADERS, 0, 1, b"\x83") + frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b" * 4096) * 40)
    assert (await peer.goaway()).code == ENHANCE_YOUR_CALM
    peer = await Peer.connect(target)  # one HEADERS frame of 1 MiB: refused before hpack (pure Python) decodes it
    started = time.perf_counter()
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x20" * ((1 << 20) - 1)))
    assert (await peer.goaway()).code == ENHANCE_YOUR_CALM
    assert time.perf_counter() - started < 1.0
    assert await serves(target)


async def test_an_hpack_bomb_is_measured_by_its_decoded_size(edge: tuple[GrpcEdge, str]) -> None:
    _, target = edge
    peer = await Peer.connect(target)
    # one 4000-byte field into the dynamic table (literal, incremental indexing), then 100 one-byte references to it
    big = b"\x40\x01x" + b"\x7f" + bytes((0x80 | ((4000 - 127) & 0x7F), (4000 - 127) >> 7)) + b"y" * 4000
    block = request_block() + big + b"\xbe" * 100
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    assert (await peer.goaway()).code == COMPRESSION_ERROR
    assert await serves(target)


async def test_a_zip_bomb_inflates_no_further_than_the_message_cap(edge: tuple[GrpcEdge, str]) -> None:
    server, target = edge
    bomb = gzip.compress(b"\0" * (16 << 20), 9)  # 16 KiB that would inflate to 16 MiB (the cap is 4 MiB)
    peer = await Peer.connect(target)
    headers = request_block("/t.S/Echo", ("grpc-encoding", "gzip"))
    peer.send(frame(HEADERS, END_HEADERS, 1, headers) + frame(DATA, END_STREAM, 1, message(bomb, 1)))
    small = gzip.compress(b"fine")
    peer.send(frame(HEADERS, END_HEADERS, 3, headers) + frame(DATA, END_STREAM, 3, message(small, 1)))
    ended: set[int] = set()

    def both_ended(f: Frame) -> bool:
        if f.kind == HEADERS and f.flags & END_STREAM:
            ended.add(f.stream)
        return len(ended) == 2

    frames = await peer.read(both_ended)
    assert peer.status(frames, 1) == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    assert peer.status(frames, 3) == "0"
    assert any(f.kind == DATA and f.stream == 3 and f.payload.endswith(b"fine") for f in frames)
    await settled(server)
    assert server.budget.used == 0


async def test_a_streaming_call_inflates_large_messages_in_order_off_the_loop_and_a_bomb_ends_it(
    edge: tuple[GrpcEdge, str], handlers: Handlers
) -> None:
    server, target = edge
    handlers.gate.set()
    peer = await Peer.connect(target)
    headers = request_block("/t.S/Chat", ("grpc-encoding", "gzip"))
    large = gzip.compress(random.Random(1).randbytes(32 << 10))  # over the inline size: a worker thread
    peer.send(frame(HEADERS, END_HEADERS, 1, headers))
    peer.send(frame(DATA, 0, 1, message(large, 1) + message(gzip.compress(b"second"), 1) + message(b"third")))
    peer.send(frame(DATA, 0, 1, message(gzip.compress(b"\0" * (16 << 20), 9), 1) + message(b"never")))
    frames = await peer.read(lambda f: f.kind == HEADERS and bool(f.flags & END_STREAM))
    data = b"".join(f.payload for f in frames if f.kind == DATA)
    answers = []
    while data:
        length = struct.unpack_from(">L", data, 1)[0]
        answers.append(data[5 : 5 + length])
        data = data[5 + length :]
    assert answers == [gzip.decompress(large), b"second", b"third"]
    assert peer.status(frames, 1) == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    await settled(server)
    assert server.budget.used == 0
    peer.close()


async def test_slow_bodies_are_bounded_by_the_budget_and_give_it_back(edge: tuple[GrpcEdge, str]) -> None:
    server, target = edge
    peer = await Peer.connect(target)
    chunk = b"y" * ((1 << 20) - 16)
    for stream in range(1, 12, 2):  # six streams, each 3 MiB into a 4 MiB message, none finished
        peer.send(
            frame(HEADERS, END_HEADERS, stream, request_block())
            + frame(DATA, 0, stream, message(b"y" * (LIMIT - 1))[: 1 << 20])
        )
        peer.send(frame(DATA, 0, stream, chunk) * 2)
    frames = await peer.read(timeout=0.3)
    unavailable = str(grpc.StatusCode.UNAVAILABLE.value[0])
    refused = [s for s in range(1, 12, 2) if peer.status(frames, s) == unavailable]
    assert refused  # the budget (12 MiB) took about four of them
    assert server.budget.used <= server.budget.limit
    peer.close()
    for _ in range(100):
        if not server.budget.used:
            break
        await asyncio.sleep(0.01)
    assert server.budget.used == 0
    assert await serves(target)


async def test_a_streaming_call_whose_handler_does_not_read_is_bounded_by_the_budget(
    edge: tuple[GrpcEdge, str], handlers: Handlers
) -> None:
    server, target = edge
    peer = await Peer.connect(target)
    peer.send(frame(HEADERS, END_HEADERS, 1, request_block("/t.S/Chat")))
    piece = message(b"z" * ((1 << 20) - 64))
    for _ in range(20):  # 20 MiB of whole messages, queued for a handler that waits at its gate
        peer.send(frame(DATA, 0, 1, piece))
    frames = await peer.read(lambda f: f.kind == HEADERS and bool(f.flags & END_STREAM))
    assert peer.status(frames, 1) == str(grpc.StatusCode.UNAVAILABLE.value[0])
    assert server.budget.used <= server.budget.limit
    handlers.gate.set()
    await settled(server)
    assert server.budget.used == 0


async def test_a_client_that_does_not_read_is_no_longer_read(
    edge: tuple[GrpcEdge, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, target = edge
    monkeypatch.setattr(transport, "_MAX_PING_FLOOD", 1 << 40)  # the flood limit aside: back-pressure alone
    host, port = target.split(":")
    outcome: dict[str, object] = {}

    def flood() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.settimeout(0.3)
        pings = frame(PING, 0, 0, b"12345678") * 4096
        sent = 0
        try:
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
            while sent < 64 << 20:
                sock.sendall(pings)
                sent += len(pings)
        except TimeoutError:
            outcome["blocked"] = True
        outcome["sent"] = sent
        outcome["sock"] = sock

    thread = threading.Thread(target=flood)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.05)
    buffered = [c._transport.get_write_buffer_size() for c in server.connections if c._transport is not None]
    assert outcome.get("blocked"), outcome.get("sent")  # the edge stopped reading: the client's sends back up
    assert max(buffered) < 4 << 20  # not 17 bytes of PING ACK per 17 bytes sent, without end
    sock = outcome["sock"]
    assert isinstance(sock, socket.socket)
    sock.close()


async def test_answers_held_for_a_client_that_never_opens_its_windows_are_bounded(
    edge: tuple[GrpcEdge, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, target = edge
    monkeypatch.setattr(transport, "_MAX_QUEUED_OUT", 2 << 20)
    peer = await Peer.connect(target, preface=False)
    peer.send(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HL", 0x4, 0)))  # stream windows of 0, never opened
    body = b"a" * ((1 << 20) - 64)
    for stream in range(1, 17, 2):  # eight calls with 1 MiB answers, none of which can be sent
        peer.send(frame(HEADERS, END_HEADERS, stream, request_block()))
        peer.send(frame(DATA, END_STREAM, stream, message(body)))
        await asyncio.sleep(0.02)
    frames = await peer.read(lambda f: f.kind == RST_STREAM and f.code == REFUSED_STREAM)
    refused = [f.stream for f in frames if f.kind == RST_STREAM and f.code == REFUSED_STREAM]
    assert refused and min(refused) <= 7  # about 2 MiB of answers held, then new streams refused
    assert not [f for f in frames if f.kind == DATA]
    peer.close()
    assert await serves(target)


async def test_a_unary_request_left_unfinished_is_answered_and_gives_its_bytes_back(
    edge: tuple[GrpcEdge, str],
) -> None:
    server, target = edge
    peer = await Peer.connect(target)
    peer.send(frame(HEADERS, END_HEADERS, 1, request_block()) + frame(DATA, 0, 1, message(b"x" * 1000)[:500]))
    peer.send(frame(HEADERS, END_HEADERS, 3, request_block("/t.S/Chat")))  # a quiet stream is left alone
    frames = await peer.read(lambda f: f.kind == HEADERS and bool(f.flags & END_STREAM), timeout=2.0)
    assert peer.status(frames, 1) == str(grpc.StatusCode.CANCELLED.value[0])
    assert server.budget.used == 0
    assert not [f for f in frames if f.stream == 3 and f.kind in (HEADERS, RST_STREAM)]
    peer.close()


async def test_a_connection_without_the_preface_is_closed_and_silent_ones_make_room(
    edge: tuple[GrpcEdge, str],
) -> None:
    server, target = edge
    silent = await Peer.connect(target, preface=False)
    assert (await silent.goaway(timeout=2.0)).code == PROTOCOL_ERROR  # the handshake timeout (0.3 s here)
    assert await silent.reader.read() == b""
    silent_ones = [await Peer.connect(target, preface=False) for _ in range(3)]  # the cap is 3
    await asyncio.sleep(0.05)
    assert await serves(target)  # the oldest silent one made room
    assert len(server.connections) <= 3
    for peer in silent_ones:
        peer.close()


OPEN_3 = frame(HEADERS, END_HEADERS, 3, request_block())
"""Stream 3 opened (its request not ended)."""
ERRORS = [
    pytest.param(frame(DATA, 0, 0, b"x"), ("goaway", PROTOCOL_ERROR), id="data-on-stream-0"),
    pytest.param(frame(DATA, 0, 5, b"x"), ("goaway", PROTOCOL_ERROR), id="data-on-an-idle-stream"),
    pytest.param(frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), ("goaway", PROTOCOL_ERROR), id="window-update-0"),
    pytest.param(frame(WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff"), ("goaway", FLOW_CONTROL_ERROR), id="overflow"),
    pytest.param(frame(WINDOW_UPDATE, 0, 0, b"\0\0\x01"), ("goaway", FRAME_SIZE_ERROR), id="window-update-short"),
    pytest.param(frame(RST_STREAM, 0, 0, b"\0\0\0\0"), ("goaway", PROTOCOL_ERROR), id="reset-stream-0"),
    pytest.param(frame(RST_STREAM, 0, 9, b"\0\0\0\0"), ("goaway", PROTOCOL_ERROR), id="reset-an-idle-stream"),
    pytest.param(frame(RST_STREAM, 0, 1, b"\0"), ("goaway", FRAME_SIZE_ERROR), id="reset-short"),
    pytest.param(frame(PRIORITY, 0, 0, b"\0" * 5), ("goaway", PROTOCOL_ERROR), id="priority-on-stream-0"),
    pytest.param(frame(PRIORITY, 0, 1, b"\0"), ("rst", FRAME_SIZE_ERROR), id="priority-short"),
    pytest.param(frame(GOAWAY, 0, 1, b"\0" * 8), ("goaway", PROTOCOL_ERROR), id="goaway-on-a-stream"),
    pytest.param(frame(SETTINGS, 1, 0, b"\0" * 6), ("goaway", FRAME_SIZE_ERROR), id="settings-ack-payload"),
    pytest.param(frame(SETTINGS, 0, 0, b"\0\x05\0\0\0\x01"), ("goaway", PROTOCOL_ERROR), id="max-frame-size-1"),
    pytest.param(frame(SETTINGS, 0, 0, b"\0\x02\0\0\0\x02"), ("goaway", PROTOCOL_ERROR), id="enable-push-2"),
    pytest.param(frame(SETTINGS, 0, 0, b"\0"), ("goaway", FRAME_SIZE_ERROR), id="settings-length"),
    pytest.param(frame(SETTINGS, 0, 0, b"\0\x04\x80\0\0\0"), ("goaway", FLOW_CONTROL_ERROR), id="initial-window-2g"),
    pytest.param(frame(PING, 0, 0, b"1234"), ("goaway", FRAME_SIZE_ERROR), id="ping-short"),
    pytest.param(frame(PING, 0, 1, b"12345678"), ("goaway", PROTOCOL_ERROR), id="ping-on-a-stream"),
    pytest.param(frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\0"), ("rst", PROTOCOL_ERROR), id="stream-window-update-0"),
    pytest.param(frame(WINDOW_UPDATE, 0, 1, b"\x7f\xff\xff\xff"), ("rst", FLOW_CONTROL_ERROR), id="stream-overflow"),
    pytest.param(frame(HEADERS, END_HEADERS | END_STREAM, 1, b""), ("rst", STREAM_CLOSED), id="headers-after-end"),
    pytest.param(frame(DATA, 0, 1, b"x"), ("rst", STREAM_CLOSED), id="data-after-end-stream"),
    pytest.param(OPEN_3 + frame(DATA, PADDED, 3, b"\x09" + b"x" * 8), ("goaway", PROTOCOL_ERROR), id="padding-long"),
    pytest.param(OPEN_3 + frame(DATA, PADDED, 3, b""), ("goaway", PROTOCOL_ERROR), id="padded-without-length"),
    pytest.param(
        frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 3, b"\0\0"), ("goaway", FRAME_SIZE_ERROR), id="priority-5"
    ),
    pytest.param(frame(HEADERS, END_HEADERS, 2, request_block()), ("goaway", PROTOCOL_ERROR), id="even-stream-id"),
    pytest.param(
        frame(HEADERS, END_HEADERS, 3, b"\xff\xff\xff\xff\x0f"), ("goaway", COMPRESSION_ERROR), id="bad-index"
    ),
    pytest.param(frame(HEADERS, END_HEADERS, 3, b"\x00\x01a\x01\xff"), ("goaway", COMPRESSION_ERROR), id="not-utf8"),
    pytest.param(frame(HEADERS, END_HEADERS, 3, b"\x00\x00\x01a" + request_block()), ("open", 0), id="empty-name"),
    pytest.param(frame(CONTINUATION, END_HEADERS, 1, b""), ("goaway", PROTOCOL_ERROR), id="continuation-alone"),
    pytest.param(frame(HEADERS, 0, 3, b"\x83") + frame(PING, 0, 0, b"12345678"), ("goaway", PROTOCOL_ERROR), id="cut"),
    pytest.param(frame(0x5, END_HEADERS, 1, b"\0\0\0\x02"), ("goaway", PROTOCOL_ERROR), id="push-promise"),
    pytest.param(b"\x10\x00\x01" + bytes(6), ("goaway", FRAME_SIZE_ERROR), id="frame-over-max-frame-size"),
]


@pytest.mark.parametrize(("frames", "expected"), ERRORS)
async def test_protocol_errors_are_connection_or_stream_errors_never_exceptions(
    edge: tuple[GrpcEdge, str], caplog: pytest.LogCaptureFixture, frames: bytes, expected: tuple[str, int]
) -> None:
    """RFC 9113: each malformed input is a GOAWAY or a RST_STREAM with its error code, nothing is logged at ERROR
    (asyncio logs a protocol's exception as "Fatal error" with a traceback), and the edge serves afterwards."""
    server, target = edge
    peer = await Peer.connect(target)
    # stream 1: a call whose client ended its request; its gated handler keeps it open
    peer.send(call_frames(1, path="/t.S/Gated") + frames + frame(PING, 0, 0, b"pingpong"))
    with caplog.at_level(logging.ERROR):
        got = await peer.read(lambda f: f.kind == GOAWAY or (f.kind == PING and f.payload == b"pingpong"))
    kind, code = expected
    if kind == "goaway":
        assert got and got[-1].kind == GOAWAY and got[-1].code == code, got
    elif kind == "rst":
        assert [f.code for f in got if f.kind == RST_STREAM and f.stream == 1] == [code], got
        assert not [f for f in got if f.kind == GOAWAY]
    else:
        assert not [f for f in got if f.kind == GOAWAY], got
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    peer.close()
    assert await serves(target)
    assert server.budget.used <= 4 << 10


@pytest.mark.soak
async def test_random_frames_never_raise_nor_leak(edge: tuple[GrpcEdge, str], caplog: pytest.LogCaptureFixture) -> None:
    """Fuzzing: random frame sequences (valid headers, random types, flags, ids and payloads)."""
    server, target = edge
    rng = random.Random()
    pieces = [call_frames(1), request_block(), message(b"x" * 10), b"\0\0\0\0", b"\x7f\xff\xff\xff", b"12345678", b""]
    with caplog.at_level(logging.ERROR):
        for _ in range(2000):
            peer = await Peer.connect(target)
            data = b"".join(
                (
                    frame(
                        rng.randrange(11),
                        rng.randrange(256),
                        rng.choice((0, 1, 2, 3, 5, 7, 2**31 - 1)),
                        rng.choice(pieces),
                    )
                    if rng.random() < 0.8
                    else bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
                )
                for _ in range(rng.randrange(1, 30))
            )
            peer.send(data)
            await peer.read(GOAWAY, timeout=0.05)
            peer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await settled(server)
    await asyncio.sleep(0.1)
    assert server.budget.used == 0
    assert await serves(target)
