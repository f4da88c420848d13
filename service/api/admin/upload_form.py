"""The registration upload (``multipart/form-data``: ``artifact`` file + ``manifest`` JSON), read as a stream.

Litestar's form parsing keeps every non-file field in memory without a bound (a 1 GB ``manifest`` field grew
the server by 2 GB) and spools files to the system temp directory however large they are. Here the body is
parsed while it arrives (after the guard checked the key): the artifact goes straight to a private temp file
in the store's ``tmp/`` directory and is refused with 413 the moment it passes ``MAX_ARTIFACT_BYTES``; the
manifest is refused past ``MAX_MANIFEST_BYTES`` and must be UTF-8 (400 otherwise); unknown or repeated
fields, and more than a handful of parts, are 400. Nothing but the current chunk is held in memory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from service.errors import InvalidInput, PayloadTooLarge

__all__ = ("UploadParts", "read_upload")

_WRITE_BYTES = 1 << 20
"""Artifact bytes gathered before one write (in a worker thread, off the event loop)."""
_FIELDS = ("artifact", "manifest")
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


@dataclass
class UploadParts:
    """A parsed upload: the manifest text and the artifact's temp file (the caller removes it)."""

    manifest: str
    artifact: Path


def boundary_of(content_type: str) -> bytes:
    media, _, options = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        raise InvalidInput("an upload must be multipart/form-data with an 'artifact' file and a 'manifest' field")
    for option in options.split(";"):
        key, _, value = option.strip().partition("=")
        if key.lower() == "boundary" and value.strip('"'):
            return value.strip('"').encode("latin-1")
    raise InvalidInput("multipart boundary missing in Content-Type")


class _Reader:
    """The state of one upload while it streams."""

    def __init__(self, temp_dir: Path, max_artifact_bytes: int, max_manifest_bytes: int) -> None:
        self.temp_dir = temp_dir
        self.max_artifact = max_artifact_bytes
        self.max_manifest = max_manifest_bytes
        self.manifest: bytearray | None = None
        self.artifact: Path | None = None
        self._fd: int | None = None
        self._pending = bytearray()
        self._size = 0
        self._field: str | None = None

    async def begin(self, segment: MultipartSegment) -> None:
        name = segment.name
        if name not in _FIELDS:
            raise InvalidInput(f"unexpected form field {name!r}: send 'artifact' (a file) and 'manifest' (JSON)")
        if (name == "artifact" and self.artifact is not None) or (name == "manifest" and self.manifest is not None):
            raise InvalidInput(f"form field '{name}' sent twice")
        self._field = name
        if name == "manifest":
            if segment.charset is not None and segment.charset.lower() not in _CHARSETS:
                raise InvalidInput(f"the manifest must be UTF-8 JSON, not charset {segment.charset[:40]!r}")
            self.manifest = bytearray()
            return
        path = self.temp_dir / f"form-{os.getpid()}-{os.urandom(6).hex()}.part"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.artifact = path

    async def data(self, chunk: bytes | bytearray) -> None:
        if self._field == "manifest":
            assert self.manifest is not None
            if len(self.manifest) + len(chunk) > self.max_manifest:
                raise PayloadTooLarge(f"the manifest exceeds the limit of {self.max_manifest} bytes")
            self.manifest += chunk
            return
        self._size += len(chunk)
        if self._size > self.max_artifact:
            raise PayloadTooLarge(f"artifact exceeds the limit of {self.max_artifact} bytes")
        self._pending += chunk
        if len(self._pending) >= _WRITE_BYTES:
            await self._flush()

    async def end(self) -> None:
        if self._field == "artifact":
            await self._flush()
        self._field = None

    async def _flush(self) -> None:
        if self._pending and self._fd is not None:
            data, self._pending = bytes(self._pending), bytearray()
            await asyncio.to_thread(_write_all, self._fd, data)

    def close(self, *, keep: bool) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not keep and self.artifact is not None:
            self.artifact.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def read_upload(
    chunks: AsyncIterator[bytes],
    content_type: str,
    *,
    temp_dir: Path,
    max_artifact_bytes: int,
    max_manifest_bytes: int,
) -> UploadParts:
    """Parse an upload body from ``chunks`` under the caps; the artifact lands in a temp file in ``temp_dir``."""
    boundary = boundary_of(content_type)
    reader = _Reader(temp_dir, max_artifact_bytes, max_manifest_bytes)
    done = False
    try:
        with PushMultipartParser(boundary, max_segment_count=4, max_header_count=8) as parser:
            async for chunk in chunks:
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        await reader.begin(event)
                    elif event:
                        await reader.data(event)
                    else:
                        await reader.end()
                if parser.closed:
                    break
            if not parser.closed:
                raise InvalidInput("the multipart body ended before its closing boundary")
        if reader.artifact is None or reader.manifest is None:
            raise InvalidInput("an upload needs an 'artifact' file and a 'manifest' field")
        try:
            manifest = reader.manifest.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the manifest is not valid UTF-8") from None
        done = True
        return UploadParts(manifest=manifest, artifact=reader.artifact)
    except ParserLimitReached:
        raise InvalidInput("too many parts or part headers in the upload") from None
    except ParserError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    finally:
        reader.close(keep=done)
