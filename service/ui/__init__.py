"""The web console at ``/ui`` and offline assets for the API docs, all served from this package (no CDN)."""

from service.ui.docs import docs_render_plugins
from service.ui.plugin import ConsolePlugin

__all__ = ("ConsolePlugin", "docs_render_plugins")
