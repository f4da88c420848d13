"""The onnx backend on real tiny models: signature, conformance, parity with the reference maths, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport_onnx import OnnxBackend
from service.plugins import LoadRequest, TensorSpec
from service.plugins.testing import check_engine
from tests.helpers.onnx_models import make_mlp_onnx


def test_signature_conformance_and_parity(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    weights = make_mlp_onnx(path, in_dim=16, hidden=8, out=4)
    engine = OnnxBackend().load(LoadRequest(artifact_path=path, artifact_format="onnx", device="cpu"))
    assert engine.inputs == (TensorSpec("input", "FP32", (-1, 16)),)
    assert engine.outputs == (TensorSpec("logits", "FP32", (-1, 4)),)
    assert engine.device == "cpu" and engine.platform == "onnxruntime_onnx"
    check_engine(engine, batches=(1, 5))
    x = np.random.default_rng(1).random((5, 16), dtype=np.float32)
    np.testing.assert_allclose(engine.predict({"input": x})["logits"], weights.forward(x), rtol=1e-5, atol=1e-5)


def test_cuda_request_falls_back_to_cpu(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    make_mlp_onnx(path, in_dim=4, hidden=4, out=2)
    engine = OnnxBackend().load(LoadRequest(artifact_path=path, artifact_format="onnx", device="cuda"))
    assert engine.device in ("cpu", "cuda:0")
    assert engine.predict({"input": np.ones((2, 4), np.float32)})["logits"].shape == (2, 2)


def test_external_data_refused(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 2])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=0
    )
    with pytest.raises(ValueError, match="external data"):
        OnnxBackend().load(LoadRequest(artifact_path=path, artifact_format="onnx"))
    # a hostile model pointing outside its folder is refused the same way, before onnxruntime opens it
    hostile = onnx.load(str(path), load_external_data=False)
    for entry in hostile.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../../etc/passwd"
    escape = tmp_path / "escape.onnx"
    escape.write_bytes(hostile.SerializeToString())
    with pytest.raises(ValueError, match="external data"):
        OnnxBackend().load(LoadRequest(artifact_path=escape, artifact_format="onnx"))
