"""Manifest-declared pre/postprocessing: validated at registration, compiled once, vectorised."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.errors import BackendFailure, InvalidInput
from service.inference.processing import compile_postprocessor, compile_preprocessor, validate_processing_spec
from service.plugins.contract import TensorSpec

X = TensorSpec("input", "FP32", (-1, 3))
IMG = TensorSpec("image", "FP32", (-1, 3, -1, -1))
LOGITS = TensorSpec("logits", "FP32", (-1, 3))


def test_no_processing() -> None:
    assert compile_preprocessor(None) is None
    assert compile_preprocessor({}) is None
    validate_processing_spec(None)
    result = compile_postprocessor(None)({"y": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)})
    assert result.predictions == [[1.0, 2.0], [3.0, 4.0]] and result.confidence_scores is None
    assert result.labels is None


def test_standardize_scalar_and_per_feature() -> None:
    x = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]], np.float32)
    out = compile_preprocessor({"type": "standardize", "mean": 1.0, "std": 2.0})({"input": x})
    np.testing.assert_allclose(out["input"], (x - 1.0) / 2.0, rtol=1e-6)
    assert out["input"].dtype == np.float32
    pre = compile_preprocessor({"type": "standardize", "mean": [1, 2, 3], "std": [1, 2, 4]})
    assert pre is not None
    inputs = {"input": x}
    out = pre(inputs)
    np.testing.assert_allclose(out["input"], (x - [1, 2, 3]) / [1, 2, 4], rtol=1e-6)
    assert inputs["input"] is x and x[0, 0] == 1.0  # the caller's arrays are not modified


def test_standardize_per_channel_on_images_and_named_input() -> None:
    image = np.ones((2, 3, 4, 4), np.float32) * np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 3, 1, 1)
    pre = compile_preprocessor(
        {"type": "standardize", "mean": [1, 2, 3], "std": [0.5, 0.5, 0.5], "axis": 1, "input": "image"}
    )
    assert pre is not None
    other = np.ones((2, 1), np.float32)
    out = pre({"other": other, "image": image})
    np.testing.assert_allclose(out["image"], 0.0, atol=1e-6)
    assert out["other"] is other
    with pytest.raises(InvalidInput, match="has 4 values along axis 1"):
        pre({"image": np.ones((1, 4, 2, 2), np.float32)})


def test_scale_and_readonly_inputs() -> None:
    x = np.frombuffer(np.array([0, 255, 51], np.float32).tobytes(), np.float32).reshape(1, 3)
    assert not x.flags.writeable  # binary-extension inputs are read-only views
    pre = compile_preprocessor({"type": "scale", "factor": 1 / 255})
    assert pre is not None
    np.testing.assert_allclose(pre({"input": x})["input"], [[0.0, 1.0, 0.2]], rtol=1e-6)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"type": "normalise"}, "unknown type 'normalise'"),
        ({"mean": 1}, "unknown type None"),
        ({"type": "standardize", "mean": 0}, "missing required field `std`"),
        ({"type": "standardize", "mean": "a", "std": 1}, "Expected `float | array`"),
        ({"type": "standardize", "mean": 0, "std": 0}, "'std' must be greater than 0"),
        ({"type": "standardize", "mean": [0, 1], "std": [1, 1, 1]}, "'mean' has 2 values but 'std' has 3"),
        ({"type": "standardize", "mean": [], "std": 1}, "non-empty list"),
        ({"type": "standardize", "mean": 0, "std": 1, "colour": 1}, "unknown field `colour`"),
        ({"type": "scale", "factor": 1e400}, "finite"),
        ({"type": "classification", "labels": []}, "must not be empty"),
        ({"type": "classification", "softmax": "yes"}, "Expected `bool`"),
        ({"type": "regression", "extra": 1}, "unknown field `extra`"),
        ("classification", "must be a JSON object"),
    ],
)
def test_bad_specs_are_refused_with_clear_messages(spec: Any, needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_processing_spec(spec)
    assert needle in info.value.message


def test_wrong_stage_is_refused_by_the_compilers() -> None:
    with pytest.raises(InvalidInput, match="preprocessing: unknown type 'classification'"):
        compile_preprocessor({"type": "classification"})
    with pytest.raises(InvalidInput, match="postprocessing: unknown type 'scale'"):
        compile_postprocessor({"type": "scale", "factor": 2})


def test_specs_checked_against_the_signature() -> None:
    validate_processing_spec({"type": "standardize", "mean": [0, 0, 0], "std": 1}, inputs=(X,))
    validate_processing_spec({"type": "standardize", "mean": [0, 0, 0], "std": 1, "axis": 1}, inputs=(IMG,))
    validate_processing_spec({"type": "classification", "labels": ["a", "b", "c"]}, outputs=(LOGITS,))
    with pytest.raises(InvalidInput, match="has 3 values along axis -1, the declared mean/std have 2"):
        validate_processing_spec({"type": "standardize", "mean": [0, 0], "std": 1}, inputs=(X,))
    with pytest.raises(InvalidInput, match="names input 'nope'"):
        validate_processing_spec({"type": "scale", "factor": 2, "input": "nope"}, inputs=(X,))
    with pytest.raises(InvalidInput, match="needs a floating-point input"):
        validate_processing_spec({"type": "scale", "factor": 2}, inputs=(TensorSpec("t", "INT64", (-1,)),))
    with pytest.raises(InvalidInput, match="2 labels but output 'logits'"):
        validate_processing_spec({"type": "classification", "labels": ["a", "b"]}, outputs=(LOGITS,))
    with pytest.raises(InvalidInput, match="names output 'p'"):
        validate_processing_spec({"type": "classification", "output": "p"}, outputs=(LOGITS,))


def test_classification_softmax_labels_and_confidence() -> None:
    logits = np.array([[1.0, 3.0, 0.0], [5.0, 1.0, 1.0]], np.float32)
    post = compile_postprocessor({"type": "classification", "labels": ["cat", "dog", "eel"]})
    result = post({"logits": logits}, (LOGITS,))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert result.predictions == ["dog", "cat"] and result.labels == ["dog", "cat"]
    np.testing.assert_allclose(result.confidence_scores, expected.max(axis=1), rtol=1e-6)
    assert result.probabilities is not None
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-6)


def test_classification_on_probabilities_index_labels_and_named_output() -> None:
    probs = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    post = compile_postprocessor({"type": "classification", "softmax": False, "output": "p"})
    result = post({"logits": np.zeros((2, 2), np.float32), "p": probs})
    assert result.predictions == [1, 0] and result.labels == ["1", "0"]
    np.testing.assert_allclose(result.confidence_scores, [0.8, 0.6], rtol=1e-6)
    post = compile_postprocessor({"type": "classification", "labels": [0, 7]})
    assert post({"p": probs}).predictions == [7, 0]


def test_binary_classification_from_one_logit() -> None:
    post = compile_postprocessor({"type": "classification", "labels": ["no", "yes"]})
    result = post({"score": np.array([[2.0], [-2.0]], np.float32)})
    assert result.predictions == ["yes", "no"]
    np.testing.assert_allclose(result.confidence_scores, [1 / (1 + np.exp(-2.0))] * 2, rtol=1e-6)


def test_classification_runtime_mismatch_is_backend_failure() -> None:
    post = compile_postprocessor({"type": "classification", "labels": ["a", "b", "c"]})
    with pytest.raises(BackendFailure, match="3 labels but the model scores 4 classes"):
        post({"logits": np.zeros((1, 4), np.float32)})
    with pytest.raises(BackendFailure, match="did not return"):
        compile_postprocessor({"type": "classification", "output": "x"})({"logits": np.zeros((1, 4))})


def test_regression_and_raw_multi_output_rows() -> None:
    post = compile_postprocessor({"type": "regression"})
    assert post({"y": np.array([[1.5], [2.5]], np.float32)}).predictions == [1.5, 2.5]
    raw = compile_postprocessor(None)
    specs = (TensorSpec("b", "FP32", (-1,)), TensorSpec("a", "BYTES", (-1,)))
    result = raw({"a": np.array([b"x", b"y"], dtype=object), "b": np.array([1.0, 2.0])}, specs)
    assert result.predictions == [{"b": 1.0, "a": "x"}, {"b": 2.0, "a": "y"}]
