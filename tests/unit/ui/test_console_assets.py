"""The console and the docs' assets are all in the package, referenced correctly, served with a strict CSP, and
the vendored bundles are the checked-in releases (``vendor/README.md`` checksums)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from service.ui.assets import ASSETS_URL, STATIC_DIR

ROOT = Path(__file__).parents[3]
CONSOLE = STATIC_DIR / "console"
VENDOR = STATIC_DIR / "vendor"


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr("service.app.configure_logging", lambda *args, **kwargs: None)
    app = create_app(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        yield c


def _local_references(source: str) -> list[str]:
    return re.findall(r"""(?:src|href)="(/ui/assets/[^"]+)\"""", source)


def test_every_module_import_and_page_reference_resolves() -> None:
    html = (CONSOLE / "index.html").read_text()
    for url in _local_references(html):
        assert (STATIC_DIR / url.removeprefix(f"{ASSETS_URL}/")).is_file(), url
    modules = list(CONSOLE.rglob("*.js"))
    assert len(modules) >= 8
    for module in modules:
        for target in re.findall(r"""^import .* from "(\.[^"]+)";$""", module.read_text(), flags=re.M):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports missing {target}"


def test_no_inline_script_style_or_handler_and_no_remote_url() -> None:
    html = (CONSOLE / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\son[a-z]+=", html) and "style=" not in html
    for path in CONSOLE.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f"remote URL in {path.name}"
            assert ".innerHTML" not in text and "eval(" not in text, path.name


def test_vendored_files_match_their_recorded_checksums() -> None:
    recorded = dict(re.findall(r"^- `([^`]+)` ([0-9a-f]{64})$", (VENDOR / "README.md").read_text(), flags=re.M))
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file() and p.name != "README.md"}
    assert set(recorded) == present
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert b"cdn.redoc.ly/redoc/logo-mini" not in (VENDOR / "redoc" / "redoc.standalone.js").read_bytes()


def test_package_data_ships_every_static_file() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            relative = str(path.relative_to(STATIC_DIR.parent.parent))
            assert any(fnmatch(relative, g) and relative.count("/") == g.count("/") for g in globs), relative


async def test_console_page_has_a_csp_that_forbids_remote_origins(client: httpx.AsyncClient) -> None:
    for path in ("/ui", "/ui/", f"{ASSETS_URL}/console/app.js"):
        reply = await client.get(path)
        assert reply.status_code == 200, path
        csp = reply.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
        assert directives["connect-src"] == "'self'" and "unsafe" not in csp and "http" not in csp
        assert reply.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(f"{ASSETS_URL}/console/app.js")).headers["content-type"].startswith("text/javascript")
    assert (await client.get(f"{ASSETS_URL}/../settings.py")).status_code == 404


async def test_docs_pages_load_only_local_assets(client: httpx.AsyncClient) -> None:
    for path in ("/schema/swagger", "/schema/redoc"):
        html = (await client.get(path)).text
        assert "https://" not in html.split("<body", 1)[0], path  # nothing remote in <head>: no CDN, no fonts
        for url in _local_references(html):
            assert (await client.get(url)).status_code == 200, url
