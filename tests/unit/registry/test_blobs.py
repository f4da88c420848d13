"""The BlobStore contract, checked against both implementations: a directory, and a bucket (moto) with a cache."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from registry_db.blobs import BlobStore
from registry_db.bucket_blobs import BucketBlobs
from registry_db.errors import IntegrityError, NotFound
from registry_db.local_blobs import LocalBlobs
from registry_db.object_store import ObjectStoreBlobs
from registry_db.records import StoredArtifact
from tests.helpers.s3 import S3Server

Events = list[tuple[str, int]]
Make = Callable[[str, Events], tuple[BlobStore, LocalBlobs]]


def stage(directory: LocalBlobs, data: bytes) -> StoredArtifact:
    """What ArtifactStore.put_stream does before publishing: a fsynced temp file committed into the directory."""
    fd, tmp = directory.open_temp()
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return directory.commit(tmp, hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture(params=["local", "bucket"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Make:
    """A store of record and its local directory ``tmp_path/<name>`` (one shared bucket for the bucket kind;
    one shared directory for the local kind, as replicas on a shared volume)."""
    bucket = request.getfixturevalue("s3_server").create_bucket() if kind == "bucket" else ""

    def build(name: str, events: Events) -> tuple[BlobStore, LocalBlobs]:
        directory = LocalBlobs(tmp_path / (name if kind == "bucket" else "shared"))
        if kind == "local":
            return directory, directory
        server: S3Server = request.getfixturevalue("s3_server")
        remote = ObjectStoreBlobs(f"s3://{bucket}/p", server.options())

        def emit(event: str, size: int, _started: float | None) -> None:
            events.append((event, size))

        return BucketBlobs(directory, remote, max_bytes=10**6, cache_max_bytes=0, emit=emit), directory

    return build


def test_published_blob_is_found_verified_listed_and_deleted(make: Make) -> None:
    writer, directory = make("writer", [])
    stored = stage(directory, b"weights" * 100)
    writer.publish(stored)
    reader, _ = make("reader", [])  # another replica (the same directory for the local kind)
    assert reader.exists(stored.sha256)
    assert reader.verified_path(stored.sha256).read_bytes() == b"weights" * 100
    assert reader.verify(stored.sha256) == stored.size_bytes
    assert [sha for sha, age in reader.blob_ages() if age >= 0] == [stored.sha256]
    assert reader.blob_age_s(stored.sha256) >= 0
    assert not reader.delete(stored.sha256, older_than_s=3600)  # too young
    assert reader.delete(stored.sha256, older_than_s=0)
    assert not reader.exists(stored.sha256)
    assert not reader.delete(stored.sha256, older_than_s=0)


def test_missing_blob_is_an_integrity_error(make: Make) -> None:
    store, _ = make("a", [])
    with pytest.raises(IntegrityError, match="missing"):
        store.verified_path("ab" * 32)
    with pytest.raises(IntegrityError, match="missing"):
        store.verify("ab" * 32)
    with pytest.raises((NotFound, FileNotFoundError)):
        store.blob_age_s("ab" * 32)


def test_damaged_local_copy_is_never_served(kind: str, make: Make) -> None:
    events: Events = []
    store, directory = make("a", events)
    stored = stage(directory, b"good bytes")
    store.publish(stored)
    os.chmod(stored.path, 0o644)
    stored.path.write_bytes(b"evil bytes")
    if kind == "local":  # the directory is the record: refuse
        with pytest.raises(IntegrityError, match="integrity check"):
            store.verified_path(stored.sha256)
    else:  # only a cache: fetch the bucket's verified copy again
        assert store.verified_path(stored.sha256).read_bytes() == b"good bytes"
        assert [e for e, _ in events] == ["upload", "damaged", "download"]
