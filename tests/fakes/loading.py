"""A fake loader for the engine pool and routing tests: counts loads, can be held at a gate or made to fail."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np

from registry_db.records import VersionRecord
from service.inference.loader import LoadedArtifact
from service.plugins import Engine, TensorSpec

__all__ = ("CountingLoader", "Doubler", "record")


class Doubler(Engine):
    platform = "fake"

    def __init__(self) -> None:
        self.closed = False

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("x", "FP32", (-1, 2)),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("y", "FP32", (-1, 2)),)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * 2}

    def close(self) -> None:
        self.closed = True


def record(version: str, sha: str = "ab" * 32) -> VersionRecord:
    now = datetime.now(UTC)
    return VersionRecord(
        "m", version, int(version), "fake", None, {}, sha, 1, "x", {}, None, None, {}, "active", now, "t"
    )


class CountingLoader:
    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[str] = []
        self.engines: list[Doubler] = []
        self.fail = fail or {}
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        """Set once a load has started (the loader runs in a worker thread)."""

    def __call__(self, **kwargs: Any) -> LoadedArtifact:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append(kwargs["sha256"])
        if kwargs["sha256"] in self.fail:
            raise self.fail[kwargs["sha256"]]
        engine = Doubler()
        self.engines.append(engine)
        return LoadedArtifact(engine, 0.0, 0.0)
