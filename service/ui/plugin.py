"""Mounts the console page and the packaged static files on the app (one InitPlugin, so app.py stays a list)."""

from __future__ import annotations

from functools import cache

from litestar import Response, get
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol
from litestar.static_files import create_static_files_router

from service.ui.assets import ASSETS_URL, CONSOLE_URL, STATIC_DIR

__all__ = ("CONTENT_SECURITY_POLICY", "ConsolePlugin")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""Same origin only: no remote script, style, font or fetch, no inline script, no framing of the console."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: after an upgrade, old and new modules must never mix
}


@cache
def _index_html() -> bytes:
    return (STATIC_DIR / "console" / "index.html").read_bytes()


@get([CONSOLE_URL, f"{CONSOLE_URL}/"], include_in_schema=False, sync_to_thread=False)
def console_page() -> Response[bytes]:
    """The single page; views are chosen client-side by the URL fragment, so one route serves them all."""
    return Response(_index_html(), media_type="text/html; charset=utf-8", headers=_HEADERS)


def _with_security_headers(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


class ConsolePlugin(InitPluginProtocol):
    """Serves ``/ui`` and ``/ui/assets/...`` (console files and the docs' vendored Swagger UI and ReDoc)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        assets = create_static_files_router(
            path=ASSETS_URL,
            directories=[STATIC_DIR],
            name="ui-assets",
            after_request=_with_security_headers,
            include_in_schema=False,
        )
        app_config.route_handlers.extend([console_page, assets])
        return app_config
