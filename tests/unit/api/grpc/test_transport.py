"""The gRPC edge's HTTP/2 and gRPC framing against grpcio's own client (and raw sockets where a client would hide
the behaviour): flow control, metadata, status, deadlines, compression, cancellation, refusals and shutdown.

The edge runs on the test's event loop; each blocking grpcio call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest

from service.api.grpc.transport import Call, GrpcEdge, StreamMethod, UnaryMethod

_T = TypeVar("_T")
LIMIT = 4 << 20


async def _echo(raw: bytes, call: Call) -> bytes:
    metadata = dict(call.invocation_metadata())
    if raw == b"fail":
        await call.abort(grpc.StatusCode.FAILED_PRECONDITION, "n\u00e9e 100% refus\u00e9e\n", (("x-why", "test"),))
    if raw in (b"sleep", b"pause"):
        await asyncio.sleep(5 if raw == b"sleep" else 0.3)
    await call.send_initial_metadata((("x-echo", str(metadata.get("x-in", ""))), ("x-blob-bin", b"\x00\xff")))
    return raw * int(str(metadata.get("x-times", "1")))


async def _chat(requests: AsyncIterator[bytes], call: Call) -> None:
    await call.send_initial_metadata((("x-stream", "1"),))
    async for raw in requests:
        await call.write(raw.upper())


async def _boom(raw: bytes, call: Call) -> bytes:
    raise RuntimeError("a bug")


@pytest.fixture
async def edge() -> AsyncIterator[tuple[GrpcEdge, str]]:
    server = GrpcEdge(
        {
            "/t.S/Echo": UnaryMethod(_echo, bytes),
            "/t.S/Chat": StreamMethod(_chat, bytes),
            "/t.S/Boom": UnaryMethod(_boom, bytes),
        },
        max_message_bytes=LIMIT,
    )
    port = await server.bind("127.0.0.1", 0, reuse_port=False)
    yield server, f"127.0.0.1:{port}"
    await server.stop(0.5)


async def _in_thread(work: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(None, work)


def _channel(target: str, **options: Any) -> grpc.Channel:
    return grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1), *options.items()])


async def test_unary_metadata_both_ways_and_a_response_larger_than_every_window(edge: tuple[GrpcEdge, str]) -> None:
    _, target = edge

    def calls() -> list[Any]:
        with _channel(target) as channel:
            echo = channel.unary_unary("/t.S/Echo")
            small = echo.with_call(b"hi", metadata=(("x-in", "hello"),), timeout=10)
            big = echo.with_call(b"0123456789abcdef" * 40_000, metadata=(("x-times", "3"),), timeout=10)  # 1.9 MB
            return [small, big]

    (small, small_call), (big, _) = await _in_thread(calls)
    assert small == b"hi"
    initial = dict(small_call.initial_metadata())
    assert initial["x-echo"] == "hello"
    assert initial["x-blob-bin"] == b"\x00\xff"
    assert small_call.code() == grpc.StatusCode.OK
    assert big == b"0123456789abcdef" * 120_000


async def test_status_message_metadata_and_handler_bugs(edge: tuple[GrpcEdge, str]) -> None:
    _, target = edge

    def calls() -> list[grpc.RpcError]:
        failures = []
        with _channel(target) as channel:
            for method, body in (("/t.S/Echo", b"fail"), ("/t.S/Boom", b""), ("/t.S/Nope", b"")):
                with pytest.raises(grpc.RpcError) as failed:
                    channel.unary_unary(method)(body, timeout=10)
                failures.append(failed.value)
        return failures

    refused, bug, unknown = await _in_thread(calls)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details() == "n\u00e9e 100% refus\u00e9e\n"  # percent-encoded on the wire, decoded by grpcio
    assert dict(refused.trailing_metadata())["x-why"] == "test"
    assert bug.code() == grpc.StatusCode.UNKNOWN
    assert "a bug" not in bug.details()  # no internals
    assert unknown.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/t.S/Nope" in unknown.details()


async def test_deadline_message_cap_and_compression(edge: tuple[GrpcEdge, str]) -> None:
    _, target = edge

    def calls() -> tuple[grpc.StatusCode, grpc.StatusCode, bytes]:
        with _channel(target, **{"grpc.max_send_message_length": -1}) as channel:
            echo = channel.unary_unary("/t.S/Echo")
            with pytest.raises(grpc.RpcError) as late:
                echo(b"sleep", timeout=0.2)
            with pytest.raises(grpc.RpcError) as large:
                echo(b"x" * (LIMIT + 1), timeout=10)
            gzipped = echo(b"z" * 100_000, timeout=10, compression=grpc.Compression.Gzip)
        return late.value.code(), large.value.code(), gzipped

    late, large, gzipped = await _in_thread(calls)
    assert late == grpc.StatusCode.DEADLINE_EXCEEDED
    assert large == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert gzipped == b"z" * 100_000


async def test_streams_answer_in_order_and_a_cancelled_one_leaves_the_connection_serving(
    edge: tuple[GrpcEdge, str],
) -> None:
    _, target = edge

    def calls() -> tuple[list[bytes], str, bytes]:
        with _channel(target) as channel:
            chat = channel.stream_stream("/t.S/Chat")
            replies = chat(iter([b"a", b"b" * 200_000, b"c"]), timeout=10)
            answers = list(replies)
            stream = dict(replies.initial_metadata())["x-stream"]
            gone = chat(iter([b"x"] * 1000), timeout=10)
            next(gone)
            gone.cancel()
            after = channel.unary_unary("/t.S/Echo")(b"still", timeout=10)
        return answers, stream, after

    answers, stream, after = await _in_thread(calls)
    assert answers == [b"A", b"B" * 200_000, b"C"]
    assert stream == "1"
    assert after == b"still"


def _raw_request(target: str, frames: bytes) -> bytes:
    host, port = target.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(frames)
        received = b""
        sock.settimeout(0.5)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def _frames(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    offset = 0
    while offset + 9 <= len(data):
        high, low, kind, flags, stream = struct.unpack_from(">HBBBL", data, offset)
        length = (high << 8) | low
        yield kind, flags, stream, data[offset + 9 : offset + 9 + length]
        offset += 9 + length


async def test_a_non_grpc_request_is_415_and_garbage_closes_the_connection(edge: tuple[GrpcEdge, str]) -> None:
    _, target = edge
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">HBBBL", 0, 0, 4, 0, 0)
    # HEADERS, END_STREAM | END_HEADERS: :method POST (3), :path / (4), :scheme http (6), content-type text/plain
    block = b"\x83\x84\x86" + b"\x0f\x10\x0atext/plain"
    headers = struct.pack(">HBBBL", 0, len(block), 1, 0x5, 1) + block
    answer = await _in_thread(lambda: _raw_request(target, preface + headers))
    replies = [(kind, flags, payload) for kind, flags, stream, payload in _frames(answer) if stream == 1]
    assert replies[0][0] == 1 and replies[0][1] & 0x1  # one HEADERS frame that ends the stream
    assert replies[0][2] == b"\x08\x03415"
    closed = await _in_thread(lambda: _raw_request(target, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert 7 in [kind for kind, *_ in _frames(closed)]  # GOAWAY, then the connection closes


async def test_stop_lets_calls_in_flight_finish_and_refuses_new_streams(edge: tuple[GrpcEdge, str]) -> None:
    server, target = edge
    channel = _channel(target)
    try:
        echo = channel.unary_unary("/t.S/Echo")
        assert await _in_thread(lambda: echo(b"warm", timeout=10)) == b"warm"
        in_flight = asyncio.ensure_future(_in_thread(lambda: echo(b"pause", timeout=10)))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(server.stop(5.0))
        assert await in_flight == b"pause"
        with pytest.raises(grpc.RpcError) as refused:
            await _in_thread(lambda: echo(b"late", timeout=2))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.wait_for(stopping, 5.0)
    finally:
        channel.close()
