"""What a call predicted, per instance: the class label or the value that an outcome is later compared with.

The version's postprocessor decides when it ran (the predict route's ``predictions``); otherwise the first
output in signature order is read the way classifiers and regressors are read by convention: scores of shape
``(batch, classes)`` with more than one class -> the arg-max index as a label; one value per instance -> that
value. Anything else (sequences, images, strings of several elements) has no single prediction and is not
logged: such calls still count in the statistics, but cannot receive ``truth`` feedback (``reward`` works).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.inference.dataplane import InferResult

__all__ = ("MAX_LOGGED_INSTANCES", "Prediction", "predicted")

Prediction = str | float | None
"""A label, a finite value, or None (a non-finite output: not comparable with any truth)."""

MAX_LOGGED_INSTANCES = 256
"""Instances per call whose predictions are kept (a larger batch logs its first ones only)."""


def _value(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _scalar(value: Any) -> Prediction:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str | np.str_):
        return str(value)
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, np.integer):
        return str(int(value))
    return _value(float(value))


def predicted(result: InferResult) -> list[Prediction] | None:
    """Per instance (at most :data:`MAX_LOGGED_INSTANCES`), the label (str) or value (float) predicted."""
    post = result.postprocessed
    if post is not None and post.labels:
        return [str(label) for label in post.labels[:MAX_LOGGED_INSTANCES]]
    if not result.outputs:
        return None
    outputs = result.outputs
    array = None
    for spec in result.output_specs:  # the first in signature order (a loop: cheaper than a generator here)
        array = outputs.get(spec.name)
        if array is not None:
            break
    if array is None:
        array = next(iter(outputs.values()))
    shape = array.shape
    if not shape or shape[0] == 0:
        return None
    if shape[0] > MAX_LOGGED_INSTANCES:
        array = array[:MAX_LOGGED_INSTANCES]
        shape = array.shape
    kind = array.dtype.kind
    if len(shape) == 2 and shape[1] > 1 and kind == "f":
        # methods, not np.argmax: numpy's function wrappers cost more than the work on a (1, classes) row
        return [str(i) for i in array.argmax(axis=1).tolist()]
    rows = array
    per_row = math.prod(shape[1:])
    if per_row == 1:
        flat = rows.reshape(rows.shape[0])
        if kind == "f":
            return [_value(float(v)) for v in flat]
        return [_scalar(v) for v in flat]
    return None
