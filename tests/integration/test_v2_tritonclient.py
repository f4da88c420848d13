"""The official tritonclient[http] against a real modelport process, binary data on and off, replies compressed
or not (tritonclient's ``response_compression_algorithm``, and raw ``Accept-Encoding`` checks on the wire)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._infer_result import InferResult
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import MLPServer

pytestmark = pytest.mark.integration


@pytest.fixture
def triton(mlp_server: MLPServer) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(url=mlp_server.server.base_url.removeprefix("http://"))
    yield client
    client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_infer_matches_onnxruntime(
    triton: httpclient.InferenceServerClient, mlp_server: MLPServer, binary: bool
) -> None:
    import onnxruntime as ort

    x = np.random.default_rng(7).random((4, 784), dtype=np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary)
    result = triton.infer("mlp", [inp], model_version="2", outputs=[out], request_id="req-42")
    got = result.as_numpy("logits")
    session = ort.InferenceSession(str(mlp_server.artifact_v2), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x})[0]
    assert got.shape == (4, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    response = result.get_response()
    assert response["model_name"] == "mlp"
    assert response["model_version"] == "2"
    assert response["id"] == "req-42"


def test_unversioned_follows_production(triton: httpclient.InferenceServerClient, mlp_server: MLPServer) -> None:
    x = np.random.default_rng(3).random((2, 784), dtype=np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = triton.infer("mlp", [inp])
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(result.as_numpy("logits"), mlp_server.v1.forward(x), rtol=1e-4, atol=1e-4)


def test_metadata_and_health(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("mlp")
    assert triton.is_model_ready("mlp", "2")
    meta = triton.get_model_metadata("mlp")
    assert meta["name"] == "mlp"
    assert set(meta["versions"]) == {"1", "2"}
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    server_meta = triton.get_server_metadata()
    assert "binary_tensor_data" in server_meta["extensions"]


def test_errors_reach_the_client_as_messages(triton: httpclient.InferenceServerClient) -> None:
    x = np.zeros((1, 783), dtype=np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as bad_shape:
        triton.infer("mlp", [inp])
    assert "784" in str(bad_shape.value)
    with pytest.raises(InferenceServerException) as unknown:
        triton.infer("nope", [inp])
    assert "Request for unknown model: 'nope' is not found" in str(unknown.value)  # Triton's wording
    with pytest.raises(InferenceServerException) as unknown_version:
        triton.infer("mlp", [inp], model_version="9")
    assert "Request for unknown model: 'mlp' version 9 is not found" in str(unknown_version.value)
    assert not triton.is_model_ready("nope")


def test_sequence_requests_are_refused(triton: httpclient.InferenceServerClient) -> None:
    x = np.zeros((1, 784), dtype=np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as refused:
        triton.infer("mlp", [inp], sequence_id=12, sequence_start=True)
    assert refused.value.status() == "400"
    assert "sequence batching is not supported" in str(refused.value)


def test_triton_http_extensions(triton: httpclient.InferenceServerClient, mlp_server: MLPServer) -> None:
    """Statistics, model configuration and repository, as tritonclient.http calls them."""
    from tests.helpers.server import ADMIN_TOKEN

    extensions = set(triton.get_server_metadata()["extensions"])
    assert {"binary_tensor_data", "statistics", "model_configuration", "model_repository"} <= extensions
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    triton.infer("mlp", [inp], model_version="2")
    stats = triton.get_inference_statistics("mlp", "2")["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("mlp", "2")]
    assert stats[0]["inference_stats"]["success"]["count"] >= 1 and stats[0]["inference_count"] >= 3
    everything = triton.get_inference_statistics()["model_stats"]
    assert {("mlp", "1"), ("mlp", "2")} <= {(s["name"], s["version"]) for s in everything}
    config = triton.get_model_config("mlp", "2")
    assert config["max_batch_size"] > 0 and config["input"][0] == {
        "name": "input",
        "data_type": "TYPE_FP32",
        "dims": [784],
    }
    assert config["output"][0]["dims"] == [10]
    index = triton.get_model_repository_index()
    assert {(e["name"], e["version"], e["state"]) for e in index} >= {("mlp", "1", "READY")}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with pytest.raises(InferenceServerException, match="Authorization"):
        triton.unload_model("mlp")
    triton.unload_model("mlp", headers=admin)
    assert ("mlp", "1", "READY") not in {
        (e["name"], e["version"], e["state"]) for e in triton.get_model_repository_index()
    }
    triton.load_model("mlp", headers=admin)
    assert triton.is_model_ready("mlp")
    with pytest.raises(InferenceServerException, match="Request for unknown model"):
        triton.get_inference_statistics("nope")
    with pytest.raises(InferenceServerException, match="Request for unknown model"):
        triton.get_model_config("nope")


# -- response compression (issue 16 item 6) --------------------------------------------------------------------
ROWS = np.tile(np.random.default_rng(11).random((1, 784), dtype=np.float32), (32, 1))
"""32 equal rows: replies of a few KiB that compress well (JSON ~4 KiB, binary 1.3 KiB of repeated logits)."""


def _triton_body(binary_output: bool, rows: np.ndarray = ROWS) -> tuple[bytes, dict[str, str]]:
    """The request tritonclient.http sends for ``rows`` (binary input; binary or JSON output), and its headers."""
    from tritonclient.http._utils import _get_inference_request

    inp = httpclient.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows, binary_data=True)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary_output)
    body, json_length = _get_inference_request([inp], "zip-1", [out], 0, False, False, 0, None, None)
    raw = body if isinstance(body, bytes) else body.encode()
    return raw, {} if json_length is None else {"Inference-Header-Content-Length": str(json_length)}


def _raw_post(mlp_server: MLPServer, body: bytes, headers: dict[str, str], path: str = "/v2/models/mlp/infer") -> Any:
    """POST and read the body as it was on the wire (httpx would inflate it)."""
    with mlp_server.server.client() as client, client.stream("POST", path, content=body, headers=headers) as reply:
        return reply, b"".join(reply.iter_raw())


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_reads_compressed_replies(
    triton: httpclient.InferenceServerClient, mlp_server: MLPServer, algorithm: str, binary: bool
) -> None:
    """``response_compression_algorithm`` (tritonclient sends ``Accept-Encoding: gzip|deflate``): the client
    inflates the reply and finds the binary outputs after the JSON header, whose length is the uncompressed one."""
    inp = httpclient.InferInput("input", list(ROWS.shape), "FP32")
    inp.set_data_from_numpy(ROWS, binary_data=binary)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary)
    for request_compression in (None, algorithm):  # a compressed request too: both directions at once
        result = triton.infer(
            "mlp",
            [inp],
            outputs=[out],
            request_id="zip-1",
            response_compression_algorithm=algorithm,
            request_compression_algorithm=request_compression,
        )
        np.testing.assert_allclose(result.as_numpy("logits"), mlp_server.v1.forward(ROWS), rtol=1e-4, atol=1e-4)
        assert result.get_response()["id"] == "zip-1" and result.get_response()["model_version"] == "1"
    # the same request on the wire: compressed as asked, headers describing the uncompressed reply
    body, headers = _triton_body(binary)
    reply, wire = _raw_post(mlp_server, body, {**headers, "Accept-Encoding": algorithm})
    assert reply.status_code == 200 and reply.headers["content-encoding"] == algorithm
    assert reply.headers["vary"] == "Accept-Encoding" and int(reply.headers["content-length"]) == len(wire)
    plain = gzip.decompress(wire) if algorithm == "gzip" else zlib.decompress(wire)
    assert len(wire) < len(plain) / 2
    header_length = reply.headers.get("inference-header-content-length")
    assert (header_length is not None) == binary
    assert reply.headers["content-type"] == ("application/octet-stream" if binary else "application/json")
    if binary:
        assert json.loads(plain[: int(header_length)])["outputs"][0]["parameters"]["binary_data_size"] == 32 * 10 * 4
    parsed = InferResult.from_response_body(
        wire, header_length=None if header_length is None else int(header_length), content_encoding=algorithm
    )
    np.testing.assert_allclose(parsed.as_numpy("logits"), mlp_server.v1.forward(ROWS), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip;q=0.5, deflate;q=0.8", "deflate"),
        ("deflate;q=0.1, gzip", "gzip"),
        ("gzip, deflate, br, zstd", "gzip"),  # httpx's and browsers' default: never brotli on V2
        ("*", "gzip"),
        ("identity", None),
        ("gzip;q=0.5, identity", None),
        ("br", None),
        ("zstd, compress", None),
        ("gzip;q=0", None),
        ("gzip;q=0, deflate;q=0", None),
        ("gzip;q=nonsense", None),
        ("", None),
    ],
)
def test_accept_encoding_on_the_wire(mlp_server: MLPServer, accept: str, coding: str | None) -> None:
    body, headers = _triton_body(binary_output=False)
    reply, wire = _raw_post(mlp_server, body, {**headers, "Accept-Encoding": accept})
    assert reply.status_code == 200
    assert reply.headers.get("content-encoding") == coding
    plain = {"gzip": gzip.decompress, "deflate": zlib.decompress, None: bytes}[coding](wire)
    assert json.loads(plain)["outputs"][0]["shape"] == [32, 10]


def test_only_large_infer_replies_are_compressed(mlp_server: MLPServer) -> None:
    """Tiny infer replies, errors and every non-infer V2 route stay plain whatever the client accepts."""
    gz = {"Accept-Encoding": "gzip, deflate"}
    body, headers = _triton_body(binary_output=False, rows=ROWS[:1])
    tiny, wire = _raw_post(mlp_server, body, {**headers, **gz})
    assert tiny.status_code == 200 and "content-encoding" not in tiny.headers
    assert len(wire) < 1024 and json.loads(wire)["outputs"][0]["shape"] == [1, 10]
    wrong, wire = _raw_post(mlp_server, b'{"inputs": [' + b'{"name": "x"},' * 200 + b"{}]}", gz)
    assert wrong.status_code == 400 and "content-encoding" not in wrong.headers and b"error" in wire
    with mlp_server.server.client(headers=gz) as client:
        for path in ("/v2", "/v2/health/ready", "/v2/models/mlp", "/v2/models/mlp/ready", "/v2/models/stats"):
            reply = client.get(path)
            assert reply.status_code == 200 and "content-encoding" not in reply.headers, path
        assert "content-encoding" not in client.get("/v2/models/nope").headers
        predict = client.post("/v1/models/mlp/predict", json={"inputs": ROWS.tolist()})
        assert predict.status_code == 200 and "content-encoding" not in predict.headers
