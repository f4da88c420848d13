"""The naive baseline: an idiomatic Litestar app that runs onnxruntime once per request, no batching.

This is what one writes in an afternoon: a typed handler (Litestar decodes the V2 JSON body into msgspec
Structs), ``InferenceSession.run`` inline on the event loop for each request, a Struct back. A second
route, ``/v2/models/{name}/parse``, only decodes the body and returns a canned reply: the framework's own
cost on the same body, without inference.

Environment: ``BENCH_MODEL_PATH`` (the ONNX file, required), ``BENCH_ORT_THREADS`` (intra-op threads,
default 1: the server is pinned to one core). Serve with
``uvicorn --factory benchmarks.servers.naive_litestar:create_app_from_env --loop uvloop --http httptools``.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from litestar import Litestar, get, post

from benchmarks.servers._v2 import InferOutput, InferRequest, InferResponse

__all__ = ("create_app", "create_app_from_env")


def _session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def create_app(model_path: str, threads: int = 1) -> Litestar:
    """Build the naive app around one ONNX model with a single input and output."""
    session = _session(model_path, threads)
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    @post("/v2/models/{name:str}/infer", status_code=200)
    async def infer(name: str, data: InferRequest) -> InferResponse:
        tensor = data.inputs[0]
        x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
        (y,) = session.run([output_name], {input_name: x})
        output = InferOutput(name=output_name, shape=list(y.shape), datatype="FP32", data=y.ravel().tolist())
        return InferResponse(model_name=name, outputs=[output], id=data.id)

    @post("/v2/models/{name:str}/parse", status_code=200)
    async def parse_only(name: str, data: InferRequest) -> InferResponse:
        output = InferOutput(name=output_name, shape=[1, 10], datatype="FP32", data=[0.125] * 10)
        return InferResponse(model_name=name, outputs=[output], id=data.id)

    @get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return Litestar(route_handlers=[infer, parse_only, ready])


def create_app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory``: reads ``BENCH_MODEL_PATH`` and ``BENCH_ORT_THREADS``."""
    path = os.environ.get("BENCH_MODEL_PATH")
    if not path:
        raise RuntimeError("BENCH_MODEL_PATH must point at the ONNX model to serve")
    return create_app(path, int(os.environ.get("BENCH_ORT_THREADS", "1")))
