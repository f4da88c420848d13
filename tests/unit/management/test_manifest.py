"""The registration manifest: every rule checkable without the artifact, each refusal naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.errors import InvalidInput
from service.management.manifest import (
    MAX_CONFIG_BYTES,
    MAX_DOCUMENT_BYTES,
    MAX_MANIFEST_BYTES,
    Signature,
    VersionManifest,
    manifest_from,
    parse_manifest,
)
from service.plugins import TensorSpec

FULL: dict[str, Any] = {
    "backend": "pytorch",
    "version": "v1.2_rc-3",
    "architecture": "mlp",
    "architecture_config": {"input_dim": 4, "hidden": [8], "num_classes": 3},
    "signature": {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
    },
    "preprocessing": {"type": "standardize", "mean": 0.5, "std": 2.0},
    "postprocessing": {"type": "classification", "labels": ["a", "b", "c"]},
    "card": {"summary": "tiny"},
    "description": "a tiny MLP",
}


def _refusal(manifest: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_manifest(json.dumps(manifest))
    return caught.value.message


def test_a_full_manifest_parses_and_hands_the_loader_tensor_specs() -> None:
    manifest = parse_manifest(json.dumps(FULL))
    assert manifest.version == "v1.2_rc-3" and manifest.architecture_config["hidden"] == [8]
    assert manifest.signature is not None
    inputs, outputs = manifest.signature.specs()
    assert inputs == (TensorSpec("x", "FP32", (-1, 4)),) and outputs == (TensorSpec("logits", "FP32", (-1, 3)),)
    assert all(type(spec) is TensorSpec for spec in (*inputs, *outputs))


def test_defaults_and_the_two_edges_agree() -> None:
    minimal = parse_manifest('{"backend": "onnx"}')
    assert minimal == VersionManifest(backend="onnx") == manifest_from({"backend": "onnx", "version": None})
    assert (minimal.architecture_config, minimal.card, minimal.signature) == ({}, {}, None)
    assert manifest_from(FULL) == parse_manifest(json.dumps(FULL))


def test_the_openapi_example_is_a_valid_manifest() -> None:
    (example,) = VersionManifest.model_json_schema()["examples"]
    assert VersionManifest.model_validate(example).backend == example["backend"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"backend": "../onnx"}, "backend: invalid plugin name '../onnx'"),
        ({"backend": 3}, "backend: Input should be a valid string"),
        ({"version": "-1"}, "version: invalid version label '-1'"),
        ({"version": "x" * 65}, "version: invalid version label"),
        ({"version": 2}, "version: Input should be a valid string"),
        ({"architecture": "a/b"}, "architecture: invalid plugin name"),
        ({"source_url": "http://example.com/m.onnx"}, "source_url: Extra inputs are not permitted"),
        ({"architecture_config": [1]}, "architecture_config: Input should be an object"),
        ({"architecture_config": {"not ok": 1}}, "architecture_config: key 'not ok' is not a Python identifier"),
        ({"architecture_config": {"w": "x" * MAX_CONFIG_BYTES}}, f"the limit is {MAX_CONFIG_BYTES}"),
        ({"card": {"text": "x" * MAX_DOCUMENT_BYTES}}, f"card: is {MAX_DOCUMENT_BYTES + 11} bytes of JSON"),
        ({"card": "summary"}, "card: Input should be an object"),
        ({"description": "x" * 5000}, "description: String should have at most 4096 characters"),
        ({"preprocessing": {"type": "standardize", "mean": "a", "std": 1}}, "preprocessing: "),
        ({"postprocessing": {"type": "classification", "softmax": "yes"}}, "postprocessing: "),
        ({"signature": {"inputs": [], "extra": []}}, "signature.extra: Extra inputs are not permitted"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, Any], needle: str) -> None:
    message = _refusal({**FULL, **change})
    assert message.startswith("invalid manifest: ") and needle in message, message


@pytest.mark.parametrize(
    ("tensor", "needle"),
    [
        ({"name": "x", "datatype": "FP8", "shape": [-1, 4]}, "signature.inputs.0.datatype: unknown V2 datatype 'FP8'"),
        ({"name": "x", "datatype": "fp32", "shape": [-1, 4]}, "expected one of BOOL, UINT8"),
        ({"name": "x", "datatype": "FP32", "shape": [-2, 4]}, "signature.inputs.0.shape.0: Input should be greater"),
        (
            {"name": "x", "datatype": "FP32", "shape": [-1, 4.0]},
            "signature.inputs.0.shape.1: expected an integer, got float",
        ),
        (
            {"name": "x", "datatype": "FP32", "shape": [-1, True]},
            "signature.inputs.0.shape.1: expected an integer, got bool",
        ),
        (
            {"name": "x", "datatype": "FP32", "shape": [-1, "4"]},
            "signature.inputs.0.shape.1: expected an integer, got str",
        ),
        ({"name": "x", "datatype": "FP32", "shape": []}, "signature.inputs.0.shape: Tuple should have at least 1"),
        ({"name": "x", "datatype": "FP32", "shape": [1] * 33}, "signature.inputs.0.shape: Tuple should have at most"),
        ({"name": "x", "datatype": "FP32", "shape": [-1, 2**31]}, "signature.inputs.0.shape.1: Input should be less"),
        ({"name": "", "datatype": "FP32", "shape": [-1]}, "signature.inputs.0.name: String should have at least 1"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "dims": [1]}, "signature.inputs.0.dims: Extra inputs"),
        ({"name": "x", "shape": [-1]}, "signature.inputs.0.datatype: Field required"),
    ],
)
def test_tensor_specs_are_checked(tensor: dict[str, Any], needle: str) -> None:
    message = _refusal({**FULL, "signature": {"inputs": [tensor], "outputs": []}})
    assert needle in message, message


def test_dynamic_and_zero_dims_are_accepted() -> None:
    signature = Signature.model_validate({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1, 0, -1]}]})
    assert signature.specs()[0] == (TensorSpec("x", "BYTES", (-1, 0, -1)),)


def test_tensor_names_are_unique_per_side() -> None:
    twice = {"name": "x", "datatype": "FP32", "shape": [-1]}
    assert "signature.outputs: tensor name 'x' appears twice" in _refusal(
        {**FULL, "signature": {"inputs": [twice], "outputs": [twice, twice]}}
    )


def test_architecture_config_needs_an_architecture() -> None:
    message = _refusal({"backend": "onnx", "architecture_config": {"hidden": 4}})
    assert message == "invalid manifest: architecture_config is given without an architecture to pass it to"


def test_every_problem_is_reported_at_once() -> None:
    message = _refusal({"version": "!", "card": 1})
    assert "backend: Field required" in message and "version: " in message and "card: " in message


@pytest.mark.parametrize("raw", ['{"backend": "onnx"', "", "[1, 2"])
def test_malformed_json(raw: str) -> None:
    with pytest.raises(InvalidInput, match="^manifest is not valid JSON: "):
        parse_manifest(raw)


@pytest.mark.parametrize("raw", ["[]", '"onnx"', "null"])
def test_a_manifest_is_an_object(raw: str) -> None:
    with pytest.raises(InvalidInput, match="^invalid manifest: Input should be an object"):
        parse_manifest(raw)


@pytest.mark.parametrize(
    "raw",
    [
        '{"backend": "pytorch", "architecture": "mlp", "architecture_config": {"scale": NaN}}',
        '{"backend": "onnx", "card": {"score": Infinity}}',
    ],
)
def test_non_json_numbers_never_reach_the_registry(raw: str) -> None:
    with pytest.raises(InvalidInput, match="invalid manifest: .*(NaN|Infinity)"):
        parse_manifest(raw)


def test_python_callers_get_the_same_rules() -> None:
    with pytest.raises(InvalidInput, match="card: must be plain JSON"):
        manifest_from({"backend": "onnx", "card": {"when": object()}})
    with pytest.raises(InvalidInput, match="card: must be plain JSON"):
        manifest_from({"backend": "onnx", "card": {"x": float("nan")}})


def test_an_oversized_manifest_is_refused_before_parsing() -> None:
    raw = '{"backend": "onnx", "card": {"x": "' + "y" * MAX_MANIFEST_BYTES + '"}}'
    with pytest.raises(InvalidInput, match=f"bytes; the limit is {MAX_MANIFEST_BYTES}"):
        parse_manifest(raw)


def test_manifest_is_frozen() -> None:
    manifest = VersionManifest(backend="onnx")
    with pytest.raises(ValueError, match="frozen"):
        manifest.backend = "pytorch"  # type: ignore[misc]


def test_a_list_whose_items_failed_is_not_also_called_too_short() -> None:
    message = _refusal({**FULL, "signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.5]}]}})
    assert message == "invalid manifest: signature.inputs.0.shape.0: expected an integer, got float"


def test_a_flood_of_errors_is_summarised() -> None:
    tensors = [{"name": f"t{i}", "datatype": "FP32", "shape": ["x"]} for i in range(30)]
    message = _refusal({**FULL, "signature": {"inputs": tensors}})
    assert message.count("expected an integer") == 10 and message.endswith("; and 20 more")
