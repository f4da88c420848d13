"""Triton's system shared-memory RPCs (``SystemSharedMemoryStatus`` / ``Register`` / ``Unregister``): the same
registry and rule as the HTTP routes (``service.security.shared_memory_access``), the same errors as statuses."""

from __future__ import annotations

from typing import Any

from service.api.grpc._protocol import Context, pb
from service.inference.shared_memory import SharedMemoryRegistry
from service.security.shared_memory_access import SharedMemoryAccess, grpc_peer_host

__all__ = ("SHARED_MEMORY_RPCS", "SharedMemoryService")

SHARED_MEMORY_RPCS = (
    ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest, pb.SystemSharedMemoryStatusResponse),
    ("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest, pb.SystemSharedMemoryRegisterResponse),
    ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest, pb.SystemSharedMemoryUnregisterResponse),
)
"""Method name, request and response class of each RPC :class:`SharedMemoryService` answers."""


class SharedMemoryService:
    """One per worker; the method names are the RPC names."""

    def __init__(self, access: SharedMemoryAccess) -> None:
        self._access = access

    async def _registry(self, context: Context) -> SharedMemoryRegistry:
        authorization = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), None)
        return await self._access.authorize(grpc_peer_host(context.peer()), authorization)

    async def SystemSharedMemoryStatus(self, request: Any, context: Context) -> Any:
        found = (await self._registry(context)).status(request.name)
        Region = pb.SystemSharedMemoryStatusResponse.RegionStatus
        return pb.SystemSharedMemoryStatusResponse(
            regions={r.name: Region(name=r.name, key=r.key, offset=r.offset, byte_size=r.byte_size) for r in found}
        )

    async def SystemSharedMemoryRegister(self, request: Any, context: Context) -> Any:
        (await self._registry(context)).register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(self, request: Any, context: Context) -> Any:
        (await self._registry(context)).unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()
