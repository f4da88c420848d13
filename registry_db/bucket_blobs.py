"""Blobs of record in an S3-compatible bucket, with a verified per-replica cache in a local directory.

A publish returns only once the object is durable in the bucket. A read re-hashes the cached copy and, when it
is missing or damaged, streams the object into a temp file while hashing it and links it into the cache only
if the hash matches; one download per blob at a time on a cache (an flock per blob, across threads and the
worker processes sharing it). The cache is bounded: least recently used blobs go first. Listing, ages and
deletes (``modelport gc``) act on the bucket.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from registry_db.blobs import Emit
from registry_db.errors import IntegrityError, NotFound
from registry_db.local_blobs import LocalBlobs, hash_file
from registry_db.records import StoredArtifact

if TYPE_CHECKING:
    from registry_db.object_store import ObjectStoreBlobs

__all__ = ("BucketBlobs",)

_log = structlog.get_logger(__name__)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class BucketBlobs:
    """A :class:`registry_db.blobs.BlobStore` of record in a bucket, caching verified copies in ``cache``.

    Args:
        cache: this replica's cache directory (the same one uploads stream through).
        remote: the bucket client.
        max_bytes: the largest blob accepted on download.
        cache_max_bytes: cached bytes kept (least recently used evicted first; 0 = no bound).
        emit: told of ``upload`` / ``download`` transfers and the cache events ``hit``, ``damaged``, ``evicted``.
    """

    def __init__(
        self, cache: LocalBlobs, remote: ObjectStoreBlobs, *, max_bytes: int, cache_max_bytes: int, emit: Emit
    ) -> None:
        self.cache = cache
        self.remote = remote
        self.max_bytes = max_bytes
        self.cache_max_bytes = cache_max_bytes
        self._emit = emit
        self._locks = cache.root / "locks"
        self._locks.mkdir(mode=0o700, exist_ok=True)

    def publish(self, stored: StoredArtifact) -> None:
        started = time.perf_counter()
        self.remote.upload(stored.sha256, stored.path)
        _log.info("artifact_uploaded", sha256=stored.sha256[:12], bytes=stored.size_bytes, ms=_ms_since(started))
        self._emit("upload", stored.size_bytes, started)
        self._prune_cache(stored.sha256)

    def verified_path(self, sha256: str) -> Path:
        """The cached copy after re-hashing it; a missing or damaged copy is fetched again (and verified).

        Only a missing or damaged object in the bucket is an IntegrityError.
        """
        path = self.cache.path_for(sha256)
        actual = self.cache.digest_of(sha256)
        if actual == sha256:
            with contextlib.suppress(OSError):
                os.utime(path)  # recency for the LRU eviction
            self._emit("hit", 0, None)
            return path
        if actual is not None:
            _log.warning("artifact_cache_damaged", sha256=sha256[:12], found=actual[:12])
            self._emit("damaged", 0, None)
        # one download per blob at a time on this cache (threads and worker processes): who waited finds it fetched
        with self._fetch_lock(sha256):
            if actual is None and path.is_file() and hash_file(path)[0] == sha256:
                self._emit("hit", 0, None)
                return path
            return self._fetch(sha256)

    def verify(self, sha256: str) -> int:
        digest = hashlib.sha256()
        try:
            with open(os.devnull, "wb") as sink:
                size = self.remote.download(sha256, sink, max_bytes=self.max_bytes, on_chunk=digest.update)
        except NotFound:
            raise IntegrityError(f"artifact {sha256[:12]}… is missing from {self.remote.url}") from None
        if digest.hexdigest() != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]}… in {self.remote.url} failed its integrity check "
                f"(sha256 is now {digest.hexdigest()[:12]}…)"
            )
        return size

    def exists(self, sha256: str) -> bool:
        return self.remote.exists(sha256)

    def blob_ages(self) -> Iterator[tuple[str, float]]:
        for blob in self.remote.list():
            yield blob.sha256, self.remote.age_s(blob)

    def blob_age_s(self, sha256: str) -> float:
        return self.remote.age_s(self.remote.head(sha256))

    def delete(self, sha256: str, *, older_than_s: float) -> bool:
        """The bucket's object and this replica's cached copy go."""
        try:  # head first: S3 deletes are idempotent and would not say whether anything was there
            if self.blob_age_s(sha256) < older_than_s:
                return False
            self.remote.delete(sha256)
        except NotFound:
            return False
        self.cache.path_for(sha256).unlink(missing_ok=True)
        return True

    # -- the cache ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _fetch_lock(self, sha256: str) -> Iterator[None]:
        """An exclusive flock per blob on this cache: open file descriptions conflict across threads and processes
        alike, and the kernel releases the lock when its holder dies. Lock files are empty and may stay."""
        fd = os.open(self._locks / sha256, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _fetch(self, sha256: str) -> Path:
        """Stream the bucket's object into the cache, hashing as it arrives; link it in only if it matches."""
        started = time.perf_counter()
        fd, tmp = self.cache.open_temp()
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as fh:
                size = self.remote.download(sha256, fh, max_bytes=self.max_bytes, on_chunk=digest.update)
            # no fsync: a cached copy lost to a crash fails its hash on the next read and is fetched again
            if digest.hexdigest() != sha256:
                raise IntegrityError(
                    f"artifact {sha256[:12]}… in {self.remote.url} failed its integrity check "
                    f"(sha256 is {digest.hexdigest()[:12]}…)"
                )
            stored = self.cache.commit(tmp, sha256, size)
        except NotFound:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(f"artifact {sha256[:12]}… is missing from {self.remote.url}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _log.info("artifact_fetched", sha256=sha256[:12], bytes=size, ms=_ms_since(started))
        self._emit("download", size, started)
        self._prune_cache(sha256)
        return stored.path

    def _prune_cache(self, keep: str) -> None:
        """Evict least recently used cached blobs beyond ``cache_max_bytes`` (never ``keep``)."""
        if not self.cache_max_bytes:
            return
        cached: list[tuple[float, int, Path]] = []
        for sha in self.cache.shas():
            with contextlib.suppress(FileNotFoundError):
                path = self.cache.path_for(sha)
                st = path.stat()
                cached.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in cached)
        for _, size, path in sorted(cached):
            if total <= self.cache_max_bytes:
                break
            if path.name == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            _log.info("artifact_cache_evicted", sha256=path.name[:12], bytes=size)
            self._emit("evicted", size, None)
