"""``ModelInferRequest`` -> numpy and results -> ``ModelInferResponse``: the gRPC twin of ``codecs.v2``.

Inputs come either typed (``contents.fp32_contents`` ...) or all raw (``raw_input_contents``, one bytes entry
per input, in the binary extension's layout: little-endian row-major, BOOL one byte, BYTES each a uint32 LE
length then the bytes). Raw numeric inputs are ``np.frombuffer`` views (zero-copy, read-only). Outputs are raw
when the request's inputs were (tritonclient's default), or when a datatype has no typed field (FP16, BF16);
otherwise typed, so a client that writes ``contents`` reads ``contents``. BYTES are passed through as bytes
both ways, byte-exact.

Only :class:`~service.errors.InvalidInput` and :class:`~service.errors.NotImplementedFeature` leave the
decoder, whatever the message holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api.grpc._protocol import pb
from service.codecs.v2 import (
    MAX_REQUEST_ID,
    DecodedTensor,
    OutputRequest,
    bytes_element,
    checked_shape,
    decode_binary_tensor,
    encode_binary_tensor,
    prepare_outputs,
)
from service.errors import InvalidInput, NotImplementedFeature
from service.inference.dataplane import InferResult
from service.inference.parameters import SEQUENCE_CONTROLS, refuse_sequence_controls
from service.plugins.contract import V2_TO_NUMPY

__all__ = ("GrpcInferRequest", "decode_infer_request", "encode_infer_response")

_TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field of each datatype (FP16 and BF16 have none: raw only)."""
_DATATYPES = ", ".join(V2_TO_NUMPY)
_WIDE = {"i": np.dtype(np.int64), "u": np.dtype(np.uint64)}


@dataclass(slots=True)
class GrpcInferRequest:
    """A decoded ``ModelInferRequest``: inputs shaped and typed, ready for validation."""

    id: str
    inputs: list[DecodedTensor]
    outputs: list[OutputRequest] | None
    timeout_us: int | None
    raw: bool
    """The inputs came in ``raw_input_contents`` (then so do the outputs)."""


def _parameter(value: Any) -> object:
    """The value of an ``InferParameter`` (a oneof), or None when unset."""
    which = value.WhichOneof("parameter_choice")
    return getattr(value, which) if which else None


def _refuse_shared_memory(parameters: Mapping[str, Any], what: str) -> None:
    if "shared_memory_region" in parameters:
        raise NotImplementedFeature(f"{what}: the shared-memory extension is not supported")


def decode_infer_request(request: Any) -> GrpcInferRequest:
    """Decode a ``ModelInferRequest`` (see the module docstring); raises InvalidInput naming the problem."""
    if len(request.id) > MAX_REQUEST_ID:
        raise InvalidInput(f"request id is longer than {MAX_REQUEST_ID} characters")
    parameters = request.parameters
    if any(name in parameters for name in SEQUENCE_CONTROLS):
        refuse_sequence_controls(
            {name: _parameter(parameters[name]) for name in SEQUENCE_CONTROLS if name in parameters}
        )
    timeout_us = None
    if "timeout" in parameters:
        timeout = _parameter(parameters["timeout"])
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidInput("parameters['timeout'] must be a non-negative int64_param (microseconds)")
        timeout_us = timeout or None
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: "
            "send one entry per input, or typed contents for every input"
        )
    inputs = [_decode_input(tensor, raw[index] if raw else None) for index, tensor in enumerate(request.inputs)]
    return GrpcInferRequest(request.id, inputs, _requested_outputs(request.outputs), timeout_us, bool(raw))


def _decode_input(tensor: Any, raw: bytes | None) -> DecodedTensor:
    name = tensor.name
    datatype = tensor.datatype
    dtype = V2_TO_NUMPY.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input '{name}': unknown datatype '{datatype[:32]}' (expected one of {_DATATYPES})")
    shape = checked_shape(name, tensor.shape)
    _refuse_shared_memory(tensor.parameters, f"input '{name}'")
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidInput(f"input '{name}' has both typed contents and raw_input_contents")
        array = decode_binary_tensor(raw, 0, len(raw), datatype, shape, name=name, size_source="raw_input_contents")
        return DecodedTensor(name, datatype, shape, array)
    field = _TYPED_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(f"input '{name}': {datatype} has no typed contents field: send it in raw_input_contents")
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(
            f"input '{name}': shape {list(shape)} needs {count} values, contents.{field} has {len(values)}"
        )
    return DecodedTensor(name, datatype, shape, _typed_array(values, datatype, dtype, name).reshape(shape))


def _typed_array(values: Sequence[Any], datatype: str, dtype: np.dtype[Any], name: str) -> np.ndarray:
    kind = dtype.kind
    if kind == "O":
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    if kind in "iu" and dtype.itemsize < 4:  # int_contents / uint_contents are 32-bit: INT8 and INT16 may overflow
        wide = np.fromiter(values, _WIDE[kind], len(values))
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(f"input '{name}': a value is out of range for {datatype}")
        return wide.astype(dtype)
    return np.fromiter(values, dtype, len(values))


def _requested_outputs(outputs: Sequence[Any]) -> list[OutputRequest] | None:
    if not outputs:
        return None
    requested: list[OutputRequest] = []
    seen: set[str] = set()
    for output in outputs:
        name = output.name
        if name in seen:
            raise InvalidInput(f"output '{name}' is requested twice")
        seen.add(name)
        parameters = output.parameters
        _refuse_shared_memory(parameters, f"output '{name}'")
        classes = _parameter(parameters["classification"]) if "classification" in parameters else 0
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
            raise InvalidInput(f"output '{name}': parameters['classification'] must be a non-negative int64_param")
        requested.append(OutputRequest(name, None, classes))
    return requested


def encode_infer_response(result: InferResult, request: GrpcInferRequest) -> Any:
    """The ``ModelInferResponse`` for ``result``: outputs in wire order, raw or typed (module docstring)."""
    prepared = prepare_outputs(result.outputs, result.output_specs, request.outputs)
    raw = request.raw or any(output.datatype not in _TYPED_FIELDS for output in prepared)
    response = pb.ModelInferResponse(model_name=result.model, model_version=result.version, id=request.id)
    for output in prepared:
        array = output.array
        tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(bytes(encode_binary_tensor(array, output.datatype)))
        elif output.datatype == "BYTES":
            tensor.contents.bytes_contents.extend([bytes_element(item) for item in array.reshape(-1)])
        else:
            getattr(tensor.contents, _TYPED_FIELDS[output.datatype]).extend(array.reshape(-1).tolist())
    return response
