"""Experiments across two real ``modelport serve`` replicas on one registry (SQLite file and PostgreSQL):

- outcomes sent to either replica are attributed to the version that served the call on the other one, and
  to what it predicted; after a restart too;
- ``/stats`` reads the same from either replica (fleet-wide, durable);
- the rollout controller runs on exactly one replica (a lease); killing that replica mid-rollout, the other
  takes the lease over and finishes the rollout.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ServerProcess, run_server

pytestmark = [pytest.mark.integration]

FAST = {
    "MODELPORT_STATS_BUCKET_S": "1",
    "MODELPORT_STATS_FLUSH_INTERVAL_S": "0.25",
    "MODELPORT_PREDICTION_FLUSH_INTERVAL_S": "0.2",
    "MODELPORT_ROLLOUT_INTERVAL_S": "0.25",
    "MODELPORT_ROLLOUT_LEASE_S": "2",
    "MODELPORT_REGISTRY_POLL_INTERVAL_S": "0.25",
}


def _body(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


@pytest.fixture
def shared(db_url: str, tmp_path: Path) -> dict[str, str]:
    import asyncio

    from registry_db.migrate import upgrade_async

    asyncio.run(upgrade_async(db_url))
    return {**FAST, "MODELPORT_DATABASE_URL": db_url, "MODELPORT_ARTIFACT_DIR": str(tmp_path / "artifacts")}


@pytest.fixture
def replicas(shared: dict[str, str], tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with ExitStack() as stack:
        a = stack.enter_context(run_server(tmp_path / "a", extra_env=shared))
        b = stack.enter_context(run_server(tmp_path / "b", extra_env=shared))
        yield a, b


def _setup_model(replica: ServerProcess, tmp_path: Path, seeds: tuple[int, ...] = (1, 2)) -> None:
    for index, seed in enumerate(seeds):
        artifact = tmp_path / f"v{seed}.onnx"
        make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3, seed=seed)
        replica.register_onnx("m", artifact, allow_duplicate=seed in seeds[:index])  # a twin on purpose
    with replica.admin() as admin:
        assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200


def _stats(replica: ServerProcess) -> dict[str, Any]:
    with replica.admin() as admin:
        reply = admin.get("/admin/models/m/stats")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


def _comparable(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures without the moment they were read at."""
    return {k: v for k, v in stats.items() if k not in ("until", "since")}


def test_feedback_and_stats_are_fleet_wide_and_durable(
    replicas: tuple[ServerProcess, ServerProcess], shared: dict[str, str], tmp_path: Path
) -> None:
    a, b = replicas
    _setup_model(a, tmp_path)
    with a.admin() as admin:
        split = {"splits": [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]}
        assert admin.put("/admin/models/m/traffic", json=split).status_code == 200
    time.sleep(0.6)  # b follows the split within its poll interval
    rng = np.random.default_rng(3)
    served: dict[str, tuple[str, str]] = {}
    with a.client() as ca, b.client() as cb:
        for i in range(40):
            client = ca if i % 2 else cb
            reply = client.post(
                "/v2/models/m/infer",
                json=_body(rng.standard_normal((1, 8)).astype(np.float32)),
                headers={"X-Routing-Key": f"user-{i}", "X-Request-ID": f"fleet-{i}"},
            )
            assert reply.status_code == 200, reply.text
            label = str(int(np.argmax(reply.json()["outputs"][0]["data"])))
            served[f"fleet-{i}"] = (reply.headers["x-model-version"], label)
    assert {v for v, _ in served.values()} == {"1", "2"}
    # every outcome goes to the replica that did NOT serve the call (b served the even ones)
    with a.admin() as admin_a, b.admin() as admin_b:
        for i, (request_id, (version, label)) in enumerate(list(served.items())[:-1]):  # the last one: later
            other = admin_a if i % 2 == 0 else admin_b
            reply = other.post("/v1/models/m/feedback", json={"request_id": request_id, "truth": int(label)})
            assert reply.status_code == 202, reply.text
            assert reply.json()["results"][0] == {
                "request_id": request_id,
                "status": "recorded",
                "model_version": version,
            }
        repeat = admin_b.post("/v1/models/m/feedback", json={"request_id": "fleet-1", "truth": 0})
        assert repeat.json()["results"][0]["status"] == "duplicate"
    time.sleep(0.6)  # both replicas flushed their buckets
    from_a, from_b = _stats(a), _stats(b)
    assert _comparable(from_a) == _comparable(from_b)
    assert from_a["workers"] == 2
    per_version = {v: sum(1 for sv, _ in served.values() if sv == v) for v in ("1", "2")}
    last_version = served["fleet-39"][0]
    outcomes = {v: n - (v == last_version) for v, n in per_version.items()}
    for version, count in per_version.items():
        figures = from_a["versions"][version]
        assert figures["requests"] == count
        assert figures["feedback"]["count"] == outcomes[version] and figures["feedback"]["accuracy"] == 1.0

    # a restart of both replicas keeps every figure
    a.stop(), b.stop()
    with run_server(tmp_path / "a2", extra_env=shared) as a2:
        after = _stats(a2)
        for version, count in per_version.items():
            assert after["versions"][version]["requests"] == count
            assert after["versions"][version]["feedback"]["count"] == outcomes[version]
        with a2.admin() as admin:  # a prediction made before the restart still takes its outcome
            late = admin.post("/v1/models/m/feedback", json={"request_id": "fleet-39", "reward": 1.0})
            assert late.status_code == 202, late.text
            assert late.json()["results"][0] == {
                "request_id": "fleet-39",
                "status": "recorded",
                "model_version": last_version,
            }


def _leader(replicas: tuple[ServerProcess, ...]) -> ServerProcess:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leaders = [r for r in replicas if "rollout_controller_leader" in r.logs()]
        if leaders:
            assert len(leaders) == 1, "two replicas claim the controller lease"
            return leaders[0]
        time.sleep(0.1)
    raise AssertionError("no replica took the rollout controller lease")


def test_the_other_replica_finishes_a_rollout_when_the_controller_dies(
    replicas: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    a, b = replicas
    _setup_model(a, tmp_path, seeds=(1, 1))  # the candidate answers like production
    plan = {"candidate": "2", "steps": [20, 50, 100], "hold_s": 1, "min_samples": 30,
            "guards": {"max_latency_ratio": None}}  # fmt: skip
    with a.admin() as admin:
        started = admin.post("/admin/models/m/rollouts", json=plan)
        assert started.status_code == 201, started.text
        rollout_id = started.json()["id"]
    leader = _leader((a, b))
    survivor = b if leader is a else a
    rng = np.random.default_rng(5)

    def drive_until(done: Any, limit_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        with survivor.client() as client, survivor.admin() as admin:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                x = rng.standard_normal((1, 8)).astype(np.float32)
                client.post("/v2/models/m/infer", json=_body(x), headers={"X-Routing-Key": f"k-{i}"})
                if i % 10 == 0:
                    state = dict(admin.get(f"/admin/models/m/rollouts/{rollout_id}").json())
                    if done(state):
                        return state
        raise AssertionError(f"rollout did not get there in {limit_s} s: {state}")

    state = drive_until(lambda s: s["step"] >= 1 or s["state"] != "running")
    assert state["state"] == "running", state
    leader.stop(signal.SIGKILL)  # mid-rollout: no lease release, no final flush
    ended = drive_until(lambda s: s["state"] != "running")
    assert ended["state"] == "promoted", ended
    assert "rollout_controller_leader" in survivor.logs()
    actors = {d.get("action") for d in ended["decisions"]}
    assert actors == {"start", "advance", "promote"}
    with survivor.admin() as admin:
        model = admin.get("/admin/models/m").json()
        assert model["aliases"]["production"] == "2" and model["traffic"] == []
        audit = admin.get("/admin/audit", params={"model": "m"}).json()
        assert [e["action"] for e in audit if e["action"].startswith("rollout.")][0] == "rollout.promote"
    with httpx.Client(base_url=survivor.base_url) as client:
        assert (
            client.post("/v2/models/m/infer", json=_body(np.zeros((1, 8), np.float32))).headers["x-model-version"]
            == "2"
        )
