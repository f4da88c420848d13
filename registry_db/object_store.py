"""The remote side of the artifact store: blobs in an S3-compatible bucket, through ``obstore``.

When ``MODELPORT_ARTIFACT_URL`` names a bucket (``s3://bucket/prefix``), the bucket is the store of record
and each replica's ``ARTIFACT_DIR`` is only a cache of verified blobs (:class:`registry_db.bucket_blobs.BucketBlobs`
owns the caching and the hashing). Keys are the rows' ``storage_path`` (``<prefix>/sha256/<ab>/<hex>``), so a
bucket can be copied to or from a shared directory with any sync tool.

``obstore`` (Rust ``object_store`` bindings) was chosen over ``s3fs``/``aiobotocore`` and ``boto3`` by
measurement (``docs/deployment.md``): one wheel (plus typing_extensions), multipart uploads and
streaming reads built in, retries with backoff, and the AWS credential chain (environment, web identity
for EKS IRSA, instance metadata) when no key is configured. It is imported only when a bucket is configured.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from registry_db.errors import ArtifactTooLarge, ModelportError, NotFound, StoreMisconfigured, StoreUnavailable
from registry_db.validation import storage_path_for

__all__ = ("ObjectStoreBlobs", "RemoteBlob", "S3Options", "split_artifact_url")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_MULTIPART_CHUNK = 8 << 20
_INSTALL_HINT = "an artifact URL needs the 'obstore' package: pip install 'modelport[s3]'"


@dataclass(frozen=True, slots=True)
class S3Options:
    """Connection settings; any field left ``None`` falls back to the AWS credential chain and ``AWS_*``."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    allow_http: bool = False
    transfer_timeout_s: float = 600.0
    """Bound on one whole request, body included (a 2 GB download on a slow link needs minutes)."""
    stall_timeout_s: float = 30.0
    """Bound on the wait for the next bytes of a response: a stalled connection fails fast and is retried."""


@dataclass(frozen=True, slots=True)
class RemoteBlob:
    """One object in the bucket."""

    sha256: str
    size_bytes: int
    last_modified: datetime


def split_artifact_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``); StoreMisconfigured for anything else."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not sep or scheme != "s3" or not bucket:
        raise StoreMisconfigured(f"artifact URL must look like s3://bucket[/prefix], not {url[:100]!r}")
    return bucket, prefix.strip("/")


class ObjectStoreBlobs:
    """Content-addressed blobs under one bucket prefix. Blocking calls: use them from worker threads."""

    def __init__(self, url: str, options: S3Options | None = None) -> None:
        bucket, prefix = split_artifact_url(url)
        try:
            import obstore
            from obstore.store import S3Store
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise StoreMisconfigured(_INSTALL_HINT) from None
        opts = options or S3Options()
        config: Any = {}  # obstore S3Config (a TypedDict known only to type checkers)
        if opts.endpoint_url:
            config["endpoint"] = opts.endpoint_url
        if opts.region:
            config["region"] = opts.region
        if opts.access_key_id:
            config["access_key_id"] = opts.access_key_id
        if opts.secret_access_key:
            config["secret_access_key"] = opts.secret_access_key
        client_options: Any = {
            "allow_http": opts.allow_http,
            "connect_timeout": timedelta(seconds=5),
            "read_timeout": timedelta(seconds=opts.stall_timeout_s),
            "timeout": timedelta(seconds=opts.transfer_timeout_s),
        }
        # bounded: a replica whose bucket is down reports a failed load within a minute, not after 3 (the default)
        retry_config: Any = {"max_retries": 3, "retry_timeout": timedelta(seconds=60)}
        self.url = url
        self._obs = obstore
        try:
            self._store = S3Store(
                bucket, prefix=prefix or None, config=config, client_options=client_options, retry_config=retry_config
            )
        except Exception as exc:  # noqa: BLE001 - a bad key name or value in the configuration
            raise StoreMisconfigured(f"cannot configure the object store {url}: {exc}") from None

    def __repr__(self) -> str:
        return f"ObjectStoreBlobs({self.url!r})"

    @staticmethod
    def key_for(sha256: str) -> str:
        """Object key of a blob (below the prefix): the same relative path the rows store."""
        return storage_path_for(sha256)

    def _call(self, what: str, sha256: str, fn: Callable[[], Any]) -> Any:
        """Run one obstore call, turning its errors into NotFound / StoreUnavailable naming the object."""
        try:
            return fn()
        except ModelportError:
            raise
        except FileNotFoundError:  # what obstore raises for a missing key (not its own NotFoundError)
            raise NotFound(f"artifact {sha256[:12]}… is not in {self.url}") from None
        except Exception as exc:  # noqa: BLE001 - network, auth and service errors all mean "try later"
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise StoreUnavailable(f"object store {self.url}: {what} failed: {type(exc).__name__}: {detail}") from None

    def upload(self, sha256: str, path: Path) -> None:
        """Put a verified local blob; returns once the object is durable in the bucket.

        Always a full put, even when the object exists: that refreshes its ``last_modified``, which
        ``modelport gc`` reads as the blob's age, so a registration that deduplicates into an old orphan is
        never collected between this call and its row's commit.
        """

        def put() -> None:
            with path.open("rb") as fh:
                self._obs.put(self._store, self.key_for(sha256), fh, chunk_size=_MULTIPART_CHUNK)

        self._call("upload", sha256, put)

    def download(self, sha256: str, sink: IO[bytes], *, max_bytes: int, on_chunk: Callable[[bytes], None]) -> int:
        """Stream the object into ``sink``, handing each chunk to ``on_chunk`` (the hasher); returns its size.

        NotFound if absent, ArtifactTooLarge before any byte is read when it is larger than ``max_bytes``.
        """

        def fetch() -> int:
            result = self._obs.get(self._store, self.key_for(sha256))
            declared = int(result.meta["size"])
            if declared > max_bytes:
                raise ArtifactTooLarge(f"artifact {sha256[:12]}… is {declared} bytes, over the limit of {max_bytes}")
            size = 0
            for chunk in result.stream(min_chunk_size=_CHUNK):
                data = bytes(chunk)
                size += len(data)
                if size > max_bytes:
                    raise ArtifactTooLarge(f"artifact {sha256[:12]}… exceeds the limit of {max_bytes} bytes")
                on_chunk(data)
                sink.write(data)
            return size

        return int(self._call("download", sha256, fetch))

    def head(self, sha256: str) -> RemoteBlob:
        """Size and age of one object; NotFound if absent."""
        meta = self._call("head", sha256, lambda: self._obs.head(self._store, self.key_for(sha256)))
        return RemoteBlob(sha256, int(meta["size"]), meta["last_modified"])

    def exists(self, sha256: str) -> bool:
        try:
            self.head(sha256)
        except NotFound:
            return False
        return True

    def list(self) -> Iterator[RemoteBlob]:
        """Every blob under the prefix (other keys are ignored)."""
        found = self._call(
            "list", "", lambda: [m for page in self._obs.list(self._store, prefix="sha256/") for m in page]
        )
        for meta in found:
            parts = str(meta["path"]).split("/")
            if len(parts) == 3 and parts[0] == "sha256" and _HEX64.fullmatch(parts[2]) and parts[1] == parts[2][:2]:
                yield RemoteBlob(parts[2], int(meta["size"]), meta["last_modified"])

    def delete(self, sha256: str) -> None:
        self._call("delete", sha256, lambda: self._obs.delete(self._store, self.key_for(sha256)))

    def age_s(self, blob: RemoteBlob) -> float:
        return time.time() - blob.last_modified.timestamp()
