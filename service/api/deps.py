"""Dependency providers: the worker's runtime and the calling principal."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from registry_db.records import Principal
from service.runtime import Runtime

__all__ = ("provide_admin", "provide_reader", "provide_runtime")


def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def provide_admin(request: Request[Any, Any, Any], rt: Runtime) -> Principal:
    """The caller, if it holds an ``admin`` key (401 without a key, 403 without the scope)."""
    assert rt.auth is not None
    return await rt.auth.require(request.headers.get("authorization"), "admin")


async def provide_reader(request: Request[Any, Any, Any], rt: Runtime) -> Principal:
    """The caller, if it holds a ``read`` (or ``admin``) key."""
    assert rt.auth is not None
    return await rt.auth.require(request.headers.get("authorization"), "read")
