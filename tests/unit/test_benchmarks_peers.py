"""The peer and scaling harness on canned input: venv keys and stamps, MLServer's files, peer ratios, CPU layouts
and GPU skips. No pip, no servers, no load."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import peers
from benchmarks.peers import MLServerConfig, PeerVenv
from benchmarks.report import format_summary, summarise
from benchmarks.scaling import (
    Layout,
    add_efficiency,
    format_rows,
    gpu_cases,
    plan_layouts,
    reported_devices,
    wrk_argv,
)
from benchmarks.workload import Workload


def test_peer_venv_is_keyed_by_its_pins_and_reused_only_when_complete(tmp_path: Path) -> None:
    a = PeerVenv("mlserver-1.7.1", ("mlserver==1.7.1", "onnxruntime==1.32.0"), tmp_path)
    b = PeerVenv("mlserver-1.7.1", ("onnxruntime==1.32.0", "mlserver==1.7.1"), tmp_path)
    c = PeerVenv("mlserver-1.7.1", ("mlserver==1.7.1", "onnxruntime==1.31.0"), tmp_path)
    assert a.key == b.key != c.key  # order-independent, pin-dependent
    assert a.path.name.startswith("mlserver-1.7.1-") and a.path.parent == tmp_path
    assert a.installed() is None
    a.path.mkdir(parents=True)
    assert a.installed() is None  # a folder without the stamp is a half-done install
    a.stamp.write_text(json.dumps({"requirements": list(a.requirements), "install_s": 42.0}))
    assert a.installed() == {"requirements": list(a.requirements), "install_s": 42.0}
    assert a.ensure(lambda _: None) == {"requirements": list(a.requirements), "install_s": 42.0, "reused": True}
    a.stamp.write_text(json.dumps({"requirements": ["mlserver==1.0"], "install_s": 1.0}))
    assert a.installed() is None  # a stamp for other pins does not count


def test_mlserver_venv_pins_the_version_and_the_projects_runtime_and_parser(tmp_path: Path) -> None:
    venv = peers.mlserver_venv(tmp_path, onnxruntime="1.32.0", httptools="0.9.0")
    assert venv.requirements == (f"mlserver=={peers.MLSERVER_VERSION}", "onnxruntime==1.32.0", "httptools==0.9.0")
    assert venv.python == sys.executable
    lit = peers.litserve_venv(tmp_path, onnxruntime="1.32.0")
    assert lit.requirements == (f"litserve=={peers.LITSERVE_VERSION}", "onnxruntime==1.32.0") and lit.key != venv.key


def test_mlserver_repository_with_and_without_adaptive_batching(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    on = MLServerConfig(1, 2, 3, parallel_workers=0, max_batch_size=32, max_batch_time=0.002)
    root = peers.write_mlserver_repository(tmp_path / "on", on, "bench", onnx)
    settings = json.loads((root / "settings.json").read_text())
    assert settings["parallel_workers"] == 0 and settings["http_port"] == 1 and settings["host"] == "127.0.0.1"
    assert settings["debug"] is False
    model = json.loads((root / "bench" / "model-settings.json").read_text())
    assert model["implementation"] == "bench_runtime.OnnxRuntime"
    assert (model["max_batch_size"], model["max_batch_time"]) == (32, 0.002)
    assert (root / "bench" / "model.onnx").read_bytes() == b"onnx"
    assert "class OnnxRuntime(MLModel)" in (root / "bench" / "bench_runtime.py").read_text()
    off = MLServerConfig(1, 2, 3)
    assert not off.batching and "max_batch_size" not in off.model_settings("bench", "./model.onnx")


def _row(server: str, c: int, rps: float, p50: float = 1.0, cpu: float = 1.0) -> dict[str, object]:
    base = {"server": server, "route": "v2-json", "model": "mlp", "concurrency": c}
    return base | {"rps": rps, "p50_ms": p50, "server_cpu": cpu}


def test_peer_ratios_and_the_five_times_target() -> None:
    rows = [
        _row("modelport", 1, 2000.0, 0.5),
        _row("modelport", 64, 5000.0, 12.0),
        _row("mlserver-batching", 64, 900.0, 70.0, cpu=0.5),
        _row("mlserver", 64, 1000.0, 64.0),
        _row("mlserver", 1, 500.0, 2.0),
    ]
    summary = summarise(rows, (1, 64))
    assert summary["peers"]["mlserver-batching"]["64"]["modelport_over_peer"] == round(5000 / 900, 3)
    assert summary["peers"]["mlserver-batching"]["64"]["modelport_over_peer_per_cpu_s"] == round(5000 / 1800, 3)
    assert summary["peers"]["mlserver"]["1"]["modelport_over_peer"] == 4.0
    assert "1" not in summary["peers"]["mlserver-batching"]
    target = summary["targets"]["modelport_vs_mlserver_batching_c64"]
    assert target["met"] is True and target["target"] == ">= 5.0"
    text = format_summary(summary)
    assert "modelport / mlserver-batching" in text and "| 64 | 5,000 | 900 | 5.56 | 2.78 |" in text


def test_the_peer_target_is_not_applicable_without_a_peer_row() -> None:
    summary = summarise([_row("modelport", 64, 5000.0)], (64,))
    assert summary["peers"] == {}
    assert summary["targets"]["modelport_vs_mlserver_batching_c64"]["met"] is None


def test_layouts_split_cores_where_they_fit_and_share_otherwise() -> None:
    layouts, skipped = plan_layouts([1, 2, 4, 8], [0, 1])
    assert [(lay.workers, lay.server_cpus, lay.load_cpus, lay.shared) for lay in layouts] == [
        (1, (0,), (1,), False),
        (2, (0, 1), (0, 1), True),
    ]
    assert [s["config"] for s in skipped] == ["workers=4", "workers=8"]
    big, none_skipped = plan_layouts([8, 1, 2, 4, 4], list(range(16)))
    assert none_skipped == [] and [lay.workers for lay in big] == [1, 2, 4, 8]
    assert all(not lay.shared and lay.load_cpus == (11, 12, 13, 14, 15) for lay in big)
    assert big[-1].server_cpus == tuple(range(8))
    (single,), _ = plan_layouts([1], [3])
    assert single.shared and single.server_cpus == (3,)
    assert "shared" in Layout(2, (0, 1), (0, 1), True).describe()


def test_gpu_rows_skip_with_the_probe_reason() -> None:
    runnable, skipped = gpu_cases({"onnx": "no CUDAExecutionProvider", "torch": None})
    assert [c.name for c in runnable] == ["torchscript-cuda", "torchscript-cuda-fp16"]
    assert skipped == [{"config": "gpu onnx-cuda", "reason": "no CUDAExecutionProvider"}]
    assert runnable[1].env["MODELPORT_USE_FP16"] == "true"
    none, all_skipped = gpu_cases({"onnx": "a", "torch": "b"})
    assert none == [] and len(all_skipped) == 3


def test_devices_read_from_json_and_console_logs() -> None:
    log = (
        '{"event": "engine_loaded", "backend": "onnx", "device": "cuda:0", "load_ms": 3}\n'
        "2026-12-01 [info] engine_loaded backend=torchscript device=cpu load_ms=4\n"
        '{"event": "request", "device": "x"}\n'
    )
    assert reported_devices(log) == ["cuda:0", "cpu"]


def test_wrk_gets_one_thread_per_load_cpu(tmp_path: Path) -> None:
    workload = Workload("v2-json", "mlp", "/v2/models/{name}/infer", tmp_path / "b.json", ("Content-Type: x",))
    argv = wrk_argv(workload, "http://127.0.0.1:1/x", 128, 5, [10_000, 10_001, 10_002])
    assert argv[:3] == ["wrk", "-t3", "-c128"]  # CPUs not ours: no taskset prefix, but the thread count holds
    assert argv[-2:] == [str(tmp_path / "b.json"), "Content-Type: x"]


def test_scaling_rows_get_their_efficiency_and_a_table() -> None:
    layout = "server CPUs 0, wrk CPUs 1"
    rows: list[dict[str, Any]] = [
        {"server": "modelport", "workers": 1, "route": "v2-json", "concurrency": 64, "rps": 1000.0, "gpu": ""},
        {"server": "modelport", "workers": 2, "route": "v2-json", "concurrency": 128, "rps": 1500.0, "gpu": ""},
        {"server": "gpu onnx-cuda", "workers": 1, "route": "v2-json", "concurrency": 64, "rps": 900.0, "gpu": "x"},
        {"server": "modelport", "workers": 4, "route": "v2-json", "concurrency": 256, "error": "boom"},
    ]
    for row in rows[:3]:
        row |= {"p50_ms": 1.0, "p99_ms": 2.0, "errors": 0, "rss_mb": 100.0, "layout": layout, "server_cores": 1.0}
    add_efficiency(rows)
    assert (rows[1]["vs_1_worker"], rows[1]["per_worker"]) == (1.5, 750.0)
    assert rows[2]["vs_1_worker"] is None  # a GPU row is not a CPU scaling point
    table = format_rows(rows, [{"config": "workers=8", "reason": "only 2 CPUs available, skipped"}])
    assert "| modelport | 2 | v2-json | 128 | 1,500 | 1.50 |" in table
    assert "failed: boom" in table and "skipped: only 2 CPUs" in table
