"""A refused registration takes its blob back (issue 12): ``ArtifactStore.provisional`` removes the blob when the
block raises, unless a version row references the same bytes or another registration of them is in flight."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry_db.store import ArtifactStore

DATA = b"artifact bytes " * 100


async def chunks(data: bytes = DATA) -> AsyncIterator[bytes]:
    yield data


class Refused(Exception):
    pass


def blobs(store: ArtifactStore) -> list[Path]:
    return sorted((store.root / "sha256").glob("*/*"))


async def nothing_references(sha256: str) -> bool:
    return False


async def everything_references(sha256: str) -> bool:
    return True


async def test_a_refused_registration_leaves_no_blob_and_no_temp_file(store: ArtifactStore) -> None:
    with pytest.raises(Refused):
        async with store.provisional(chunks(), referenced=nothing_references) as stored:
            assert store.exists(stored.sha256)
            raise Refused
    assert blobs(store) == [] and list((store.root / "tmp").iterdir()) == []
    assert store._dir.pin_exclusively(stored.sha256) is not None  # the pin was released


async def test_a_committed_registration_keeps_its_blob(store: ArtifactStore) -> None:
    async with store.provisional(chunks(), referenced=nothing_references) as stored:
        pass
    assert store.exists(stored.sha256) and store.verified_path(stored.sha256).read_bytes() == DATA


async def test_bytes_a_version_references_stay(store: ArtifactStore) -> None:
    asked: list[str] = []

    async def referenced(sha256: str) -> bool:
        asked.append(sha256)
        return True

    with pytest.raises(Refused):
        async with store.provisional(chunks(), referenced=referenced) as stored:
            raise Refused
    assert asked == [stored.sha256] and store.exists(stored.sha256)


@pytest.mark.parametrize("second_commits", [True, False])
async def test_a_refusal_never_takes_bytes_another_registration_is_using(
    store: ArtifactStore, second_commits: bool
) -> None:
    """Two uploads of the same bytes at once: the one refused first leaves the blob to the other, which then
    commits (blob stays) or is refused too (blob goes)."""
    entered, refused = asyncio.Event(), asyncio.Event()

    async def second() -> None:
        async with store.provisional(chunks(), referenced=nothing_references):
            entered.set()
            await refused.wait()
            if not second_commits:
                raise Refused

    task = asyncio.create_task(second())
    await entered.wait()
    with pytest.raises(Refused):
        async with store.provisional(chunks(), referenced=nothing_references) as stored:
            raise Refused
    assert store.exists(stored.sha256)  # the second registration holds it
    refused.set()
    if second_commits:
        await task
        assert store.exists(stored.sha256)
    else:
        with pytest.raises(Refused):
            await task
        assert not store.exists(stored.sha256)


async def test_a_registration_arriving_during_a_take_back_links_its_bytes_again(store: ArtifactStore) -> None:
    """The take-back holds the pin exclusively while it deletes: a registration of the same bytes waits for it and
    then links its own copy in, so it never commits a row whose blob has just gone."""
    sha256 = (await store.put_stream(chunks())).sha256
    fd = store._dir.pin_exclusively(sha256)
    assert fd is not None
    task = asyncio.create_task(_register(store))
    await asyncio.sleep(0.2)
    assert not task.done()  # waiting for the pin
    store.delete(sha256)
    os.close(fd)
    assert await task == sha256 and store.exists(sha256)


async def _register(store: ArtifactStore) -> str:
    async with store.provisional(chunks(), referenced=everything_references) as stored:
        return stored.sha256


async def test_a_failing_reference_check_keeps_the_blob_and_the_original_error(store: ArtifactStore) -> None:
    async def broken(sha256: str) -> bool:
        raise ConnectionError("database gone")

    with pytest.raises(Refused):
        async with store.provisional(chunks(), referenced=broken) as stored:
            raise Refused
    assert store.exists(stored.sha256)  # left for `modelport gc`
