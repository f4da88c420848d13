"""Inputs vs a version's signature: names, datatypes, shapes (``-1`` dims), batch cap, finite values.

An :class:`InputValidator` is built once per loaded version from the engine's input specs, with every rule
precomputed, and then checks each request before it reaches the batcher. Every refusal is an
:class:`~service.errors.InvalidInput` whose message says what was expected and what came, e.g.
``input 'input': expected shape [-1, 784], got [1, 783]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.plugins.contract import TensorSpec

__all__ = ("InputValidator",)


class _Rule:
    """Precomputed checks for one input."""

    __slots__ = ("batched", "datatype", "dtype", "fixed", "is_float", "name", "ndim", "shape", "text")

    def __init__(self, spec: TensorSpec) -> None:
        self.name = spec.name
        self.datatype = spec.datatype
        self.dtype = spec.dtype
        self.shape = list(spec.shape)
        self.ndim = len(spec.shape)
        self.fixed = tuple((axis, dim) for axis, dim in enumerate(spec.shape) if dim >= 0)
        self.batched = self.ndim > 0 and spec.shape[0] < 0
        self.is_float = self.dtype.kind == "f"
        self.text = self.dtype.kind == "O"


class InputValidator:
    """Checks request tensors against one version's input signature.

    Build with :meth:`from_specs` when the version loads; call :meth:`validate` once per request (on the
    event loop: it is cheap and never blocks).
    """

    __slots__ = ("_max_batch_size", "_names", "_rules", "_single", "batchable")

    def __init__(self, rules: tuple[_Rule, ...], max_batch_size: int) -> None:
        self._rules = {rule.name: rule for rule in rules}
        self._names = tuple(rule.name for rule in rules)
        self._single = rules[0] if len(rules) == 1 else None
        self._max_batch_size = max_batch_size
        self.batchable = bool(rules) and all(rule.batched for rule in rules)
        """Whether every input has a dynamic batch dimension, so requests may be stacked into batches.

        When False the engine pool should give the batcher ``max_batch_size=1``."""

    @classmethod
    def from_specs(cls, inputs: tuple[TensorSpec, ...], max_batch_size: int) -> InputValidator:
        """Precompute the rules for ``inputs`` (batch dim first, ``-1`` dynamic); ``max_batch_size`` caps rows."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        return cls(tuple(_Rule(spec) for spec in inputs), max_batch_size)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._names

    def validate(self, tensors: Sequence[Any] | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check one request's inputs; return ``{name: array}`` in signature order.

        Args:
            tensors: decoded tensors (``(name, datatype, shape, array)`` tuples such as
                :class:`service.codecs.v2.DecodedTensor`), or a mapping ``name -> array`` whose dtypes are
                then checked instead of declared datatypes.

        Raises:
            InvalidInput: unknown/missing/duplicate name, wrong datatype, shape, batch size or a NaN/inf.
        """
        items: list[tuple[str, str | None, Any]]
        if isinstance(tensors, Mapping):
            items = [(name, None, array) for name, array in tensors.items()]
        else:
            items = [(t[0], t[1], t[3]) for t in tensors]
        single = self._single
        if single is not None and len(items) == 1 and items[0][0] == single.name:
            name, datatype, array = items[0]
            self._check(single, datatype, array)
            return {name: array}
        return self._validate_many(items)

    def _validate_many(self, items: list[tuple[str, str | None, Any]]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        rows: int | None = None
        first: str | None = None
        for name, datatype, array in items:
            rule = self._rules.get(name)
            if rule is None:
                raise InvalidInput(f"unexpected input '{name}': the model's inputs are {list(self._names)}")
            if name in found:
                raise InvalidInput(f"input '{name}' appears more than once")
            self._check(rule, datatype, array)
            found[name] = array
            if rule.ndim:
                if rows is None:
                    rows, first = array.shape[0], name
                elif array.shape[0] != rows:
                    raise InvalidInput(
                        f"inputs must have the same batch size: '{first}' has {rows} rows, '{name}' has "
                        f"{array.shape[0]}"
                    )
        if len(found) != len(self._names):
            missing = [name for name in self._names if name not in found]
            raise InvalidInput(
                f"missing input{'s' if len(missing) > 1 else ''} {missing}: the model takes " f"{list(self._names)}"
            )
        return {name: found[name] for name in self._names}

    def _check(self, rule: _Rule, datatype: str | None, array: Any) -> None:
        name = rule.name
        if not isinstance(array, np.ndarray):
            raise InvalidInput(f"input '{name}': expected an array, got {type(array).__name__}")
        if datatype is not None:
            if datatype != rule.datatype:
                raise InvalidInput(f"input '{name}': expected datatype {rule.datatype}, got {datatype}")
        elif array.dtype != rule.dtype and not (rule.text and array.dtype.kind in "OSU"):
            raise InvalidInput(f"input '{name}': expected datatype {rule.datatype}, got numpy {array.dtype}")
        shape = array.shape
        if len(shape) != rule.ndim:
            raise InvalidInput(f"input '{name}': expected shape {rule.shape}, got {list(shape)}")
        for axis, dim in rule.fixed:
            if shape[axis] != dim:
                raise InvalidInput(f"input '{name}': expected shape {rule.shape}, got {list(shape)}")
        if rule.batched:
            rows = shape[0]
            if rows < 1:
                raise InvalidInput(f"input '{name}': the batch dimension must be at least 1, got shape {list(shape)}")
            if rows > self._max_batch_size:
                raise InvalidInput(
                    f"input '{name}': batch of {rows} rows exceeds the maximum batch size {self._max_batch_size}"
                )
        if rule.is_float and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise InvalidInput(f"input '{name}': {bad} value{'s are' if bad > 1 else ' is'} NaN or infinite")
