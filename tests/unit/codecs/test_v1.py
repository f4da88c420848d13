"""Simple predict codec: instances in, postprocessed predictions with timings out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.codecs.v1 import decode_predict_request, encode_predict_response
from service.errors import InvalidInput
from service.inference.processing import compile_postprocessor
from service.plugins.contract import TensorSpec

MLP = (TensorSpec("input", "FP32", (-1, 4)),)


def test_single_input_instances_stack_into_a_batch() -> None:
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    (tensor,) = decode_predict_request(json.dumps({"inputs": x.tolist()}).encode(), MLP)
    assert tensor.name == "input" and tensor.datatype == "FP32" and tensor.shape == (3, 4)
    assert tensor.data.dtype == np.float32
    np.testing.assert_array_equal(tensor.data, x)


def test_images_and_integer_and_bytes_inputs() -> None:
    image = (TensorSpec("img", "UINT8", (-1, 2, 2)),)
    (tensor,) = decode_predict_request(b'{"inputs": [[[0, 1], [2, 255]]]}', image)
    assert tensor.data.dtype == np.uint8 and tensor.shape == (1, 2, 2)
    text = (TensorSpec("text", "BYTES", (-1,)),)
    (tensor,) = decode_predict_request('{"inputs": ["hi", "wörld"]}'.encode(), text)
    assert tensor.data.tolist() == [b"hi", "wörld".encode()]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"inputs": "x"}', "Expected `array`"),
        (b'{"inputs": []}', "at least"),
        (b'{"instances": [[1, 2, 3, 4]]}', "unknown field"),
        (b'{"inputs": [["1", 2, 3, 4]]}', "Expected `float`, got `str`"),
        (b'{"inputs": [1, 2, 3, 4]}', "Expected `array`"),
        (b'{"inputs": [[1, 2], [1, 2, 3]]}', "instances must each be shaped [4]"),
        (b'{"inputs": [[NaN, 1, 2, 3]]}', "malformed JSON"),
        (b"{nope", "malformed JSON"),
    ],
)
def test_bad_predict_bodies(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_predict_request(body, MLP)
    assert needle in info.value.message


def test_out_of_range_integers_and_float_overflow() -> None:
    with pytest.raises(InvalidInput, match="out of range for INT8"):
        decode_predict_request(b'{"inputs": [[300]]}', (TensorSpec("x", "INT8", (-1, 1)),))
    (tensor,) = decode_predict_request(b'{"inputs": [[1e39, 0, 0, 0]]}', MLP)
    assert np.isinf(tensor.data[0, 0])  # refused later by validation as non-finite


def test_multi_input_models_take_objects() -> None:
    specs = (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1,)))
    tensors = decode_predict_request(b'{"inputs": [{"a": [1, 2], "b": 3}, {"a": [4, 5], "b": 6}]}', specs)
    assert [t.name for t in tensors] == ["a", "b"]
    np.testing.assert_array_equal(tensors[0].data, [[1, 2], [4, 5]])
    assert tensors[1].data.dtype == np.int64 and tensors[1].data.tolist() == [3, 6]
    with pytest.raises(InvalidInput, match="missing \\['b'\\]"):
        decode_predict_request(b'{"inputs": [{"a": [1, 2]}]}', specs)
    with pytest.raises(InvalidInput, match="unexpected \\['c'\\]"):
        decode_predict_request(b'{"inputs": [{"a": [1, 2], "b": 1, "c": 0}]}', specs)
    with pytest.raises(InvalidInput, match="values must be INT64"):
        decode_predict_request(b'{"inputs": [{"a": [1, 2], "b": "x"}]}', specs)


def test_encode_classification_response() -> None:
    logits = np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    post = compile_postprocessor({"type": "classification", "labels": ["a", "b", "c"]})
    rows = post({"logits": logits}, ())
    body = encode_predict_response(
        model_name="m",
        model_version="2",
        postprocessed=rows,
        preprocessing_ms=0.5,
        inference_ms=1.25,
        postprocessing_ms=0.0625,
    )
    doc = json.loads(body)
    assert rows.labels == ["b", "a"]
    assert doc["model_name"] == "m" and doc["model_version"] == "2" and doc["predictions"] == ["b", "a"]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(doc["confidence_scores"], probs.max(axis=1), rtol=1e-6)
    assert doc["inference_time_ms"] == 1.25 and doc["preprocessing_time_ms"] == 0.5
    assert doc["postprocessing_time_ms"] == 0.062
    assert set(doc) == {
        "model_name",
        "model_version",
        "predictions",
        "confidence_scores",
        "inference_time_ms",
        "preprocessing_time_ms",
        "postprocessing_time_ms",
    }


def test_encode_raw_response_without_postprocessing() -> None:
    rows = compile_postprocessor(None)(
        {"y": np.array([[1.5], [2.5]], dtype=np.float32)}, (TensorSpec("y", "FP32", (-1, 1)),)
    )
    body = encode_predict_response(
        model_name="m",
        model_version="1",
        postprocessed=rows,
        preprocessing_ms=0.0,
        inference_ms=0.0,
        postprocessing_ms=0.0,
    )
    doc = json.loads(body)
    assert rows.labels is None
    assert doc["predictions"] == [[1.5], [2.5]] and doc["confidence_scores"] is None


def test_instances_nested_past_the_decoder_limit_are_invalid_input() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for specs in (
        (TensorSpec("x", "FP32", (-1, 4)),),
        (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1,))),
    ):
        with pytest.raises(InvalidInput):
            decode_predict_request(
                b'{"inputs": [' + (deep if len(specs) == 1 else b'{"a": ' + deep + b"}") + b"]}", specs
            )
