"""The store of record for artifact blobs, as one protocol with two implementations.

:class:`registry_db.local_blobs.LocalBlobs` keeps blobs in a directory (the embedded default, or a volume
shared by replicas); :class:`registry_db.bucket_blobs.BucketBlobs` keeps them in an S3-compatible bucket and
uses such a directory as this replica's verified cache. :class:`registry_db.store.ArtifactStore` streams
uploads into the local directory and then hands the durable blob to whichever one it was built with, so it
never asks which kind it has.

Every method blocks (it hashes files or talks to the network): call them from worker threads in async code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from registry_db.records import StoredArtifact

__all__ = ("BlobStore", "Emit")

Emit = Callable[[str, int, float | None], None]
"""Reports a store event as ``(event, size_bytes, perf_counter at its start or None)`` (metrics)."""


class BlobStore(Protocol):
    """Blobs of record, addressed by sha256; every read re-hashes, so a damaged blob is never served."""

    def publish(self, stored: StoredArtifact) -> None:
        """Called once ``stored`` is durable in the local directory; returns once it is durable in the store
        of record (only then may a registry row point at it)."""

    def verified_path(self, sha256: str) -> Path:
        """A local path holding the blob's bytes, re-hashed now; IntegrityError if they are missing or changed
        in the store of record."""

    def verify(self, sha256: str) -> int:
        """Re-hash the blob of record and return its size; IntegrityError if missing or changed
        (``modelport verify``: caches nothing)."""

    def exists(self, sha256: str) -> bool:
        """Whether the store of record holds the blob (without hashing it)."""

    def blob_ages(self) -> Iterator[tuple[str, float]]:
        """(sha256, seconds since written or last deduplicated into) of every blob of record."""

    def blob_age_s(self, sha256: str) -> float:
        """Seconds since the blob was written (or last deduplicated into); NotFound / FileNotFoundError if absent."""

    def delete(self, sha256: str, *, older_than_s: float) -> bool:
        """Remove the blob (``modelport gc``) unless it is younger than ``older_than_s``; whether it went."""
