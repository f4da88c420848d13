"""Request examples for the OpenAPI document, shaped for the demo model (``digits``: ``(batch, 784) FP32``).

An example that the demo refuses teaches a newcomer the wrong shape, so these are one real-looking 28x28 image
(a hand-drawn "1": a vertical stroke, pixel intensities in [0, 1], row-major) and the bodies that carry it. A test
sends each to ``serve --demo`` and expects 200.
"""

from __future__ import annotations

from typing import Any

__all__ = ("DIGIT_ONE", "INFER_EXAMPLE", "PREDICT_EXAMPLE")

_SIDE = 28


def _stroke(row: int, col: int) -> float:
    if not 4 <= row <= 23:
        return 0.0
    return {12: 0.5, 13: 1.0, 14: 1.0, 15: 0.5}.get(col, 0.0)


DIGIT_ONE: list[float] = [_stroke(r, c) for r in range(_SIDE) for c in range(_SIDE)]
"""``(784,) float32`` values: one instance for the demo model."""

PREDICT_EXAMPLE: dict[str, Any] = {"inputs": [DIGIT_ONE]}
"""``POST /v1/models/digits/predict``: a batch of one instance (the input without its batch dimension)."""

INFER_EXAMPLE: dict[str, Any] = {
    "id": "req-42",
    "inputs": [{"name": "input", "shape": [1, _SIDE * _SIDE], "datatype": "FP32", "data": DIGIT_ONE}],
}
"""``POST /v2/models/digits/infer``: the same image as a V2 tensor, batch dimension first."""
