"""Content-addressed store: hashing while streaming, dedup, size limit, integrity on read, containment."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry_db.errors import ArtifactTooLarge, IntegrityError, StoreError
from registry_db.store import ArtifactStore


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_put_hashes_dedups_and_is_read_only(store: ArtifactStore) -> None:
    data = b"model-bytes" * 1000
    first = await store.put_stream(chunks(data[:5000], data[5000:]))
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.size_bytes == len(data)
    assert first.path.read_bytes() == data
    assert first.storage_path == f"sha256/{first.sha256[:2]}/{first.sha256}"
    assert not first.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    second = await store.put_stream(chunks(data))
    assert second.path == first.path and list(store.iter_blobs()) == [first.sha256]
    assert store.verified_path(first.sha256) == first.path
    assert not list((store.root / "tmp").iterdir())


async def test_size_limit_enforced_while_streaming(tmp_path: Path) -> None:
    small = ArtifactStore(tmp_path / "s", max_bytes=100)
    with pytest.raises(ArtifactTooLarge):
        await small.put_stream(chunks(b"x" * 60, b"y" * 60))
    assert not list((small.root / "tmp").iterdir()) and not list(small.iter_blobs())
    with pytest.raises(StoreError):
        await small.put_stream(chunks())


async def test_tampered_or_missing_blob_fails_verification(store: ArtifactStore) -> None:
    stored = await store.put_stream(chunks(b"abc" * 100))
    stored.path.chmod(0o600)
    raw = bytearray(stored.path.read_bytes())
    raw[10] ^= 1
    stored.path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="integrity"):
        store.verified_path(stored.sha256)
    store.delete(stored.sha256)
    with pytest.raises(IntegrityError, match="missing"):
        store.verified_path(stored.sha256)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab" * 31, "AB" * 32, "zz" * 32, ""])
def test_paths_only_from_hex_digests(store: ArtifactStore, bad: str) -> None:
    with pytest.raises(IntegrityError):
        store.path_for(bad)
