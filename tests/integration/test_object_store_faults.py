"""Artifacts in a bucket: a damaged cache heals from the bucket, a damaged bucket object is refused and the
previous version keeps serving, and an unreachable bucket refuses registrations with 503 and writes nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.s3 import S3Server
from tests.helpers.server import free_port, run_server

pytestmark = pytest.mark.integration

BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.25] * 8}]}


def _blob(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


def _damage(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_cache_heals_and_a_damaged_bucket_object_is_refused(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.create_bucket()
    artifacts = [tmp_path / f"v{i}.onnx" for i in (1, 2, 3)]
    for seed, path in enumerate(artifacts, start=1):
        make_mlp_onnx(path, in_dim=8, hidden=4, out=3, seed=seed)
    cache = tmp_path / "data" / "artifacts"
    with run_server(tmp_path / "data", extra_env=s3_server.env(f"s3://{bucket}/m")) as server:
        v1, v2, v3 = (server.register_onnx("m", path) for path in artifacts)
        with server.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200

        # a damaged cached copy is not trusted: it is fetched again from the bucket and verified
        _damage(cache / _blob(v3["sha256"]))
        with server.client() as client:
            healed = client.post("/v2/models/m/versions/3/infer", json=BODY)
            assert healed.status_code == 200, healed.text
        assert (cache / _blob(v3["sha256"])).read_bytes() == artifacts[2].read_bytes()
        assert "artifact_cache_damaged" in server.logs()

        # the bucket's object itself damaged (and no good cached copy): refused, v1 keeps serving
        (cache / _blob(v2["sha256"])).unlink()
        good = artifacts[1].read_bytes()
        s3_server.put(bucket, f"m/{_blob(v2['sha256'])}", good[:-1] + bytes([good[-1] ^ 0xFF]))
        with server.admin() as admin:
            reply = admin.put("/admin/models/m/aliases/production", json={"version": "2"})
            assert reply.status_code == 422 and "integrity" in reply.json()["error"], reply.text
            assert admin.get("/admin/models/m").json()["aliases"] == {"production": "1"}
        assert not (cache / _blob(v2["sha256"])).exists(), "a bad download must never enter the cache"
        with server.client() as client:
            assert client.post("/v2/models/m/infer", json=BODY).json()["model_version"] == "1"
            refused = client.post("/v2/models/m/versions/2/infer", json=BODY)
            assert refused.status_code == 503 and "integrity" in refused.json()["error"]
            assert 'modelport_integrity_failures_total{model="m",version="2"}' in client.get("/metrics").text

        # the object repaired in the bucket: the promotion goes through
        s3_server.put(bucket, f"m/{_blob(v2['sha256'])}", good)
        with server.admin() as admin:
            reply = admin.put("/admin/models/m/aliases/production", json={"version": "2"})
            assert reply.status_code == 200, reply.text
        with server.client() as client:
            assert client.post("/v2/models/m/infer", json=BODY).json()["model_version"] == "2"
        assert v1["sha256"] != v2["sha256"]


def test_unreachable_bucket_refuses_registration_with_503_and_writes_nothing(tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    dead = {
        "MODELPORT_ARTIFACT_URL": "s3://nowhere/models",
        "MODELPORT_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "MODELPORT_S3_REGION": "us-east-1",
        "MODELPORT_S3_ACCESS_KEY_ID": "k",
        "MODELPORT_S3_SECRET_ACCESS_KEY": "s",
        "MODELPORT_S3_ALLOW_HTTP": "true",
    }
    with run_server(tmp_path / "data", extra_env=dead) as server, server.admin() as admin:
        with artifact.open("rb") as fh:
            reply = admin.post(
                "/admin/models/m/versions",
                files={"artifact": ("m.onnx", fh, "application/octet-stream")},
                data={"manifest": '{"backend": "onnx"}'},
            )
        assert reply.status_code == 503, reply.text
        assert "object store s3://nowhere/models" in reply.json()["error"] and reply.headers["Retry-After"]
        assert admin.get("/admin/models/m/versions").status_code == 404
        assert admin.get("/admin/models").json() == []
        assert admin.get("/admin/audit").json() == []  # nothing was registered, so nothing was audited
        assert server.process.poll() is None
