"""Request ids on every line of a request, returned in X-Request-ID; inputs never logged; metrics exposed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ADMIN_TOKEN, run_server

pytestmark = pytest.mark.integration
MARKER = 0.7312345678  # a value that must never appear in the logs


def test_request_ids_metrics_and_no_raw_inputs_in_logs(tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    with run_server(tmp_path / "data", extra_env={"MODELPORT_LOG_LEVEL": "DEBUG"}) as server:
        server.register_onnx("m", artifact)
        with server.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
        with server.client() as client:
            ok = client.post(
                "/v2/models/m/infer",
                headers={"X-Request-ID": "trace-ok-1"},
                json={"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [MARKER] * 8}]},
            )
            assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "trace-ok-1"
            bad = client.post(
                "/v2/models/m/infer",
                headers={"X-Request-ID": "trace-bad-2"},
                json={"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 7], "data": [MARKER] * 7}]},
            )
            assert bad.status_code == 400 and bad.headers["X-Request-ID"] == "trace-bad-2"
            generated = client.get("/v2/health/live").headers["X-Request-ID"]
            assert (
                re.fullmatch(r"[0-9a-f]{36}", generated)
                and generated != client.get("/v2/health/live").headers["X-Request-ID"]
            )
            evil = client.get("/v2/health/live", headers={"X-Request-ID": "x" * 500})
            assert evil.headers["X-Request-ID"] != "x" * 500
            metrics = client.get("/metrics").text
        logs = server.logs()
    assert str(MARKER) not in logs and "7312345678" not in logs
    assert ADMIN_TOKEN not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    failed = [entry for entry in lines if entry.get("event") == "inference_failed"]
    assert failed and failed[0]["request_id"] == "trace-bad-2" and failed[0]["status"] == 400
    assert 'modelport_requests_total{model="m",route="v2_infer",status="200",version="1"} 1.0' in metrics
    for name in (
        "modelport_request_duration_seconds_bucket",
        "modelport_inference_duration_seconds_bucket",
        "modelport_batch_size_bucket",
        "modelport_queue_depth",
        "modelport_loaded_engines",
        "modelport_registry_generation",
        "modelport_ready 1.0",
    ):
        assert name in metrics, name
