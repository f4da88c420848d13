"""Where the packaged static files live and the URLs they are served under.

Everything under ``static/`` ships as package data: ``console/`` is the console's own HTML, CSS and ES modules;
``vendor/`` holds Swagger UI and ReDoc, byte-identical to their npm releases (versions, licences and checksums in
``vendor/README.md``). Nothing is built at install time.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ("ASSETS_URL", "CONSOLE_URL", "STATIC_DIR", "asset_url")

STATIC_DIR = Path(__file__).parent / "static"
CONSOLE_URL = "/ui"
ASSETS_URL = "/ui/assets"


def asset_url(relative: str) -> str:
    """The URL of a file under ``static/`` (``relative`` as in ``vendor/redoc/redoc.standalone.js``)."""
    if not (STATIC_DIR / relative).is_file():  # a renamed vendor file must fail at start-up, not as a blank page
        raise FileNotFoundError(f"packaged asset missing: {STATIC_DIR / relative}")
    return f"{ASSETS_URL}/{relative}"
