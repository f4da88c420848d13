"""PyTorch backends for modelport: ``torchscript``, ``torch_export`` and ``pytorch`` (state_dict).

Importing this package does not import torch: the backends import it when they first load an artifact.
"""

from __future__ import annotations

from typing import Any

from modelport_torch.backends import StateDictBackend, TorchExportBackend, TorchScriptBackend

__all__ = ("StateDictBackend", "TorchEngine", "TorchExportBackend", "TorchScriptBackend")


def __getattr__(name: str) -> Any:
    if name == "TorchEngine":
        from modelport_torch.engine import TorchEngine

        return TorchEngine
    raise AttributeError(name)
