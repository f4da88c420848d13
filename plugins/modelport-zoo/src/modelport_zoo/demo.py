"""``modelport demo``: train two digit classifiers on real data and register them as model ``digits``.

Data: scikit-learn's bundled handwritten digits (1,797 8x8 scans from UCI; no download), upsampled to
28x28 = 784 features in [0, 1] so requests look like MNIST. v1 is an MLP exported to ONNX (parity checked),
v2 a CNN saved as TorchScript. Seeded: the same run gives the same weights.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from modelport_torch.convert import convert_to_onnx
from modelport_zoo.architectures import cnn, mlp
from registry_db.errors import NotFound
from registry_db.records import Principal

if TYPE_CHECKING:
    from service.context import Services

__all__ = ("DemoResult", "load_digits_784", "run_demo")

MODEL = "digits"
LABELS = [str(i) for i in range(10)]
SEED = 0
_DEMO = Principal(name="demo", scopes=frozenset({"admin", "read"}))
_SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}


@dataclass
class DemoResult:
    versions: list[str] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False


def load_digits_784() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test split of the digits, each image ``(784,) float32`` in [0, 1]; labels int64."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (n, 8, 8) in [0, 1]
    upsampled = np.clip(zoom(images, (1, 3.5, 3.5), order=1), 0.0, 1.0).reshape(len(images), 784)
    return train_test_split(  # type: ignore[no-any-return]
        upsampled.astype(np.float32),
        digits.target.astype(np.int64),
        test_size=0.2,
        random_state=SEED,
        stratify=digits.target,
    )


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float) -> nn.Module:
    generator = torch.Generator().manual_seed(SEED)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), 64):
            idx = order[start : start + 64]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            loss.backward()
            optimiser.step()
    return model.eval()


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def _card(
    kind: str, architecture: str, accuracy: float, n_train: int, n_test: int, seconds: float, serving: str
) -> dict[str, Any]:
    return {
        "summary": f"Handwritten digit classifier (0-9), {kind}, served by {serving}.",
        "architecture": architecture,
        "training_data": (
            f"scikit-learn load_digits (UCI optical digits, 1,797 real 8x8 scans), upsampled to 28x28 "
            f"(784 features in [0, 1]); stratified 80/20 split, seed {SEED}; {n_train} train images"
        ),
        "eval_metrics": {"accuracy": round(accuracy, 4), "n_test": n_test, "split": "held-out 20%"},
        "training_seconds": round(seconds, 2),
        "intended_use": "Demonstrating modelport: registry, routing, A/B statistics. Not for production decisions.",
        "limitations": (
            "8x8 scans upsampled, not native 28x28 handwriting: accuracy on MNIST or real scans is "
            "unknown; inputs must be 784 floats in [0, 1], background 0."
        ),
        "ethical_considerations": "No personal data; small data set from 43 writers may not represent all hands.",
        "owners": "modelport demo",
    }


async def _present(services: Services) -> bool:
    try:
        return bool(await services.registry.list_versions(MODEL))
    except NotFound:
        return False


async def run_demo(services: Services, *, skip_if_present: bool = True) -> DemoResult:
    """Train, register v1 (MLP/ONNX) and v2 (CNN/TorchScript), promote v1, split 90/10."""
    from service.management.manifest import VersionManifest
    from service.management.registration import register_version

    if skip_if_present and await _present(services):
        return DemoResult(skipped=True)
    started = time.perf_counter()
    torch.manual_seed(SEED)
    x_train, x_test, y_train, y_test = load_digits_784()
    result = DemoResult()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        net1 = _train(mlp(hidden=(256,)), x_train, y_train, epochs=15, lr=1e-3)
        acc1, s1 = _accuracy(net1, x_test, y_test), time.perf_counter() - t0
        onnx_path = Path(tmp) / "digits-mlp.onnx"
        convert_to_onnx(net1, x_test[:4], onnx_path, tolerance=1e-4)
        t0 = time.perf_counter()
        torch.manual_seed(SEED)
        net2 = _train(cnn(channels=(8, 16)), x_train, y_train, epochs=6, lr=2e-3)
        acc2, s2 = _accuracy(net2, x_test, y_test), time.perf_counter() - t0
        ts_path = Path(tmp) / "digits-cnn.pt"
        torch.jit.save(torch.jit.trace(net2, torch.from_numpy(x_test[:2])), str(ts_path))
        post = {"type": "classification", "labels": LABELS}
        v1 = await register_version(
            services,
            MODEL,
            artifact=onnx_path,
            principal=_DEMO,
            manifest=VersionManifest(
                backend="onnx",
                postprocessing=post,
                card=_card(
                    "MLP 784-256-10", "mlp: 784-256-10, ReLU", acc1, len(x_train), len(x_test), s1, "ONNX Runtime"
                ),
            ),
        )
        v2 = await register_version(
            services,
            MODEL,
            artifact=ts_path,
            principal=_DEMO,
            manifest=VersionManifest(
                backend="torchscript",
                postprocessing=post,
                signature=_signature(),
                card=_card(
                    "CNN", "cnn: conv8-pool-conv16-pool-linear", acc2, len(x_train), len(x_test), s2, "TorchScript"
                ),
            ),
        )
    await services.registry.set_alias(MODEL, "production", v1.version, actor="demo")
    await services.registry.set_traffic(MODEL, [(v1.version, 90), (v2.version, 10)], actor="demo")
    result.versions = [v1.version, v2.version]
    result.accuracy = {v1.version: acc1, v2.version: acc2}
    result.seconds = time.perf_counter() - started
    return result


def _signature() -> Any:
    import msgspec

    from service.management.manifest import Signature

    return msgspec.convert(_SIGNATURE, Signature)
