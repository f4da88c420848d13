"""Start real ``modelport serve`` processes for integration tests and talk to them over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
SMALL_LIMITS = {
    "MODELPORT_MAX_HEADER_BYTES": "8192",
    "MODELPORT_MAX_HEADER_FIELD_BYTES": "4096",
    "MODELPORT_HEADER_TIMEOUT_S": "1",
    "MODELPORT_BODY_IDLE_TIMEOUT_S": "1",
    "MODELPORT_KEEP_ALIVE_TIMEOUT_S": "1",
    "MODELPORT_MAX_CONNECTIONS": "1000",
    "MODELPORT_MAX_BODY_BYTES": str(4 << 20),
    "MODELPORT_MAX_INFLIGHT_BODY_BYTES": str(8 << 20),
}
"""Connection limits small enough that tests of them take seconds (``run_server(extra_env=...)``)."""


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends on a raw socket until it closes (or the socket's timeout)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_after: float = 0.0
    """Seconds from the process start until ``/v2/health/ready`` first answered 200."""

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:<port>`` of the gRPC server (started with ``run_server(grpc=True)``)."""
        port = self.env.get("MODELPORT_GRPC_PORT", "0")
        assert port != "0", "this server was started without gRPC: run_server(..., grpc=True)"
        return f"127.0.0.1:{port}"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0, **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def register_onnx(
        self, model: str, artifact: Path, *, allow_duplicate: bool = False, **manifest: Any
    ) -> dict[str, Any]:
        """``allow_duplicate``: register bytes this model already has as a new version (else 409)."""
        body = {"backend": "onnx", **manifest}  # manifest may override the backend
        with self.admin() as client, artifact.open("rb") as fh:
            reply = client.post(
                f"/admin/models/{model}/versions",
                params={"allow_duplicate": "true"} if allow_duplicate else None,
                files={"artifact": (artifact.name, fh, "application/octet-stream")},
                data={"manifest": json.dumps(body)},
            )
        assert reply.status_code == 201, reply.text
        return reply.json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def wait_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base_url}/v2/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server not ready within {timeout}s:\n{log_path.read_text(errors='replace')}")


@contextmanager
def run_server(
    data_dir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    port: int | None = None,
    grpc: bool = False,
    prefix: tuple[str, ...] = (),
    ready_timeout: float = 90.0,
    main: tuple[str, ...] = ("-m", "service"),
) -> Iterator[ServerProcess]:
    """A ``modelport serve`` process on a free port with its own data dir; SIGTERM on exit. gRPC is off unless
    ``grpc`` (then on another free port, ``ServerProcess.grpc_url``). ``prefix`` runs it under another command
    (``prlimit --nofile=...``); ``main`` replaces ``-m service`` (``-c CODE``: ``serve ...`` in its ``sys.argv``).

    A free port is only free when it is picked: another process (a parallel test, a client's ephemeral port)
    may bind it before the server does. Where this helper picked the ports and the server exits saying
    "address already in use", it starts again on fresh ones (three tries)."""
    own_ports = port is None and "MODELPORT_GRPC_PORT" not in (extra_env or {})
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for attempt in range(3 if own_ports else 1):
        server = _start_server(
            data_dir, port or free_port(), grpc=grpc, extra_env=extra_env, args=args, prefix=prefix, main=main
        )
        try:
            wait_ready(server.base_url, server.process, server.log_path, ready_timeout)
        except RuntimeError:
            server.stop()
            if attempt < 2 and own_ports and "address already in use" in server.logs():
                continue
            raise
        break
    server.ready_after = time.monotonic() - started
    try:
        yield server
    finally:
        server.stop()


def _start_server(
    data_dir: Path,
    port: int,
    *,
    grpc: bool,
    extra_env: dict[str, str] | None,
    args: tuple[str, ...],
    prefix: tuple[str, ...],
    main: tuple[str, ...],
) -> ServerProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")},
        "MODELPORT_DATA_DIR": str(data_dir),
        "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        "MODELPORT_LOG_FORMAT": "json",
        "MODELPORT_REGISTRY_POLL_INTERVAL_S": "0.25",
        "MODELPORT_DRAIN_TIMEOUT_S": "10",
        "MODELPORT_GRPC_PORT": str(free_port()) if grpc else "0",
        **(extra_env or {}),
    }
    log_path = data_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*prefix, sys.executable, *main, "serve", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(f"http://127.0.0.1:{port}", process, log_path, env)


@contextmanager
def run_example_models(root: Path, *, grpc: bool = True, **kwargs: Any) -> Iterator[ServerProcess]:
    """``run_server`` on ``root / "data"`` with Triton's example models registered and promoted to production:
    ``simple`` (INPUT0, INPUT1 ``(batch, 16) int32`` -> OUTPUT0 sum, OUTPUT1 difference) and ``echo`` (TEXT
    ``(batch, n) BYTES`` -> ECHO, the same strings). gRPC is on unless ``grpc=False``."""
    from tests.helpers.onnx_models import make_simple_onnx, make_string_echo_onnx

    make_simple_onnx(root / "simple.onnx")
    make_string_echo_onnx(root / "echo.onnx")
    with run_server(root / "data", grpc=grpc, **kwargs) as server:
        server.register_onnx("simple", root / "simple.onnx")
        server.register_onnx("echo", root / "echo.onnx")
        with server.admin() as admin:
            for model in ("simple", "echo"):
                reply = admin.put(f"/admin/models/{model}/aliases/production", json={"version": "1"})
                assert reply.status_code == 200, reply.text
        yield server
