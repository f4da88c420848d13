"""The simple predict endpoint's bodies <-> numpy: ``{"inputs": [instance, ...]}`` in, predictions out.

An instance is the model input without its batch dimension. For a single-input model the instances are
decoded by a msgspec decoder typed for that input's rank and datatype (``list[list[float]]`` for
``(-1, 784)`` FP32), so a string where a number belongs, or a wrong nesting depth, is refused with the JSON
path of the offending value; numpy then refuses ragged instances. A model with several inputs takes one
JSON object per instance, keyed by input name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from service.codecs.v2 import DecodedTensor
from service.errors import InvalidInput
from service.inference.processing import Postprocessed
from service.plugins.contract import TensorSpec
from service.schemas.v1 import PredictResponse

__all__ = ("decode_predict_request", "encode_predict_response")

_ELEMENT: dict[str, Any] = {"f": float, "i": int, "u": int, "b": bool, "O": str}
_encoder = msgspec.json.Encoder()


@functools.lru_cache(maxsize=256)
def _decoder(specs: tuple[TensorSpec, ...]) -> msgspec.json.Decoder[Any]:
    if len(specs) != 1:
        inputs: Any = list[dict[str, Any]]
    else:
        spec = specs[0]
        inputs = _ELEMENT[spec.dtype.kind]
        for _ in range(max(len(spec.shape), 1)):  # instance rank + the list of instances
            inputs = list[inputs]
    request = msgspec.defstruct("PredictRequest", [("inputs", inputs)], forbid_unknown_fields=True, module=__name__)
    return msgspec.json.Decoder(request)


def _stack(values: list[Any], spec: TensorSpec, where: str) -> np.ndarray:
    if not values:
        raise InvalidInput("'inputs' must hold at least one instance")
    dtype = spec.dtype
    try:
        if dtype.kind == "O":
            array = np.array(values, dtype=object)
            if array.size and not all(isinstance(v, str) for v in array.reshape(-1)):
                raise InvalidInput(f"{where}: BYTES instances must hold strings")
            flat = array.reshape(-1)
            for i in range(flat.size):
                flat[i] = flat[i].encode()
            return array
        with np.errstate(over="ignore", invalid="ignore"):  # FP overflow -> inf, refused by validation
            return np.array(values, dtype=dtype)
    except OverflowError:
        raise InvalidInput(f"{where}: a value is out of range for {spec.datatype}") from None
    except ValueError as exc:
        raise InvalidInput(f"{where}: instances must each be shaped {list(spec.shape[1:])}: {exc}") from None


def _strict(values: list[Any], spec: TensorSpec, where: str) -> np.ndarray:
    """Array from untyped JSON values (multi-input path): numbers for numeric inputs, no silent string parsing."""
    try:
        probe = np.array(values)
    except ValueError as exc:
        raise InvalidInput(f"{where}: instances must each be shaped {list(spec.shape[1:])}: {exc}") from None
    kind = spec.dtype.kind
    allowed = {"f": "biuf", "i": "biu", "u": "biu", "b": "b", "O": "U"}[kind]
    if probe.size and probe.dtype.kind not in allowed:
        raise InvalidInput(f"{where}: values must be {spec.datatype}, got {probe.dtype.kind!r}-kind data")
    return _stack(values, spec, where)


def decode_predict_request(body: bytes | memoryview, input_specs: Sequence[TensorSpec]) -> list[DecodedTensor]:
    """Decode a predict body into one batch tensor per input, shaped ``(instances, *instance_shape)``.

    Shapes are checked afterwards by the version's validator, which names expected vs received shapes.
    """
    specs = tuple(input_specs)
    if not specs:
        raise InvalidInput("this model takes no inputs")
    try:
        request = _decoder(specs).decode(body)
    except RecursionError:
        raise InvalidInput("malformed JSON: nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid predict request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"malformed JSON: a string is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    instances = request.inputs
    if not instances:
        raise InvalidInput("'inputs' must hold at least one instance")
    if len(specs) == 1:
        spec = specs[0]
        array = _stack(instances, spec, f"input '{spec.name}'")
        return [DecodedTensor(spec.name, spec.datatype, array.shape, array)]
    names = {spec.name for spec in specs}
    for index, instance in enumerate(instances):
        if instance.keys() != names:
            missing = sorted(names - instance.keys())
            extra = sorted(instance.keys() - names)
            raise InvalidInput(
                f"instance {index}: expected inputs {sorted(names)}"
                + (f", missing {missing}" if missing else "")
                + (f", unexpected {extra}" if extra else "")
            )
    tensors = []
    for spec in specs:
        array = _strict([instance[spec.name] for instance in instances], spec, f"input '{spec.name}'")
        tensors.append(DecodedTensor(spec.name, spec.datatype, array.shape, array))
    return tensors


def encode_predict_response(
    *,
    model_name: str,
    model_version: str,
    postprocessed: Postprocessed,
    preprocessing_ms: float,
    inference_ms: float,
    postprocessing_ms: float,
) -> bytes:
    """Encode the predict response from one request's postprocessed rows and the data plane's timings."""
    response = PredictResponse(
        model_name=model_name,
        model_version=model_version,
        predictions=postprocessed.predictions,
        confidence_scores=postprocessed.confidence_scores,
        inference_time_ms=round(inference_ms, 3),
        preprocessing_time_ms=round(preprocessing_ms, 3),
        postprocessing_time_ms=round(postprocessing_ms, 3),
    )
    return _encoder.encode(response)
