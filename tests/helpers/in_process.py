"""The app ``create_app`` builds, served in process on its own event loop, for synchronous (hypothesis) tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import httpx
import pytest

from service.app import create_app
from service.asgi import ModelportASGI
from service.settings import Settings

__all__ = ("LoopClient", "serve_in_process")


class LoopClient(NamedTuple):
    """An ASGI client whose calls run to completion on the app's loop (hypothesis tests are synchronous)."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    app: ModelportASGI

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        encoded = {name.encode("latin-1"): value.encode("utf-8") for name, value in (headers or {}).items()}
        return self.loop.run_until_complete(self.client.request(method, path, content=body, headers=encoded))


@contextmanager
def serve_in_process(settings: Settings) -> Iterator[LoopClient]:
    """Start the app's runtime on a new loop, yield a client for it, stop everything on exit."""
    loop = asyncio.new_event_loop()
    with pytest.MonkeyPatch.context() as patch:
        # the server's logging setup caches loggers for the whole process: keep the test process's own
        patch.setattr("service.app.configure_logging", lambda *args, **kwargs: None)
        app = create_app(settings)
        loop.run_until_complete(app.runtime.start())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
        try:
            yield LoopClient(loop, client, app)
        finally:
            loop.run_until_complete(client.aclose())
            loop.run_until_complete(app.runtime.stop())
            loop.close()
