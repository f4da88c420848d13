"""``modelport register NAME FILE --backend onnx`` then ``modelport show NAME 1``: the sha256 and size equal
those of the file, created_at is printed, and the blob in the store verifies. Real processes, a real tiny
ONNX model, the installed onnx plugin, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.onnx_models import make_mlp_onnx

pytestmark = pytest.mark.integration


def _modelport(tmp_path: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "MODELPORT_DATA_DIR": str(tmp_path / "data"),
        "MODELPORT_DATABASE_URL": db_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "service", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
    )


def test_register_then_show(db_url: str, tmp_path: Path) -> None:
    artifact = tmp_path / "mlp.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()

    upgraded = _modelport(tmp_path, db_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    registered = _modelport(tmp_path, db_url, "register", "mlp", str(artifact), "--backend", "onnx")
    assert registered.returncode == 0, registered.stderr
    assert f"registered mlp version 1 (sha256 {digest}" in registered.stdout

    shown = _modelport(tmp_path, db_url, "show", "mlp", "1")
    assert shown.returncode == 0, shown.stderr
    fields = {
        k.strip(): v.strip() for k, v in (line.split(":", 1) for line in shown.stdout.splitlines() if ":" in line)
    }
    assert fields["sha256"] == digest
    assert fields["size_bytes"] == str(artifact.stat().st_size)
    assert fields["created_at"].endswith("+00:00")
    assert f"size_bytes:   {artifact.stat().st_size}" in shown.stdout  # the aligned human layout

    as_json = json.loads(_modelport(tmp_path, db_url, "show", "mlp", "1", "--json").stdout)
    assert as_json["sha256"] == digest and as_json["backend"] == "onnx"
    assert [spec["shape"] for spec in as_json["signature"]["inputs"]] == [[-1, 8]]
    blob = tmp_path / "data" / "artifacts" / as_json["storage_path"]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest

    assert _modelport(tmp_path, db_url, "promote", "mlp", "1").returncode == 0
    assert _modelport(tmp_path, db_url, "split", "mlp", "1=100").returncode == 0
    listing = _modelport(tmp_path, db_url, "list", "mlp")
    assert "production" in listing.stdout and "100" in listing.stdout

    verified = _modelport(tmp_path, db_url, "verify")
    assert verified.returncode == 0 and "1 ok, 0 failed" in verified.stderr
    blob.chmod(0o600)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    tampered = _modelport(tmp_path, db_url, "verify")
    assert tampered.returncode == 1 and "FAILED" in tampered.stdout and digest[:16] in tampered.stdout
    assert f"mlp version 1 ({digest})" in tampered.stderr


def test_register_refuses_a_file_that_is_not_a_model(db_url: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not onnx" * 10)
    assert _modelport(tmp_path, db_url, "db", "upgrade").returncode == 0
    refused = _modelport(tmp_path, db_url, "register", "mlp", str(junk), "--backend", "onnx")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    listed = _modelport(tmp_path, db_url, "list", "--json")
    assert json.loads(listed.stdout) == {"models": []}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "nope", "1"), "unknown model"),
        (("register", "../etc", "{artifact}", "--backend", "onnx"), "invalid model name"),
        (("register", "m", "{artifact}", "--backend", "nope"), "unknown backend"),
        (("register", "m", "{png}", "--backend", "onnx"), "PNG"),
        (("register", "m", "{artifact}", "--backend", "onnx", "--version", "../1"), "invalid version label"),
        (("split", "m", "1=50"), "sum to 100"),
        (("promote", "m", "7"), "unknown model"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'registry.db'}"
    artifact = tmp_path / "m.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    png = tmp_path / "x.onnx"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    out = _modelport(tmp_path, url, *(a.format(artifact=artifact, png=png) for a in args))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert needle in out.stderr
