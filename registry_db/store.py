"""Content-addressed artifact store: ``<root>/sha256/<ab>/<hex>``, blobs read-only and never overwritten.

Bytes stream into a 0600 temp file under ``<root>/tmp/`` while their sha256 is computed and the size limit
is enforced; then fsync, an atomic link into place (which refuses to replace an existing blob) and fsync of
the directories. Only after that may a registry row point at the blob, so a crash at any point leaves at
worst an unreferenced blob or temp file, which ``modelport gc`` collects. Every read path re-hashes.

Safe for several processes sharing one directory (replicas on a shared volume): names are unique per
process and the link step is atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
from collections.abc import AsyncIterable, Iterator
from pathlib import Path

from registry_db.errors import ArtifactTooLarge, IntegrityError, StoreError
from registry_db.records import StoredArtifact
from registry_db.validation import storage_path_for

__all__ = ("ArtifactStore", "hash_file")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_BLOB_MODE = 0o444
_TMP_SUFFIX = ".part"


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
    """Durable, deduplicated, verified blobs addressed by their sha256."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self._blobs = self.root / "sha256"
        self._tmp = self.root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700, parents=True, exist_ok=True)

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

        Raises ArtifactTooLarge as soon as more than ``max_bytes`` arrive, StoreError for an empty stream; in
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
                    raise StoreError("artifact is empty")
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            return await asyncio.to_thread(self._commit, tmp, digest.hexdigest(), size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def put_file(self, path: Path) -> StoredArtifact:
        """Store a local file (the CLI's ``register``)."""

        async def read() -> AsyncIterable[bytes]:
            with Path(path).open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

        try:
            return await self.put_stream(read())
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None

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

        Blocking (reads the whole blob): call it from a worker thread in async code.
        """
        path = self.path_for(sha256)
        try:
            actual, _ = hash_file(path)
        except FileNotFoundError:
            raise IntegrityError(f"artifact {sha256[:12]}… is missing from the store") from None
        if actual != sha256:
            raise IntegrityError(f"artifact {sha256[:12]}… failed its integrity check (sha256 is now {actual[:12]}…)")
        return path

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def iter_blobs(self) -> Iterator[str]:
        """sha256 of every stored blob."""
        for path in self._blobs.glob("*/*"):
            if _HEX64.fullmatch(path.name) and path.parent.name == path.name[:2]:
                yield path.name

    def blob_age_s(self, sha256: str) -> float:
        """Seconds since the blob was written (or last deduplicated into)."""
        return time.time() - self.path_for(sha256).stat().st_mtime

    def delete(self, sha256: str, *, older_than_s: float = 0.0) -> bool:
        """Remove a blob no row references (``gc``); with ``older_than_s`` only if it is at least that old.

        Returns whether it was removed.
        """
        path = self.path_for(sha256)
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
        found = []
        for sha in self.iter_blobs():
            if sha in referenced:
                continue
            with contextlib.suppress(FileNotFoundError):
                if self.blob_age_s(sha) >= older_than_s:
                    found.append(sha)
        return sorted(found)

    def stale_temp_files(self, older_than_s: float = 3600.0) -> list[Path]:
        """Upload temp files left by crashed or killed registrations."""
        cutoff = time.time() - older_than_s
        stale = []
        for path in self._tmp.glob(f"*{_TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    stale.append(path)
        return sorted(stale)
