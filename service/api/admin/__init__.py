"""Admin API controllers (Bearer keys; ``read`` scope for GETs, ``admin`` for changes)."""

from service.api.admin.audit import AuditController
from service.api.admin.keys import KeysController
from service.api.admin.models import ModelsController
from service.api.admin.rollouts import RolloutsController
from service.api.admin.routing import RoutingController
from service.api.admin.versions import VersionsController

__all__ = ("ADMIN_CONTROLLERS",)

ADMIN_CONTROLLERS = (
    ModelsController,
    VersionsController,
    RoutingController,
    RolloutsController,
    AuditController,
    KeysController,
)
