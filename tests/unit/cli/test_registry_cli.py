"""The CLI end to end in subprocesses: register/show agree with sha256sum and stat; errors are one line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.onnx_models import make_mlp_onnx


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    env["MODELPORT_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-m", "service", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_register_then_show_matches_the_file(tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    assert run(tmp_path, "register", "mnist", str(artifact), "--backend", "onnx").returncode == 0
    shown = run(tmp_path, "show", "mnist", "1")
    assert shown.returncode == 0, shown.stderr
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() in shown.stdout
    assert f"size_bytes:   {artifact.stat().st_size}" in shown.stdout
    assert "created_at:" in shown.stdout
    record = json.loads(run(tmp_path, "show", "mnist", "1", "--json").stdout)
    assert record["size_bytes"] == artifact.stat().st_size
    assert run(tmp_path, "promote", "mnist", "1").returncode == 0
    assert run(tmp_path, "split", "mnist", "1=100").returncode == 0
    listing = run(tmp_path, "list", "mnist")
    assert "production" in listing.stdout and "100" in listing.stdout
    assert run(tmp_path, "verify").returncode == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "nope", "1"), "unknown model"),
        (("register", "../etc", "{artifact}", "--backend", "onnx"), "invalid model name"),
        (("register", "m", "{artifact}", "--backend", "nope"), "unknown backend"),
        (("register", "m", "{png}", "--backend", "onnx"), "PNG"),
        (("split", "m", "1=50"), ""),
        (("promote", "m", "7"), ""),
        (("token", "create", "k", "--scope", "root"), ""),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    png = tmp_path / "x.onnx"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    out = run(tmp_path, *(a.format(artifact=artifact, png=png) for a in args))
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert needle in out.stderr


def test_verify_names_a_tampered_blob(tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    assert run(tmp_path, "register", "m", str(artifact), "--backend", "onnx").returncode == 0
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    blob = tmp_path / "data" / "artifacts" / "sha256" / digest[:2] / digest
    blob.chmod(0o600)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    out = run(tmp_path, "verify")
    assert out.returncode == 1 and "FAILED" in out.stdout and digest[:16] in out.stdout
