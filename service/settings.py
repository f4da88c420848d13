"""Runtime settings: the only place the process environment is read.

Every field maps to ``MODELPORT_<FIELD>`` (and a ``.env`` file). Settings are validated once at
start-up; the rest of the code receives a :class:`Settings` instance.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ("Settings",)


_DATABASE_SCHEMES = frozenset({"sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg"})


class Settings(BaseSettings):
    """modelport configuration (env prefix ``MODELPORT_``)."""

    model_config = SettingsConfigDict(
        env_prefix="MODELPORT_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    data_dir: Path = Path("./modelport-data")
    """Root for the embedded SQLite file and, unless ``artifact_dir`` is set, the artifact store."""
    database_url: str | None = None
    """SQLAlchemy async URL. Default: ``sqlite+aiosqlite:///<data_dir>/registry.db``; PostgreSQL via
    ``postgresql+asyncpg://...`` (a plain ``postgresql://`` URL is upgraded to asyncpg)."""
    artifact_dir: Path | None = None
    """Content-addressed artifact store. Default ``<data_dir>/artifacts``; a shared mount for replicas. With
    ``artifact_url`` set it is only this replica's cache of verified blobs."""
    artifact_url: str | None = None
    """Object store of record for artifacts, ``s3://bucket[/prefix]`` (any S3-compatible service: AWS, MinIO,
    Ceph, R2, GCS interop). Unset: the artifact directory is the store. Needs the ``s3`` extra (obstore)."""
    artifact_cache_max_bytes: int = Field(default=0, ge=0)
    """With ``artifact_url``: bytes of cached blobs kept on this replica, least recently used evicted first
    (0 = no bound). Evicted blobs are fetched and verified again when next loaded."""
    artifact_transfer_timeout_s: float = Field(default=600.0, gt=0.0, le=86400.0, allow_inf_nan=False)
    """With ``artifact_url``: bound on one upload or download request, body included."""
    s3_endpoint_url: str | None = None
    """S3 endpoint for non-AWS services (``http://minio:9000``). Unset: AWS, or ``AWS_ENDPOINT_URL``."""
    s3_region: str | None = None
    """Bucket region. Unset: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1``."""
    s3_access_key_id: str | None = None
    """Static access key. Unset: the AWS credential chain (``AWS_*`` variables, EKS web identity, instance role)."""
    s3_secret_access_key: SecretStr | None = None
    """Secret for ``s3_access_key_id``. Never logged."""
    s3_allow_http: bool = False
    """Allow a plain-HTTP endpoint (in-cluster MinIO without TLS; tests)."""
    host: str = "127.0.0.1"
    """Bind address. Loopback by default; any other address requires ``admin_token`` or stored keys."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Bind port."""
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    """gRPC port (Triton's ``inference.GRPCInferenceService``) on the same host as HTTP; 0 = no gRPC server."""
    workers: int = Field(default=1, ge=1, le=64)
    """Server worker processes. Each keeps its own engines; registry changes reach all of them."""
    server: Literal["uvicorn", "granian"] = "uvicorn"
    """ASGI server used by ``modelport serve``."""
    admin_token: SecretStr | None = None
    """Bootstrap admin key (scopes admin+read). Never logged."""
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1", "localhost", "::1", "[::1]", "testserver")
    """``Host`` header values accepted (DNS-rebinding guard). ``*`` allows all; ``*.example.com`` subdomains."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Inference device. ``auto`` = CUDA when available, else CPU (the fallback is logged)."""
    use_fp16: bool = False
    """Run TorchScript engines in half precision on CUDA."""
    intra_op_threads: int = Field(default=0, ge=0, le=256)
    """Threads inside one inference call. 0: this worker's share of the CPUs the process may use (affinity mask
    and cgroup quota, not the machine's core count)."""
    inter_op_threads: int = Field(default=0, ge=0, le=256)
    """Threads across independent operators (0 = backend default)."""
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    """Largest batch the dynamic batcher assembles, and the largest batch one request may carry."""
    max_batch_delay_ms: float = Field(default=2.0, ge=0.0, le=1000.0, allow_inf_nan=False)
    """How long the oldest queued request may wait for others to join its batch."""
    max_queue: int = Field(default=256, ge=1, le=1_000_000)
    """Requests waiting per engine; beyond this a request gets 503 + Retry-After at once."""
    queue_timeout_ms: float = Field(default=0.0, ge=0.0, le=600_000.0, allow_inf_nan=False)
    """Default queue timeout (0 = none). A request waiting longer gets 503 instead of running stale."""
    thread_spinning: bool = False
    """Let runtime thread pools busy-wait for work (onnxruntime's spinning): only with dedicated cores."""
    gc_freeze: bool = True
    """Freeze the objects alive once the server is ready, so the garbage collector's full passes skip them
    (``gc.freeze``): without it each full pass walks ~170k start-up objects, a 65-100 ms pause."""
    gc_gen0_threshold: int = Field(default=10_000, ge=0, le=10_000_000)
    """Allocations between young-generation collections (CPython's default is 700; 0 keeps the interpreter's)."""
    inference_threads: int = Field(default=1, ge=1, le=64)
    """Worker threads running batches per engine (backends release the GIL)."""
    max_loaded_engines: int = Field(default=8, ge=1, le=1024)
    """LRU cap on loaded engines; versions an alias or split routes to are never evicted."""
    release_cold_pages: bool = False
    """After start-up and after each engine load, unmap shared-library pages that only start-up or loading ran
    (``madvise(MADV_DONTNEED)`` on read-only ``.so`` mappings, Linux): ~30 MB less RSS with one ONNX engine; they
    stay in the page cache, and code that runs again is mapped back by a minor fault (service/inference/heap.py).
    Off by default: those pages are clean and file-backed, a memory cgroup charges them either way, so this changes
    what RSS reports more than what the machine has free; on for hosts that bill or alert on RSS."""
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1 << 31)
    """Largest inference request body (after decompression): beyond it 413."""
    response_compression_min_bytes: int = Field(default=1024, ge=0, le=1 << 40)
    """V2 infer replies smaller than this are sent plain even when ``Accept-Encoding`` asks for gzip or deflate
    (they fit one TCP segment anyway); 0 compresses every one, as Triton does. Other routes never compress."""
    max_artifact_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1, le=1 << 40)
    """Largest artifact accepted at registration, enforced while streaming."""
    max_inflight_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, le=1 << 40)
    """Inference request bytes one worker holds at once (bodies being read plus those queued or running, and what
    compressed ones inflate to): a request that would pass it gets 503 + Retry-After. At least ``max_body_bytes``.
    gRPC calls share it (a call past it is answered UNAVAILABLE)."""
    max_manifest_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest registration manifest and largest admin JSON body: beyond it 413."""
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    """Request line and headers together, per request: beyond it 431 and the connection closes."""
    max_header_field_bytes: int = Field(default=8 * 1024, ge=256, le=1024 * 1024)
    """One header (name and value): beyond it 431. At most ``max_header_bytes``."""
    header_timeout_s: float = Field(default=10.0, gt=0.0, le=600.0, allow_inf_nan=False)
    """From a request's first byte to the end of its headers: beyond it 408 and the connection closes. On the gRPC
    port: from accept to the HTTP/2 preface, else GOAWAY and close."""
    body_idle_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    """Longest pause in an incomplete request body while the server reads it: beyond it 408 and close. On the gRPC
    port: in a unary call's unfinished request, beyond it CANCELLED (the connection stays)."""
    keep_alive_timeout_s: float = Field(default=5.0, gt=0.0, le=600.0, allow_inf_nan=False)
    """An idle connection (no request in progress, or none sent yet) closes after this long."""
    max_connections: int = Field(default=4096, ge=1, le=1_000_000)
    """Open connections per worker (also capped by the descriptor limit): one more evicts the oldest idle or
    header-dribbling connection, or gets 503 when every connection is busy. The gRPC port has its own cap of
    this size: one more evicts the oldest one without its preface or the longest idle one, else is closed."""
    shm_enabled: bool = True
    """Serve Triton's system shared-memory extension to clients on this host (loopback peers only; with
    ``admin_token`` set, registering needs an admin key). Needs ``workers`` = 1: regions are per process."""
    shm_max_regions: int = Field(default=64, ge=1, le=4096)
    """Shared-memory regions one worker keeps registered at once (one open descriptor each)."""
    shm_max_bytes: int = Field(default=1 << 30, ge=1, le=1 << 40)
    """Bytes of shared memory one worker keeps registered at once, all regions together; also the most one request
    may copy out of regions (however many of its inputs name the same one)."""
    registry_poll_interval_s: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """How often each worker checks the registry generation for promotions, splits and archives."""
    db_connect_timeout_s: float = Field(default=5.0, gt=0.0, le=300.0, allow_inf_nan=False)
    """PostgreSQL: how long to wait for a connection before answering 503 + Retry-After."""
    db_statement_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    """PostgreSQL: how long one statement may wait for an answer (a silent database is a bounded wait)."""
    drain_timeout_s: float = Field(default=20.0, ge=0.0, le=600.0, allow_inf_nan=False)
    """On SIGTERM: readiness goes false, then in-flight requests get this long to finish."""
    stats_bucket_s: int = Field(default=60, ge=1, le=86400)
    """Length of one statistics time bucket (the resolution of the stats timeline)."""
    stats_flush_interval_s: float = Field(default=5.0, gt=0.0, le=300.0, allow_inf_nan=False)
    """How often each worker writes its statistics to the registry database (what a crash can lose)."""
    stats_retention_s: int = Field(default=7 * 86400, ge=3600, le=400 * 86400)
    """How long statistics buckets and recorded outcomes are kept."""
    feedback_window_s: int = Field(default=86400, ge=0, le=30 * 86400)
    """How long after a prediction its outcome may be sent (0: no prediction log, no feedback)."""
    prediction_log_max_pending: int = Field(default=100_000, ge=100, le=10_000_000)
    """Predictions waiting to be written per worker; beyond this they are dropped and counted."""
    prediction_flush_interval_s: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """How often each worker writes its pending predictions (the longest an outcome may have to wait)."""
    experiment_alpha: float = Field(default=0.05, gt=0.0, lt=0.5, allow_inf_nan=False)
    """False-positive bound of the always-valid comparisons, across any amount of peeking."""
    shadow_queue: int = Field(default=256, ge=1, le=100_000)
    """Mirrored calls waiting for their shadow per worker; beyond this copies are dropped and counted."""
    shadow_max_primary_inflight: int = Field(default=4, ge=0, le=100_000)
    """Shadow copies run only while at most this many primary calls are in flight on the worker (its spare
    capacity); busier, they wait and the overflow is dropped and counted."""
    rollout_interval_s: float = Field(default=5.0, gt=0.0, le=600.0, allow_inf_nan=False)
    """How often the rollout controller re-evaluates running rollouts."""
    rollout_lease_s: float = Field(default=20.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    """How long the controller's lease lasts without renewal before another replica takes over."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Minimum log level."""
    log_format: Literal["json", "console"] = "json"
    """``json`` for production, ``console`` for humans."""

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        """Limits that only make sense together, named at start-up instead of refusing every large request."""
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_inflight_body_bytes ({self.max_inflight_body_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes}), or no request of the largest allowed size could ever be read"
            )
        if self.max_header_field_bytes > self.max_header_bytes:
            raise ValueError(
                f"max_header_field_bytes ({self.max_header_field_bytes}) must not exceed max_header_bytes "
                f"({self.max_header_bytes})"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("artifact_url")
    @classmethod
    def _check_artifact_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from registry_db.errors import StoreError
        from registry_db.object_store import split_artifact_url  # imports no obstore

        try:
            split_artifact_url(value)
        except StoreError as exc:
            raise ValueError(str(exc)) from None
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        """Only the registries modelport supports, named at start-up instead of failing at the first query."""
        if value is None:
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in _DATABASE_SCHEMES:
            shown = scheme or value[:40]
            raise ValueError(
                f"unsupported database URL scheme '{shown}': use sqlite:///path/registry.db or "
                "postgresql://user@host/db"
            )
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                import json

                return tuple(json.loads(value))
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL actually used."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'registry.db').resolve()}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    @cached_property
    def resolved_artifact_dir(self) -> Path:
        """Where artifacts are stored."""
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    @property
    def is_loopback(self) -> bool:
        """Whether the bind address is only reachable from this machine."""
        return self.host in {"127.0.0.1", "localhost", "::1"} or self.host.startswith("127.")
