"""The CPU budget: affinity mask capped by the cgroup quota (v2 and v1), rounded up, never below one; the
engines' default thread count is this worker's share of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.inference.cpu_budget import CpuBudget, cpu_budget, threads_per_engine

AFFINITY = len(os.sched_getaffinity(0))


def _cgroup(tmp_path: Path, *, v2: str | None = None, v1: tuple[str, str] | None = None) -> Path:
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1[0])
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(v1[1])
    return tmp_path


@pytest.mark.parametrize(
    ("v2", "v1", "quota", "cpus"),
    [
        (None, None, None, AFFINITY),
        ("max 100000\n", None, None, AFFINITY),
        ("50000 100000\n", None, 0.5, 1),  # half a CPU still runs one thread
        ("100000 100000\n", None, 1.0, 1),
        ("150000 100000\n", None, 1.5, min(AFFINITY, 2)),
        (None, ("-1", "100000"), None, AFFINITY),
        (None, ("100000", "100000"), 1.0, 1),
    ],
)
def test_quota_caps_the_affinity_mask(
    tmp_path: Path, v2: str | None, v1: tuple[str, str] | None, quota: float | None, cpus: int
) -> None:
    budget = cpu_budget(_cgroup(tmp_path, v2=v2, v1=v1))
    assert budget == CpuBudget(cpus=cpus, affinity=AFFINITY, quota=quota)


def test_threads_are_the_workers_share_unless_configured() -> None:
    four = CpuBudget(cpus=4, affinity=8, quota=4.0)
    assert threads_per_engine(four, workers=1, configured=0) == 4
    assert threads_per_engine(four, workers=2, configured=0) == 2
    assert threads_per_engine(four, workers=8, configured=0) == 1
    assert threads_per_engine(four, workers=1, configured=6) == 6
