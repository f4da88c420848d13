"""The benchmark's models and request bodies, written once per run into a scratch directory.

Bodies are what real clients send: the V2 JSON body carries ``float32 -> float`` values the way
``tritonclient`` serialises them (``np.float32(...).item()``, about 19 characters each), the binary body is
the V2 binary tensor extension (JSON header, then raw little-endian bytes), and the v1 body is
``{"inputs": [instance]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.grpcload import GRPC_PATH, grpc_infer_body
from benchmarks.shmload import shm_infer_body
from tests.helpers.onnx_models import make_image_onnx, make_mlp_onnx

__all__ = (
    "Workload",
    "Workloads",
    "build_workloads",
    "v1_body",
    "v2_binary_body",
    "v2_json_body",
    "write_mlp",
)

MLP_INPUT, MLP_OUTPUT = "input", "logits"
IMAGE_INPUT, IMAGE_OUTPUT = "image", "mean"
IMAGE_SHAPE = (3, 224, 224)
IMAGE_OUTPUT_BYTES = IMAGE_SHAPE[0] * 4
"""``mean``: ``(1, 3) float32``."""


@dataclass(frozen=True)
class Workload:
    """One request kind: ``route`` (v2-json | v2-binary | v2-shm | v1-predict | grpc), ``model`` (mlp | 3x224x224),
    the URL path template (``{name}`` = served model name), the body file and the request headers."""

    route: str
    model: str
    path: str
    body_file: Path
    headers: tuple[str, ...]

    def url(self, base_url: str, name: str) -> str:
        return base_url + self.path.format(name=name)


@dataclass(frozen=True)
class Workloads:
    mlp_onnx: Path
    image_onnx: Path
    mlp_v2_json: Workload
    mlp_v2_binary: Workload
    mlp_v1: Workload
    image_v2_json: Workload
    image_v2_binary: Workload
    mlp_grpc: Workload
    """gRPC ModelInfer (raw input contents) for the model named at build time, driven by h2load."""
    image_v2_shm: Workload
    """V2 JSON naming shared-memory regions for the image input and output (``benchmarks.shmload``)."""
    image_input: np.ndarray
    """``(1, 3, 224, 224) float32``: the image every image workload sends (the shm row writes it to its region)."""

    def body_sizes(self) -> dict[str, int]:
        items = (
            self.mlp_v2_json,
            self.mlp_v2_binary,
            self.mlp_v1,
            self.image_v2_json,
            self.image_v2_binary,
            self.image_v2_shm,
        )
        return {f"{w.model} {w.route}": w.body_file.stat().st_size for w in items}


def v2_json_body(input_name: str, x: np.ndarray) -> bytes:
    """V2 JSON infer body for ``x`` of shape ``(batch, ...)`` float32, flat ``data``."""
    tensor = {"name": input_name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    return json.dumps({"id": "bench", "inputs": [tensor]}, allow_nan=False).encode()


def v2_binary_body(input_name: str, x: np.ndarray, output_name: str) -> tuple[bytes, int]:
    """V2 binary-extension body (binary input and binary output, as tritonclient defaults) and the
    JSON header length for ``Inference-Header-Content-Length``."""
    raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
    header = {
        "id": "bench",
        "inputs": [
            {
                "name": input_name,
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    return head + raw, len(head)


def v1_body(x: np.ndarray) -> bytes:
    """``{"inputs": [instance, ...]}`` for ``x`` of shape ``(batch, ...)``: instances without the batch dim."""
    return json.dumps({"inputs": x.tolist()}, allow_nan=False).encode()


def write_mlp(path: Path, *, hidden: int = 256, seed: int = 0) -> Path:
    """The benchmark MLP: ``(batch, 784) float32 -> (batch, 10) float32`` logits."""
    make_mlp_onnx(path, hidden=hidden, seed=seed, input_name=MLP_INPUT, output_name=MLP_OUTPUT)
    return path


def build_workloads(workdir: Path, *, seed: int = 0, grpc_model: str = "bench") -> Workloads:
    """Write both ONNX models and every request body under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mlp = write_mlp(workdir / "mlp-784-256-10.onnx")
    image = workdir / "image-3x224x224.onnx"
    make_image_onnx(image, shape=IMAGE_SHAPE)
    x = rng.random((1, 784), dtype=np.float32)
    img = rng.random((1, *IMAGE_SHAPE), dtype=np.float32)

    def write(name: str, data: bytes) -> Path:
        path = workdir / name
        path.write_bytes(data)
        return path

    json_headers = ("Content-Type: application/json",)
    infer = "/v2/models/{name}/infer"
    mlp_bin, mlp_head = v2_binary_body(MLP_INPUT, x, MLP_OUTPUT)
    img_bin, img_head = v2_binary_body(IMAGE_INPUT, img, IMAGE_OUTPUT)
    return Workloads(
        mlp_onnx=mlp,
        image_onnx=image,
        mlp_v2_json=Workload("v2-json", "mlp", infer, write("mlp-v2.json", v2_json_body(MLP_INPUT, x)), json_headers),
        mlp_v2_binary=Workload(
            "v2-binary",
            "mlp",
            infer,
            write("mlp-v2.bin", mlp_bin),
            ("Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {mlp_head}"),
        ),
        mlp_v1=Workload(
            "v1-predict", "mlp", "/v1/models/{name}/predict", write("mlp-v1.json", v1_body(x)), json_headers
        ),
        image_v2_json=Workload(
            "v2-json", "3x224x224", infer, write("image-v2.json", v2_json_body(IMAGE_INPUT, img)), json_headers
        ),
        image_v2_binary=Workload(
            "v2-binary",
            "3x224x224",
            infer,
            write("image-v2.bin", img_bin),
            ("Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {img_head}"),
        ),
        mlp_grpc=Workload(
            "grpc", "mlp", GRPC_PATH, write("mlp-grpc.bin", grpc_infer_body(grpc_model, MLP_INPUT, x)), ()
        ),
        image_v2_shm=Workload(
            "v2-shm",
            "3x224x224",
            infer,
            write("image-v2-shm.json", shm_infer_body(IMAGE_INPUT, img, IMAGE_OUTPUT, IMAGE_OUTPUT_BYTES)),
            json_headers,
        ),
        image_input=img,
    )
