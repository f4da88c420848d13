"""Artifact store backed by an S3-compatible bucket (moto's server over real HTTP), with a verified local cache."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from registry_db.errors import ArtifactTooLarge, IntegrityError, StoreError, StoreUnavailable
from registry_db.object_store import ObjectStoreBlobs, S3Options
from registry_db.store import ArtifactStore
from tests.helpers.s3 import S3Server
from tests.helpers.server import free_port

MakeStore = Callable[..., ArtifactStore]


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def put(store: ArtifactStore, data: bytes) -> str:
    return asyncio.run(store.put_stream(chunks(data[: len(data) // 2], data[len(data) // 2 :]))).sha256


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


@pytest.fixture
def make_store(s3_server: S3Server, bucket: str, tmp_path: Path) -> MakeStore:
    """A replica's store: its own cache directory, the shared bucket under prefix ``models``."""

    def make(name: str, *, max_bytes: int = 10**8, cache_max_bytes: int = 0) -> ArtifactStore:
        remote = ObjectStoreBlobs(f"s3://{bucket}/models", s3_server.options())
        return ArtifactStore(tmp_path / name, max_bytes=max_bytes, remote=remote, cache_max_bytes=cache_max_bytes)

    return make


def key(sha: str) -> str:
    return f"models/sha256/{sha[:2]}/{sha}"


def test_put_is_durable_in_the_bucket_under_the_rows_storage_path(
    make_store: MakeStore, s3_server: S3Server, bucket: str
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    sha = put(make_store("a"), data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert s3_server.get(bucket, key(sha)) == data
    assert s3_server.keys(bucket) == [key(sha)]


def test_another_replica_fetches_verifies_and_caches(make_store: MakeStore) -> None:
    data = os.urandom(100_000)
    sha = put(make_store("a"), data)
    b = make_store("b")
    assert not b.is_cached(sha)
    path = b.verified_path(sha)
    assert path.read_bytes() == data and b.is_cached(sha)
    assert path.is_relative_to(b.root) and oct(path.stat().st_mode & 0o777) == "0o444"
    assert list((b.root / "tmp").iterdir()) == []
    assert b.verified_path(sha) == path  # served from the cache (re-hashed) the second time


def test_damaged_or_deleted_cache_is_fetched_again(make_store: MakeStore) -> None:
    data = b"weights" * 5000
    a = make_store("a")
    events: list[tuple[str, int]] = []
    a.listener = lambda event, size, seconds: events.append((event, size))
    sha = put(a, data)
    cached = a.path_for(sha)
    os.chmod(cached, 0o644)
    cached.write_bytes(b"tampered" + data[8:])
    assert a.verified_path(sha).read_bytes() == data  # repaired from the bucket
    cached.unlink()
    assert a.verified_path(sha).read_bytes() == data
    a.verified_path(sha)
    assert events == [
        ("upload", len(data)),
        ("damaged", 0),
        ("download", len(data)),
        ("download", len(data)),
        ("hit", 0),
    ]


def test_concurrent_loads_of_one_blob_download_it_once(make_store: MakeStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = os.urandom(2_000_000)
    sha = put(make_store("a"), data)
    b = make_store("b")
    events: list[str] = []
    b.listener = lambda event, size, seconds: events.append(event)
    with ThreadPoolExecutor(6) as pool:
        paths = list(pool.map(lambda _: b.verified_path(sha), range(6)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == data
    assert sorted(events) == ["download"] + ["hit"] * 5


_COLD_LOAD = """
import sys, time
from pathlib import Path
from registry_db.object_store import ObjectStoreBlobs, S3Options
from registry_db.store import ArtifactStore
endpoint, url, cache, sha, start_at = sys.argv[1:6]
options = S3Options(endpoint_url=endpoint, region="us-east-1", access_key_id="modelport-test",
                    secret_access_key="modelport-test-secret", allow_http=True)
store = ArtifactStore(Path(cache), max_bytes=10**9, remote=ObjectStoreBlobs(url, options))
events = []
store.listener = lambda event, size, seconds: events.append(event)
time.sleep(max(0.0, float(start_at) - time.time()))
store.verified_path(sha)
print(",".join(events))
"""


def test_worker_processes_sharing_a_cache_download_a_blob_once(
    make_store: MakeStore, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    import subprocess
    import sys
    import time

    data = os.urandom(24 * 1024 * 1024)  # long enough for the downloads to overlap
    sha = put(make_store("a"), data)
    start_at = str(time.time() + 3.0)  # after every interpreter has started
    args = [s3_server.endpoint, f"s3://{bucket}/models", str(tmp_path / "pod-cache"), sha, start_at]
    procs = [
        subprocess.Popen([sys.executable, "-c", _COLD_LOAD, *args], stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120)[0].strip().splitlines()[-1] for proc in procs]  # after the log lines
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert sorted(outputs) == ["download", "hit", "hit"]
    assert (tmp_path / "pod-cache" / key(sha).removeprefix("models/")).read_bytes() == data


def test_tampered_object_in_the_bucket_is_refused_and_not_cached(
    make_store: MakeStore, s3_server: S3Server, bucket: str
) -> None:
    data = os.urandom(50_000)
    sha = put(make_store("a"), data)
    s3_server.put(bucket, key(sha), b"evil" + data[4:])
    b = make_store("b")
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        b.verified_path(sha)
    assert not b.is_cached(sha) and list((b.root / "tmp").iterdir()) == []
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        b.verify_blob(sha)


def test_missing_object_is_an_integrity_error(make_store: MakeStore) -> None:
    b = make_store("b")
    with pytest.raises(IntegrityError, match="missing from s3://"):
        b.verified_path("ab" * 32)
    with pytest.raises(IntegrityError, match="missing"):
        b.verify_blob("ab" * 32)


def test_oversized_object_is_refused_before_download(make_store: MakeStore) -> None:
    sha = put(make_store("a"), os.urandom(4096))
    small = make_store("small", max_bytes=1000)
    with pytest.raises(ArtifactTooLarge, match="over the limit of 1000"):
        small.verified_path(sha)
    assert not small.is_cached(sha)


def test_verify_blob_rehashes_the_bucket_without_caching(make_store: MakeStore) -> None:
    data = os.urandom(10_000)
    sha = put(make_store("a"), data)
    ops = make_store("ops")
    assert ops.verify_blob(sha) == len(data)
    assert not ops.is_cached(sha)


def test_gc_lists_ages_and_deletes_in_the_bucket(make_store: MakeStore, s3_server: S3Server, bucket: str) -> None:
    a = make_store("a")
    kept, orphan = put(a, b"referenced"), put(a, b"orphan")
    b = make_store("b")
    assert sorted(b.iter_blobs()) == sorted([kept, orphan])
    assert b.exists(orphan) and not b.is_cached(orphan)
    assert 0 <= b.blob_age_s(orphan) < 60
    assert b.orphans({kept}, older_than_s=3600) == []  # young: a registration may be about to commit
    assert b.orphans({kept}, older_than_s=0) == [orphan]
    assert not b.delete(orphan, older_than_s=3600)
    assert a.delete(orphan)
    assert s3_server.keys(bucket) == [key(kept)] and not a.is_cached(orphan)
    assert not a.delete(orphan)  # already gone


def test_lru_cache_bound_evicts_least_recently_used(make_store: MakeStore) -> None:
    a = make_store("a")
    shas = [put(a, bytes([i]) * 40_000) for i in range(3)]
    b = make_store("b", cache_max_bytes=100_000)  # room for two
    b.verified_path(shas[0])
    os.utime(b.path_for(shas[0]), (1, 1))  # long ago
    b.verified_path(shas[1])
    b.verified_path(shas[2])
    assert [b.is_cached(s) for s in shas] == [False, True, True]
    assert b.cache_max_bytes == 100_000
    assert b.verified_path(shas[0]).read_bytes() == bytes([0]) * 40_000  # fetched again on demand


def test_unreachable_endpoint_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    dead = S3Options(
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        region="us-east-1",
        access_key_id="k",
        secret_access_key="s",
        allow_http=True,
    )
    store = ArtifactStore(tmp_path / "c", max_bytes=10**6, remote=ObjectStoreBlobs("s3://nowhere/x", dead))
    with pytest.raises(StoreUnavailable, match="object store s3://nowhere/x: download failed"):
        store.verified_path("cd" * 32)
    with pytest.raises(StoreUnavailable, match="upload failed"):
        put(store, b"bytes")


@pytest.mark.parametrize("url", ["http://bucket/x", "s3://", "bucket/prefix", "gs://bucket"])
def test_only_s3_urls(url: str) -> None:
    with pytest.raises(StoreError, match="s3://bucket"):
        ObjectStoreBlobs(url)
