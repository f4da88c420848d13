"""What a serving process never imports (issue 15 item 3, memory): a real ``modelport serve`` that loads an ONNX
model, answers HTTP and gRPC calls and unloads it, then lists ``sys.modules`` at exit.

grpcio (8-14 MB of RSS: the gRPC edge is our own HTTP/2 and builds tritonclient's generated messages from their
descriptors), rich and pygments (~3 MB: structlog imports them when installed), the onnx package (~4 MB: the
backend's external-data check is the core's protobuf walk), Alembic (~8 MB: only when the schema has to change)
and torch (an ONNX model needs none) have no business in it; docs/benchmarks.md ("Memory, round two") has the
numbers.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import run_server

pytestmark = pytest.mark.integration

NEVER_IMPORTED = ("grpc", "tritonclient.grpc", "rich", "pygments", "alembic", "torch", "onnx")


def _probe(out: Path) -> str:
    """``python -c`` code that runs the CLI (``serve ...`` in argv) and writes ``sys.modules`` at exit."""
    return (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(out)!r}, 'w').write('\\n'.join(sorted(sys.modules))))\n"
        "sys.argv[0] = 'modelport'\n"
        "from service.cli import main\n"
        "main()\n"
    )


def test_a_serving_process_imports_no_grpcio_rich_onnx_or_alembic(tmp_path: Path) -> None:
    artifact = tmp_path / "mlp.onnx"
    make_mlp_onnx(artifact, hidden=16)
    data = tmp_path / "data"
    with run_server(data) as registrar:  # registration inspects the artifact: not what a serving replica does
        version = registrar.register_onnx("mlp", artifact)["version"]
    out = tmp_path / "modules.txt"
    x = np.ones((1, 784), dtype=np.float32)
    with run_server(data, grpc=True, main=("-c", _probe(out))) as server:
        with server.client() as client:
            body = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": x.ravel().tolist()}]}
            reply = client.post(f"/v2/models/mlp/versions/{version}/infer", json=body)
            assert reply.status_code == 200, reply.text
        with grpcclient.InferenceServerClient(server.grpc_url) as triton:
            tensor = grpcclient.InferInput("input", [1, 784], "FP32")
            tensor.set_data_from_numpy(x)
            result = triton.infer("mlp", [tensor], model_version=str(version))
            np.testing.assert_allclose(result.as_numpy("logits").ravel(), reply.json()["outputs"][0]["data"], rtol=1e-6)
        with server.admin() as admin:
            assert admin.post("/v2/repository/models/mlp/unload", json={}).status_code == 200
        assert server.stop(signal.SIGTERM) == 0
    modules = set(out.read_text().split())
    assert "onnxruntime" in modules and "service.api.grpc.transport" in modules  # it did serve both edges
    imported = [name for name in NEVER_IMPORTED if name in modules]
    assert not imported, f"the server imported {imported}"
