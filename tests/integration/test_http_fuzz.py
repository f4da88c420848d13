"""Raw-socket fuzzing of a real ``modelport serve`` (issue 12): malformed HTTP/1.1 never gets a 5xx, never kills
the server, and never keeps a normal request from being answered promptly.

A seeded generator writes what a parser meets from hostile clients: bad request lines and versions, obsolete header
folding, duplicate and conflicting ``Content-Length``, ``Content-Length`` with ``Transfer-Encoding``, bad and
oversized chunk sizes, truncated bodies, many headers, NUL, bare CR/LF and non-ASCII bytes, garbage pipelined after
a valid request; and valid V2/V1 inference requests (JSON, binary tensors, gzip) with their bytes mutated. The
cases go out in concurrent batches; after each batch the server must be alive and answer a normal inference in
well under a second. At the end its log must hold no internal error. Limits are set small (half-second timeouts)
so waiting cases end quickly.

The default run is a few seconds (``FUZZ_BATCHES`` batches). ``-m soak`` (or ``MODELPORT_TEST_SOAK=1``) runs
``test_fuzz_soak`` for ``MODELPORT_FUZZ_SECONDS`` (default 120). ``MODELPORT_FUZZ_SEED`` replays a seed; a failure
names the seed and the case that broke.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import SMALL_LIMITS, ServerProcess, read_until_closed, run_server

# exclusive: asserts timings (timeouts, prompt answers) that need the machine's cores to itself under pytest-xdist
pytestmark = [pytest.mark.integration, pytest.mark.exclusive]

LIMITS = {
    **SMALL_LIMITS,
    "MODELPORT_HEADER_TIMEOUT_S": "0.5",
    "MODELPORT_BODY_IDLE_TIMEOUT_S": "0.5",
    "MODELPORT_KEEP_ALIVE_TIMEOUT_S": "0.5",
    "MODELPORT_MAX_BODY_BYTES": str(1 << 20),
    "MODELPORT_LOG_LEVEL": "INFO",
}
FUZZ_BATCHES = 3
BATCH = 48
THREADS = 24
READ_TIMEOUT_S = 2.0
PROMPT_S = 1.0
IN_DIM = 4
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")


@dataclass(frozen=True)
class Case:
    kind: str
    payload: bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``m`` version 1 (a 4-input MLP), production."""
    root = tmp_path_factory.mktemp("fuzz")
    artifact = root / "mlp.onnx"
    make_mlp_onnx(artifact, in_dim=IN_DIM, hidden=8, out=3, seed=1)
    with run_server(root / "data", extra_env=LIMITS) as process:
        process.register_onnx("m", artifact)
        with process.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
        yield process


# -- the generator --------------------------------------------------------------------------------------------


def _json_infer(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    rows = rng.randint(1, 3)
    body = {
        "id": f"fuzz-{rng.randrange(10**6)}",
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [rows, IN_DIM],
                "data": [round(rng.uniform(-1, 1), 3) for _ in range(rows * IN_DIM)],
            }
        ],
    }
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def _binary_infer(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    rows = rng.randint(1, 3)
    payload = struct.pack(f"<{rows * IN_DIM}f", *(rng.uniform(-1, 1) for _ in range(rows * IN_DIM)))
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [rows, IN_DIM],
                    "parameters": {"binary_data_size": len(payload)},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + payload, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def _valid_request(rng: random.Random) -> bytes:
    """A well-formed inference request: V2 JSON or binary (maybe gzip), or V1 predict."""
    choice = rng.randrange(4)
    if choice == 0:
        body, headers, path = *_binary_infer(rng), "/v2/models/m/infer"
    elif choice == 1:
        rows = [[rng.uniform(-1, 1) for _ in range(IN_DIM)] for _ in range(rng.randint(1, 3))]
        body, headers, path = json.dumps({"inputs": rows}).encode(), {}, "/v1/models/m/versions/1/predict"
    else:
        body, headers = _json_infer(rng)
        path = "/v2/models/m/infer"
        if choice == 3:
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return _request("POST", path, headers, body)


def _request(method: str, path: str, headers: dict[str, str], body: bytes, *, length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not buffer:
            break
        at = rng.randrange(len(buffer))
        edit = rng.randrange(5)
        if edit == 0:
            buffer[at] = rng.randrange(256)
        elif edit == 1:
            buffer.insert(at, rng.choice(b'\r\n\x00:; \t\xff{}[]"0-9'))
        elif edit == 2:
            del buffer[at : at + rng.randint(1, 8)]
        elif edit == 3:
            del buffer[at:]
        else:
            buffer[at:at] = buffer[max(0, at - 16) : at]  # duplicate a run
    return bytes(buffer)


def _chunked(rng: random.Random, body: bytes) -> bytes:
    parts = []
    pos = 0
    while pos < len(body):
        size = rng.randint(1, 64)
        chunk = body[pos : pos + size]
        size_text = rng.choice([f"{len(chunk):x}", f"{len(chunk):X}", f"{len(chunk):x};ext=1", f"{len(chunk) + 1:x}"])
        parts.append(size_text.encode() + b"\r\n" + chunk + b"\r\n")
        pos += size
    tail = rng.choice([b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", b"", b"0\r\n", b"zz\r\n\r\n"])
    return b"".join(parts) + tail


def _case(rng: random.Random) -> Case:
    """One hostile connection's bytes."""
    kind = rng.choice(GENERATORS)
    return Case(kind.__name__, kind(rng))


def bad_request_line(rng: random.Random) -> bytes:
    line = rng.choice(
        [
            b"GET",
            b"GET /",
            b"GET / HTTP/9.9",
            b"GET / HTTP/1.1 extra",
            b"get /v2 HTTP/1.1",
            b"POST /v2/models/m/infer HTTP/1.1\x00",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
            b"PRI * HTTP/2.0\r\n\r\nSM",
            b"GET http://evil.example/v2 HTTP/1.1",
            b"CONNECT 127.0.0.1:22 HTTP/1.1",
            b"GET /v2/models/\xff\xfe/ready HTTP/1.1",
            b"GET /v2/models/%00/ready HTTP/1.1",
            b"GET /" + b"a" * rng.randint(1000, 7000) + b" HTTP/1.1",
            b"GET /v2/health/live?" + b"&x" * 2000 + b" HTTP/1.1",
            b"  GET /v2 HTTP/1.1",
            b"GET\t/v2\tHTTP/1.1",
            bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))),
        ]
    )
    return line + rng.choice([b"\r\nHost: x\r\n\r\n", b"\r\n\r\n", b"\n\n", b"", b"\r\n"])


def header_folding(rng: random.Random) -> bytes:
    body, headers = _json_infer(rng)
    raw = _request("POST", "/v2/models/m/infer", headers, body)
    folded = rng.choice([b"\r\n X-Folded: yes", b"\r\n\tcontinued", b"\r\nContent-Type: application/json\r\n  ; q=1"])
    at = raw.index(b"\r\n")
    return raw[:at] + folded + raw[at:]


def content_length_games(rng: random.Random) -> bytes:
    body, headers = _json_infer(rng)
    head = "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    lengths: list[str] = rng.choice(
        [
            [str(len(body)), str(len(body) + 5)],
            [str(len(body)), str(len(body))],
            [f"{len(body)}, {len(body)}"],
            [f"+{len(body)}"],
            [f"-{len(body)}"],
            [f"0x{len(body):x}"],
            [" " + str(len(body))],
            ["99999999999999999999999"],
            [str(len(body) + 100)],  # a truncated body: the server waits for the rest (body idle timeout)
            ["abc"],
        ]
    )
    lines = "".join(f"Content-Length: {value}\r\n" for value in lengths)
    return (head + lines + "\r\n").encode() + body


def cl_and_te(rng: random.Random) -> bytes:
    body, _ = _json_infer(rng)
    te = rng.choice(
        ["chunked", "Chunked", "gzip, chunked", "chunked, gzip", "identity", "xchunked", " chunked", "\x0bchunked"]
    )
    head = f"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n"
    if rng.random() < 0.7:
        head += f"Content-Length: {rng.choice([len(body), 3, 0])}\r\n"
    if rng.random() < 0.3:
        head += "Transfer-Encoding: chunked\r\n"
    return head.encode() + b"\r\n" + _chunked(rng, body)


def bad_chunks(rng: random.Random) -> bytes:
    body, _ = _json_infer(rng)
    head = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    size = rng.choice(
        [b"zz", b"-1", b"ffffffffffffffffffff", b"1" * 40, b"", b" 5", b"5 ", b"0x5", b"5;" + b"e" * 5000]
    )
    chunk = size + b"\r\n" + body[:5] + rng.choice([b"\r\n", b"\n", b"", b"XX"]) + rng.choice([b"0\r\n\r\n", b""])
    return head + chunk


def truncated(rng: random.Random) -> bytes:
    raw = _valid_request(rng)
    return raw[: rng.randrange(1, len(raw))]


def many_headers(rng: random.Random) -> bytes:
    count = rng.choice([100, 500, 2000, 5000])
    headers = "".join(f"X-{i}: v\r\n" for i in range(count))
    return f"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


def odd_bytes(rng: random.Random) -> bytes:
    raw = bytearray(_valid_request(rng))
    end = raw.index(b"\r\n\r\n")
    at = rng.randrange(end)
    raw[at:at] = rng.choice(
        [b"\x00", b"\r", b"\n", "é".encode(), b"\xff\xfe", b"\x7f", "ü".encode("latin-1"), b"\x1b[31m"]
    )
    return bytes(raw)


def odd_headers(rng: random.Random) -> bytes:
    body, headers = _json_infer(rng)
    extra = rng.choice(
        [
            {"Content-Encoding": rng.choice(["br", "gzip", "deflate", "x" * 200, "gzip, gzip, gzip", "identity;q=0"])},
            {"Inference-Header-Content-Length": rng.choice(["-1", "1e9", "", "99999999999999999999", "٣"])},
            {"Content-Type": rng.choice(["application/x-python-pickle", "multipart/form-data", ";;;", "\x01"])},
            {"X-Routing-Key": "k" * rng.randint(1, 4000)},
            {"X-Request-ID": rng.choice(["", "\x7f", "x" * 3000, "../../etc"])},
            {"Expect": "100-continue"},
            {"Connection": rng.choice(["close", "upgrade", "keep-alive, Upgrade"]), "Upgrade": "websocket"},
            {"Host": rng.choice(["", "evil.example", "127.0.0.1:99999", "a b"])},
        ]
    )
    raw_headers = {**headers, **extra}
    return (
        "".join(
            ["POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"]
            + [f"{k}: {v}\r\n" for k, v in raw_headers.items()]
            + [f"Content-Length: {len(body)}\r\n\r\n"]
        ).encode("utf-8")
        + body
    )


def pipelined_garbage(rng: random.Random) -> bytes:
    parts = [_valid_request(rng) for _ in range(rng.randint(1, 3))]
    garbage = rng.choice(
        [
            bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))),
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\n",
            b"\x00" * 50,
        ]
    )
    parts.insert(rng.randrange(len(parts) + 1), garbage)
    return b"".join(parts)


def mutated_request(rng: random.Random) -> bytes:
    return _mutate(rng, _valid_request(rng))


def mutated_chunked(rng: random.Random) -> bytes:
    body, headers = _binary_infer(rng)
    raw = _request("POST", "/v2/models/m/infer", {**headers, "Transfer-Encoding": "chunked"}, b"", length=False)
    return _mutate(rng, raw + _chunked(rng, body)) if rng.random() < 0.6 else raw + _chunked(rng, body)


GENERATORS: tuple[Callable[[random.Random], bytes], ...] = (
    bad_request_line,
    header_folding,
    content_length_games,
    cl_and_te,
    bad_chunks,
    truncated,
    many_headers,
    odd_bytes,
    odd_headers,
    pipelined_garbage,
    mutated_request,
    mutated_request,
    mutated_chunked,
)


# -- the driver -----------------------------------------------------------------------------------------------


def _exchange(port: int, payload: bytes) -> bytes:
    """Send ``payload`` on a new connection (tolerating an early close) and read until the server closes, or the
    keep-alive / header / body timeouts (half a second here) would have closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        return read_until_closed(sock)


def _statuses(reply: bytes) -> list[int]:
    """The status of each response in ``reply``, read in sequence (status line, headers, Content-Length body)."""
    statuses: list[int] = []
    pos = 0
    while match := _STATUS.match(reply, pos):
        statuses.append(int(match.group(1)))
        end = reply.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        length = _LENGTH.search(reply, pos, end)
        pos = end + 4 + (int(length.group(1)) if length else 0)
    return statuses


def _prompt_inference(server: ServerProcess, seed: int, batch: int) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, IN_DIM], "data": [0.5] * IN_DIM}]}
    started = time.monotonic()
    reply = httpx.post(f"{server.base_url}/v2/models/m/infer", json=body, timeout=5.0)
    took = time.monotonic() - started
    assert reply.status_code == 200, f"seed {seed}, after batch {batch}: {reply.status_code} {reply.text[:300]}"
    assert took < PROMPT_S, f"seed {seed}, after batch {batch}: a normal request took {took:.2f} s"


def fuzz(server: ServerProcess, seed: int, *, batches: int | None = None, seconds: float | None = None) -> int:
    """Run batches of cases from ``seed``; assert after each; return the number of cases sent."""
    rng = random.Random(seed)
    sent = 0
    deadline = time.monotonic() + seconds if seconds is not None else None
    batch = 0
    with ThreadPoolExecutor(THREADS) as pool:
        while (batches is not None and batch < batches) or (deadline is not None and time.monotonic() < deadline):
            cases = [_case(rng) for _ in range(BATCH)]
            replies = list(pool.map(lambda case: _exchange(server.port, case.payload), cases))
            for case, reply in zip(cases, replies, strict=True):
                bad = [status for status in _statuses(reply) if status >= 500]
                assert (
                    not bad
                ), f"seed {seed}, batch {batch}, {case.kind}: answered {bad}\n{case.payload[:600]!r}\n{reply[:600]!r}"
            assert (
                server.process.poll() is None
            ), f"seed {seed}, batch {batch}: the server died\n{server.logs()[-3000:]}"
            _prompt_inference(server, seed, batch)
            sent += len(cases)
            batch += 1
    errors = [line for line in server.logs().splitlines() if "internal_error" in line or "Traceback" in line]
    assert not errors, f"seed {seed}: the server logged internal errors:\n" + "\n".join(errors[:10])
    return sent


def _seed() -> int:
    configured = os.environ.get("MODELPORT_FUZZ_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(2**32)


def test_malformed_http_never_gets_a_5xx(server: ServerProcess) -> None:
    seed = _seed()
    print(f"\nfuzz seed {seed} (replay with MODELPORT_FUZZ_SEED={seed})")
    sent = fuzz(server, seed, batches=FUZZ_BATCHES)
    assert sent == FUZZ_BATCHES * BATCH


def test_every_generator_produces_what_it_says(server: ServerProcess) -> None:
    """The generators' premise: a valid request is served, and each generator's bytes reach the server."""
    rng = random.Random(0)
    reply = _exchange(server.port, _valid_request(rng))
    assert _statuses(reply)[:1] == [200], reply[:400]
    assert {kind.__name__ for kind in GENERATORS} >= {"cl_and_te", "bad_chunks", "pipelined_garbage"}


@pytest.mark.soak
def test_fuzz_soak(server: ServerProcess) -> None:
    seed = _seed()
    print(f"\nfuzz soak seed {seed}")
    sent = fuzz(server, seed, seconds=float(os.environ.get("MODELPORT_FUZZ_SECONDS", "120")))
    print(f"fuzz soak: {sent} cases")
