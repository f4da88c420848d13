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
