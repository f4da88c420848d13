"""KServe's Python clients (``kserve.InferenceRESTClient`` and ``InferenceGRPCClient``, unchanged) against a real
modelport process: health, readiness, metadata, infer over REST (JSON and binary) and gRPC (raw and typed), BYTES
round trips, and errors as the clients' own exceptions with our messages (issue 16, "Done when").

The clients run in a process of their own (tests/helpers/kserve_calls.py says why: kserve's protobuf module and
tritonclient's cannot share one) and report what each call returned or raised; the tests check that report.
Models: ``simple`` (Triton's INT32 add/sub) and ``echo`` (BYTES identity), both in production.

What kserve's clients cannot do, and so is not tested through them:
- model metadata: neither client has a call for it; the replies are checked against kserve's own pydantic models
  (REST) and read through kserve's generated gRPC stub instead;
- ``model_version`` over REST: ``InferResponse.from_bytes`` never reads it (always None), so the served version is
  read from the ``X-Model-Version`` header; ``infer`` has no version argument, so a version goes in the model name;
- BYTES that are not UTF-8 over REST: ``from_bytes`` turns binary BYTES outputs into ``str`` (UTF-8); the byte-exact
  check is the gRPC one (``echo`` is an ONNX string model, which needs UTF-8 anyway).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.server import run_example_models

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
A = np.arange(32, dtype=np.int32).reshape(2, 16)
B = np.full((2, 16), 3, dtype=np.int32)
WIDE = np.arange(32 * 16, dtype=np.int32).reshape(32, 16)
WORDS = [["abc", "dög", "", "a\x00b"]]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if importlib.util.find_spec("kserve") is None:  # never imported here: see the module docstring
        pytest.skip("kserve is in the dev extra: pip install -e '.[dev]'")
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    # the clients' process starts first: it imports kserve while the server starts, then reads the addresses
    with (
        subprocess.Popen([sys.executable, "-m", "tests.helpers.kserve_calls"], cwd=REPO, text=True, **pipes) as calls,
        run_example_models(tmp_path_factory.mktemp("kserve-server")) as server,
    ):
        out, err = calls.communicate(f"{server.base_url} {server.grpc_url}\n", timeout=180)
        assert calls.returncode == 0, err[-4000:]
        yield json.loads(out)
        assert "Traceback" not in server.logs()


def _value(report: dict[str, Any], call: str) -> Any:
    entry = report[call]
    assert "value" in entry, f"{call} raised {entry.get('raised')}: {entry.get('message')}"
    return entry["value"]


def _raised(report: dict[str, Any], call: str) -> dict[str, Any]:
    entry = report[call]
    assert "raised" in entry, f"{call} should have raised, returned {entry.get('value')!r}"
    return entry  # type: ignore[no-any-return]


def _simple_outputs(result: dict[str, Any], a: np.ndarray = A, b: np.ndarray = B) -> None:
    outputs = result["outputs"]
    assert outputs["OUTPUT0"]["datatype"] == "INT32" and outputs["OUTPUT0"]["shape"] == list(a.shape)
    np.testing.assert_array_equal(outputs["OUTPUT0"]["data"], a + b)
    np.testing.assert_array_equal(outputs["OUTPUT1"]["data"], a - b)


# -- REST: InferenceRESTClient(RESTConfig(protocol="v2")) -----------------------------------------------------
def test_rest_health_and_readiness(report: dict[str, Any]) -> None:
    assert _value(report, "rest_live") is True
    assert _value(report, "rest_ready") is True
    assert _value(report, "rest_model_ready") is True
    assert _value(report, "rest_unknown_model_ready") is False


def test_rest_metadata_fits_kserves_models(report: dict[str, Any]) -> None:
    meta = _value(report, "rest_metadata")
    assert meta["server"]["name"] == "modelport" and "binary_tensor_data" in meta["server"]["extensions"]
    model = meta["model"]
    assert model["name"] == "simple" and model["versions"] == ["1"] and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
    assert [t["name"] for t in model["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    assert meta["ready"] == {"name": "simple", "ready": True}
    json_reply = _value(report, "rest_json_response_model")  # kserve's InferenceResponse accepted it
    assert json_reply["id"] == "json-model" and json_reply["model_version"] == "1"


@pytest.mark.parametrize("call", ["rest_infer_json", "rest_infer_binary", "rest_infer_binary_in_json_out"])
def test_rest_infer(report: dict[str, Any], call: str) -> None:
    """JSON in and out; binary in and out (``binary_data_output``); binary in, JSON out."""
    result = _value(report, call)
    _simple_outputs(result)
    assert result["id"] == {"rest_infer_json": "rest-json", "rest_infer_binary": "rest-bin"}.get(call, "rest-mixed")
    assert result["model_name"] == "simple" and result["x-model-version"] == "1"
    assert result["content-encoding"] is None  # under MODELPORT_RESPONSE_COMPRESSION_MIN_BYTES: plain


def test_rest_requested_output_and_version(report: dict[str, Any]) -> None:
    only = _value(report, "rest_infer_one_output")
    assert list(only["outputs"]) == ["OUTPUT1"]
    np.testing.assert_array_equal(only["outputs"]["OUTPUT1"]["data"], A - B)
    versioned = _value(report, "rest_infer_version")
    _simple_outputs(versioned)


@pytest.mark.parametrize("call", ["rest_infer_large_json", "rest_infer_large_binary"])
def test_rest_large_replies_arrive_gzip_compressed(report: dict[str, Any], call: str) -> None:
    """kserve's httpx sends ``Accept-Encoding: gzip, deflate, br`` by default: large replies come back gzip (never
    brotli), and the client reads them, binary outputs after the uncompressed JSON header included."""
    result = _value(report, call)
    _simple_outputs(result, WIDE, WIDE)
    assert result["content-encoding"] == "gzip"


@pytest.mark.parametrize("call", ["rest_bytes_json", "rest_bytes_binary"])
def test_rest_bytes_round_trip(report: dict[str, Any], call: str) -> None:
    result = _value(report, call)
    assert result["outputs"]["ECHO"]["datatype"] == "BYTES" and result["outputs"]["ECHO"]["shape"] == [1, 4]
    assert result["outputs"]["ECHO"]["data"] == WORDS  # kserve hands REST BYTES back as str


def test_rest_errors_are_kserves_exceptions_with_our_messages(report: dict[str, Any]) -> None:
    unknown = _raised(report, "rest_unknown_model")
    assert unknown["raised"] == "HTTPStatusError" and unknown["status"] == 404
    assert "Request for unknown model: 'nope' is not found" in unknown["message"]
    version = _raised(report, "rest_unknown_version")
    assert version["status"] == 404 and "'simple' version 9 is not found" in version["message"]
    shape = _raised(report, "rest_wrong_shape")
    assert shape["status"] == 400 and "input 'INPUT0': expected shape [-1, 16], got [2, 15]" in shape["message"]


# -- gRPC: InferenceGRPCClient, and kserve's generated stub for metadata ----------------------------------------
def test_grpc_health_readiness_and_metadata(report: dict[str, Any]) -> None:
    assert _value(report, "grpc_live") is True and _value(report, "grpc_ready") is True
    assert _value(report, "grpc_model_ready") is True
    assert _value(report, "grpc_unknown_model_ready") is False
    meta = _value(report, "grpc_metadata")
    assert meta["server"]["name"] == "modelport"
    assert meta["model"]["versions"] == ["1"] and meta["model"]["platform"] == "onnxruntime_onnx"
    assert meta["model"]["inputs"][1] == {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]}
    assert meta["echo_outputs"] == [{"name": "ECHO", "datatype": "BYTES"}]


@pytest.mark.parametrize("call", ["grpc_infer_raw", "grpc_infer_typed", "grpc_infer_version"])
def test_grpc_infer(report: dict[str, Any], call: str) -> None:
    """``raw_input_contents`` (kserve's default for numpy data) and typed ``contents`` (a list as ``data``)."""
    result = _value(report, call)
    _simple_outputs(result)
    assert result["model_name"] == "simple" and result["model_version"] == "1"
    assert result["id"] == {"grpc_infer_raw": "grpc-raw", "grpc_infer_typed": "grpc-typed"}.get(call, "")


def test_grpc_requested_output(report: dict[str, Any]) -> None:
    only = _value(report, "grpc_infer_one_output")
    assert list(only["outputs"]) == ["OUTPUT1"]
    np.testing.assert_array_equal(only["outputs"]["OUTPUT1"]["data"], A - B)


@pytest.mark.parametrize("call", ["grpc_bytes_raw", "grpc_bytes_typed"])
def test_grpc_bytes_are_byte_exact(report: dict[str, Any], call: str) -> None:
    result = _value(report, call)
    assert result["outputs"]["ECHO"]["datatype"] == "BYTES"
    assert result["outputs"]["ECHO"]["data"] == [[list(word.encode()) for word in WORDS[0]]]


def test_grpc_errors_are_rpc_errors_with_our_messages(report: dict[str, Any]) -> None:
    unknown = _raised(report, "grpc_unknown_model")
    assert unknown["raised"] == "AioRpcError" and unknown["code"] == "NOT_FOUND"
    assert unknown["message"] == "Request for unknown model: 'nope' is not found"
    version = _raised(report, "grpc_unknown_version")
    assert version["code"] == "NOT_FOUND" and "'simple' version 9 is not found" in version["message"]
    shape = _raised(report, "grpc_wrong_shape")
    assert shape["code"] == "INVALID_ARGUMENT"
    assert shape["message"] == "input 'INPUT0': expected shape [-1, 16], got [2, 15]"
