"""Blobs in a local directory: ``<root>/sha256/<ab>/<hex>``, read-only and never overwritten by other bytes.

Uploads land in 0600 temp files under ``<root>/tmp/``; :meth:`LocalBlobs.commit` links a fsynced temp file
into place atomically (refusing to replace an existing blob) and fsyncs the directories, so a crash at any
point leaves at worst an unreferenced blob or temp file, which ``modelport gc`` collects. Safe for several
processes sharing one directory (replicas on a shared volume): temp names are unique per process and the
link step is atomic.

The directory is the store of record when no bucket is configured, and a bucket replica's cache otherwise
(:class:`registry_db.bucket_blobs.BucketBlobs` builds on the same operations).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from registry_db.errors import IntegrityError
from registry_db.records import StoredArtifact
from registry_db.validation import storage_path_for

__all__ = ("LocalBlobs", "hash_file")

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


class LocalBlobs:
    """A content-addressed blob directory; a :class:`registry_db.blobs.BlobStore` of record on its own."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._blobs = self.root / "sha256"
        self._tmp = self.root / "tmp"
        self._pins = self.root / "locks"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._pins.mkdir(mode=0o700, exist_ok=True)

    # -- paths ----------------------------------------------------------------------------------------
    def relative_path(self, sha256: str) -> str:
        """``sha256/<ab>/<hex>``: what a version row stores as ``storage_path``."""
        if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
            raise IntegrityError(f"not a sha256 hex digest: {str(sha256)[:80]!r}")
        return storage_path_for(sha256)

    def path_for(self, sha256: str) -> Path:
        """Where the blob lives (whether or not it exists); always inside the directory."""
        resolved = (self.root / self.relative_path(sha256)).resolve()
        if not resolved.is_relative_to(self.root):
            raise IntegrityError("artifact path escapes the store")
        return resolved

    def resolve(self, storage_path: str) -> Path:
        """The absolute path of a row's ``storage_path``; IntegrityError unless it is a blob path in the store."""
        parts = storage_path.split("/") if isinstance(storage_path, str) else []
        if len(parts) != 3 or parts[0] != "sha256" or not _HEX64.fullmatch(parts[2]) or parts[1] != parts[2][:2]:
            raise IntegrityError(f"not a store path: {str(storage_path)[:100]!r}")
        return self.path_for(parts[2])

    def digest_of(self, sha256: str) -> str | None:
        """The sha256 the blob's bytes have now, or None when there is no such file (reads the whole blob)."""
        try:
            return hash_file(self.path_for(sha256))[0]
        except FileNotFoundError:
            return None

    def shas(self) -> Iterator[str]:
        """sha256 of every blob file in the directory."""
        for path in self._blobs.glob("*/*"):
            if _HEX64.fullmatch(path.name) and path.parent.name == path.name[:2]:
                yield path.name

    # -- writing --------------------------------------------------------------------------------------
    def open_temp(self) -> tuple[int, Path]:
        """A new private temp file (descriptor open for writing) for bytes on their way in."""
        name = self._tmp / f"upload-{os.getpid()}-{time.monotonic_ns()}{_TMP_SUFFIX}"
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), name

    def commit(self, tmp: Path, sha256: str, size: int) -> StoredArtifact:
        """Move a verified temp file into place; identical bytes are stored once, a good blob is never replaced."""
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

    # -- pins: registrations in flight -----------------------------------------------------------------
    def pin(self, sha256: str) -> int:
        """Pin the blob for a registration in flight: a shared flock on ``locks/<hex>.pin``, taken before the blob
        is linked in and held until its row commits or it gives up (close the returned descriptor). Blocks while a
        failed registration is removing the blob, so the bytes are linked in again after it. Open file
        descriptions conflict across threads and processes alike, and the kernel drops the lock when its holder
        dies. Pin files are empty and stay (removing one would race with a waiter on it)."""
        fd = os.open(self._pin_path(sha256), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def pin_exclusively(self, sha256: str) -> int | None:
        """The pin alone, without waiting: a descriptor holding it exclusively, or None while any registration
        (this process's included) holds the blob."""
        fd = os.open(self._pin_path(sha256), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _pin_path(self, sha256: str) -> Path:
        self.relative_path(sha256)  # a sha256 hex digest, nothing else
        return self._pins / f"{sha256}.pin"

    def stale_temp_files(self, older_than_s: float = 3600.0) -> list[Path]:
        """Upload and download temp files left by crashed or killed processes."""
        cutoff = time.time() - older_than_s
        stale = []
        for path in self._tmp.glob(f"*{_TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    stale.append(path)
        return sorted(stale)

    # -- the BlobStore protocol: this directory as the store of record ------------------------------------
    def publish(self, stored: StoredArtifact) -> None:
        """Nothing to do: :meth:`commit` already made the blob durable here."""

    def verified_path(self, sha256: str) -> Path:
        actual = self.digest_of(sha256)
        if actual is None:
            raise IntegrityError(f"artifact {sha256[:12]}… is missing from the store")
        if actual != sha256:
            raise IntegrityError(f"artifact {sha256[:12]}… failed its integrity check (sha256 is now {actual[:12]}…)")
        return self.path_for(sha256)

    def verify(self, sha256: str) -> int:
        return self.verified_path(sha256).stat().st_size

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def blob_ages(self) -> Iterator[tuple[str, float]]:
        for sha in self.shas():
            with contextlib.suppress(FileNotFoundError):
                yield sha, self.blob_age_s(sha)

    def blob_age_s(self, sha256: str) -> float:
        return time.time() - self.path_for(sha256).stat().st_mtime

    def delete(self, sha256: str, *, older_than_s: float) -> bool:
        path = self.path_for(sha256)
        try:
            if older_than_s > 0 and time.time() - path.stat().st_mtime < older_than_s:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True
