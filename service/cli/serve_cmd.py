"""``modelport serve``: run the service on a real ASGI server (uvicorn by default, granian optional)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType

import click

from service.cli._app import cli
from service.settings import Settings

__all__ = ("serve",)


def _apply_overrides(**overrides: object) -> Settings:
    """CLI flags win over the environment; exported so every worker process sees the same settings."""
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"MODELPORT_{key.upper()}"] = str(value)
    return Settings()


async def _ensure_demo(settings: Settings) -> None:
    """Run the installed demo (entry point ``modelport.demos``) unless its models are already registered."""
    from service.cli._demo import choose_demo
    from service.context import Services
    from service.plugins import default_registry

    demo = choose_demo(default_registry())
    services = await Services.open(settings, migrate=settings.resolved_database_url.startswith("sqlite"))
    try:
        report = await demo.run_with_progress(services, skip_if_present=True)
    finally:
        await services.close()
    if not report.skipped:
        for line in report.lines:
            click.echo(f"demo '{demo.name}': {line}", err=True)


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    from service.connection_guard import ConnectionLimits, GuardedHttpToolsProtocol, raise_fd_limit

    raise_fd_limit()  # before the limits are derived from it; worker processes inherit it
    GuardedHttpToolsProtocol.limits = ConnectionLimits.from_settings(settings)
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.drain_timeout_s) or None,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "loop": "auto",
        "http": GuardedHttpToolsProtocol,  # httptools plus header caps, timeouts and a connection cap
        "ws": "none",  # no WebSocket routes: not importing uvicorn's websockets protocol saves ~1.6 MB of RSS
    }
    if settings.workers > 1:
        uvicorn.run("service.app:create_app_from_env", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
        return
    from service.app import create_app

    app = create_app(settings)

    class DrainingServer(uvicorn.Server):
        """Flips readiness to false the moment SIGTERM arrives, before uvicorn stops accepting."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            app.runtime.begin_drain()
            super().handle_exit(sig, frame)

    server = DrainingServer(uvicorn.Config(app, **common))  # type: ignore[arg-type]
    # uvicorn re-raises the captured SIGTERM after a graceful shutdown, through the handler that was
    # installed before it started: make that handler a clean exit so a drained shutdown exits 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server.run()


_HYPER_MIN_BUFFER = 8192
"""hyper (granian's HTTP implementation) refuses a read buffer smaller than this."""


def granian_limits(settings: Settings) -> dict[str, int]:
    """The connection limits granian can enforce, from our settings (``docs/security.md`` says which hold).

    ``header_read_timeout_ms``: ``HEADER_TIMEOUT_S``; ``max_buffer_size``: ``MAX_HEADER_BYTES`` (hyper's read
    buffer bounds the request line and headers: past it, 431), at least hyper's minimum of 8 KiB;
    ``backpressure``: ``MAX_CONNECTIONS`` as the requests one worker serves at once (further connections wait in
    the listen backlog, nothing is evicted); ``workers_kill_timeout``: ``DRAIN_TIMEOUT_S``. Granian has no
    body-read or keep-alive timeout and no per-field header cap.
    """
    return {
        "header_read_timeout_ms": max(1, round(settings.header_timeout_s * 1000)),
        "max_buffer_size": max(_HYPER_MIN_BUFFER, settings.max_header_bytes),
        "backpressure": settings.max_connections,
        "workers_kill_timeout": max(1, round(settings.drain_timeout_s)),
    }


def _run_granian(settings: Settings) -> None:
    try:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
    except ImportError:
        raise click.ClickException("granian is not installed: pip install 'modelport[granian]'") from None
    from service.connection_guard import raise_fd_limit

    raise_fd_limit()
    limits = granian_limits(settings)
    Granian(
        "service.app:create_app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        http=HTTPModes.http1,  # the limits below are HTTP/1.1's; the clients we serve speak it
        http1_settings=HTTP1Settings(
            header_read_timeout=limits["header_read_timeout_ms"], max_buffer_size=limits["max_buffer_size"]
        ),
        backpressure=limits["backpressure"],
        workers_kill_timeout=limits["workers_kill_timeout"],
    ).serve()


@cli.command()
@click.option("--host", default=None, help="Bind address (default 127.0.0.1; others need MODELPORT_ADMIN_TOKEN).")
@click.option("--port", type=int, default=None, help="Bind port (default 8000).")
@click.option("--grpc-port", type=int, default=None, help="gRPC port (default 8001; 0 = no gRPC server).")
@click.option("--workers", type=int, default=None, help="Worker processes (default 1).")
@click.option("--server", type=click.Choice(["uvicorn", "granian"]), default=None, help="ASGI server.")
@click.option(
    "--demo", is_flag=True, help="Run the installed demo first (the zoo's 'digits'), if its models are absent."
)
def serve(
    host: str | None, port: int | None, grpc_port: int | None, workers: int | None, server: str | None, demo: bool
) -> None:
    """Serve the registry's models over HTTP (V2 inference, predict, admin, /schema, /metrics) and gRPC."""
    from service.security.exposure import ExposureError, check_exposure

    settings = _apply_overrides(host=host, port=port, grpc_port=grpc_port, workers=workers, server=server)
    from service.observability.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)  # the server's logs, from the first line
    try:
        check_exposure(settings)
    except ExposureError as exc:
        raise click.ClickException(str(exc)) from None
    if demo:
        asyncio.run(_ensure_demo(settings))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    grpc_note = f", gRPC on port {settings.grpc_port}" if settings.grpc_port else ""
    click.echo(f"modelport serving on http://{settings.host}:{settings.port} (docs at /schema){grpc_note}", err=True)
    if settings.server == "granian":
        _run_granian(settings)
    else:
        _run_uvicorn(settings)
    sys.exit(0)
