"""Shared dependencies of admin controllers: the caller's principal and the narrow collaborators they use."""

from __future__ import annotations

from litestar.di import Provide

from service.api.deps import (
    authorize,
    provide_admin,
    provide_experiments,
    provide_operations,
    provide_reader,
    provide_registry,
    provide_services,
)

ADMIN_DEPENDENCIES = {
    "registry": Provide(provide_registry, sync_to_thread=False),
    "services": Provide(provide_services, sync_to_thread=False),
    "operations": Provide(provide_operations, sync_to_thread=False),
    "experiments": Provide(provide_experiments, sync_to_thread=False),
    "admin": Provide(provide_admin),
    "reader": Provide(provide_reader),
}

ADMIN_GUARDS = [authorize]
"""Key and scope are checked before the body is read (see ``service.api.deps.authorize``)."""
