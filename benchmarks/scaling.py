"""How modelport scales with ``--workers N``, and the GPU path, on whatever machine this runs on: one command.

    .venv/bin/python -m benchmarks.scaling                      # 1, 2, 4, 8 workers (capped) + GPU rows if any
    .venv/bin/python -m benchmarks.scaling --workers 1 2 --duration 5 --routes v2-json

**CPU layout.** The load generator (``wrk``, one thread per core it gets) keeps a fixed set of cores for the
whole run: the last ``max(1, cores // 3)`` of the CPUs this process may use (``--load-cpus`` to choose). A
server with N workers gets the first N of the others (``taskset``); the service sizes its thread pools from
that affinity (one intra-op thread per worker). When N workers do not fit beside the load generator, the row is
*shared*: server and load generator both get every core and compete for them, so its numbers measure the machine,
not the server, and the table says so. On a 2-core machine, 1 worker is split (CPU 0 / CPU 1) and 2 workers are
shared.

**Load.** ``--connections-per-worker`` (64) connections per server worker, so every worker sees the load of the
single-core benchmark; V2 JSON and V2 binary bodies of the MLP 784-256-10 from :mod:`benchmarks.workload`.

**GPU rows** (when a GPU is present): one worker on one core with ``MODELPORT_DEVICE=cuda``, for onnxruntime's
``CUDAExecutionProvider`` (needs ``onnxruntime-gpu``), TorchScript on ``torch`` CUDA, and the same with
``MODELPORT_USE_FP16=true``; each row records the device the engine reported in the server log
(``engine_loaded ... device=``), so a silent CPU fallback shows. Without a GPU each GPU row is listed as skipped
with the reason.

Results go to ``benchmarks/results/scaling-<UTC>.json`` and ``.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._procs import (  # noqa: E402
    ManagedServer,
    ProcessRegistry,
    free_port,
    pinned,
    tree_cpu_seconds,
    wait_quiet,
)
from benchmarks.loadgen import WRK_SCRIPT, LoadStats, parse_result  # noqa: E402
from benchmarks.run import ADMIN_TOKEN, MODEL, _base_env, check_request, machine_info, register_onnx  # noqa: E402
from benchmarks.workload import Workload, Workloads, build_workloads  # noqa: E402

__all__ = ("Layout", "GpuCase", "plan_layouts", "gpu_cases", "format_rows", "main")


@dataclass(frozen=True)
class Layout:
    """Where one row's server workers and load generator run."""

    workers: int
    server_cpus: tuple[int, ...]
    load_cpus: tuple[int, ...]
    shared: bool
    """True when the server and the load generator compete for the same cores."""

    def describe(self) -> str:
        if self.shared:
            return f"shared: server and wrk both on CPUs {_cpus(self.server_cpus)}"
        return f"server CPUs {_cpus(self.server_cpus)}, wrk CPUs {_cpus(self.load_cpus)}"


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def plan_layouts(
    workers: Sequence[int], cpus: Sequence[int], load_cpus: Sequence[int] | None = None
) -> tuple[list[Layout], list[dict[str, str]]]:
    """The layout of each requested worker count, and the counts skipped (more workers than CPUs) with why.

    The load generator keeps ``load_cpus`` (default: the last ``max(1, len(cpus) // 3)``) for every row; the
    server's N workers take the first N of the rest, or share every CPU with the load generator when they do not
    fit (a 1-CPU machine shares even at N = 1).
    """
    cpus = sorted(cpus)
    if load_cpus is None:
        load_cpus = cpus[len(cpus) - max(1, len(cpus) // 3) :] if len(cpus) > 1 else cpus
    load = tuple(sorted(load_cpus))
    free = [c for c in cpus if c not in load]
    layouts: list[Layout] = []
    skipped: list[dict[str, str]] = []
    for n in sorted(dict.fromkeys(workers)):
        if n < 1:
            continue
        if n > len(cpus):
            skipped.append({"config": f"workers={n}", "reason": f"only {len(cpus)} CPUs available, skipped"})
        elif n <= len(free):
            layouts.append(Layout(n, tuple(free[:n]), load, shared=False))
        else:
            layouts.append(Layout(n, tuple(cpus), tuple(cpus), shared=True))
    return layouts, skipped


@dataclass(frozen=True)
class GpuCase:
    """One GPU row: which backend serves the MLP and with which settings."""

    name: str
    backend: str
    env: Mapping[str, str]


GPU_CASES = (
    GpuCase("onnx-cuda", "onnx", {"MODELPORT_DEVICE": "cuda"}),
    GpuCase("torchscript-cuda", "torchscript", {"MODELPORT_DEVICE": "cuda"}),
    GpuCase("torchscript-cuda-fp16", "torchscript", {"MODELPORT_DEVICE": "cuda", "MODELPORT_USE_FP16": "true"}),
)


def gpu_cases(probe: Mapping[str, str | None]) -> tuple[list[GpuCase], list[dict[str, str]]]:
    """Which GPU rows can run given ``probe`` (:func:`probe_gpu`: ``onnx`` / ``torch`` -> None when usable, else
    the reason it is not), and the others as skipped with that reason."""
    runnable: list[GpuCase] = []
    skipped: list[dict[str, str]] = []
    for case in GPU_CASES:
        reason = probe.get("onnx" if case.backend == "onnx" else "torch")
        if reason is None:
            runnable.append(case)
        else:
            skipped.append({"config": f"gpu {case.name}", "reason": reason})
    return runnable, skipped


def probe_gpu() -> dict[str, str | None]:
    """Whether onnxruntime has the CUDA provider and torch sees a CUDA device (None) or why not."""
    out: dict[str, str | None] = {}
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        out["onnx"] = (
            None
            if "CUDAExecutionProvider" in providers
            else f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: {', '.join(providers)}; "
            "a GPU machine needs onnxruntime-gpu)"
        )
    except ImportError:
        out["onnx"] = "onnxruntime is not installed"
    try:
        import torch

        if torch.cuda.is_available():
            out["torch"] = None
        else:
            build = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
            out["torch"] = f"torch {torch.__version__} ({build}) sees no CUDA device"
    except ImportError:
        out["torch"] = "torch is not installed"
    return out


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Scaling:
    duration: float
    warmup: float
    per_worker: int
    routes: tuple[str, ...]
    workdir: Path
    work: Workloads
    procs: ProcessRegistry
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    failures: list[dict[str, str]] = dataclasses.field(default_factory=list)


def _log(message: str) -> None:
    print(message, flush=True)


def wrk_argv(workload: Workload, url: str, connections: int, duration: float, load_cpus: Sequence[int]) -> list[str]:
    """``wrk`` with one thread per load CPU (at most one per connection), pinned to those CPUs."""
    threads = max(1, min(len(load_cpus), connections))
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout=10s"]
    argv += ["-s", str(WRK_SCRIPT), url, "--", str(workload.body_file), *workload.headers]
    return pinned(load_cpus, argv)


def _load(workload: Workload, url: str, connections: int, duration: float, load_cpus: Sequence[int]) -> LoadStats:
    argv = wrk_argv(workload, url, connections, duration, load_cpus)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=duration + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-1500:]}")
    return parse_result(proc.stdout + proc.stderr)


def _start(
    run: Scaling, name: str, data_dir: Path, workers: int, cpus: Sequence[int], env: Mapping[str, str]
) -> ManagedServer:
    port = free_port()
    full_env = {
        **_base_env(),
        "MODELPORT_DATA_DIR": str(data_dir),
        "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        "MODELPORT_DRAIN_TIMEOUT_S": "2",
        "MODELPORT_GRPC_PORT": "0",
        **env,
    }
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", str(workers)]
    server = run.procs.start(name, argv, port=port, env=full_env, log_dir=run.workdir, cwd=ROOT, cpu=cpus)
    server.wait_ready("/v2/health/ready", timeout=240.0)
    return server


def _register(run: Scaling, name: str, backend: str, env: Mapping[str, str], cpus: Sequence[int]) -> Path:
    """Register the MLP on a one-worker server and stop it: the measured server then loads it at start-up in
    every worker from the same data dir (no worker waits on another's routing update)."""
    data_dir = run.workdir / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _start(run, f"{name}-register", data_dir, 1, cpus, env)
    try:
        if backend == "onnx":
            register_onnx(server, MODEL, run.work.mlp_onnx)
        else:
            _register_torchscript(server, run.workdir / "mlp.ts")
    finally:
        server.stop()
    return data_dir


def _register_torchscript(server: ManagedServer, path: Path) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    torch.jit.save(torch.jit.script(module), str(path))
    signature = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]}
    manifest = {"backend": "torchscript", "signature": signature}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.base_url, timeout=120.0, headers=headers) as client, path.open("rb") as fh:
        reply = client.post(
            f"/admin/models/{MODEL}/versions",
            files={"artifact": (path.name, fh, "application/octet-stream")},
            data={"manifest": json.dumps(manifest)},
        )
        if reply.status_code != 201:
            raise RuntimeError(f"registering the TorchScript MLP failed: {reply.status_code} {reply.text[:500]}")
        version = str(reply.json().get("version", "1"))
        client.put(f"/admin/models/{MODEL}/aliases/production", json={"version": version}).raise_for_status()


def _wait_all_workers(server: ManagedServer, workers: int, timeout: float = 120.0) -> None:
    """Every worker must serve the model: ask on fresh connections until 8 x workers answers in a row are 200."""
    needed, streak = 8 * workers, 0
    deadline = time.monotonic() + timeout
    while streak < needed:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: not every worker serves {MODEL} within {timeout:.0f}s")
        with contextlib.suppress(httpx.HTTPError):
            ok = httpx.get(f"{server.base_url}/v2/models/{MODEL}/ready", timeout=5.0).status_code == 200
            streak = streak + 1 if ok else 0
            if not ok:
                time.sleep(0.2)


_DEVICE = re.compile(r"engine_loaded.*?device['\"=: ]+['\"]?([A-Za-z0-9:]+)")


def reported_devices(log_text: str) -> list[str]:
    """The ``device`` of every ``engine_loaded`` line in a server log (JSON or console format)."""
    return _DEVICE.findall(log_text)


def measure_server(
    run: Scaling, label: str, layout: Layout, env: Mapping[str, str], backend: str = "onnx", gpu: str = ""
) -> None:
    name = f"{label}-w{layout.workers}"
    data_dir = _register(run, name, backend, env, layout.server_cpus)
    server = _start(run, name, data_dir, layout.workers, layout.server_cpus, env)
    try:
        _wait_all_workers(server, layout.workers)
        devices = sorted(set(reported_devices(server.logs(tail=200_000)))) if gpu else []
        for workload in (run.work.mlp_v2_json, run.work.mlp_v2_binary):
            if workload.route not in run.routes:
                continue
            url = workload.url(server.base_url, MODEL)
            connections = run.per_worker * layout.workers
            base = {"server": label, "workers": layout.workers, "route": workload.route, "concurrency": connections}
            base |= {"layout": layout.describe(), "shared": layout.shared, "gpu": gpu, "devices": devices}
            try:
                check_request(url, workload)
                busy, _ = wait_quiet(30.0)
                if run.warmup > 0:
                    _load(workload, url, connections, run.warmup, layout.load_cpus)
                cpu0, t0 = tree_cpu_seconds(server.process.pid), time.monotonic()
                stats = _load(workload, url, connections, run.duration, layout.load_cpus)
                cores = (tree_cpu_seconds(server.process.pid) - cpu0) / max(1e-6, time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 - a failed row is recorded, the run goes on
                run.failures.append({"config": f"{name} {workload.route}", "error": str(exc)})
                run.rows.append({**base, "error": str(exc).splitlines()[0]})
                _log(f"  {name} {workload.route}: FAILED {exc}")
                continue
            row: dict[str, Any] = {
                **base,
                "rps": round(stats.rps, 1),
                "p50_ms": round(stats.p50_ms, 3),
                "p99_ms": round(stats.p99_ms, 3),
                "errors": stats.errors,
                "busy_before": round(busy, 3),
                "server_cores": round(cores, 2),
                "rps_per_core": round(stats.rps / cores, 1) if cores > 0 else None,
                "loadavg": _loadavg(),
                "rss_mb": round(server.sample_peak() / 1024, 1),
            }
            run.rows.append(row)
            _log(
                f"  {label} workers={layout.workers} {workload.route} c={connections}: {row['rps']:,.0f} req/s "
                f"p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms errors {row['errors']} "
                f"server used {row['server_cores']:.2f} cores ({_fmt(row['rps_per_core'])} req/s per core) "
                f"RSS {row['rss_mb']:.0f} MB [{layout.describe()}]"
            )
    finally:
        server.stop()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def add_efficiency(rows: list[dict[str, Any]]) -> None:
    """``per_worker`` (req/s / workers) and ``vs_1_worker`` (req/s over the 1-worker CPU row of the same route)."""
    base = {r["route"]: r["rps"] for r in rows if not r.get("gpu") and r["workers"] == 1 and r.get("rps")}
    for row in rows:
        if not row.get("rps"):
            continue
        row["per_worker"] = round(row["rps"] / row["workers"], 1)
        one = base.get(row["route"])
        row["vs_1_worker"] = round(row["rps"] / one, 2) if one and not row.get("gpu") else None


def format_rows(rows: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, str]]) -> str:
    lines = [
        "| server | workers | route | c | req/s | vs 1 worker | p50 ms | p99 ms | errors | server cores used "
        "| req/s per core | RSS MB | CPUs | load avg |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        label = r["server"] + (f" ({', '.join(r['devices'])})" if r.get("devices") else "")
        if "error" in r:
            failed = f"failed: {r['error'][:60]}"
            lines.append(f"| {label} | {r['workers']} | {r['route']} | {r['concurrency']} | {failed} ||||||||||")
            continue
        vs = "-" if r.get("vs_1_worker") is None else f"{r['vs_1_worker']:.2f}"
        lines.append(
            f"| {label} | {r['workers']} | {r['route']} | {r['concurrency']} | {r['rps']:,.0f} | {vs} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r.get('server_cores', 0):.2f} "
            f"| {_fmt(r.get('rps_per_core'))} | {r['rss_mb']:.0f} | {r['layout']} | {r.get('loadavg', '')} |"
        )
    for item in skipped:
        lines.append(f"| {item['config']} | | | | skipped: {item['reason']} ||||||||||")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="worker counts (capped)")
    parser.add_argument("--load-cpus", type=int, nargs="+", default=None, help="CPUs for wrk (default: last third)")
    parser.add_argument("--connections-per-worker", type=int, default=64)
    parser.add_argument("--routes", nargs="+", choices=("v2-json", "v2-binary"), default=["v2-json", "v2-binary"])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per load")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU rows even when a GPU is present")
    parser.add_argument(
        "--out", type=Path, default=None, help="results JSON (default benchmarks/results/scaling-<UTC>.json)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    cpus = sorted(os.sched_getaffinity(0))
    layouts, skipped = plan_layouts(args.workers, cpus, args.load_cpus)
    if args.no_gpu:
        cases: list[GpuCase] = []
        skipped += [{"config": f"gpu {c.name}", "reason": "--no-gpu"} for c in GPU_CASES]
    else:
        cases, gpu_skipped = gpu_cases(probe_gpu())
        skipped += gpu_skipped
    workdir = Path(tempfile.mkdtemp(prefix="modelport-scaling-"))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or ROOT / "benchmarks" / "results" / f"scaling-{stamp}.json").resolve()
    run = Scaling(
        duration=args.duration,
        warmup=args.warmup,
        per_worker=args.connections_per_worker,
        routes=tuple(args.routes),
        workdir=workdir,
        work=build_workloads(workdir),
        procs=ProcessRegistry(),
        skipped=skipped,
    )
    meta = machine_info_for_scaling()
    _log(f"modelport scaling: {meta['date']}, CPUs {_cpus(cpus)} ({meta['cpu_model']}); scratch {workdir}")
    for item in skipped:
        _log(f"  skipped {item['config']}: {item['reason']}")
    try:
        for layout in layouts:
            _log(f"\n== modelport serve --workers {layout.workers} ({layout.describe()})")
            measure_server(run, "modelport", layout, {})
        gpu_layout = plan_layouts([1], cpus, args.load_cpus)[0][0]
        for case in cases:
            _log(f"\n== GPU: {case.name} ({gpu_layout.describe()})")
            measure_server(run, f"gpu {case.name}", gpu_layout, case.env, backend=case.backend, gpu=case.name)
    finally:
        run.procs.stop_all()
    add_efficiency(run.rows)
    table = format_rows(run.rows, run.skipped)
    document = {"meta": {**meta, "args": vars(args) | {"out": str(out)}}, "rows": run.rows, "skipped": run.skipped}
    document["failures"] = run.failures
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    _log("\n" + table + f"\n\nresults: {out}")
    if run.failures:
        _log(f"scratch dir with server logs kept: {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def machine_info_for_scaling() -> dict[str, Any]:
    """The run's machine facts (as benchmarks.run records them), with wrk as the load generator."""
    from benchmarks.loadgen import LoadGenerator

    return machine_info(LoadGenerator("wrk"))


if __name__ == "__main__":
    raise SystemExit(main())
