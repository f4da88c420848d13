"""Register a version: store the bytes durably, prove the version can serve, and only then commit the row.

Order matters for crash safety: blob (fsynced, renamed) -> guard + load + smoke test -> DB row. A crash at
any point leaves either nothing in the DB or a row whose blob is durable; blobs without rows are collected
by ``modelport gc`` and are unreachable through any API meanwhile. A registration that is refused (the
artifact fails a check, cannot load or fails its smoke test, the row cannot commit) takes its blob back at once
unless a version references the same bytes (``ArtifactStore.provisional``), so refused uploads do not pile up
in the store until the next ``gc``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from registry_db.records import Principal, StoredArtifact, VersionRecord
from registry_db.validation import validate_model_name
from service.errors import ArtifactRejected, InvalidInput
from service.inference.loader import load_engine, signature_from_specs
from service.inference.processing import validate_processing_spec
from service.management.manifest import VersionManifest
from service.plugins import Engine, UnknownPlugin

if TYPE_CHECKING:
    from service.context import Services

__all__ = ("register_version", "smoke_test")

_SMOKE_BATCH = 2


def smoke_test(engine: Engine) -> None:
    """One batched inference on zeros: every declared output comes back with the batch dim and finite values.

    Runs in a worker thread. Raises ArtifactRejected naming what was wrong.
    """
    batch: dict[str, np.ndarray] = {}
    for spec in engine.inputs:
        shape = (_SMOKE_BATCH, *(1 if d < 0 else d for d in spec.shape[1:]))
        if spec.datatype == "BYTES":
            # "0": a valid string for any text model and a number for models that parse their strings
            # (Triton's simple_string casts STRING to INT32; an empty string made its Cast throw)
            batch[spec.name] = np.full(shape, b"0", dtype=np.object_)
        else:
            batch[spec.name] = np.zeros(shape, dtype=spec.dtype)
    try:
        outputs = engine.predict(batch)
    except Exception as exc:  # noqa: BLE001
        raise ArtifactRejected(f"smoke-test inference failed: {type(exc).__name__}: {exc}") from exc
    for spec in engine.outputs:
        if spec.name not in outputs:
            raise ArtifactRejected(f"smoke test: output '{spec.name}' missing from the engine's result")
        value = np.asarray(outputs[spec.name])
        if value.ndim == 0 or value.shape[0] != _SMOKE_BATCH:
            raise ArtifactRejected(
                f"smoke test: output '{spec.name}' has shape {list(value.shape)}; expected batch dim {_SMOKE_BATCH}"
            )
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ArtifactRejected(f"smoke test: output '{spec.name}' is not finite on zero input")


def _check_manifest(services: Services, model_name: str, manifest: VersionManifest) -> None:
    validate_model_name(model_name)  # the manifest's own fields were checked when it was built
    try:
        backend = services.plugins.backend(manifest.backend)
    except UnknownPlugin as exc:
        raise InvalidInput(str(exc)) from None
    if backend.requires_architecture and not manifest.architecture:
        raise InvalidInput(f"backend '{manifest.backend}' loads bare weights: 'architecture' is required")
    if manifest.architecture is not None:
        try:
            services.plugins.architecture(manifest.architecture)
        except UnknownPlugin as exc:
            raise InvalidInput(str(exc)) from None


def _declared_signature(manifest: VersionManifest) -> dict[str, Any] | None:
    if manifest.signature is None:
        return None
    return signature_from_specs(*manifest.signature.specs())


async def register_version(
    services: Services,
    model_name: str,
    *,
    artifact: Path | AsyncIterable[bytes],
    manifest: VersionManifest,
    principal: Principal,
    allow_duplicate: bool = False,
) -> VersionRecord:
    """Store, verify, load, smoke-test and commit one version; nothing is committed unless all pass.

    A model that does not exist is created with its first version (``model_created`` on the record). Bytes
    identical to a version the model already has are refused (:class:`DuplicateArtifact`, naming it) unless
    ``allow_duplicate``: re-registering the same artifact is usually a retried pipeline, and an alias is what
    points at an existing version again.
    """
    _check_manifest(services, model_name, manifest)
    catalog = services.registry.catalog
    async with services.store.provisional(artifact, referenced=catalog.references_sha256) as stored:
        return await _prove_and_commit(services, model_name, stored, manifest, principal, allow_duplicate)


async def _prove_and_commit(
    services: Services,
    model_name: str,
    stored: StoredArtifact,
    manifest: VersionManifest,
    principal: Principal,
    allow_duplicate: bool,
) -> VersionRecord:
    declared = _declared_signature(manifest)

    def prove() -> dict[str, Any]:
        loaded = load_engine(
            settings=services.settings,
            store=services.store,
            plugins=services.plugins,
            sha256=stored.sha256,
            backend_name=manifest.backend,
            architecture=manifest.architecture,
            architecture_config=manifest.architecture_config,
            signature=declared,
            trusted=principal.has("admin"),
        )
        try:
            engine = loaded.engine
            # now that the signature is known, check that pre/postprocessing fit it (names, dims, labels)
            validate_processing_spec(manifest.preprocessing, inputs=engine.inputs, outputs=engine.outputs)
            validate_processing_spec(manifest.postprocessing, inputs=engine.inputs, outputs=engine.outputs)
            smoke_test(engine)
            return signature_from_specs(engine.inputs, engine.outputs)
        finally:
            loaded.engine.close()

    signature = await asyncio.to_thread(prove)
    card = dict(manifest.card)
    if manifest.description and "description" not in card:
        card["description"] = manifest.description
    return await services.registry.catalog.add_version(
        model_name,
        version=manifest.version,
        backend=manifest.backend,
        architecture=manifest.architecture,
        architecture_config=dict(manifest.architecture_config),
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        storage_path=stored.storage_path,
        signature=signature,
        preprocessing=manifest.preprocessing,
        postprocessing=manifest.postprocessing,
        card=card,
        actor=principal.name,
        refuse_duplicate_bytes=not allow_duplicate,
    )
