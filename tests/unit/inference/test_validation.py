"""InputValidator: every mismatch is an InvalidInput naming expected vs received."""

from __future__ import annotations

import numpy as np
import pytest

from service.codecs.v2 import DecodedTensor
from service.errors import InvalidInput
from service.inference.validation import InputValidator
from service.plugins.contract import TensorSpec

MLP = InputValidator.from_specs((TensorSpec("input", "FP32", (-1, 784)),), max_batch_size=8)
TWO = InputValidator.from_specs(
    (TensorSpec("image", "FP32", (-1, 3, -1, -1)), TensorSpec("mask", "BOOL", (-1, 5))), max_batch_size=4
)


def tensor(name: str, array: np.ndarray, datatype: str | None = None) -> DecodedTensor:
    return DecodedTensor(name, datatype or ("BOOL" if array.dtype == bool else "FP32"), array.shape, array)


def test_valid_single_input_passes_through_without_copy() -> None:
    x = np.zeros((2, 784), np.float32)
    out = MLP.validate([tensor("input", x)])
    assert list(out) == ["input"] and out["input"] is x


def test_valid_multi_input_is_returned_in_signature_order() -> None:
    image = np.zeros((2, 3, 7, 9), np.float32)
    mask = np.zeros((2, 5), bool)
    out = TWO.validate([tensor("mask", mask), tensor("image", image)])
    assert list(out) == ["image", "mask"]
    assert TWO.validate({"image": image, "mask": mask}).keys() == {"image", "mask"}
    assert TWO.batchable and TWO.input_names == ("image", "mask")


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([tensor("input", np.zeros((1, 783), np.float32))], "input 'input': expected shape [-1, 784], got [1, 783]"),
        ([tensor("input", np.zeros((784,), np.float32))], "input 'input': expected shape [-1, 784], got [784]"),
        ([tensor("input", np.zeros((1, 784), np.int64), "INT64")], "input 'input': expected datatype FP32, got INT64"),
        (
            [tensor("wrong", np.zeros((1, 784), np.float32))],
            "unexpected input 'wrong': the model's inputs are ['input']",
        ),
        ([], "missing input ['input']"),
        ([tensor("input", np.zeros((9, 784), np.float32))], "batch of 9 rows exceeds the maximum batch size 8"),
        ([tensor("input", np.zeros((0, 784), np.float32))], "batch dimension must be at least 1"),
        ([tensor("input", np.full((1, 784), np.nan, np.float32))], "784 values are NaN or infinite"),
        ([tensor("input", np.array([[np.inf] + [0.0] * 783], np.float32))], "1 value is NaN or infinite"),
        (
            [tensor("input", np.zeros((1, 784), np.float32)), tensor("input", np.zeros((1, 784), np.float32))],
            "input 'input' appears more than once",
        ),
    ],
)
def test_single_input_refusals(tensors: list[DecodedTensor], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        MLP.validate(tensors)
    assert message in info.value.message


def test_multi_input_refusals() -> None:
    image = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(InvalidInput, match=r"missing input \['mask'\]"):
        TWO.validate([tensor("image", image)])
    with pytest.raises(InvalidInput, match="'image' has 2 rows, 'mask' has 1"):
        TWO.validate([tensor("image", image), tensor("mask", np.zeros((1, 5), bool))])
    with pytest.raises(InvalidInput, match=r"expected shape \[-1, 3, -1, -1\], got \[2, 4, 4, 4\]"):
        TWO.validate([tensor("image", np.zeros((2, 4, 4, 4), np.float32)), tensor("mask", np.zeros((2, 5), bool))])


def test_mapping_form_checks_numpy_dtypes() -> None:
    with pytest.raises(InvalidInput, match="expected datatype FP32, got numpy float64"):
        MLP.validate({"input": np.zeros((1, 784))})
    with pytest.raises(InvalidInput, match="expected an array"):
        MLP.validate({"input": [[0.0] * 784]})  # type: ignore[dict-item]
    text = InputValidator.from_specs((TensorSpec("t", "BYTES", (-1,)),), 4)
    assert text.validate({"t": np.array([b"a", b"b"], dtype=object)})["t"].shape == (2,)
    assert text.validate({"t": np.array(["a"])})["t"].shape == (1,)


def test_fixed_batch_dimension_is_not_batchable() -> None:
    fixed = InputValidator.from_specs((TensorSpec("x", "FP32", (1, 3)),), 8)
    assert not fixed.batchable
    fixed.validate({"x": np.zeros((1, 3), np.float32)})
    with pytest.raises(InvalidInput, match=r"expected shape \[1, 3\], got \[2, 3\]"):
        fixed.validate({"x": np.zeros((2, 3), np.float32)})


def test_integer_inputs_skip_the_finite_check_and_max_batch_must_be_positive() -> None:
    ints = InputValidator.from_specs((TensorSpec("x", "INT32", (-1,)),), 4)
    ints.validate([DecodedTensor("x", "INT32", (2,), np.array([1, 2], np.int32))])
    with pytest.raises(ValueError, match="max_batch_size"):
        InputValidator.from_specs((TensorSpec("x", "INT32", (-1,)),), 0)
