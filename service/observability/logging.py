"""structlog configuration: JSON in production, console for people; request ids via contextvars.

Raw inputs and outputs are never passed to a logger; ``scrub_pii`` redacts known sensitive keys that a
caller might pass by mistake.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ("configure_logging", "SENSITIVE_KEYS")

SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "token",
        "api_key",
        "admin_token",
        "password",
        "secret",
        "inputs",
        "outputs",
        "data",
        "email",
        "body",
        "cookie",
        "key",
    }
)


def scrub_pii(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace values of sensitive keys; runs on every log line."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json", *, cache: bool = True) -> None:
    """Configure structlog and route stdlib logging (uvicorn, sqlalchemy) through the same renderer.

    ``cache`` binds each module's logger once, on first use (servers); short-lived CLI calls skip it so that a
    later configuration (or a test's ``capture_logs``) still reaches every logger.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub_pii,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "alembic.runtime.plugins"):  # a line per request / per Alembic plugin
        logging.getLogger(noisy).setLevel(logging.WARNING)
