"""ONNX Runtime backend for modelport (entry point ``modelport.backends``: ``onnx``).

Importing this package does not import onnxruntime: the backend imports it when it first loads a model.
"""

from modelport_onnx.backend import ExternalDataRefused, OnnxBackend, OnnxEngine, refuse_external_data

__all__ = ("ExternalDataRefused", "OnnxBackend", "OnnxEngine", "refuse_external_data")
