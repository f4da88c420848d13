"""Entry-point targets that import torch only when an architecture is built (discovery must stay light)."""

from __future__ import annotations

from typing import Any

__all__ = ("cnn", "mlp")


def mlp(**config: Any) -> Any:
    """Multi-layer perceptron over flat inputs: ``(batch, input_dim)`` -> ``(batch, num_classes)`` logits."""
    from modelport_zoo.architectures import mlp as build

    return build(**config)


def cnn(**config: Any) -> Any:
    """Small conv net over flat ``side*side`` grey images -> ``(batch, num_classes)`` logits."""
    from modelport_zoo.architectures import cnn as build

    return build(**config)
