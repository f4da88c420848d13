"""The official tritonclient[http] against a real modelport process, binary data on and off."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
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
