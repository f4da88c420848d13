"""The shared-memory routes in process, as ``create_app`` builds them, driven over ASGI from chosen peer addresses:
a local client without a token (the default set-up) registers and names regions; a remote one is refused before
anything is opened; with the extension off nothing answers and ``GET /v2`` does not list it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.asgi import ModelportASGI
from service.settings import Settings


@pytest.fixture
def shm_object() -> Iterator[Path]:
    path = Path("/dev/shm") / f"mp-unit-{os.getpid()}"
    path.write_bytes(bytes(64))
    yield path
    path.unlink(missing_ok=True)


async def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> ModelportASGI:
    monkeypatch.setattr("service.app.configure_logging", lambda *args, **kwargs: None)
    app = create_app(
        Settings(_env_file=None, data_dir=tmp_path, registry_poll_interval_s=60, **settings)  # type: ignore[call-arg]
    )
    await app.runtime.start()
    return app


def _client(app: ModelportASGI, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


_SHM_INFER = {
    "inputs": [
        {
            "name": "x",
            "datatype": "FP32",
            "shape": [1, 4],
            "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 16},
        }
    ]
}


async def test_local_without_a_token_remote_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shm_object: Path
) -> None:
    app = await _app(tmp_path, monkeypatch)
    try:
        async with _client(app, "127.0.0.1") as local, _client(app, "10.1.2.3") as remote:
            assert "system_shared_memory" in (await local.get("/v2")).json()["extensions"]
            body = {"key": f"/{shm_object.name}", "byte_size": 64}
            refused = await remote.post("/v2/systemsharedmemory/region/r/register", json=body)
            assert refused.status_code == 403 and "loopback" in refused.json()["error"]
            registered = await local.post("/v2/systemsharedmemory/region/r/register", json=body)
            assert registered.status_code == 200, registered.text
            status = (await local.get("/v2/systemsharedmemory/status")).json()
            assert status == [{"name": "r", "key": f"/{shm_object.name}", "offset": 0, "byte_size": 64}]
            assert (await remote.get("/v2/systemsharedmemory/status")).status_code == 403
            infer = await remote.post("/v2/models/m/infer", json=_SHM_INFER)  # refused while decoding
            assert infer.status_code == 403 and "input 'x'" in infer.json()["error"]
            assert (await local.post("/v2/systemsharedmemory/unregister")).status_code == 200
            assert (await local.get("/v2/systemsharedmemory/status")).json() == []
    finally:
        await app.runtime.stop()


async def test_off_is_not_implemented_and_not_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = await _app(tmp_path, monkeypatch, shm_enabled=False)
    try:
        async with _client(app, "127.0.0.1") as local:
            assert "system_shared_memory" not in (await local.get("/v2")).json()["extensions"]
            status = await local.get("/v2/systemsharedmemory/status")
            assert status.status_code == 501 and "MODELPORT_SHM_ENABLED=false" in status.json()["error"]
            infer = await local.post("/v2/models/m/infer", json=_SHM_INFER)
            assert infer.status_code == 501
    finally:
        await app.runtime.stop()
