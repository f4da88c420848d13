"""schemathesis against the service's own OpenAPI document, with and without an admin key: no 5xx.

Runs the schemathesis CLI (bounded examples, fixed seed) against a real server process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ADMIN_TOKEN, ServerProcess, run_server

pytestmark = pytest.mark.integration
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    artifact = root / "m.onnx"
    make_mlp_onnx(artifact, in_dim=4, hidden=4, out=3)
    with run_server(root / "data") as server:
        server.register_onnx("m", artifact)
        with server.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
        yield server


@pytest.mark.parametrize("as_admin", [False, True], ids=["anonymous", "admin"])
def test_no_server_errors(fuzz_server: ServerProcess, as_admin: bool) -> None:
    if not SCHEMATHESIS.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    args = [
        str(SCHEMATHESIS),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{fuzz_server.base_url}/schema/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "12",
        "--seed",
        "7",
        "--request-timeout",
        "10",
        "--phases",
        "examples,coverage,fuzzing",
    ]
    if as_admin:
        args += ["--header", f"Authorization: Bearer {ADMIN_TOKEN}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert fuzz_server.process.poll() is None
