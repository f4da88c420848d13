"""Server processes for the benchmark: start pinned to a core, wait for readiness, measure RSS, always stop.

RSS comes from ``/proc`` (psutil is optional and not needed): the server may fork (granian's workers,
uvicorn's reloader), so memory is summed over the whole process tree rooted at the started process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = (
    "ManagedServer",
    "ProcessRegistry",
    "free_port",
    "pinned",
    "tree_pids",
    "tree_rss_kb",
    "tree_hwm_kb",
    "cpu_busy",
    "wait_quiet",
    "Interference",
    "tree_cpu_seconds",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int | Sequence[int], argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed with ``taskset -c CPUS`` (one CPU or a list) when taskset exists and every CPU is
    ours, else unchanged."""
    cpus = [cpu] if isinstance(cpu, int) else list(cpu)
    taskset = shutil.which("taskset")
    if taskset is None or not cpus or not set(cpus) <= os.sched_getaffinity(0):
        return list(argv)
    return [taskset, "-c", ",".join(str(c) for c in cpus), *argv]


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        rest = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry)] = int(rest[1])
    return parents


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in parents or pid == root:
            found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_rss_kb(root: int) -> int:
    """Current resident memory of the process tree, in KiB (shared pages counted once per process)."""
    return sum(_status_kb(pid, "VmRSS") for pid in tree_pids(root))


def tree_hwm_kb(root: int) -> int:
    """Sum of each live process's peak RSS (VmHWM), KiB: exact for one process, an upper bound for a tree."""
    return sum(_status_kb(pid, "VmHWM") for pid in tree_pids(root))


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(fields), fields[3] + fields[4]  # total, idle + iowait


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of the machine's CPU time (all cores) spent busy over the next ``seconds``."""
    total0, idle0 = _cpu_times()
    time.sleep(seconds)
    total1, idle1 = _cpu_times()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(max_wait: float, *, threshold: float = 0.15) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) until the machine is below ``threshold`` busy: other work on a shared
    machine skews a single-core benchmark. Returns (last busy fraction, seconds waited)."""
    started = time.monotonic()
    busy = cpu_busy(1.0)
    while busy > threshold and time.monotonic() - started < max_wait:
        busy = cpu_busy(2.0)
    return busy, time.monotonic() - started


def _core_busy_ticks(cpu: int) -> int:
    prefix = f"cpu{cpu} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            fields = [int(v) for v in line.split()[1:9]]
            return sum(fields) - fields[3] - fields[4]
    return 0


def _tree_cpu_ticks(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        total += int(rest[11]) + int(rest[12])  # utime + stime, all threads
    return total


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system, every thread) used so far by the live processes of ``root``'s tree, seconds."""
    return _tree_cpu_ticks(root) / os.sysconf("SC_CLK_TCK")


class Interference:
    """How much of the server's core went to anything but the server while a load ran.

    Reads the core's busy ticks and the server tree's CPU ticks before and after; what the core did
    beyond the server is other work on a shared machine (or the kernel on its behalf: softirqs land there
    too, so a few percent is normal). Use as ``with Interference(cpu, pid) as probe: ...; probe.foreign``.
    """

    def __init__(self, cpu: int, server_pid: int) -> None:
        self.cpu, self.pid = cpu, server_pid
        self.foreign: float | None = None
        self.server: float | None = None

    def __enter__(self) -> Interference:
        self._t0 = time.monotonic()
        self._core0, self._server0 = _core_busy_ticks(self.cpu), _tree_cpu_ticks(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        ticks = os.sysconf("SC_CLK_TCK") * max(1e-6, time.monotonic() - self._t0)
        core, server = _core_busy_ticks(self.cpu) - self._core0, _tree_cpu_ticks(self.pid) - self._server0
        self.server = round(server / ticks, 3)
        self.foreign = round(max(0.0, core - server) / ticks, 3)


@dataclass
class ManagedServer:
    """One server under test: its process (own session/process group), URL and log file."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    peak_rss_kb: int = 0
    grpc_port: int = 0
    """The server's gRPC port, when it serves gRPC (0: none)."""

    def sample_peak(self) -> int:
        """Refresh and return the peak RSS (KiB) seen for this server's tree so far."""
        if self.process.poll() is None:
            self.peak_rss_kb = max(self.peak_rss_kb, tree_hwm_kb(self.process.pid), tree_rss_kb(self.process.pid))
        return self.peak_rss_kb

    def rss_kb(self) -> int:
        return tree_rss_kb(self.process.pid) if self.process.poll() is None else 0

    def logs(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_ready(self, path: str, timeout: float = 120.0) -> None:
        """Poll ``GET path`` until 200; raise with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode} before ready:\n{self.logs()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(path).status_code == 200:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s:\n{self.logs()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited in ``timeout`` seconds."""
        if self.process.poll() is None:
            self.sample_peak()
        pgid = self.process.pid  # started with start_new_session=True: its pid is its group id
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if self.process.poll() is not None and not _group_alive(pgid):
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
            end = time.monotonic() + 2.0
            while _group_alive(pgid) and time.monotonic() < end:
                time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ProcessRegistry:
    """Every server this run started, so that a ``finally`` can stop them all, whatever went wrong."""

    servers: list[ManagedServer] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path,
        cpu: int | Sequence[int] = 0,
    ) -> ManagedServer:
        """Start ``argv`` pinned to ``cpu`` (one CPU or several) in its own session, stdout/stderr to
        ``log_dir/<name>.log``."""
        log_path = log_dir / f"{name}-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                pinned(cpu, argv),
                env=dict(env),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = ManagedServer(name, f"http://127.0.0.1:{port}", process, log_path)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().stop()
