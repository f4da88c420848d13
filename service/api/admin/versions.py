"""``/admin/models/{name}/versions``: upload (multipart), list, show, archive."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import Example
from litestar.params import FromPath, KwargDefinition, MultipartBody, Parameter

from registry_db.records import Principal
from registry_db.repository import Registry
from service.api.admin._base import ADMIN_DEPENDENCIES, ADMIN_GUARDS, ADMIN_SECURITY
from service.api.admin.upload_form import read_upload
from service.api.responses import errors
from service.context import Services
from service.management.manifest import MANIFEST_EXAMPLE, parse_manifest
from service.management.operations import RoutingOperations
from service.management.registration import register_version
from service.schemas.admin import RegisteredVersionOut, VersionOut

__all__ = ("VersionsController", "UploadForm")

MANIFEST_EXAMPLE_JSON = json.dumps(MANIFEST_EXAMPLE)


@dataclass
class UploadForm:
    """``artifact``: the model file. ``manifest``: JSON with backend, version?, architecture?,
    architecture_config?, signature?, preprocessing?, postprocessing?, card."""

    artifact: UploadFile
    manifest: Annotated[
        str, KwargDefinition(description="The manifest as JSON text.", examples=[Example(value=MANIFEST_EXAMPLE_JSON)])
    ]


def _declare_upload(data: MultipartBody[UploadForm]) -> None:  # noqa: ARG001  # pragma: no cover
    """Documents the multipart body in OpenAPI; never resolved, so Litestar never parses the form."""
    raise AssertionError("documentation-only dependency")


class VersionsController(Controller):
    path = "/admin/models/{model_name:str}/versions"
    tags = ["admin: versions"]
    dependencies = ADMIN_DEPENDENCIES
    guards = ADMIN_GUARDS
    security = ADMIN_SECURITY

    @post(
        "",
        summary="Upload a version (multipart: artifact + manifest); loaded and smoke-tested before it commits",
        status_code=201,
        responses=errors(400, 401, 403, 409, 413, 422, 503),
        request_max_body_size=None,  # bounded while streaming: MAX_ARTIFACT_BYTES and MAX_MANIFEST_BYTES
        dependencies={"documented_upload": Provide(_declare_upload, sync_to_thread=False)},
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        operations: NamedDependency[RoutingOperations],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
        allow_duplicate: Annotated[
            bool,
            Parameter(
                description="Register bytes identical to an existing version of this model anyway (default: 409 "
                "naming that version in `existing_version`)."
            ),
        ] = False,
    ) -> RegisteredVersionOut:
        settings = services.settings
        parts = await read_upload(
            request.stream(),
            request.headers.get("content-type", ""),
            temp_dir=settings.resolved_artifact_dir / "tmp",
            max_artifact_bytes=settings.max_artifact_bytes,
            max_manifest_bytes=settings.max_manifest_bytes,
        )
        try:
            manifest = parse_manifest(parts.manifest)
            record = await register_version(
                services,
                model_name,
                artifact=parts.artifact,
                manifest=manifest,
                principal=admin,
                allow_duplicate=allow_duplicate,
            )
        finally:
            parts.artifact.unlink(missing_ok=True)
        await operations.registered()
        return RegisteredVersionOut.of(record)

    @get("", summary="List versions", responses=errors(401, 403, 404, 503))
    async def list_versions(
        self, registry: NamedDependency[Registry], reader: NamedDependency[Principal], model_name: FromPath[str]
    ) -> list[VersionOut]:
        return [VersionOut.of(v) for v in await registry.catalog.list_versions(model_name)]

    @get(
        "/{version:str}",
        summary="Show a version: sha256, size, created_at, signature, card",
        responses=errors(401, 403, 404, 503),
    )
    async def show(
        self,
        registry: NamedDependency[Registry],
        reader: NamedDependency[Principal],
        model_name: FromPath[str],
        version: FromPath[str],
    ) -> VersionOut:
        return VersionOut.of(await registry.catalog.get_version(model_name, version))

    @delete(
        "/{version:str}",
        summary="Archive a version (409 while an alias or split uses it)",
        status_code=200,
        responses=errors(401, 403, 404, 409, 503),
    )
    async def archive(
        self,
        operations: NamedDependency[RoutingOperations],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
        version: FromPath[str],
    ) -> VersionOut:
        return VersionOut.of(await operations.archive(model_name, version, actor=admin.name))
