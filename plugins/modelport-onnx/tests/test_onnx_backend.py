"""The onnx backend on real tiny models: signature, conformance, reference maths, devices, refusals."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from structlog.testing import capture_logs

from modelport_onnx import ExternalDataRefused, OnnxBackend
from service.errors import ArtifactRejected
from service.plugins import LoadRequest, TensorSpec, default_registry
from service.plugins.testing import check_backend
from service.security.artifact_guard import inspect_artifact


def _load(path: Path, **request: object) -> object:
    return OnnxBackend().load(LoadRequest(artifact_path=path, artifact_format="onnx", **request))  # type: ignore[arg-type]


def test_discovered_through_its_entry_point() -> None:
    info = next(i for i in default_registry().infos() if i.kind == "backend" and i.name == "onnx")
    assert info.ok and info.distribution == "modelport-onnx"
    assert isinstance(default_registry().backend("onnx"), OnnxBackend)
    assert default_registry().backend("onnx").platform == "onnxruntime_onnx"  # V2 metadata before any load


def test_conformance_signature_and_reference_maths(mlp: Any) -> None:
    started = time.perf_counter()
    engine = check_backend(OnnxBackend(), mlp.path, "onnx", batches=(1, 5))
    print(f"\nonnx: load + conformance {1000 * (time.perf_counter() - started):.1f} ms")
    assert engine.inputs == (TensorSpec("input", "FP32", (-1, 16)),)
    assert engine.outputs == (TensorSpec("logits", "FP32", (-1, 4)), TensorSpec("label", "INT64", (-1,)))
    assert engine.platform == "onnxruntime_onnx" and engine.device == "cpu"
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)
        out = engine.predict({"input": x})
        np.testing.assert_allclose(out["logits"], mlp.forward(x), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out["label"], mlp.forward(x).argmax(1))
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.predict({"input": np.zeros((1, 16), np.float32)})


def test_fixed_batch_dim_is_reported_as_is(tmp_path: Path, make_mlp: Callable[..., Any]) -> None:
    mlp = make_mlp(tmp_path / "fixed.onnx", batch=2)
    engine = check_backend(OnnxBackend(), mlp.path, "onnx")
    assert engine.inputs[0].shape == (2, 16)


def test_cuda_request_falls_back_to_cpu_and_says_so(mlp: Any) -> None:
    import onnxruntime as ort

    with capture_logs() as logs:
        engine = _load(mlp.path, device="cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():  # pragma: no cover - GPU machines
        assert engine.device == "cuda:0"  # type: ignore[attr-defined]
    else:
        assert engine.device == "cpu"  # type: ignore[attr-defined]
        assert any(e["event"] == "device_fallback" and e["requested"] == "cuda" for e in logs), logs


def test_threads_come_from_the_request(mlp: Any) -> None:
    engine = _load(mlp.path, device="cpu", intra_op_threads=1, inter_op_threads=1)
    options = engine._session.get_session_options()  # type: ignore[attr-defined]
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    import onnxruntime as ort

    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_png_named_onnx_refused(tmp_path: Path) -> None:
    png = tmp_path / "model.onnx"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    with pytest.raises(ArtifactRejected, match="looks like a PNG image"):
        inspect_artifact(png, OnnxBackend(), backend_name="onnx", principal_is_admin=True)


def test_truncated_model_refused(mlp: Any, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(mlp.path.read_bytes()[:-40])
    with pytest.raises(ArtifactRejected, match="truncated or damaged ONNX"):
        inspect_artifact(truncated, OnnxBackend(), backend_name="onnx", principal_is_admin=True)
    with pytest.raises(Exception, match="(?i)protobuf|pars|corrupt|damaged"):  # nor does the backend alone serve it
        _load(truncated)


def test_external_data_refused_by_guard_and_backend(mlp: Any, tmp_path: Path) -> None:
    external = tmp_path / "ext.onnx"
    onnx.save_model(
        onnx.load(str(mlp.path)), str(external), save_as_external_data=True, location="w.bin", size_threshold=0
    )
    with pytest.raises(ArtifactRejected, match="external file"):
        inspect_artifact(external, OnnxBackend(), backend_name="onnx", principal_is_admin=True)
    with pytest.raises(ExternalDataRefused, match="external file \\('w.bin'\\)"):
        _load(external)
    # a hostile location outside the artifact's folder: refused before onnxruntime opens anything
    hostile = onnx.load(str(external), load_external_data=False)
    for tensor in hostile.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../../../etc/passwd"
    escape = tmp_path / "escape.onnx"
    escape.write_bytes(hostile.SerializeToString())
    with pytest.raises(ExternalDataRefused, match="etc/passwd"):
        _load(escape)


def test_the_external_data_check_needs_no_onnx_package(mlp: Any, tmp_path: Path) -> None:
    """The backend's check is the core's protobuf walk: loading a model never imports onnx (~4 MB of RSS)."""
    import subprocess
    import sys

    external = tmp_path / "ext.onnx"
    onnx.save_model(
        onnx.load(str(mlp.path)), str(external), save_as_external_data=True, location="w.bin", size_threshold=0
    )
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from modelport_onnx import ExternalDataRefused, OnnxBackend\n"
        "from service.plugins import LoadRequest\n"
        "def load(path):\n"
        "    return OnnxBackend().load(LoadRequest(artifact_path=Path(path), artifact_format='onnx'))\n"
        f"assert load({str(mlp.path)!r}).outputs[0].name == 'logits'\n"
        "try:\n"
        f"    load({str(external)!r})\n"
        "except ExternalDataRefused as exc:\n"
        "    print(exc)\n"
        "print('onnx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()  # structlog's own default logger may print a line or two first
    assert any("tensor 'w1' keeps its data in an external file ('w.bin')" in line for line in lines), lines
    assert lines[-1] == "False", lines


def test_other_formats_refused_for_this_backend(tmp_path: Path) -> None:
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    weights = tmp_path / "model.onnx"
    weights.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(ArtifactRejected, match="backend 'onnx' cannot load a safetensors artifact"):
        inspect_artifact(weights, OnnxBackend(), backend_name="onnx", principal_is_admin=True)


def _string_identity(path: Path) -> Path:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("text", TensorProto.STRING, [None, 1])
    y = helper.make_tensor_value_info("same", TensorProto.STRING, [None, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["same"])], "echo", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def test_bytes_inputs_reach_onnxruntime_as_their_text(tmp_path: Path) -> None:
    """onnxruntime stores the repr of a ``bytes`` object ("b'abc'"); the engine hands it the decoded text."""
    from service.errors import InvalidInput

    engine = _load(_string_identity(tmp_path / "echo.onnx"))
    batch = np.array([[b"abc"], ["dög".encode()], [b""]], dtype=object)
    out = engine.predict({"text": batch})["same"]  # type: ignore[attr-defined]
    assert out.tolist() == [["abc"], ["dög"], [""]]
    with pytest.raises(InvalidInput, match="element 1 is not UTF-8"):
        engine.predict({"text": np.array([[b"ok"], [b"\xff\xfe"]], dtype=object)})  # type: ignore[attr-defined]
