"""Drive one load run with ``wrk`` (preferred) or :mod:`benchmarks.pyload`, pinned to its own core.

Both print ``BENCH_RESULT {json}``; :func:`parse_result` turns that line into a :class:`LoadStats`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._procs import pinned

__all__ = ("LoadGenerator", "LoadStats", "parse_result", "WRK_SCRIPT")

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"
_MARKER = "BENCH_RESULT "


@dataclass(frozen=True)
class LoadStats:
    """One measured load run. Latencies in milliseconds; ``errors`` = non-2xx plus socket errors."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors_status: int
    errors_socket: int
    errors_timeout: int

    @property
    def errors(self) -> int:
        return self.errors_status + self.errors_socket + self.errors_timeout

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "errors": self.errors}


def parse_result(output: str) -> LoadStats:
    """Parse the last ``BENCH_RESULT {json}`` line of wrk/pyload output; ValueError when there is none."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith(_MARKER):
            raw = json.loads(line[len(_MARKER) :])
            break
    else:
        raise ValueError(f"no {_MARKER.strip()} line in load generator output:\n{output[-2000:]}")
    return LoadStats(
        requests=int(raw["requests"]),
        duration_s=float(raw["duration_s"]),
        rps=float(raw["rps"]),
        p50_ms=raw["p50_us"] / 1000.0,
        p90_ms=raw["p90_us"] / 1000.0,
        p99_ms=raw["p99_us"] / 1000.0,
        max_ms=raw["max_us"] / 1000.0,
        mean_ms=float(raw["mean_us"]) / 1000.0,
        errors_status=int(raw["errors_status"]),
        errors_socket=int(raw["errors_connect"]) + int(raw["errors_read"]) + int(raw["errors_write"]),
        errors_timeout=int(raw["errors_timeout"]),
    )


@dataclass(frozen=True)
class LoadGenerator:
    """Which tool drives the load and on which CPU."""

    kind: str  # "wrk" | "python"
    cpu: int = 1
    timeout_s: float = 10.0

    @classmethod
    def detect(cls, prefer: str = "auto", cpu: int = 1) -> LoadGenerator:
        """wrk when installed (or asked for), else the Python closed-loop client."""
        if prefer == "python" or (prefer == "auto" and shutil.which("wrk") is None):
            return cls("python", cpu)
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk requested but not on PATH (apt-get install wrk), or use --loadgen python")
        return cls("wrk", cpu)

    def describe(self) -> str:
        if self.kind == "wrk":
            try:
                proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
                return (proc.stdout + proc.stderr).splitlines()[0].strip()
            except (OSError, IndexError, subprocess.SubprocessError):
                return "wrk"
        return f"benchmarks.pyload (Python {sys.version.split()[0]})"

    def command(
        self, url: str, body_file: Path, headers: Sequence[str], connections: int, duration: float
    ) -> list[str]:
        """The pinned argv for one run."""
        seconds = max(1, round(duration))
        if self.kind == "wrk":
            argv = [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                f"--timeout={self.timeout_s:g}s",
                "-s",
                str(WRK_SCRIPT),
                url,
                "--",
                str(body_file),
                *headers,
            ]
        else:
            argv = [
                sys.executable,
                "-m",
                "benchmarks.pyload",
                url,
                "--body",
                str(body_file),
                "-c",
                str(connections),
                "-d",
                str(seconds),
                "--timeout",
                f"{self.timeout_s:g}",
            ]
            for header in headers:
                argv += ["--header", header]
        return pinned(self.cpu, argv)

    def run(
        self, url: str, body_file: Path, headers: Sequence[str], connections: int, duration: float, cwd: Path
    ) -> LoadStats:
        """Run one load to completion and return its stats; raises RuntimeError with the output on failure."""
        argv = self.command(url, body_file, headers, connections, duration)
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=duration + 60)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"load generator exited {proc.returncode}: {' '.join(argv)}\n{output[-2000:]}")
        return parse_result(output)
