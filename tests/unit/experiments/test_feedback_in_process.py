"""Outcome feedback and the fleet statistics, in process: a real SQLite registry, real ONNX engines, the app that
``create_app`` builds, driven over ASGI.

- an outcome is attributed to the version that served the request and to what it predicted; a repeat counts
  once; an unknown id is a 404; a truth that does not fit the prediction is a 400 and changes nothing;
- feedback needs the ``feedback`` scope (admin implies it; a read key is refused);
- ``/stats`` is read back from the database: it survives a restart of the server on the same registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from registry_db.records import Principal
from service.app import create_app
from service.asgi import ModelportASGI
from service.context import Services
from service.management.manifest import VersionManifest
from service.management.registration import register_version
from service.settings import Settings
from tests.helpers.onnx_models import make_mlp_onnx

ADMIN = Principal(name="test", scopes=frozenset({"admin", "read"}))
TOKEN = "experiments-test-admin-token-0123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
X = np.random.default_rng(0).normal(size=(1, 4)).astype(np.float32)


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        device="cpu",
        registry_poll_interval_s=60,
        admin_token=TOKEN,
        stats_flush_interval_s=0.2,
        prediction_flush_interval_s=0.1,
    )


async def _start(tmp_path: Path) -> ModelportASGI:
    wrapper = create_app(_settings(tmp_path))
    await wrapper.runtime.start()
    return wrapper


@pytest.fixture
async def registry_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``m`` versions 1 and 2 (different MLPs), production -> 1, split 50/50."""
    monkeypatch.setattr("service.app.configure_logging", lambda *args, **kwargs: None)
    services = await Services.open(_settings(tmp_path), migrate=True)
    try:
        for seed in (1, 2):
            path = tmp_path / f"m-{seed}.onnx"
            make_mlp_onnx(path, in_dim=4, hidden=8, out=3, seed=seed, input_name="x", output_name="y")
            await register_version(
                services, "m", artifact=path, manifest=VersionManifest(backend="onnx"), principal=ADMIN
            )
        await services.registry.routing.set_alias("m", "production", "1", actor="test")
        await services.registry.routing.set_traffic("m", [("1", 50), ("2", 50)], actor="test")
    finally:
        await services.close()
    return tmp_path


@pytest.fixture
async def app(registry_dir: Path) -> AsyncIterator[ModelportASGI]:
    wrapper = await _start(registry_dir)
    try:
        yield wrapper
    finally:
        await wrapper.runtime.stop()


def _client(asgi: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1")


def _infer_body(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


async def _predict(client: httpx.AsyncClient, request_id: str, **headers: str) -> tuple[str, str]:
    """(served version, predicted class) of one V2 call."""
    reply = await client.post(
        "/v2/models/m/infer", json=_infer_body(X), headers={"X-Request-ID": request_id, **headers}
    )
    assert reply.status_code == 200, reply.text
    scores = np.asarray(reply.json()["outputs"][0]["data"]).reshape(1, 3)
    return reply.headers["x-model-version"], str(int(np.argmax(scores)))


async def test_feedback_is_attributed_to_the_serving_version_once(app: ModelportASGI) -> None:
    async with _client(app) as client:
        served: dict[str, tuple[str, str]] = {}
        for i in range(12):
            served[f"req-{i}"] = await _predict(client, f"req-{i}", **{"X-Routing-Key": f"user-{i}"})
        assert {v for v, _ in served.values()} == {"1", "2"}
        # right for even ids, wrong for odd ones
        for i, (request_id, (_, label)) in enumerate(served.items()):
            truth = int(label) if i % 2 == 0 else (int(label) + 1) % 3
            reply = await client.post(
                "/v1/models/m/feedback", json={"request_id": request_id, "truth": truth}, headers=BEARER
            )
            assert reply.status_code == 202, reply.text
            assert reply.json()["results"][0]["model_version"] == served[request_id][0]
        again = await client.post("/v1/models/m/feedback", json={"request_id": "req-0", "truth": 0}, headers=BEARER)
        assert again.status_code == 202 and again.json()["results"][0]["status"] == "duplicate"
        assert again.json()["recorded"] == 0
        unknown = await client.post("/v1/models/m/feedback", json={"request_id": "never", "truth": 1}, headers=BEARER)
        assert unknown.status_code == 404 and "never" in unknown.json()["error"]
        stats = (await client.get("/admin/models/m/stats", headers=BEARER)).json()
    expected: dict[str, list[int]] = {"1": [0, 0], "2": [0, 0]}
    for i, (version, _) in enumerate(served.values()):
        expected[version][0] += 1
        expected[version][1] += i % 2 == 0
    for version, (count, correct) in expected.items():
        feedback = stats["versions"][version]["feedback"]
        assert feedback["count"] == feedback["outcomes"] == count
        assert feedback["accuracy"] == pytest.approx(correct / count, abs=1e-6)
        assert stats["versions"][version]["requests"] == count
    assert stats["scope"] == "fleet" and stats["workers"] == 1
    assert stats["control"] == "1" and set(stats["comparison"]["arms"]) == {"2"}
    arm = stats["comparison"]["arms"]["2"]
    assert {"error_rate", "latency_ms", "accuracy"} <= set(arm)
    assert arm["accuracy"]["verdict"] in ("not enough data", "no difference yet")
    points = stats["timeline"]["points"]
    assert sum(p["versions"].get("1", {}).get("requests", 0) for p in points) == expected["1"][0]


async def test_batches_rewards_and_refusals(app: ModelportASGI) -> None:
    async with _client(app) as client:
        version, label = await _predict(client, "r-1")
        await _predict(client, "r-2")
        batch = {
            "items": [
                {"request_id": "r-1", "reward": 2.5},
                {"request_id": "r-2", "truth": 1, "reward": -1},
                {"request_id": "r-404", "reward": 1},
            ]
        }
        reply = await client.post("/v1/models/m/feedback", json=batch, headers=BEARER)
        assert reply.status_code == 202, reply.text
        assert [r["status"] for r in reply.json()["results"]] == ["recorded", "recorded", "unknown"]
        await _predict(client, "r-3")
        wrong_type = await client.post(
            "/v1/models/m/feedback", json={"request_id": "r-3", "truth": [1, 2]}, headers=BEARER
        )
        assert wrong_type.status_code == 400 and "list of 1" in wrong_type.json()["error"]
        # the refused truth left the prediction open: a correct one is still counted
        ok = await client.post("/v1/models/m/feedback", json={"request_id": "r-3", "truth": 0}, headers=BEARER)
        assert ok.status_code == 202 and ok.json()["recorded"] == 1
        for body in ({"request_id": "r-3"}, {"request_id": "r-3", "reward": "1"}, {"items": []}, {}):
            assert (await client.post("/v1/models/m/feedback", json=body, headers=BEARER)).status_code == 400, body
        nan = await client.post(
            "/v1/models/m/feedback", content=b'{"request_id": "r-3", "reward": NaN}', headers=BEARER
        )
        assert nan.status_code == 400
        stats = (await client.get("/admin/models/m/stats", headers=BEARER)).json()
    rewards = sum(v["feedback"]["rewards"] for v in stats["versions"].values())
    assert rewards == 2
    assert label in {"0", "1", "2"} and version in {"1", "2"}


async def test_feedback_needs_the_feedback_scope(app: ModelportASGI) -> None:
    registry = app.runtime.services.registry
    feedback_key, _ = await registry.keys.create_api_key("fb", ["feedback"], actor="test")
    read_key, _ = await registry.keys.create_api_key("ro", ["read"], actor="test")
    async with _client(app) as client:
        await _predict(client, "s-1")
        body = {"request_id": "s-1", "reward": 1}
        assert (await client.post("/v1/models/m/feedback", json=body)).status_code == 401
        refused = await client.post("/v1/models/m/feedback", json=body, headers={"Authorization": f"Bearer {read_key}"})
        assert refused.status_code == 403 and "feedback" in refused.json()["error"]
        accepted = await client.post(
            "/v1/models/m/feedback", json=body, headers={"Authorization": f"Bearer {feedback_key}"}
        )
        assert accepted.status_code == 202
        # a feedback key reads no admin data
        stats = await client.get("/admin/models/m/stats", headers={"Authorization": f"Bearer {feedback_key}"})
        assert stats.status_code == 403


async def test_stats_survive_a_restart(registry_dir: Path) -> None:
    first = await _start(registry_dir)
    try:
        async with _client(first) as client:
            for i in range(5):
                await _predict(client, f"p-{i}", **{"X-Routing-Key": "same-user"})
    finally:
        await first.runtime.stop()
    second = await _start(registry_dir)
    try:
        async with _client(second) as client:
            stats = (await client.get("/admin/models/m/stats", headers=BEARER)).json()
            # the restarted server still attributes outcomes for predictions the first one made
            reply = await client.post("/v1/models/m/feedback", json={"request_id": "p-4", "reward": 1}, headers=BEARER)
    finally:
        await second.runtime.stop()
    assert sum(v["requests"] for v in stats["versions"].values()) == 5
    assert stats["workers"] == 1
    assert reply.status_code == 202 and reply.json()["recorded"] == 1


async def _wait_for(client: httpx.AsyncClient, check: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        stats: dict[str, Any] = (await client.get("/admin/models/m/stats", headers=BEARER)).json()
        if check(stats) or asyncio.get_running_loop().time() > deadline:
            return stats
        await asyncio.sleep(0.1)


async def test_shadow_gets_copies_and_its_agreement_is_measured(app: ModelportASGI, registry_dir: Path) -> None:
    services = app.runtime.services
    twin = registry_dir / "twin.onnx"
    make_mlp_onnx(twin, in_dim=4, hidden=8, out=3, seed=1, input_name="x", output_name="y")  # same weights as v1
    await register_version(
        services, "m", artifact=twin, manifest=VersionManifest(backend="onnx"), principal=ADMIN, allow_duplicate=True
    )
    async with _client(app) as client:
        body = {"splits": [{"version": "1", "weight": 100}], "shadow": {"version": "3", "percent": 100}}
        reply = await client.put("/admin/models/m/traffic", json=body, headers=BEARER)
        assert reply.status_code == 200, reply.text
        assert reply.json()["shadow"] == {"version": "3", "percent": 100}
        for i in range(20):
            assert (await _predict(client, f"sh-{i}"))[0] == "1"  # the shadow never answers
        stats = await _wait_for(client, lambda s: s["versions"].get("3", {}).get("shadow", {}).get("requests") == 20)
        shadow = stats["versions"]["3"]["shadow"]
        assert (shadow["requests"], shadow["errors"], shadow["compared"], shadow["dropped"]) == (20, 0, 20, 0)
        assert shadow["agreement"] == 1.0 and shadow["max_abs_diff"] == 0.0
        assert stats["versions"]["3"]["requests"] == 0 and stats["shadow"] == {"version": "3", "percent": 100}
        assert set(stats["comparison"]["arms"]) == {"3"}
        # a shadow that answers differently: agreement falls, the primary's answers do not change
        body["shadow"] = {"version": "2", "percent": 100}
        assert (await client.put("/admin/models/m/traffic", json=body, headers=BEARER)).status_code == 200
        for i in range(20):
            assert (await _predict(client, f"sh2-{i}"))[0] == "1"
        stats = await _wait_for(client, lambda s: s["versions"].get("2", {}).get("shadow", {}).get("requests") == 20)
        assert stats["versions"]["2"]["shadow"]["max_abs_diff"] > 0
        bad = {"splits": [{"version": "1", "weight": 100}], "shadow": {"version": "1", "percent": 50}}
        refused = await client.put("/admin/models/m/traffic", json=bad, headers=BEARER)
        assert refused.status_code == 400 and "already in the split" in refused.json()["error"]
