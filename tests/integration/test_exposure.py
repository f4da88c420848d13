"""Safe defaults: off-loopback bind needs an admin key; foreign Host headers are refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import MLPServer

pytestmark = pytest.mark.integration


def test_bind_beyond_loopback_without_admin_token_refuses_to_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    env["MODELPORT_DATA_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "MODELPORT_ADMIN_TOKEN" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("host", ["evil.example.com", "attacker.test:8000", "127.0.0.1.nip.io"])
def test_foreign_host_header_refused(mlp_server: MLPServer, host: str) -> None:
    with mlp_server.server.client() as client:
        for method, path in (
            ("GET", "/admin/models"),
            ("POST", "/v2/models/mlp/infer"),
            ("GET", "/v2/models/mlp"),
            ("GET", "/schema/openapi.json"),
        ):
            reply = client.request(method, path, headers={"Host": host})
            assert reply.status_code == 400, (method, path, reply.text)
            assert "Host" in reply.json()["error"]
        assert client.get("/v2/models/mlp", headers={"Host": "localhost:1234"}).status_code == 200
        # probes and scrapes arrive with a pod IP as Host; they are read-only and exempt
        assert client.get("/v2/health/ready", headers={"Host": "10.1.2.3:8000"}).status_code == 200
        assert client.get("/metrics", headers={"Host": "10.1.2.3:8000"}).status_code == 200
