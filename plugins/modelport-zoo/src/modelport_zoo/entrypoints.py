"""Entry-point targets (``modelport.architectures``, ``modelport.demos``) that import torch only when used.

Discovery loads every entry point at start-up; pointing them here rather than at
:mod:`modelport_zoo.architectures` or :mod:`modelport_zoo.demo` keeps torch out of processes that never build
a torch model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.context import Services
    from service.plugins import DemoReport

__all__ = ("cnn", "digits", "mlp")


def mlp(**config: Any) -> Any:
    """Multi-layer perceptron: ``(batch, input_dim)`` float32 -> ``(batch, num_classes)`` logits."""
    from modelport_zoo.architectures import mlp as build

    return build(**config)


def cnn(**config: Any) -> Any:
    """Small conv net over flat ``side*side`` grey images: ``(batch, side*side)`` -> ``(batch, num_classes)``."""
    from modelport_zoo.architectures import cnn as build

    return build(**config)


async def digits(services: Services, *, skip_if_present: bool) -> DemoReport:
    """Train an MLP and a CNN on scikit-learn's digits and register them as model ``digits`` (split 90/10)."""
    from modelport_zoo.demo import run_demo

    return (await run_demo(services, skip_if_present=skip_if_present)).report()
