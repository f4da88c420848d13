"""CPU cost of one inference request inside the ASGI app, without sockets: a steady figure on a busy machine.

Wall-clock rates swing by 2x on a shared 2-core box, and a server's CPU time per response still includes the
kernel's socket work and whatever the scheduler did to its caches. This drives the real app (``create_app``,
lifespan, admin registration, the routed MLP, one ONNX intra-op thread) in-process with the same raw ASGI
messages uvicorn sends, at a fixed concurrency, and reports CPU microseconds per request (all threads: the
event loop and the batch worker) for each route. Under ``valgrind --tool=callgrind`` run it twice with
different ``--requests`` and divide the difference in instructions by the difference in requests: that number
does not move at all with load on the machine.

    .venv/bin/python -m benchmarks.inprocess                       # V2 JSON, V2 binary, V1; c = 1 and 64
    .venv/bin/python -m benchmarks.inprocess --env MODELPORT_FEEDBACK_WINDOW_S=0 --profile out.txt
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout can be measured with these tools

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from benchmarks.workload import Workload, build_workloads  # noqa: E402

_TOKEN = "inprocess-admin-token-0123456789abcdef"
_QUIET_BACKGROUND = {
    "MODELPORT_REGISTRY_POLL_INTERVAL_S": "60",
    "MODELPORT_STATS_FLUSH_INTERVAL_S": "300",
    "MODELPORT_PREDICTION_FLUSH_INTERVAL_S": "60",
    "MODELPORT_ROLLOUT_INTERVAL_S": "600",
}


def _scope(workload: Workload, body_len: int) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(body_len).encode())]
    for header in workload.headers:
        name, _, value = header.partition(":")
        headers.append((name.strip().lower().encode(), value.strip().encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": workload.path.format(name="bench"),
        "raw_path": workload.path.format(name="bench").encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _one(app: Callable[..., Any], scope: dict[str, Any], body: bytes) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope, state={}), receive, send)
    return status


async def _flush(app: Any) -> None:
    """Write what the requests left for the background (the prediction log), so that each request is charged
    its share of that write and no more, whenever the flusher's timer would have fired."""
    experiments = getattr(app.runtime, "experiments", None)
    if experiments is not None:
        await experiments.flusher.flush_predictions()


async def _drive(
    app: Callable[..., Any],
    workload: Workload,
    concurrency: int,
    requests: int,
    finish: Callable[[], Awaitable[None]] | None = None,
) -> tuple[float, float]:
    """CPU seconds and wall seconds for ``requests`` requests, ``concurrency`` at a time (then ``finish``)."""
    body = workload.body_file.read_bytes()
    scope = _scope(workload, len(body))
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await _one(app, scope, body)
            if status != 200:
                raise RuntimeError(f"{workload.route}: status {status}")

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    if finish is not None:
        await finish()
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def _main(args: argparse.Namespace) -> None:
    from service.app import create_app
    from service.settings import Settings

    work = build_workloads(Path(args.workdir))
    settings = Settings(
        data_dir=Path(args.workdir) / "data",
        admin_token=SecretStr(_TOKEN),
        intra_op_threads=1,
        drain_timeout_s=1,
    )
    app = create_app(settings)
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    shutdown = asyncio.Event()
    await startup.put({"type": "lifespan.startup"})

    async def lifespan_receive() -> dict[str, Any]:
        if not startup.empty():
            return await startup.get()
        await shutdown.wait()
        return {"type": "lifespan.shutdown"}

    started = asyncio.Event()

    async def lifespan_send(message: MutableMapping[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive, lifespan_send))
    await started.wait()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        headers = {"Authorization": f"Bearer {_TOKEN}"}
        reply = await client.post(
            "/admin/models/bench/versions",
            headers=headers,
            files={"artifact": ("mlp.onnx", work.mlp_onnx.read_bytes(), "application/octet-stream")},
            data={"manifest": json.dumps({"backend": "onnx"})},
        )
        reply.raise_for_status()
        reply = await client.put("/admin/models/bench/aliases/production", headers=headers, json={"version": "1"})
        reply.raise_for_status()
    workloads = {
        "v2-json": work.mlp_v2_json,
        "v2-binary": work.mlp_v2_binary,
        "v1-predict": work.mlp_v1,
        "ceiling": work.mlp_v2_json,
    }
    from benchmarks.servers.ceiling import app as ceiling_app

    probe = work.mlp_v2_json.body_file.read_bytes()
    for _ in range(200):  # the routing watcher picks the alias up within a second
        if await _one(app, _scope(work.mlp_v2_json, len(probe)), probe) == 200:
            break
        await asyncio.sleep(0.05)
    profiler = cProfile.Profile() if args.profile else None
    header = f"{'route':<11} {'c':>3} {'requests':>8} {'CPU us/req':>10} {'wall us/req':>11}"
    print(header + (f" {'instr/req':>12}" if args.callgrind else ""), flush=True)
    for route in args.routes:
        workload = workloads[route]
        target = ceiling_app if route == "ceiling" else app  # the bare-ASGI ceiling on the V2 JSON body
        for concurrency in args.concurrency:
            await _drive(target, workload, concurrency, max(50, args.requests // 10))  # warm-up
            if profiler is not None:
                profiler.enable()
            await _flush(app)
            instructions = _callgrind("zero") if args.callgrind else None
            cpu, wall = await _drive(target, workload, concurrency, args.requests, lambda: _flush(app))
            if args.callgrind:
                instructions = _callgrind("dump")
            if profiler is not None:
                profiler.disable()
            n = args.requests
            per = f" {instructions / n:>12,.0f}" if instructions else ""
            print(
                f"{route:<11} {concurrency:>3} {n:>8} {1e6 * cpu / n:>10.1f} {1e6 * wall / n:>11.1f}{per}", flush=True
            )
    if profiler is not None:
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)
    shutdown.set()
    await life


def _callgrind(command: str) -> int:
    """Zero or dump this process's callgrind counters (run under ``valgrind --tool=callgrind
    --instr-atstart=no``: the set-up runs uninstrumented); a dump returns the instructions since the zero."""
    pid = str(os.getpid())
    if command == "zero":
        subprocess.run(["callgrind_control", "--instr=on", pid], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
        return 0
    before = set(Path.cwd().glob(f"callgrind.out.{pid}*"))
    subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "--instr=off", pid], check=True, capture_output=True)
    dumps = sorted(set(Path.cwd().glob(f"callgrind.out.{pid}*")) - before)
    total = 0
    for dump in dumps:
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                total = max(total, int(line.split()[1]))
        if not os.environ.get("INPROCESS_KEEP_DUMPS"):
            dump.unlink()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per route and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument(
        "--routes", nargs="+", default=["v2-json", "v2-binary", "v1-predict"], help="also: ceiling (bare ASGI app)"
    )
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra MODELPORT_* setting")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the measured loops into FILE, print the top")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions per request (run under valgrind --tool=callgrind --instr-atstart=no)",
    )
    args = parser.parse_args()
    for pair in args.env:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MODELPORT_GRPC_PORT", "0")  # by environment: older checkouts have no such setting
    if args.callgrind:
        # only per-request work: under valgrind a request takes ~100x longer, so timed background work (registry
        # polls, flushes; measured on their own) would otherwise be charged to the requests
        for key, value in _QUIET_BACKGROUND.items():
            os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="modelport-inprocess-") as scratch:
        args.workdir = args.workdir or scratch
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
