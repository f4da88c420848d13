"""Tiny real ONNX models built with onnx.helper (no torch needed), plus their weights for reference maths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass(frozen=True)
class MLPWeights:
    w1: np.ndarray  # (in_dim, hidden) float32
    b1: np.ndarray  # (hidden,) float32
    w2: np.ndarray  # (hidden, out) float32
    b2: np.ndarray  # (out,) float32

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(batch, in_dim) float32 -> (batch, out) float32 logits."""
        return np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2


def make_mlp_onnx(
    path: Path,
    *,
    in_dim: int = 784,
    hidden: int = 32,
    out: int = 10,
    seed: int = 0,
    input_name: str = "input",
    output_name: str = "logits",
    bias_shift: float = 0.0,
) -> MLPWeights:
    """Write a (batch, in_dim) -> (batch, out) ReLU MLP with a dynamic batch dim to ``path``."""
    rng = np.random.default_rng(seed)
    weights = MLPWeights(
        (rng.standard_normal((in_dim, hidden)) * 0.05).astype(np.float32),
        (rng.standard_normal(hidden) * 0.01).astype(np.float32),
        (rng.standard_normal((hidden, out)) * 0.1).astype(np.float32),
        (rng.standard_normal(out) * 0.01 + bias_shift).astype(np.float32),
    )
    inits = [
        numpy_helper.from_array(weights.w1, "w1"),
        numpy_helper.from_array(weights.b1, "b1"),
        numpy_helper.from_array(weights.w2, "w2"),
        numpy_helper.from_array(weights.b2, "b2"),
    ]
    nodes = [
        helper.make_node("MatMul", [input_name, "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return weights


def make_image_onnx(path: Path, *, shape: tuple[int, int, int] = (3, 224, 224)) -> None:
    """(batch, C, H, W) float32 -> (batch, C) mean over H, W: a large-input model for binary-vs-JSON tests."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0)],
        "image_mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", shape[0]])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def make_flaky_onnx(path: Path, *, in_dim: int = 4, out: int = 3, fail_above: float = 0.8416, seed: int = 0) -> None:
    """A (batch, in_dim) -> (batch, out) linear model that fails at run time on rows whose first feature exceeds
    ``fail_above`` (a Gather out of bounds): for standard-normal inputs, 20 % of rows by default. Zeros pass,
    so it registers."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((in_dim, out)) * 0.1).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([fail_above], np.float32), "threshold"),
        numpy_helper.from_array(np.array(10, np.int64), "ten"),
        numpy_helper.from_array(np.zeros(3, np.float32), "table"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["scores"]),
        helper.make_node("Slice", ["x", "zero", "one", "one"], ["first"]),
        helper.make_node("Greater", ["first", "threshold"], ["bad"]),
        helper.make_node("Cast", ["bad"], ["bad_i"], to=TensorProto.INT64),
        helper.make_node("Mul", ["bad_i", "ten"], ["index"]),
        helper.make_node("Gather", ["table", "index"], ["offset"], axis=0),
        helper.make_node("Add", ["scores", "offset"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "flaky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def make_simple_onnx(path: Path) -> None:
    """Triton's ``simple`` shape: INPUT0, INPUT1 ``(batch, 16) int32`` -> OUTPUT0 = sum, OUTPUT1 = difference."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", 16]) for name in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", 16]) for name in ("OUTPUT0", "OUTPUT1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def make_string_echo_onnx(path: Path) -> None:
    """TEXT ``(batch, n) BYTES`` -> ECHO, the same strings (Identity): BYTES round trips."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["TEXT"], ["ECHO"])],
        "echo",
        [helper.make_tensor_value_info("TEXT", TensorProto.STRING, ["batch", "n"])],
        [helper.make_tensor_value_info("ECHO", TensorProto.STRING, ["batch", "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
