"""``/admin/models/{name}/versions``: upload (multipart), list, show, archive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body

from registry_db.records import Principal
from service.api.admin._base import ADMIN_DEPENDENCIES
from service.api.responses import errors
from service.errors import InvalidInput
from service.management import operations
from service.management.manifest import VersionManifest
from service.management.registration import register_version
from service.runtime import Runtime
from service.schemas.admin import VersionOut

__all__ = ("VersionsController", "UploadForm")

_CHUNK = 1 << 20


@dataclass
class UploadForm:
    """``artifact``: the model file. ``manifest``: JSON with backend, version?, architecture?,
    architecture_config?, signature?, preprocessing?, postprocessing?, card."""

    artifact: UploadFile
    manifest: str


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(_CHUNK):
        yield chunk


def _parse_manifest(raw: str) -> VersionManifest:
    try:
        return msgspec.json.decode(raw, type=VersionManifest)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid manifest: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"manifest is not valid JSON: {exc}") from None


class VersionsController(Controller):
    path = "/admin/models/{model_name:str}/versions"
    tags = ["admin: versions"]
    dependencies = ADMIN_DEPENDENCIES

    @post(
        "",
        summary="Upload a version (multipart: artifact + manifest); loaded and smoke-tested before it commits",
        status_code=201,
        responses=errors(400, 401, 403, 409, 413, 422, 503),
        request_max_body_size=None,
    )
    async def upload(
        self,
        rt: Runtime,
        admin: Principal,
        model_name: str,
        data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> VersionOut:
        assert rt.services is not None
        try:
            manifest = _parse_manifest(data.manifest)
            record = await register_version(
                rt.services, model_name, artifact=_chunks(data.artifact), manifest=manifest, principal=admin
            )
        finally:
            await data.artifact.close()
        if rt.routing is not None:
            await rt.routing.refresh()
        return VersionOut.of(record)

    @get("", summary="List versions", responses=errors(401, 403, 404, 503))
    async def list_versions(self, rt: Runtime, reader: Principal, model_name: str) -> list[VersionOut]:
        assert rt.services is not None
        return [VersionOut.of(v) for v in await rt.services.registry.catalog.list_versions(model_name)]

    @get(
        "/{version:str}",
        summary="Show a version: sha256, size, created_at, signature, card",
        responses=errors(401, 403, 404, 503),
    )
    async def show(self, rt: Runtime, reader: Principal, model_name: str, version: str) -> VersionOut:
        assert rt.services is not None
        return VersionOut.of(await rt.services.registry.catalog.get_version(model_name, version))

    @delete(
        "/{version:str}",
        summary="Archive a version (409 while an alias or split uses it)",
        status_code=200,
        responses=errors(401, 403, 404, 409, 503),
    )
    async def archive(self, rt: Runtime, admin: Principal, model_name: str, version: str) -> VersionOut:
        return VersionOut.of(await operations.archive(rt, model_name, version, admin))
