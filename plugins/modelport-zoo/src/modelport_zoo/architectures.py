"""Architectures registered under ``modelport.architectures``: ``(**config) -> torch.nn.Module``.

Both take flat ``(batch, features)`` float32 rows, so MNIST-shaped requests (784 floats in [0, 1]) fit
either one, and both return ``(batch, num_classes)`` logits (the service applies softmax/top class).
Each module describes its tensors (``input_spec``/``output_spec``), so a state_dict version of it needs no
declared signature. Configs arrive as JSON, so sequences may be lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from service.plugins import TensorSpec

__all__ = ("CNN", "MLP", "cnn", "mlp")


class _Described(nn.Module):
    """A module that describes its tensors; the specs are invisible to TorchScript and to state_dicts."""

    __jit_ignored_attributes__ = ["input_spec", "output_spec"]
    input_spec: TensorSpec
    output_spec: TensorSpec


class MLP(_Described):
    """Fully connected layers with ReLU (and optional dropout) between them.

    ``(batch, input_dim)`` float32 -> ``(batch, num_classes)`` float32 logits.
    """

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
        """``x``: ``(batch, input_dim)`` float32 -> ``(batch, num_classes)`` logits."""
        return self.net(x)


class CNN(_Described):
    """Two conv(3x3)-ReLU-maxpool(2) blocks and a linear head over a square grey image given flat.

    ``(batch, side*side)`` float32 -> reshaped to ``(batch, 1, side, side)`` -> ``(batch, num_classes)``
    float32 logits. With the defaults (side 28, channels 16/32) it has about 20k parameters.
    """

    def __init__(self, channels: Sequence[int], num_classes: int, side: int, dropout: float) -> None:
        super().__init__()
        first, second = channels
        self.side = side
        self.features = nn.Sequential(
            nn.Conv2d(1, first, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(second * (side // 4) * (side // 4), num_classes)
        self.input_spec = TensorSpec("input", "FP32", (-1, side * side))
        self.output_spec = TensorSpec("logits", "FP32", (-1, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, side*side)`` float32 -> ``(batch, num_classes)`` logits."""
        x = x.reshape(-1, 1, self.side, self.side)
        return self.head(self.dropout(torch.flatten(self.features(x), 1)))


def _positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be a list of integers, got {values!r}")
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {list(values)}")
    return tuple(values)


def _check_common(num_classes: int, dropout: float) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def mlp(input_dim: int = 784, hidden: Sequence[int] = (256,), num_classes: int = 10, dropout: float = 0.0) -> MLP:
    """Multi-layer perceptron over flat inputs: ``(batch, input_dim)`` -> ``(batch, num_classes)`` logits.

    Args:
        input_dim: features per row (784 for 28x28 images).
        hidden: widths of the hidden layers, e.g. ``[256]`` or ``[512, 128]``; ``[]`` gives a linear model.
        num_classes: logits per row.
        dropout: dropout after each hidden ReLU while training (inactive when serving).
    """
    (input_dim,) = _positive_ints("input_dim", (input_dim,))
    _check_common(num_classes, dropout)
    return MLP(input_dim, _positive_ints("hidden", hidden), num_classes, float(dropout))


def cnn(channels: Sequence[int] = (16, 32), num_classes: int = 10, side: int = 28, dropout: float = 0.0) -> CNN:
    """Small conv net over flat ``side*side`` grey images -> ``(batch, num_classes)`` logits.

    Args:
        channels: output channels of the two conv blocks, e.g. ``[8, 16]``.
        num_classes: logits per row.
        side: image side; a positive multiple of 4 (two 2x2 poolings). Inputs are ``side*side`` floats.
        dropout: dropout before the linear head while training.
    """
    pair = _positive_ints("channels", channels)
    if len(pair) != 2:
        raise ValueError(f"channels must be two sizes (one per conv block), got {list(pair)}")
    if not isinstance(side, int) or side <= 0 or side % 4:
        raise ValueError(f"side must be a positive multiple of 4, got {side!r}")
    _check_common(num_classes, dropout)
    return CNN(pair, num_classes, side, float(dropout))
