"""Chromium (Debian's, through Playwright) against a real ``modelport serve --demo``, with the outside world cut off.

Every request to a host other than the server is aborted and recorded, so a page that needs a CDN fails its
test. Skipped with the reason where Playwright or Chromium is missing. Screenshots go to
``$MODELPORT_TEST_ARTIFACTS`` (default ``tests/artifacts/``, git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server import ADMIN_TOKEN, ServerProcess

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    configured = os.environ.get("MODELPORT_TEST_CHROMIUM")
    for candidate in (configured, *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def artifacts_dir() -> Path:
    path = Path(os.environ.get("MODELPORT_TEST_ARTIFACTS") or Path(__file__).parents[1] / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open, which
    would make every later ``asyncio.run`` in the session (PostgreSQL probes, CLI tests) fail."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium not found (apt-get install chromium, or set MODELPORT_TEST_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page whose every request off the server was aborted and listed in ``outside``; ``errors`` collects
    uncaught script errors and Content-Security-Policy refusals (a 4xx answer logged by Chromium is not one)."""

    page: Any
    base_url: str
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        path = artifacts_dir() / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def sign_in(self, key: str) -> None:
        self.page.goto(f"{self.base_url}/ui")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("heading", name="Models").wait_for()


@pytest.fixture
def open_tab(chromium: Any, demo_server: ServerProcess) -> Iterator[Any]:
    contexts: list[Any] = []
    tabs: list[Tab] = []

    def factory(width: int = 1280, height: int = 900) -> Tab:
        context = chromium.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        tab = Tab(context.new_page(), demo_server.base_url)

        def route(route: Any) -> None:
            if route.request.url.startswith(demo_server.base_url + "/"):
                route.continue_()
            else:
                tab.outside.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        tab.page.on(
            "console", lambda msg: tab.errors.append(msg.text) if "Content Security Policy" in msg.text else None
        )
        tabs.append(tab)
        return tab

    yield factory
    for context in contexts:
        context.close()
    for tab in tabs:
        assert tab.outside == [], f"requests left the server: {tab.outside}"
        assert tab.errors == [], f"script errors or CSP refusals: {tab.errors}"


@pytest.fixture(scope="session")
def read_key(demo_server: ServerProcess) -> str:
    with demo_server.admin() as client:
        reply = client.post("/admin/keys", json={"name": "console-reader", "scopes": ["read"]})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


@pytest.fixture(scope="session")
def admin_key() -> str:
    return ADMIN_TOKEN
