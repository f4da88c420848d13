"""The framework-free request path end to end: tritonclient bytes -> decode -> validate -> preprocess ->
batcher -> encode -> tritonclient's own response parser, with a fake engine."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._infer_result import InferResult
from tritonclient.http._utils import _get_inference_request

from service.codecs.v2 import decode_infer_request, encode_infer_response
from service.errors import InvalidInput
from service.inference.batching import DynamicBatcher
from service.inference.processing import compile_preprocessor
from service.inference.validation import InputValidator
from service.plugins.contract import TensorSpec
from tests.fakes.engines import SumEngine


@pytest.mark.parametrize("binary", [True, False])
async def test_concurrent_tritonclient_requests_through_the_whole_path(binary: bool) -> None:
    engine = SumEngine(width=3)
    validator = InputValidator.from_specs(engine.inputs, max_batch_size=8)
    preprocess = compile_preprocessor({"type": "scale", "factor": 2.0})
    assert preprocess is not None
    batcher = DynamicBatcher(engine.predict, max_batch_size=8, max_delay_s=0.001, max_queue=64, name="sum:1")

    async def call(x: np.ndarray) -> np.ndarray:
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("sum", binary_data=binary)
        body, header_length = _get_inference_request([inp], "r", [out], 0, False, False, 0, None, None)
        body = body if isinstance(body, bytes) else body.encode()
        request = decode_infer_request(body, header_length=header_length)
        inputs = preprocess(validator.validate(request.inputs))
        outputs = await batcher.submit(inputs)
        payload, json_length = encode_infer_response(
            model_name="sum",
            model_version="1",
            request_id=request.id,
            outputs=outputs,
            output_specs=engine.outputs,
            requested_outputs=request.outputs,
            binary_data_output=request.binary_data_output,
        )
        assert (json_length is not None) == binary
        result = InferResult.from_response_body(payload, header_length=json_length)
        assert result.get_response()["model_version"] == "1"
        return result.as_numpy("sum")

    rng = np.random.default_rng(5)
    xs = [rng.integers(0, 5, size=(int(rng.integers(1, 4)), 3)).astype(np.float32) for _ in range(40)]
    results = await asyncio.gather(*(call(x) for x in xs))
    for x, got in zip(xs, results, strict=True):
        np.testing.assert_array_equal(got, (2 * x).sum(axis=1, keepdims=True))
    assert sum(engine.batch_sizes) == sum(len(x) for x in xs)
    await batcher.stop(5)


def test_bad_shape_from_tritonclient_is_refused_before_the_engine() -> None:
    validator = InputValidator.from_specs((TensorSpec("input", "FP32", (-1, 784)),), max_batch_size=8)
    x = np.zeros((1, 783), np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    body, header_length = _get_inference_request([inp], "", None, 0, False, False, 0, None, None)
    request = decode_infer_request(body, header_length=header_length)
    with pytest.raises(InvalidInput, match=r"expected shape \[-1, 784\], got \[1, 783\]"):
        validator.validate(request.inputs)
