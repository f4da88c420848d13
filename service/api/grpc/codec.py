"""``ModelInferRequest`` -> numpy and results -> ``ModelInferResponse``: the gRPC twin of ``codecs.v2``.

Inputs come either typed (``contents.fp32_contents`` ...) or all raw (``raw_input_contents``, one bytes entry
per input, in the binary extension's layout: little-endian row-major, BOOL one byte, BYTES each a uint32 LE
length then the bytes). Raw numeric inputs are ``np.frombuffer`` views (zero-copy, read-only). Outputs are raw
when the request's inputs were raw or in shared memory (tritonclient's default), or when a datatype has no typed
field (FP16, BF16); otherwise typed, so a client that writes ``contents`` reads ``contents``. BYTES are passed
through as bytes both ways, byte-exact.

System shared memory: an input whose ``parameters`` name ``shared_memory_region`` has no contents and no
``raw_input_contents`` entry (entries belong to the other inputs, in order, as tritonclient sends them); an
output that names one is written there (``codecs.v2``) and answered with its metadata and parameters, no contents
(an empty ``raw_output_contents`` entry keeps the other outputs' entries at their index).

Only :class:`~service.errors.InvalidInput`, :class:`~service.errors.Forbidden` and
:class:`~service.errors.NotImplementedFeature` leave the decoder, whatever the message holds.
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
    shm_input,
    shm_output,
    write_shm_outputs,
)
from service.errors import InvalidInput
from service.inference.dataplane import InferResult
from service.inference.parameters import SEQUENCE_CONTROLS, refuse_sequence_controls
from service.inference.shared_memory import RegionLookup, ShmTarget
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
    """The inputs came in ``raw_input_contents`` or shared memory (then the outputs go raw)."""
    shm_outputs: bool = False
    """Some requested output goes to a shared-memory region."""


def _parameter(value: Any) -> object:
    """The value of an ``InferParameter`` (a oneof), or None when unset."""
    which = value.WhichOneof("parameter_choice")
    return getattr(value, which) if which else None


_SHM = "shared_memory_region"


def _shm_parameters(parameters: Mapping[str, Any], what: str) -> tuple[str, int | None, int | None]:
    """Region, byte size and offset of a tensor's ``shared_memory_*`` parameters, type-checked."""
    region = _parameter(parameters[_SHM])
    if not isinstance(region, str):
        raise InvalidInput(f"{what}: parameters['{_SHM}'] must be a string_param")
    found: list[int | None] = []
    for key in ("shared_memory_byte_size", "shared_memory_offset"):
        value = _parameter(parameters[key]) if key in parameters else None
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidInput(f"{what}: parameters['{key}'] must be an int64_param")
        found.append(value)
    return region, found[0], found[1]


def decode_infer_request(request: Any, shared_memory: RegionLookup | None = None) -> GrpcInferRequest:
    """Decode a ``ModelInferRequest`` (see the module docstring); raises InvalidInput naming the problem.
    ``shared_memory``: the regions this caller may name (None: the extension is not served)."""
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
        inputs = _decode_beside_shm(request.inputs, raw, shared_memory)
    else:
        inputs = [
            _decode_input(tensor, raw[index] if raw else None, shared_memory)
            for index, tensor in enumerate(request.inputs)
        ]
    outputs = _requested_outputs(request.outputs, shared_memory)
    shm_outputs = outputs is not None and any(entry.shared_memory is not None for entry in outputs)
    # tritonclient reads only raw outputs: a request whose inputs are all in shared memory is answered raw too
    raw_out = bool(raw) or any(_SHM in tensor.parameters for tensor in request.inputs)
    return GrpcInferRequest(request.id, inputs, outputs, timeout_us, raw_out, shm_outputs)


def _decode_beside_shm(tensors: Sequence[Any], raw: Sequence[bytes], shared_memory: RegionLookup | None) -> list[Any]:
    """Inputs when ``raw_input_contents`` has fewer entries than inputs: one per input not in shared memory."""
    in_memory = [tensor for tensor in tensors if _SHM not in tensor.parameters]
    if len(raw) != len(in_memory):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(in_memory)} inputs not in shared memory: "
            "send one entry per such input, or typed contents for every input"
        )
    entries = iter(raw)
    return [
        _decode_input(tensor, None if _SHM in tensor.parameters else next(entries), shared_memory) for tensor in tensors
    ]


def _decode_input(tensor: Any, raw: bytes | None, shared_memory: RegionLookup | None) -> DecodedTensor:
    name = tensor.name
    datatype = tensor.datatype
    dtype = V2_TO_NUMPY.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input '{name}': unknown datatype '{datatype[:32]}' (expected one of {_DATATYPES})")
    shape = checked_shape(name, tensor.shape)
    if _SHM in tensor.parameters:
        if raw is not None or tensor.HasField("contents"):
            raise InvalidInput(f"input '{name}' names a shared memory region and also carries contents")
        region, size, offset = _shm_parameters(tensor.parameters, f"input '{name}'")
        array = shm_input(shared_memory, name, datatype, shape, region, size, offset)
        return DecodedTensor(name, datatype, shape, array)
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


def _requested_outputs(outputs: Sequence[Any], shared_memory: RegionLookup | None) -> list[OutputRequest] | None:
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
        target = None
        if _SHM in parameters:
            region, size, offset = _shm_parameters(parameters, f"output '{name}'")
            target = shm_output(shared_memory, name, region, size, offset)
        classes = _parameter(parameters["classification"]) if "classification" in parameters else 0
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
            raise InvalidInput(f"output '{name}': parameters['classification'] must be a non-negative int64_param")
        requested.append(OutputRequest(name, None, classes, target))
    return requested


def encode_infer_response(result: InferResult, request: GrpcInferRequest) -> Any:
    """The ``ModelInferResponse`` for ``result``: outputs in wire order, raw or typed (module docstring)."""
    prepared = prepare_outputs(result.outputs, result.output_specs, request.outputs)
    written = write_shm_outputs(prepared) if request.shm_outputs else {}
    raw = request.raw or any(output.datatype not in _TYPED_FIELDS for output in prepared)
    # an empty entry for an output in shared memory keeps later raw outputs at their index; none if all are there
    placeholders = raw and len(written) < len(prepared)
    response = pb.ModelInferResponse(model_name=result.model, model_version=result.version, id=request.id)
    for output in prepared:
        array = output.array
        tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=array.shape)
        if output.shared_memory is not None:
            _shm_output_parameters(tensor, output.shared_memory, written[output.name])
            if placeholders:
                response.raw_output_contents.append(b"")
        elif raw:
            response.raw_output_contents.append(bytes(encode_binary_tensor(array, output.datatype)))
        elif output.datatype == "BYTES":
            tensor.contents.bytes_contents.extend([bytes_element(item) for item in array.reshape(-1)])
        else:
            getattr(tensor.contents, _TYPED_FIELDS[output.datatype]).extend(array.reshape(-1).tolist())
    return response


def _shm_output_parameters(tensor: Any, target: ShmTarget, written: int) -> None:
    """An output written to shared memory: where it went, and how many bytes."""
    tensor.parameters[_SHM].string_param = target.region.name
    tensor.parameters["shared_memory_byte_size"].int64_param = written
    if target.offset:
        tensor.parameters["shared_memory_offset"].int64_param = target.offset
