"""A tiny architecture registered in-process, seeded trained weights, and a loader that goes through the core.

The architecture lives here (not in modelport-zoo) so these tests need only this plugin and the core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from registry_db.store import ArtifactStore
from service.inference.loader import LoadedArtifact, load_engine
from service.plugins import PluginRegistry, TensorSpec
from service.settings import Settings


class Tiny(nn.Module):
    """``(batch, 16)`` float32 -> ``(batch, classes)`` logits; describes its tensors like the zoo's modules."""

    __jit_ignored_attributes__ = ["input_spec", "output_spec"]

    def __init__(self, hidden: int = 8, classes: int = 3, extra_layer: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        self.extra = nn.Linear(classes, classes) if extra_layer else None
        self.input_spec = TensorSpec("input", "FP32", (-1, 16))
        self.output_spec = TensorSpec("logits", "FP32", (-1, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(torch.relu(self.fc1(x)))
        return out if self.extra is None else self.extra(out)


def tiny(**config: Any) -> Tiny:
    """Entry-point style factory: ``(**config) -> nn.Module``."""
    return Tiny(**config)


@pytest.fixture
def trained() -> Tiny:
    """Seeded weights after a few SGD steps (so they are not the initialisation)."""
    torch.manual_seed(0)
    model = Tiny()
    x, y = torch.rand(64, 16), torch.randint(0, 3, (64,))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture
def plugins() -> PluginRegistry:
    """The installed backends (entry points) plus the test architecture ``tiny``."""
    registry = PluginRegistry()
    registry.add_architecture("tiny", tiny)
    return registry


@pytest.fixture
def core_load(tmp_path: Path, plugins: PluginRegistry) -> Callable[..., LoadedArtifact]:
    """Load an artifact exactly as serving does: store (sha256) -> verified path -> guard -> load -> warmup."""
    store = ArtifactStore(tmp_path / "store", max_bytes=10**9)
    settings = Settings(data_dir=tmp_path / "data", device="cpu")

    def load(
        path: Path,
        backend: str,
        *,
        architecture: str | None = None,
        config: dict[str, Any] | None = None,
        signature: dict[str, Any] | None = None,
        admin: bool = True,
    ) -> LoadedArtifact:
        stored = asyncio.run(store.put_file(path))
        return load_engine(
            settings=settings,
            store=store,
            plugins=plugins,
            sha256=stored.sha256,
            backend_name=backend,
            architecture=architecture,
            architecture_config=config or {},
            signature=signature,
            trusted=admin,
        )

    return load
