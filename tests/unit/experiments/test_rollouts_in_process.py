"""Rollouts driven by the controller, in process (real SQLite registry, real ONNX engines, the real app):

- a candidate identical to production is ramped through its steps and promoted by itself;
- a candidate that fails on 20 % of its inputs is rolled back within its first step, with the evidence;
- every transition is in the audit log; an abort restores the control; a second start is refused (409).
"""

from __future__ import annotations

import asyncio
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
from tests.helpers.onnx_models import make_flaky_onnx, make_mlp_onnx

ADMIN = Principal(name="test", scopes=frozenset({"admin", "read"}))
TOKEN = "rollout-test-admin-token-012345678"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        device="cpu",
        registry_poll_interval_s=60,
        admin_token=TOKEN,
        stats_bucket_s=1,
        stats_flush_interval_s=0.2,
        prediction_flush_interval_s=0.1,
        rollout_interval_s=0.2,
    )


@pytest.fixture
async def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelportASGI]:
    """``m``: 1 (production), 2 = the same weights as 1, 3 = fails on 20 % of standard-normal rows."""
    monkeypatch.setattr("service.app.configure_logging", lambda *args, **kwargs: None)
    services = await Services.open(_settings(tmp_path), migrate=True)
    try:
        for name, build in (
            ("a.onnx", lambda p: make_mlp_onnx(p, in_dim=4, hidden=8, out=3, seed=1, input_name="x", output_name="y")),
            ("b.onnx", lambda p: make_mlp_onnx(p, in_dim=4, hidden=8, out=3, seed=1, input_name="x", output_name="y")),
            ("c.onnx", lambda p: make_flaky_onnx(p)),
        ):
            build(tmp_path / name)
            await register_version(  # a and b are the same bytes on purpose: twins make a neutral rollout
                services,
                "m",
                artifact=tmp_path / name,
                manifest=VersionManifest(backend="onnx"),
                principal=ADMIN,
                allow_duplicate=True,
            )
        await services.registry.routing.set_alias("m", "production", "1", actor="test")
    finally:
        await services.close()
    wrapper = create_app(_settings(tmp_path))
    await wrapper.runtime.start()
    try:
        yield wrapper
    finally:
        await wrapper.runtime.stop()


def _client(asgi: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1")


async def _traffic_until(client: httpx.AsyncClient, rollout_id: int, *, limit: int = 3000) -> dict[str, Any]:
    """Unversioned calls (standard-normal rows, distinct keys) until the rollout ends; the ended rollout."""
    rng = np.random.default_rng(7)
    for i in range(limit):
        x = rng.standard_normal((1, 4)).astype(np.float32)
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.ravel().tolist()}]}
        await client.post("/v2/models/m/infer", json=body, headers={"X-Routing-Key": f"user-{i}"})
        if i % 25 == 0:
            await asyncio.sleep(0.05)  # let the controller's tick run
            state = (await client.get(f"/admin/models/m/rollouts/{rollout_id}", headers=BEARER)).json()
            if state["state"] != "running":
                return state
    raise AssertionError(f"rollout {rollout_id} still running after {limit} calls: {state}")


async def test_a_good_candidate_is_promoted_by_itself(app: ModelportASGI) -> None:
    plan = {"candidate": "2", "steps": [25, 50, 100], "hold_s": 0, "min_samples": 120,
            "guards": {"max_latency_ratio": None}}  # fmt: skip
    async with _client(app) as client:
        started = await client.post("/admin/models/m/rollouts", json=plan, headers=BEARER)
        assert started.status_code == 201, started.text
        rollout = started.json()
        assert (rollout["state"], rollout["control"], rollout["weight"]) == ("running", "1", 25)
        traffic = (await client.get("/admin/models/m/traffic", headers=BEARER)).json()
        assert {s["version"]: s["weight"] for s in traffic["splits"]} == {"1": 75, "2": 25}
        again = await client.post("/admin/models/m/rollouts", json=plan, headers=BEARER)
        assert again.status_code == 409
        ended = await _traffic_until(client, rollout["id"])
        assert ended["state"] == "promoted", ended
        assert [d["action"] for d in ended["decisions"]] == ["start", "advance", "promote"]
        assert ended["decisions"][1]["evidence"]["candidate"]["requests"] >= 120
        model = (await client.get("/admin/models/m", headers=BEARER)).json()
        assert model["aliases"]["production"] == "2" and model["traffic"] == []
        audit = (await client.get("/admin/audit", params={"model": "m"}, headers=BEARER)).json()
        actions = [entry["action"] for entry in audit]
        assert {"rollout.start", "rollout.advance", "rollout.promote"} <= set(actions)


async def test_a_failing_candidate_is_rolled_back_within_its_first_step(app: ModelportASGI) -> None:
    plan = {"candidate": "3", "steps": [50, 100], "hold_s": 0, "min_samples": 1000,
            "guards": {"max_error_rate_increase": 0.02, "max_latency_ratio": None}}  # fmt: skip
    async with _client(app) as client:
        rollout = (await client.post("/admin/models/m/rollouts", json=plan, headers=BEARER)).json()
        ended = await _traffic_until(client, rollout["id"])
        assert ended["state"] == "rolled_back", ended
        assert ended["step"] == 0 and "error rate" in ended["reason"]
        evidence = ended["decisions"][-1]["evidence"]
        assert evidence["candidate"]["errors"] > 0 and evidence["control"]["errors"] == 0
        assert evidence["comparison"]["error_rate"]["verdict"] == "worse"
        model = (await client.get("/admin/models/m", headers=BEARER)).json()
        assert model["aliases"]["production"] == "1" and model["traffic"] == []
        audit = (await client.get("/admin/audit", params={"model": "m"}, headers=BEARER)).json()
        assert "rollout.rollback" in [entry["action"] for entry in audit]


async def test_abort_restores_the_control_and_bad_plans_are_refused(app: ModelportASGI) -> None:
    async with _client(app) as client:
        for bad in (
            {"candidate": "2", "steps": [50, 40, 100]},
            {"candidate": "2", "steps": [5, 50]},
            {"candidate": "1"},
            {"candidate": "9"},
        ):
            reply = await client.post("/admin/models/m/rollouts", json=bad, headers=BEARER)
            assert reply.status_code in (400, 404), (bad, reply.text)
        rollout = (
            await client.post("/admin/models/m/rollouts", json={"candidate": "2", "steps": [0, 100]}, headers=BEARER)
        ).json()
        traffic = (await client.get("/admin/models/m/traffic", headers=BEARER)).json()
        assert traffic["shadow"] == {"version": "2", "percent": 100}  # step 0: shadow only
        aborted = await client.post(f"/admin/models/m/rollouts/{rollout['id']}/abort", headers=BEARER)
        assert aborted.status_code == 200 and aborted.json()["state"] == "aborted"
        traffic = (await client.get("/admin/models/m/traffic", headers=BEARER)).json()
        assert traffic["splits"] == [] and traffic["shadow"] is None
        again = await client.post(f"/admin/models/m/rollouts/{rollout['id']}/abort", headers=BEARER)
        assert again.status_code == 409
        listed = (await client.get("/admin/models/m/rollouts", headers=BEARER)).json()
        assert [r["id"] for r in listed] == [rollout["id"]]
