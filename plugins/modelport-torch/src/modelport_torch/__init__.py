"""PyTorch backends for modelport: ``torchscript``, ``torch_export`` and ``pytorch`` (state_dict).

Importing this package does not import torch: the backends import it when they first load an artifact, so
discovery stays light on servers that only serve ONNX. ``modelport_torch.convert`` (PyTorch -> ONNX with a
parity check) imports torch when imported.
"""

from __future__ import annotations

from modelport_torch.backends import StateDictBackend, TorchExportBackend, TorchScriptBackend

__all__ = ("StateDictBackend", "TorchExportBackend", "TorchScriptBackend")
