"""A real S3-compatible endpoint for tests: moto's server in its own process, reached over HTTP on loopback.

Tests read and tamper with objects through boto3 (which moto brings), independently of the obstore client
under test.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from registry_db.object_store import S3Options
from tests.helpers.server import free_port

ACCESS_KEY = "modelport-test"
SECRET_KEY = "modelport-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def create_bucket(self, prefix: str = "mp") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self._client().create_bucket(Bucket=name)
        return name

    def options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            allow_http=True,
        )

    def env(self, artifact_url: str) -> dict[str, str]:
        """``MODELPORT_*`` settings pointing a server or CLI at ``artifact_url`` on this endpoint."""
        return {
            "MODELPORT_ARTIFACT_URL": artifact_url,
            "MODELPORT_S3_ENDPOINT_URL": self.endpoint,
            "MODELPORT_S3_REGION": "us-east-1",
            "MODELPORT_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "MODELPORT_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "MODELPORT_S3_ALLOW_HTTP": "true",
        }

    def _client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self._client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._client().put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, bucket: str) -> list[str]:
        """Every key in the bucket (first page of ListObjectsV2 is enough for tests)."""
        return sorted(item["Key"] for item in self._client().list_objects_v2(Bucket=bucket).get("Contents", []))


@contextmanager
def run_s3_server(log_dir: Path) -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port; stopped on exit."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "moto.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {(log_dir / 'moto.log').read_text()}") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(10)
