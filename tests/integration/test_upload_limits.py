"""Registration uploads stream under caps (issue 12 item 3): a huge ``manifest`` field or an artifact past
``MAX_ARTIFACT_BYTES`` is refused while it streams, without the server holding it, and leaves no temp file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ADMIN_TOKEN, ServerProcess, run_server

pytestmark = pytest.mark.integration

BOUNDARY = "modelport-test-boundary"
LIMITS = {"MODELPORT_MAX_MANIFEST_BYTES": str(64 * 1024), "MODELPORT_MAX_ARTIFACT_BYTES": str(1 << 20)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("uploads") / "data", extra_env=LIMITS) as process:
        yield process


def _part(name: str, headers: str = "") -> bytes:
    filename = '; filename="model.onnx"' if name == "artifact" else ""
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n{headers}\r\n'.encode()


def _stream(*pieces: bytes | tuple[bytes, int]) -> Iterator[bytes]:
    """The body, with ``(chunk, n)`` repeated n times so that the client never holds it whole."""
    for piece in pieces:
        if isinstance(piece, tuple):
            chunk, times = piece
            for _ in range(times):
                yield chunk
        else:
            yield piece


def _upload(server: ServerProcess, body: Iterator[bytes]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        try:
            return client.post("/admin/models/up/versions", content=body, headers=headers)
        except httpx.WriteError:  # the server answered and closed while we were still sending
            pytest.fail("the server closed the connection without an answer")


def _rss_kb(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _temp_files(server: ServerProcess) -> list[Path]:
    return list((Path(server.env["MODELPORT_DATA_DIR"]) / "artifacts" / "tmp").glob("*.part"))


def test_a_huge_manifest_field_is_refused_while_it_streams(server: ServerProcess) -> None:
    before = _rss_kb(server)
    started = time.monotonic()
    reply = _upload(
        server, _stream(_part("manifest"), (b" " * (1 << 20), 200), b"{}\r\n", f"--{BOUNDARY}--\r\n".encode())
    )
    assert reply.status_code == 413, reply.text
    assert "manifest exceeds the limit of 65536 bytes" in reply.json()["error"]
    assert time.monotonic() - started < 30
    assert _rss_kb(server) - before < 50 * 1024  # 200 MB sent; the server held at most a chunk of it


def test_an_artifact_past_the_cap_is_refused_and_leaves_no_temp_file(server: ServerProcess) -> None:
    manifest = json.dumps({"backend": "onnx"}).encode()
    body = _stream(_part("manifest"), manifest, b"\r\n", _part("artifact"), (b"\0" * 65536, 64), b"\r\n")
    reply = _upload(server, body)
    assert reply.status_code == 413, reply.text
    assert "artifact exceeds the limit of 1048576 bytes" in reply.json()["error"]
    assert _temp_files(server) == []


@pytest.mark.parametrize(
    ("headers", "payload", "needle"),
    [
        ("Content-Type: text/plain; charset=bogus-charset\r\n", b'{"backend": "onnx"}', "must be UTF-8 JSON"),
        ("", b'{"backend": "\xff"}', "not valid UTF-8"),
    ],
)
def test_a_manifest_that_is_not_utf8_is_a_400(server: ServerProcess, headers: str, payload: bytes, needle: str) -> None:
    body = _stream(
        _part("manifest", headers), payload, b"\r\n", _part("artifact"), b"abc\r\n", f"--{BOUNDARY}--\r\n".encode()
    )
    reply = _upload(server, body)
    assert reply.status_code == 400 and needle in reply.json()["error"], reply.text


def test_an_unterminated_or_incomplete_form_is_a_400(server: ServerProcess) -> None:
    reply = _upload(server, _stream(_part("manifest"), b'{"backend": "onnx"}'))
    assert reply.status_code == 400 and "malformed multipart body" in reply.json()["error"], reply.text
    reply = _upload(server, _stream(_part("manifest"), b'{"backend": "onnx"}\r\n', f"--{BOUNDARY}--\r\n".encode()))
    assert reply.status_code == 400 and "needs an 'artifact' file" in reply.json()["error"], reply.text
    assert _temp_files(server) == []


def test_an_upload_under_the_caps_registers(server: ServerProcess, tmp_path: Path) -> None:
    artifact = tmp_path / "small.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3)
    record = server.register_onnx("up", artifact)
    assert record["version"] == "1" and record["size_bytes"] == artifact.stat().st_size
    assert _temp_files(server) == []


def test_an_admin_json_body_past_the_manifest_cap_is_413(server: ServerProcess) -> None:
    with server.admin() as client:
        reply = client.put("/admin/models/up/traffic", content=b'{"splits": [' + b" " * (128 * 1024) + b"]}")
    assert reply.status_code == 413, reply.text


def test_start_up_removes_temp_files_of_killed_uploads(tmp_path: Path) -> None:
    """Issue 12 item 8: ``.part`` files a killed process left behind do not outlive the next start."""
    temp = tmp_path / "data" / "artifacts" / "tmp"
    temp.mkdir(parents=True)
    abandoned, live = temp / "upload-1-1.part", temp / "form-2-aa.part"
    abandoned.write_bytes(b"\0" * 4096)
    live.write_bytes(b"\0" * 16)
    hour_ago = time.time() - 3600
    os.utime(abandoned, (hour_ago, hour_ago))
    with run_server(tmp_path / "data"):
        assert not abandoned.exists()
        assert live.exists()  # recently written: it may belong to another replica's upload in flight


# -- refused uploads leave no blob (issue 12) -----------------------------------------------------------------


def _blobs(server: ServerProcess) -> set[str]:
    root = Path(server.env["MODELPORT_DATA_DIR"]) / "artifacts" / "sha256"
    return {path.name for path in root.glob("*/*")}


def _log_of_zero(path: Path) -> Path:
    """A model whose output on zeros is -inf: it loads, and the smoke test refuses it."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Log", ["x"], ["y"])], "log", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _register(server: ServerProcess, model: str, artifact: Path, manifest: Mapping[str, object]) -> httpx.Response:
    with server.admin() as client, artifact.open("rb") as fh:
        return client.post(
            f"/admin/models/{model}/versions",
            files={"artifact": (artifact.name, fh, "application/octet-stream")},
            data={"manifest": json.dumps({"backend": "onnx", **manifest})},
        )


def test_refused_uploads_leave_no_blob(server: ServerProcess, tmp_path: Path) -> None:
    """Smoke-test failure, a format the backend refuses, processing that does not fit: each is refused after its
    bytes were stored, and each blob is gone when the reply arrives (it used to stay until ``modelport gc``)."""
    before = _blobs(server)
    not_onnx = tmp_path / "image.onnx"
    not_onnx.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    mlp = tmp_path / "mlp.onnx"
    make_mlp_onnx(mlp, in_dim=8, hidden=4, out=3, seed=7)
    refusals = [
        (_log_of_zero(tmp_path / "log.onnx"), {}, "not finite"),
        (not_onnx, {}, ""),
        (mlp, {"postprocessing": {"type": "classification", "labels": ["a", "b"]}}, "label"),
    ]
    for artifact, manifest, needle in refusals:
        reply = _register(server, "refused", artifact, manifest)
        assert reply.status_code in (400, 422), reply.text
        assert needle in reply.json()["error"], reply.text
        assert _blobs(server) == before, f"{artifact.name}: its blob stayed"
    assert _temp_files(server) == []


def test_a_refused_upload_of_registered_bytes_keeps_the_blob(server: ServerProcess, tmp_path: Path) -> None:
    """The same bytes as a registered version: a label conflict (409, after the blob was stored) and a refused
    manifest on another model leave the blob, and the registered version still loads from it."""
    artifact = tmp_path / "kept.onnx"
    make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3, seed=8)
    created = _register(server, "kept", artifact, {"version": "v1"})
    assert created.status_code == 201, created.text
    sha256 = created.json()["sha256"]
    conflict = _register(server, "kept", artifact, {"version": "v1"})
    assert conflict.status_code == 409, conflict.text
    labels = {"postprocessing": {"type": "classification", "labels": ["only-one"]}}
    refused = _register(server, "elsewhere", artifact, labels)
    assert refused.status_code in (400, 422), refused.text
    assert sha256 in _blobs(server)
    with server.client() as client:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}
        reply = client.post("/v2/models/kept/versions/v1/infer", json=body)
    assert reply.status_code == 200, reply.text
