"""Content-addressed store: hashing while streaming, dedup, size limit, integrity on read, containment, gc help."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry_db.errors import ArtifactTooLarge, IntegrityError, StoreError
from registry_db.store import ArtifactStore


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def temp_files(store: ArtifactStore) -> list[Path]:
    return list((store.root / "tmp").iterdir())


async def test_put_hashes_dedups_and_is_read_only(store: ArtifactStore) -> None:
    data = b"model-bytes" * 1000
    first = await store.put_stream(chunks(data[:5000], data[5000:]))
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.size_bytes == len(data)
    assert first.path.read_bytes() == data
    assert first.storage_path == f"sha256/{first.sha256[:2]}/{first.sha256}"
    assert first.path == store.root / first.storage_path
    assert not first.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    second = await store.put_stream(chunks(data))
    assert second.path == first.path and list(store.iter_blobs()) == [first.sha256]
    assert store.verified_path(first.sha256) == first.path
    assert temp_files(store) == []


async def test_temp_file_is_private_while_streaming(store: ArtifactStore) -> None:
    modes: list[int] = []

    async def watching() -> AsyncIterator[bytes]:
        yield b"first"
        modes.extend(stat.S_IMODE(p.stat().st_mode) for p in temp_files(store))
        yield b"second"

    await store.put_stream(watching())
    assert modes == [0o600]
    assert temp_files(store) == []


async def test_size_limit_enforced_while_streaming(tmp_path: Path) -> None:
    small = ArtifactStore(tmp_path / "s", max_bytes=100)
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1000):
            pulled.append(i)
            yield b"x" * 60

    with pytest.raises(ArtifactTooLarge):
        await small.put_stream(endless())
    assert len(pulled) == 2  # stopped reading as soon as the limit was crossed
    assert temp_files(small) == [] and list(small.iter_blobs()) == []
    exact = await small.put_stream(chunks(b"y" * 100))
    assert exact.size_bytes == 100
    with pytest.raises(StoreError):
        await small.put_stream(chunks())
    assert temp_files(small) == []


async def test_failing_or_cancelled_upload_leaves_nothing(store: ArtifactStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream(broken())
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"partial"
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put_stream(stalled()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert temp_files(store) == [] and list(store.iter_blobs()) == []


async def test_put_file(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))  # several read chunks
    stored = await store.put_file(source)
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert stored.size_bytes == source.stat().st_size
    with pytest.raises(StoreError, match="cannot read"):
        await store.put_file(tmp_path / "missing.onnx")
    with pytest.raises(StoreError, match="cannot read"):
        await store.put_file(tmp_path)


async def test_concurrent_identical_uploads_store_one_blob(store: ArtifactStore) -> None:
    data = os.urandom(200_000)
    results = await asyncio.gather(*(store.put_stream(chunks(data[:1000], data[1000:])) for _ in range(8)))
    assert {r.path for r in results} == {results[0].path}
    assert list(store.iter_blobs()) == [results[0].sha256]
    assert store.verified_path(results[0].sha256).read_bytes() == data
    assert temp_files(store) == []


async def test_tampered_or_missing_blob_fails_verification(store: ArtifactStore) -> None:
    stored = await store.put_stream(chunks(b"abc" * 100))
    stored.path.chmod(0o600)
    raw = bytearray(stored.path.read_bytes())
    raw[10] ^= 1
    stored.path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="integrity"):
        store.verified_path(stored.sha256)
    assert store.delete(stored.sha256)
    with pytest.raises(IntegrityError, match="missing"):
        store.verified_path(stored.sha256)


async def test_storing_good_bytes_again_repairs_a_damaged_blob(store: ArtifactStore) -> None:
    data = b"weights" * 500
    stored = await store.put_stream(chunks(data))
    stored.path.chmod(0o600)
    stored.path.write_bytes(b"tampered")
    again = await store.put_stream(chunks(data))
    assert store.verified_path(again.sha256).read_bytes() == data
    assert not again.path.stat().st_mode & stat.S_IWUSR


async def test_dedup_refreshes_the_blob_age(store: ArtifactStore) -> None:
    stored = await store.put_stream(chunks(b"old bytes"))
    old = time.time() - 7200
    os.utime(stored.path, (old, old))
    assert store.orphans(set(), older_than_s=3600) == [stored.sha256]
    await store.put_stream(chunks(b"old bytes"))  # a new registration reuses the blob
    assert store.orphans(set(), older_than_s=3600) == []
    assert store.blob_age_s(stored.sha256) < 60


async def test_orphans_stale_temp_files_and_guarded_delete(store: ArtifactStore) -> None:
    kept = await store.put_stream(chunks(b"referenced"))
    orphan = await store.put_stream(chunks(b"orphan"))
    young = await store.put_stream(chunks(b"young orphan"))
    old = time.time() - 7200
    for path in (kept.path, orphan.path):
        os.utime(path, (old, old))
    assert store.orphans({kept.sha256}, older_than_s=3600) == [orphan.sha256]
    assert sorted(store.orphans({kept.sha256}, older_than_s=0)) == sorted([orphan.sha256, young.sha256])
    assert not store.delete(young.sha256, older_than_s=3600) and young.path.exists()
    assert store.delete(orphan.sha256, older_than_s=3600) and not orphan.path.exists()
    assert not store.delete(orphan.sha256)  # already gone
    stale = store.root / "tmp" / "upload-1-1.part"
    fresh = store.root / "tmp" / "upload-1-2.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (old, old))
    assert store.stale_temp_files(older_than_s=3600) == [stale]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab" * 31, "AB" * 32, "zz" * 32, "", "ab" * 32 + "/.."])
def test_paths_only_from_hex_digests(store: ArtifactStore, bad: str) -> None:
    with pytest.raises(IntegrityError):
        store.path_for(bad)
    with pytest.raises(IntegrityError):
        store.verified_path(bad)


@pytest.mark.parametrize(
    "storage_path",
    ["../sha256/ab/" + "ab" * 32, "sha256/cd/" + "ab" * 32, "/etc/passwd", "sha256/ab/" + "ab" * 32 + "/../x", ""],
)
def test_storage_paths_must_be_blob_paths(store: ArtifactStore, storage_path: str) -> None:
    with pytest.raises(IntegrityError):
        store.resolve(storage_path)


def test_storage_path_resolves_inside_root(store: ArtifactStore) -> None:
    digest = "ab" * 32
    assert store.resolve(f"sha256/ab/{digest}") == store.path_for(digest)
    assert store.path_for(digest).is_relative_to(store.root)


def test_symlinked_shard_escaping_the_store_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "sha256" / "ab").symlink_to(outside)
    with pytest.raises(IntegrityError, match="escapes"):
        store.path_for("ab" * 32)
