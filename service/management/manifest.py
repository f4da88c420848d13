"""The manifest that accompanies an uploaded artifact (admin API ``manifest`` part, CLI flags)."""

from __future__ import annotations

from typing import Any

import msgspec

from service.plugins import TensorSpec

__all__ = ("Signature", "VersionManifest")


class Signature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Declared tensors; required for formats that carry no shapes (state_dicts, TorchScript)."""

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()


class VersionManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an uploader says about an artifact. Paths and URLs are deliberately absent: the server decides
    where artifacts live, and nothing is ever fetched from a URL."""

    backend: str
    version: str | None = None
    architecture: str | None = None
    architecture_config: dict[str, Any] = msgspec.field(default_factory=dict)
    signature: Signature | None = None
    preprocessing: dict[str, Any] | None = None
    postprocessing: dict[str, Any] | None = None
    card: dict[str, Any] = msgspec.field(default_factory=dict)
    description: str | None = None
