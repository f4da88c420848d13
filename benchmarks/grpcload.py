"""Unary gRPC ModelInfer load with ``h2load`` (Debian's ``nghttp2-client``), a C client that costs little per call.

The request is one pre-serialised ``ModelInferRequest`` (raw input contents, as tritonclient sends) framed as a
gRPC message (1 flag byte, 4-byte big-endian length) and POSTed with ``content-type: application/grpc``. h2load
only sees HTTP statuses, and gRPC failures travel in trailers with status 200, so each run is checked against
the server's own counters: every call the server did not answer OK (``modelport_requests_total`` for route
``grpc_infer`` with a status other than 200) is counted as an error row-side. Connections: up to 16, each
multiplexing the rest of the concurrency as HTTP/2 streams, as gRPC clients share channels.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import httpx
import numpy as np

from benchmarks._procs import pinned
from benchmarks.loadgen import LoadStats
from benchmarks.pyload import percentile

__all__ = ("GRPC_PATH", "check_grpc", "grpc_errors", "grpc_infer_body", "run_h2load")

GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
_MAX_CONNECTIONS = 16
_SERVER_ERRORS = re.compile(r'^modelport_requests_total\{[^}]*route="grpc_infer"[^}]*status="(\d+)"[^}]*\} (\S+)$')


def grpc_infer_body(model: str, input_name: str, x: np.ndarray) -> bytes:
    """A framed ``ModelInferRequest`` for ``x`` ``(batch, ...) float32`` as raw input contents."""
    from tritonclient.grpc import service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model, id="bench")
    request.inputs.add(name=input_name, datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype="<f4").tobytes())
    message = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(message)) + message


def check_grpc(target: str, body_file: Path) -> str:
    """One call with a real gRPC client before the load; the served version, or RuntimeError saying why."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    message = body_file.read_bytes()[5:]
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(GRPC_PATH, response_deserializer=pb.ModelInferResponse.FromString)
        try:
            response = call(message, timeout=60)
        except grpc.RpcError as exc:
            raise RuntimeError(f"sanity gRPC call to {target} failed: {exc.code()} {exc.details()}") from None
    if not response.raw_output_contents:
        raise RuntimeError(f"gRPC call to {target} answered without raw output contents")
    return str(response.model_version)


def grpc_errors(base_url: str) -> int:
    """Calls on route ``grpc_infer`` the server answered with anything but OK, so far (from /metrics)."""
    total = 0.0
    for line in httpx.get(f"{base_url}/metrics", timeout=30).text.splitlines():
        match = _SERVER_ERRORS.match(line)
        if match and match.group(1) != "200":
            total += float(match.group(2))
    return int(total)


def run_h2load(target: str, body_file: Path, concurrency: int, duration: float, *, cpu: int) -> LoadStats:
    """Drive ``target`` (``host:port``) for ``duration`` s with ``concurrency`` calls in flight; h2load pinned."""
    if shutil.which("h2load") is None:
        raise RuntimeError("h2load is not installed: apt-get install nghttp2-client")
    connections = min(concurrency, _MAX_CONNECTIONS)
    streams = math.ceil(concurrency / connections)
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "requests.tsv"
        argv = [
            "h2load",
            f"http://{target}{GRPC_PATH}",
            "-c",
            str(connections),
            "-m",
            str(streams),
            "-t",
            "1",
            "-D",
            str(max(1, round(duration))),
            "-d",
            str(body_file),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log}",
        ]
        proc = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=duration + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"h2load exited {proc.returncode}: {proc.stdout[-1500:]}{proc.stderr[-500:]}")
        latencies: list[float] = []
        failed = 0
        for line in log.read_text().splitlines():
            _, status, elapsed_us = line.split("\t")[:3]
            if status == "200":
                latencies.append(int(elapsed_us) / 1e6)
            else:
                failed += 1
    match = re.search(r"finished in ([\d.]+)(m?s)", proc.stdout)
    seconds = float(match.group(1)) / (1000.0 if match and match.group(2) == "ms" else 1.0) if match else duration
    socket_errors = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", proc.stdout)
    lat = sorted(latencies)
    return LoadStats(
        requests=len(lat),
        duration_s=seconds,
        rps=len(lat) / seconds if seconds else 0.0,
        p50_ms=percentile(lat, 50) * 1000.0,
        p90_ms=percentile(lat, 90) * 1000.0,
        p99_ms=percentile(lat, 99) * 1000.0,
        max_ms=(lat[-1] if lat else 0.0) * 1000.0,
        mean_ms=(sum(lat) / len(lat) if lat else 0.0) * 1000.0,
        errors_status=failed,
        errors_socket=int(socket_errors.group(2)) if socket_errors else 0,
        errors_timeout=int(socket_errors.group(3)) if socket_errors else 0,
    )
