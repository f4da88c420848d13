"""Who may use the shared-memory extension: loopback peers; the admin key when a token is set; nobody when it is
off or the server runs several workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.errors import Forbidden, NotImplementedFeature, Unauthorized
from service.inference.shared_memory import SharedMemoryRegistry
from service.security.auth import Authenticator
from service.security.shared_memory_access import SharedMemoryAccess, grpc_peer_host, is_local_peer

TOKEN = "a-token-of-sixteen-or-more"


class _NoKeys:
    class keys:  # noqa: N801 - mimics the registry's attribute
        @staticmethod
        async def authenticate(token: str) -> Any:
            return None


def _access(tmp_path: Path, *, enabled: bool = True, workers: int = 1, token: str | None = None) -> SharedMemoryAccess:
    registry = SharedMemoryRegistry(max_regions=4, max_bytes=1024, directory=tmp_path)
    return SharedMemoryAccess(
        registry, enabled=enabled, workers=workers, auth=Authenticator(registry=_NoKeys(), admin_token=token)
    )


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True)]
    + [("10.0.0.2", False), ("::ffff:10.0.0.2", False), ("testclient", False), ("", False), (None, False)],
)
def test_only_loopback_peers_are_local(host: str | None, local: bool) -> None:
    assert is_local_peer(host) is local


def test_grpc_peer_strings() -> None:
    assert grpc_peer_host("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert grpc_peer_host("ipv6:[::1]:5000") == "[::1]"
    assert grpc_peer_host("unix:/tmp/socket") is None
    assert grpc_peer_host("") is None


async def test_default_serves_local_clients_without_a_key(tmp_path: Path) -> None:
    access = _access(tmp_path)
    assert access.extensions == ("system_shared_memory",)
    assert await access.authorize("127.0.0.1", None) is access.registry
    assert access.lookup("::1") is access.registry
    with pytest.raises(Forbidden, match="only be used by clients on the server's host"):
        await access.authorize("192.168.1.4", None)
    with pytest.raises(Forbidden, match="input 'x': shared memory regions may only"):
        access.lookup("192.168.1.4").region("input 'x'", "r")


async def test_with_a_token_registering_needs_the_admin_key(tmp_path: Path) -> None:
    access = _access(tmp_path, token=TOKEN)
    with pytest.raises(Unauthorized):
        await access.authorize("127.0.0.1", None)
    with pytest.raises(Unauthorized):
        await access.authorize("127.0.0.1", "Bearer wrong")
    assert await access.authorize("127.0.0.1", f"Bearer {TOKEN}") is access.registry
    with pytest.raises(Forbidden):  # a key does not make a remote peer local
        await access.authorize("10.1.1.1", f"Bearer {TOKEN}")


@pytest.mark.parametrize(("enabled", "workers", "reason"), [(False, 1, "SHM_ENABLED"), (True, 2, "WORKERS=1")])
async def test_off_or_several_workers_is_not_implemented(
    tmp_path: Path, enabled: bool, workers: int, reason: str
) -> None:
    access = _access(tmp_path, enabled=enabled, workers=workers)
    assert access.extensions == ()
    with pytest.raises(NotImplementedFeature, match=reason):
        await access.authorize("127.0.0.1", None)
    with pytest.raises(NotImplementedFeature, match=reason):
        access.lookup("127.0.0.1").region("output 'y'", "r")
