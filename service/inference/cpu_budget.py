"""How many CPUs this process may really use: its affinity mask and its cgroup CPU quota, not the machine's cores.

Runtimes size their thread pools from ``os.cpu_count()``: pinned by ``taskset``, or in a container whose quota is
smaller than the node (Kubernetes ``limits.cpu: 1`` on a 64-core node), those threads and their spinning fight
the event loop for the one core there is. The engines' default thread counts come from here instead.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ("CpuBudget", "cpu_budget", "engine_threads", "process_cpu_budget", "threads_per_engine")

_CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class CpuBudget:
    """The CPUs available to this process and what limited them."""

    cpus: int
    affinity: int
    """CPUs in the scheduler affinity mask."""
    quota: float | None
    """The cgroup CPU quota in CPUs (None: no quota)."""


def _quota_v2(root: Path) -> float | None:
    try:
        limit, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if limit == "max" else int(limit) / int(period)


def _quota_v1(root: Path) -> float | None:
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def cpu_budget(cgroup_root: Path = _CGROUP) -> CpuBudget:
    """The affinity mask, capped by the cgroup quota (v2 ``cpu.max``, else v1 CFS) rounded up, at least 1."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        affinity = os.cpu_count() or 1
    quota = _quota_v2(cgroup_root)
    if quota is None:
        quota = _quota_v1(cgroup_root)
    cpus = affinity if quota is None else min(affinity, max(1, math.ceil(quota)))
    return CpuBudget(cpus=max(1, cpus), affinity=affinity, quota=quota)


def threads_per_engine(budget: CpuBudget, *, workers: int, configured: int) -> int:
    """Intra-op threads for one engine: the configured number, else this worker's share of the budget."""
    if configured > 0:
        return configured
    return max(1, budget.cpus // max(1, workers))


@functools.cache
def process_cpu_budget() -> CpuBudget:
    """This process's budget, read once (affinity and quota do not change under a running server)."""
    return cpu_budget()


def engine_threads(*, workers: int, configured: int) -> int:
    """Intra-op threads each engine of this process gets (:func:`threads_per_engine` on the process budget)."""
    return threads_per_engine(process_cpu_budget(), workers=workers, configured=configured)
