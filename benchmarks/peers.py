"""Peer servers for the same run: each installed, pinned, into its own cached throw-away venv.

A peer's dependency pins would fight the project's (MLServer pins its own FastAPI, pydantic, protobuf, …), so a
peer never goes into the project's venv or extras. :class:`PeerVenv` creates one venv per pinned requirement set
under ``~/.cache/modelport-bench/`` (``$XDG_CACHE_HOME`` honoured; ``--peer-cache`` to choose), keyed by the pins
and the interpreter's version, on first use; later runs reuse it. A venv counts as installed only once its
``installed.json`` stamp is written, after pip succeeded, so an interrupted install is redone, not reused.

The onnxruntime pin is the project's own version, so a peer row and a modelport row run the same kernels.

:func:`write_mlserver_repository` lays out what ``mlserver start DIR`` serves: ``settings.json`` (server-wide:
ports, ``parallel_workers``), and one model folder with ``model-settings.json`` (adaptive batching on or off),
the ONNX file and ``bench_runtime.py`` (:mod:`benchmarks.servers.mlserver_runtime`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = (
    "MLSERVER_VERSION",
    "LITSERVE_VERSION",
    "MLServerConfig",
    "PeerVenv",
    "default_cache_root",
    "litserve_venv",
    "mlserver_venv",
    "write_mlserver_repository",
)

MLSERVER_VERSION = "1.7.1"
LITSERVE_VERSION = "0.2.19"
RUNTIME_SOURCE = Path(__file__).resolve().parent / "servers" / "mlserver_runtime.py"


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/modelport-bench`` or ``~/.cache/modelport-bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelport-bench"


def _project_version(dist: str) -> str:
    """The version of ``dist`` in the interpreter running the harness (the peers get the same)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"{dist} is not installed in the harness's venv: ./scripts/install") from None


@dataclass(frozen=True)
class PeerVenv:
    """One throw-away venv for a peer, identified by its pinned requirements and the Python that builds it."""

    name: str
    """The peer and its version, e.g. ``mlserver-1.7.1``: the folder name starts with it."""
    requirements: tuple[str, ...]
    """pip requirement specifiers, each pinned (``pkg==X``), installed in one resolver pass."""
    root: Path
    """The cache folder holding every peer venv."""
    python: str = sys.executable
    """The interpreter the venv is created from (its version is part of the key)."""

    @property
    def key(self) -> str:
        """12 hex digits of sha256 over the sorted pins and the interpreter's major.minor."""
        text = "\n".join(sorted(self.requirements)) + f"\npy{sys.version_info.major}.{sys.version_info.minor}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def path(self) -> Path:
        return self.root / f"{self.name}-{self.key}"

    @property
    def stamp(self) -> Path:
        return self.path / "installed.json"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def installed(self) -> dict[str, Any] | None:
        """The stamp (requirements, install seconds, pip freeze) when the venv is complete, else None."""
        try:
            data: dict[str, Any] = json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("requirements") == list(self.requirements) else None

    def ensure(self, log: Callable[[str], None] = print, *, timeout: float = 1800.0) -> dict[str, Any]:
        """Create and install the venv unless a complete one exists; return its stamp plus ``reused``.

        Runs pip once, under a file lock so two harnesses never install into one folder at once; a failed
        install removes the half-built folder and raises RuntimeError with pip's output tail.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / f".{self.name}-{self.key}.lock"):
            stamp = self.installed()
            if stamp is not None:
                return {**stamp, "reused": True}
            log(f"  installing {' '.join(self.requirements)} into {self.path} (first use; cached afterwards)")
            shutil.rmtree(self.path, ignore_errors=True)
            started = time.monotonic()
            try:
                _check([self.python, "-m", "venv", str(self.path)], timeout=300)
                pip = [str(self.bin("python")), "-m", "pip", "--disable-pip-version-check", "-q"]
                _check([*pip, "install", "--upgrade", "pip>=24"], timeout=300)
                _check([*pip, "install", *self.requirements], timeout=timeout)
                freeze = _check([*pip, "freeze"], timeout=120).splitlines()
            except Exception:
                shutil.rmtree(self.path, ignore_errors=True)
                raise
            seconds = round(time.monotonic() - started, 1)
            data = {"requirements": list(self.requirements), "install_s": seconds, "freeze": freeze}
            self.stamp.write_text(json.dumps(data, indent=1) + "\n")
            log(f"  installed in {seconds:.0f} s")
            return {**data, "reused": False}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check(argv: Sequence[str], *, timeout: float) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited {proc.returncode}:\n{tail}")
    return proc.stdout


def mlserver_venv(
    root: Path | None = None, *, onnxruntime: str | None = None, httptools: str | None = None
) -> PeerVenv:
    """MLServer pinned to :data:`MLSERVER_VERSION` with the project's onnxruntime and httptools.

    MLServer depends on plain ``uvicorn``, whose HTTP parser is then the pure-Python h11; uvicorn picks httptools
    (the C parser modelport's server uses) whenever it is installed, so the peer gets it too: the fastest config
    of the peer, not a handicapped one.
    """
    ort = onnxruntime or _project_version("onnxruntime")
    parser = httptools or _project_version("httptools")
    return PeerVenv(
        f"mlserver-{MLSERVER_VERSION}",
        (f"mlserver=={MLSERVER_VERSION}", f"onnxruntime=={ort}", f"httptools=={parser}"),
        root or default_cache_root(),
    )


def litserve_venv(root: Path | None = None, *, onnxruntime: str | None = None) -> PeerVenv:
    """LitServe pinned to :data:`LITSERVE_VERSION` with the project's onnxruntime."""
    ort = onnxruntime or _project_version("onnxruntime")
    return PeerVenv(
        f"litserve-{LITSERVE_VERSION}",
        (f"litserve=={LITSERVE_VERSION}", f"onnxruntime=={ort}"),
        root or default_cache_root(),
    )


@dataclass(frozen=True)
class MLServerConfig:
    """One MLServer configuration under test: ports, the inference pool and adaptive batching."""

    http_port: int
    grpc_port: int
    metrics_port: int
    parallel_workers: int = 0
    """0: inference in the main process (MLServer's documented single-process mode); N > 0: a pool of N
    worker processes fed over multiprocessing queues (all pinned to the same core by the harness)."""
    max_batch_size: int = 0
    """Adaptive batching: most requests per batch (0 or 1: off)."""
    max_batch_time: float = 0.0
    """Adaptive batching: seconds to wait for a full batch (0: off)."""

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1 and self.max_batch_time > 0

    def settings(self) -> dict[str, Any]:
        """``settings.json``: server-wide settings (loopback only, no debug mode)."""
        return {
            "debug": False,
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "parallel_workers": self.parallel_workers,
            "load_models_at_startup": True,
        }

    def model_settings(self, name: str, uri: str) -> dict[str, Any]:
        """``model-settings.json`` for the benchmark model served by ``bench_runtime.OnnxRuntime``."""
        settings: dict[str, Any] = {
            "name": name,
            "implementation": "bench_runtime.OnnxRuntime",
            "parameters": {"uri": uri, "version": "1"},
        }
        if self.batching:
            settings.update(max_batch_size=self.max_batch_size, max_batch_time=self.max_batch_time)
        return settings


def write_mlserver_repository(root: Path, config: MLServerConfig, model_name: str, onnx_file: Path) -> Path:
    """Write the folder ``mlserver start`` serves (settings, one model folder, the runtime); return it."""
    model_dir = root / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, model_dir / "model.onnx")
    shutil.copyfile(RUNTIME_SOURCE, model_dir / "bench_runtime.py")
    (root / "settings.json").write_text(json.dumps(config.settings(), indent=1) + "\n")
    settings = config.model_settings(model_name, "./model.onnx")
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=1) + "\n")
    return root


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.peers install mlserver|litserve``: build (or find) a peer's venv and say where."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("action", choices=("install", "path"))
    parser.add_argument("peer", choices=("mlserver", "litserve"))
    parser.add_argument("--cache", type=Path, default=None, help="cache root (default ~/.cache/modelport-bench)")
    parser.add_argument("--onnxruntime", default=None, help="onnxruntime version (default: this venv's)")
    args = parser.parse_args(argv)
    if args.peer == "mlserver":
        venv = mlserver_venv(args.cache, onnxruntime=args.onnxruntime)
    else:
        venv = litserve_venv(args.cache, onnxruntime=args.onnxruntime)
    if args.action == "path":
        print(venv.path)
        return 0 if venv.installed() else 1
    stamp = venv.ensure()
    print(json.dumps({"path": str(venv.path), "reused": stamp["reused"], "install_s": stamp["install_s"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
