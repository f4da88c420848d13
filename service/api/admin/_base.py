"""Shared dependencies of admin controllers."""

from __future__ import annotations

from litestar.di import Provide

from service.api.deps import provide_admin, provide_reader, provide_runtime

ADMIN_DEPENDENCIES = {
    "rt": Provide(provide_runtime, sync_to_thread=False),
    "admin": Provide(provide_admin),
    "reader": Provide(provide_reader),
}
