"""Open Inference Protocol (KServe V2) bodies <-> numpy, JSON and the binary tensor data extension.

Transport-agnostic: the HTTP adapter hands over the raw body and two header values; nothing here knows
about a web framework. Matches what ``tritonclient[http]`` 2.x sends and parses:

* Request: with ``Inference-Header-Content-Length: N`` the first ``N`` bytes are the JSON request and the
  inputs that carry ``parameters.binary_data_size`` (and no ``data``) follow in ``inputs`` order,
  little-endian, row-major; BOOL is one byte per element; BYTES elements are each a 4-byte little-endian
  length followed by the bytes. The sizes must add up to the body exactly.
* Response: an output is binary when it asks ``binary_data: true``, or the request says
  ``parameters.binary_data_output: true`` and the output does not opt out. With any binary output the body
  is the JSON header (``binary_data_size`` per binary output) followed by the bytes in ``outputs`` order, and
  the caller sends ``Inference-Header-Content-Length`` with the returned header length.

Speed: the JSON part is decoded by msgspec straight into Structs, no intermediate dicts. The common case
(every JSON ``data`` a flat list of numbers for an FP16/32/64 input, or binary inputs) takes one pass with
``data: list[float]`` and one ``np.fromiter`` per tensor. Anything else (integers, which must keep their
precision; BOOL; BYTES; nested lists) is decoded again into Structs whose ``data`` stays raw JSON until its
datatype is known, then by a typed decoder (``list[int]``, ``list[bool]``, ``list[str]``), so a string where
a number belongs is refused rather than parsed. Binary tensors are ``np.frombuffer`` views of the body
(zero-copy when aligned, else one copy; such views are read-only, so engines must not write into inputs).

System shared memory (Triton's extension): an input whose ``parameters`` name ``shared_memory_region`` (with
``shared_memory_byte_size`` and optional ``shared_memory_offset``) is copied out of that registered region, in
the binary layout, when the request is decoded; an output that names one is written there by the encoder, after
every such output was checked to fit, and answered with its metadata and parameters but no data. Both need the
caller's region lookup (``shared_memory``); without one they are NotImplementedFeature.

Only :class:`~service.errors.InvalidInput`, :class:`~service.errors.PayloadTooLarge`,
:class:`~service.errors.UnsupportedMediaType`, :class:`~service.errors.Forbidden` and
:class:`~service.errors.NotImplementedFeature` (shared-memory extension) leave the decoder, whatever the bytes.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np
from msgspec import Meta

from service.errors import (
    BackendFailure,
    InvalidInput,
    NotImplementedFeature,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.inference.parameters import refuse_sequence_controls
from service.inference.shared_memory import RegionLookup, ShmTarget
from service.plugins.contract import NUMPY_TO_V2, V2_TO_NUMPY, TensorSpec
from service.schemas.v2 import (
    InferOutput,
    InferParameters,
    InferResponse,
    OutputParameters,
    RequestedOutputParameters,
    TensorParameters,
)

__all__ = (
    "MAX_REQUEST_ID",
    "DecodedInferRequest",
    "DecodedTensor",
    "OutputRequest",
    "PreparedOutput",
    "bytes_element",
    "checked_shape",
    "prepare_outputs",
    "shm_input",
    "shm_output",
    "write_shm_outputs",
    "decode_binary_tensor",
    "decode_infer_request",
    "decompress_body",
    "encode_binary_tensor",
    "encode_infer_response",
)

_LITTLE_ENDIAN = sys.byteorder == "little"
_U32 = struct.Struct("<I")
MAX_REQUEST_ID = 1024
"""Longest request ``id`` accepted (it is echoed in the response)."""
_MAX_DIM = 1 << 40
_MAX_RANK = 32
_NO_DATA = msgspec.Raw(b"")
_DATATYPES = ", ".join(V2_TO_NUMPY)


class DecodedTensor(NamedTuple):
    """One input as decoded from the wire: ``data`` already has ``shape`` and the datatype's numpy dtype."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


class OutputRequest(NamedTuple):
    """One entry of the request's ``outputs``: ``binary_data`` None means "follow binary_data_output"."""

    name: str
    binary_data: bool | None = None
    classification: int = 0
    shared_memory: ShmTarget | None = None
    """Write the result into this registered region instead of the response."""


class DecodedInferRequest(msgspec.Struct, frozen=True):
    """A decoded infer request, ready for validation.

    ``inputs`` are in request order; ``outputs`` is None when the client did not restrict them (then every
    output is returned, binary when ``binary_data_output``); ``timeout_us`` is ``parameters.timeout``.
    """

    id: str | None
    inputs: list[DecodedTensor]
    outputs: list[OutputRequest] | None
    binary_data_output: bool
    timeout_us: int | None
    parameters: InferParameters | None


# -- private wire twins of service.schemas.v2: `data` stays raw JSON until its datatype is known ---------


class _WireInput(msgspec.Struct):
    name: str
    shape: Annotated[list[Annotated[int, Meta(ge=0, le=_MAX_DIM)]], Meta(max_length=_MAX_RANK)]
    datatype: str
    parameters: TensorParameters | None = None
    data: msgspec.Raw = _NO_DATA


class _WireOutput(msgspec.Struct):
    name: str
    parameters: RequestedOutputParameters | None = None


class _WireRequest(msgspec.Struct):
    inputs: list[_WireInput]
    id: Annotated[str, Meta(max_length=MAX_REQUEST_ID)] | None = None
    parameters: InferParameters | None = None
    outputs: list[_WireOutput] | None = None


class _FastInput(msgspec.Struct):
    name: str
    shape: Annotated[list[Annotated[int, Meta(ge=0, le=_MAX_DIM)]], Meta(max_length=_MAX_RANK)]
    datatype: str
    parameters: TensorParameters | None = None
    data: list[float] | None = None


class _FastRequest(msgspec.Struct):
    inputs: list[_FastInput]
    id: Annotated[str, Meta(max_length=MAX_REQUEST_ID)] | None = None
    parameters: InferParameters | None = None
    outputs: list[_WireOutput] | None = None


_request_decoder = msgspec.json.Decoder(_WireRequest)
_fast_decoder = msgspec.json.Decoder(_FastRequest)
"""The common case in one pass: every JSON ``data`` is a flat list of numbers for a floating-point input
(binary inputs have no ``data``). Anything else is decoded again by ``_request_decoder``, strictly."""
_FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
_response_encoder = msgspec.json.Encoder()

# Typed decoders for `data` by numpy kind: strict (no strings for numbers, no numbers for BOOL).
_FLAT_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "f": msgspec.json.Decoder(list[float]),
    "i": msgspec.json.Decoder(list[int]),
    "u": msgspec.json.Decoder(list[int]),
    "b": msgspec.json.Decoder(list[bool]),
    "O": msgspec.json.Decoder(list[str]),
}
_ANY_DECODER = msgspec.json.Decoder(list[Any])
_LE_DTYPES: dict[str, np.dtype[Any]] = {
    name: dtype.newbyteorder("<") for name, dtype in V2_TO_NUMPY.items() if name != "BYTES"
}


# -- request ----------------------------------------------------------------------------------------------


def decompress_body(
    body: bytes | memoryview,
    content_encoding: str | None,
    *,
    max_bytes: int,
    reserve: Callable[[int], None] | None = None,
) -> bytes | memoryview:
    """The body with its ``Content-Encoding`` (gzip, deflate, identity) undone, never over ``max_bytes``.

    Output is produced in steps of at most 1 MiB and ``reserve(n)`` is called with each step's size before the
    step is kept, so a caller's memory budget counts the inflated bytes as they appear and can stop inflation by
    raising (``service.api.limits.Reservation.take``). Decompression stops as soon as the output passes
    ``max_bytes`` (a zip bomb costs at most that much memory). Raises PayloadTooLarge beyond the cap,
    UnsupportedMediaType for other codings and InvalidInput for corrupt or truncated streams.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, max_bytes, "gzip", members=True, reserve=reserve)
        elif coding == "deflate":  # zlib-wrapped as HTTP says; some clients send raw deflate
            wbits = zlib.MAX_WBITS if _has_zlib_header(body) else -zlib.MAX_WBITS
            body = _inflate(body, wbits, max_bytes, "deflate", members=False, reserve=reserve)
        else:
            raise UnsupportedMediaType(
                f"unsupported Content-Encoding '{coding[:32]}': send the body plain or with gzip or deflate"
            )
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    return body


def _has_zlib_header(data: bytes | memoryview) -> bool:
    if len(data) < 2:
        return True
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0


MAX_GZIP_MEMBERS = 64
"""Concatenated gzip members accepted in one body. Clients send one; each further member costs a copy of the
rest of the body, so thousands of empty members would make inflating quadratic."""
_INFLATE_STEP = 1 << 20
"""Inflated bytes produced (and reserved) per step."""


def _inflate(
    data: bytes | memoryview,
    wbits: int,
    max_bytes: int,
    name: str,
    *,
    members: bool,
    reserve: Callable[[int], None] | None,
) -> bytes | memoryview:
    first: bytes | None = None
    out: bytearray | None = None  # grows in place (mremap), so the output is held once, not once more to join it
    size = 0
    count = 0
    while True:
        count += 1
        if count > MAX_GZIP_MEMBERS:
            raise InvalidInput(f"{name} request body has more than {MAX_GZIP_MEMBERS} members")
        inflater = zlib.decompressobj(wbits)
        pending: bytes | memoryview = data
        while True:
            limit = min(_INFLATE_STEP, max_bytes - size + 1)
            try:
                chunk = inflater.decompress(pending, limit)
            except zlib.error as exc:
                raise InvalidInput(f"corrupt {name} request body: {exc}") from None
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"decompressed request body exceeds the limit of {max_bytes} bytes")
                if reserve is not None:
                    reserve(len(chunk))
                if first is None:
                    first = chunk
                else:
                    if out is None:
                        out, first = bytearray(first), b""
                    out += chunk
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and len(chunk) < limit):
                break
        if not inflater.eof:
            raise InvalidInput(f"truncated {name} request body")
        data = inflater.unused_data
        if not data:
            break
        if not members:
            raise InvalidInput(f"{len(data)} unexpected bytes after the end of the {name} stream")
    if out is not None:
        return memoryview(out)
    return first if first is not None else b""


def decode_infer_request(
    body: bytes | memoryview, *, header_length: int | None, shared_memory: RegionLookup | None = None
) -> DecodedInferRequest:
    """Decode an infer body; see :func:`_decode_infer_request`. JSON nested past msgspec's depth limit (its
    decoder raises RecursionError, whichever field it is in) is the client's mistake, answered 400."""
    try:
        return _decode_infer_request(body, header_length=header_length, shared_memory=shared_memory)
    except RecursionError:
        raise InvalidInput("malformed JSON: nested too deeply") from None


def _decode_infer_request(
    body: bytes | memoryview, *, header_length: int | None, shared_memory: RegionLookup | None
) -> DecodedInferRequest:
    """Decode an infer body (JSON, or JSON header + binary tensors) into numpy arrays.

    Args:
        body: the request body, whatever its Content-Type, with any ``Content-Encoding`` already undone and
            within the body cap (``service.api.http_body.plain_body``).
        header_length: ``Inference-Header-Content-Length`` (length of the JSON part of the decoded body), or
            None when the header is absent (then the body must be plain JSON).
        shared_memory: the regions this caller may name (None: the extension is not served).

    Returns:
        the request with one ``DecodedTensor`` per input, each array shaped like its declared ``shape``.
    """
    total = len(body)
    if header_length is None:
        json_part: bytes | memoryview = body
    else:
        if header_length < 0:
            raise InvalidInput("Inference-Header-Content-Length must not be negative")
        if header_length > total:
            raise InvalidInput(
                f"Inference-Header-Content-Length {header_length} is larger than the request body ({total} bytes)"
            )
        json_part = memoryview(body)[:header_length] if header_length < total else body
    wire: _FastRequest | _WireRequest | None
    try:
        wire = _fast_decoder.decode(json_part)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        wire = None
    else:
        for fast_input in wire.inputs:
            if fast_input.data is not None and fast_input.datatype not in _FLOAT_DATATYPES:
                wire = None  # ints were read as floats (precision) and BOOL/BYTES need their own rules
                break
    if wire is None:
        wire = _decode_strictly(json_part, header_length, total)
    return _decoded(wire, body, header_length, total, shared_memory)


def _decode_strictly(json_part: bytes | memoryview, header_length: int | None, total: int) -> _WireRequest:
    try:
        return _request_decoder.decode(json_part)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(_explain_malformed(exc, json_part, header_length, total)) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"malformed JSON: a string is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _decoded(
    wire: _FastRequest | _WireRequest,
    body: bytes | memoryview,
    header_length: int | None,
    total: int,
    shared_memory: RegionLookup | None,
) -> DecodedInferRequest:
    inputs: list[DecodedTensor] = []
    offset = header_length if header_length is not None else total
    for wire_input in wire.inputs:
        name = wire_input.name
        datatype = wire_input.datatype
        dtype = V2_TO_NUMPY.get(datatype)
        if dtype is None:
            raise InvalidInput(f"input '{name}': unknown datatype '{datatype[:32]}' (expected one of {_DATATYPES})")
        shape = tuple(wire_input.shape)
        _check_size(name, shape)
        params = wire_input.parameters
        binary_size = None
        in_shm = None
        if params is not None:
            binary_size = params.binary_data_size
            if params.shared_memory_region is not None:
                in_shm = params
        raw = wire_input.data
        if raw is None:
            has_data = False
        elif isinstance(raw, list):
            has_data = True
        else:
            has_data = raw is not _NO_DATA and not (len(raw) == 4 and bytes(raw) == b"null")
        if in_shm is not None:
            if has_data or binary_size is not None:
                raise InvalidInput(f"input '{name}' names a shared memory region and also carries data")
            array = shm_input(
                shared_memory,
                name,
                datatype,
                shape,
                in_shm.shared_memory_region or "",
                in_shm.shared_memory_byte_size,
                in_shm.shared_memory_offset,
            )
        elif binary_size is not None:
            if has_data:
                raise InvalidInput(f"input '{name}' has both 'data' and parameters.binary_data_size")
            if header_length is None:
                raise InvalidInput(
                    f"input '{name}' declares parameters.binary_data_size but the request has no "
                    "Inference-Header-Content-Length header"
                )
            if binary_size < 0:
                raise InvalidInput(f"input '{name}': binary_data_size must not be negative")
            end = offset + binary_size
            if end > total:
                raise InvalidInput(
                    f"input '{name}' declares binary_data_size {binary_size} but only {total - offset} bytes "
                    "remain after the JSON header and the earlier binary inputs"
                )
            array = decode_binary_tensor(body, offset, binary_size, datatype, shape, name=name)
            offset = end
        elif has_data:
            assert raw is not None
            if isinstance(raw, list):
                array = _from_values(raw, datatype, dtype, shape, name)
            else:
                array = _from_json(raw, datatype, dtype, shape, name)
        else:
            raise InvalidInput(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
        inputs.append(DecodedTensor(name, datatype, shape, array))
    if header_length is not None and offset != total:
        declared = offset - header_length
        raise InvalidInput(
            f"the body carries {total - header_length} bytes after the {header_length}-byte JSON header "
            f"(Inference-Header-Content-Length) but the inputs' binary_data_size values add up to {declared}"
        )

    outputs: list[OutputRequest] | None = None
    if wire.outputs:
        outputs = []
        seen: set[str] = set()
        for wire_output in wire.outputs:
            if wire_output.name in seen:
                raise InvalidInput(f"output '{wire_output.name}' is requested twice")
            seen.add(wire_output.name)
            oparams = wire_output.parameters
            if oparams is None:
                outputs.append(OutputRequest(wire_output.name))
                continue
            target = None
            if oparams.shared_memory_region is not None:
                target = shm_output(
                    shared_memory,
                    wire_output.name,
                    oparams.shared_memory_region,
                    oparams.shared_memory_byte_size,
                    oparams.shared_memory_offset,
                )
            outputs.append(OutputRequest(wire_output.name, oparams.binary_data, oparams.classification or 0, target))
    parameters = wire.parameters
    if parameters is not None and (parameters.sequence_id or parameters.sequence_start or parameters.sequence_end):
        refuse_sequence_controls(
            {
                "sequence_id": parameters.sequence_id,
                "sequence_start": parameters.sequence_start,
                "sequence_end": parameters.sequence_end,
            }
        )
    return DecodedInferRequest(
        id=wire.id,
        inputs=inputs,
        outputs=outputs,
        binary_data_output=bool(parameters is not None and parameters.binary_data_output),
        timeout_us=parameters.timeout if parameters is not None else None,
        parameters=parameters,
    )


def checked_shape(name: str, dims: Sequence[int]) -> tuple[int, ...]:
    """An input shape from a wire that carries plain integers (gRPC): the rules JSON bodies get from the decoder
    (rank at most 32, each dim 0..2^40) and the size bound, each refusal naming the input."""
    shape = tuple(int(dim) for dim in dims)
    if len(shape) > _MAX_RANK:
        raise InvalidInput(f"input '{name}': shape has {len(shape)} dimensions, at most {_MAX_RANK} are allowed")
    if any(dim < 0 or dim > _MAX_DIM for dim in shape):
        raise InvalidInput(f"input '{name}': shape {list(shape)} must hold dimensions from 0 to {_MAX_DIM}")
    _check_size(name, shape)
    return shape


def _check_size(name: str, shape: tuple[int, ...]) -> None:
    if math.prod(dim for dim in shape if dim) > _MAX_DIM:  # a 0 dim does not make a huge shape valid
        raise InvalidInput(f"input '{name}': shape {list(shape)} is too large")


def _explain_malformed(
    exc: msgspec.DecodeError, json_part: bytes | memoryview, header_length: int | None, total: int
) -> str:
    message = str(exc)
    if "trailing characters" in message:
        if header_length is None:
            return (
                "bytes follow the JSON request but the Inference-Header-Content-Length header is missing "
                "(it must give the length of the JSON part when binary tensor data follows)"
            )
        return (
            f"malformed JSON: the first {header_length} bytes (Inference-Header-Content-Length) hold more than "
            f"one JSON document ({message})"
        )
    raw = bytes(json_part[:4096]) if len(json_part) > 4096 else bytes(json_part)
    if b"NaN" in raw or b"Infinity" in raw:
        return f"malformed JSON: {message}; NaN and Infinity are not JSON numbers, send finite values"
    if header_length is not None and header_length < total:
        return f"malformed JSON in the first {header_length} bytes (Inference-Header-Content-Length): {message}"
    return f"malformed JSON: {message}"


def _from_json(raw: msgspec.Raw, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], name: str) -> np.ndarray:
    kind = dtype.kind
    text = bytes(raw)
    nested = text[:1] == b"[" and text.find(b"[", 1) > 0
    try:
        if kind == "O":
            values: list[Any] = _bytes_values(text, nested, name)
        else:
            if nested:  # shape is authoritative: flatten nested lists without building them
                text = b"[" + text[1:-1].translate(None, b"[]") + b"]"
            values = _FLAT_DECODERS[kind].decode(text)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"input '{name}': data does not match datatype {datatype}: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidInput(f"input '{name}': data must be a flat or nested JSON array of {datatype} values") from None
    return _from_values(values, datatype, dtype, shape, name)


def _from_values(
    values: list[Any], datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], name: str
) -> np.ndarray:
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(f"input '{name}': shape {list(shape)} needs {count} values, data has {len(values)}")
    kind = dtype.kind
    if kind == "f":
        if dtype.itemsize == 8:
            return np.fromiter(values, dtype, count).reshape(shape)
        with np.errstate(over="ignore"):  # FP16/FP32 overflow -> inf, refused by validation
            return np.fromiter(values, dtype, count).reshape(shape)
    if kind == "O":
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    try:
        array = np.array(values, dtype=dtype)
    except OverflowError:
        raise InvalidInput(f"input '{name}': a value is out of range for {datatype}") from None
    return array.reshape(shape)


def _bytes_values(text: bytes, nested: bool, name: str) -> list[bytes]:
    if not nested:
        return [s.encode() for s in _FLAT_DECODERS["O"].decode(text)]
    flat: list[bytes] = []
    stack: list[Any] = [_ANY_DECODER.decode(text)]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            flat.append(item.encode())
        else:
            raise InvalidInput(f"input '{name}': BYTES data must hold strings, got {type(item).__name__}")
    return flat


def decode_binary_tensor(
    body: bytes | memoryview,
    offset: int,
    size: int,
    datatype: str,
    shape: tuple[int, ...],
    *,
    name: str = "tensor",
    size_source: str = "binary_data_size",
) -> np.ndarray:
    """One tensor of the binary extension: ``size`` bytes of ``body`` at ``offset`` as an array of ``shape``.

    Numeric datatypes are little-endian views of ``body`` (zero-copy; copied only when unaligned or on a
    big-endian host). BOOL bytes must be 0 or 1. BYTES is a sequence of (uint32 LE length, bytes). gRPC's
    ``raw_input_contents`` use the same layout; ``size_source`` names where ``size`` came from in messages.
    """
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(body, offset, size, count, name, size_source).reshape(shape)
    dtype = _LE_DTYPES[datatype]
    expected = count * dtype.itemsize
    if size != expected:
        raise InvalidInput(
            f"input '{name}': shape {list(shape)} of {datatype} needs {expected} bytes, {size_source} says {size}"
        )
    if datatype == "BOOL":
        raw = np.frombuffer(body, dtype=np.uint8, count=count, offset=offset)
        if count and raw.max() > 1:
            raise InvalidInput(f"input '{name}': BOOL bytes must be 0 or 1")
        return raw.view(np.bool_).reshape(shape)
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    if not _LITTLE_ENDIAN:
        array = array.astype(dtype.newbyteorder("="))
    elif not array.flags.aligned:
        array = array.copy()
    return array.reshape(shape)


def shm_input(
    shared_memory: RegionLookup | None,
    name: str,
    datatype: str,
    shape: tuple[int, ...],
    region: str,
    byte_size: int | None,
    offset: int | None,
) -> np.ndarray:
    """An input's tensor from a registered region (``shared_memory_*`` parameters), copied out now, shaped
    ``shape``; the byte size must be exactly what the datatype and shape need (BYTES: its serialized size)."""
    what = f"input '{name}'"
    if shared_memory is None:
        raise NotImplementedFeature(f"{what}: the shared-memory extension is not supported")
    if byte_size is None:
        raise InvalidInput(f"{what}: shared_memory_region needs shared_memory_byte_size")
    if datatype != "BYTES":
        expected = math.prod(shape) * _LE_DTYPES[datatype].itemsize
        if byte_size != expected:  # before copying anything
            raise InvalidInput(
                f"{what}: shape {list(shape)} of {datatype} needs {expected} bytes, shared_memory_byte_size says "
                f"{byte_size}"
            )
    found = shared_memory.region(what, region)
    shared_memory.charge(what, byte_size)
    buffer = found.read(what, offset or 0, byte_size)
    return decode_binary_tensor(buffer, 0, byte_size, datatype, shape, name=name, size_source="shared_memory_byte_size")


def shm_output(
    shared_memory: RegionLookup | None, name: str, region: str, byte_size: int | None, offset: int | None
) -> ShmTarget:
    """Where a requested output goes (``shared_memory_*`` parameters), checked against the region now."""
    what = f"output '{name}'"
    if shared_memory is None:
        raise NotImplementedFeature(f"{what}: the shared-memory extension is not supported")
    if byte_size is None:
        raise InvalidInput(f"{what}: shared_memory_region needs shared_memory_byte_size")
    target = ShmTarget(shared_memory.region(what, region), offset or 0, byte_size)
    target.region.bounds(what, target.offset, byte_size)
    return target


def write_shm_outputs(prepared: Sequence[PreparedOutput]) -> dict[str, int]:
    """Write the outputs that go to shared memory; the bytes written, by output name. Every one is checked to fit
    before any is written, so a refused response leaves every region as it was."""
    pending: list[tuple[str, ShmTarget, bytes | memoryview]] = []
    for output in prepared:
        target = output.shared_memory
        if target is not None:
            payload = encode_binary_tensor(output.array, output.datatype)
            target.check(f"output '{output.name}'", len(payload))
            pending.append((output.name, target, payload))
    for _, target, payload in pending:
        target.region.write(target.offset, payload)
    return {name: len(payload) for name, _, payload in pending}


def _decode_bytes(
    body: bytes | memoryview, offset: int, size: int, count: int, name: str, size_source: str
) -> np.ndarray:
    view = memoryview(body)[offset : offset + size]
    if count * 4 > size:
        raise InvalidInput(
            f"input '{name}': {count} BYTES elements need at least {count * 4} bytes, {size_source} says {size}"
        )
    array = np.empty(count, dtype=object)
    pos = 0
    for index in range(count):
        if pos + 4 > size:
            raise InvalidInput(f"input '{name}': BYTES element {index} is cut off ({size_source} {size})")
        (length,) = _U32.unpack_from(view, pos)
        pos += 4
        if pos + length > size:
            raise InvalidInput(
                f"input '{name}': BYTES element {index} declares {length} bytes but only {size - pos} remain"
            )
        array[index] = bytes(view[pos : pos + length])
        pos += length
    if pos != size:
        raise InvalidInput(
            f"input '{name}': {size - pos} bytes left over after {count} BYTES elements ({size_source} {size})"
        )
    return array


# -- response ---------------------------------------------------------------------------------------------


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    output_specs: Sequence[TensorSpec],
    requested_outputs: Sequence[OutputRequest] | None,
    binary_data_output: bool,
) -> tuple[bytes, int | None]:
    """Encode an infer response.

    Args:
        outputs: the engine's outputs for this request, each ``(batch, *dims)``.
        output_specs: the version's output signature; it orders the outputs when none are requested.
        requested_outputs: the request's ``outputs`` (None: all of them).
        binary_data_output: the request's ``parameters.binary_data_output``.

    Returns:
        the body, and the length of its JSON header when any output is binary (None: plain JSON).
    """
    encoded: list[InferOutput] = []
    buffers: list[Any] = []
    prepared = prepare_outputs(outputs, output_specs, requested_outputs)
    written = _written_to_shm(prepared, requested_outputs)
    for name, datatype, array, binary, target in prepared:
        if target is not None:
            parameters = OutputParameters(
                shared_memory_region=target.region.name,
                shared_memory_byte_size=written[name],
                shared_memory_offset=target.offset or None,
            )
            encoded.append(InferOutput(name, datatype, list(array.shape), parameters))
        elif binary_data_output if binary is None else binary:
            payload = encode_binary_tensor(array, datatype)
            encoded.append(InferOutput(name, datatype, list(array.shape), OutputParameters(len(payload))))
            buffers.append(payload)
        else:
            encoded.append(InferOutput(name, datatype, list(array.shape), data=_json_values(array, datatype, name)))
    header = _response_encoder.encode(InferResponse(model_name, model_version, encoded, request_id))
    if not buffers:
        return header, None
    return b"".join([header, *buffers]), len(header)


def _written_to_shm(
    prepared: Sequence[PreparedOutput], requested_outputs: Sequence[OutputRequest] | None
) -> dict[str, int]:
    if requested_outputs is None or all(entry.shared_memory is None for entry in requested_outputs):
        return {}
    return write_shm_outputs(prepared)


class PreparedOutput(NamedTuple):
    """One output ready for a wire: classified if asked, with its V2 datatype; ``binary`` as requested;
    ``shared_memory`` where the result goes instead of the response (None: in the response)."""

    name: str
    datatype: str
    array: np.ndarray
    binary: bool | None
    shared_memory: ShmTarget | None = None


def prepare_outputs(
    outputs: Mapping[str, np.ndarray],
    output_specs: Sequence[TensorSpec],
    requested_outputs: Sequence[OutputRequest] | None,
) -> list[PreparedOutput]:
    """The outputs to answer with, in wire order: the requested ones in request order, else all in signature
    order; the classification extension applied. Shared by the HTTP and gRPC encoders."""
    if requested_outputs:  # the data plane refused unknown names before inference
        selection = [
            (entry.name, entry.binary_data, entry.classification, entry.shared_memory) for entry in requested_outputs
        ]
    else:
        names = [spec.name for spec in output_specs if spec.name in outputs]
        if len(names) != len(outputs):
            names.extend(name for name in outputs if name not in names)
        selection = [(name, None, 0, None) for name in names]
    prepared: list[PreparedOutput] = []
    for name, binary, classes, target in selection:
        array = np.asarray(outputs[name])
        if classes:
            array = _classify(array, classes)
        prepared.append(PreparedOutput(name, _datatype_of(array, name), array, binary, target))
    return prepared


def _datatype_of(array: np.ndarray, name: str) -> str:
    dtype = array.dtype
    datatype = NUMPY_TO_V2.get(dtype)
    if datatype is not None and dtype.kind != "O":
        return datatype
    if dtype.kind in "OSU":
        return "BYTES"
    datatype = NUMPY_TO_V2.get(dtype.newbyteorder("="))
    if datatype is not None:
        return datatype
    raise BackendFailure(f"output '{name}' has dtype {array.dtype}, which the V2 protocol cannot carry")


def encode_binary_tensor(array: np.ndarray, datatype: str) -> bytes | memoryview:
    """The binary-extension bytes of ``array``: row-major little-endian; BYTES as (uint32 LE length, bytes)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = bytes_element(item)
            parts.append(_U32.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    contiguous = np.ascontiguousarray(array, dtype=_LE_DTYPES[datatype])
    return memoryview(contiguous.reshape(-1)).cast("B")  # type: ignore[arg-type]


def bytes_element(item: Any) -> bytes:
    """One BYTES element as the bytes a wire carries (str as UTF-8; numpy bytes as is)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, np.bytes_):
        return bytes(item)
    return str(item).encode()


def _json_values(array: np.ndarray, datatype: str, name: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype != "BYTES":
        return flat.tolist()
    values: list[str] = []
    for item in flat:
        if isinstance(item, (bytes, np.bytes_)):
            try:
                values.append(bytes(item).decode())
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"output '{name}' holds bytes that are not UTF-8: request it with binary_data true"
                ) from None
        else:
            values.append(str(item))
    return values


def _classify(array: np.ndarray, count: int) -> np.ndarray:
    """Classification extension: the top ``count`` classes of the last axis as ``"value:index"`` strings."""
    if array.ndim == 0 or array.dtype.kind not in "biuf":
        raise InvalidInput("the classification extension needs a numeric output with a class axis")
    count = min(count, array.shape[-1])
    order = np.argsort(-array.astype(np.float64), axis=-1, kind="stable")[..., :count]
    top = np.take_along_axis(array, order, axis=-1)
    result = np.empty(top.shape, dtype=object)
    flat_top, flat_order, flat_result = top.reshape(-1), order.reshape(-1), result.reshape(-1)
    for i in range(flat_result.size):
        flat_result[i] = f"{flat_top[i].item()}:{flat_order[i]}".encode()
    return result
