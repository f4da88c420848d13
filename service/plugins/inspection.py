"""The artifact-inspection hook: how a backend recognises its own artifact format and refuses unsafe bytes.

Formats are open: a backend names the format ids it accepts (plain strings: ``"onnx"``, ``"gguf"``,
``"openvino_ir"``, ...) and may bring an :class:`ArtifactInspector` that decides, from the bytes, which of
them an artifact is. Backends without one get the core's fallback sniffer for the built-in formats
(``service.security.sniff``). Either way the core has already checked the sha256, the size cap and, for zip
archives, every entry (names, duplicates, encryption, zip bombs) before the inspector runs.
"""

from __future__ import annotations

import abc
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

__all__ = ("ArtifactFile", "ArtifactFormat", "ArtifactInspector", "ArtifactLimits", "DEFAULT_LIMITS", "MAX_TENSORS")

ArtifactFormat: TypeAlias = str
"""A format id, named by the plugins: the built-in ones are ``onnx``, ``torchscript``, ``torch_export``,
``torch_pickle_zip``, ``pickle`` and ``safetensors``; a plugin may add any other (``gguf``, ...)."""

MAX_TENSORS = 200_000


@dataclass(frozen=True, slots=True)
class ArtifactLimits:
    """Caps checked from headers and opcodes, before a backend allocates anything."""

    max_tensors: int = MAX_TENSORS
    """Most tensors one artifact may declare (safetensors entries, pickle storages)."""
    max_pickle_member_bytes: int = 256 * 1024 * 1024
    """Largest ``.pkl`` member of a zip archive (the pickle holds structure only, tensors live beside it)."""
    max_unpacked_ratio: float = 4.0
    """Zip entries may declare at most this many times the archive's size (torch stores entries
    uncompressed; a larger ratio means a zip bomb)."""
    min_unpacked_allowance: int = 64 * 1024 * 1024
    """...or this many bytes, whichever is larger (small archives with compressed code entries)."""


DEFAULT_LIMITS = ArtifactLimits()


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """What an inspector is given: a verified file and the caps it must hold to."""

    path: Path
    """The hash-verified artifact (read-only, content-addressed: no meaningful file name or suffix)."""
    size: int
    """Its size in bytes, already within ``MODELPORT_MAX_ARTIFACT_BYTES``."""
    limits: ArtifactLimits = DEFAULT_LIMITS
    """Caps to apply before anything is allocated (tensor count, pickle member size)."""
    zip_entries: tuple[zipfile.ZipInfo, ...] | None = None
    """The entries of a zip archive, already vetted by the core; None when the file is no zip."""


class ArtifactInspector(abc.ABC):
    """Recognises one backend's artifacts from their bytes and refuses unsafe ones, before ``load`` runs.

    Set an instance as :attr:`service.plugins.Backend.inspector`. One instance serves every registration
    and load, from several worker threads at once: keep it stateless.
    """

    @abc.abstractmethod
    def inspect(self, artifact: ArtifactFile) -> ArtifactFormat:
        """Return the artifact's format id (one of the backend's ``formats``), or refuse it.

        Runs in a worker thread at every registration and every engine load, after the sha256 check and the
        core's archive checks, before the core checks the result against ``Backend.formats``. Read headers
        only: never deserialise code-bearing data here (use ``service.security.pickle_scan`` for pickles).

        Raises:
            service.errors.ArtifactRejected: with a message fit for the uploader (registration answers 422
                with it). Any other exception is reported the same way, prefixed with its type.
        """
