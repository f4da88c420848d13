"""Refuse to expose an unauthenticated admin API: binding off loopback requires an admin key."""

from __future__ import annotations

from service.settings import Settings

__all__ = ("ExposureError", "check_exposure")


class ExposureError(RuntimeError):
    """The configuration would expose the service unsafely."""


def check_exposure(settings: Settings) -> None:
    """Raise unless the bind address is loopback or ``MODELPORT_ADMIN_TOKEN`` is set."""
    if settings.is_loopback:
        return
    if settings.admin_token is None or len(settings.admin_token.get_secret_value()) < 16:
        raise ExposureError(
            f"refusing to bind {settings.host}: set MODELPORT_ADMIN_TOKEN (16+ characters) before exposing the "
            "service beyond 127.0.0.1, so the admin API is never open"
        )
