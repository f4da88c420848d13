"""Who may use the system shared-memory extension (docs/security.md, "Shared memory").

Registering a region makes the server read and write a host shared-memory object that the server's user can
open, so the extension is for clients on the same host only:

* off (``MODELPORT_SHM_ENABLED=false``), or with ``MODELPORT_WORKERS`` > 1 (regions are registered per worker
  process, so the next call could reach a worker that has never heard of the region): every route and every
  tensor that names a region is answered 501 / UNIMPLEMENTED, and ``GET /v2`` does not list it;
* otherwise registration, unregistration, status and tensors in regions are accepted from loopback peers only
  (127.0.0.0/8, ::1): a remote client cannot create an object on this host, so refusing it (403)
  loses nothing and keeps a remote caller from reaching local memory or another client's regions;
* when ``MODELPORT_ADMIN_TOKEN`` is set, register, unregister and status also need an admin key, as repository
  load/unload do; without it (the default loopback-only set-up) a local tritonclient needs no token.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Protocol

from service.errors import Forbidden, InvalidInput, NotImplementedFeature
from service.inference.shared_memory import SharedMemoryRegion, SharedMemoryRegistry
from service.security.auth import Authenticator

__all__ = ("Budget", "RequestRegions", "SharedMemoryAccess", "grpc_peer_host", "is_local_peer")


def is_local_peer(host: str | None) -> bool:
    """Whether a peer's host address (``127.0.0.1``, ``::1``, ``::ffff:127.0.0.1``) is this host's loopback; an
    unknown peer (None: a Unix socket, which a reverse proxy may sit behind) is not."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def grpc_peer_host(peer: str | None) -> str | None:
    """The host of a grpc ``context.peer()`` (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``); None for others."""
    if not peer or not peer.startswith(("ipv4:", "ipv6:")):
        return None
    return peer.partition(":")[2].rsplit(":", 1)[0]


class _Refused:
    """A region lookup that refuses every name, with the reason the caller is not served."""

    __slots__ = ("error",)

    def __init__(self, error: Forbidden | NotImplementedFeature) -> None:
        self.error = error

    def region(self, what: str, name: str) -> SharedMemoryRegion:  # noqa: ARG002 - the protocol's signature
        raise type(self.error)(f"{what}: {self.error.message}")


class Budget(Protocol):
    """Bytes a worker may hold for in-flight requests (``service.api.limits.BodyBudget``)."""

    def take(self, size: int) -> None: ...

    def give(self, size: int) -> None: ...


class RequestRegions:
    """The regions one request may name (a ``RegionLookup``): finds out who the peer is only when a tensor names a
    region (gRPC: asking the call for its peer costs a string copy most requests never need), and counts the bytes
    the request copies out of regions against ``MODELPORT_SHM_MAX_BYTES``."""

    __slots__ = ("_access", "_budget", "_copied", "_peer")

    def __init__(self, access: SharedMemoryAccess, peer: Callable[[], str | None], budget: Budget | None) -> None:
        self._access = access
        self._peer = peer
        self._budget = budget
        self._copied = 0

    def region(self, what: str, name: str) -> SharedMemoryRegion:
        return self._access.lookup(self._peer()).region(what, name)

    def charge(self, what: str, size: int) -> None:
        self._copied += size
        limit = self._access.registry.max_bytes
        if self._copied > limit:
            raise InvalidInput(
                f"{what}: the request's tensors in shared memory add up to more than {limit} bytes "
                "(MODELPORT_SHM_MAX_BYTES)"
            )
        if self._budget is not None:
            try:
                self._budget.take(size)  # 503 when the worker holds too many inference bytes already
            except BaseException:
                self._copied -= size
                raise

    def release(self) -> None:
        """Give back what :meth:`charge` took from the budget: call once the request's reply is built."""
        if self._budget is not None and self._copied:
            self._budget.give(self._copied)
        self._copied = 0


class SharedMemoryAccess:
    """The extension's policy for one worker (module docstring): decides per peer, checks keys when auth is on."""

    def __init__(self, registry: SharedMemoryRegistry, *, enabled: bool, workers: int, auth: Authenticator) -> None:
        self.registry = registry
        self.available = enabled and workers == 1
        """Whether the extension is served here (``GET /v2`` lists ``system_shared_memory`` only then)."""
        self._auth = auth
        if not enabled:
            reason = "the system shared-memory extension is disabled on this server (MODELPORT_SHM_ENABLED=false)"
        else:
            reason = (
                "the system shared-memory extension needs MODELPORT_WORKERS=1: regions are registered per worker "
                "process"
            )
        self._unavailable = _Refused(NotImplementedFeature(reason))
        self._remote = _Refused(
            Forbidden("shared memory regions may only be used by clients on the server's host (loopback)")
        )
        self._verdicts: dict[str | None, bool] = {}

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extension names this policy adds to server metadata (``system_shared_memory`` when served)."""
        return ("system_shared_memory",) if self.available else ()

    def lookup(self, peer: str | None) -> SharedMemoryRegistry | _Refused:
        """The registry for ``peer`` (its host address), or the refusal that says why not."""
        if not self.available:
            return self._unavailable
        local = self._verdicts.get(peer)
        if local is None:
            if len(self._verdicts) > 1024:
                self._verdicts.clear()
            local = self._verdicts[peer] = is_local_peer(peer)
        return self.registry if local else self._remote

    def for_request(self, peer: Callable[[], str | None], budget: Budget | None = None) -> RequestRegions:
        """The regions one request from the peer that ``peer()`` names may use (asked only if a tensor names one);
        with ``budget`` the bytes copied out of them are reserved there until :meth:`RequestRegions.release`."""
        return RequestRegions(self, peer, budget)

    async def authorize(self, peer: str | None, authorization: str | None) -> SharedMemoryRegistry:
        """The registry for register / unregister / status from ``peer``, or the error that refuses the call."""
        lookup = self.lookup(peer)
        if isinstance(lookup, _Refused):
            raise lookup.error
        if self._auth.has_admin_token:
            await self._auth.require(authorization, "admin")
        return self.registry
