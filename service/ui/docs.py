"""Swagger UI and ReDoc pages that load every script, style sheet and icon from the app itself.

Litestar's render plugins default to public CDNs (and ReDoc to Google Fonts), so on an air-gapped cluster
``/schema/swagger`` and ``/schema/redoc`` render blank. Pointing them at the vendored copies keeps Litestar's
page templates and makes the docs work offline.
"""

from __future__ import annotations

from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
)

from service.ui.assets import asset_url

__all__ = ("docs_render_plugins",)


def docs_render_plugins() -> list[OpenAPIRenderPlugin]:
    """``/schema/swagger`` (also ``/schema``), ``/schema/redoc`` and ``/schema/openapi.json``, assets local."""
    favicon = f"<link rel='icon' type='image/png' href='{asset_url('vendor/swagger-ui/favicon-32x32.png')}'>"
    swagger = SwaggerRenderPlugin(
        js_url=asset_url("vendor/swagger-ui/swagger-ui-bundle.js"),
        css_url=asset_url("vendor/swagger-ui/swagger-ui.css"),
        standalone_preset_js_url=asset_url("vendor/swagger-ui/swagger-ui-standalone-preset.js"),
        favicon=favicon,
    )
    redoc = RedocRenderPlugin(
        js_url=asset_url("vendor/redoc/redoc.standalone.js"), google_fonts=False, path="/redoc", favicon=favicon
    )
    return [swagger, redoc, JsonRenderPlugin()]
