"""Faults: a tampered artifact is refused and the previous version keeps serving; SIGTERM drains and exits 0."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ServerProcess, run_server

pytestmark = pytest.mark.integration

BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.25] * 8}]}


def _flip_byte(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _two_versions_v1_in_production(server: ServerProcess, tmp_path: Path) -> Path:
    """Versions 1 and 2 of ``m`` (distinct MLPs), production -> 1; the path of version 2's blob."""
    a1, a2 = tmp_path / "v1.onnx", tmp_path / "v2.onnx"
    make_mlp_onnx(a1, in_dim=8, hidden=4, out=3, seed=1)
    make_mlp_onnx(a2, in_dim=8, hidden=4, out=3, seed=2)
    server.register_onnx("m", a1)
    v2 = server.register_onnx("m", a2)
    with server.admin() as admin:
        assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
    return tmp_path / "data" / "artifacts" / "sha256" / v2["sha256"][:2] / v2["sha256"]


def test_tampered_artifact_refused_previous_keeps_serving(tmp_path: Path) -> None:
    with run_server(tmp_path / "data") as server:
        blob = _two_versions_v1_in_production(server, tmp_path)
        with server.admin() as admin:
            assert blob.exists(), list((tmp_path / "data" / "artifacts").rglob("*"))
            _flip_byte(blob)
            reply = admin.put("/admin/models/m/aliases/production", json={"version": "2"})
            assert reply.status_code == 422, reply.text
            assert "integrity" in reply.json()["error"]
            assert admin.get("/admin/models/m").json()["aliases"] == {"production": "1"}
        with server.client() as client:
            ok = client.post("/v2/models/m/infer", json=BODY)
            assert ok.status_code == 200 and ok.json()["model_version"] == "1"
            refused = client.post("/v2/models/m/versions/2/infer", json=BODY)
            assert refused.status_code == 503 and "integrity" in refused.json()["error"]
            metrics = client.get("/metrics").text
        assert 'modelport_integrity_failures_total{model="m",version="2"} 1.0' in metrics


def test_sigterm_flips_readiness_drains_and_exits_zero(tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    with run_server(tmp_path / "data") as server:
        server.register_onnx("m", artifact)
        with server.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
        results: list[int] = []
        errors: list[str] = []
        stop = threading.Event()

        def stream() -> None:
            with httpx.Client(base_url=server.base_url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        results.append(client.post("/v2/models/m/infer", json=BODY).status_code)
                    except httpx.ConnectError:
                        return  # listener closed: a real client would go to another replica
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))
                        return

        threads = [threading.Thread(target=stream) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.kill(server.process.pid, signal.SIGTERM)
        code = server.process.wait(30)
        stop.set()
        for t in threads:
            t.join(10)
        assert code == 0, server.logs()[-2000:]
        assert results and all(status == 200 for status in results), set(results)
        assert "draining" in server.logs()


def test_readiness_is_503_while_a_routed_version_is_held_back(tmp_path: Path) -> None:
    """Issue 12 item 8: the registry routes to a version whose blob fails its hash on this replica (promoted by
    another replica or a direct registry write): the replica keeps serving v1 but says it is not ready."""
    import asyncio

    from registry_db.repository import Registry
    from registry_db.session import create_engine

    with run_server(tmp_path / "data") as server:
        _flip_byte(_two_versions_v1_in_production(server, tmp_path))

        async def promote_directly() -> None:  # what a replica that still had a good copy could do
            registry = Registry(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'registry.db'}"))
            try:
                await registry.routing.set_alias("m", "production", "2", actor="other-replica")
            finally:
                await registry.close()

        asyncio.run(promote_directly())
        with server.client() as client:
            deadline = time.monotonic() + 10
            while (ready := client.get("/v2/health/ready")).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ready.status_code == 503 and ready.headers["Retry-After"], ready.text
            assert "'m'" in ready.json()["error"] and "integrity" in ready.json()["error"]
            assert client.get("/v2/health/live").status_code == 200
            served = client.post("/v2/models/m/infer", json=BODY)
            assert served.status_code == 200 and served.json()["model_version"] == "1"
        with server.admin() as admin:  # rolling the alias back clears it at the next poll
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
        with server.client() as client:
            deadline = time.monotonic() + 10
            while (ready := client.get("/v2/health/ready")).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ready.status_code == 200, ready.text
