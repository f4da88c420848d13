"""Tiny real ONNX models, built with ``onnx.helper`` (no torch), and their reference maths in numpy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


@dataclass(frozen=True)
class TinyMLP:
    """``(batch, in_dim)`` float32 -> ReLU hidden -> ``(batch, out)`` logits, written to ``path``."""

    path: Path
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2


def write_mlp(
    path: Path, *, in_dim: int = 16, hidden: int = 8, out: int = 4, batch: int | str = "batch", seed: int = 0
) -> TinyMLP:
    """Write the MLP; ``batch`` is a symbolic dim name (dynamic) or a fixed size."""
    rng = np.random.default_rng(seed)
    mlp = TinyMLP(
        path,
        rng.standard_normal((in_dim, hidden)).astype(np.float32) * 0.3,
        rng.standard_normal(hidden).astype(np.float32) * 0.1,
        rng.standard_normal((hidden, out)).astype(np.float32) * 0.3,
        rng.standard_normal(out).astype(np.float32) * 0.1,
    )
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, in_dim])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, out]),
            helper.make_tensor_value_info("label", TensorProto.INT64, [batch]),
        ],
        initializer=[numpy_helper.from_array(getattr(mlp, n), n) for n in ("w1", "b1", "w2", "b2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return mlp


@pytest.fixture
def mlp(tmp_path: Path) -> TinyMLP:
    return write_mlp(tmp_path / "mlp.onnx")


@pytest.fixture
def make_mlp() -> Callable[..., TinyMLP]:
    """The model writer itself, for tests that need other shapes (test modules cannot import conftest)."""
    return write_mlp
