"""The minimal LitServe server the peer rows run: the benchmark's ONNX MLP behind a ``LitAPI``, nothing else.

Runs inside LitServe's own throw-away venv (``benchmarks.peers``), never in the project's, as
``python litserve_app.py MODEL.onnx PORT MAX_BATCH_SIZE BATCH_TIMEOUT_S``. It answers ``POST
/v2/models/bench/infer`` with the same V2 JSON body the other rows get: ``decode_request`` reads the one input
tensor, ``predict`` runs ``InferenceSession.run`` (one intra-op thread: the server is pinned to one core) on
``(batch, 784) float32``, ``encode_response`` writes a V2 JSON reply. With ``MAX_BATCH_SIZE`` > 1 LitServe groups
requests for up to ``BATCH_TIMEOUT_S``; ``batch`` concatenates along the batch dimension and ``unbatch`` splits the
``(batch, 10)`` logits back into one row per request. One HTTP server process and one inference worker
(``workers_per_device=1``), connected by LitServe's ZeroMQ queue (``fast_queue``), its fastest documented setting.
"""

# No ``from __future__ import annotations`` here: LitServe reads ``decode_request``'s and ``encode_response``'s
# annotations at run time to build its FastAPI route, and both are left unannotated on purpose (LitServe's default
# path: the body parsed with ``request.json()``, the reply returned as it is, no pydantic model in between).
import sys

import litserve as ls
import numpy as np
import onnxruntime as ort

__all__ = ("OnnxAPI", "main")


class OnnxAPI(ls.LitAPI):
    """One ONNX model with a single input and output, on CPU with one intra-op thread."""

    def __init__(self, model_path: str, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/v2/models/bench/infer")
        self._path = model_path

    def setup(self, device: str) -> None:  # noqa: ARG002 - CPU only; LitServe passes the device it chose
        """Runs once in the inference worker when it starts: build the session."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self._path, sess_options=options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def decode_request(self, request):  # the parsed JSON body (a dict)
        """Per request: the V2 JSON body's first input as ``(1, 784) float32``."""
        tensor = request["inputs"][0]
        return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Per request or per batch: ``(batch, 784) float32 -> (batch, 10) float32``."""
        (y,) = self._session.run([self._output], {self._input: x})
        return np.asarray(y)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return [output[i : i + 1] for i in range(len(output))]

    def encode_response(self, output):  # (1, 10) float32 -> V2 JSON reply
        data = output.ravel().tolist()
        return {
            "model_name": "bench",
            "outputs": [{"name": self._output, "shape": list(output.shape), "datatype": "FP32", "data": data}],
        }


def main(argv: list[str]) -> None:
    path, port, size, timeout = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    api = OnnxAPI(path, max_batch_size=max(1, size), batch_timeout=timeout if size > 1 else 0.0)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, fast_queue=True)
    server.run(host="127.0.0.1", port=port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main(sys.argv[1:])
