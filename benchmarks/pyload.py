"""A bounded closed-loop HTTP/1.1 load generator, used when ``wrk`` is not installed.

Each of ``-c`` connections sends the same POST, waits for the whole response, and sends again, until
``-d`` seconds have passed or ``--max-requests`` were sent. It prints the same ``BENCH_RESULT {json}``
line as ``benchmarks/wrk/post.lua``, so the harness parses both the same way. Run it in its own process
(the harness pins it to a different core than the server):

    python -m benchmarks.pyload http://127.0.0.1:8000/v2/models/bench/infer --body body.json \
        --header 'Content-Type: application/json' -c 64 -d 10

Being Python, one core of it drives roughly 5-15k small requests/s: enough for modelport-sized servers
but it can cap the ceiling row; prefer wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ("LoadResult", "build_request", "percentile", "run_load", "main")


@dataclass
class LoadResult:
    """What one run measured; latencies are seconds, one per completed request."""

    latencies: list[float] = field(default_factory=list)
    bytes_read: int = 0
    errors_connect: int = 0
    errors_read: int = 0
    errors_write: int = 0
    errors_status: int = 0
    errors_timeout: int = 0
    duration_s: float = 0.0

    def summary(self) -> dict[str, float | int]:
        """The same keys as the wrk script prints (latency in microseconds)."""
        lat = sorted(self.latencies)
        requests = len(lat)
        duration = self.duration_s or 1e-9
        return {
            "requests": requests,
            "duration_s": round(duration, 6),
            "bytes": self.bytes_read,
            "rps": round(requests / duration, 3),
            "p50_us": int(percentile(lat, 50) * 1e6),
            "p90_us": int(percentile(lat, 90) * 1e6),
            "p99_us": int(percentile(lat, 99) * 1e6),
            "max_us": int((lat[-1] if lat else 0.0) * 1e6),
            "mean_us": round((sum(lat) / requests if requests else 0.0) * 1e6, 1),
            "errors_connect": self.errors_connect,
            "errors_read": self.errors_read,
            "errors_write": self.errors_write,
            "errors_status": self.errors_status,
            "errors_timeout": self.errors_timeout,
        }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def build_request(url: str, body: bytes, headers: Sequence[str]) -> bytes:
    """The raw HTTP/1.1 keep-alive POST sent on every iteration."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [h for h in headers if not h.lower().startswith(("host:", "content-length:"))]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """Read one response; returns (status, bytes read, server wants close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    size = len(head)
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunk = int(size_line.split(b";", 1)[0].strip(), 16)
            await reader.readexactly(chunk + 2)
            size += len(size_line) + chunk + 2
            if chunk == 0:
                break
    elif length:
        await reader.readexactly(length)
        size += length
    return status, size, close


async def _connection(
    host: str, port: int, request: bytes, deadline: float, timeout: float, budget: list[int], result: LoadResult
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    clock = time.perf_counter
    try:
        while clock() < deadline and budget[0] > 0:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError:
                    result.errors_connect += 1
                    await asyncio.sleep(0.01)
                    continue
            assert reader is not None
            budget[0] -= 1
            started = clock()
            try:
                writer.write(request)
                async with asyncio.timeout(timeout):
                    status, size, close = await _read_response(reader)
            except TimeoutError:
                result.errors_timeout += 1
                close = True
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
                result.errors_read += 1
                close = True
            else:
                result.latencies.append(clock() - started)
                result.bytes_read += size
                if status >= 400:
                    result.errors_status += 1
            if close:
                writer.close()
                writer = reader = None
    finally:
        if writer is not None:
            writer.close()


async def run_load(
    url: str,
    body: bytes,
    headers: Sequence[str],
    *,
    connections: int,
    duration: float,
    timeout: float = 10.0,
    max_requests: int = 10_000_000,
) -> LoadResult:
    """Closed loop over ``connections`` keep-alive connections for ``duration`` seconds."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = build_request(url, body, headers)
    result = LoadResult()
    budget = [max_requests]
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(_connection(host, port, request, deadline, timeout, budget, result) for _ in range(connections))
    )
    result.duration_s = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--body", type=Path, required=True, help="file with the request body (sent as is)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    parser.add_argument("--max-requests", type=int, default=10_000_000, help="hard cap on requests sent")
    args = parser.parse_args(argv)
    run_loop: Callable[[Coroutine[Any, Any, LoadResult]], LoadResult] = asyncio.run
    with contextlib.suppress(ImportError):
        from uvloop import run as run_loop
    result = run_loop(
        run_load(
            args.url,
            args.body.read_bytes(),
            args.header,
            connections=args.connections,
            duration=args.duration,
            timeout=args.timeout,
            max_requests=args.max_requests,
        )
    )
    sys.stdout.write("BENCH_RESULT " + json.dumps(result.summary()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
