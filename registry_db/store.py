"""Content-addressed artifact store: ``<root>/sha256/<ab>/<hex>``, blobs read-only and never overwritten.

Bytes stream into a 0600 temp file under ``<root>/tmp/`` while their sha256 is computed and the size limit
is enforced; then fsync, an atomic link into place (which refuses to replace an existing blob) and fsync of
the directories. Only after that may a registry row point at the blob, so a crash at any point leaves at
worst an unreferenced blob or temp file, which ``modelport gc`` collects. Every read path re-hashes.

Safe for several processes sharing one directory (replicas on a shared volume): names are unique per
process and the link step is atomic.

With a ``remote`` (:class:`registry_db.object_store.ObjectStoreBlobs`, an S3-compatible bucket) the bucket is
the store of record and the directory is this replica's cache: a put returns only once the object is durable
in the bucket, a read re-hashes the cached copy and, when it is missing or damaged, streams the object into
a temp file while hashing it and links it into the cache only if the hash matches. Listing, ages and deletes
(``modelport gc``) then act on the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import AsyncIterable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from registry_db.errors import ArtifactTooLarge, ArtifactUnreadable, EmptyArtifact, IntegrityError, NotFound
from registry_db.records import StoredArtifact
from registry_db.validation import storage_path_for

if TYPE_CHECKING:
    from registry_db.object_store import ObjectStoreBlobs

__all__ = ("ArtifactStore", "hash_file")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_BLOB_MODE = 0o444
_TMP_SUFFIX = ".part"
_log = structlog.get_logger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: Path) -> tuple[str, int]:
    """sha256 hex and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore:
    """Durable, deduplicated, verified blobs addressed by their sha256.

    Args:
        root: the store directory (or, with ``remote``, this replica's cache directory).
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
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self.remote = remote
        self.cache_max_bytes = cache_max_bytes if remote is not None else 0
        self._blobs = self.root / "sha256"
        self._tmp = self.root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._locks = self.root / "locks"
        if remote is not None:
            self._locks.mkdir(mode=0o700, exist_ok=True)

    # -- paths ----------------------------------------------------------------------------------------
    def relative_path(self, sha256: str) -> str:
        """``sha256/<ab>/<hex>``: what a version row stores as ``storage_path``."""
        if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
            raise IntegrityError(f"not a sha256 hex digest: {str(sha256)[:80]!r}")
        return storage_path_for(sha256)

    def path_for(self, sha256: str) -> Path:
        """Where the blob lives (whether or not it exists); always inside the store."""
        return self._contained(self.root / self.relative_path(sha256))

    def resolve(self, storage_path: str) -> Path:
        """The absolute path of a row's ``storage_path``; IntegrityError unless it is a blob path in the store."""
        parts = storage_path.split("/") if isinstance(storage_path, str) else []
        if len(parts) != 3 or parts[0] != "sha256" or not _HEX64.fullmatch(parts[2]) or parts[1] != parts[2][:2]:
            raise IntegrityError(f"not a store path: {str(storage_path)[:100]!r}")
        return self.path_for(parts[2])

    def _contained(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise IntegrityError("artifact path escapes the store")
        return resolved

    # -- writing --------------------------------------------------------------------------------------
    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredArtifact:
        """Store streamed bytes and return the durable blob.

        Raises ArtifactTooLarge as soon as more than ``max_bytes`` arrive, EmptyArtifact for an empty stream; in
        every failure (cancellation included) the temp file is removed.
        """
        fd, tmp_name = await asyncio.to_thread(self._open_temp)
        tmp = Path(tmp_name)
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
            stored = await asyncio.to_thread(self._commit, tmp, digest.hexdigest(), size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.remote is not None:
            started = time.perf_counter()
            await asyncio.to_thread(self.remote.upload, stored.sha256, stored.path)
            _log.info("artifact_uploaded", sha256=stored.sha256[:12], bytes=size, ms=_ms_since(started))
            self._emit("upload", size, started)
            await asyncio.to_thread(self._prune_cache, stored.sha256)
        return stored

    async def put_file(self, path: Path) -> StoredArtifact:
        """Store a local file (the CLI's ``register``)."""

        async def read() -> AsyncIterable[bytes]:
            with Path(path).open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

        try:
            return await self.put_stream(read())
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise ArtifactUnreadable(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None

    def _open_temp(self) -> tuple[int, str]:
        name = self._tmp / f"upload-{os.getpid()}-{time.monotonic_ns()}{_TMP_SUFFIX}"
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), str(name)

    def _commit(self, tmp: Path, sha256: str, size: int) -> StoredArtifact:
        """Move a fsynced temp file into place; identical bytes are stored once, a good blob is never replaced."""
        final = self.path_for(sha256)
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(final.parent.parent)
        os.chmod(tmp, _BLOB_MODE)
        try:
            os.link(tmp, final)  # atomic; fails if the blob exists (even one another process just wrote)
        except FileExistsError:
            self._keep_or_repair(final, tmp, sha256, size)
        except OSError:  # a filesystem without hard links: rename (a racing writer has the same bytes)
            if final.exists():
                self._keep_or_repair(final, tmp, sha256, size)
            else:
                os.replace(tmp, final)
        tmp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        return StoredArtifact(sha256=sha256, size_bytes=size, path=final, storage_path=self.relative_path(sha256))

    def _keep_or_repair(self, final: Path, tmp: Path, sha256: str, size: int) -> None:
        """The blob exists: keep it if intact (refreshing its mtime so ``gc`` spares it while the new
        registration commits), else atomically replace the damaged copy with the verified temp file."""
        try:
            intact = final.stat().st_size == size and hash_file(final)[0] == sha256
        except FileNotFoundError:  # removed between link and check (gc): put ours in place
            intact = False
        if intact:
            with contextlib.suppress(OSError):
                os.utime(final)
            return
        os.replace(tmp, final)

    # -- reading --------------------------------------------------------------------------------------
    def verified_path(self, sha256: str) -> Path:
        """The blob's path after re-hashing it; IntegrityError if it is missing or its bytes changed.

        With a remote, a missing or damaged cached copy is fetched again (and verified) instead; only a
        missing or damaged object in the bucket is an IntegrityError. Blocking (reads the whole blob): call
        it from a worker thread in async code.
        """
        path = self.path_for(sha256)
        try:
            actual: str | None = hash_file(path)[0]
        except FileNotFoundError:
            actual = None
        if actual == sha256:
            if self.remote is not None:
                with contextlib.suppress(OSError):
                    os.utime(path)  # recency for the cache's LRU eviction
                self._emit("hit", 0, None)
            return path
        if self.remote is None:
            if actual is None:
                raise IntegrityError(f"artifact {sha256[:12]}… is missing from the store")
            raise IntegrityError(f"artifact {sha256[:12]}… failed its integrity check (sha256 is now {actual[:12]}…)")
        if actual is not None:
            _log.warning("artifact_cache_damaged", sha256=sha256[:12], found=actual[:12])
            self._emit("damaged", 0, None)
        # one download per blob at a time on this cache (threads and worker processes): who waited finds it fetched
        with self._fetch_lock(sha256):
            if actual is None and path.is_file() and hash_file(path)[0] == sha256:
                self._emit("hit", 0, None)
                return path
            return self._fetch(sha256)

    def verify_blob(self, sha256: str) -> int:
        """Re-hash the blob of record (the bucket's object with a remote) and return its size.

        IntegrityError if it is missing or its bytes changed. Nothing is cached: this is ``modelport verify``.
        """
        if self.remote is None:
            return self.verified_path(sha256).stat().st_size
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
        assert self.remote is not None
        started = time.perf_counter()
        fd, tmp_name = self._open_temp()
        tmp = Path(tmp_name)
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
            stored = self._commit(tmp, sha256, size)
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
        for sha in self._local_blobs():
            with contextlib.suppress(FileNotFoundError):
                st = self.path_for(sha).stat()
                cached.append((st.st_mtime, st.st_size, self.path_for(sha)))
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

    def _emit(self, event: str, size: int, started: float | None) -> None:
        if self.listener is not None:
            with contextlib.suppress(Exception):  # metrics must never fail a load
                self.listener(event, size, time.perf_counter() - started if started is not None else 0.0)

    def exists(self, sha256: str) -> bool:
        if self.remote is not None:
            return self.remote.exists(sha256)
        return self.path_for(sha256).is_file()

    def is_cached(self, sha256: str) -> bool:
        """Whether this replica holds a copy (with a remote; without one, whether the blob exists)."""
        return self.path_for(sha256).is_file()

    def _local_blobs(self) -> Iterator[str]:
        for path in self._blobs.glob("*/*"):
            if _HEX64.fullmatch(path.name) and path.parent.name == path.name[:2]:
                yield path.name

    def _blob_ages(self) -> Iterator[tuple[str, float]]:
        """(sha256, seconds since written or last deduplicated into) of every blob of record."""
        if self.remote is not None:
            for blob in self.remote.list():
                yield blob.sha256, self.remote.age_s(blob)
            return
        for sha in self._local_blobs():
            with contextlib.suppress(FileNotFoundError):
                yield sha, time.time() - self.path_for(sha).stat().st_mtime

    def iter_blobs(self) -> Iterator[str]:
        """sha256 of every stored blob (in the bucket, with a remote)."""
        for sha, _ in self._blob_ages():
            yield sha

    def blob_age_s(self, sha256: str) -> float:
        """Seconds since the blob was written (or last deduplicated into)."""
        if self.remote is not None:
            return self.remote.age_s(self.remote.head(sha256))
        return time.time() - self.path_for(sha256).stat().st_mtime

    def delete(self, sha256: str, *, older_than_s: float = 0.0) -> bool:
        """Remove a blob no row references (``gc``); with ``older_than_s`` only if it is at least that old.

        With a remote, the bucket's object and this replica's cached copy go. Returns whether it was removed.
        """
        path = self.path_for(sha256)
        if self.remote is not None:
            try:  # head first: S3 deletes are idempotent and would not say whether anything was there
                if self.blob_age_s(sha256) < older_than_s:
                    return False
                self.remote.delete(sha256)
            except NotFound:
                return False
            path.unlink(missing_ok=True)
            return True
        try:
            if older_than_s > 0 and time.time() - path.stat().st_mtime < older_than_s:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def orphans(self, referenced: set[str], *, older_than_s: float = 3600.0) -> list[str]:
        """Blobs no row references and that are older than ``older_than_s``.

        The age guard keeps blobs of registrations still in flight (stored, not yet committed) safe.
        """
        return sorted(sha for sha, age in self._blob_ages() if sha not in referenced and age >= older_than_s)

    def stale_temp_files(self, older_than_s: float = 3600.0) -> list[Path]:
        """Upload and download temp files left by crashed or killed processes."""
        cutoff = time.time() - older_than_s
        stale = []
        for path in self._tmp.glob(f"*{_TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    stale.append(path)
        return sorted(stale)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
