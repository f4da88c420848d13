"""Connection limits under ``modelport serve --server granian`` (issue 12): what granian can enforce is set from
our settings (``service.cli.serve_cmd.granian_limits``), and docs/security.md says which limits hold there.

Measured here on a real server: the header cap (431) and the header-read timeout hold; the application-level
limits (body cap, in-flight budget, decoding rules) hold under any server. Skipped where granian is not installed
(it is the ``granian`` extra).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from service.cli.serve_cmd import granian_limits
from service.settings import Settings
from tests.helpers.server import SMALL_LIMITS, ServerProcess, read_until_closed, run_server

# exclusive: asserts timings (timeouts, prompt answers) that need the machine's cores to itself under pytest-xdist
pytestmark = [pytest.mark.integration, pytest.mark.exclusive]


def test_the_limits_granian_gets_come_from_the_settings() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        header_timeout_s=2.5,
        max_header_bytes=4096,
        max_header_field_bytes=4096,
        max_connections=77,
        drain_timeout_s=0.2,
    )
    assert granian_limits(settings) == {
        "header_read_timeout_ms": 2500,
        "max_buffer_size": 8192,  # hyper's minimum
        "backpressure": 77,
        "workers_kill_timeout": 1,
    }
    assert granian_limits(Settings(_env_file=None, max_header_bytes=65536))["max_buffer_size"] == 65536  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pytest.importorskip("granian")
    limits = {**SMALL_LIMITS, "MODELPORT_MAX_HEADER_BYTES": "16384", "MODELPORT_MAX_HEADER_FIELD_BYTES": "8192"}
    with run_server(tmp_path_factory.mktemp("granian") / "data", extra_env=limits, args=("--server", "granian")) as p:
        yield p


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10.0)


def test_headers_past_the_cap_are_refused(server: ServerProcess) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"k" * (1 << 20) + b"\r\n\r\n")
        reply = read_until_closed(sock)
    assert not reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert time.monotonic() - started < 5.0


def test_headers_that_never_finish_are_closed_after_the_header_timeout(server: ServerProcess) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        reply = read_until_closed(sock)
        took = time.monotonic() - started
    assert not reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert 0.8 < took < 5.0, took  # HEADER_TIMEOUT_S is 1 s here


def test_a_normal_request_is_served(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.get("/v2/health/live").status_code == 200
