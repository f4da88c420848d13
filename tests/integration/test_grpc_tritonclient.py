"""tritonclient.grpc (sync, async callback, streaming, aio) and raw gRPC calls against a real modelport process.

Models: ``simple`` (Triton's INT32 add/sub shape), ``echo`` (BYTES identity) and ``mlp`` (two versions split 50/50,
so routing keys pick arms). Raw calls go through the generated stub that tritonclient ships, to check what the
client library hides: typed versus raw contents, metadata in and out, and status codes.
"""

from __future__ import annotations

import asyncio
import queue
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.helpers.onnx_models import make_mlp_onnx, make_simple_onnx
from tests.helpers.server import ADMIN_TOKEN, ServerProcess, run_example_models, run_server

pytestmark = pytest.mark.integration

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class GrpcServer:
    server: ServerProcess
    url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    root = tmp_path_factory.mktemp("grpc-server")
    make_mlp_onnx(root / "mlp-1.onnx", seed=1)
    make_mlp_onnx(root / "mlp-2.onnx", seed=2)
    make_mlp_onnx(root / "tampered.onnx", seed=3)
    with run_example_models(root) as server:  # simple and echo, in production
        server.register_onnx("mlp", root / "mlp-1.onnx")
        server.register_onnx("mlp", root / "mlp-2.onnx")
        tampered = server.register_onnx("tampered", root / "tampered.onnx")["sha256"]
        blob = root / "data" / "artifacts" / "sha256" / tampered[:2] / tampered
        blob.chmod(0o600)
        blob.write_bytes(blob.read_bytes()[:-1] + b"!")  # no longer its sha256: every load is refused
        with server.admin() as admin:
            split = {"splits": [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]}
            assert admin.put("/admin/models/mlp/traffic", json=split).status_code == 200
        yield GrpcServer(server, server.grpc_url)


@pytest.fixture
def client(served: GrpcServer) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(served.url)
    yield triton
    triton.close()


@pytest.fixture
def stub(served: GrpcServer) -> Iterator[Any]:
    with grpc.insecure_channel(served.url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _simple_inputs(a: np.ndarray, b: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = [
        grpcclient.InferInput("INPUT0", list(a.shape), "INT32"),
        grpcclient.InferInput("INPUT1", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


A = np.arange(32, dtype=np.int32).reshape(2, 16)
B = np.full((2, 16), 3, dtype=np.int32)


def _collect(answers: queue.Queue[tuple[Any, Any]], result: Any, error: Any) -> None:
    answers.put((result, error))


def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code()


def _typed_request(model: str = "simple", **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name=model, id="typed-1", **fields)
    for name, values in (("INPUT0", A), ("INPUT1", B)):
        tensor = request.inputs.add(name=name, datatype="INT32", shape=values.shape)
        tensor.contents.int_contents.extend(values.reshape(-1).tolist())
    return request


# -- health, metadata, configuration ------------------------------------------------------------------------
def test_health_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("simple") and client.is_model_ready("simple", "1")
    assert not client.is_model_ready("nope") and not client.is_model_ready("simple", "9")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "modelport"
    assert set(server["extensions"]) == {
        "classification",
        "model_configuration",
        "model_repository",
        "statistics",
        "system_shared_memory",
    }
    meta = client.get_model_metadata("simple", as_json=True)
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": ["-1", "16"]}
    config = client.get_model_config("simple", as_json=True)["config"]
    assert config["max_batch_size"] == 32 and config["backend"] == "onnx"
    assert config["input"][0] == {"name": "INPUT0", "data_type": "TYPE_INT32", "dims": ["16"]}
    assert config["output"][1]["name"] == "OUTPUT1"
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "2000"
    echo = client.get_model_config("echo", as_json=True)["config"]
    assert echo["input"][0]["data_type"] == "TYPE_STRING" and echo["input"][0]["dims"] == ["-1"]


# -- inference ------------------------------------------------------------------------------------------------
def test_infer_raw_through_tritonclient(client: grpcclient.InferenceServerClient) -> None:
    outputs = [grpcclient.InferRequestedOutput("OUTPUT1"), grpcclient.InferRequestedOutput("OUTPUT0")]
    result = client.infer("simple", _simple_inputs(A, B), outputs=outputs, request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)
    response = result.get_response()
    assert response.id == "req-7" and response.model_name == "simple" and response.model_version == "1"
    assert [o.name for o in response.outputs] == ["OUTPUT1", "OUTPUT0"]  # requested order
    assert len(response.raw_output_contents) == 2  # raw in, raw out


def test_typed_contents_in_typed_contents_out(stub: Any) -> None:
    _, call = stub.ModelInfer.with_call(_typed_request(), metadata=(("x-request-id", "client-chosen-1"),))
    assert dict(call.initial_metadata())["x-request-id"] == "client-chosen-1"  # the caller's id is kept
    response = stub.ModelInfer(_typed_request())
    assert not response.raw_output_contents
    by_name = {o.name: o for o in response.outputs}
    assert list(by_name["OUTPUT0"].shape) == [2, 16]
    assert list(by_name["OUTPUT0"].contents.int_contents) == (A + B).reshape(-1).tolist()
    assert list(by_name["OUTPUT1"].contents.int_contents) == (A - B).reshape(-1).tolist()
    assert response.id == "typed-1"


def test_bytes_are_byte_exact_raw_and_typed(client: grpcclient.InferenceServerClient, stub: Any) -> None:
    values = np.array([[b"abc", "dög".encode(), b"", b"a\x00b"]], dtype=object)
    text = grpcclient.InferInput("TEXT", [1, 4], "BYTES")
    text.set_data_from_numpy(values)
    got = client.infer("echo", [text]).as_numpy("ECHO")
    assert got.tolist() == values.tolist()
    request = pb.ModelInferRequest(model_name="echo")
    tensor = request.inputs.add(name="TEXT", datatype="BYTES", shape=[1, 4])
    tensor.contents.bytes_contents.extend(values.reshape(-1).tolist())
    response = stub.ModelInfer(request)
    assert list(response.outputs[0].contents.bytes_contents) == values.reshape(-1).tolist()
    assert response.outputs[0].datatype == "BYTES"


def test_async_callback_infer(client: grpcclient.InferenceServerClient) -> None:
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    for index in range(4):
        client.async_infer("simple", _simple_inputs(A + index, B), partial(_collect, done))
    results = [done.get(timeout=30) for _ in range(4)]
    assert all(error is None for _, error in results)
    sums = sorted(int(result.as_numpy("OUTPUT0")[0, 0]) for result, _ in results)
    assert sums == [3, 4, 5, 6]


def test_stream_survives_a_failed_request(client: grpcclient.InferenceServerClient) -> None:
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(partial(_collect, done))
    try:
        client.async_stream_infer("simple", _simple_inputs(A, B), request_id="good-1")
        wrong = np.zeros((1, 15), dtype=np.int32)
        client.async_stream_infer("simple", _simple_inputs(wrong, wrong), request_id="bad")
        client.async_stream_infer("nope", _simple_inputs(A, B), request_id="unknown")
        client.async_stream_infer("simple", _simple_inputs(A, A), request_id="good-2")
        answers = [done.get(timeout=30) for _ in range(4)]
    finally:
        client.stop_stream()
    served = {r.get_response().id: r for r, e in answers if e is None}
    errors = sorted(str(e) for r, e in answers if e is not None)
    assert set(served) == {"good-1", "good-2"}
    np.testing.assert_array_equal(served["good-2"].as_numpy("OUTPUT0"), A + A)
    assert len(errors) == 2
    assert "Request for unknown model: 'nope' is not found" in errors[0] + errors[1]
    assert any("16" in error and "INPUT0" in error for error in errors)


def test_aio_client(served: GrpcServer) -> None:
    async def scenario() -> None:
        async with aioclient.InferenceServerClient(served.url) as client:
            assert await client.is_server_ready()
            meta = await client.get_model_metadata("echo", as_json=True)
            assert meta["outputs"][0]["datatype"] == "BYTES"
            inputs = [
                aioclient.InferInput("INPUT0", [2, 16], "INT32"),
                aioclient.InferInput("INPUT1", [2, 16], "INT32"),
            ]
            inputs[0].set_data_from_numpy(A)
            inputs[1].set_data_from_numpy(B)
            result = await client.infer("simple", inputs)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)

            async def requests() -> Any:
                for request_id in ("s1", "s-bad", "s2"):
                    model = "nope" if request_id == "s-bad" else "simple"
                    yield {"model_name": model, "inputs": inputs, "request_id": request_id}

            answers = [answer async for answer in client.stream_infer(requests())]
            ok = sorted(r.get_response().id for r, e in answers if e is None)
            failed = [e for r, e in answers if e is not None]
            assert ok == ["s1", "s2"] and len(failed) == 1 and "unknown model" in str(failed[0])

    asyncio.run(scenario())


# -- statistics and repository ---------------------------------------------------------------------------------
def test_statistics_count_grpc_calls(client: grpcclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    for _ in range(3):
        client.infer("simple", _simple_inputs(A, B))
    with pytest.raises(InferenceServerException):
        client.infer("simple", _simple_inputs(A[:, :15], B[:, :15]))
    after = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    success = int(after["inference_stats"]["success"]["count"]) - int(
        before["inference_stats"]["success"].get("count", 0)
    )
    failed = int(after["inference_stats"]["fail"]["count"]) - int(before["inference_stats"]["fail"].get("count", 0))
    assert success == 3 and failed == 1
    assert int(after["inference_stats"]["success"]["ns"]) > 0
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 6  # rows: 3 calls x batch 2
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} >= {("simple", "1"), ("mlp", "1"), ("mlp", "2")}
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_inference_statistics("nope")


def test_repository_index_load_and_unload(client: grpcclient.InferenceServerClient) -> None:
    client.infer("simple", _simple_inputs(A, B))
    index = {(m["name"], m["version"]): m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index[("simple", "1")]["state"] == "READY"
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        client.unload_model("simple")
    client.unload_model("simple", headers=ADMIN)
    index = {(m["name"], m["version"]): m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index[("simple", "1")]["state"] == "UNAVAILABLE"
    assert "not loaded on this replica" in index[("simple", "1")]["reason"]
    assert not client.is_model_ready("simple")
    client.load_model("simple", headers=ADMIN)
    assert client.is_model_ready("simple")
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.load_model("nope", headers=ADMIN)
    with pytest.raises(InferenceServerException, match="UNIMPLEMENTED"):
        client.load_model("simple", headers=ADMIN, config='{"max_batch_size": 4}')


# -- routing keys and metadata --------------------------------------------------------------------------------
def test_routing_key_names_the_served_version(stub: Any) -> None:
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    request = pb.ModelInferRequest(model_name="mlp", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=[1, 784])
    seen: dict[str, str] = {}
    for key in (f"user-{i}" for i in range(24)):
        for _ in range(2):
            response, call = stub.ModelInfer.with_call(request, metadata=(("x-routing-key", key),))
            initial = dict(call.initial_metadata())
            header = initial["x-model-version"]
            assert header == response.model_version
            assert re.fullmatch(r"g[0-9a-f]{36}", initial["x-request-id"])  # "g", ms time, 96 random bits
            assert seen.setdefault(key, header) == header  # same key, same arm
        meta, meta_call = stub.ModelMetadata.with_call(
            pb.ModelMetadataRequest(name="mlp"), metadata=(("x-routing-key", key),)
        )
        assert dict(meta_call.initial_metadata())["x-model-version"] == seen[key]
    assert set(seen.values()) == {"1", "2"}


# -- error codes ----------------------------------------------------------------------------------------------
def test_error_codes(stub: Any) -> None:
    good = _typed_request()
    assert _code(lambda: stub.ModelInfer(_typed_request(model="nope"))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.ModelInfer(_typed_request(model_version="9"))) == grpc.StatusCode.NOT_FOUND
    wrong_dtype = pb.ModelInferRequest()
    wrong_dtype.CopyFrom(good)
    wrong_dtype.inputs[0].datatype = "INT64"
    wrong_dtype.inputs[0].contents.Clear()
    wrong_dtype.inputs[0].contents.int64_contents.extend(range(32))
    with pytest.raises(grpc.RpcError) as dtype_refused:
        stub.ModelInfer(wrong_dtype)
    assert dtype_refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(dtype_refused.value.initial_metadata())["x-model-version"] == "1"  # routing resolved it
    short = pb.ModelInferRequest(model_name="simple", raw_input_contents=[A.tobytes(), B.tobytes()[:-4]])
    short.inputs.add(name="INPUT0", datatype="INT32", shape=[2, 16])
    short.inputs.add(name="INPUT1", datatype="INT32", shape=[2, 16])
    with pytest.raises(grpc.RpcError) as raw_size:
        stub.ModelInfer(short)
    assert raw_size.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 128 bytes, raw_input_contents says 124" in raw_size.value.details()
    sequence = _typed_request()
    sequence.parameters["sequence_id"].int64_param = 42
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(sequence)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequence batching is not supported" in refused.value.details()
    shm = _typed_request()
    shm.inputs[0].parameters["shared_memory_region"].string_param = "region"
    assert _code(lambda: stub.ModelInfer(shm)) == grpc.StatusCode.INVALID_ARGUMENT  # tests/.../test_shared_memory.py
    for call in (
        lambda: stub.CudaSharedMemoryStatus(pb.CudaSharedMemoryStatusRequest()),
        lambda: stub.TraceSetting(pb.TraceSettingRequest()),
        lambda: stub.LogSettings(pb.LogSettingsRequest()),
    ):
        assert _code(call) == grpc.StatusCode.UNIMPLEMENTED
    unknown = _typed_request(model_version="9")
    with pytest.raises(grpc.RpcError) as missing:
        stub.ModelInfer(unknown)
    assert missing.value.details().startswith("Request for unknown model: 'simple' version 9 is not found")


def test_a_version_that_cannot_load_is_unavailable_with_retry_after(stub: Any, served: GrpcServer) -> None:
    x = np.zeros((1, 784), dtype=np.float32)
    request = pb.ModelInferRequest(model_name="tampered", model_version="1", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=[1, 784])
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "integrity" in refused.value.details()
    assert int(dict(refused.value.trailing_metadata())["retry-after"]) >= 1


def test_garbage_is_invalid_argument_and_a_stream_survives_it(served: GrpcServer) -> None:
    with grpc.insecure_channel(served.url) as channel:
        unary = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as garbage:
            unary(b"\xff\xff\xff\xff garbage")
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed ModelInferRequest" in garbage.value.details()
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        answers = list(stream(iter([b"\xff\xff\xff\xff", _typed_request().SerializeToString()])))
    assert len(answers) == 2
    assert sum("malformed ModelInferRequest" in a.error_message for a in answers) == 1
    assert sum(a.infer_response.id == "typed-1" and not a.error_message for a in answers) == 1


def test_client_disconnect_mid_stream_leaves_the_server_serving(
    served: GrpcServer, client: grpcclient.InferenceServerClient
) -> None:
    with grpc.insecure_channel(served.url) as channel:
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        answers = stream(iter([_typed_request()] * 50))
        next(answers)
        answers.cancel()  # the client walks away with requests in flight
    result = client.infer("simple", _simple_inputs(A, B))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)
    assert client.is_server_ready()
    assert "Traceback" not in served.server.logs()


def test_message_over_the_body_cap_is_resource_exhausted(served: GrpcServer) -> None:
    x = np.zeros((1, 64 * 1024 * 1024 // 4 + 16), dtype=np.float32)
    request = pb.ModelInferRequest(model_name="mlp", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(served.url, options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert _code(lambda: stub.ModelInfer(request)) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_every_worker_serves_grpc_on_the_same_port(tmp_path: Path) -> None:
    make_simple_onnx(tmp_path / "simple.onnx")
    with run_server(tmp_path / "data", grpc=True, args=("--workers", "2")) as server:
        server.register_onnx("simple", tmp_path / "simple.onnx")
        with server.admin() as admin:
            assert admin.put("/admin/models/simple/aliases/production", json={"version": "1"}).status_code == 200
        deadline = time.monotonic() + 60
        while server.logs().count('"grpc_serving"') < 2:  # HTTP readiness needs one worker; wait for both
            assert time.monotonic() < deadline, "both workers should bind the gRPC port"
            time.sleep(0.2)
        for _ in range(8):  # new connections: the kernel spreads them over both workers (SO_REUSEPORT)
            triton = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                deadline = time.monotonic() + 30
                while not triton.is_model_ready("simple"):  # each worker applies the promotion on its own poll
                    assert time.monotonic() < deadline, "a worker never served the promoted version"
                    time.sleep(0.1)
                np.testing.assert_array_equal(triton.infer("simple", _simple_inputs(A, B)).as_numpy("OUTPUT0"), A + B)
            finally:
                triton.close()
        assert server.stop() == 0  # both workers drained
