"""The V2 (Open Inference Protocol) request shape the reference servers decode, as typed msgspec Structs.

Shared by the ceiling and the naive server so that both pay exactly the same decode cost modelport pays
on its JSON path: bytes straight into typed Structs, no intermediate dicts.
"""

from __future__ import annotations

import msgspec

__all__ = ("InferInput", "InferRequest", "InferOutput", "InferResponse", "decode_request", "encode_response")


class InferInput(msgspec.Struct, frozen=True):
    """One input tensor; ``data`` is flat row-major (nested lists are not used by the benchmark clients)."""

    name: str
    shape: list[int]
    datatype: str
    data: list[float]
    parameters: dict[str, object] | None = None


class InferRequest(msgspec.Struct, frozen=True):
    """A V2 infer request body (JSON only)."""

    inputs: list[InferInput]
    id: str | None = None
    parameters: dict[str, object] | None = None
    outputs: list[dict[str, object]] | None = None


class InferOutput(msgspec.Struct, frozen=True):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    model_name: str
    outputs: list[InferOutput]
    model_version: str = "1"
    id: str | None = None


_decoder = msgspec.json.Decoder(InferRequest)
_encoder = msgspec.json.Encoder()


def decode_request(body: bytes) -> InferRequest:
    """Decode a V2 JSON infer body; raises ``msgspec.DecodeError``/``ValidationError`` on bad input."""
    return _decoder.decode(body)


def encode_response(response: InferResponse) -> bytes:
    """Encode a V2 infer response once, to bytes."""
    return _encoder.encode(response)
