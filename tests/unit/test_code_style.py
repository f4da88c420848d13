"""The repository's own style gates, in the suite so CI enforces them: ruff, black (line length 120) and mypy on
the shipped sources (service, registry_db, the plugins, benchmarks and the test helpers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPED = ["service", "registry_db", "benchmarks", "tests/helpers", *sorted(str(p) for p in ROOT.glob("plugins/*/src"))]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("tool", [("ruff", "check", "--no-cache", "."), ("black", "--check", "--quiet", ".")])
def test_lint_clean(tool: tuple[str, ...]) -> None:
    result = _run(*tool)
    assert result.returncode == 0, f"{' '.join(tool)}:\n{result.stdout}\n{result.stderr}"


def test_sources_type_check(tmp_path: Path) -> None:
    result = _run("mypy", "--cache-dir", str(tmp_path / "mypy-cache"), *[p.replace(f"{ROOT}/", "") for p in TYPED])
    assert result.returncode == 0, f"mypy:\n{result.stdout}\n{result.stderr}"
