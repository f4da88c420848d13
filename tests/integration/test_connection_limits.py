"""Connection-level limits on a real ``modelport serve`` (issue 12 item 2), each driven by a raw-socket client.

Every test reproduces a finding: a 50 MB header answered 200 after minutes, sockets that never finish their
headers or bodies held forever, slowloris connections past the descriptor limit refusing every normal client,
and unfinished chunked bodies holding memory without bound. Limits are set small so each test takes seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import SMALL_LIMITS, ServerProcess, read_until_closed, run_server

# exclusive: asserts timings (timeouts, prompt answers) that need the machine's cores to itself under pytest-xdist
pytestmark = [pytest.mark.integration, pytest.mark.exclusive]

LIMITS = SMALL_LIMITS
INFER = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("limits") / "data", extra_env=LIMITS) as process:
        yield process


def _connect(server: ServerProcess, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _status(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])


def _send_all_tolerating_close(sock: socket.socket, payload: bytes, chunk: int = 1 << 20) -> None:
    for start in range(0, len(payload), chunk):
        try:
            sock.sendall(payload[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            return  # the server refused and closed: what the tests want


def test_a_50_mb_header_is_refused_with_431_quickly(server: ServerProcess) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        _send_all_tolerating_close(sock, INFER + b"X-Routing-Key: " + b"k" * (50 << 20))
        reply = read_until_closed(sock)
    assert _status(reply) == 431, reply[:200]
    assert b"request headers exceed 8192 bytes" in reply
    assert time.monotonic() - started < 5.0


def test_one_oversized_field_in_a_single_packet_is_refused(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n")
        reply = read_until_closed(sock)
    assert _status(reply) == 431 and b"header field exceeds 4096 bytes" in reply


def test_headers_under_the_caps_are_served(server: ServerProcess) -> None:
    with server.client() as client:
        reply = client.get("/v2/health/live", headers={"X-Routing-Key": "k" * 3000, "X-Other": "o" * 3000})
    assert reply.status_code == 200


def test_headers_that_never_finish_get_408_after_the_header_timeout(server: ServerProcess) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(INFER + b"X-Slow: ")
        for _ in range(8):  # a slowloris: a byte now and then, never the end of the headers
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.25)
        reply = read_until_closed(sock)
    assert _status(reply) == 408, reply[:200]
    assert time.monotonic() - started < 3.0


def test_a_silent_connection_is_closed(server: ServerProcess) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""  # closed without a word after the keep-alive timeout
    assert time.monotonic() - started < 3.0


def test_a_stalled_body_gets_408_after_the_idle_timeout(server: ServerProcess) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(INFER + b"Content-Length: 1000\r\n\r\n" + b"{" * 10)
        reply = read_until_closed(sock)
    assert _status(reply) == 408 and b"request body stalled" in reply, reply[:200]
    assert time.monotonic() - started < 3.0


def test_slowloris_past_the_descriptor_limit_does_not_starve_normal_requests(tmp_path: Path) -> None:
    """300 dribbling sockets against a worker with 256 descriptors (the cap derived from it: 192)."""
    prefix = ("prlimit", "--nofile=256:256")
    with run_server(
        tmp_path / "data", extra_env={**LIMITS, "MODELPORT_HEADER_TIMEOUT_S": "30"}, prefix=prefix
    ) as server:
        _slowloris_then_normal_requests(server, attackers=300)


def _slowloris_then_normal_requests(server: ServerProcess, attackers: int) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(attackers):
            sock = _connect(server)
            sock.sendall(INFER + b"X-Slow: ")
            held.append(sock)
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            with httpx.Client(base_url=server.base_url, timeout=5.0) as client:  # a new connection each time
                assert client.get("/v2/health/live").status_code == 200
            latencies.append(time.monotonic() - started)
        assert max(latencies) < 1.0, latencies
    finally:
        for sock in held:
            sock.close()


def _chunked_start(server: ServerProcess) -> socket.socket:
    sock = _connect(server)
    sock.sendall(INFER + b"Transfer-Encoding: chunked\r\n\r\n")
    return sock


def _send_chunk(sock: socket.socket, size: int) -> None:
    sock.sendall(b"%x\r\n" % size + b"x" * size + b"\r\n")


def test_unfinished_bodies_past_the_inflight_budget_get_503(server: ServerProcess) -> None:
    holders = [_chunked_start(server) for _ in range(2)]
    try:
        for sock in holders:
            for _ in range(3):  # 3 MiB each, under MAX_BODY_BYTES; 6 MiB of the 8 MiB budget
                _send_chunk(sock, 1 << 20)
        time.sleep(0.3)
        with _chunked_start(server) as third:
            third.settimeout(5.0)
            for _ in range(3):
                try:
                    _send_chunk(third, 1 << 20)
                except (BrokenPipeError, ConnectionResetError):
                    break
            reply = read_until_closed(third)
        assert _status(reply) == 503, reply[:300]
        assert b"retry-after: 1" in reply.lower() and b"request bodies in flight" in reply
    finally:
        for sock in holders:
            sock.close()
    time.sleep(0.3)  # the held bytes are given back when those requests end
    with server.client() as client:
        body = b"x" * (3 << 20)
        assert client.post("/v2/models/m/infer", content=body).status_code == 400  # read whole, then decoded
