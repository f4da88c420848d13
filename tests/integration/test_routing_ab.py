"""Weighted, sticky A/B routing and promotion/rollback under concurrent load, over real HTTP."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import numpy as np
import pytest

from tests.integration.conftest import MLPServer

pytestmark = pytest.mark.integration

_BODY = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": [0.5] * 784}],
}


def _version(client: httpx.Client, key: str | None = None) -> str:
    headers = {"X-Routing-Key": key} if key else {}
    reply = client.post("/v2/models/mlp/infer", json=_BODY, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Model-Version"] == reply.json()["model_version"]
    return str(reply.json()["model_version"])


def test_split_80_20_and_sticky_keys(mlp_server: MLPServer) -> None:
    server = mlp_server.server
    with server.admin() as admin:
        reply = admin.put(
            "/admin/models/mlp/traffic",
            json={"splits": [{"version": "1", "weight": 80}, {"version": "2", "weight": 20}]},
        )
        assert reply.status_code == 200, reply.text
    try:
        with server.client() as client:
            counts = Counter(_version(client, f"user-{i}") for i in range(2000))
            share_v1 = counts["1"] / 2000
            assert 0.76 <= share_v1 <= 0.84, counts
            for i in range(0, 2000, 97):  # the same key always lands on the same version
                first = _version(client, f"user-{i}")
                assert all(_version(client, f"user-{i}") == first for _ in range(3))
            with server.admin() as admin:
                stats = admin.get("/admin/models/mlp/stats").json()
            assert stats["versions"]["1"]["requests"] >= counts["1"]
            assert stats["comparison"]["control"] == "1"
    finally:
        with server.admin() as admin:
            assert admin.delete("/admin/models/mlp/traffic").status_code == 204


def test_promotion_and_rollback_under_load_drop_nothing(mlp_server: MLPServer) -> None:
    server = mlp_server.server
    stop = threading.Event()
    failures: list[str] = []
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def load() -> None:
        with server.client() as client:
            while not stop.is_set():
                try:
                    reply = client.post("/v2/models/mlp/infer", json=_BODY)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code} {reply.text}")
                else:
                    with lock:
                        seen[reply.json()["model_version"]] += 1

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        with server.admin() as admin:
            for target in ("2", "1", "2", "1"):
                reply = admin.put("/admin/models/mlp/aliases/production", json={"version": target})
                assert reply.status_code == 200, reply.text
                before = sum(seen.values())
                deadline = 200
                while sum(seen.values()) < before + 50 and deadline:
                    stop.wait(0.02)
                    deadline -= 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    assert seen["1"] > 0 and seen["2"] > 0
    assert sum(seen.values()) > 200


def test_v1_predict(mlp_server: MLPServer) -> None:
    x = np.random.default_rng(11).random((3, 784), dtype=np.float32)
    with mlp_server.server.client() as client:
        reply = client.post("/v1/models/mlp/versions/2/predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    logits = mlp_server.v2.forward(x)
    assert body["model_name"] == "mlp" and body["model_version"] == "2"
    assert body["predictions"] == [str(i) for i in logits.argmax(axis=1)]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(body["confidence_scores"], probs.max(axis=1), rtol=1e-4)
    for key in ("inference_time_ms", "preprocessing_time_ms", "postprocessing_time_ms"):
        assert body[key] >= 0
