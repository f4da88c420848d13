"""Pydantic field types for the admin edge: the registry's own rules, run where a body is parsed.

Each name type calls the function ``registry_db.validation`` calls (one rule, not two), so a bad label is a 400
naming the field before any service runs; the pattern is repeated only in the JSON schema, for OpenAPI readers.
Validation here is rich and slow on purpose: these bodies are rare. The inference hot path stays on msgspec.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, StrictStr

from registry_db.validation import (
    NAME_PATTERN,
    validate_alias,
    validate_model_name,
    validate_plugin_name,
    validate_version_label,
)

__all__ = (
    "AliasName",
    "ExactInt",
    "ModelName",
    "PluginName",
    "VersionLabel",
    "body_config",
    "bounded_json_object",
)


def _exact_int(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return value


ExactInt = Annotated[int, BeforeValidator(_exact_int)]
"""An integer and nothing that converts to one (no ``"5"``, ``5.0`` or ``true``). Not ``StrictInt``: Litestar
validates bodies with ``model_validate(..., strict=False)``, which switches field-level strictness off."""


def _name_schema(*examples: str) -> dict[str, Any]:
    # examples go inside json_schema_extra, not Field(examples=...): Litestar merges the two into this dict on
    # every schema build, which would repeat Field examples once per model that shares the type
    schema: dict[str, Any] = {"pattern": NAME_PATTERN.pattern, "maxLength": 64}
    return {**schema, "examples": list(examples)} if examples else schema


ModelName = Annotated[StrictStr, AfterValidator(validate_model_name), Field(json_schema_extra=_name_schema("digits"))]
"""A model name: also a URL path segment and a metric label."""

VersionLabel = Annotated[StrictStr, AfterValidator(validate_version_label), Field(json_schema_extra=_name_schema("2"))]
"""A version label (``^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$``)."""

AliasName = Annotated[StrictStr, AfterValidator(validate_alias), Field(json_schema_extra=_name_schema())]
"""An alias or API key name (same alphabet as labels)."""

PluginName = Annotated[
    StrictStr,
    AfterValidator(partial(validate_plugin_name, "plugin name")),
    Field(json_schema_extra=_name_schema("onnx")),
]
"""A backend or architecture entry-point name, as stored on a version."""


def body_config(example: dict[str, Any]) -> ConfigDict:
    """Frozen, unknown fields refused, one example for the OpenAPI document.

    Litestar's OpenAPI reads a model's example from the non-standard ``example`` config key, pydantic's own
    ``model_json_schema`` from ``json_schema_extra``: both are set from the one value.
    """
    config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [example]})
    config["example"] = example  # type: ignore[typeddict-unknown-key]
    return config


def bounded_json_object(value: dict[str, Any], *, max_bytes: int) -> dict[str, Any]:
    """``value`` if it is a JSON object of at most ``max_bytes`` (compact UTF-8), else ValueError saying why.

    It is stored in a JSON column and handed to plugins, so NaN/Infinity and non-JSON Python values are
    refused here rather than at commit time, and the size cap keeps registry rows small.
    """
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"must be plain JSON (no NaN, Infinity or non-JSON values): {exc}") from None
    size = len(encoded.encode("utf-8"))
    if size > max_bytes:
        raise ValueError(f"is {size} bytes of JSON; the limit is {max_bytes}")
    return value
