"""Wire shapes of the Open Inference Protocol (KServe V2) as msgspec Structs.

These Structs describe the JSON documents for OpenAPI and are what the response encoder serialises. The
infer *request* decoder (``service.codecs.v2``) reads the same document into private twins of
:class:`InferRequest` whose ``data`` stays raw JSON until its datatype is known, so that tensors never pass
through generic Python lists of objects; the public shape here is the documented one.

Field rules follow the protocol and what ``tritonclient[http]`` sends and reads: ``model_version`` is a
string, dynamic dimensions are ``-1`` in metadata, ``data`` is flat row-major or nested, and a tensor sent
or returned in the binary extension carries ``parameters.binary_data_size`` instead of ``data``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = (
    "ErrorResponse",
    "InferInput",
    "InferOutput",
    "InferParameters",
    "InferRequest",
    "InferResponse",
    "MetadataTensor",
    "ModelMetadata",
    "OutputParameters",
    "RequestedOutput",
    "RequestedOutputParameters",
    "ServerMetadata",
    "TensorParameters",
)

_NonNegative = Annotated[int, Meta(ge=0)]


class TensorParameters(msgspec.Struct, omit_defaults=True):
    """``parameters`` of one input tensor; unknown keys are ignored."""

    binary_data_size: Annotated[
        int | None,
        Meta(description="Bytes of this input in the binary section after the JSON header (binary extension)."),
    ] = None
    shared_memory_region: Annotated[
        str | None,
        Meta(description="System shared-memory extension: a registered region holding the tensor (no data)."),
    ] = None
    shared_memory_byte_size: int | None = None
    shared_memory_offset: int | None = None


class InferInput(msgspec.Struct, omit_defaults=True):
    """One input tensor of an infer request."""

    name: Annotated[str, Meta(description="Input name from the model's metadata.", examples=["input"])]
    shape: Annotated[
        list[_NonNegative], Meta(description="Concrete shape, batch dimension first.", examples=[[1, 784]])
    ]
    datatype: Annotated[
        str,
        Meta(
            description="V2 datatype: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 or BYTES.",
            examples=["FP32"],
        ),
    ]
    parameters: TensorParameters | None = None
    data: Annotated[
        list[Any] | None,
        Meta(description="Row-major values, flat or nested; omitted when the tensor is sent as binary data."),
    ] = None


class RequestedOutputParameters(msgspec.Struct, omit_defaults=True):
    """``parameters`` of one requested output; unknown keys are ignored."""

    binary_data: Annotated[
        bool | None, Meta(description="Return this output in the binary section (true) or as JSON data (false).")
    ] = None
    classification: Annotated[
        _NonNegative | None,
        Meta(description="Classification extension: return the top-N classes as 'value:index' strings."),
    ] = None
    shared_memory_region: Annotated[
        str | None,
        Meta(description="System shared-memory extension: a registered region holding the tensor (no data)."),
    ] = None
    shared_memory_byte_size: int | None = None
    shared_memory_offset: int | None = None


class RequestedOutput(msgspec.Struct, omit_defaults=True):
    """An output the client asks for; without ``outputs`` every output is returned."""

    name: Annotated[str, Meta(examples=["logits"])]
    parameters: RequestedOutputParameters | None = None


class InferParameters(msgspec.Struct, omit_defaults=True):
    """Request-level ``parameters``; unknown keys are accepted and ignored."""

    binary_data_output: Annotated[
        bool | None, Meta(description="Default for outputs that do not say: return them as binary data.")
    ] = None
    timeout: Annotated[
        Annotated[int, Meta(ge=0)] | None,
        Meta(description="Queue timeout in microseconds; a request waiting longer gets 503."),
    ] = None
    priority: int | None = None
    sequence_id: int | str | None = None
    sequence_start: bool | None = None
    sequence_end: bool | None = None


class InferRequest(msgspec.Struct, omit_defaults=True):
    """``POST /v2/models/{name}[/versions/{version}]/infer`` (JSON part of the body)."""

    inputs: list[InferInput]
    id: Annotated[str | None, Meta(description="Echoed in the response.", examples=["req-42"])] = None
    parameters: InferParameters | None = None
    outputs: list[RequestedOutput] | None = None


class OutputParameters(msgspec.Struct, omit_defaults=True):
    """``parameters`` of one returned output."""

    binary_data_size: Annotated[
        int | None, Meta(description="Bytes of this output in the binary section after the JSON header.")
    ] = None
    shared_memory_region: Annotated[
        str | None, Meta(description="Shared-memory extension: the region the output was written to (no data).")
    ] = None
    shared_memory_byte_size: Annotated[
        int | None, Meta(description="Shared-memory extension: bytes written at the output's offset.")
    ] = None
    shared_memory_offset: int | None = None


class InferOutput(msgspec.Struct, omit_defaults=True):
    """One output tensor of an infer response: ``data`` (JSON) or ``parameters.binary_data_size``."""

    name: str
    datatype: str
    shape: list[int]
    parameters: OutputParameters | None = None
    data: Annotated[list[Any] | None, Meta(description="Flat row-major values (JSON outputs only).")] = None


class InferResponse(msgspec.Struct, omit_defaults=True):
    """The infer response (JSON part; binary outputs follow it in ``outputs`` order)."""

    model_name: Annotated[str, Meta(examples=["mlp"])]
    model_version: Annotated[str, Meta(description="The version that served the request.", examples=["2"])]
    outputs: list[InferOutput]
    id: str | None = None


class MetadataTensor(msgspec.Struct, frozen=True):
    """One input or output in model metadata; ``-1`` marks a dynamic dimension."""

    name: str
    datatype: str
    shape: Annotated[list[int], Meta(examples=[[-1, 784]])]


class ModelMetadata(msgspec.Struct, frozen=True):
    """``GET /v2/models/{name}[/versions/{version}]``."""

    name: str
    versions: Annotated[list[str], Meta(description="Active versions, as strings.", examples=[["1", "2"]])]
    platform: Annotated[str, Meta(examples=["onnxruntime_onnx"])]
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(msgspec.Struct, frozen=True):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class ErrorResponse(msgspec.Struct, frozen=True):
    """Every failure on every route: ``{"error": "<message>"}``."""

    error: Annotated[str, Meta(examples=["input 'input': expected shape [-1, 784], got [1, 783]"])]
