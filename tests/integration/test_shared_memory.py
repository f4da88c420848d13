"""Triton's system shared-memory extension against a real modelport process, through tritonclient.http and
tritonclient.grpc with ``tritonclient.utils.shared_memory``: the simple add/sub flow on each protocol, status and
unregister, batching, and every refusal (unknown region, bad key, region or tensor out of bounds, an object that
was unlinked or shrank after registration, an output region too small, no admin key) as a 4xx / gRPC status
that leaves the server serving.

One server for the module, with an admin token (so registering needs the admin key: the auth-on rule).
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.helpers.onnx_models import make_simple_onnx
from tests.helpers.server import ADMIN_TOKEN, ServerProcess, run_server

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GRPC_ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
ROWS = 2
TENSOR = ROWS * 16 * 4  # bytes of one (2, 16) INT32 tensor
A = np.arange(ROWS * 16, dtype=np.int32).reshape(ROWS, 16)
B = np.full((ROWS, 16), 5, dtype=np.int32)
_TAG = f"mp{os.getpid()}"


def _key(name: str) -> str:
    return f"/{_TAG}_{name}"


def _make_slow_simple(path: Path) -> None:
    """``simple`` that spends a 512x512 matrix product (scaled by the inputs, so it is not folded away) on every
    batch and adds 0 times its sum: while one batch runs, a burst of requests queues and is stacked."""
    x = helper.make_tensor_value_info
    nodes = [
        helper.make_node("Cast", ["INPUT0"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f"], ["s"], keepdims=0),
        helper.make_node("Mul", ["w", "s"], ["ws"]),
        helper.make_node("MatMul", ["ws", "w"], ["p"]),
        helper.make_node("ReduceSum", ["p"], ["t"], keepdims=0),
        helper.make_node("Mul", ["t", "zero"], ["z"]),
        helper.make_node("Cast", ["z"], ["zi"], to=TensorProto.INT32),
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["sum"]),
        helper.make_node("Add", ["sum", "zi"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow_simple",
        [x(name, TensorProto.INT32, ["batch", 16]) for name in ("INPUT0", "INPUT1")],
        [x(name, TensorProto.INT32, ["batch", 16]) for name in ("OUTPUT0", "OUTPUT1")],
        initializer=[
            numpy_helper.from_array(np.full((512, 512), 1e-3, np.float32), "w"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("shm-server")
    make_simple_onnx(root / "simple.onnx")
    _make_slow_simple(root / "slow.onnx")
    with run_server(root / "data", grpc=True) as server:
        server.register_onnx("simple", root / "simple.onnx")
        server.register_onnx("slow", root / "slow.onnx")
        with server.admin() as admin:
            for model in ("simple", "slow"):
                assert admin.put(f"/admin/models/{model}/aliases/production", json={"version": "1"}).status_code == 200
        yield server


@pytest.fixture
def http(served: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(served.base_url.removeprefix("http://"))
    yield client
    client.unregister_system_shared_memory(headers=ADMIN)
    client.close()


@pytest.fixture
def rpc(served: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    yield client
    client.unregister_system_shared_memory(headers=GRPC_ADMIN)
    client.close()


@pytest.fixture
def regions() -> Iterator[dict[str, Any]]:
    """An input region holding A then B, and an output region for OUTPUT0 then OUTPUT1 (tritonclient's)."""
    handles = {
        "in": shm.create_shared_memory_region(f"{_TAG}_in", _key("in"), 2 * TENSOR),
        "out": shm.create_shared_memory_region(f"{_TAG}_out", _key("out"), 2 * TENSOR),
    }
    shm.set_shared_memory_region(handles["in"], [A, B])
    yield handles
    for handle in handles.values():
        shm.destroy_shared_memory_region(handle)


def _raw_object(name: str, size: int) -> Path:
    """A shared-memory object made without tritonclient, so a test may shrink or unlink it at will."""
    path = Path("/dev/shm") / f"{_TAG}_{name}"
    path.write_bytes(A.tobytes() + B.tobytes() + bytes(max(0, size - 2 * TENSOR)))
    return path


def _http_inputs(region: str, offset_b: int = TENSOR) -> list[httpclient.InferInput]:
    inputs = [
        httpclient.InferInput("INPUT0", [ROWS, 16], "INT32"),
        httpclient.InferInput("INPUT1", [ROWS, 16], "INT32"),
    ]
    inputs[0].set_shared_memory(region, TENSOR)
    inputs[1].set_shared_memory(region, TENSOR, offset=offset_b)
    return inputs


def _http_outputs(region: str, size: int = TENSOR) -> list[httpclient.InferRequestedOutput]:
    outputs = [httpclient.InferRequestedOutput("OUTPUT0"), httpclient.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory(region, size)
    outputs[1].set_shared_memory(region, size, offset=TENSOR)
    return outputs


def _grpc_io(
    in_region: str, out_region: str, out_offset: int = 0
) -> tuple[list[grpcclient.InferInput], list[grpcclient.InferRequestedOutput]]:
    inputs = [
        grpcclient.InferInput("INPUT0", [ROWS, 16], "INT32"),
        grpcclient.InferInput("INPUT1", [ROWS, 16], "INT32"),
    ]
    inputs[0].set_shared_memory(in_region, TENSOR)
    inputs[1].set_shared_memory(in_region, TENSOR, offset=TENSOR)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory(out_region, TENSOR, offset=out_offset)
    outputs[1].set_shared_memory(out_region, TENSOR, offset=out_offset + TENSOR)
    return inputs, outputs


def _read(handle: Any, offset: int = 0) -> np.ndarray:
    return shm.get_contents_as_numpy(handle, np.int32, [ROWS, 16], offset=offset).copy()


# -- the simple flow on each protocol ----------------------------------------------------------------------
def test_http_add_sub_through_shared_memory(http: httpclient.InferenceServerClient, regions: dict[str, Any]) -> None:
    assert "system_shared_memory" in http.get_server_metadata()["extensions"]
    http.register_system_shared_memory("in", _key("in"), 2 * TENSOR, headers=ADMIN)
    http.register_system_shared_memory("out", _key("out"), 2 * TENSOR, headers=ADMIN)
    status = http.get_system_shared_memory_status(headers=ADMIN)
    assert sorted(status, key=lambda r: r["name"]) == [
        {"name": "in", "key": _key("in"), "offset": 0, "byte_size": 2 * TENSOR},
        {"name": "out", "key": _key("out"), "offset": 0, "byte_size": 2 * TENSOR},
    ]
    result = http.infer("simple", _http_inputs("in"), outputs=_http_outputs("out"), request_id="shm-1")
    np.testing.assert_array_equal(_read(regions["out"]), A + B)
    np.testing.assert_array_equal(_read(regions["out"], TENSOR), A - B)
    out0, out1 = result.get_output("OUTPUT0"), result.get_output("OUTPUT1")
    assert out0 == {
        "name": "OUTPUT0",
        "datatype": "INT32",
        "shape": [ROWS, 16],
        "parameters": {"shared_memory_region": "out", "shared_memory_byte_size": TENSOR},
    }
    assert out1["parameters"]["shared_memory_offset"] == TENSOR and "data" not in out1
    assert result.get_response()["id"] == "shm-1"
    # a shared-memory input beside a binary output: both in one call
    mixed = httpclient.InferRequestedOutput("OUTPUT1")
    result = http.infer("simple", _http_inputs("in"), outputs=[mixed])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)
    http.unregister_system_shared_memory("in", headers=ADMIN)
    assert [r["name"] for r in http.get_system_shared_memory_status(headers=ADMIN)] == ["out"]
    http.unregister_system_shared_memory("never-registered", headers=ADMIN)  # as Triton: not an error
    http.unregister_system_shared_memory(headers=ADMIN)
    assert http.get_system_shared_memory_status(headers=ADMIN) == []


def test_grpc_add_sub_through_shared_memory(rpc: grpcclient.InferenceServerClient, regions: dict[str, Any]) -> None:
    assert "system_shared_memory" in rpc.get_server_metadata(as_json=True)["extensions"]
    rpc.register_system_shared_memory("in", _key("in"), 2 * TENSOR, headers=GRPC_ADMIN)
    rpc.register_system_shared_memory("out", _key("out"), 2 * TENSOR, headers=GRPC_ADMIN)
    status = rpc.get_system_shared_memory_status(headers=GRPC_ADMIN, as_json=True)["regions"]
    assert status["in"] == {"name": "in", "key": _key("in"), "byte_size": str(2 * TENSOR)}
    inputs, outputs = _grpc_io("in", "out")
    result = rpc.infer("simple", inputs, outputs=outputs)
    np.testing.assert_array_equal(_read(regions["out"]), A + B)
    np.testing.assert_array_equal(_read(regions["out"], TENSOR), A - B)
    response = result.get_response()
    assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"] and not response.raw_output_contents
    assert response.outputs[1].parameters["shared_memory_region"].string_param == "out"
    assert response.outputs[1].parameters["shared_memory_byte_size"].int64_param == TENSOR
    # shared-memory inputs beside a raw output: the raw one keeps its index for as_numpy
    inputs, outputs = _grpc_io("in", "out")
    result = rpc.infer("simple", inputs, outputs=[outputs[0], grpcclient.InferRequestedOutput("OUTPUT1")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)
    # a stream request reads and writes the regions the same way
    shm.set_shared_memory_region(regions["out"], [np.zeros((2, ROWS, 16), np.int32)])
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    rpc.start_stream(partial(_collect, done))
    try:
        inputs, outputs = _grpc_io("in", "out")
        rpc.async_stream_infer("simple", inputs, outputs=outputs, request_id="streamed")
        streamed, error = done.get(timeout=30)
    finally:
        rpc.stop_stream()
    assert error is None and streamed.get_response().id == "streamed"
    np.testing.assert_array_equal(_read(regions["out"], TENSOR), A - B)
    one = rpc.get_system_shared_memory_status("out", headers=GRPC_ADMIN, as_json=True)["regions"]
    assert list(one) == ["out"]
    rpc.unregister_system_shared_memory(headers=GRPC_ADMIN)
    assert rpc.get_system_shared_memory_status(headers=GRPC_ADMIN, as_json=True) == {}


def test_batched_calls_each_get_their_own_rows(rpc: grpcclient.InferenceServerClient, served: ServerProcess) -> None:
    """A burst of requests, each reading its own inputs and writing its own slot of one output region, while the
    batcher stacks them (the model is slow enough for the burst to queue): every slot holds its request's rows."""
    count = 24
    source = shm.create_shared_memory_region(f"{_TAG}_bin", _key("bin"), count * 2 * TENSOR)
    sink = shm.create_shared_memory_region(f"{_TAG}_bout", _key("bout"), count * 2 * TENSOR)
    try:
        shm.set_shared_memory_region(source, [np.concatenate([A + i, B * i]) for i in range(count)])
        rpc.register_system_shared_memory("bin", _key("bin"), count * 2 * TENSOR, headers=GRPC_ADMIN)
        rpc.register_system_shared_memory("bout", _key("bout"), count * 2 * TENSOR, headers=GRPC_ADMIN)
        before = _executions(served)
        done: queue.Queue[tuple[Any, Any]] = queue.Queue()
        for i in range(count):
            inputs, outputs = _grpc_io("bin", "bout", out_offset=i * 2 * TENSOR)
            inputs[0].set_shared_memory("bin", TENSOR, offset=i * 2 * TENSOR)
            inputs[1].set_shared_memory("bin", TENSOR, offset=i * 2 * TENSOR + TENSOR)
            rpc.async_infer("slow", inputs, partial(_collect, done), outputs=outputs)
        assert all(error is None for _, error in (done.get(timeout=30) for _ in range(count)))
        for i in range(count):
            np.testing.assert_array_equal(_read(sink, i * 2 * TENSOR), (A + i) + B * i)
            np.testing.assert_array_equal(_read(sink, i * 2 * TENSOR + TENSOR), (A + i) - B * i)
        batches = _executions(served) - before
        assert batches < count, f"{count} requests ran in {batches} batches: none was stacked"
    finally:
        shm.destroy_shared_memory_region(source)
        shm.destroy_shared_memory_region(sink)


def _collect(answers: queue.Queue[tuple[Any, Any]], result: Any, error: Any) -> None:
    answers.put((result, error))


def _executions(served: ServerProcess) -> int:
    with served.client() as client:
        stats = client.get("/v2/models/slow/versions/1/stats").json()["model_stats"][0]
    return int(stats["execution_count"])


# -- refusals ----------------------------------------------------------------------------------------------
def _refused(call: Any, match: str) -> str:
    with pytest.raises(InferenceServerException, match=match) as refused:
        call()
    return str(refused.value)


def test_registration_refusals(http: httpclient.InferenceServerClient, served: ServerProcess) -> None:
    _raw_object("small", 2 * TENSOR)
    try:
        register = http.register_system_shared_memory
        assert "Authorization" in _refused(lambda: register("x", _key("small"), TENSOR), "Authorization")
        _refused(lambda: register("x", "/../etc/passwd", 8, headers=ADMIN), "invalid shared memory key")
        _refused(lambda: register("x", "/a/b", 8, headers=ADMIN), "invalid shared memory key")
        _refused(lambda: register("x", _key("missing"), 8, headers=ADMIN), "does not exist")
        _refused(lambda: register("x", _key("small"), 2 * TENSOR + 1, headers=ADMIN), "beyond the end of object")
        _refused(lambda: register("x", _key("small"), 8, offset=2 * TENSOR, headers=ADMIN), "beyond the end")
        register("x", _key("small"), TENSOR, headers=ADMIN)
        _refused(lambda: register("x", _key("small"), TENSOR, headers=ADMIN), "already in manager")
        _refused(lambda: http.get_system_shared_memory_status("nope", headers=ADMIN), "Unable to find")
        with served.client() as raw:
            reply = raw.post("/v2/systemsharedmemory/region/y/register", content=b'{"key": 3}', headers=ADMIN)
            assert reply.status_code == 400 and "invalid register request" in reply.json()["error"]
            reply = raw.get("/v2/systemsharedmemory/region/nope/status", headers=ADMIN)
            assert reply.status_code == 404 and "Unable to find system shared memory region" in reply.json()["error"]
    finally:
        (Path("/dev/shm") / f"{_TAG}_small").unlink()


def test_inference_refusals_leave_regions_and_server_intact(
    http: httpclient.InferenceServerClient, rpc: grpcclient.InferenceServerClient, regions: dict[str, Any]
) -> None:
    http.register_system_shared_memory("in", _key("in"), 2 * TENSOR, headers=ADMIN)
    http.register_system_shared_memory("out", _key("out"), 2 * TENSOR, headers=ADMIN)
    shm.set_shared_memory_region(regions["out"], [np.full((2, ROWS, 16), 7, np.int32)])
    infer = partial(http.infer, "simple")
    _refused(lambda: infer(_http_inputs("ghost"), outputs=_http_outputs("out")), "Unable to find")
    _refused(lambda: infer(_http_inputs("in", offset_b=TENSOR + 4), outputs=_http_outputs("out")), "out of bounds")
    _refused(lambda: infer(_http_inputs("in"), outputs=_http_outputs("out", size=TENSOR - 4)), "needs 128 bytes")
    wrong = _http_inputs("in")
    wrong[1].set_shared_memory("in", TENSOR - 4, offset=TENSOR)
    _refused(lambda: infer(wrong), "needs 128 bytes, shared_memory_byte_size says 124")
    np.testing.assert_array_equal(_read(regions["out"]), np.full((ROWS, 16), 7))  # nothing was written
    np.testing.assert_array_equal(_read(regions["out"], TENSOR), np.full((ROWS, 16), 7))
    inputs, outputs = _grpc_io("ghost", "out")
    with pytest.raises(InferenceServerException, match="Unable to find") as refused:
        rpc.infer("simple", inputs, outputs=outputs)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    inputs, outputs = _grpc_io("in", "out")
    outputs[1].set_shared_memory("out", TENSOR, offset=TENSOR + 1)
    with pytest.raises(InferenceServerException, match="out of bounds"):
        rpc.infer("simple", inputs, outputs=outputs)
    result = infer(_http_inputs("in"), outputs=_http_outputs("out"))  # still serving, regions usable
    assert result.get_output("OUTPUT0")["parameters"]["shared_memory_region"] == "out"
    np.testing.assert_array_equal(_read(regions["out"]), A + B)


def test_an_object_unlinked_or_shrunk_after_registration(
    http: httpclient.InferenceServerClient, served: ServerProcess
) -> None:
    gone, shrinking = _raw_object("gone", 2 * TENSOR), _raw_object("shrink", 2 * TENSOR)
    try:
        http.register_system_shared_memory("gone", _key("gone"), 2 * TENSOR, headers=ADMIN)
        http.register_system_shared_memory("shrink", _key("shrink"), 2 * TENSOR, headers=ADMIN)
        np.testing.assert_array_equal(http.infer("simple", _http_inputs("gone")).as_numpy("OUTPUT0"), A + B)
        gone.unlink()
        _refused(lambda: http.infer("simple", _http_inputs("gone")), "was unlinked")
        os.truncate(shrinking, TENSOR)  # reading the second tensor through a map would be a SIGBUS
        _refused(lambda: http.infer("simple", _http_inputs("shrink")), "shrank to 128 bytes")
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served.grpc_url))
        request = pb.ModelInferRequest(model_name="simple")
        for name, offset in (("INPUT0", 0), ("INPUT1", TENSOR)):
            tensor = request.inputs.add(name=name, datatype="INT32", shape=[ROWS, 16])
            tensor.parameters["shared_memory_region"].string_param = "shrink"
            tensor.parameters["shared_memory_byte_size"].int64_param = TENSOR
            tensor.parameters["shared_memory_offset"].int64_param = offset
        with pytest.raises(grpc.RpcError) as failure:
            stub.ModelInfer(request)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "shrank" in str(failure.value.details())
        assert http.is_server_live()
        with httpx.Client(base_url=served.base_url) as raw:
            assert raw.get("/v2/health/ready").status_code == 200
    finally:
        shrinking.unlink()
