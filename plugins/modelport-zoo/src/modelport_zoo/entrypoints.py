"""Entry-point targets (``modelport.architectures``) that import torch only when an architecture is built.

Discovery loads every entry point at start-up; pointing them here rather than at
:mod:`modelport_zoo.architectures` keeps torch out of processes that never build a torch model.
"""

from __future__ import annotations

from typing import Any

__all__ = ("cnn", "mlp")


def mlp(**config: Any) -> Any:
    """Multi-layer perceptron: ``(batch, input_dim)`` float32 -> ``(batch, num_classes)`` logits."""
    from modelport_zoo.architectures import mlp as build

    return build(**config)


def cnn(**config: Any) -> Any:
    """Small conv net over flat ``side*side`` grey images: ``(batch, side*side)`` -> ``(batch, num_classes)``."""
    from modelport_zoo.architectures import cnn as build

    return build(**config)
