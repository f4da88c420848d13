"""KServe's Python clients (the ``kserve`` distribution, unchanged) calling a modelport server: one report.

Run as ``python -m tests.helpers.kserve_calls HTTP_BASE_URL GRPC_TARGET`` (or give both on one line of stdin);
prints one JSON object on stdout,
call name -> what the client returned (``value``) or raised (``raised``: the exception's class, ``message``,
and ``status`` or ``code``). tests/integration/test_kserve_client.py starts the server, runs this and checks
the report; this file only records.

Why a process of its own: kserve's generated ``grpc_predict_v2_pb2`` and tritonclient's ``service_pb2`` (which
the server and the other tests import) define the same protobuf symbols in the same package (``inference``),
and protobuf refuses the second definition in a process: "duplicate symbol 'inference.ServerLiveRequest'".

KServe's clients have no metadata calls (``InferenceRESTClient`` and ``InferenceGRPCClient`` do health,
readiness and infer only), so metadata is read with the parts of kserve that describe it: the REST replies
are validated by kserve's own pydantic models (``kserve.protocol.rest.v2_datamodels``), the gRPC ones come
through kserve's generated ``GRPCInferenceServiceStub``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import InferResponse, RequestedOutput
from kserve.protocol.rest import v2_datamodels

A = np.arange(32, dtype=np.int32).reshape(2, 16)
B = np.full((2, 16), 3, dtype=np.int32)
WIDE = np.arange(32 * 16, dtype=np.int32).reshape(32, 16)
"""32 rows (the batch cap): replies of several KiB, which httpx's default ``Accept-Encoding`` gets compressed."""
WORDS = [[b"abc", "dög".encode(), b"", b"a\x00b"]]
"""BYTES elements; all UTF-8, which ONNX string tensors require (the server refuses others with 400)."""


def _simple(a: np.ndarray, b: np.ndarray, *, binary: bool, **request: Any) -> InferRequest:
    inputs = [InferInput("INPUT0", list(a.shape), "INT32"), InferInput("INPUT1", list(b.shape), "INT32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return InferRequest(request.pop("model_name", "simple"), inputs, **request)


def _text(values: list[list[bytes]], *, binary: bool, **request: Any) -> InferRequest:
    text = InferInput("TEXT", [len(values), len(values[0])], "BYTES")
    text.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return InferRequest("echo", [text], **request)


def _plain(value: Any) -> Any:
    """JSON-ready: arrays as nested lists, bytes as lists of ints (byte-exact), str as str."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        return list(value)
    return value


def _outputs(response: InferResponse) -> dict[str, Any]:
    return {
        "id": response.id,
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": {
            output.name: {"datatype": output.datatype, "shape": list(output.shape), "data": _plain(output.as_numpy())}
            for output in response.outputs
        },
    }


async def _rest(base: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))

    async def infer(request: InferRequest, model: str = "simple") -> dict[str, Any]:
        headers: dict[str, str] = {}
        response = await rest.infer(base, request, model_name=model, response_headers=headers)
        return {
            **_outputs(response),
            "x-model-version": headers.get("x-model-version"),
            "content-encoding": headers.get("content-encoding"),
        }

    async def metadata() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base) as client:
            server = v2_datamodels.ServerMetadataResponse.model_validate((await client.get("/v2")).json())
            model = v2_datamodels.ModelMetadataResponse.model_validate((await client.get("/v2/models/simple")).json())
            ready = v2_datamodels.ModelReadyResponse.model_validate(
                (await client.get("/v2/models/simple/ready")).json()
            )
        return {"server": server.model_dump(), "model": model.model_dump(), "ready": ready.model_dump()}

    async def json_response_model() -> dict[str, Any]:
        """kserve's ``InferenceResponse`` model accepts what we answer to a plain JSON request."""
        body, _ = _simple(A, B, binary=False, request_id="json-model").to_rest()
        async with httpx.AsyncClient(base_url=base) as client:
            reply = await client.post("/v2/models/simple/infer", json=body)
        return v2_datamodels.InferenceResponse.model_validate(reply.json()).model_dump()

    async def version(number: str) -> dict[str, Any]:
        """An explicit version: kserve's REST client has no ``model_version`` argument and builds
        ``/v2/models/{name}/infer`` itself, so the version travels in the name it is given."""
        return _outputs(await rest.infer(base, _simple(A, B, binary=False), model_name=f"simple/versions/{number}"))

    binary_out = {"binary_data_output": True}
    return {
        "rest_live": lambda: rest.is_server_live(base),
        "rest_ready": lambda: rest.is_server_ready(base),
        "rest_model_ready": lambda: rest.is_model_ready(base, "simple"),
        "rest_unknown_model_ready": lambda: rest.is_model_ready(base, "nope"),
        "rest_metadata": metadata,
        "rest_json_response_model": json_response_model,
        "rest_infer_json": lambda: infer(_simple(A, B, binary=False, request_id="rest-json")),
        "rest_infer_binary": lambda: infer(_simple(A, B, binary=True, request_id="rest-bin", parameters=binary_out)),
        "rest_infer_binary_in_json_out": lambda: infer(_simple(A, B, binary=True, request_id="rest-mixed")),
        "rest_infer_one_output": lambda: infer(
            _simple(A, B, binary=True, request_outputs=[RequestedOutput("OUTPUT1", {"binary_data": True})])
        ),
        "rest_infer_large_json": lambda: infer(_simple(WIDE, WIDE, binary=False)),
        "rest_infer_large_binary": lambda: infer(_simple(WIDE, WIDE, binary=True, parameters=binary_out)),
        "rest_bytes_json": lambda: infer(_text(WORDS, binary=False), "echo"),
        "rest_bytes_binary": lambda: infer(_text(WORDS, binary=True, parameters=binary_out), "echo"),
        "rest_unknown_model": lambda: infer(_simple(A, B, binary=False), "nope"),
        "rest_wrong_shape": lambda: infer(_simple(A[:, :15], B[:, :15], binary=False)),
        "rest_infer_version": lambda: version("1"),
        "rest_unknown_version": lambda: version("9"),
        "_close": rest.close,
    }


async def _grpc(target: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    client = InferenceGRPCClient(target, timeout=30, retries=0)
    channel = grpc.aio.insecure_channel(target)
    stub = GRPCInferenceServiceStub(channel)

    async def infer(request: InferRequest) -> dict[str, Any]:
        return _outputs(await client.infer(request))

    async def typed(request: InferRequest) -> dict[str, Any]:
        """Typed ``contents`` instead of ``raw_input_contents``: kserve sends them when ``data`` is a list."""
        for tensor in request.inputs:
            tensor.data = tensor.as_numpy().reshape(-1).tolist()
            tensor._raw_data = None  # noqa: SLF001 - the field to_grpc() checks first
            tensor.parameters = None
        return _outputs(await client.infer(request))

    async def metadata() -> dict[str, Any]:
        server = await stub.ServerMetadata(pb.ServerMetadataRequest())
        model = await stub.ModelMetadata(pb.ModelMetadataRequest(name="simple"))
        version = await stub.ModelMetadata(pb.ModelMetadataRequest(name="echo", version="1"))
        return {
            "server": {"name": server.name, "extensions": list(server.extensions)},
            "model": {
                "name": model.name,
                "versions": list(model.versions),
                "platform": model.platform,
                "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in model.inputs],
                "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in model.outputs],
            },
            "echo_outputs": [{"name": t.name, "datatype": t.datatype} for t in version.outputs],
        }

    async def close() -> None:
        await client.close()
        await channel.close()

    return {
        "grpc_live": client.is_server_live,
        "grpc_ready": client.is_server_ready,
        "grpc_model_ready": lambda: client.is_model_ready("simple"),
        "grpc_unknown_model_ready": lambda: client.is_model_ready("nope"),
        "grpc_metadata": metadata,
        "grpc_infer_raw": lambda: infer(_simple(A, B, binary=True, request_id="grpc-raw")),
        "grpc_infer_typed": lambda: typed(_simple(A, B, binary=True, request_id="grpc-typed")),
        "grpc_infer_version": lambda: infer(_simple(A, B, binary=True, model_version="1")),
        "grpc_infer_one_output": lambda: infer(
            _simple(A, B, binary=True, request_outputs=[RequestedOutput("OUTPUT1")])
        ),
        "grpc_bytes_raw": lambda: infer(_text(WORDS, binary=True)),
        "grpc_bytes_typed": lambda: typed(_text(WORDS, binary=True)),
        "grpc_unknown_model": lambda: infer(_simple(A, B, binary=True, model_name="nope")),
        "grpc_unknown_version": lambda: infer(_simple(A, B, binary=True, model_version="9")),
        "grpc_wrong_shape": lambda: infer(_simple(A[:, :15], B[:, :15], binary=True)),
        "_close_grpc": close,
    }


def _raised(exc: BaseException) -> dict[str, Any]:
    report: dict[str, Any] = {"raised": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, httpx.HTTPStatusError):
        report["status"] = exc.response.status_code
    if isinstance(exc, grpc.aio.AioRpcError):
        report["code"] = exc.code().name
        report["message"] = exc.details()
    return report


async def main(base: str, grpc_target: str) -> dict[str, Any]:
    calls = await _rest(base) | await _grpc(grpc_target)
    report: dict[str, Any] = {}
    for name, call in calls.items():
        if name.startswith("_"):
            continue
        try:
            report[name] = {"value": _plain(await call())}
        except Exception as exc:  # noqa: BLE001 - the report records what each call raised
            report[name] = _raised(exc)
    for name in ("_close", "_close_grpc"):
        await calls[name]()
    return report


if __name__ == "__main__":
    # the two addresses as arguments, or as one line on stdin: the test starts this process before the server, so
    # that importing kserve (seconds: fastapi, pandas, kubernetes...) overlaps the server's start-up
    where = sys.argv[1:] or sys.stdin.readline().split()
    if len(where) != 2:
        sys.exit("usage: python -m tests.helpers.kserve_calls HTTP_BASE_URL GRPC_TARGET (or both on stdin)")
    print(json.dumps(asyncio.run(main(*where))))
