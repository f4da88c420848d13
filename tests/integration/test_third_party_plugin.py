"""A third-party backend package bringing its own artifact format (``linear_json``) and inspector, with
nothing but its own pyproject and entry point, installs into the virtualenv, is listed by ``modelport
plugins``, registers a version through ``register_version``, is served over HTTP by a real server, and an
upload its inspector refuses gets a 422 with the inspector's message: no change to the core.

The package is the "write your own backend" example of ``docs/plugins.md``, taken from the page itself, so
the documentation cannot drift from what works.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry_db.records import Principal
from service.context import Services
from service.inference.loader import load_engine
from service.management.manifest import VersionManifest
from service.management.registration import register_version
from service.plugins import PluginRegistry
from service.settings import Settings
from tests.helpers.server import run_server

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
_FILE_BLOCK = re.compile(r"\*\*`(modelport-linear/[^`]+)`\*\*\s*\n\s*\n```[a-z]+\n(.*?)```", re.DOTALL)
_PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]


def _write_example(root: Path) -> Path:
    """The example package's files, exactly as docs/plugins.md shows them."""
    blocks = _FILE_BLOCK.findall(DOC.read_text())
    names = [name for name, _ in blocks]
    assert names == [
        "modelport-linear/pyproject.toml",
        "modelport-linear/src/modelport_linear/__init__.py",
        "modelport-linear/tests/test_linear.py",
    ], names
    for name, body in blocks:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    return root / "modelport-linear"


def _listed_plugins(data_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    listing = subprocess.run(
        [sys.executable, "-m", "service", "plugins", "--json"],
        capture_output=True,
        text=True,
        env={"MODELPORT_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    return {(p["kind"], p["name"]): p for p in json.loads(listing.stdout)}


async def _register_and_load(data_dir: Path, artifact: Path, x: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    # the package appeared in site-packages after this process started: discovery must still find it
    services = await Services.open(Settings(data_dir=data_dir, device="cpu"), plugins=PluginRegistry(), migrate=True)
    try:
        record = await register_version(
            services,
            "lin",
            artifact=artifact,
            manifest=VersionManifest(backend="linear", card={"summary": "third-party backend example"}),
            principal=Principal(name="integration", scopes=frozenset({"read", "admin"})),
        )
        await services.registry.routing.set_alias("lin", "production", record.version, actor="integration")
        engine = load_engine(
            settings=services.settings,
            store=services.store,
            plugins=services.plugins,
            sha256=record.sha256,
            backend_name=record.backend,
            architecture=None,
            architecture_config={},
            signature=record.signature,
            trusted=False,
        ).engine
        return {"version": record.version, "signature": record.signature}, engine.predict({"x": x})["y"]
    finally:
        await services.close()


def test_installed_listed_registered_and_served(tmp_path: Path) -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("installs a package: runs only inside a virtualenv (.venv), never into the system Python")
    package = _write_example(tmp_path / "src")
    data_dir = tmp_path / "data"
    subprocess.run([*_PIP, "install", "--no-deps", "--no-build-isolation", str(package)], check=True, timeout=300)
    try:
        plugin = _listed_plugins(data_dir)[("backend", "linear")]
        assert (plugin["distribution"], plugin["version"], plugin["status"]) == ("modelport-linear", "0.1.0", "ok")
        assert plugin["entry_point"] == "modelport_linear:LinearBackend"

        own_tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
            capture_output=True,
            text=True,
            cwd=package,
            timeout=300,
            check=False,
        )
        assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr

        from modelport_linear import MAGIC, write_linear  # installed after this process started

        rng = np.random.default_rng(0)
        weight = rng.standard_normal((3, 2)).astype(np.float32)
        bias = rng.standard_normal(2).astype(np.float32)
        artifact = write_linear(tmp_path / "model.lin", weight, bias)
        x = rng.standard_normal((4, 3)).astype(np.float32)
        misfit = tmp_path / "misfit.lin"
        misfit.write_bytes(MAGIC + b'{"weight": [[1, 2], [3, 4]], "bias": [1, 2, 3]}')
        png = tmp_path / "image.lin"
        png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))

        record, direct = asyncio.run(_register_and_load(data_dir, artifact, x))
        assert record["version"] == "1"
        assert record["signature"] == {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        }
        np.testing.assert_allclose(direct, x @ weight + bias, rtol=1e-6, atol=1e-6)

        with run_server(data_dir) as server, server.client() as client, server.admin() as admin:
            for bad, message in (
                (misfit, "linear model: weight [2, 2] and bias [3] do not fit"),
                (png, "not a linear model: the file does not start with 'MODELPORT-LINEAR 1'"),
            ):
                with bad.open("rb") as fh:
                    refused = admin.post(
                        "/admin/models/lin/versions",
                        files={"artifact": (bad.name, fh, "application/octet-stream")},
                        data={"manifest": json.dumps({"backend": "linear"})},
                    )
                assert refused.status_code == 422, refused.text
                assert refused.json()["error"] == message
            metadata = client.get("/v2/models/lin/versions/1")
            assert metadata.status_code == 200, metadata.text
            assert metadata.json()["platform"] == "numpy_linear"
            reply = client.post(
                "/v2/models/lin/infer",
                json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 3], "data": x.ravel().tolist()}]},
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_version"] == "1"
        served = np.asarray(reply.json()["outputs"][0]["data"], dtype=np.float32).reshape(4, 2)
        np.testing.assert_allclose(served, x @ weight + bias, rtol=1e-5, atol=1e-5)
    finally:
        subprocess.run([*_PIP, "uninstall", "-y", "modelport-linear"], check=False, timeout=120)
        sys.modules.pop("modelport_linear", None)
    assert ("backend", "linear") not in _listed_plugins(data_dir)
