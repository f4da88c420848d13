"""Admin auth refusals leave nothing changed; every bad input gets the right 4xx; the server stays healthy."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import MLPServer

pytestmark = pytest.mark.integration


def _state(server: MLPServer) -> tuple[object, object]:
    with server.server.admin() as admin:
        model = admin.get("/admin/models/mlp").json()
        audit = admin.get("/admin/audit", params={"limit": 1000}).json()
    return model, len(audit)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"}])
def test_admin_refuses_without_valid_key(mlp_server: MLPServer, headers: dict[str, str]) -> None:
    before = _state(mlp_server)
    with mlp_server.server.client(headers=headers) as client:
        assert client.put("/admin/models/mlp/aliases/production", json={"version": "2"}).status_code == 401
        assert (
            client.put("/admin/models/mlp/traffic", json={"splits": [{"version": "1", "weight": 100}]}).status_code
            == 401
        )
        assert client.delete("/admin/models/mlp/versions/2").status_code == 401
        assert client.post("/admin/models", json={"name": "evil"}).status_code == 401
        assert client.get("/admin/models").status_code == 401
    assert _state(mlp_server) == before


def test_read_key_cannot_change_anything(mlp_server: MLPServer) -> None:
    with mlp_server.server.admin() as admin:
        reply = admin.post("/admin/keys", json={"name": "reader", "scopes": ["read"]})
    assert reply.status_code == 201, reply.text
    token = reply.json()["token"]
    before = _state(mlp_server)
    with mlp_server.server.client(headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/admin/models").status_code == 200
        assert client.put("/admin/models/mlp/aliases/production", json={"version": "2"}).status_code == 403
        assert client.delete("/admin/models/mlp/traffic").status_code == 403
        assert client.post("/admin/models", json={"name": "evil"}).status_code == 403
    assert _state(mlp_server) == before


def _infer(body: object) -> bytes:
    return json.dumps(body).encode()


GOOD = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 784}]}


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "needle"),
    [
        ("/v2/models/mlp/infer", b"{not json", {}, 400, "JSON"),
        (
            "/v2/models/mlp/infer",
            _infer({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 783], "data": [0.0] * 783}]}),
            {},
            400,
            "784",
        ),
        (
            "/v2/models/mlp/infer",
            _infer({"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 784], "data": [0] * 784}]}),
            {},
            400,
            "FP32",
        ),
        (
            "/v2/models/mlp/infer",
            _infer({"inputs": [{"name": "wrong", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 784}]}),
            {},
            400,
            "input",
        ),
        (
            "/v2/models/mlp/infer",
            _infer({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 10}]}),
            {},
            400,
            "784",
        ),
        (
            "/v2/models/mlp/infer",
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1], ' b'"data": [NaN]}]}',
            {},
            400,
            "",
        ),
        (
            "/v2/models/mlp/infer",
            _infer({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": [1e39] * 784}]}),
            {},
            400,
            "",
        ),
        ("/v2/models/mlp/infer", _infer(GOOD), {"Content-Type": "application/python-pickle"}, 415, "Content-Type"),
        ("/v2/models/mlp/infer", _infer(GOOD), {"Content-Encoding": "br"}, 415, ""),
        ("/v2/models/mlp/infer", _infer(GOOD) + b"\x00\x01", {}, 400, "Inference-Header-Content-Length"),
        ("/v2/models/mlp/infer", _infer(GOOD), {"Inference-Header-Content-Length": "99999"}, 400, ""),
        ("/v2/models/nope/infer", _infer(GOOD), {}, 404, "unknown model"),
        ("/v2/models/mlp/versions/9/infer", _infer(GOOD), {}, 404, "9"),
        ("/v1/models/mlp/predict", b'{"inputs": [[1, 2, 3]]}', {}, 400, "784"),
        ("/v1/models/mlp/predict", b'{"inputs": "x"}', {}, 400, ""),
        ("/v2/nothing-here", b"", {}, 404, ""),
    ],
)
def test_bad_inputs(
    mlp_server: MLPServer, path: str, content: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    with mlp_server.server.client() as client:
        reply = client.post(path, content=content, headers=headers)
        assert reply.status_code == status, reply.text
        assert needle in reply.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200


def test_gzip_request_and_oversize_body(mlp_server: MLPServer) -> None:
    with mlp_server.server.client() as client:
        reply = client.post(
            "/v2/models/mlp/infer", content=gzip.compress(_infer(GOOD)), headers={"Content-Encoding": "gzip"}
        )
        assert reply.status_code == 200, reply.text
        huge = b"[" + b"0.0," * (20 * 1024 * 1024) + b"0.0]"
        reply = client.post("/v2/models/mlp/infer", content=huge)
        assert reply.status_code == 413
        assert client.get("/v2/health/live").status_code == 200


def test_openapi_lists_every_route(mlp_server: MLPServer) -> None:
    with mlp_server.server.client() as client:
        doc = client.get("/schema/openapi.json").json()
        assert client.get("/schema/swagger").status_code == 200
        assert client.get("/schema/redoc").status_code == 200
        assert client.get("/metrics").status_code == 200
    paths = set(doc["paths"])
    expected = {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/versions/{version}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/versions/{version}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{version}/infer",
        "/v1/models/{model_name}/predict",
        "/v1/models/{model_name}/versions/{version}/predict",
        "/admin/models",
        "/admin/models/{model_name}",
        "/admin/models/{model_name}/versions",
        "/admin/models/{model_name}/versions/{version}",
        "/admin/models/{model_name}/aliases/{alias}",
        "/admin/models/{model_name}/traffic",
        "/admin/models/{model_name}/stats",
        "/admin/audit",
        "/metrics",
    }
    assert expected <= paths, expected - paths


def _upload(admin: httpx.Client, artifact: Path, manifest: str) -> httpx.Response:
    with artifact.open("rb") as fh:
        files = {"artifact": (artifact.name, fh, "application/octet-stream")}
        return admin.post("/admin/models/mlp/versions", files=files, data={"manifest": manifest})


@pytest.mark.parametrize(
    ("manifest", "needle"),
    [
        ('{"backend": "onnx", "url": "http://x"}', "invalid manifest: url: Extra inputs are not permitted"),
        (
            json.dumps({"backend": "onnx", "signature": {"inputs": [{"name": "x", "datatype": "F32", "shape": [1]}]}}),
            "invalid manifest: signature.inputs.0.datatype: unknown V2 datatype 'F32'",
        ),
        ('{"backend": "onnx", "version": "../2"}', "invalid manifest: version: invalid version label '../2'"),
        ('{"backend": "onnx"', "manifest is not valid JSON"),
    ],
)
def test_bad_manifests_name_the_field(mlp_server: MLPServer, manifest: str, needle: str) -> None:
    before = _state(mlp_server)
    with mlp_server.server.admin() as admin:
        reply = _upload(admin, mlp_server.artifact_v1, manifest)
    assert reply.status_code == 400 and needle in reply.json()["error"], reply.text
    assert _state(mlp_server) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("PUT", "/admin/models/mlp/traffic", {"splits": [{"version": "1", "weight": 60}]}, "sum to 100, got 60"),
        (
            "PUT",
            "/admin/models/mlp/traffic",
            {"splits": [{"version": "1", "weight": 50}, {"version": "1", "weight": 50}]},
            "appears twice",
        ),
        ("PUT", "/admin/models/mlp/traffic", {"splits": [{"version": "1", "weight": "100"}]}, "splits.0.weight"),
        ("PUT", "/admin/models/mlp/aliases/production", {"version": "2", "extra": 1}, '"key":"extra"'),
        ("PUT", "/admin/models/mlp/aliases/production", {"version": "a b"}, "invalid version label"),
        ("POST", "/admin/models", {"name": "../etc"}, "invalid model name"),
        ("POST", "/admin/keys", {"name": "k", "scopes": ["root"]}, "scopes must be a non-empty subset"),
    ],
)
def test_bad_admin_bodies_are_400_naming_the_problem(
    mlp_server: MLPServer, method: str, path: str, body: dict[str, object], needle: str
) -> None:
    before = _state(mlp_server)
    with mlp_server.server.admin() as admin:
        reply = admin.request(method, path, json=body)
    assert reply.status_code == 400 and needle in reply.json()["error"], reply.text
    assert set(reply.json()) == {"error"}
    assert _state(mlp_server) == before
