"""modelport service: the Litestar app, inference data plane, admin API and CLI."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ("__version__",)
