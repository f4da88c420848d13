"""Two ``modelport serve`` replicas on one PostgreSQL database, sharing artifacts through a directory or a bucket.

``shared-dir``: both replicas mount one artifact directory. ``s3``: each replica has only its own cache
directory and the artifacts live in an S3-compatible bucket (moto's server over HTTP), so a version uploaded
through A reaches B only through the bucket.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.s3 import S3Server
from tests.helpers.server import run_server

# exclusive: asserts a propagation time (2 s) that needs the machine's cores to itself under pytest-xdist
pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.exclusive]

BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}


@pytest.mark.parametrize("artifacts", ["shared-dir", "s3"])
def test_two_replicas_share_registry_and_routing(
    artifacts: str, fresh_pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    shared = {"MODELPORT_DATABASE_URL": fresh_pg_url, "MODELPORT_REGISTRY_POLL_INTERVAL_S": "1.0"}
    if artifacts == "shared-dir":
        shared["MODELPORT_ARTIFACT_DIR"] = str(tmp_path / "artifacts")
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.create_bucket()
        shared.update(s3.env(f"s3://{bucket}/replicas"))
    import asyncio

    from registry_db.migrate import upgrade_async

    asyncio.run(upgrade_async(fresh_pg_url))  # the migration Job's role
    a1, a2 = tmp_path / "v1.onnx", tmp_path / "v2.onnx"
    make_mlp_onnx(a1, in_dim=8, hidden=4, out=3, seed=1)
    make_mlp_onnx(a2, in_dim=8, hidden=4, out=3, seed=2)
    with run_server(tmp_path / "a", extra_env=shared) as rep_a, run_server(tmp_path / "b", extra_env=shared) as rep_b:
        rep_a.register_onnx("m", a1)
        v2 = rep_a.register_onnx("m", a2)
        with rep_b.client() as client_b:  # uploaded through A, served by B
            reply = client_b.post("/v2/models/m/versions/2/infer", json=BODY)
            assert reply.status_code == 200, reply.text
        if artifacts == "s3":
            blob_path = f"sha256/{v2['sha256'][:2]}/{v2['sha256']}"
            cached_on_b = tmp_path / "b" / "artifacts" / blob_path
            assert cached_on_b.read_bytes() == a2.read_bytes(), "B should have fetched v2 from the bucket"
            assert not (tmp_path / "b" / "artifacts" / "sha256").samefile(tmp_path / "a" / "artifacts" / "sha256")
            assert s3.get(bucket, f"replicas/{blob_path}") == a2.read_bytes()
            assert "artifact_fetched" in rep_b.logs()
            with rep_b.client() as client_b:
                assert 'modelport_artifact_cache_events_total{event="fetched"}' in client_b.get("/metrics").text

        with rep_a.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
            started = time.monotonic()
            assert admin.put("/admin/models/m/aliases/production", json={"version": "2"}).status_code == 200
        with rep_b.client() as client_b:
            while True:
                served = client_b.post("/v2/models/m/infer", json=BODY)
                if served.status_code == 200 and served.json()["model_version"] == "2":
                    break
                assert time.monotonic() - started < 2.0, f"promotion not seen on B after 2 s: {served.text}"
                time.sleep(0.02)
        propagation = time.monotonic() - started
        print(f"\n[{artifacts}] promotion through A in effect on B after {propagation * 1000:.0f} ms")
        assert propagation < 2.0

        with rep_a.admin() as admin:
            reply = admin.put(
                "/admin/models/m/traffic",
                json={"splits": [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]},
            )
            assert reply.status_code == 200
        with rep_a.client() as ca, rep_b.client() as cb:
            # A applied the split before answering; wait (bounded) until B has applied the same generation
            generation = ca.get("/v2/health/ready").json()["generation"]
            deadline = time.monotonic() + 5.0
            while cb.get("/v2/health/ready").json()["generation"] < generation:
                assert time.monotonic() < deadline, "B did not apply the split within 5 s"
                time.sleep(0.02)
            for i in range(200):
                headers = {"X-Routing-Key": f"customer-{i}"}
                va = ca.post("/v2/models/m/infer", json=BODY, headers=headers).json()["model_version"]
                vb = cb.post("/v2/models/m/infer", json=BODY, headers=headers).json()["model_version"]
                assert va == vb, f"key customer-{i}: A served {va}, B served {vb}"
