"""The shared-memory registry on real files (a temporary directory stands in for /dev/shm): keys, bounds, limits,
objects that shrink or vanish after registration, and outputs checked before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from service.api.limits import BodyBudget
from service.codecs.v2 import PreparedOutput, shm_input, shm_output, write_shm_outputs
from service.errors import InvalidInput, NotFound, Overloaded
from service.inference.shared_memory import RegionLookup, SharedMemoryRegistry
from service.security.auth import Authenticator
from service.security.shared_memory_access import SharedMemoryAccess


@pytest.fixture
def registry(tmp_path: Path) -> SharedMemoryRegistry:
    (tmp_path / "obj").write_bytes(np.arange(16, dtype=np.int32).tobytes())  # 64 bytes
    made = SharedMemoryRegistry(max_regions=3, max_bytes=256, directory=tmp_path)
    yield made
    made.close()


def _request(registry: SharedMemoryRegistry) -> RegionLookup:
    """The regions one request from a loopback peer may use, as the edges make them."""
    access = SharedMemoryAccess(registry, enabled=True, workers=1, auth=Authenticator(registry=None, admin_token=None))
    return access.for_request(lambda: "127.0.0.1")


@pytest.mark.parametrize("key", ["", "/", "/a/b", "../obj", "/..", "/a b", "/" + "x" * 256, "//obj"])
def test_keys_that_are_not_plain_names_are_refused(registry: SharedMemoryRegistry, key: str) -> None:
    with pytest.raises(InvalidInput, match="invalid shared memory key"):
        registry.register("r", key, 0, 8)


def test_symlinks_and_non_files_are_refused(registry: SharedMemoryRegistry, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "obj")
    with pytest.raises(InvalidInput, match="Unable to open"):
        registry.register("r", "/link", 0, 8)
    (tmp_path / "dir").mkdir()
    with pytest.raises(InvalidInput, match="Unable to open|not a shared memory object"):
        registry.register("r", "/dir", 0, 8)


def test_register_status_unregister(registry: SharedMemoryRegistry) -> None:
    registry.register("a", "/obj", 8, 32)
    registry.register("b", "obj", 0, 64)
    assert [(s.name, s.key, s.offset, s.byte_size) for s in registry.status("")] == [
        ("a", "/obj", 8, 32),
        ("b", "obj", 0, 64),
    ]
    with pytest.raises(InvalidInput, match="already in manager"):
        registry.register("a", "/obj", 0, 8)
    with pytest.raises(NotFound, match="Unable to find system shared memory region: 'c'"):
        registry.status("c")
    registry.unregister("a")
    registry.unregister("a")  # unknown: not an error
    assert [s.name for s in registry.status("")] == ["b"]
    registry.unregister("")
    assert registry.status("") == []


def test_bounds_and_limits(registry: SharedMemoryRegistry) -> None:
    with pytest.raises(InvalidInput, match="beyond the end of object '/obj' \\(64 bytes\\)"):
        registry.register("r", "/obj", 60, 8)
    with pytest.raises(InvalidInput, match="byte_size > 0"):
        registry.register("r", "/obj", 0, 0)
    with pytest.raises(InvalidInput, match="does not exist"):
        registry.register("r", "/missing", 0, 8)
    for name in "abc":
        registry.register(name, "/obj", 0, 64)
    with pytest.raises(InvalidInput, match="MODELPORT_SHM_MAX_REGIONS"):
        registry.register("d", "/obj", 0, 8)
    registry.unregister("")
    registry.register("a", "/obj", 0, 64)
    bigger = SharedMemoryRegistry(max_regions=8, max_bytes=100, directory=Path(registry._directory))
    bigger.register("a", "/obj", 0, 64)
    with pytest.raises(InvalidInput, match="MODELPORT_SHM_MAX_BYTES"):
        bigger.register("b", "/obj", 0, 64)
    bigger.close()


def test_inputs_are_copied_out_and_checked(registry: SharedMemoryRegistry, tmp_path: Path) -> None:
    registry.register("r", "/obj", 0, 64)
    array = shm_input(_request(registry), "x", "INT32", (2, 4), "r", 32, 16)
    np.testing.assert_array_equal(array, np.arange(4, 12, dtype=np.int32).reshape(2, 4))
    (tmp_path / "obj").write_bytes(bytes(64))  # the copy does not follow later writes
    assert array[0, 0] == 4
    with pytest.raises(InvalidInput, match="needs 32 bytes, shared_memory_byte_size says 28"):
        shm_input(_request(registry), "x", "INT32", (2, 4), "r", 28, 0)
    with pytest.raises(InvalidInput, match="out of bounds of shared memory region 'r' \\(64 bytes\\)"):
        shm_input(_request(registry), "x", "INT32", (2, 4), "r", 32, 40)
    with pytest.raises(InvalidInput, match="needs shared_memory_byte_size"):
        shm_input(_request(registry), "x", "INT32", (2, 4), "r", None, 0)
    with pytest.raises(InvalidInput, match="Unable to find system shared memory region: 'nope'"):
        shm_input(_request(registry), "x", "INT32", (2, 4), "nope", 32, 0)


def test_one_request_copies_at_most_the_registered_byte_cap(registry: SharedMemoryRegistry) -> None:
    registry.register("r", "/obj", 0, 64)
    request = _request(registry)  # max_bytes 256: four 64-byte inputs, not five, even from one region
    for _ in range(4):
        shm_input(request, "x", "INT32", (16,), "r", 64, 0)
    with pytest.raises(InvalidInput, match="add up to more than 256 bytes \\(MODELPORT_SHM_MAX_BYTES\\)"):
        shm_input(request, "x", "INT32", (16,), "r", 64, 0)
    shm_input(_request(registry), "x", "INT32", (16,), "r", 64, 0)  # the next request starts again


def test_a_shrunk_or_unlinked_object_is_refused(registry: SharedMemoryRegistry, tmp_path: Path) -> None:
    registry.register("r", "/obj", 0, 64)
    os.truncate(tmp_path / "obj", 16)
    with pytest.raises(InvalidInput, match="shrank to 16 bytes"):
        shm_input(_request(registry), "x", "INT32", (4,), "r", 16, 0)  # even a read inside what is left
    os.truncate(tmp_path / "obj", 64)
    (tmp_path / "obj").unlink()
    with pytest.raises(InvalidInput, match="was unlinked"):
        shm_input(_request(registry), "x", "INT32", (4,), "r", 16, 0)


def test_outputs_are_all_checked_before_any_is_written(registry: SharedMemoryRegistry, tmp_path: Path) -> None:
    registry.register("r", "/obj", 0, 64)
    before = (tmp_path / "obj").read_bytes()
    small = np.full((2, 2), 9, dtype=np.int32)  # 16 bytes
    large = np.full((3, 2), 9, dtype=np.int32)  # 24 bytes
    fits = PreparedOutput("a", "INT32", small, None, shm_output(_request(registry), "a", "r", 16, 0))
    too_big = PreparedOutput("b", "INT32", large, None, shm_output(_request(registry), "b", "r", 16, 32))
    with pytest.raises(InvalidInput, match="output 'b': the result needs 24 bytes but shared_memory_byte_size is 16"):
        write_shm_outputs([fits, too_big])
    assert (tmp_path / "obj").read_bytes() == before
    assert write_shm_outputs([fits]) == {"a": 16}
    assert np.frombuffer((tmp_path / "obj").read_bytes()[:16], np.int32).tolist() == [9, 9, 9, 9]
    with pytest.raises(InvalidInput, match="out of bounds"):
        shm_output(_request(registry), "c", "r", 16, 56)
    registry.unregister("r")  # while a response that names it is being encoded
    with pytest.raises(InvalidInput, match="was unregistered"):
        write_shm_outputs([fits])


def test_copies_share_the_workers_inflight_budget(registry: SharedMemoryRegistry) -> None:
    """On HTTP the bytes copied out of regions are reserved in MAX_INFLIGHT_BODY_BYTES until the reply is built."""
    registry.register("r", "/obj", 0, 64)
    access = SharedMemoryAccess(registry, enabled=True, workers=1, auth=Authenticator(registry=None, admin_token=None))
    budget = BodyBudget(100)
    first, second = access.for_request(lambda: "::1", budget), access.for_request(lambda: "::1", budget)
    shm_input(first, "x", "INT32", (16,), "r", 64, 0)
    assert budget.used == 64
    with pytest.raises(Overloaded, match="server busy"):
        shm_input(second, "x", "INT32", (16,), "r", 64, 0)
    first.release()
    second.release()  # took nothing
    assert budget.used == 0
    shm_input(second, "x", "INT32", (16,), "r", 64, 0)
    second.release()
    assert budget.used == 0
