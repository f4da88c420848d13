"""Architectures registered under ``modelport.architectures``: ``(**config) -> torch.nn.Module``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from service.plugins import TensorSpec

__all__ = ("cnn", "mlp")


class _Described(nn.Module):
    """A module that describes its tensors (``input_spec``/``output_spec``), invisible to TorchScript."""

    __jit_ignored_attributes__ = ["input_spec", "output_spec"]


class MLP(_Described):
    """``(batch, input_dim)`` float32 -> ``(batch, num_classes)`` logits."""

    def __init__(self, input_dim: int, hidden: Sequence[int], num_classes: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        self.input_spec = TensorSpec("input", "FP32", (-1, input_dim))
        self.output_spec = TensorSpec("logits", "FP32", (-1, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(_Described):
    """``(batch, side*side)`` float32 -> reshaped to ``(batch, 1, side, side)`` -> ``(batch, num_classes)``."""

    def __init__(self, channels: Sequence[int], num_classes: int, side: int) -> None:
        super().__init__()
        c1, c2 = channels
        self.side = side
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(c2 * (side // 4) * (side // 4), num_classes)
        self.input_spec = TensorSpec("input", "FP32", (-1, side * side))
        self.output_spec = TensorSpec("logits", "FP32", (-1, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, self.side, self.side)
        return self.head(torch.flatten(self.features(x), 1))


def mlp(input_dim: int = 784, hidden: Sequence[int] = (256,), num_classes: int = 10, dropout: float = 0.0) -> MLP:
    """Multi-layer perceptron over flat inputs (ReLU between layers)."""
    if input_dim <= 0 or num_classes <= 1 or any(h <= 0 for h in hidden) or not 0 <= dropout < 1:
        raise ValueError("mlp: input_dim > 0, num_classes > 1, hidden sizes > 0, 0 <= dropout < 1")
    return MLP(input_dim, tuple(hidden), num_classes, dropout)


def cnn(channels: Sequence[int] = (16, 32), num_classes: int = 10, side: int = 28) -> CNN:
    """Two conv-ReLU-maxpool blocks and a linear head over flat ``side*side`` grey images."""
    if len(channels) != 2 or side % 4 or side <= 0:
        raise ValueError("cnn: channels must be two sizes and side a positive multiple of 4")
    return CNN(tuple(channels), num_classes, side)
