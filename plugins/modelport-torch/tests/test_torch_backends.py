"""The torch backends on real tiny models, through the core's loader (hash check + artifact guard)."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelport_torch.convert import convert_to_onnx
from modelport_zoo.architectures import mlp
from registry_db.store import ArtifactStore
from service.errors import ArtifactRejected
from service.inference.loader import load_engine
from service.plugins import default_registry
from service.plugins.testing import check_engine
from service.settings import Settings

SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
}


@pytest.fixture
def trained(tmp_path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    model = mlp(input_dim=16, hidden=(8,), num_classes=3).eval()
    x, y = torch.rand(64, 16), torch.randint(0, 3, (64,))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


async def _load(tmp_path: Path, path: Path, backend: str, **kwargs: Any) -> Any:
    store = ArtifactStore(tmp_path / "store", max_bytes=10**9)
    stored = await store.put_file(path)
    started = time.perf_counter()
    loaded = load_engine(
        settings=Settings(data_dir=tmp_path, device="cpu"),
        store=store,
        plugins=default_registry(),
        sha256=stored.sha256,
        backend_name=backend,
        architecture=kwargs.get("architecture"),
        architecture_config=kwargs.get("config", {}),
        signature=kwargs.get("signature"),
        trusted=kwargs.get("trusted", True),
    )
    print(f"{backend}: load {1000 * (time.perf_counter() - started):.1f} ms")
    return loaded.engine


async def test_same_weights_same_predictions_through_all_four_backends(tmp_path: Path, trained: Any) -> None:
    x = np.random.default_rng(3).random((5, 16), dtype=np.float32)
    with torch.inference_mode():
        reference = trained(torch.from_numpy(x)).numpy()
    onnx_path = tmp_path / "m.onnx"
    convert_to_onnx(trained, x[:2], onnx_path)
    ts_path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(trained), str(ts_path))
    pt2_path = tmp_path / "m.pt2"
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.export.save(torch.export.export(trained, (torch.from_numpy(x),), dynamic_shapes=({0: batch},)), str(pt2_path))
    st_path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(st_path))
    engines = {
        "onnx": await _load(tmp_path, onnx_path, "onnx"),
        "torchscript": await _load(tmp_path, ts_path, "torchscript", signature=SIGNATURE),
        "torch_export": await _load(tmp_path, pt2_path, "torch_export"),
        "pytorch": await _load(
            tmp_path, st_path, "pytorch", architecture="mlp", config={"input_dim": 16, "hidden": [8], "num_classes": 3}
        ),
    }
    for name, engine in engines.items():
        check_engine(engine, batches=(1, 5))
        (out,) = engine.predict({engine.inputs[0].name: x}).values()
        diff = float(np.abs(out - reference).max())
        print(f"{name}: max abs diff vs torch eager {diff:.2e}")
        assert diff < 1e-4, name
    assert engines["torch_export"].inputs[0].shape == (-1, 16)


async def test_torch_save_state_dict_loads_and_read_only_inputs_work(tmp_path: Path, trained: Any) -> None:
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    engine = await _load(
        tmp_path, path, "pytorch", architecture="mlp", config={"input_dim": 16, "hidden": [8], "num_classes": 3}
    )
    x = np.zeros((2, 16), np.float32)
    x.setflags(write=False)
    assert engine.predict({"input": x})["logits"].shape == (2, 3)


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


async def test_malicious_torch_save_refused_and_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": Payload(marker)}, path)  # a real torch zip with a payload
    with pytest.raises(ArtifactRejected, match="refused"):
        await _load(tmp_path, path, "pytorch", architecture="mlp")
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ArtifactRejected, match="refused"):
        await _load(tmp_path, raw, "pytorch", architecture="mlp")
    assert not marker.exists()


async def test_mismatched_weights_png_and_truncated_refused(tmp_path: Path, trained: Any) -> None:
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    with pytest.raises(ArtifactRejected, match="do not fit the architecture"):
        await _load(tmp_path, path, "pytorch", architecture="mlp", config={"input_dim": 784})
    png = tmp_path / "model.pt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(ArtifactRejected, match="PNG"):
        await _load(tmp_path, png, "torchscript", signature=SIGNATURE)
    ts = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(trained), str(ts))
    truncated = tmp_path / "trunc.ts"
    truncated.write_bytes(ts.read_bytes()[:-200])
    with pytest.raises(ArtifactRejected):
        await _load(tmp_path, truncated, "torchscript", signature=SIGNATURE)


async def test_code_formats_refused_for_non_admins_and_need_a_signature(tmp_path: Path, trained: Any) -> None:
    ts = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(trained), str(ts))
    with pytest.raises(ArtifactRejected, match="admin"):
        await _load(tmp_path, ts, "torchscript", signature=SIGNATURE, trusted=False)
    with pytest.raises(ArtifactRejected, match="signature.inputs"):
        await _load(tmp_path, ts, "torchscript")


def test_convert_refuses_above_tolerance(tmp_path: Path, trained: Any) -> None:
    with pytest.raises(ValueError, match="exceeds tolerance"):
        convert_to_onnx(trained, np.zeros((1, 16), np.float32), tmp_path / "x.onnx", tolerance=-1.0)
    assert not (tmp_path / "x.onnx").exists()
    assert msgspec  # imported for parity with other plugin tests
