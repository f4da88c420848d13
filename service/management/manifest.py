"""The manifest that accompanies an uploaded artifact (admin API ``manifest`` part, CLI flags).

A pydantic model, not a msgspec Struct: a manifest arrives once per registration, so speed does not matter and
rich validation does. Every rule that can be checked without the artifact is checked here, so a bad manifest
is a 400 naming the field (``invalid manifest: signature.inputs.0.datatype: ...``) before any byte is stored.
Rules that need the loaded engine (processing specs against the real signature) stay in ``registration``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from service.errors import InvalidInput
from service.inference.processing import validate_processing_spec
from service.plugins import V2_TO_NUMPY, TensorSpec
from service.schemas.fields import ExactInt, PluginName, VersionLabel, body_config, bounded_json_object

__all__ = (
    "MANIFEST_EXAMPLE",
    "MAX_CONFIG_BYTES",
    "MAX_DOCUMENT_BYTES",
    "MAX_MANIFEST_BYTES",
    "DeclaredTensor",
    "Signature",
    "VersionManifest",
    "manifest_from",
    "parse_manifest",
)

MAX_CONFIG_BYTES = 16 * 1024
"""``architecture_config`` is keyword arguments for a constructor: small by nature."""
MAX_DOCUMENT_BYTES = 256 * 1024
"""``card`` and each processing spec (class labels for a few thousand classes fit)."""
MAX_MANIFEST_BYTES = 1024 * 1024
"""The whole manifest part of an upload, checked before it is parsed."""
_MAX_RANK = 32
_MAX_TENSORS = 256
_MAX_DIM = 2**31 - 1
_DATATYPES = tuple(V2_TO_NUMPY)
_MAX_SHOWN = 10


def _known_datatype(value: str) -> str:
    if value not in V2_TO_NUMPY:
        raise ValueError(f"unknown V2 datatype {value[:32]!r}; expected one of {', '.join(_DATATYPES)}")
    return value


_Dim = Annotated[ExactInt, Field(ge=-1, le=_MAX_DIM)]


class DeclaredTensor(BaseModel):
    """One declared input or output; converted to the plugin contract's :class:`TensorSpec` for the loader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, Field(min_length=1, max_length=256, examples=["input"])]
    datatype: Annotated[
        StrictStr,
        AfterValidator(_known_datatype),
        Field(json_schema_extra={"enum": list(_DATATYPES), "examples": ["FP32"]}),
    ]
    shape: Annotated[
        tuple[_Dim, ...],
        Field(
            min_length=1,
            max_length=_MAX_RANK,
            description="Batch dimension first; -1 marks a dynamic dimension.",
            examples=[[-1, 784]],
        ),
    ]

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.datatype, self.shape)


def _unique_names(tensors: tuple[DeclaredTensor, ...]) -> tuple[DeclaredTensor, ...]:
    seen: set[str] = set()
    for tensor in tensors:
        if tensor.name in seen:
            raise ValueError(f"tensor name {tensor.name!r} appears twice")
        seen.add(tensor.name)
    return tensors


_Tensors = Annotated[tuple[DeclaredTensor, ...], Field(max_length=_MAX_TENSORS), AfterValidator(_unique_names)]


class Signature(BaseModel):
    """Declared tensors; required for formats that carry no shapes (state_dicts, TorchScript)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: _Tensors = ()
    outputs: _Tensors = ()

    def specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """``(inputs, outputs)`` as the plugin contract's TensorSpecs, what ``signature_from_specs`` takes."""
        return tuple(t.spec() for t in self.inputs), tuple(t.spec() for t in self.outputs)


def _keyword_arguments(config: dict[str, Any]) -> dict[str, Any]:
    bounded_json_object(config, max_bytes=MAX_CONFIG_BYTES)
    for key in config:
        if not key.isidentifier():
            raise ValueError(f"key {key[:64]!r} is not a Python identifier (the config is keyword arguments)")
    return config


def _document(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return value if value is None else bounded_json_object(value, max_bytes=MAX_DOCUMENT_BYTES)


def _processing_spec(value: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        validate_processing_spec(_document(value))
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return value


MANIFEST_EXAMPLE: dict[str, Any] = {
    "backend": "pytorch",
    "version": "2",
    "architecture": "mlp",
    "architecture_config": {"input_dim": 784, "hidden": [256], "num_classes": 10},
    "signature": {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    },
    "postprocessing": {"type": "classification", "labels": [str(d) for d in range(10)]},
    "card": {"summary": "MLP over flattened 28x28 digits", "metrics": {"accuracy": 0.97}},
    "description": "MLP 784-256-10, safetensors state_dict",
}


class VersionManifest(BaseModel):
    """What an uploader says about an artifact. Paths and URLs are deliberately absent: the server decides
    where artifacts live, and nothing is ever fetched from a URL."""

    model_config = body_config(MANIFEST_EXAMPLE)

    backend: PluginName
    version: VersionLabel | None = None
    architecture: PluginName | None = None
    architecture_config: Annotated[
        dict[str, Any],
        AfterValidator(_keyword_arguments),
        Field(description=f"Keyword arguments for the architecture; a JSON object of at most {MAX_CONFIG_BYTES} B."),
    ] = Field(default_factory=dict)
    signature: Signature | None = None
    preprocessing: Annotated[dict[str, Any] | None, AfterValidator(_processing_spec)] = None
    postprocessing: Annotated[dict[str, Any] | None, AfterValidator(_processing_spec)] = None
    card: Annotated[dict[str, Any], AfterValidator(_document)] = Field(default_factory=dict)
    description: Annotated[StrictStr, Field(max_length=4096)] | None = None

    @model_validator(mode="after")
    def _config_needs_architecture(self) -> VersionManifest:
        if self.architecture_config and self.architecture is None:
            raise ValueError("architecture_config is given without an architecture to pass it to")
        return self


def _message(error: ErrorDetails) -> str:
    cause = error.get("ctx", {}).get("error")
    text = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {text}" if where else text


def _invalid(exc: ValidationError) -> InvalidInput:
    errors = exc.errors(include_url=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        return InvalidInput(f"manifest is not valid JSON: {errors[0]['msg']}")
    # a sequence whose items failed is also reported as too short: the item errors already say it all
    failed_inside = {e["loc"][:depth] for e in errors for depth in range(len(e["loc"]))}
    errors = [e for e in errors if not (e["type"] == "too_short" and e["loc"] in failed_inside)]
    shown = "; ".join(_message(error) for error in errors[:_MAX_SHOWN])
    more = f"; and {len(errors) - _MAX_SHOWN} more" if len(errors) > _MAX_SHOWN else ""
    return InvalidInput(f"invalid manifest: {shown}{more}")


def parse_manifest(raw: str | bytes) -> VersionManifest:
    """The manifest part of an upload (JSON text); InvalidInput naming each bad field."""
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: what Python makes of bytes that are not UTF-8 (argv, files)
            raise InvalidInput("invalid manifest: the text is not valid UTF-8") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"invalid manifest: {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        return VersionManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None


def manifest_from(fields: Mapping[str, Any]) -> VersionManifest:
    """A manifest from already-decoded values (the CLI's flags); same rules and messages as :func:`parse_manifest`."""
    try:
        return VersionManifest.model_validate(dict(fields))
    except ValidationError as exc:
        raise _invalid(exc) from None
