"""Content-addressed artifact store: what the service and the CLI use, whatever keeps the blobs of record.

Bytes stream into a private temp file in the local directory while their sha256 is computed and the size
limit is enforced; then fsync and an atomic link into place (:class:`registry_db.local_blobs.LocalBlobs`),
then the store of record takes the blob (:class:`registry_db.blobs.BlobStore`: the directory itself, or a
bucket with the directory as this replica's cache). Only after that may a registry row point at the blob, so
a crash at any point leaves at worst an unreferenced blob or temp file, which ``modelport gc`` collects.
Every read path re-hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from registry_db.blobs import BlobStore
from registry_db.bucket_blobs import BucketBlobs
from registry_db.errors import ArtifactTooLarge, ArtifactUnreadable, EmptyArtifact
from registry_db.local_blobs import LocalBlobs, hash_file
from registry_db.records import StoredArtifact

if TYPE_CHECKING:
    from registry_db.object_store import ObjectStoreBlobs

__all__ = ("ArtifactStore", "STALE_TEMP_AGE_S", "hash_file")

_log = structlog.get_logger(__name__)
_CHUNK = 1 << 20
STALE_TEMP_AGE_S = 900.0
"""A temp file untouched this long belongs to no live writer (an upload stalls at most ``BODY_IDLE_TIMEOUT_S``,
30 s by default, before it is refused); start-up removes such files, across replicas sharing the directory."""


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file's bytes (the CLI's ``register``); ArtifactUnreadable when it cannot be opened."""
    try:
        with Path(path).open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ArtifactUnreadable(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


class ArtifactStore:
    """Durable, deduplicated, verified blobs addressed by their sha256.

    Args:
        root: the local blob directory: the store of record, or with ``remote`` this replica's cache.
        max_bytes: the largest blob accepted, on upload and on download.
        remote: the bucket of record, if any.
        cache_max_bytes: with ``remote``, cached bytes kept (least recently used evicted first; 0 = no bound).

    ``listener``, when set, is called as ``(event, size_bytes, seconds)`` for ``upload`` and ``download``
    transfers and the cache events ``hit``, ``damaged`` and ``evicted`` (metrics without an import of them).
    """

    listener: Callable[[str, int, float], None] | None = None

    def __init__(
        self, root: Path, *, max_bytes: int, remote: ObjectStoreBlobs | None = None, cache_max_bytes: int = 0
    ) -> None:
        self.max_bytes = max_bytes
        self._dir = LocalBlobs(root)
        self.root = self._dir.root
        self._blobs: BlobStore = self._dir
        self.cache_max_bytes = 0
        if remote is not None:  # the one place the kind of store of record is chosen
            self.cache_max_bytes = cache_max_bytes
            self._blobs = BucketBlobs(
                self._dir, remote, max_bytes=max_bytes, cache_max_bytes=cache_max_bytes, emit=self._emit
            )

    # -- paths ----------------------------------------------------------------------------------------
    def relative_path(self, sha256: str) -> str:
        """``sha256/<ab>/<hex>``: what a version row stores as ``storage_path``."""
        return self._dir.relative_path(sha256)

    def path_for(self, sha256: str) -> Path:
        """Where the local copy lives (whether or not it exists); always inside the store."""
        return self._dir.path_for(sha256)

    def resolve(self, storage_path: str) -> Path:
        """The absolute path of a row's ``storage_path``; IntegrityError unless it is a blob path in the store."""
        return self._dir.resolve(storage_path)

    # -- writing --------------------------------------------------------------------------------------
    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredArtifact:
        """Store streamed bytes and return the blob once it is durable in the store of record.

        Raises ArtifactTooLarge as soon as more than ``max_bytes`` arrive, EmptyArtifact for an empty stream; in
        every failure (cancellation included) the temp file is removed.
        """
        return await self._put(chunks, None)

    async def put_file(self, path: Path) -> StoredArtifact:
        """Store a local file (the CLI's ``register``)."""
        return await self._put(_file_chunks(path), None)

    @contextlib.asynccontextmanager
    async def provisional(
        self, artifact: Path | AsyncIterable[bytes], *, referenced: Callable[[str], Awaitable[bool]]
    ) -> AsyncIterator[StoredArtifact]:
        """Store the bytes of a registration that may still be refused, and take them back if it is.

        The blob is pinned (:meth:`LocalBlobs.pin`) from before it is linked in until the block ends. When the
        block raises (the artifact fails its checks or smoke test, the row cannot commit), the blob is removed
        again, unless ``referenced(sha256)`` says a version row points at it (the same bytes registered before)
        or another registration holds it pinned (it will commit a row or take the blob back itself). So a
        refused upload leaves nothing in the local store beyond its request, and a concurrent one is never robbed.
        With a bucket as the store of record only this replica's copy goes: the pin cannot see registrations on
        other replicas, so the object is left to ``modelport gc``.
        """
        pins: list[int] = []
        chunks = _file_chunks(artifact) if isinstance(artifact, Path) else artifact
        stored = await self._put(chunks, pins)
        try:
            yield stored
        except BaseException:
            self._unpin(pins)
            await self._take_back(stored.sha256, referenced)
            raise
        self._unpin(pins)

    async def _put(self, chunks: AsyncIterable[bytes], pins: list[int] | None) -> StoredArtifact:
        fd, tmp = await asyncio.to_thread(self._dir.open_temp)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ArtifactTooLarge(f"artifact exceeds the limit of {self.max_bytes} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
                if size == 0:
                    raise EmptyArtifact("artifact is empty")
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            sha256 = digest.hexdigest()
            if pins is not None:
                pins.append(await asyncio.to_thread(self._dir.pin, sha256))
            stored = await asyncio.to_thread(self._dir.commit, tmp, sha256, size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            self._unpin(pins or [])
            raise
        try:
            await asyncio.to_thread(self._blobs.publish, stored)
        except BaseException:
            self._unpin(pins or [])
            raise
        return stored

    @staticmethod
    def _unpin(pins: list[int]) -> None:
        while pins:
            os.close(pins.pop())

    async def _take_back(self, sha256: str, referenced: Callable[[str], Awaitable[bool]]) -> None:
        """Remove a refused registration's blob unless it is referenced or pinned by another registration.

        Never raises: the caller is already failing with the reason that matters; a blob left here is collected
        by ``modelport gc``."""
        try:
            fd = await asyncio.to_thread(self._dir.pin_exclusively, sha256)
            if fd is None:
                _log.info("artifact_kept", sha256=sha256[:12], reason="another registration holds it")
                return
            try:
                if await referenced(sha256):
                    _log.info("artifact_kept", sha256=sha256[:12], reason="a version references it")
                    return
                # a bucket is shared by replicas whose registrations this pin does not see: there only this
                # replica's copy goes, and the object is left to `modelport gc` (its age guard covers them)
                if await asyncio.to_thread(self._dir.delete, sha256, older_than_s=0.0):
                    _log.info("artifact_discarded", sha256=sha256[:12], reason="its registration was refused")
            finally:
                os.close(fd)
        except Exception as exc:  # noqa: BLE001 - see above
            _log.warning("artifact_discard_failed", sha256=sha256[:12], error=f"{type(exc).__name__}: {exc}")

    # -- reading --------------------------------------------------------------------------------------
    def verified_path(self, sha256: str) -> Path:
        """A local path to the blob after re-hashing it; IntegrityError if it is missing or its bytes changed.

        With a bucket, a missing or damaged cached copy is fetched again (and verified) instead; only a missing
        or damaged object in the bucket is an IntegrityError. Blocking (reads the whole blob): call it from a
        worker thread in async code.
        """
        return self._blobs.verified_path(sha256)

    def verify_blob(self, sha256: str) -> int:
        """Re-hash the blob of record (the bucket's object with a remote) and return its size.

        IntegrityError if it is missing or its bytes changed. Nothing is cached: this is ``modelport verify``.
        """
        return self._blobs.verify(sha256)

    def exists(self, sha256: str) -> bool:
        """Whether the store of record holds the blob."""
        return self._blobs.exists(sha256)

    def is_cached(self, sha256: str) -> bool:
        """Whether this replica holds a copy (with a remote; without one, whether the blob exists)."""
        return self._dir.exists(sha256)

    def iter_blobs(self) -> Iterator[str]:
        """sha256 of every stored blob (in the bucket, with a remote)."""
        for sha, _ in self._blobs.blob_ages():
            yield sha

    def blob_age_s(self, sha256: str) -> float:
        """Seconds since the blob was written (or last deduplicated into)."""
        return self._blobs.blob_age_s(sha256)

    # -- collecting -----------------------------------------------------------------------------------
    def delete(self, sha256: str, *, older_than_s: float = 0.0) -> bool:
        """Remove a blob no row references (``gc``); with ``older_than_s`` only if it is at least that old.

        With a remote, the bucket's object and this replica's cached copy go. Returns whether it was removed.
        """
        return self._blobs.delete(sha256, older_than_s=older_than_s)

    def orphans(self, referenced: set[str], *, older_than_s: float = 3600.0) -> list[str]:
        """Blobs no row references and that are older than ``older_than_s``.

        The age guard keeps blobs of registrations still in flight (stored, not yet committed) safe.
        """
        return sorted(sha for sha, age in self._blobs.blob_ages() if sha not in referenced and age >= older_than_s)

    def stale_temp_files(self, older_than_s: float = 3600.0) -> list[Path]:
        """Upload and download temp files left by crashed or killed processes."""
        return self._dir.stale_temp_files(older_than_s)

    def remove_stale_temp_files(self, older_than_s: float = STALE_TEMP_AGE_S) -> int:
        """Remove the temp files of uploads and downloads that stopped (a killed process) at least
        ``older_than_s`` ago; run at server start-up. Live writers touch theirs far more often. The count."""
        removed = 0
        for path in self.stale_temp_files(older_than_s):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    def _emit(self, event: str, size: int, started: float | None) -> None:
        if self.listener is not None:
            with contextlib.suppress(Exception):  # metrics must never fail a load
                self.listener(event, size, time.perf_counter() - started if started is not None else 0.0)
