"""Run the whole benchmark in one command and print the table and the ratios.

    .venv/bin/python -m benchmarks.run            # full run (10 s per load, ~9 minutes)
    .venv/bin/python -m benchmarks.run --quick    # 3 s per load
    .venv/bin/python -m benchmarks.run --only ceiling naive modelport

Every server runs in its own process pinned to CPU 0, the load generator pinned to CPU 1 (``wrk`` when
installed, else ``benchmarks.pyload``). Absolute numbers drift between runs on shared machines; the
ratios against the ceiling and the naive server measured minutes apart in the same run are what to read.
See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``tests.helpers`` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._procs import Interference, ManagedServer, ProcessRegistry, free_port, wait_quiet  # noqa: E402
from benchmarks.grpcload import check_grpc, grpc_errors, run_h2load  # noqa: E402
from benchmarks.loadgen import LoadGenerator, LoadStats  # noqa: E402
from benchmarks.peers import (  # noqa: E402
    LITSERVE_VERSION,
    MLSERVER_VERSION,
    MLServerConfig,
    PeerVenv,
    litserve_venv,
    mlserver_venv,
    write_mlserver_repository,
)
from benchmarks.profile_summary import format_profile, summarise_raw  # noqa: E402
from benchmarks.report import Row, config_name, format_summary, format_table, summarise  # noqa: E402
from benchmarks.shmload import registered_regions  # noqa: E402
from benchmarks.workload import (  # noqa: E402
    IMAGE_OUTPUT_BYTES,
    Workload,
    Workloads,
    build_workloads,
    v2_json_body,
    write_mlp,
)

__all__ = ("main", "SUITES", "RunConfig")

SUITES = ("ceiling", "naive", "modelport", "granian", "large", "memory", "experiments", "litserve", "mlserver")
"""Names accepted by ``--only``: ``naive`` includes the Litestar parse-only row; ``granian`` is modelport
served by granian; ``large`` the 3x224x224 JSON vs binary vs shared-memory case; ``memory`` the LRU/RSS case;
``experiments`` the primary path with experiments off, with a 100 % shadow, and with split + shadow + feedback
traffic."""

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
SERVER_CPU, LOAD_CPU = 0, 1
MODEL, IMAGE_MODEL, MEMORY_MODEL = "bench", "image", "mem"


@dataclass
class RunConfig:
    """Everything one run needs to know; built from the command line."""

    duration: float
    warmup: float
    concurrency: tuple[int, ...]
    large_concurrency: tuple[int, ...]
    suites: tuple[str, ...]
    loadgen: LoadGenerator
    workdir: Path
    modelport_env: dict[str, str]
    memory_versions: int = 6
    memory_cap: int = 3
    memory_cycles: int = 4
    memory_hidden: int = 4096
    profile: bool = False
    quick: bool = False
    wait_idle: float = 60.0
    out: Path = Path("benchmarks/results/run.json")
    peer_cache: Path | None = None
    """Root of the peers' cached venvs (None: ``~/.cache/modelport-bench``)."""
    mlserver_workers: int = 0
    """MLServer's ``parallel_workers`` (0: inference in its main process)."""
    mlserver_batch: tuple[int, float] = (64, 0.005)
    """MLServer's adaptive batching for the batching row: ``max_batch_size``, ``max_batch_time`` (s)."""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    memory: dict[str, Any] | None = None
    experiments: dict[str, Any] | None = None
    profiles: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)
    peers: dict[str, Any] = field(default_factory=dict)
    """Per peer: its venv, pins, how long its first install took and whether this run reused it."""


def _log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------- servers


def _base_env() -> dict[str, str]:
    """The harness's environment without any MODELPORT_ or BENCH_ variable leaking into a server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELPORT_", "BENCH_"))}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # One core per server: keep numeric libraries from spawning a thread per host core.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _uvicorn_argv(target: str, port: int, *, factory: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    return [*argv, "--factory"] if factory else argv


def start_ceiling(procs: ProcessRegistry, cfg: RunConfig) -> ManagedServer:
    port = free_port()
    server = procs.start(
        "ceiling",
        _uvicorn_argv("benchmarks.servers.ceiling:app", port),
        port=port,
        env=_base_env(),
        log_dir=cfg.workdir,
        cwd=ROOT,
        cpu=SERVER_CPU,
    )
    server.wait_ready("/v2/health/ready")
    return server


def start_naive(procs: ProcessRegistry, cfg: RunConfig, work: Workloads) -> ManagedServer:
    port = free_port()
    env = {**_base_env(), "BENCH_MODEL_PATH": str(work.mlp_onnx), "BENCH_ORT_THREADS": "1"}
    server = procs.start(
        "naive",
        _uvicorn_argv("benchmarks.servers.naive_litestar:create_app_from_env", port, factory=True),
        port=port,
        env=env,
        log_dir=cfg.workdir,
        cwd=ROOT,
        cpu=SERVER_CPU,
    )
    server.wait_ready("/v2/health/ready")
    return server


def start_modelport(
    procs: ProcessRegistry,
    cfg: RunConfig,
    name: str,
    *,
    server_kind: str = "uvicorn",
    extra_env: Mapping[str, str] | None = None,
) -> ManagedServer:
    """``python -m service serve`` with its own data dir; MODELPORT_* from ``cfg.modelport_env`` win."""
    port = free_port()
    data_dir = cfg.workdir / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **_base_env(),
        "MODELPORT_DATA_DIR": str(data_dir),
        "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        "MODELPORT_INTRA_OP_THREADS": "1",
        "MODELPORT_DRAIN_TIMEOUT_S": "2",
        "MODELPORT_GRPC_PORT": str(free_port()),
        **(extra_env or {}),
        **cfg.modelport_env,
    }
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port)]
    if server_kind != "uvicorn":
        argv += ["--server", server_kind]
    server = procs.start(name, argv, port=port, env=env, log_dir=cfg.workdir, cwd=ROOT, cpu=SERVER_CPU)
    server.grpc_port = int(env["MODELPORT_GRPC_PORT"])
    server.wait_ready("/v2/health/ready", timeout=180.0)
    return server


def _admin(server: ManagedServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=120.0, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def register_onnx(
    server: ManagedServer,
    model: str,
    artifact: Path,
    *,
    alias: str | None = "production",
    allow_duplicate: bool = False,
) -> str:
    """Register ``artifact`` through the admin API (multipart), optionally point ``alias`` at it;
    ``allow_duplicate``: the same bytes again as a new version (else the registry answers 409)."""
    with _admin(server) as client:
        with artifact.open("rb") as fh:
            reply = client.post(
                f"/admin/models/{model}/versions",
                params={"allow_duplicate": "true"} if allow_duplicate else None,
                files={"artifact": (artifact.name, fh, "application/octet-stream")},
                data={"manifest": json.dumps({"backend": "onnx"})},
            )
        if reply.status_code != 201:
            raise RuntimeError(f"registering {model} failed: {reply.status_code} {reply.text[:500]}")
        version = str(reply.json().get("version", "1"))
        if alias is not None:
            reply = client.put(f"/admin/models/{model}/aliases/{alias}", json={"version": version})
            if reply.status_code not in (200, 201):
                raise RuntimeError(f"aliasing {model}:{version} failed: {reply.status_code} {reply.text[:500]}")
    return version


def wait_model_ready(server: ManagedServer, model: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"/v2/models/{model}/ready").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"model {model} not ready on {server.name} within {timeout:.0f}s:\n{server.logs()}")


# ---------------------------------------------------------------------------------------------- loads


def check_request(url: str, workload: Workload) -> str:
    """One request before the load: a server that answers errors must not be measured as fast."""
    headers = dict(h.split(": ", 1) for h in workload.headers)
    reply = httpx.post(url, content=workload.body_file.read_bytes(), headers=headers, timeout=60.0)
    if reply.status_code != 200:
        raise RuntimeError(f"sanity request to {url} got {reply.status_code}: {reply.text[:300]}")
    if workload.route == "v2-binary" and "inference-header-content-length" not in reply.headers:
        raise RuntimeError(f"binary request to {url} did not get a binary reply: {reply.headers}")
    return reply.headers.get("x-model-version", "")


def measure(
    results: Results,
    cfg: RunConfig,
    server: ManagedServer,
    label: str,
    workload: Workload,
    model: str,
    concurrencies: Sequence[int],
    *,
    after_row: Callable[[int], None] | None = None,
) -> None:
    """Sanity-check, then warm up and measure ``workload`` at each concurrency; one row each."""
    grpc_target = f"127.0.0.1:{server.grpc_port}" if workload.route == "grpc" else ""
    url = workload.url(server.base_url, model)
    base: Row = {"server": label, "route": workload.route, "model": workload.model}
    try:
        if grpc_target:
            check_grpc(grpc_target, workload.body_file)
        else:
            check_request(url, workload)
    except Exception as exc:  # noqa: BLE001 - recorded as a failed row, the run goes on
        for c in concurrencies:
            results.rows.append({**base, "concurrency": c, "error": str(exc).splitlines()[0]})
        results.failures.append({"config": config_name(base), "error": str(exc)})
        _log(f"  {config_name(base)}: FAILED sanity request: {exc}")
        return
    for c in concurrencies:
        busy = None
        if cfg.wait_idle > 0:
            busy, waited = wait_quiet(cfg.wait_idle)
            if busy > 0.15:
                _log(f"  warning: machine {100 * busy:.0f}% busy before this load (waited {waited:.0f} s)")
            elif waited > 2:
                _log(f"  (waited {waited:.0f} s for other work on the machine to finish)")
        try:
            if grpc_target:
                if cfg.warmup > 0:
                    run_h2load(grpc_target, workload.body_file, c, cfg.warmup, cpu=LOAD_CPU)
                with Interference(SERVER_CPU, server.process.pid) as probe:
                    stats = _grpc_load(cfg, server, grpc_target, workload, c)
            else:
                if cfg.warmup > 0:
                    cfg.loadgen.run(url, workload.body_file, workload.headers, c, cfg.warmup, ROOT)
                with Interference(SERVER_CPU, server.process.pid) as probe:
                    stats = cfg.loadgen.run(url, workload.body_file, workload.headers, c, cfg.duration, ROOT)
        except Exception as exc:  # noqa: BLE001
            results.rows.append({**base, "concurrency": c, "error": str(exc).splitlines()[0]})
            results.failures.append({"config": f"{config_name(base)} c={c}", "error": str(exc)})
            _log(f"  {config_name(base)} c={c}: FAILED {exc}")
            continue
        row = _row(base, c, stats, server)
        row["cpu_busy_before"] = None if busy is None else round(busy, 3)
        row["server_cpu"], row["foreign_cpu"] = probe.server, probe.foreign
        # server CPU per response: the figure that survives a shared machine better than req/s does
        row["cpu_us_per_req"] = round(1e6 * probe.server / row["rps"], 1) if probe.server and row["rps"] else None
        results.rows.append(row)
        _log(
            f"  {config_name(row):<36} c={c:<3} {row['rps']:>10,.1f} req/s  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  errors {row['errors']:<5} peak RSS {row['peak_rss_mb']:.0f} MB  "
            f"CPU0: server {100 * (probe.server or 0):.0f}% ({row['cpu_us_per_req'] or 0:.0f} us/req), "
            f"other {100 * (probe.foreign or 0):.0f}%"
        )
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} died during the load:\n{server.logs()}")
        if after_row is not None:
            after_row(c)
        time.sleep(0.3)


def _grpc_load(cfg: RunConfig, server: ManagedServer, target: str, workload: Workload, c: int) -> LoadStats:
    """h2load's run, with the calls the server answered with a non-OK status (invisible to h2load) as errors."""
    before = grpc_errors(server.base_url)
    stats = run_h2load(target, workload.body_file, c, cfg.duration, cpu=LOAD_CPU)
    refused = grpc_errors(server.base_url) - before
    return dataclasses.replace(stats, requests=stats.requests - refused, errors_status=stats.errors_status + refused)


def _row(base: Row, c: int, stats: LoadStats, server: ManagedServer) -> Row:
    return {
        **base,
        "concurrency": c,
        "rps": round(stats.rps, 1),
        "p50_ms": round(stats.p50_ms, 3),
        "p90_ms": round(stats.p90_ms, 3),
        "p99_ms": round(stats.p99_ms, 3),
        "max_ms": round(stats.max_ms, 3),
        "requests": stats.requests,
        "errors": stats.errors,
        "errors_status": stats.errors_status,
        "errors_socket": stats.errors_socket,
        "errors_timeout": stats.errors_timeout,
        "peak_rss_mb": round(server.sample_peak() / 1024.0, 1),
    }


# ---------------------------------------------------------------------------------------------- suites


@contextlib.contextmanager
def _suite(results: Results, cfg: RunConfig, name: str) -> Iterator[None]:
    """Wait for a quiet machine, then run; a failure is recorded and the run goes on (the caller stops
    its servers)."""
    _log(f"\n== {name}")
    if cfg.wait_idle > 0:
        busy, waited = wait_quiet(cfg.wait_idle)
        results.conditions[name.split(":", 1)[0]] = {
            "cpu_busy_before": round(busy, 3),
            "waited_s": round(waited, 1),
            "loadavg": _loadavg(),
        }
        if busy > 0.15:
            _log(f"  warning: machine still {100 * busy:.0f}% busy after {waited:.0f} s: numbers will be noisy")
        elif waited > 2:
            _log(f"  (waited {waited:.0f} s for other work on the machine to finish)")
    started = time.monotonic()
    try:
        yield
    except Exception as exc:  # noqa: BLE001
        results.failures.append({"config": name, "error": f"{exc}\n{traceback.format_exc(limit=3)}"})
        _log(f"  {name}: FAILED: {exc}")
    finally:
        _log(f"  ({name}: {time.monotonic() - started:.0f} s)")


def run_ceiling(results: Results, cfg: RunConfig, procs: ProcessRegistry, work: Workloads) -> None:
    with _suite(results, cfg, "ceiling: bare ASGI + msgspec decode, canned reply (uvicorn, uvloop, httptools)"):
        server = start_ceiling(procs, cfg)
        try:
            hook = _profile_hook(results, cfg, server, work.mlp_v2_json) if cfg.profile else None
            measure(results, cfg, server, "ceiling", work.mlp_v2_json, MODEL, cfg.concurrency, after_row=hook)
        finally:
            server.stop()


def run_naive(results: Results, cfg: RunConfig, procs: ProcessRegistry, work: Workloads) -> None:
    with _suite(results, cfg, "naive: Litestar + onnxruntime per request (uvicorn, uvloop, httptools)"):
        server = start_naive(procs, cfg, work)
        try:
            parse_only = Workload(
                "v2-json", "mlp", "/v2/models/{name}/parse", work.mlp_v2_json.body_file, work.mlp_v2_json.headers
            )
            measure(results, cfg, server, "litestar-parse", parse_only, MODEL, cfg.concurrency)
            hook = _profile_hook(results, cfg, server, work.mlp_v2_json) if cfg.profile else None
            measure(results, cfg, server, "naive", work.mlp_v2_json, MODEL, cfg.concurrency, after_row=hook)
        finally:
            server.stop()


def run_modelport(
    results: Results,
    cfg: RunConfig,
    procs: ProcessRegistry,
    work: Workloads,
    *,
    server_kind: str,
    large: bool,
    mlp: bool = True,
) -> None:
    label = "modelport" if server_kind == "uvicorn" else f"modelport-{server_kind}"
    with _suite(results, cfg, f"{label}: modelport serve ({server_kind})"):
        server = start_modelport(procs, cfg, label, server_kind=server_kind)
        try:
            register_onnx(server, MODEL, work.mlp_onnx)
            if large:
                register_onnx(server, IMAGE_MODEL, work.image_onnx)
            wait_model_ready(server, MODEL)
            if mlp:
                grpc = (work.mlp_grpc,) if server_kind == "uvicorn" else ()  # granian: HTTP only
                for workload in (work.mlp_v2_json, work.mlp_v2_binary, work.mlp_v1, *grpc):
                    profile_hook = None
                    if cfg.profile and workload is work.mlp_v2_json and server_kind == "uvicorn":
                        profile_hook = _profile_hook(results, cfg, server, workload)
                    measure(results, cfg, server, label, workload, MODEL, cfg.concurrency, after_row=profile_hook)
            if large:
                wait_model_ready(server, IMAGE_MODEL)
                for workload in (work.image_v2_json, work.image_v2_binary):
                    measure(results, cfg, server, label, workload, IMAGE_MODEL, cfg.large_concurrency)
                if server_kind == "uvicorn":  # the input and output in regions registered with this server
                    with registered_regions(server.base_url, ADMIN_TOKEN, work.image_input, IMAGE_OUTPUT_BYTES):
                        measure(results, cfg, server, label, work.image_v2_shm, IMAGE_MODEL, cfg.large_concurrency)
        finally:
            server.stop()


class FeedbackTraffic:
    """A side stream of predictions and their outcomes (``rate`` per second) while a load runs: what an
    application sending feedback adds to the server."""

    def __init__(self, base_url: str, workload: Workload, model: str, rate: float) -> None:
        self._url = workload.url(base_url, model)
        self._feedback = f"{base_url}/v1/models/{model}/feedback"
        self._body = workload.body_file.read_bytes()
        self._headers = dict(h.split(": ", 1) for h in workload.headers)
        self._interval = 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0
        self.recorded = 0

    def _run(self) -> None:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.wait(self._interval):
                with contextlib.suppress(httpx.HTTPError):
                    reply = client.post(self._url, content=self._body, headers=self._headers)
                    request_id = reply.headers.get("x-request-id")
                    if reply.status_code != 200 or not request_id:
                        continue
                    outcome = client.post(self._feedback, json={"request_id": request_id, "reward": 1.0}, headers=auth)
                    self.sent += 1
                    self.recorded += outcome.status_code == 202

    def __enter__(self) -> FeedbackTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def run_experiments(results: Results, cfg: RunConfig, procs: ProcessRegistry, work: Workloads) -> None:
    """Same server, same model, three states in a row: no experiment; a 100 % shadow; a 50/50 split with the
    shadow and a feedback stream. The primary path's throughput and p99 against the first state."""
    with _suite(
        results, cfg, "experiments: modelport serve, experiments off / 100 % shadow / split + shadow + feedback"
    ):
        server = start_modelport(procs, cfg, "modelport-experiments")
        try:
            for _ in range(3):  # 1 production, 2 the other arm, 3 the shadow (same artifact: same cost)
                register_onnx(server, MODEL, work.mlp_onnx, alias=None, allow_duplicate=True)
            with _admin(server) as admin:
                admin.put(f"/admin/models/{MODEL}/aliases/production", json={"version": "1"}).raise_for_status()
            wait_model_ready(server, MODEL)
            workload = work.mlp_v2_json
            measure(results, cfg, server, "exp-off", workload, MODEL, cfg.concurrency)
            with _admin(server) as admin:
                body = {"splits": [{"version": "1", "weight": 100}], "shadow": {"version": "3", "percent": 100}}
                admin.put(f"/admin/models/{MODEL}/traffic", json=body).raise_for_status()
            time.sleep(1.5)
            measure(results, cfg, server, "exp-shadow", workload, MODEL, cfg.concurrency)
            with _admin(server) as admin:
                body["splits"] = [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]
                admin.put(f"/admin/models/{MODEL}/traffic", json=body).raise_for_status()
            time.sleep(1.5)
            with FeedbackTraffic(server.base_url, workload, MODEL, rate=50.0) as feedback:
                measure(results, cfg, server, "exp-on", workload, MODEL, cfg.concurrency)
            with _admin(server) as admin:
                stats = admin.get(f"/admin/models/{MODEL}/stats", params={"window": 3600}).json()
            shadow = stats.get("versions", {}).get("3", {}).get("shadow", {})
            results.experiments = {
                "feedback_sent": feedback.sent,
                "feedback_recorded": feedback.recorded,
                "shadow": shadow,
                "fleet_requests": {v: f.get("requests") for v, f in stats.get("versions", {}).items()},
            }
            _log(f"  feedback {feedback.recorded}/{feedback.sent} recorded; shadow {shadow}")
        finally:
            server.stop()


def experiments_summary(rows: Sequence[Row], concurrencies: Sequence[int]) -> dict[str, Any]:
    """Per concurrency: each experiment state's throughput and p99 over the experiments-off state."""
    out: dict[str, Any] = {}
    for c in concurrencies:
        off = next((r for r in rows if r.get("server") == "exp-off" and r.get("concurrency") == c and "rps" in r), None)
        if off is None:
            continue
        per: dict[str, Any] = {}
        for state in ("exp-shadow", "exp-on"):
            row = next((r for r in rows if r.get("server") == state and r.get("concurrency") == c and "rps" in r), None)
            if row is not None:
                per[state] = {
                    "rps_over_off": round(row["rps"] / off["rps"], 3) if off["rps"] else None,
                    "p99_over_off": round(row["p99_ms"] / off["p99_ms"], 3) if off["p99_ms"] else None,
                }
        out[str(c)] = per
    return out


def _profile_hook(results: Results, cfg: RunConfig, server: ManagedServer, workload: Workload) -> Callable[[int], None]:
    """After the measured c=max run: one extra, unreported load with py-spy attached to the server."""

    def hook(c: int) -> None:
        if c != max(cfg.concurrency):
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            results.profiles[server.name] = {"error": "py-spy not on PATH (pip install py-spy)"}
            _log("  py-spy not on PATH: no profile")
            return
        out = cfg.workdir / f"profile-{server.name}-c{c}.txt"
        seconds = max(5, int(cfg.duration))
        argv = [
            py_spy,
            "record",
            "-p",
            str(server.process.pid),
            "-d",
            str(seconds),
            "-r",
            "100",
            "--format",
            "raw",
            "-o",
            str(out),
            "--threads",
        ]
        spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.0)
            cfg.loadgen.run(
                workload.url(server.base_url, MODEL), workload.body_file, workload.headers, c, seconds, ROOT
            )
            output = spy.communicate(timeout=seconds + 30)[0].decode(errors="replace")
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        profile: dict[str, Any] = {"output": output[-1500:], "concurrency": c, "seconds": seconds}
        results.profiles[server.name] = profile
        if out.exists():
            kept = cfg.out.with_name(f"{cfg.out.stem}-profile-{server.name}-c{c}.txt")
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, kept)
            text = format_profile(summarise_raw(out.read_text(errors="replace"), top=20))
            profile.update(file=str(kept), summary=text)
            _log(f"  py-spy profile of {server.name} at c={c} ({seconds} s): {kept}\n{text}")
        else:
            _log(f"  py-spy produced no profile:\n{output[-1500:]}")

    return hook


def _loaded_engines(client: httpx.Client) -> float | None:
    """Sum of ``modelport_loaded_engines`` samples on /metrics (one per worker/label set), None if absent."""
    text = client.get("/metrics").text
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("modelport_loaded_engines") and not line.startswith("modelport_loaded_engines_"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def run_memory(results: Results, cfg: RunConfig, procs: ProcessRegistry) -> None:
    """Register N MLP versions, cap loaded engines below N, cycle requests across all of them."""
    title = (
        f"memory: {cfg.memory_versions} versions, MODELPORT_MAX_LOADED_ENGINES={cfg.memory_cap}, "
        f"{cfg.memory_cycles} cycles"
    )
    with _suite(results, cfg, title):
        env = {"MODELPORT_MAX_LOADED_ENGINES": str(cfg.memory_cap)}
        # Registration loads and smoke-tests each version; measure on a fresh process over the same data dir
        # so that the baseline holds no engine and no allocator memory left over from those loads.
        registrar = start_modelport(procs, cfg, "modelport-memory", extra_env=env)
        artifacts = []
        try:
            for i in range(cfg.memory_versions):
                path = write_mlp(cfg.workdir / f"mem-v{i + 1}.onnx", hidden=cfg.memory_hidden, seed=100 + i)
                artifacts.append((register_onnx(registrar, MEMORY_MODEL, path, alias=None), path.stat().st_size))
        finally:
            registrar.stop()
        server = start_modelport(procs, cfg, "modelport-memory", extra_env=env)
        stop_sampler = threading.Event()
        sampled: list[float] = []
        try:
            body_file = cfg.workdir / "mem-v2.json"
            x = np.random.default_rng(7).random((1, 784), dtype=np.float32)
            body_file.write_bytes(v2_json_body("input", x))
            body = body_file.read_bytes()
            trace: list[dict[str, Any]] = []

            def sampler() -> None:
                with httpx.Client(base_url=server.base_url, timeout=5.0) as metrics_client:
                    while not stop_sampler.wait(0.05):
                        with contextlib.suppress(httpx.HTTPError, ValueError):
                            value = _loaded_engines(metrics_client)
                            if value is not None:
                                sampled.append(value)

            with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
                baseline = {"rss_mb": round(server.rss_kb() / 1024, 1), "loaded": _loaded_engines(client)}
                thread = threading.Thread(target=sampler, daemon=True)
                thread.start()
                for cycle in range(cfg.memory_cycles):
                    for version, size in artifacts:
                        started = time.perf_counter()
                        reply = client.post(
                            f"/v2/models/{MEMORY_MODEL}/versions/{version}/infer",
                            content=body,
                            headers={"Content-Type": "application/json"},
                        )
                        elapsed = (time.perf_counter() - started) * 1000
                        trace.append(
                            {
                                "cycle": cycle + 1,
                                "version": version,
                                "status": reply.status_code,
                                "latency_ms": round(elapsed, 2),
                                "artifact_mb": round(size / 2**20, 2),
                                "rss_mb": round(server.rss_kb() / 1024, 1),
                                "loaded": _loaded_engines(client),
                            }
                        )
                stop_sampler.set()
                thread.join(5)
            results.memory = _memory_summary(cfg, artifacts, baseline, trace, sampled, server)
            _log(_format_memory(results.memory))
        finally:
            stop_sampler.set()
            server.stop()


def _memory_summary(
    cfg: RunConfig,
    artifacts: Sequence[tuple[str, int]],
    baseline: Mapping[str, Any],
    trace: Sequence[Mapping[str, Any]],
    sampled: Sequence[float],
    server: ManagedServer,
) -> dict[str, Any]:
    observed = [t["loaded"] for t in trace if t["loaded"] is not None] + list(sampled)
    grow: list[float] = []
    first_load = None
    previous_rss, previous_loaded = baseline["rss_mb"], baseline["loaded"]
    for t in trace:
        if t["loaded"] is not None and previous_loaded is not None and t["loaded"] > previous_loaded:
            if previous_loaded == 0 and first_load is None:
                first_load = t["rss_mb"] - previous_rss  # the first engine also pays the backend's import
            else:
                grow.append(t["rss_mb"] - previous_rss)  # one more engine resident
        previous_rss, previous_loaded = t["rss_mb"], t["loaded"]
    end_of_cycle = {t["cycle"]: t["rss_mb"] for t in trace}
    artifact_mb = sum(size for _, size in artifacts) / len(artifacts) / 2**20
    per_engine = sum(grow) / len(grow) if grow else None
    # Cycle 1 fills the allocator; after it an evict+load should reuse memory: a steady climb there is a leak.
    later = [t["rss_mb"] for t in trace if t["cycle"] > 1]
    return {
        "versions": len(artifacts),
        "cap": cfg.memory_cap,
        "hidden": cfg.memory_hidden,
        "artifact_mb": round(artifact_mb, 2),
        "baseline": dict(baseline),
        "max_loaded_observed": max(observed) if observed else None,
        "cap_held": (max(observed) <= cfg.memory_cap) if observed else None,
        "non_200": sum(1 for t in trace if t["status"] != 200),
        "first_load_mb": None if first_load is None else round(first_load, 1),
        "rss_per_added_engine_mb": round(per_engine, 2) if per_engine is not None else None,
        "rss_per_engine_over_artifact": round(per_engine / artifact_mb, 2) if per_engine is not None else None,
        "rss_end_of_cycle_mb": end_of_cycle,
        "rss_range_after_cycle_1_mb": [min(later), max(later)] if later else None,
        "peak_rss_mb": round(server.sample_peak() / 1024, 1),
        "metrics_samples": len(sampled),
        "trace": list(trace),
    }


def _format_memory(memory: Mapping[str, Any]) -> str:
    lines = [
        f"  artifact {memory['artifact_mb']} MB each (MLP 784-{memory['hidden']}-10); baseline RSS "
        f"{memory['baseline']['rss_mb']} MB with {memory['baseline']['loaded']} engines loaded",
        "  | cycle | version | status | load+infer ms | loaded | RSS MB |",
        "  |---:|---:|---:|---:|---:|---:|",
    ]
    for t in memory["trace"]:
        lines.append(
            f"  | {t['cycle']} | {t['version']} | {t['status']} | {t['latency_ms']:.1f} | "
            f"{_num(t['loaded'])} | {t['rss_mb']:.1f} |"
        )
    lines.append(
        f"  max loaded engines observed {_num(memory['max_loaded_observed'])} (cap {memory['cap']}, held: "
        f"{memory['cap_held']}); first load +{memory['first_load_mb']} MB (includes the backend's import); "
        f"RSS per further engine {memory['rss_per_added_engine_mb']} MB "
        f"(= {memory['rss_per_engine_over_artifact']} x artifact); RSS at end of each cycle "
        f"{memory['rss_end_of_cycle_mb']}; RSS range after cycle 1: {memory['rss_range_after_cycle_1_mb']} MB"
    )
    return "\n".join(lines)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def start_mlserver(
    procs: ProcessRegistry, cfg: RunConfig, venv: PeerVenv, work: Workloads, label: str, config_args: Mapping[str, Any]
) -> ManagedServer:
    """``mlserver start DIR`` from its own venv, pinned like every server, serving the MLP as ``MODEL``."""
    config = MLServerConfig(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), **config_args)
    repository = write_mlserver_repository(cfg.workdir / label, config, MODEL, work.mlp_onnx)
    env = _base_env()
    env.pop("PYTHONPATH", None)  # the peer's venv sees nothing of the project
    env["MLSERVER_MODEL_REPOSITORY_ROOT"] = str(repository)
    server = procs.start(
        label,
        [str(venv.bin("mlserver")), "start", str(repository)],
        port=config.http_port,
        env=env,
        log_dir=cfg.workdir,
        cwd=repository,
        cpu=SERVER_CPU,
    )
    server.wait_ready("/v2/health/ready", timeout=180.0)
    wait_model_ready(server, MODEL, timeout=120.0)
    return server


def mlserver_configs(cfg: RunConfig) -> list[tuple[str, dict[str, Any]]]:
    """The MLServer rows: adaptive batching on (``cfg.mlserver_batch``: max size, max seconds) and off."""
    size, seconds = cfg.mlserver_batch
    workers = {"parallel_workers": cfg.mlserver_workers}
    return [
        ("mlserver-batching", {**workers, "max_batch_size": size, "max_batch_time": seconds}),
        ("mlserver", workers),
    ]


def _run_peer(
    results: Results,
    cfg: RunConfig,
    work: Workloads,
    venv: PeerVenv,
    facts: Mapping[str, Any],
    starters: Sequence[tuple[str, Callable[[], ManagedServer]]],
) -> None:
    """Install (or reuse) a peer's venv, record it under ``results.peers``, then start, measure (V2 JSON at every
    concurrency) and stop each of its configurations in turn."""
    stamp = venv.ensure(_log)
    results.peers[venv.name.split("-", 1)[0]] = {
        "venv": str(venv.path),
        "requirements": list(venv.requirements),
        "install_s": stamp["install_s"],
        "reused": stamp["reused"],
        **facts,
    }
    _log(
        f"  venv {venv.path} ({'reused' if stamp['reused'] else 'installed now'}; "
        f"first install took {stamp['install_s']:.0f} s)"
    )
    for label, start in starters:
        server = start()
        try:
            measure(results, cfg, server, label, work.mlp_v2_json, MODEL, cfg.concurrency)
        finally:
            server.stop()


def run_mlserver(results: Results, cfg: RunConfig, procs: ProcessRegistry, work: Workloads) -> None:
    """MLServer (pinned version, cached venv) serving the same ONNX MLP: V2 JSON, batching on and off."""
    with _suite(results, cfg, f"mlserver: MLServer {MLSERVER_VERSION}, custom ONNX runtime, same bodies"):
        venv = mlserver_venv(cfg.peer_cache)
        starters = [
            (label, functools.partial(start_mlserver, procs, cfg, venv, work, label, config_args))
            for label, config_args in mlserver_configs(cfg)
        ]
        facts = {"parallel_workers": cfg.mlserver_workers, "batch": list(cfg.mlserver_batch)}
        _run_peer(results, cfg, work, venv, facts, starters)


def start_litserve(
    procs: ProcessRegistry, cfg: RunConfig, venv: PeerVenv, work: Workloads, label: str, batch: tuple[int, float]
) -> ManagedServer:
    """``benchmarks/servers/litserve_app.py`` from LitServe's venv, pinned like every server (its HTTP process
    and its inference worker both on CPU 0), serving the MLP at ``/v2/models/bench/infer``."""
    port = free_port()
    env = _base_env()
    env.pop("PYTHONPATH", None)
    app = ROOT / "benchmarks" / "servers" / "litserve_app.py"
    argv = [str(venv.bin("python")), str(app), str(work.mlp_onnx), str(port), str(batch[0]), str(batch[1])]
    run_dir = cfg.workdir / label
    run_dir.mkdir(parents=True, exist_ok=True)
    server = procs.start(label, argv, port=port, env=env, log_dir=cfg.workdir, cwd=run_dir, cpu=SERVER_CPU)
    server.wait_ready("/health", timeout=180.0)
    return server


def run_litserve(results: Results, cfg: RunConfig, procs: ProcessRegistry, work: Workloads) -> None:
    """LitServe (pinned version, cached venv) serving the same ONNX MLP: V2 JSON, batching on and off."""
    with _suite(results, cfg, f"litserve: LitServe {LITSERVE_VERSION}, ONNX LitAPI, same bodies"):
        venv = litserve_venv(cfg.peer_cache)
        starters = [
            (label, functools.partial(start_litserve, procs, cfg, venv, work, label, batch))
            for label, batch in (("litserve-batching", cfg.mlserver_batch), ("litserve", (1, 0.0)))
        ]
        _run_peer(results, cfg, work, venv, {"batch": list(cfg.mlserver_batch)}, starters)


# ---------------------------------------------------------------------------------------------- meta


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(loadgen: LoadGenerator) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    git = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpus_available": sorted(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadgen": loadgen.describe(),
        "git": git,
        "loadavg_at_start": _loadavg(),
        "versions": {
            d: _version(d)
            for d in ("uvicorn", "uvloop", "httptools", "granian", "litestar", "msgspec", "onnxruntime", "numpy")
        },
    }


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 s loads, 1 s warm-up (c=1,16,64 still)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measured load (default 10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before each load (default 2)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/<UTC>.json)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SUITES,
        default=None,
        metavar="NAME",
        help=f"run only these suites: {', '.join(SUITES)}",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64], help="connections per load")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk when installed (auto), or the Python closed-loop client",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra MODELPORT_* setting for the modelport servers (repeatable)",
    )
    parser.add_argument("--memory-cycles", type=int, default=None, help="memory case: passes over all versions (4)")
    parser.add_argument("--memory-hidden", type=int, default=4096, help="hidden width of the memory-case MLPs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after modelport's c=max V2 JSON load, one more load under py-spy (not in the table)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        metavar="S",
        help="before each suite wait up to S s for the machine to be <15%% busy (0: don't)",
    )
    parser.add_argument(
        "--peer-cache", type=Path, default=None, help="cached peer venvs (default ~/.cache/modelport-bench)"
    )
    parser.add_argument(
        "--mlserver-workers", type=int, default=0, help="MLServer parallel_workers (0: inference in-process)"
    )
    parser.add_argument(
        "--mlserver-batch",
        nargs=2,
        type=float,
        default=(64, 0.005),
        metavar=("SIZE", "SECONDS"),
        help="MLServer adaptive batching for the mlserver-batching row: max_batch_size max_batch_time",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (models, bodies, server logs)")
    return parser.parse_args(argv)


def _install_signal_handlers() -> None:
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    modelport_env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("MODELPORT_"):
            raise SystemExit(f"--env expects MODELPORT_KEY=VALUE, got {item!r}")
        modelport_env[key] = value
    loadgen = LoadGenerator.detect(args.loadgen, cpu=LOAD_CPU)
    if len(os.sched_getaffinity(0)) < 2:
        _log("warning: fewer than 2 CPUs available: server and load generator will share a core")
    workdir = Path(tempfile.mkdtemp(prefix="modelport-bench-"))
    suites = tuple(args.only or SUITES)
    concurrency = tuple(args.concurrency)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or ROOT / "benchmarks" / "results" / f"{stamp}.json").resolve()
    cfg = RunConfig(
        out=out,
        duration=duration,
        warmup=warmup,
        concurrency=concurrency,
        large_concurrency=tuple(c for c in concurrency if c <= 16) or concurrency[:1],
        suites=suites,
        loadgen=loadgen,
        workdir=workdir,
        modelport_env=modelport_env,
        memory_cycles=args.memory_cycles or (2 if args.quick else 4),
        memory_hidden=args.memory_hidden,
        profile=args.profile,
        quick=args.quick,
        wait_idle=args.wait_idle,
        peer_cache=args.peer_cache,
        mlserver_workers=args.mlserver_workers,
        mlserver_batch=(int(args.mlserver_batch[0]), float(args.mlserver_batch[1])),
    )
    meta = machine_info(loadgen)
    _log(f"modelport benchmarks: {meta['date']}, {meta['nproc']} CPUs ({meta['cpu_model']}), Python {meta['python']}")
    _log(
        f"load generator: {meta['loadgen']} on CPU {LOAD_CPU}; servers on CPU {SERVER_CPU}; "
        f"{duration:g} s per load after {warmup:g} s warm-up; scratch {workdir}"
    )

    _install_signal_handlers()
    procs = ProcessRegistry()
    results = Results()
    work = build_workloads(workdir, grpc_model=MODEL)
    try:
        if "ceiling" in suites:
            run_ceiling(results, cfg, procs, work)
        if "naive" in suites:
            run_naive(results, cfg, procs, work)
        if "modelport" in suites or "large" in suites:
            run_modelport(
                results, cfg, procs, work, server_kind="uvicorn", large="large" in suites, mlp="modelport" in suites
            )
        if "granian" in suites:
            if importlib.util.find_spec("granian") is None:
                results.skipped.append({"config": "granian", "reason": "granian not installed, skipped"})
                _log("\n== granian: not installed, skipped")
            else:
                run_modelport(results, cfg, procs, work, server_kind="granian", large=False)
        if "memory" in suites:
            run_memory(results, cfg, procs)
        if "experiments" in suites:
            run_experiments(results, cfg, procs, work)
        if "mlserver" in suites:
            run_mlserver(results, cfg, procs, work)
        if "litserve" in suites:
            run_litserve(results, cfg, procs, work)
    finally:
        procs.stop_all()

    summary = summarise(results.rows, concurrency)
    summary["experiments"] = experiments_summary(results.rows, concurrency)
    document = {
        "meta": {
            **meta,
            "duration_s": duration,
            "warmup_s": warmup,
            "concurrency": list(concurrency),
            "suites": list(suites),
            "modelport_env": modelport_env,
            "body_bytes": work.body_sizes(),
        },
        "rows": results.rows,
        "summary": summary,
        "memory": results.memory,
        "experiments": results.experiments,
        "profiles": results.profiles,
        "conditions": results.conditions,
        "peers": results.peers,
        "skipped": results.skipped,
        "failures": results.failures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    markdown = format_table(results.rows) + "\n\n" + format_summary(summary)
    if summary["experiments"]:
        markdown += "\n\n**experiments vs off (same server, same run)**\n\n" + json.dumps(
            summary["experiments"], indent=1
        )
    out.with_suffix(".md").write_text(markdown + "\n")
    _log("\n" + markdown)
    for item in results.skipped:
        _log(f"skipped {item['config']}: {item['reason']}")
    for item in results.failures:
        _log(f"FAILED {item['config']}: {item['error'].splitlines()[0] if item['error'] else ''}")
    _log(f"\nresults: {out} (+ {out.with_suffix('.md').name})")
    if results.failures or args.keep:
        _log(f"scratch dir with server logs kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
