"""Overload: how fast refusals come, and what they do to the requests that are served (issue 12 item 6).

    .venv/bin/python -m benchmarks.overload                       # this checkout, 512 connections, 10 s
    .venv/bin/python -m benchmarks.overload --compare /work/main  # and another checkout, alternating

A real ``modelport serve`` (pinned to CPU 0) serves one ONNX MLP (784-32-10) with a short queue
(``MODELPORT_MAX_QUEUE``, default 32 here), so 512 closed-loop connections (an asyncio HTTP/1.1 client with
keep-alive, pinned to CPU 1) keep it overloaded. For each checkout it prints the p50/p99/max latency of the
503s, of the 200s and of all requests, and the rates. With ``--compare`` the checkouts alternate for
``--rounds`` rounds, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks._procs import _tree_cpu_ticks, free_port, pinned  # noqa: E402
from benchmarks.loadgen import WRK_SCRIPT, parse_result  # noqa: E402

__all__ = ("main", "summarise")

SERVER_CPU, LOAD_CPU = 0, 1
TOKEN = "bench-admin-token-0123456789abcdef"
MARKER = "OVERLOAD_RESULT "


def summarise(samples: list[tuple[int, float]], duration_s: float) -> dict[str, Any]:
    """Latency percentiles (ms) per outcome: 503s, 200s and all; counts and rates."""

    def figures(values: list[float]) -> dict[str, float]:
        if not values:
            return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        array = np.asarray(values) * 1000.0
        return {
            "n": len(values),
            "p50_ms": round(float(np.percentile(array, 50)), 2),
            "p99_ms": round(float(np.percentile(array, 99)), 2),
            "max_ms": round(float(array.max()), 2),
        }

    ok = [t for status, t in samples if status == 200]
    refused = [t for status, t in samples if status == 503]
    other = sum(1 for status, _ in samples if status not in (200, 503))
    return {
        "rps": round(len(samples) / duration_s, 1),
        "served_rps": round(len(ok) / duration_s, 1),
        "503": figures(refused),
        "200": figures(ok),
        "all": figures([t for _, t in samples]),
        "other_status": other,
    }


# -- the load generator (runs in its own process, pinned) ---------------------------------------------------
def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /v2/models/bench/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and b"close" in value.lower():
            close = True
    await reader.readexactly(length)
    return status, close


async def _connection(
    port: int, payload: bytes, deadline: float, samples: list[tuple[int, float]], errors: list[str]
) -> None:
    reader = writer = None
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            started = time.perf_counter()
            writer.write(payload)
            status, close = await _read_response(reader)
            samples.append((status, time.perf_counter() - started))
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors.append(type(exc).__name__)
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _drive(port: int, connections: int, duration_s: float, probes: int) -> None:
    """wrk holds ``connections - probes`` connections (all requests' rate and latency); ``probes`` asyncio
    connections beside it time each response by status (wrk cannot split latency by status)."""
    x = np.random.default_rng(0).random(784, dtype=np.float32)
    body = json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": x.round(4).tolist()}]}
    ).encode()
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        fh.write(body)
        fh.flush()
        wrk = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{connections - probes}", f"-d{duration_s:g}s", "--timeout", "30s",
            "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/v2/models/bench/infer", "--", fh.name,
            "Content-Type: application/json",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        samples: list[tuple[int, float]] = []
        errors: list[str] = []
        started = time.perf_counter()
        deadline = started + duration_s
        payload = _request(port, body)
        await asyncio.gather(*(_connection(port, payload, deadline, samples, errors) for _ in range(probes)))
        probed_s = time.perf_counter() - started
        out, _ = await wrk.communicate()
    everything = parse_result(out.decode())
    result = summarise(samples, probed_s)
    result["socket_errors"] = len(errors)
    result["wrk"] = everything.as_dict()
    result["responses_total"] = everything.requests + len(samples)
    print(MARKER + json.dumps(result), flush=True)


# -- one measured server ------------------------------------------------------------------------------------
def _measure(checkout: Path, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import httpx

    from tests.helpers.onnx_models import make_mlp_onnx  # the benchmark's own model, written once per run
    from tests.helpers.server import wait_ready

    python = checkout / ".venv" / "bin" / "python"
    port = free_port()
    data = workdir / f"data-{port}"
    data.mkdir(parents=True)
    artifact = workdir / "mlp.onnx"
    if not artifact.exists():
        make_mlp_onnx(artifact, seed=1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")},
        "MODELPORT_DATA_DIR": str(data),
        "MODELPORT_ADMIN_TOKEN": TOKEN,
        "MODELPORT_MAX_QUEUE": str(args.max_queue),
        "MODELPORT_LOG_LEVEL": "WARNING",
    }
    log_path = workdir / f"server-{port}.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        pinned(SERVER_CPU, [str(python), "-m", "service", "serve", "--port", str(port)]),
        cwd=checkout,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, log_path)
        admin = {"Authorization": f"Bearer {TOKEN}"}
        with artifact.open("rb") as fh:
            reply = httpx.post(
                f"{base}/admin/models/bench/versions",
                headers=admin,
                files={"artifact": ("mlp.onnx", fh)},
                data={"manifest": json.dumps({"backend": "onnx"})},
                timeout=60,
            )
        reply.raise_for_status()
        httpx.put(
            f"{base}/admin/models/bench/aliases/production", headers=admin, json={"version": "1"}, timeout=60
        ).raise_for_status()
        ticks = _tree_cpu_ticks(server.pid)
        load = subprocess.run(
            pinned(
                LOAD_CPU,
                [
                    sys.executable,
                    "-m",
                    "benchmarks.overload",
                    "--drive",
                    str(port),
                    "--connections",
                    str(args.connections),
                    "--duration",
                    str(args.duration),
                    "--probes",
                    str(args.probes),
                ],
            ),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=args.duration + 120,
        )
        cpu_s = (_tree_cpu_ticks(server.pid) - ticks) / os.sysconf("SC_CLK_TCK")
        for line in reversed(load.stdout.splitlines()):
            if line.startswith(MARKER):
                result = dict(json.loads(line[len(MARKER) :]))
                result["server_cpu_us_per_response"] = round(cpu_s * 1e6 / max(1, result["responses_total"]), 1)
                return result
        raise RuntimeError(f"load generator failed:\n{load.stdout[-2000:]}\n{load.stderr[-2000:]}")
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def _row(name: str, result: dict[str, Any]) -> str:
    def cell(key: str) -> str:
        f = result[key]
        return f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} / {f['max_ms']:.0f}"

    wrk = result["wrk"]
    served = 1.0 - wrk["errors_status"] / max(1, wrk["requests"])
    return (
        f"| {name} | {wrk['rps']:,.0f} | {served:.0%} | {wrk['p50_ms']:.1f} / {wrk['p99_ms']:.1f} | "
        f"{result['503']['n']:,} | {cell('503')} | {result['200']['n']:,} | {cell('200')} | "
        f"{result['server_cpu_us_per_response']:.0f} | {wrk['errors_socket'] + result['socket_errors']} |"
    )


_HEADER = (
    "| checkout | req/s (wrk) | served | all p50 / p99 ms (wrk) | probed 503s | 503 p50 / p99 / max ms | probed 200s "
    "| 200 p50 / p99 / max ms | server CPU µs/response | socket errors |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=512)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-queue", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--probes", type=int, default=16, help="of the connections, those timed by status")
    parser.add_argument("--compare", type=Path, default=None, help="another checkout with its own .venv")
    parser.add_argument("--drive", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive is not None:
        asyncio.run(_drive(args.drive, args.connections, args.duration, args.probes))
        return 0
    checkouts = {"this checkout": ROOT}
    if args.compare is not None:
        checkouts = {f"compare ({args.compare})": args.compare.resolve(), **checkouts}
    print(f"{args.connections} connections, {args.duration:g} s, MAX_QUEUE={args.max_queue}")
    print(_HEADER)
    with tempfile.TemporaryDirectory(prefix="modelport-overload-") as tmp:
        for _ in range(args.rounds):
            for name, checkout in checkouts.items():
                print(_row(name, _measure(checkout, args, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
