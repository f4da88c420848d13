"""Per-version pre- and postprocessing declared in the manifest, applied in the service (not in clients).

Specs are plain JSON objects stored with the version. They are validated when a version is registered
(:func:`validate_processing_spec`, raising :class:`~service.errors.InvalidInput` with a clear message) and
compiled once per loaded version (:func:`compile_preprocessor`, :func:`compile_postprocessor`) into small
vectorised callables that the request path runs on whole arrays.

Preprocessing (applied to the named input, else the first one, before batching)::

    {"type": "standardize", "mean": 0.5 | [..], "std": 0.25 | [..], "input": "x"?, "axis": -1?}
    {"type": "scale", "factor": 0.00392, "offset": 0.0?, "input": "x"?}

A list ``mean``/``std`` runs along ``axis`` of the batch tensor (default: the last one; use ``1`` for
per-channel values of ``(batch, C, H, W)`` images).

Postprocessing (used by the simple predict endpoint; V2 infer returns raw tensors)::

    {"type": "classification", "labels": [..]?, "softmax": true?, "output": "logits"?}
    {"type": "regression", "output": "y"?}

Classification reads ``(batch, classes)`` scores (``(batch,)``/``(batch, 1)`` = one binary logit or
probability), applies softmax (or sigmoid) unless ``softmax`` is false (the model already outputs
probabilities), and yields per row the label (or the class index), its probability and all probabilities.
Without postprocessing, predictions are the raw output rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
import numpy as np

from service.errors import BackendFailure, InvalidInput
from service.plugins.contract import TensorSpec

__all__ = (
    "Postprocessed",
    "Postprocessor",
    "Preprocessor",
    "compile_postprocessor",
    "compile_preprocessor",
    "validate_processing_spec",
)

Preprocessor = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
"""``(inputs) -> inputs``: validated arrays in, arrays for the engine out (same names)."""

_MAX_VECTOR = 1 << 24


class Postprocessed(NamedTuple):
    """What the predict endpoint returns for one request, row by row."""

    predictions: list[Any]
    """Per row: the label (or class index) for classification, else the raw output row."""
    confidence_scores: list[float] | None
    """Per row: probability of the predicted class (classification only)."""
    probabilities: np.ndarray | None
    """``(batch, classes)`` probabilities (classification only)."""
    labels: list[str] | None
    """Per row: the predicted class as a string, for the per-version prediction distribution."""


# -- spec shapes ------------------------------------------------------------------------------------------

_Number = float
_Vector = float | list[float]


class _Standardize(msgspec.Struct, tag="standardize", tag_field="type", forbid_unknown_fields=True):
    mean: _Vector
    std: _Vector
    input: str | None = None
    axis: int = -1


class _Scale(msgspec.Struct, tag="scale", tag_field="type", forbid_unknown_fields=True):
    factor: _Number
    offset: _Number = 0.0
    input: str | None = None


class _Classification(msgspec.Struct, tag="classification", tag_field="type", forbid_unknown_fields=True):
    labels: list[str | int] | None = None
    softmax: bool = True
    output: str | None = None


class _Regression(msgspec.Struct, tag="regression", tag_field="type", forbid_unknown_fields=True):
    output: str | None = None


_PRE_TYPES = ("standardize", "scale")
_POST_TYPES = ("classification", "regression")


def _parse(spec: Mapping[str, Any], kinds: Any, stage: str, allowed: tuple[str, ...]) -> Any:
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"{stage} must be a JSON object, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in allowed:
        raise InvalidInput(f"{stage}: unknown type {kind!r}; expected one of {', '.join(allowed)}")
    try:
        return msgspec.convert(dict(spec), type=kinds)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"{stage} ({kind}): {exc}") from None


def _vector(value: float | list[float], what: str, *, positive: bool = False) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1 and not 0 < array.size <= _MAX_VECTOR:
        raise InvalidInput(f"preprocessing: '{what}' must be a number or a non-empty list of numbers")
    if not np.isfinite(array).all():
        raise InvalidInput(f"preprocessing: '{what}' must be finite")
    if positive and (array <= 0).any():
        raise InvalidInput(f"preprocessing: '{what}' must be greater than 0")
    return array


def _empty(spec: Mapping[str, Any] | None) -> bool:
    return spec is None or (isinstance(spec, Mapping) and not spec)


def validate_processing_spec(
    spec: Mapping[str, Any] | None,
    *,
    inputs: Sequence[TensorSpec] = (),
    outputs: Sequence[TensorSpec] = (),
) -> None:
    """Check a pre- or postprocessing spec (told apart by ``type``); InvalidInput says what is wrong.

    With the version's signature (``inputs``/``outputs``) it also checks the named tensor exists, that
    standardize/scale target a floating input, and that vector and label lengths fit fixed dimensions.
    Runs at registration, before the artifact is loaded.
    """
    if _empty(spec):
        return
    assert spec is not None
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind in _POST_TYPES:
        _compile_post(spec, outputs)
    else:
        _compile_pre(spec, inputs)


# -- preprocessing ------------------------------------------------------------------------------------------


class _AffinePreprocessor:
    """``x * scale + shift`` on one input, with scale/shift broadcast along ``axis``; returns a new dict."""

    __slots__ = ("_axis", "_cache", "_input", "_scale", "_shift")

    def __init__(self, input_name: str | None, scale: np.ndarray, shift: np.ndarray, axis: int) -> None:
        self._input = input_name
        self._scale = scale
        self._shift = shift
        self._axis = axis
        self._cache: dict[tuple[int, np.dtype[Any]], tuple[np.ndarray, np.ndarray]] = {}

    def _params(self, x: np.ndarray, name: str, dtype: np.dtype[Any]) -> tuple[np.ndarray, np.ndarray]:
        key = (x.ndim, dtype)
        cached = self._cache.get(key)
        length = max(self._scale.size, self._shift.size) if (self._scale.ndim or self._shift.ndim) else 0
        if length:
            axis = self._axis if self._axis >= 0 else x.ndim + self._axis
            if not 0 <= axis < x.ndim:
                raise InvalidInput(f"preprocessing: input '{name}' has no axis {self._axis} (shape {list(x.shape)})")
            if x.shape[axis] != length:
                raise InvalidInput(
                    f"preprocessing: input '{name}' has {x.shape[axis]} values along axis {axis}, "
                    f"the declared mean/std have {length}"
                )
        if cached is None:
            if length:
                shape = [1] * x.ndim
                shape[axis] = length
                scale = np.broadcast_to(self._scale, (length,)).reshape(shape).astype(dtype)
                shift = np.broadcast_to(self._shift, (length,)).reshape(shape).astype(dtype)
            else:
                scale, shift = self._scale.astype(dtype), self._shift.astype(dtype)
            cached = self._cache[key] = (scale, shift)
        return cached

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = self._input if self._input is not None else next(iter(inputs))
        x = inputs.get(name)
        if x is None:
            raise BackendFailure(f"preprocessing names input '{name}', which the model does not have")
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
        scale, shift = self._params(x, name, dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            y = x * scale
            y += shift
        result = dict(inputs)
        result[name] = y.astype(dtype, copy=False)
        return result


def _compile_pre(spec: Mapping[str, Any], inputs: Sequence[TensorSpec] = ()) -> _AffinePreprocessor:
    parsed = _parse(spec, _Standardize | _Scale, "preprocessing", _PRE_TYPES)
    if isinstance(parsed, _Standardize):
        mean = _vector(parsed.mean, "mean")
        std = _vector(parsed.std, "std", positive=True)
        if mean.ndim and std.ndim and mean.size != std.size:
            raise InvalidInput(f"preprocessing: 'mean' has {mean.size} values but 'std' has {std.size}")
        scale, shift, axis = 1.0 / std, -mean / std, parsed.axis
    else:
        factor, offset = float(parsed.factor), float(parsed.offset)
        if not (math.isfinite(factor) and math.isfinite(offset)):
            raise InvalidInput("preprocessing: 'factor' and 'offset' must be finite")
        scale, shift, axis = np.asarray(factor), np.asarray(offset), -1
    if inputs:
        target = _find(inputs, parsed.input, "input", "preprocessing")
        if target.datatype not in ("FP16", "FP32", "FP64"):
            raise InvalidInput(
                f"preprocessing: input '{target.name}' is {target.datatype}; {spec['type']} "
                "needs a floating-point input (FP16, FP32 or FP64)"
            )
        length = max(np.size(scale), np.size(shift)) if (np.ndim(scale) or np.ndim(shift)) else 0
        if length:
            dims = target.shape
            index = axis if axis >= 0 else len(dims) + axis
            if not 0 <= index < len(dims):
                raise InvalidInput(f"preprocessing: input '{target.name}' (shape {list(dims)}) has no axis {axis}")
            if dims[index] >= 0 and dims[index] != length:
                raise InvalidInput(
                    f"preprocessing: input '{target.name}' has {dims[index]} values along axis {axis}, "
                    f"the declared mean/std have {length}"
                )
    return _AffinePreprocessor(parsed.input, np.asarray(scale), np.asarray(shift), axis)


def compile_preprocessor(spec: Mapping[str, Any] | None) -> Preprocessor | None:
    """The preprocessing callable for a version, or None when it declares none. InvalidInput if the spec is bad."""
    if _empty(spec):
        return None
    assert spec is not None
    return _compile_pre(spec)


# -- postprocessing -----------------------------------------------------------------------------------------


class Postprocessor:
    """Turns one request's engine outputs into predict-endpoint rows. Built by :func:`compile_postprocessor`."""

    __slots__ = ()

    def __call__(
        self, outputs: Mapping[str, np.ndarray], output_specs: Sequence[TensorSpec] = ()
    ) -> Postprocessed:  # pragma: no cover - overridden
        raise NotImplementedError


def _pick(outputs: Mapping[str, np.ndarray], output_specs: Sequence[TensorSpec], name: str | None) -> np.ndarray:
    if name is None:
        name = output_specs[0].name if output_specs else next(iter(outputs))
    value = outputs.get(name)
    if value is None:
        raise BackendFailure(f"postprocessing names output '{name}', which the engine did not return")
    return np.asarray(value)


class _RawPostprocessor(Postprocessor):
    """No postprocessing: each row of the output (an object by output name when there are several)."""

    __slots__ = ("_output", "_squeeze")

    def __init__(self, output: str | None = None, *, squeeze: bool = False) -> None:
        self._output = output
        self._squeeze = squeeze

    def __call__(self, outputs: Mapping[str, np.ndarray], output_specs: Sequence[TensorSpec] = ()) -> Postprocessed:
        if self._output is not None or len(outputs) == 1:
            array = _pick(outputs, output_specs, self._output)
            if self._squeeze and array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            return Postprocessed(_rows(array), None, None, None)
        names = [s.name for s in output_specs if s.name in outputs] or list(outputs)
        names.extend(n for n in outputs if n not in names)
        columns = {name: _rows(np.asarray(outputs[name])) for name in names}
        count = len(next(iter(columns.values()))) if columns else 0
        return Postprocessed([{name: col[i] for name, col in columns.items()} for i in range(count)], None, None, None)


def _rows(array: np.ndarray) -> list[Any]:
    if array.dtype.kind in "OS":
        return [_text(item) for item in array] if array.ndim == 1 else [_rows(row) for row in array]
    return array.tolist()


def _text(item: Any) -> Any:
    if isinstance(item, (bytes, np.bytes_)):
        return bytes(item).decode(errors="replace")
    return item


class _ClassificationPostprocessor(Postprocessor):
    __slots__ = ("_labels", "_label_strings", "_output", "_softmax")

    def __init__(self, labels: list[str | int] | None, softmax: bool, output: str | None) -> None:
        self._labels = labels
        self._label_strings = [str(label) for label in labels] if labels is not None else None
        self._softmax = softmax
        self._output = output

    def __call__(self, outputs: Mapping[str, np.ndarray], output_specs: Sequence[TensorSpec] = ()) -> Postprocessed:
        scores = _pick(outputs, output_specs, self._output)
        if scores.dtype.kind not in "biuf":
            raise BackendFailure(f"classification needs numeric scores, the output is {scores.dtype}")
        if scores.dtype.kind != "f":
            scores = scores.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
                positive = scores.reshape(-1)
                if self._softmax:
                    positive = 1.0 / (1.0 + np.exp(-positive))
                probs = np.stack([1.0 - positive, positive], axis=1)
            elif scores.ndim == 2:
                if self._softmax:
                    shifted = scores - scores.max(axis=1, keepdims=True)
                    probs = np.exp(shifted)
                    probs /= probs.sum(axis=1, keepdims=True)
                else:
                    probs = scores
            else:
                raise BackendFailure(f"classification needs (batch, classes) scores, got shape {list(scores.shape)}")
        classes = probs.shape[1]
        index = probs.argmax(axis=1)
        confidence = probs[np.arange(probs.shape[0]), index].tolist()
        if self._labels is not None:
            if len(self._labels) != classes:
                raise BackendFailure(
                    f"classification declares {len(self._labels)} labels but the model scores {classes} classes"
                )
            assert self._label_strings is not None
            strings = [self._label_strings[i] for i in index.tolist()]
            predictions = [self._labels[i] for i in index.tolist()]
        else:
            predictions = index.tolist()
            strings = [str(i) for i in predictions]
        return Postprocessed(predictions, confidence, probs, strings)


def _find(specs: Sequence[TensorSpec], name: str | None, what: str, stage: str) -> TensorSpec:
    if name is None:
        return specs[0]
    for spec in specs:
        if spec.name == name:
            return spec
    raise InvalidInput(f"{stage} names {what} '{name}', but the model's {what}s are {[s.name for s in specs]}")


def _compile_post(spec: Mapping[str, Any], outputs: Sequence[TensorSpec] = ()) -> Postprocessor:
    parsed = _parse(spec, _Classification | _Regression, "postprocessing", _POST_TYPES)
    if outputs:
        target = _find(outputs, parsed.output, "output", "postprocessing")
        if isinstance(parsed, _Classification) and parsed.labels is not None:
            dims = target.shape
            classes = 2 if len(dims) == 1 or (len(dims) == 2 and dims[1] == 1) else (dims[1] if len(dims) == 2 else -1)
            if classes >= 0 and classes != len(parsed.labels):
                raise InvalidInput(
                    f"postprocessing: {len(parsed.labels)} labels but output '{target.name}' "
                    f"(shape {list(dims)}) scores {classes} classes"
                )
    if isinstance(parsed, _Classification):
        if parsed.labels is not None and not parsed.labels:
            raise InvalidInput("postprocessing (classification): 'labels' must not be empty")
        return _ClassificationPostprocessor(parsed.labels, parsed.softmax, parsed.output)
    return _RawPostprocessor(parsed.output, squeeze=True)


_RAW = _RawPostprocessor()


def compile_postprocessor(spec: Mapping[str, Any] | None) -> Postprocessor:
    """The postprocessing callable for a version (raw rows when it declares none). InvalidInput if bad."""
    if _empty(spec):
        return _RAW
    assert spec is not None
    return _compile_post(spec)
