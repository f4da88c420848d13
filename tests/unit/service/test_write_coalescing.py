"""CoalescingTransport: one write per loop iteration, in order, never held past a close or a size cap."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from service.write_coalescing import FLUSH_BYTES, CoalescingTransport


class RecordingTransport:
    """The calls a transport received, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, chunks: list[bytes]) -> None:
        self.calls.append(("writelines", [bytes(c) for c in chunks]))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_iteration_leave_together_at_its_end() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert inner.calls == []
    assert transport.get_write_buffer_size() == 7 + 40
    await asyncio.sleep(0)
    assert inner.calls == [("writelines", [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"{}"])]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.calls[-1] == ("write", b"next")


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    transport.close()
    assert inner.calls == [("write", b"HTTP/1.1 400 Bad Request\r\n\r\n"), ("close", None)]
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert len(inner.calls) == 2

    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"never sent")
    transport.abort()
    await asyncio.sleep(0)
    assert inner.calls == [("abort", None)]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"late")
    inner.closing = True
    await asyncio.sleep(0)
    assert inner.calls == []
    assert transport.is_closing()


async def test_a_large_reply_is_not_held() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"head")
    transport.write(b"x" * FLUSH_BYTES)
    assert inner.calls == [("writelines", [b"head", b"x" * FLUSH_BYTES])]
    transport.writelines([b"a", b"b"])
    await asyncio.sleep(0)
    assert inner.calls[-1] == ("writelines", [b"a", b"b"])


async def test_other_attributes_are_the_wrapped_transports() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    assert transport.get_extra_info("peername") == "info:peername"


@pytest.mark.parametrize("chunks", [1, 3])
async def test_over_a_real_socket_the_bytes_arrive_whole_and_in_order(chunks: int) -> None:
    loop = asyncio.get_running_loop()
    server_sock, client_sock = socket.socketpair()
    received = bytearray()
    with server_sock, client_sock:
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=server_sock)
        coalescing = CoalescingTransport(transport, loop)  # type: ignore[arg-type]
        parts = [f"part-{i};".encode() for i in range(chunks)]
        for part in parts:
            coalescing.write(part)
        await asyncio.sleep(0)
        coalescing.close()
        client_sock.setblocking(False)
        while True:
            try:
                data = await loop.sock_recv(client_sock, 65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    assert bytes(received) == b"".join(parts)
