"""The HTTP edges and the data plane, in process: a real SQLite registry, real ONNX engines, the app that
``create_app`` builds, driven over ASGI.

- the routing rule: for a model whose split and production alias differ, metadata, readiness and infer
  name the same version for the same routing key;
- one executable path: the Litestar handlers of the inference routes (the app mounted without the lean
  wrapper) decode binary tensors and gzip bodies exactly like the lean path, under the same body cap;
- the observer hook sees every call once, served or refused.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http._infer_result import InferResult
from tritonclient.http._utils import _get_inference_request

from registry_db.records import Principal
from service.app import create_app
from service.asgi import ModelportASGI
from service.context import Services
from service.inference.dataplane import InferenceEvent
from service.inference.routing import choose_version
from service.management.manifest import VersionManifest
from service.management.registration import register_version
from service.settings import Settings
from tests.helpers.onnx_models import make_mlp_onnx

ADMIN = Principal(name="test", scopes=frozenset({"admin", "read"}))
TOKEN = "edge-test-admin-token-0123456789"
X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8


class Recorder:
    def __init__(self) -> None:
        self.events: list[InferenceEvent] = []

    def observe(self, event: InferenceEvent) -> None:
        self.events.append(event)


@pytest.fixture
async def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelportASGI]:
    """Versions 1-3 of ``m`` (distinct MLPs); production -> 3, split 1=30 / 2=70; ``solo`` with production 1."""
    # the server's logging setup caches loggers for the whole process: keep the test process's own
    monkeypatch.setattr("service.app.configure_logging", lambda *args, **kwargs: None)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        device="cpu",
        max_body_bytes=64 * 1024,
        registry_poll_interval_s=60,
        admin_token=TOKEN,
    )
    services = await Services.open(settings, migrate=True)
    try:
        for model, seeds in (("m", (1, 2, 3)), ("solo", (4,))):
            for seed in seeds:
                path = tmp_path / f"{model}-{seed}.onnx"
                make_mlp_onnx(path, in_dim=4, hidden=8, out=3, seed=seed, input_name="x", output_name="y")
                await register_version(
                    services, model, artifact=path, manifest=VersionManifest(backend="onnx"), principal=ADMIN
                )
        echo = _string_identity(tmp_path / "echo.onnx")
        await register_version(
            services, "echo", artifact=echo, manifest=VersionManifest(backend="onnx"), principal=ADMIN
        )
        await services.registry.routing.set_alias("echo", "production", "1", actor="test")
        await services.registry.routing.set_alias("m", "production", "3", actor="test")
        await services.registry.routing.set_traffic("m", [("1", 30), ("2", 70)], actor="test")
        await services.registry.routing.set_alias("solo", "production", "1", actor="test")
    finally:
        await services.close()
    wrapper = create_app(settings)
    await wrapper.runtime.start()
    try:
        yield wrapper
    finally:
        await wrapper.runtime.stop()


def _string_identity(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("text", TensorProto.STRING, [None])
    y = helper.make_tensor_value_info("same", TensorProto.STRING, [None])
    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["same"])], "echo", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _client(asgi: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1")


def _binary_request(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    wanted = triton.InferRequestedOutput("y", binary_data=True)
    body, header_length = _get_inference_request([tensor], "req-1", [wanted], 0, False, False, 0, None, None)
    body = body if isinstance(body, bytes) else body.encode()
    return body, {"Inference-Header-Content-Length": str(header_length), "Content-Type": "application/octet-stream"}


def _json_request(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


async def test_metadata_ready_and_infer_name_the_same_version_for_a_key(app: ModelportASGI) -> None:
    seen: set[str] = set()
    async with _client(app) as client:
        for i in range(40):
            key = {"X-Routing-Key": f"user-{i}"}
            meta = await client.get("/v2/models/m", headers=key)
            ready = await client.get("/v2/models/m/ready", headers=key)
            infer = await client.post("/v2/models/m/infer", json=_json_request(X), headers=key)
            predict = await client.post("/v1/models/m/predict", json={"inputs": X.tolist()}, headers=key)
            assert meta.status_code == ready.status_code == infer.status_code == predict.status_code == 200
            version = infer.json()["model_version"]
            assert meta.headers["x-model-version"] == ready.headers["x-model-version"] == version
            assert infer.headers["x-model-version"] == predict.json()["model_version"] == version
            seen.add(version)
        assert seen == {"1", "2"}  # the split decides, not production ("3")
        keyless = await client.get("/v2/models/m")
        assert keyless.headers["x-model-version"] == "2"  # the heaviest arm
        assert keyless.json()["versions"] == ["1", "2", "3"]
        explicit = await client.get("/v2/models/m/versions/3")
        assert explicit.status_code == 200 and explicit.headers["x-model-version"] == "3"


@pytest.mark.parametrize("mounted", ["lean", "litestar"])
async def test_both_paths_run_the_same_edge(app: ModelportASGI, mounted: str) -> None:
    """Binary tensors, gzip bodies, the body cap and the error shape, through the lean path and through the
    Litestar handlers alone (which the lean path bypasses in production)."""
    asgi = app if mounted == "lean" else app.inner
    body, headers = _binary_request(X)
    async with _client(asgi) as client:
        binary = await client.post("/v2/models/solo/infer", content=body, headers=headers)
        assert binary.status_code == 200, binary.text
        result = InferResult.from_response_body(
            binary.content, header_length=int(binary.headers["inference-header-content-length"])
        )
        assert result.get_response()["model_version"] == "1" and result.as_numpy("y").shape == (2, 3)

        packed = gzip.compress(json.dumps(_json_request(X)).encode())
        zipped = await client.post(
            "/v2/models/solo/versions/1/infer", content=packed, headers={"Content-Encoding": "gzip"}
        )
        assert zipped.status_code == 200, zipped.text
        np.testing.assert_allclose(zipped.json()["outputs"][0]["data"], result.as_numpy("y").ravel(), rtol=1e-6)

        predict = await client.post(
            "/v1/models/solo/predict",
            content=gzip.compress(json.dumps({"inputs": X.tolist()}).encode()),
            headers={"Content-Encoding": "gzip"},
        )
        assert predict.status_code == 200 and len(predict.json()["predictions"]) == 2

        huge = await client.post("/v2/models/solo/infer", content=b"[" * (65 * 1024))
        assert huge.status_code == 413 and "exceeds the limit" in huge.json()["error"]
        shape = await client.post("/v2/models/solo/infer", json=_json_request(np.zeros((1, 5), np.float32)))
        assert shape.status_code == 400 and shape.headers["x-model-version"] == "1"
        assert "expected shape" in shape.json()["error"]


async def test_both_paths_compress_large_infer_replies_only(app: ModelportASGI) -> None:
    """``Accept-Encoding: gzip`` (issue 16 item 6), through the lean path and the Litestar handlers alone: the
    infer reply is gzip with its uncompressed JSON length in ``Inference-Header-Content-Length``; a tiny reply, an
    error and metadata stay plain."""
    words = [f"word {i} " * 40 for i in range(8)]  # 8 rows of ~300 bytes: a reply of a few KiB
    tensor = triton.InferInput("text", [8], "BYTES")
    tensor.set_data_from_numpy(np.array([w.encode() for w in words], dtype=object), binary_data=True)
    body, header_length = _get_inference_request(
        [tensor], "", [triton.InferRequestedOutput("same", binary_data=True)], 0, False, False, 0, None, None
    )
    as_json = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [8], "data": words}]}
    for asgi in (app, app.inner):
        async with _client(asgi) as client:
            binary = await client.post(
                "/v2/models/echo/infer",
                content=body,
                headers={"Inference-Header-Content-Length": str(header_length), "Accept-Encoding": "gzip"},
            )
            deflated = await client.post("/v2/models/echo/infer", json=as_json, headers={"Accept-Encoding": "deflate"})
            tiny = await client.post(
                "/v2/models/solo/infer", json=_json_request(X), headers={"Accept-Encoding": "gzip"}
            )
            error = await client.post("/v2/models/echo/infer", json={"inputs": as_json["inputs"] * 2})
            meta = await client.get("/v2/models/echo", headers={"Accept-Encoding": "gzip"})
        assert binary.status_code == deflated.status_code == 200, binary.text
        assert binary.headers["content-encoding"] == "gzip" and deflated.headers["content-encoding"] == "deflate"
        assert int(binary.headers["content-length"]) < len(binary.content) / 4  # httpx inflated it
        result = InferResult.from_response_body(
            binary.content, header_length=int(binary.headers["inference-header-content-length"])
        )
        assert [w.decode() for w in result.as_numpy("same").tolist()] == words == deflated.json()["outputs"][0]["data"]
        assert tiny.status_code == 200 and error.status_code == 400 and meta.status_code == 200
        for plain in (tiny, error, meta):
            assert "content-encoding" not in plain.headers


async def test_openapi_documents_the_inference_bodies(app: ModelportASGI) -> None:
    async with _client(app) as client:
        schema = (await client.get("/schema/openapi.json")).json()
    infer = schema["paths"]["/v2/models/{model_name}/infer"]["post"]
    predict = schema["paths"]["/v1/models/{model_name}/predict"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferRequest")
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
    assert infer["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferResponse")


async def test_every_call_reaches_the_observers_once(app: ModelportASGI) -> None:
    recorder = Recorder()
    app.runtime.dataplane._observers += (recorder,)  # noqa: SLF001 - attach a test observer to the hook
    async with _client(app) as client:
        await client.post("/v2/models/solo/infer", json=_json_request(X), headers={"X-Request-ID": "ok-1"})
        await client.post("/v2/models/solo/infer", content=b"{not json", headers={"X-Request-ID": "bad-1"})
        await client.post("/v2/models/nope/infer", json=_json_request(X), headers={"X-Request-ID": "unknown-1"})
        await client.post("/v1/models/solo/predict", json={"inputs": X.tolist()}, headers={"X-Request-ID": "v1-1"})
    by_id = {event.call.request_id: event for event in recorder.events}
    assert len(recorder.events) == len(by_id) == 4
    ok, bad, unknown, v1 = by_id["ok-1"], by_id["bad-1"], by_id["unknown-1"], by_id["v1-1"]
    assert (ok.status, ok.call.served_version, ok.call.protocol) == (200, "1", "v2_infer")
    assert ok.result is not None and ok.result.outputs["y"].shape == (2, 3) and ok.duration_s > 0
    assert (bad.status, bad.call.served_version, bad.result) == (400, None, None)
    assert (unknown.status, unknown.call.served_version) == (404, None)
    assert v1.call.protocol == "v1_predict" and v1.result is not None and v1.result.postprocessed is not None
    stats = app.runtime.experiments.stats.totals("solo")
    assert stats["1"].requests == 2 and stats["1"].errors == 0


async def test_stats_count_only_what_the_version_did(app: ModelportASGI) -> None:
    """A shape error after routing and a queue refusal are not the version's requests or errors."""
    from service.errors import Overloaded
    from service.inference.dataplane import InferCall

    async with _client(app) as client:
        assert (await client.post("/v2/models/solo/infer", json=_json_request(X))).status_code == 200
        bad = await client.post("/v2/models/solo/infer", json=_json_request(np.zeros((1, 5), np.float32)))
        assert bad.status_code == 400
    busy = InferCall("solo", "1", "v2_infer", "busy-1", ())
    busy.served_version = "1"
    app.runtime.dataplane.reject(busy, Overloaded("queue full"))
    figures = app.runtime.experiments.stats.totals("solo")["1"].summary()
    assert (figures["requests"], figures["errors"], figures["error_rate"]) == (1, 0, 0.0)
    assert (figures["client_errors"], figures["rejected"]) == (1, 1)
    assert figures["latency_ms"]["count"] == 1


async def test_readiness_and_unknown_names(app: ModelportASGI) -> None:
    async with _client(app) as client:
        assert (await client.get("/v2/health/ready")).json()["ready"] is True
        assert (await client.get("/v2/models/nope")).status_code == 404
        assert (await client.get("/v2/models/m/versions/9/ready")).status_code == 404
        assert (await client.get("/v2/models/m/ready")).headers["x-model-version"] == "2"
        app.runtime.begin_drain()
        drained = await client.get("/v2/health/ready")
        assert drained.status_code == 503 and drained.headers["retry-after"] == "1"


async def test_an_empty_upload_is_the_clients_mistake(app: ModelportASGI) -> None:
    async with _client(app) as client:
        reply = await client.post(
            "/admin/models/solo/versions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            files={"artifact": ("empty.onnx", b""), "manifest": (None, '{"backend": "onnx"}')},
        )
    assert reply.status_code == 400 and reply.json() == {"error": "artifact is empty"}


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_deeply_nested_admin_json_is_a_client_error(app: ModelportASGI, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deep = b'{"name": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # under the 64 KiB cap of this app
    async with _client(app) as client:
        reply = await client.post("/admin/keys", content=deep, headers={**headers, "Content-Type": "application/json"})
    assert reply.status_code in (400, 401), reply.text
    assert "error" in reply.json()


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("not-a-key", 401)])
async def test_an_admin_body_is_not_read_before_the_key_is_checked(
    app: ModelportASGI, token: str | None, status: int
) -> None:
    """An unauthenticated upload is refused at its headers: not one chunk of its body is received."""
    chunks_read = 0

    async def receive() -> dict[str, Any]:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": chunks_read < 512}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"multipart/form-data; boundary=b")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/admin/models/solo/versions",
        "raw_path": b"",
        "headers": headers,
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == status
    assert chunks_read == 0


async def test_a_read_key_cannot_start_an_upload(app: ModelportASGI) -> None:
    async with _client(app) as client:
        created = await client.post(
            "/admin/keys", json={"name": "reader", "scopes": ["read"]}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        reader = created.json()["token"]
        listed = await client.get("/admin/models", headers={"Authorization": f"Bearer {reader}"})
        upload = await client.post(
            "/admin/models/solo/versions",
            headers={"Authorization": f"Bearer {reader}"},
            files={"artifact": ("m.onnx", b"x" * 1024), "manifest": (None, '{"backend": "onnx"}')},
        )
    assert listed.status_code == 200
    assert upload.status_code == 403 and "lacks the 'admin' scope" in upload.json()["error"]


async def test_bytes_tensors_come_back_as_sent_json_and_binary(app: ModelportASGI) -> None:
    """issue 16: BYTES through an ONNX string identity used to come back as "b'abc'"."""
    words = ["abc", "dög", ""]
    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": words}]}
    tensor = triton.InferInput("text", [3], "BYTES")
    tensor.set_data_from_numpy(np.array([w.encode() for w in words], dtype=object), binary_data=True)
    body, header_length = _get_inference_request(
        [tensor], "", [triton.InferRequestedOutput("same", binary_data=True)], 0, False, False, 0, None, None
    )
    async with _client(app) as client:
        as_json = await client.post("/v2/models/echo/infer", json=request)
        binary = await client.post(
            "/v2/models/echo/infer", content=body, headers={"Inference-Header-Content-Length": str(header_length)}
        )
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["outputs"][0]["data"] == words
    assert binary.status_code == 200, binary.text
    result = InferResult.from_response_body(
        binary.content, header_length=int(binary.headers["inference-header-content-length"])
    )
    assert [w.decode() for w in result.as_numpy("same").tolist()] == words


async def test_a_model_that_parses_numeric_strings_registers_and_serves(app: ModelportASGI, tmp_path: Path) -> None:
    """issue 16: Triton's simple_string shape (STRING -> Cast INT32) could not be registered: the smoke test fed
    empty strings and the Cast threw."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("text", TensorProto.STRING, [None])
    y = helper.make_tensor_value_info("number", TensorProto.INT32, [None])
    cast = helper.make_node("Cast", ["text"], ["number"], to=TensorProto.INT32)
    model = helper.make_model(helper.make_graph([cast], "parse", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "parse.onnx"
    onnx.save_model(model, str(path))
    record = await register_version(
        app.runtime.services, "parse", artifact=path, manifest=VersionManifest(backend="onnx"), principal=ADMIN
    )
    await app.runtime.operations.registered()  # what the admin upload route does after registering
    async with _client(app) as client:
        reply = await client.post(
            f"/v2/models/parse/versions/{record.version}/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["1", "22", "-3"]}]},
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [1, 22, -3]


async def _raw_infer(app: ModelportASGI, path: str, extra: list[tuple[bytes, bytes]] | None = None) -> tuple[int, int]:
    """POST an infer body through the ASGI app: the status, and how many body chunks the app received."""
    body = json.dumps(_json_request(X)).encode()
    chunks_read = 0

    async def receive() -> dict[str, Any]:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": body, "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent[0]["status"], chunks_read


async def test_a_full_queue_is_refused_before_the_body_is_read(app: ModelportASGI) -> None:
    """Issue 12 item 6: with the target's queue full the 503 comes from the headers alone, counted as rejected."""
    pool = app.runtime.pool
    for model, version in (("solo", "1"), ("m", "1")):
        served = pool.get_loaded(model, version)
        assert served is not None
        served.batcher._max_queue = 0  # every submit would be refused: the queue is "full"
        served.batcher._track_full()  # as the batcher does whenever its queue reaches the bound
    assert pool.pressure.full_queues == 2
    assert await _raw_infer(app, "/v2/models/solo/infer") == (503, 0)
    assert await _raw_infer(app, "/v1/models/solo/versions/1/predict") == (503, 0)
    assert app.runtime.experiments.stats.totals("solo")["1"].rejected == 2
    # a split with one arm full: an unkeyed call may land on the other, so it is let through to the batcher
    status, chunks = await _raw_infer(app, "/v2/models/m/infer")
    assert chunks == 1 and status in (200, 503)
    key = next(k for k in map(str, range(1000)) if choose_version(_routing(app, "m"), k, model="m") == "1")
    assert await _raw_infer(app, "/v2/models/m/infer", [(b"x-routing-key", key.encode())]) == (503, 0)
    assert (await _raw_infer(app, "/v2/models/m/versions/2/infer"))[0] == 200


def _routing(app: ModelportASGI, model: str) -> Any:
    routing = app.runtime.routing.model_routing(model)
    assert routing is not None
    return routing


async def test_an_upload_says_it_created_the_model_and_refuses_bytes_it_already_has(
    app: ModelportASGI, tmp_path: Path
) -> None:
    """docs/api.md "Registering": an upload to a new name creates the model and says so (``model_created``);
    the same bytes again are a 409 naming the version that has them, unless ``?allow_duplicate=true``."""
    path = tmp_path / "fresh.onnx"
    make_mlp_onnx(path, in_dim=4, hidden=8, out=3, seed=9)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def upload(model: str, query: str = "") -> httpx.Response:
        files = {"artifact": ("m.onnx", path.read_bytes()), "manifest": (None, '{"backend": "onnx"}')}
        return await client.post(f"/admin/models/{model}/versions{query}", headers=headers, files=files)

    async with _client(app) as client:
        first = await upload("fresh")
        assert first.status_code == 201, first.text
        assert first.json()["model_created"] is True and first.json()["version"] == "1"
        again = await upload("fresh")
        assert again.status_code == 409, again.text
        body = again.json()
        assert body["existing_version"] == "1" and body["sha256"] == first.json()["sha256"]
        assert "already has these bytes as version '1'" in body["error"] and "allow_duplicate" in body["error"]
        forced = await upload("fresh", "?allow_duplicate=true")
        assert forced.status_code == 201, forced.text
        assert forced.json()["version"] == "2" and forced.json()["model_created"] is False
        elsewhere = await upload("solo")  # the same bytes under another model are that model's business
        assert elsewhere.status_code == 201 and elsewhere.json()["model_created"] is False
        versions = await client.get("/admin/models/fresh/versions", headers=headers)
        assert [v["version"] for v in versions.json()] == ["1", "2"] and "model_created" not in versions.json()[0]
