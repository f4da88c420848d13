"""Losing the database: admin calls answer 503, loaded engines keep serving predictions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from registry_db.migrate import upgrade_async
from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import run_server
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}


def test_lost_database_gives_503_on_admin_while_predictions_continue(fresh_pg_url: str, tmp_path: Path) -> None:
    asyncio.run(upgrade_async(fresh_pg_url))
    parts = urlsplit(fresh_pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxied = fresh_pg_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    try:
        with run_server(tmp_path / "data", extra_env={"MODELPORT_DATABASE_URL": proxied}) as server:
            server.register_onnx("m", artifact)
            with server.admin() as admin:
                assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
            proxy.cut()
            with server.client() as client, server.admin() as admin:
                for _ in range(20):
                    reply = client.post("/v2/models/m/infer", json=BODY)
                    assert reply.status_code == 200, reply.text
                down = admin.get("/admin/models")
                assert down.status_code == 503, down.text
                assert "Retry-After" in down.headers
                assert "unavailable" in down.json()["error"]
                # a bootstrap-key admin change also answers 503, never 500
                change = admin.put("/admin/models/m/aliases/production", json={"version": "1"})
                assert change.status_code == 503, change.text
                assert client.get("/v2/health/live").status_code == 200
    finally:
        proxy.stop()
