"""Property test: hostile inference bodies sent to the real app in process are answered below 500 (issue 12).

The codec-level properties (``tests/unit/codecs/test_hostile_properties``) stop before the engine; here the same
generators go through everything a request meets: the lean ASGI path, the body budget, admission, routing, the
version's validator, the batcher, a real ONNX Runtime engine, the response encoder and the statistics. The model
takes the four inputs the generators aim at (``t0`` FP32 ``[-1, 2]``, ``t1`` BYTES ``[-1]``, ``t2`` INT64
``[-1, -1]``, ``t3`` BOOL ``[-1]``) and returns each unchanged, so decoded values reach the engine and come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_db.records import Principal
from service.context import Services
from service.management.manifest import VersionManifest
from service.management.registration import register_version
from service.settings import Settings
from tests.helpers.hostile import Wire, instances, render, v2_requests
from tests.helpers.in_process import LoopClient, serve_in_process

ADMIN = Principal(name="test", scopes=frozenset({"admin", "read"}))
THROUGH_THE_APP = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _identity_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    declared: list[tuple[str, int, list[int | None]]] = [
        ("t0", TensorProto.FLOAT, [None, 2]),
        ("t1", TensorProto.STRING, [None]),
        ("t2", TensorProto.INT64, [None, None]),
        ("t3", TensorProto.BOOL, [None]),
    ]
    inputs = [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in declared]
    outputs = [helper.make_tensor_value_info(f"y{name[1]}", kind, shape) for name, kind, shape in declared]
    nodes = [helper.make_node("Identity", [name], [f"y{name[1]}"]) for name, _, _ in declared]
    graph = helper.make_graph(nodes, "identity4", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopClient]:
    """Model ``m`` version 1 (the identity model), production."""
    data = tmp_path_factory.mktemp("hostile-inference")
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data,
        device="cpu",
        max_body_bytes=1 << 20,
        max_batch_size=8,
        registry_poll_interval_s=60,
    )

    async def prepare() -> None:
        services = await Services.open(config, migrate=True)
        try:
            artifact = _identity_model(data / "identity4.onnx")
            await register_version(
                services, "m", artifact=artifact, manifest=VersionManifest(backend="onnx"), principal=ADMIN
            )
            await services.registry.routing.set_alias("m", "production", "1", actor="test")
        finally:
            await services.close()

    asyncio.run(prepare())
    with serve_in_process(config) as client:
        yield client


def post(app: LoopClient, path: str, wire: Wire) -> httpx.Response:
    return app.request("POST", path, wire.body, wire.headers)


def _answered(reply: httpx.Response, wire: Wire) -> None:
    assert reply.status_code < 500 or reply.status_code == 501, (wire, reply.status_code, reply.text[:500])
    if reply.status_code != 200:
        assert isinstance(msgspec.json.decode(reply.content)["error"], str), reply.text[:500]


@THROUGH_THE_APP
@given(wire=v2_requests(), route=st.sampled_from(["/v2/models/m/infer", "/v2/models/m/versions/1/infer"]))
def test_hostile_v2_requests_through_the_app(app: LoopClient, wire: Wire, route: str) -> None:
    _answered(post(app, route, wire), wire)


@THROUGH_THE_APP
@given(document=instances, gzip_it=st.booleans())
def test_hostile_v1_requests_through_the_app(app: LoopClient, document: object, gzip_it: bool) -> None:
    import gzip

    body = render({"inputs": document}).encode("utf-8", "surrogateescape")
    headers = {"content-type": "application/json"}
    if gzip_it:
        body, headers["content-encoding"] = gzip.compress(body), "gzip"
    wire = Wire(body, headers)
    _answered(post(app, "/v1/models/m/predict", wire), wire)


def test_a_valid_request_is_served(app: LoopClient) -> None:
    """The generators' premise: the model serves what they aim at."""
    body = {
        "inputs": [
            {"name": "t0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
            {"name": "t1", "datatype": "BYTES", "shape": [1], "data": ["a"]},
            {"name": "t2", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 3]},
            {"name": "t3", "datatype": "BOOL", "shape": [1], "data": [True]},
        ]
    }
    reply = post(app, "/v2/models/m/infer", Wire(msgspec.json.encode(body), {}))
    assert reply.status_code == 200, reply.text
    assert {o["name"] for o in reply.json()["outputs"]} == {"y0", "y1", "y2", "y3"}
