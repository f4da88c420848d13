"""The one way an artifact becomes a running engine: verify hash -> guard format -> backend.load -> warmup.

Used by registration (smoke test before the row commits) and by the engine pool (serving). Runs in a
worker thread: it hashes files and may take seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from registry_db.errors import IntegrityError
from registry_db.store import ArtifactStore
from service.errors import ArtifactRejected
from service.inference.cpu_budget import engine_threads
from service.inference.heap import release_memory
from service.plugins import Engine, LoadRequest, PluginRegistry, TensorSpec, UnknownPlugin
from service.security.artifact_guard import inspect_artifact
from service.settings import Settings

__all__ = ("LoadedArtifact", "load_engine", "specs_from_signature", "signature_from_specs")

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedArtifact:
    """An engine plus how long it took (for the operator's note and metrics)."""

    engine: Engine
    load_seconds: float
    warmup_seconds: float


def specs_from_signature(signature: dict[str, Any] | None, key: str) -> tuple[TensorSpec, ...] | None:
    """TensorSpecs from a stored/declared signature dict (``{"inputs": [...], "outputs": [...]}``)."""
    if not signature or not signature.get(key):
        return None
    return tuple(TensorSpec(s["name"], s["datatype"], tuple(int(d) for d in s["shape"])) for s in signature[key])


def signature_from_specs(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> dict[str, Any]:
    """The JSON form stored in the registry."""

    def as_list(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]

    return {"inputs": as_list(inputs), "outputs": as_list(outputs)}


def load_engine(
    *,
    settings: Settings,
    store: ArtifactStore,
    plugins: PluginRegistry,
    sha256: str,
    backend_name: str,
    architecture: str | None,
    architecture_config: dict[str, Any],
    signature: dict[str, Any] | None,
    trusted: bool,
    artifact_path: Path | None = None,
) -> LoadedArtifact:
    """Build and warm an engine; every failure is an :class:`ArtifactRejected` (or IntegrityError) with a reason.

    ``trusted`` is whether the artifact came from an admin key (code-carrying formats need it).
    """
    try:
        backend = plugins.backend(backend_name)
    except UnknownPlugin as exc:
        raise ArtifactRejected(str(exc)) from None
    path = artifact_path if artifact_path is not None else store.verified_path(sha256)
    fmt = inspect_artifact(path, backend, backend_name=backend_name, principal_is_admin=trusted)
    factory = None
    if backend.requires_architecture:
        if not architecture:
            raise ArtifactRejected(
                f"backend '{backend_name}' loads bare weights: the manifest must name an architecture"
            )
        try:
            factory = plugins.architecture(architecture)
        except UnknownPlugin as exc:
            raise ArtifactRejected(str(exc)) from None
    request = LoadRequest(
        artifact_path=path,
        artifact_format=fmt,
        device=settings.device,
        use_fp16=settings.use_fp16,
        intra_op_threads=engine_threads(workers=settings.workers, configured=settings.intra_op_threads),
        inter_op_threads=settings.inter_op_threads or 1,
        allow_spinning=settings.thread_spinning,
        architecture=factory,
        architecture_config=dict(architecture_config),
        declared_inputs=specs_from_signature(signature, "inputs"),
        declared_outputs=specs_from_signature(signature, "outputs"),
    )
    started = time.perf_counter()
    try:
        engine = backend.load(request)
    except (ArtifactRejected, IntegrityError):
        raise
    except Exception as exc:  # noqa: BLE001 - any backend failure becomes a clear refusal
        raise ArtifactRejected(
            f"backend '{backend_name}' could not load the artifact: {type(exc).__name__}: {exc}"
        ) from exc
    loaded = time.perf_counter()
    try:
        engine.warmup()
    except Exception as exc:  # noqa: BLE001
        engine.close()
        raise ArtifactRejected(f"warm-up inference failed: {type(exc).__name__}: {exc}") from exc
    warmed = time.perf_counter()
    # the load's garbage and the code that only loading ran (kernel registration, graph optimisers) leave RSS
    released_kb = release_memory(cold_pages=settings.release_cold_pages)
    _log.info(
        "engine_loaded",
        backend=backend_name,
        sha256=sha256[:12],
        device=engine.device,
        load_ms=round((loaded - started) * 1000, 1),
        warmup_ms=round((warmed - loaded) * 1000, 1),
        released_mb=round(released_kb / 1024, 1),
    )
    return LoadedArtifact(engine, loaded - started, warmed - loaded)
