"""Fake engines and a fake backend for core tests (MLServer ``tests/fixtures.py`` style).

Every engine records the batches it saw (``calls``: one dict of input arrays per ``predict``), so tests can
assert on batch composition with counters instead of timings. All are thread-safe like real engines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from service.plugins.contract import Backend, Engine, LoadRequest, TensorSpec

__all__ = (
    "EchoEngine",
    "FailingEngine",
    "FakeBackend",
    "RecordingEngine",
    "SlowEngine",
    "SumEngine",
)


class RecordingEngine(Engine):
    """Base: fixed signature, records every batch; subclasses implement :meth:`compute`."""

    platform: ClassVar[str] = "fake"

    def __init__(
        self,
        inputs: tuple[TensorSpec, ...] = (TensorSpec("input", "FP32", (-1, 4)),),
        outputs: tuple[TensorSpec, ...] = (TensorSpec("output", "FP32", (-1, 4)),),
    ) -> None:
        self._inputs = inputs
        self._outputs = outputs
        self._lock = threading.Lock()
        self.calls: list[dict[str, np.ndarray]] = []
        self.closed = False

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def batch_sizes(self) -> list[int]:
        """Rows of every batch seen so far, in call order."""
        with self._lock:
            return [next(iter(call.values())).shape[0] for call in self.calls]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            self.calls.append({name: np.array(array, copy=True) for name, array in inputs.items()})
        return self.compute(inputs)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


class EchoEngine(RecordingEngine):
    """Identity: each output ``i`` is input ``i`` unchanged (``(batch, *dims)`` -> same)."""

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {out.name: inputs[inp.name] for inp, out in zip(self.inputs, self.outputs, strict=False)}


class SumEngine(RecordingEngine):
    """Row sums: ``(batch, n)`` -> ``(batch, 1)`` under the first output's name, in the input's dtype."""

    def __init__(self, width: int = 4) -> None:
        super().__init__(
            (TensorSpec("input", "FP32", (-1, width)),),
            (TensorSpec("sum", "FP32", (-1, 1)),),
        )

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        array = inputs[self.inputs[0].name]
        return {"sum": array.sum(axis=1, keepdims=True).astype(array.dtype)}


class SlowEngine(EchoEngine):
    """Echo that blocks inside ``predict`` until ``release()``; ``entered`` counts calls that blocked.

    Use it to hold a worker busy deterministically: ``await wait_until(lambda: engine.entered == 1)``,
    queue more requests, then ``engine.release()``. ``block_when(inputs)`` picks which batches block
    (default: all), e.g. only those holding a marker value.
    """

    def __init__(
        self,
        *args: Any,
        block_when: Callable[[dict[str, np.ndarray]], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.block_when = block_when or (lambda _inputs: True)
        self.entered = 0
        self._entered_lock = threading.Lock()

    def release(self) -> None:
        self.gate.set()

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.block_when(inputs):
            with self._entered_lock:
                self.entered += 1
            if not self.gate.wait(timeout=30):
                raise TimeoutError("SlowEngine was never released")
        return super().compute(inputs)


class FailingEngine(SlowEngine):
    """Echo that raises ``error`` when ``should_fail(inputs)`` (default: always); never blocks unless given
    ``block_when``.

    ``FailingEngine(should_fail=lambda x: (x["input"] < 0).any())`` fails only batches holding a negative
    value: a "poisoned" request in a batch.
    """

    def __init__(
        self,
        *args: Any,
        should_fail: Callable[[dict[str, np.ndarray]], bool] | None = None,
        error: Exception | None = None,
        block_when: Callable[[dict[str, np.ndarray]], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, block_when=block_when or (lambda _inputs: False), **kwargs)
        self.should_fail = should_fail or (lambda _inputs: True)
        self.error = error or RuntimeError("engine exploded")

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = super().compute(inputs)
        if self.should_fail(inputs):
            raise self.error
        return result


class FakeBackend(Backend):
    """Loads nothing: returns ``engine_factory()`` (an :class:`EchoEngine` by default) for any request."""

    formats: ClassVar[tuple[Any, ...]] = ("onnx",)
    description: ClassVar[str] = "fake backend for tests"

    def __init__(self, engine_factory: Callable[[], Engine] | None = None) -> None:
        self.engine_factory = engine_factory or EchoEngine
        self.requests: list[LoadRequest] = []

    def load(self, request: LoadRequest) -> Engine:
        self.requests.append(request)
        return self.engine_factory()
