"""The production image, built for real by ``scripts/build-image`` (both variants) and smoke-tested from its root.

Containers cannot be started on the development and CI machines (the OCI runtime is refused ``setrlimit``), so each
test creates a container without starting it, mounts its root filesystem (``podman mount``), and runs the image's
own ``modelport serve`` in it with ``chroot --userspec=10001:10001``: the image's interpreter, venv, environment and
unprivileged user, on the host's network. Opt-in (a build takes minutes): ``MODELPORT_TEST_IMAGE=1``, root, podman,
and debootstrap or a cached base image; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ADMIN_TOKEN, free_port, wait_ready

pytestmark = [pytest.mark.image, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-image"
BASE_IMAGE = "localhost/modelport-base:bookworm"
UID = 10001
RESULT_LINE = re.compile(r"^image (?P<tag>\S+): (?P<mb>\d+) MB, built in (?P<seconds>\d+) s$", re.MULTILINE)


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    size_mb: int
    build_s: int


def _skip_reason() -> str | None:
    if os.environ.get("MODELPORT_TEST_IMAGE") != "1":
        return "image build is opt-in (minutes): set MODELPORT_TEST_IMAGE=1 (needs root, podman, debootstrap)"
    if shutil.which("podman") is None:
        return "podman not installed (apt-get install podman)"
    if os.geteuid() != 0:
        return "mounting an image's root and chroot into it need root"
    if shutil.which("chroot") is None:
        return "chroot not found (coreutils)"
    cached = subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode == 0
    if not cached and shutil.which("debootstrap") is None:
        return f"no {BASE_IMAGE} and no debootstrap to make it (apt-get install debootstrap)"
    return None


@pytest.fixture(scope="module")
def images() -> dict[str, BuiltImage]:
    """Both variants, built (or rebuilt from podman's layer cache) by the script; its last lines give the sizes."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        [str(BUILD_SCRIPT), "--variant", "all"], cwd=ROOT, capture_output=True, text=True, timeout=2400, check=False
    )
    assert result.returncode == 0, f"build-image failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    built = {
        match["tag"]: BuiltImage(match["tag"], int(match["mb"]), int(match["seconds"]))
        for match in RESULT_LINE.finditer(result.stdout)
    }
    assert len(built) == 2, result.stdout
    full = next(image for tag, image in built.items() if not tag.endswith("-onnx"))
    onnx = next(image for tag, image in built.items() if tag.endswith("-onnx"))
    return {"full": full, "onnx": onnx}


def _podman(*args: str) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@contextmanager
def image_root(tag: str) -> Iterator[Path]:
    """The root filesystem of a created (never started) container of ``tag``, with /proc mounted; removed after."""
    container = _podman("create", tag)
    proc: Path | None = None
    try:
        root = Path(_podman("mount", container))
        proc = root / "proc"
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True, timeout=30)
        yield root
    finally:
        if proc is not None:
            subprocess.run(["umount", "-l", str(proc)], check=False, timeout=30)
        subprocess.run(["podman", "umount", container], capture_output=True, check=False, timeout=60)
        subprocess.run(["podman", "rm", "-f", container], capture_output=True, check=False, timeout=60)


def image_env(tag: str) -> dict[str, str]:
    """The image's own environment (Containerfile ENV), as a container would get it."""
    entries = json.loads(_podman("image", "inspect", "--format", "{{json .Config.Env}}", tag))
    return dict(entry.split("=", 1) for entry in entries)


def in_image(root: Path, tag: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` inside the image's root as the image's unprivileged user."""
    chroot = shutil.which("chroot")
    assert chroot
    return subprocess.run(
        [chroot, f"--userspec={UID}:{UID}", str(root), *command],
        env=image_env(tag),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def serve_from(root: Path, tag: str, log_path: Path) -> Iterator[tuple[str, int]]:
    """``modelport serve`` from the image (its ENTRYPOINT and CMD, host and port overridden for loopback)."""
    chroot = shutil.which("chroot")
    assert chroot
    port = free_port()
    env = {
        **image_env(tag),
        "MODELPORT_HOST": "127.0.0.1",
        "MODELPORT_PORT": str(port),
        "MODELPORT_GRPC_PORT": "0",
        "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [chroot, f"--userspec={UID}:{UID}", str(root), "modelport", "serve", "--host", "127.0.0.1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, log_path, timeout=180.0)
        yield base_url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _uids(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return {int(value) for value in line.split()[1:]}


def _register(base_url: str, model: str, artifact: Path, manifest: dict[str, object]) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base_url, timeout=120.0, headers=headers) as client, artifact.open("rb") as fh:
        reply = client.post(
            f"/admin/models/{model}/versions",
            files={"artifact": (artifact.name, fh, "application/octet-stream")},
            data={"manifest": json.dumps(manifest)},
        )
    assert reply.status_code == 201, reply.text
    record: dict[str, object] = reply.json()
    return record


def _infer(base_url: str, model: str, name: str, x: np.ndarray) -> dict[str, object]:
    body = {"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    reply = httpx.post(f"{base_url}/v2/models/{model}/versions/1/infer", json=body, timeout=60.0)
    assert reply.status_code == 200, reply.text
    result: dict[str, object] = reply.json()
    return result


def _check_serves_onnx(base_url: str, tmp_path: Path) -> None:
    artifact = tmp_path / "mlp.onnx"
    weights = make_mlp_onnx(artifact, in_dim=8, hidden=4, out=3, seed=3)
    record = _register(base_url, "mlp", artifact, {"backend": "onnx"})
    assert record["version"] == "1"
    x = np.random.default_rng(0).random((2, 8), dtype=np.float32)
    reply = _infer(base_url, "mlp", "input", x)
    assert reply["model_version"] == "1"
    outputs = reply["outputs"]
    assert isinstance(outputs, list)
    got = np.asarray(outputs[0]["data"], dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(got, weights.forward(x), rtol=1e-4, atol=1e-5)


def _check_common(root: Path, image: BuiltImage, tmp_path: Path) -> None:
    assert image.size_mb > 0
    inspected = int(_podman("image", "inspect", "--format", "{{.Size}}", image.tag))
    assert image.size_mb == inspected // 1_000_000, "the script reports podman's own size"
    assert _podman("image", "inspect", "--format", "{{.Config.User}}", image.tag) == f"{UID}:{UID}"
    with serve_from(root, image.tag, tmp_path / "serve.log") as (base_url, pid):
        assert _uids(pid) == {UID}, "the server runs as the image's unprivileged user"
        assert httpx.get(f"{base_url}/v2/health/ready", timeout=10.0).status_code == 200
        _check_serves_onnx(base_url, tmp_path)
        assert httpx.get(f"{base_url}/ui", timeout=10.0).status_code == 200
    assert not list(root.glob("opt/venv/lib/python3*/site-packages/pip")), "no pip in the runtime image"


def test_full_image_builds_serves_onnx_and_torch(images: dict[str, BuiltImage], tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="the TorchScript artifact is made with the host's torch")
    image = images["full"]
    with image_root(image.tag) as root:
        _check_common(root, image, tmp_path)
        probe = in_image(root, image.tag, "python", "-c", "import torch; print(torch.__version__)")
        assert probe.returncode == 0 and probe.stdout.strip() == "2.13.0+cpu", probe.stderr
        with serve_from(root, image.tag, tmp_path / "serve-torch.log") as (base_url, _pid):
            artifact = tmp_path / "linear.ts"
            module = torch.nn.Linear(4, 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(torch.jit.script(module), str(artifact))
            signature = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]}
            _register(base_url, "linear", artifact, {"backend": "torchscript", "signature": signature})
            x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
            outputs = _infer(base_url, "linear", "input", x)["outputs"]
            assert isinstance(outputs, list)
            with torch.inference_mode():
                expected = module(torch.from_numpy(x)).numpy()
            got = np.asarray(outputs[0]["data"], dtype=np.float32).reshape(3, 2)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_onnx_image_has_no_torch_and_serves(images: dict[str, BuiltImage], tmp_path: Path) -> None:
    image = images["onnx"]
    assert image.size_mb < images["full"].size_mb
    with image_root(image.tag) as root:
        assert not list(root.glob("opt/venv/lib/python3*/site-packages/torch")), "torch in the ONNX-only image"
        probe = in_image(root, image.tag, "python", "-c", "import importlib.util as u; print(u.find_spec('torch'))")
        assert probe.returncode == 0 and probe.stdout.strip() == "None", probe.stdout + probe.stderr
        plugins = in_image(root, image.tag, "modelport", "plugins", "--json")
        assert plugins.returncode == 0, plugins.stderr
        backends = {entry["name"] for entry in json.loads(plugins.stdout) if entry["kind"] == "backend"}
        assert backends == {"onnx"}, plugins.stdout
        _check_common(root, image, tmp_path)
