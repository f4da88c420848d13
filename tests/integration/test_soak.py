"""Bounded soak: thousands of predictions while versions load and unload under a small LRU cap.

RSS growth from mid-run to the end stays under a budget, and open file descriptors return to baseline.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import run_server

pytestmark = pytest.mark.integration
RSS_GROWTH_BUDGET_MB = 40.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _round(client: httpx.Client, versions: int, n: int) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 64], "data": [0.1] * 128}]}
    for i in range(n):
        reply = client.post(f"/v2/models/soak/versions/{i % versions + 1}/infer", json=body)
        assert reply.status_code == 200, reply.text


def test_soak_rss_and_fds_bounded(tmp_path: Path) -> None:
    env = {"MODELPORT_MAX_LOADED_ENGINES": "2", "MODELPORT_LOG_LEVEL": "WARNING"}
    with run_server(tmp_path / "data", extra_env=env) as server:
        for seed in range(4):
            artifact = tmp_path / f"v{seed}.onnx"
            make_mlp_onnx(artifact, in_dim=64, hidden=256, out=10, seed=seed)
            server.register_onnx("soak", artifact)
        pid = server.process.pid
        with server.client() as client:
            _round(client, 4, 200)  # warm: imports, arenas, first loads
            baseline_fds = _fds(pid)
            _round(client, 4, 600)
            mid = _rss_mb(pid)
            _round(client, 4, 600)
            end = _rss_mb(pid)
            loaded = [
                line
                for line in client.get("/metrics").text.splitlines()
                if line.startswith("modelport_loaded_engines ")
            ]
        print(
            f"\nsoak: RSS mid {mid:.1f} MB, end {end:.1f} MB, growth {end - mid:.1f} MB; "
            f"fds baseline {baseline_fds}, end {_fds(pid)}"
        )
        assert end - mid < RSS_GROWTH_BUDGET_MB
        assert _fds(pid) <= baseline_fds + 2
        assert loaded and float(loaded[0].split()[1]) <= 2
