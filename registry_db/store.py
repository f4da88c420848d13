"""Content-addressed artifact store: ``<root>/sha256/<ab>/<hex>``.

Bytes stream into a 0600 temp file inside the store while their sha256 is computed and the size limit is
enforced; then fsync, atomic rename (never over an existing blob) and fsync of the directory. Only after
that may a registry row point at the blob. Every read path re-hashes.
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

__all__ = ("ArtifactStore",)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


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
    """Durable, deduplicated, verified blobs. Safe for several processes sharing one directory."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self._blobs = self.root / "sha256"
        self._tmp = self.root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    # -- paths ----------------------------------------------------------------------------------------
    def relative_path(self, sha256: str) -> str:
        if not _HEX64.fullmatch(sha256):
            raise IntegrityError(f"not a sha256 hex digest: {sha256[:80]!r}")
        return f"sha256/{sha256[:2]}/{sha256}"

    def path_for(self, sha256: str) -> Path:
        """Where the blob lives (whether or not it exists); always inside the store."""
        path = (self.root / self.relative_path(sha256)).resolve()
        if not path.is_relative_to(self.root):
            raise IntegrityError("artifact path escapes the store")
        return path

    # -- writing --------------------------------------------------------------------------------------
    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredArtifact:
        """Store streamed bytes; ArtifactTooLarge past ``max_bytes`` (nothing left behind)."""
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
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return await asyncio.to_thread(self._commit, tmp, digest.hexdigest(), size)

    async def put_file(self, path: Path) -> StoredArtifact:
        """Store a local file (the CLI's ``register``)."""

        async def read() -> AsyncIterable[bytes]:
            with Path(path).open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

        try:
            return await self.put_stream(read())
        except FileNotFoundError:
            raise StoreError(f"no such file: {path}") from None

    def _open_temp(self) -> tuple[int, str]:
        name = self._tmp / f"upload-{os.getpid()}-{time.monotonic_ns()}.part"
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), str(name)

    def _commit(self, tmp: Path, sha256: str, size: int) -> StoredArtifact:
        final = self.path_for(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink(missing_ok=True)  # identical bytes are stored once; never overwrite a blob
        else:
            os.chmod(tmp, 0o400)
            try:
                os.link(tmp, final)  # atomic, and refuses to replace a blob another process just wrote
            except FileExistsError:
                pass
            except OSError:  # filesystems without hard links: rename (same bytes if it raced)
                os.replace(tmp, final)
            tmp.unlink(missing_ok=True)
            _fsync_dir(final.parent)
        return StoredArtifact(sha256=sha256, size_bytes=size, path=final, storage_path=self.relative_path(sha256))

    # -- reading --------------------------------------------------------------------------------------
    def verified_path(self, sha256: str) -> Path:
        """The blob's path after re-hashing it; IntegrityError if missing or altered."""
        path = self.path_for(sha256)
        try:
            actual, _ = hash_file(path)
        except FileNotFoundError:
            raise IntegrityError(f"artifact {sha256[:12]}… is missing from the store") from None
        if actual != sha256:
            raise IntegrityError(f"artifact {sha256[:12]}… failed its integrity check (sha256 is now {actual[:12]}…)")
        return path

    def iter_blobs(self) -> Iterator[str]:
        """sha256 of every stored blob."""
        for path in self._blobs.glob("*/*"):
            if _HEX64.fullmatch(path.name):
                yield path.name

    def delete(self, sha256: str) -> None:
        path = self.path_for(sha256)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def stale_temp_files(self, older_than_s: float = 3600.0) -> list[Path]:
        cutoff = time.time() - older_than_s
        return [p for p in self._tmp.glob("*.part") if p.stat().st_mtime < cutoff]
