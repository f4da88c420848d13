"""Replies through the coalescing transport on a real server: pipelined requests answered whole and in order,
``Expect: 100-continue`` still answered before the body is sent, large replies intact, and the head and body of a
small reply in one TCP segment."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ServerProcess, read_until_closed, run_server

IN_DIM = 4
_RESPONSE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(.*?)\r\n\r\n", re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("writes")
    artifact = root / "mlp.onnx"
    make_mlp_onnx(artifact, in_dim=IN_DIM, hidden=8, out=3, seed=3)
    with run_server(root / "data") as process:
        process.register_onnx("m", artifact)
        with process.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
        yield process


def _connect(server: ServerProcess) -> socket.socket:
    address = urlsplit(server.base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=5.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _infer_request(request_id: str, *, extra: str = "", close: bool = False) -> bytes:
    body = json.dumps(
        {"id": request_id, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, IN_DIM], "data": [0.5] * 4}]}
    ).encode()
    head = (
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
    )
    return head.encode() + body


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a stream of HTTP/1.1 responses (each with a Content-Length) into (status, headers, body)."""
    out = []
    position = 0
    while position < len(data):
        match = _RESPONSE.match(data, position)
        assert match is not None, data[position : position + 200]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.decode().partition(":") for line in match.group(2).split(b"\r\n"))
        }
        start = match.end()
        end = start + int(headers["content-length"])
        out.append((int(match.group(1)), headers, data[start:end]))
        position = end
    return out


def test_pipelined_requests_are_answered_whole_and_in_order(server: ServerProcess) -> None:
    ids = [f"pipe-{i}" for i in range(5)]
    payload = b"".join(_infer_request(i, close=(n == len(ids) - 1)) for n, i in enumerate(ids))
    with _connect(server) as sock:
        sock.sendall(payload)  # all five in one write: parsed in one read, answered one after another
        replies = _responses(read_until_closed(sock))
    assert [status for status, _, _ in replies] == [200] * len(ids)
    assert [json.loads(body)["id"] for _, _, body in replies] == ids
    assert len({headers["x-request-id"] for _, headers, _ in replies}) == len(ids)  # each its own prediction


def test_expect_100_continue_is_answered_before_the_body_is_sent(server: ServerProcess) -> None:
    request = _infer_request("continue-1", extra="Expect: 100-continue\r\n", close=True)
    head, _, body = request.partition(b"\r\n\r\n")
    with _connect(server) as sock:
        sock.sendall(head + b"\r\n\r\n")
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        data = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :] + read_until_closed(sock)
    ((status, _, reply),) = _responses(data)
    assert status == 200 and json.loads(reply)["id"] == "continue-1"


def _write_syscalls(pid: int) -> int:
    with open(f"/proc/{pid}/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("syscw:"))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/PID/io (Linux)")
def test_a_small_reply_is_one_write_and_a_large_one_arrives_intact(server: ServerProcess) -> None:
    calls = 200
    with _connect(server) as sock:
        sock.sendall(_infer_request("warm-up"))
        _responses(sock.recv(65536))
        before = _write_syscalls(server.process.pid)
        for i in range(calls):
            sock.sendall(_infer_request(f"one-write-{i}"))
            ((status, headers, body),) = _responses(sock.recv(65536))  # one read holds head and body
            assert status == 200 and len(body) == int(headers["content-length"])
        writes = _write_syscalls(server.process.pid) - before
    # per reply: the batch worker's wake-up of the loop (an eventfd write) and the reply; uvicorn alone writes head
    # and body apart (3 in all); the prediction log's flush adds a few a second
    assert writes < 2.5 * calls, f"{writes} write calls for {calls} replies"
    schema = httpx.get(f"{server.base_url}/schema/openapi.json", timeout=10.0)
    assert schema.status_code == 200 and len(schema.content) > 64 * 1024  # past the coalescer's flush threshold
    assert schema.json()["openapi"].startswith("3.")
