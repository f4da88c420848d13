"""A third-party backend package (its own pyproject + entry point, nothing else) installs, is listed,
registers and serves, with no change to the core."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.server import run_server

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "modelport-linear"


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    source = tmp_path_factory.mktemp("plugin") / "modelport-linear"
    shutil.copytree(EXAMPLE, source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(source)], check=True, timeout=300)
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", "modelport-linear"], check=False, timeout=120)


def test_listed_registered_and_served(installed_plugin: None, tmp_path: Path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "service", "plugins", "--json"],
        capture_output=True,
        text=True,
        env={"MODELPORT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    plugins = {(p["kind"], p["name"]): p for p in json.loads(listing.stdout)}
    assert plugins[("backend", "linear")]["distribution"] == "modelport-linear"
    assert plugins[("backend", "linear")]["error"] is None

    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    artifact = tmp_path / "linear.safetensors"
    _write_safetensors(artifact, {"weight": weight, "bias": bias})
    with run_server(tmp_path / "data") as server:
        record = server.register_onnx("lin", artifact, backend="linear")
        assert record["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
        x = rng.standard_normal((4, 3)).astype(np.float32)
        with server.client() as client:
            reply = client.post(
                "/v2/models/lin/versions/1/infer",
                json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 3], "data": x.ravel().tolist()}]},
            )
        assert reply.status_code == 200, reply.text
        got = np.asarray(reply.json()["outputs"][0]["data"], dtype=np.float32).reshape(4, 2)
        np.testing.assert_allclose(got, x @ weight + bias, rtol=1e-5, atol=1e-5)
