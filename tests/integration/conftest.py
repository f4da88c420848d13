"""Integration fixtures: a real server process with a registered ONNX MLP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.onnx_models import MLPWeights, make_mlp_onnx
from tests.helpers.server import ServerProcess, run_server


@dataclass
class MLPServer:
    server: ServerProcess
    v1: MLPWeights
    v2: MLPWeights
    artifact_v1: Path
    artifact_v2: Path


@pytest.fixture(scope="module")
def mlp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLPServer]:
    """Model ``mlp`` with versions 1 and 2 (different weights), v1 promoted to production."""
    root = tmp_path_factory.mktemp("mlp-server")
    a1, a2 = root / "mlp-v1.onnx", root / "mlp-v2.onnx"
    w1 = make_mlp_onnx(a1, seed=1)
    w2 = make_mlp_onnx(a2, seed=2)
    with run_server(root / "data") as server:
        server.register_onnx(
            "mlp",
            a1,
            card={"summary": "v1"},
            postprocessing={"type": "classification", "labels": [str(i) for i in range(10)]},
        )
        server.register_onnx(
            "mlp",
            a2,
            card={"summary": "v2"},
            postprocessing={"type": "classification", "labels": [str(i) for i in range(10)]},
        )
        with server.admin() as admin:
            reply = admin.put("/admin/models/mlp/aliases/production", json={"version": "1"})
            assert reply.status_code == 200, reply.text
        yield MLPServer(server, w1, w2, a1, a2)
