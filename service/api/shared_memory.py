"""Triton's system shared-memory extension over HTTP: register, unregister and status of this worker's regions, in
the JSON shapes ``tritonclient.http`` sends and reads. Who may call them: ``service.security.shared_memory_access``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath
from msgspec import Meta

from service.api.deps import provide_runtime
from service.api.responses import errors
from service.errors import InvalidInput
from service.inference.shared_memory import RegionStatus, SharedMemoryRegistry

__all__ = ("SharedMemoryController",)

_MAX_BODY = 64 * 1024


class _RegisterBody(msgspec.Struct):
    """``POST .../register``: the object's key and the region within it."""

    key: str
    byte_size: Annotated[int, Meta(gt=0)]
    offset: Annotated[int, Meta(ge=0)] = 0


_register_decoder = msgspec.json.Decoder(_RegisterBody)


def _status(found: list[RegionStatus]) -> list[dict[str, Any]]:
    return [{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size} for r in found]


async def _registry(request: Request[Any, Any, Any]) -> SharedMemoryRegistry:
    access = provide_runtime(request.app.state).shared_memory
    peer = request.client.host if request.client is not None else None
    return await access.authorize(peer, request.headers.get("authorization"))


class SharedMemoryController(Controller):
    path = "/v2/systemsharedmemory"
    tags = ["inference (V2): Triton extensions"]
    request_max_body_size = _MAX_BODY

    @get("/status", summary="Every registered system shared-memory region (this worker)", responses=errors(403, 501))
    async def status(self, request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        return _status((await _registry(request)).status(""))

    @get(
        "/region/{region_name:str}/status",
        summary="One registered system shared-memory region",
        responses=errors(403, 404, 501),
    )
    async def region_status(self, request: Request[Any, Any, Any], region_name: FromPath[str]) -> list[dict[str, Any]]:
        return _status((await _registry(request)).status(region_name))

    @post(
        "/region/{region_name:str}/register",
        summary="Register a region of a POSIX shared-memory object (clients on this host; admin key when auth is on)",
        status_code=200,
        responses=errors(400, 401, 403, 501),
    )
    async def register(self, request: Request[Any, Any, Any], region_name: FromPath[str]) -> None:
        registry = await _registry(request)
        try:
            body = _register_decoder.decode(await request.body())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidInput(f"invalid register request for shared memory region '{region_name}': {exc}") from None
        registry.register(region_name, body.key, body.offset, body.byte_size)

    @post(
        "/region/{region_name:str}/unregister",
        summary="Unregister one region (an unknown name is not an error)",
        status_code=200,
        responses=errors(401, 403, 501),
    )
    async def unregister(self, request: Request[Any, Any, Any], region_name: FromPath[str]) -> None:
        (await _registry(request)).unregister(region_name)

    @post("/unregister", summary="Unregister every region", status_code=200, responses=errors(401, 403, 501))
    async def unregister_all(self, request: Request[Any, Any, Any]) -> None:
        (await _registry(request)).unregister("")
