"""ONNX Runtime backend for modelport."""

from modelport_onnx.backend import OnnxBackend, OnnxEngine

__all__ = ("OnnxBackend", "OnnxEngine")
