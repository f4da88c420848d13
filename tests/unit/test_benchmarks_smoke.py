"""Smoke tests for the benchmark harness: parsers, bodies and tables on canned input; no servers, no load."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from benchmarks import run
from benchmarks._procs import Interference, pinned, tree_hwm_kb, tree_pids, tree_rss_kb
from benchmarks.loadgen import WRK_SCRIPT, LoadGenerator, parse_result
from benchmarks.profile_summary import format_profile, summarise_raw
from benchmarks.pyload import LoadResult, build_request, percentile
from benchmarks.report import format_summary, format_table, summarise
from benchmarks.servers import ceiling
from benchmarks.servers._v2 import decode_request
from benchmarks.workload import v1_body, v2_binary_body, v2_json_body

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:40000/v2/models/bench/infer
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.15ms  612.00us  12.30ms   90.00%
  42000 requests in 3.00s, 10.00MB read
Requests/sec:  14000.00
Transfer/sec:      3.33MB
BENCH_RESULT {"requests":42000,"duration_s":3.000000,"bytes":10485760,"rps":14000.000,"p50_us":4150,\
"p90_us":5000,"p99_us":8040,"max_us":12300,"mean_us":4150.5,"errors_connect":0,"errors_read":1,\
"errors_write":0,"errors_status":7,"errors_timeout":2}
"""


def test_parse_wrk_output() -> None:
    stats = parse_result(WRK_OUTPUT)
    assert stats.requests == 42000
    assert stats.rps == pytest.approx(14000.0)
    assert stats.p50_ms == pytest.approx(4.15)
    assert stats.p99_ms == pytest.approx(8.04)
    assert (stats.errors_status, stats.errors_socket, stats.errors_timeout) == (7, 1, 2)
    assert stats.errors == 10
    assert stats.as_dict()["errors"] == 10


def test_parse_rejects_output_without_result_line() -> None:
    with pytest.raises(ValueError, match="BENCH_RESULT"):
        parse_result("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_pyload_summary_round_trips_through_the_parser() -> None:
    result = LoadResult(latencies=[0.001, 0.002, 0.003, 0.004], bytes_read=400, errors_status=1, duration_s=2.0)
    stats = parse_result("BENCH_RESULT " + json.dumps(result.summary()))
    assert stats.requests == 4
    assert stats.rps == pytest.approx(2.0)
    assert stats.p50_ms == pytest.approx(2.0)
    assert stats.p99_ms == pytest.approx(4.0)
    assert stats.errors == 1


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) == 0.0


def test_pyload_request_is_keep_alive_post_with_exact_length() -> None:
    raw = build_request("http://127.0.0.1:9/v2/models/m/infer", b"abc", ["Content-Type: application/json"])
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v2/models/m/infer HTTP/1.1"
    assert "Content-Length: 3" in lines and "Host: 127.0.0.1:9" in lines
    assert body == b"abc"


def test_wrk_command_uses_one_thread_the_script_and_body(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    argv = LoadGenerator("wrk", cpu=1).command("http://h:1/x", body, ["A: b"], connections=64, duration=3)
    tail = argv[argv.index("wrk") :]
    assert tail[:4] == ["wrk", "-t1", "-c64", "-d3s"]
    assert str(WRK_SCRIPT) in tail and tail[-3:] == ["--", str(body), "A: b"]
    assert WRK_SCRIPT.is_file()


def test_bodies_decode_as_the_servers_expect() -> None:
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    request = decode_request(v2_json_body("input", x))
    assert request.inputs[0].shape == [1, 784]
    np.testing.assert_array_equal(np.asarray(request.inputs[0].data, dtype=np.float32), x.ravel())
    body, header_length = v2_binary_body("input", x, "logits")
    header = json.loads(body[:header_length])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == 784 * 4 == len(body) - header_length
    np.testing.assert_array_equal(np.frombuffer(body[header_length:], dtype="<f4"), x.ravel())
    assert np.asarray(json.loads(v1_body(x))["inputs"], dtype=np.float32).shape == (1, 784)


async def _call_ceiling(method: str, body: bytes) -> tuple[int, bytes]:
    sent: list[MutableMapping[str, Any]] = []
    chunks = [
        {"type": "http.request", "body": body[:100], "more_body": True},
        {"type": "http.request", "body": body[100:], "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await ceiling.app({"type": "http", "method": method, "path": "/v2/models/bench/infer"}, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def test_ceiling_decodes_the_body_and_refuses_garbage() -> None:
    x = np.zeros((1, 784), dtype=np.float32)
    status, body = await _call_ceiling("POST", v2_json_body("input", x))
    assert status == 200
    assert msgspec.json.decode(body)["outputs"][0]["shape"] == [1, 10]
    status, body = await _call_ceiling("POST", b'{"inputs": "nope"}' + b" " * 100)
    assert status == 400 and b"error" in body


def _row(
    server: str,
    c: int,
    rps: float,
    p50: float,
    p99: float,
    *,
    route: str = "v2-json",
    model: str = "mlp",
    cpu_us: float | None = None,
) -> dict[str, Any]:
    return {
        "cpu_us_per_req": cpu_us,
        "server": server,
        "route": route,
        "model": model,
        "concurrency": c,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": 0,
        "peak_rss_mb": 100.0,
        "foreign_cpu": 0.03,
    }


def test_summary_ratios_targets_and_tables() -> None:
    rows = [
        _row("ceiling", 1, 8000, 0.10, 0.25),
        _row("ceiling", 64, 14000, 4.0, 8.0, cpu_us=60.0),
        _row("naive", 1, 3000, 0.30, 0.50),
        _row("naive", 64, 3000, 20.0, 300.0),
        _row("modelport", 1, 2800, 0.38, 0.70),
        _row("modelport", 64, 11900, 6.0, 12.0, cpu_us=75.0),
        _row("modelport", 64, 13500, 5.0, 10.0, route="v2-binary", cpu_us=62.5),
        _row("mlserver-batching", 64, 1500, 40.0, 90.0),
        _row("modelport", 1, 20, 50.0, 60.0, model="3x224x224"),
        _row("modelport", 1, 150, 6.0, 8.0, route="v2-binary", model="3x224x224"),
        _row("modelport", 1, 160, 6.0, 8.0, route="v2-shm", model="3x224x224"),
        {"server": "modelport", "route": "v1-predict", "model": "mlp", "concurrency": 64, "error": "boom"},
    ]
    summary = summarise(rows, (1, 64))
    mp = summary["ratios"]["modelport"]
    assert mp["per_concurrency"]["64"] == {
        "vs_ceiling": 0.85,
        "vs_naive": 3.967,
        "p99_over_p50": 2.0,
        "binary_vs_ceiling": 0.964,
        "cpu_vs_ceiling": 0.8,
        "binary_cpu_vs_ceiling": 0.96,
    }
    assert mp["batching_overhead_c1_ms"] == pytest.approx(0.08)
    assert summary["large_input"]["modelport"]["1"]["binary_over_json"] == 7.5
    assert summary["large_input"]["modelport"]["1"]["shm_over_json"] == 8.0
    targets = summary["targets"]
    assert all(t["met"] for t in targets.values())
    assert targets["modelport_vs_mlserver_batching_c64"]["value"] == 7.933
    table = format_table(rows)
    assert "| modelport v2-json | 64 | 11,900 | 6.00 | 12.00 | 0 | 100 | 3 | 75 |" in table
    assert "modelport v2-binary 3x224x224" in table and "failed: boom" in table
    text = format_summary(summary)
    assert "| 64 | 0.85 | 3.97 | 2.00 | 0.96 | 0.80 | 0.96 |" in text and "+0.080 ms" in text
    assert "| 1 | 20.0 | 150.0 | 7.5 | 160.0 | 8.0 |" in text


def test_summary_without_modelport_has_no_targets() -> None:
    summary = summarise([_row("ceiling", 64, 14000, 4.0, 8.0)], (64,))
    assert summary["ratios"] == {} and summary["targets"] == {}


def test_process_tree_memory_of_this_process() -> None:
    assert os.getpid() in tree_pids(os.getpid())
    assert tree_rss_kb(os.getpid()) > 0 and tree_hwm_kb(os.getpid()) > 0
    assert pinned(10_000, ["true"]) == ["true"]  # a CPU we do not have: no taskset prefix


def test_cli_defaults_and_suites() -> None:
    args = run.parse_args(["--quick", "--only", "ceiling", "memory"])
    assert args.quick and args.only == ["ceiling", "memory"] and args.concurrency == [1, 16, 64]
    assert set(run.SUITES) >= {"ceiling", "naive", "modelport", "granian", "large", "memory"}


PY_SPY_RAW = """\
thread (1): MainThread;main (a.py:1);serve (b.py:2);handle (c.py:3);decode (d.py:4) 30
thread (1): MainThread;main (a.py:1);serve (b.py:2);handle (c.py:9);run (ort.py:5) 60
thread (1): MainThread;main (a.py:1);serve (b.py:2);select (selectors.py:468) 50
thread (2): worker;_bootstrap (threading.py:1);Condition.wait (threading.py:320) 40
thread (2): worker;_bootstrap (threading.py:1);predict (engine.py:7) 10
"""


def test_profile_summary_splits_busy_and_idle() -> None:
    summary = summarise_raw(PY_SPY_RAW)
    assert (summary.total, summary.idle, summary.busy) == (190, 90, 100)
    assert summary.threads == [("MainThread", 90), ("worker", 10)]
    assert summary.self_time[0] == ("run (ort.py)", 60)
    inclusive = dict(summary.inclusive)
    assert inclusive["handle (c.py)"] == 90 and "main (a.py)" in inclusive  # 90 of 100 busy: not a root frame
    text = format_profile(summary)
    assert "| 60.0 | `run (ort.py)` |" in text and "90 idle" in text


def test_interference_probe_reports_shares_of_a_core() -> None:
    with Interference(0, os.getpid()) as probe:
        sum(i * i for i in range(200_000))
    assert probe.server is not None and probe.foreign is not None
    assert probe.server >= 0.0 and probe.foreign >= 0.0


def test_import_tracker_attributes_rss_per_module(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "imports.json"
    tracker = Path(__file__).resolve().parents[2] / "benchmarks" / "import_rss.py"
    run = subprocess.run(
        [sys.executable, str(tracker), str(out), "timeit", "-n", "1", "pass"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert "getopt" in report["modules"] and report["order"]  # timeit runs as __main__; what it imports is tracked
    assert all(isinstance(kb, int) for kb in report["modules"].values())
    assert set(report["parents"]) == set(report["modules"])


def test_memory_profile_helpers_read_this_process() -> None:
    import os

    from benchmarks.memory_profile import _cpu_ns, _format_row, _mappings, _package_table, _status

    assert _status(os.getpid())["VmRSS"] > 0 and _cpu_ns(os.getpid()) > 0
    mappings = _mappings(os.getpid())
    assert "[heap]" in mappings or "[anon]" in mappings
    table = _package_table({"modules": {"a.x": 1024, "a.y": 1024, "b": 512}}, top=5)
    assert table == [("a", 2048, 2), ("b", 512, 1)]
    row = {"phase": "start", "VmRSS": 2048, "VmHWM": 4096, "RssAnon": 1024, "RssFile": 1024, "loaded": 0}
    assert _format_row(row).split()[:3] == ["start", "2.0", "4.0"]
