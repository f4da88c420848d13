"""modelport service: the Litestar app, inference data plane, admin API and CLI."""

from __future__ import annotations

import sys


def _import_structlog_without_rich() -> None:
    """Import structlog while ``rich`` cannot be imported, then let it be imported again.

    ``import structlog`` loads ``structlog.dev`` and ``structlog.tracebacks``, which import ``rich.console``,
    ``rich.traceback`` and ``rich.pretty`` (and pygments) whenever rich is installed, and Litestar installs it:
    about 3 MB of RSS in every server for tracebacks it never draws (our console renderer is given structlog's
    plain traceback formatter; JSON logs use ``format_exc_info``). No structlog setting avoids the import, since
    the package's ``__init__`` makes it. With ``sys.modules["rich"] = None`` during that one import, structlog
    takes its own "rich is not installed" branch; afterwards ``import rich`` works as usual (the demo's spinner).
    Where structlog or rich is already imported (an embedding process), this does nothing.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # import rich -> ImportError, while structlog loads
    try:
        import structlog  # noqa: F401
    finally:
        if "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]


_import_structlog_without_rich()

__version__ = "0.1.0"
__all__ = ("__version__",)
