"""The minimal MLServer runtime the peer rows serve: one ONNX file, ``InferenceSession.run``, nothing else.

This module runs inside MLServer's own throw-away venv (``benchmarks.peers``), never in the project's: the
harness copies it next to the model as ``bench_runtime.py`` and names ``bench_runtime.OnnxRuntime`` as the
``implementation`` in ``model-settings.json`` (MLServer's documented way to serve a custom runtime). It does
what MLServer's own runtimes do and no more: decode the V2 input with MLServer's ``NumpyCodec``, run the
session with one intra-op thread (the server is pinned to one core, as modelport is), encode the output.
With adaptive batching on, MLServer concatenates queued requests along the batch dimension before
``predict`` and splits the reply after it, so ``predict`` sees ``(batch, 784) float32``.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

__all__ = ("OnnxRuntime",)


class OnnxRuntime(MLModel):
    """Serves a single-input, single-output ONNX model on CPU with one intra-op thread."""

    async def load(self) -> bool:
        """Runs once when MLServer loads the model: build the session from ``parameters.uri``."""
        path = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Runs per request (or per assembled batch): ``(batch, 784) float32 -> (batch, 10) float32``."""
        x = np.asarray(NumpyCodec.decode_input(payload.inputs[0]), dtype=np.float32)
        (y,) = self._session.run([self._output], {self._input: x})
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name=self._output, payload=y)],
        )
