"""Artifact store cost against raw obstore, measured in one run against one S3-compatible endpoint.

    .venv/bin/python -m benchmarks.artifact_store                 # moto's S3 server on loopback, 8 and 64 MiB
    .venv/bin/python -m benchmarks.artifact_store --sizes-mib 256 --endpoint http://minio:9000 --bucket b

What modelport adds on top of the client library: on upload, hashing + fsync + link into the local cache
before the PUT; on a cold load, hashing while downloading + link into the cache; on a warm load, a re-hash of
the cached copy (no network). Each row prints the median of ``--repeat`` runs and the ratio to the raw obstore
call measured alongside it (1.00 = no overhead). moto is a Python server and bounds throughput on loopback:
read the ratios, not the MB/s. Results: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from registry_db.object_store import ObjectStoreBlobs, S3Options  # noqa: E402
from registry_db.store import ArtifactStore  # noqa: E402

_CHUNK = 1 << 20


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _median_s(fn: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(endpoint: str, bucket: str, options: S3Options, sizes_mib: list[int], repeat: int, work: Path) -> None:
    import obstore
    from obstore.store import S3Store

    config: Any = {"endpoint": endpoint, "region": options.region or "us-east-1"}
    if options.access_key_id:
        config |= {"access_key_id": options.access_key_id, "secret_access_key": options.secret_access_key}
    raw = S3Store(
        bucket,
        prefix="raw",
        config=config,
        client_options={"allow_http": options.allow_http},
    )
    print(
        f"# artifact store vs raw obstore {obstore.__version__}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpu; endpoint {endpoint}; median of {repeat}"
    )
    print(f"{'size':>8} {'operation':<34} {'ms':>9} {'MB/s':>8} {'vs raw':>7}")
    for size_mib in sizes_mib:
        _measure(raw, bucket, options, size_mib, repeat, work)


def _measure(raw: object, bucket: str, options: S3Options, size_mib: int, repeat: int, work: Path) -> None:
    import obstore

    source = work / f"blob-{size_mib}.bin"
    source.write_bytes(os.urandom(size_mib << 20))
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    size = source.stat().st_size
    writer = ArtifactStore(work / "writer", max_bytes=1 << 40, remote=ObjectStoreBlobs(f"s3://{bucket}/mp", options))
    reader = ArtifactStore(work / "reader", max_bytes=1 << 40, remote=ObjectStoreBlobs(f"s3://{bucket}/mp", options))
    raw_out = work / "raw.out"

    def raw_put() -> None:
        with source.open("rb") as fh:
            obstore.put(raw, sha, fh, chunk_size=8 << 20)  # type: ignore[arg-type]

    def raw_get() -> None:
        digest = hashlib.sha256()  # a fair baseline: any loader must hash what it downloads
        with raw_out.open("wb") as out:
            for chunk in obstore.get(raw, sha).stream(min_chunk_size=_CHUNK):  # type: ignore[arg-type]
                digest.update(chunk)
                out.write(chunk)

    def evict() -> None:  # both cold paths start without a local copy
        raw_out.unlink(missing_ok=True)
        reader.path_for(sha).unlink(missing_ok=True)

    rows = [
        ("upload: raw obstore put", _median_s(raw_put, repeat), None),
        (
            "upload: modelport put_stream",
            _median_s(lambda: asyncio.run(writer.put_stream(_file_chunks(source))), repeat),
            "upload: raw obstore put",
        ),
        ("cold load: raw get + sha256", _median_s(raw_get, repeat, before=evict), None),
        (
            "cold load: fetch, verify, cache",
            _median_s(lambda: reader.verified_path(sha), repeat, before=evict),
            "cold load: raw get + sha256",
        ),
        ("warm load: re-hash cached copy", _median_s(lambda: reader.verified_path(sha), repeat), None),
    ]
    by_name = {name: seconds for name, seconds, _ in rows}
    for name, seconds, baseline in rows:
        ratio = f"{seconds / by_name[baseline]:.2f}" if baseline else ""
        print(f"{size_mib:>6}Mi {name:<34} {seconds * 1000:>9.1f} {size / seconds / 1e6:>8.0f} {ratio:>7}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--endpoint", help="S3 endpoint (default: start moto's server on loopback)")
    parser.add_argument("--bucket", help="existing bucket (with --endpoint)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mp-store-bench-")))
        if args.endpoint:
            endpoint, bucket = args.endpoint, args.bucket
            options = S3Options(endpoint_url=endpoint, allow_http=endpoint.startswith("http://"))
        else:
            from tests.helpers.s3 import run_s3_server

            server = stack.enter_context(run_s3_server(work / "moto"))
            endpoint, bucket, options = server.endpoint, server.create_bucket("bench"), server.options()
        run(endpoint, bucket, options, args.sizes_mib, args.repeat, work)


if __name__ == "__main__":
    main()
