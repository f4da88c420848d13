"""``modelport demo``: train two digit classifiers on real data and register them as model ``digits``.

Data: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans from the UCI optical digits set; no
download), upsampled bilinearly to 28x28 = 784 features in [0, 1] so requests look like MNIST. A seeded,
stratified 80/20 split gives 1,437 training and 360 held-out images.

- v1: ``mlp`` (784-256-10), exported to ONNX with a parity check, served by the ``onnx`` backend.
- v2: ``cnn`` (conv 8 / conv 16), saved as a safetensors state_dict, served by the ``pytorch`` backend.

Both register through :func:`service.management.registration.register_version` (guard, load, smoke test)
with full model cards carrying the measured held-out accuracy; then ``production -> v1`` and a 90/10 split.
Seeded: the same machine gives the same weights, and the whole run takes seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from modelport_torch.convert import convert_to_onnx
from modelport_zoo.architectures import cnn, mlp
from registry_db.errors import DuplicateKey, NotFound
from registry_db.records import Principal

if TYPE_CHECKING:
    from service.context import Services
    from service.plugins import DemoReport

__all__ = ("DemoResult", "TrainedModel", "load_digits_784", "run_demo", "train_models")

MODEL = "digits"
LABELS = [str(i) for i in range(10)]
SEED = 0
SPLIT = ((0, 90), (1, 10))
"""(index into the registered versions, weight): v1 takes 90% of unversioned traffic, v2 10%."""
MLP_CONFIG: dict[str, Any] = {"input_dim": 784, "hidden": [256], "num_classes": 10}
CNN_CONFIG: dict[str, Any] = {"channels": [8, 16], "num_classes": 10, "side": 28}
_DEMO = Principal(name="demo", scopes=frozenset({"admin", "read"}))
_POSTPROCESSING = {"type": "classification", "labels": LABELS}


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """One trained network and what was measured about it."""

    name: str
    module: nn.Module
    accuracy: float
    """Held-out accuracy (fraction of the 360 test images classified correctly)."""
    train_seconds: float


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What ``run_demo`` did; ``skipped`` when model ``digits`` already had versions."""

    versions: tuple[str, ...] = ()
    accuracy: dict[str, float] = field(default_factory=dict)
    """Version label -> held-out accuracy."""
    onnx_parity: float = 0.0
    """Max abs difference between the ONNX export and PyTorch (v1)."""
    seconds: float = 0.0
    skipped: bool = False

    def report(self) -> DemoReport:
        """The lines ``modelport demo`` prints (the ``modelport.demos`` contract)."""
        from service.plugins import DemoReport

        if self.skipped:
            return DemoReport(
                skipped=True,
                lines=(f"model '{MODEL}' already has versions: nothing to do (--force registers two more)",),
            )
        lines = [f"{MODEL} version {v}: held-out accuracy {acc:.3f}" for v, acc in self.accuracy.items()]
        first, second = self.versions
        lines.append(
            f"ONNX parity (v{first}): max abs diff {self.onnx_parity:.2g}; production -> {first}; "
            f"split {first}=90 {second}=10 ({self.seconds:.1f} s)"
        )
        return DemoReport(lines=tuple(lines))


def load_digits_784() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The seeded stratified split ``(x_train, x_test, y_train, y_test)``.

    Images are ``(n, 784) float32`` in [0, 1] (8x8 upsampled to 28x28, bilinear); labels ``(n,) int64``.
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (n, 8, 8) in [0, 1]
    upsampled = np.clip(zoom(images, (1, 3.5, 3.5), order=1), 0.0, 1.0).reshape(len(images), 784)
    parts = train_test_split(
        upsampled.astype(np.float32),
        digits.target.astype(np.int64),
        test_size=0.2,
        random_state=SEED,
        stratify=digits.target,
    )
    return parts[0], parts[1], parts[2], parts[3]


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float) -> nn.Module:
    """Adam, minibatches of 64, reshuffled each epoch by a seeded generator."""
    generator = torch.Generator().manual_seed(SEED)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), 64):
            idx = order[start : start + 64]
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            optimiser.step()
    return model.eval()


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def train_models() -> tuple[TrainedModel, TrainedModel, tuple[np.ndarray, ...]]:
    """Train the MLP and the CNN (seeded); returns both and the data split. CPU-bound: call in a thread."""
    x_train, x_test, y_train, y_test = load_digits_784()
    trained = []
    for name, build, config, epochs, lr in (
        ("mlp", mlp, MLP_CONFIG, 15, 1e-3),
        ("cnn", cnn, CNN_CONFIG, 6, 2e-3),
    ):
        torch.manual_seed(SEED)
        started = time.perf_counter()
        module = _train(build(**config), x_train, y_train, epochs=epochs, lr=lr)
        seconds = time.perf_counter() - started
        trained.append(TrainedModel(name, module, _accuracy(module, x_test, y_test), seconds))
    return trained[0], trained[1], (x_train, x_test, y_train, y_test)


def _card(model: TrainedModel, *, architecture: str, serving: str, n_train: int, n_test: int) -> dict[str, Any]:
    return {
        "summary": f"Handwritten digit classifier (0-9): {architecture}, served by {serving}.",
        "architecture": architecture,
        "training_data": (
            "scikit-learn load_digits: 1,797 real 8x8 grey scans of digits written by 43 people (UCI optical "
            f"recognition of handwritten digits), upsampled bilinearly to 28x28 (784 features in [0, 1]); "
            f"stratified 80/20 split with seed {SEED}: {n_train} training images"
        ),
        "training_procedure": (
            f"Adam, minibatches of 64, seed {SEED}; {model.train_seconds:.1f} s on CPU; no augmentation"
        ),
        "eval_metrics": {
            "accuracy": round(model.accuracy, 4),
            "dataset": f"held-out 20% of load_digits ({n_test} images), never seen in training",
        },
        "inputs": "input: FP32 (batch, 784), pixel intensities in [0, 1], background 0, row-major 28x28",
        "outputs": "logits: FP32 (batch, 10); the service adds softmax confidence and the top label",
        "intended_use": (
            "Demonstrating modelport (registry, routing, A/B statistics, model cards). Not for decisions about "
            "people or documents."
        ),
        "limitations": (
            "Trained on 8x8 scans upsampled to 28x28, not native 28x28 handwriting: accuracy on MNIST or real "
            "scans is unknown and likely lower. Expects centred, size-normalised digits on a zero background; "
            "anything else (letters, blank images) still gets one of the ten labels."
        ),
        "ethical_considerations": "No personal data. 43 writers may not represent all handwriting styles.",
        "owners": "modelport demo",
    }


async def _present(services: Services) -> bool:
    try:
        return bool(await services.registry.catalog.list_versions(MODEL))
    except NotFound:
        return False


def _prepare_artifacts(folder: Path) -> tuple[TrainedModel, TrainedModel, Path, Path, float, int, int]:
    """Train both models and write v1 (ONNX, parity-checked) and v2 (safetensors) into ``folder``."""
    from safetensors.torch import save_file

    net1, net2, (x_train, x_test, _, _) = train_models()
    onnx_path = folder / "digits-mlp.onnx"
    parity = convert_to_onnx(net1.module, x_test[:4], onnx_path, tolerance=1e-4).max_abs_diff
    weights_path = folder / "digits-cnn.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_file({k: v.contiguous() for k, v in net2.module.state_dict().items()}, str(weights_path))
    return net1, net2, onnx_path, weights_path, parity, len(x_train), len(x_test)


async def run_demo(services: Services, *, skip_if_present: bool = True) -> DemoResult:
    """Train, register v1 (MLP/ONNX) and v2 (CNN/state_dict), point ``production`` at v1, split 90/10.

    Used by ``modelport demo`` and ``modelport serve --demo`` (through the ``modelport.demos`` entry point
    :func:`modelport_zoo.entrypoints.digits`). Training runs in a worker thread, so the
    event loop stays responsive. With ``skip_if_present`` an existing ``digits`` model is left untouched.
    """
    from service.management.manifest import VersionManifest
    from service.management.registration import register_version

    if skip_if_present and await _present(services):
        return DemoResult(skipped=True)
    started = time.perf_counter()
    with contextlib.suppress(DuplicateKey):  # a model left without versions by an interrupted demo
        await services.registry.catalog.create_model(
            MODEL, description="Handwritten digits 0-9 (modelport demo)", actor=_DEMO.name
        )
    with tempfile.TemporaryDirectory(prefix="modelport-demo-") as tmp:
        net1, net2, onnx_path, weights_path, parity, n_train, n_test = await asyncio.to_thread(
            _prepare_artifacts, Path(tmp)
        )
        v1 = await register_version(
            services,
            MODEL,
            artifact=onnx_path,
            principal=_DEMO,
            allow_duplicate=True,  # seeded training gives the same bytes: `modelport demo --force` adds versions
            manifest=VersionManifest(
                backend="onnx",
                architecture="mlp",
                architecture_config=MLP_CONFIG,
                postprocessing=_POSTPROCESSING,
                description="MLP 784-256-10 exported to ONNX",
                card={
                    **_card(
                        net1,
                        architecture="mlp 784-256-10, ReLU",
                        serving="ONNX Runtime",
                        n_train=n_train,
                        n_test=n_test,
                    ),
                    "export": {"format": "onnx", "parity_max_abs_diff": parity, "tolerance": 1e-4},
                },
            ),
        )
        v2 = await register_version(
            services,
            MODEL,
            artifact=weights_path,
            principal=_DEMO,
            allow_duplicate=True,  # seeded training gives the same bytes: `modelport demo --force` adds versions
            manifest=VersionManifest(
                backend="pytorch",
                architecture="cnn",
                architecture_config=CNN_CONFIG,
                postprocessing=_POSTPROCESSING,
                description="CNN (conv 8, conv 16) as a safetensors state_dict",
                card=_card(
                    net2,
                    architecture="cnn: conv3x3(8)-pool-conv3x3(16)-pool-linear, ReLU",
                    serving="PyTorch (state_dict into the zoo's cnn)",
                    n_train=n_train,
                    n_test=n_test,
                ),
            ),
        )
    versions = (v1.version, v2.version)
    await services.registry.routing.set_alias(MODEL, "production", v1.version, actor=_DEMO.name)
    await services.registry.routing.set_traffic(MODEL, [(versions[i], w) for i, w in SPLIT], actor=_DEMO.name)
    return DemoResult(
        versions=versions,
        accuracy={v1.version: net1.accuracy, v2.version: net2.accuracy},
        onnx_parity=parity,
        seconds=time.perf_counter() - started,
    )
