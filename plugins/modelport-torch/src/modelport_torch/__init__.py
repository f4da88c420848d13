"""PyTorch backends for modelport: ``torchscript``, ``torch_export`` and ``pytorch`` (state_dict)."""

from modelport_torch.backends import StateDictBackend, TorchExportBackend, TorchScriptBackend
from modelport_torch.engine import TorchEngine

__all__ = ("StateDictBackend", "TorchEngine", "TorchExportBackend", "TorchScriptBackend")
