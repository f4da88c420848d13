"""The artifact chokepoint: format sniffing, pickle pre-scan (with property tests), backend/format matching."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ArtifactRejected
from service.plugins import Backend, Engine, LoadRequest
from service.security.artifact_guard import inspect_artifact
from service.security.pickle_scan import UnsafePickle, scan_pickle_bytes
from service.security.sniff import sniff_format
from tests.helpers.onnx_models import make_mlp_onnx


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class PickleBackend(Backend):
    formats: ClassVar = ("pickle", "torch_pickle_zip", "safetensors")

    def load(self, request: LoadRequest) -> Engine:  # pragma: no cover - never reached in these tests
        raise AssertionError("guard should have refused first")


class CodeBackend(Backend):
    formats: ClassVar = ("torchscript",)
    executes_code = True

    def load(self, request: LoadRequest) -> Engine:  # pragma: no cover
        raise AssertionError


def test_reduce_payload_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": Payload(marker)}, protocol=4))
    with pytest.raises(UnsafePickle, match="posix.system|os.system"):
        inspect_artifact(path, PickleBackend(), backend_name="pytorch", principal_is_admin=True)
    assert not marker.exists()


def test_payload_inside_torch_zip_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Payload(marker), protocol=2))
        archive.writestr("archive/version", "3")
    assert sniff_format(path) == "torch_pickle_zip"
    with pytest.raises(UnsafePickle):
        inspect_artifact(path, PickleBackend(), backend_name="pytorch", principal_is_admin=True)
    assert not marker.exists()


def test_plain_containers_pass() -> None:
    assert scan_pickle_bytes(pickle.dumps(OrderedDict(a=[1, 2.0, "x", (3, None)]), protocol=4)) == 0


def test_png_named_onnx_truncated_and_mismatched(tmp_path: Path) -> None:
    png = tmp_path / "model.onnx"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ArtifactRejected, match="PNG"):
        sniff_format(png)
    good = tmp_path / "good.onnx"
    make_mlp_onnx(good, in_dim=4, hidden=4, out=2)
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArtifactRejected):
        sniff_format(truncated)
    with pytest.raises(ArtifactRejected, match="cannot load a onnx artifact"):
        inspect_artifact(good, PickleBackend(), backend_name="pytorch", principal_is_admin=True)


def test_code_formats_need_admin(tmp_path: Path) -> None:
    path = tmp_path / "ts.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/code/__torch__.py", "def forward(self, x): return x")
        archive.writestr("m/constants.pkl", pickle.dumps(()))
        archive.writestr("m/data.pkl", pickle.dumps({}))
    with pytest.raises(ArtifactRejected, match="admin"):
        inspect_artifact(path, CodeBackend(), backend_name="torchscript", principal_is_admin=False)
    assert inspect_artifact(path, CodeBackend(), backend_name="torchscript", principal_is_admin=True) == "torchscript"


def test_zip_slip_names_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../etc/cron.d/x", "boom")
    with pytest.raises(ArtifactRejected, match="escape"):
        sniff_format(path)


def test_safetensors_offsets_outside_file_refused(tmp_path: Path) -> None:
    header = b'{"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}}'
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    with pytest.raises(ArtifactRejected, match="outside"):
        inspect_artifact(path, PickleBackend(), backend_name="pytorch", principal_is_admin=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_scan_random_bytes_only_declared_errors(data: bytes) -> None:
    with contextlib.suppress(ArtifactRejected):
        scan_pickle_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256), st.integers(0, 200))
def test_scan_mutated_pickles_only_declared_errors(noise: bytes, cut: int) -> None:
    base = pickle.dumps({"a": [1, 2, {"b": (3.0, "x")}]}, protocol=4)
    mutated = base[:cut] + noise + base[cut:]
    with contextlib.suppress(ArtifactRejected):
        scan_pickle_bytes(mutated)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=256))
def test_sniff_random_bytes_only_declared_errors(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("sniff") / "blob"
    path.write_bytes(data)
    with contextlib.suppress(ArtifactRejected):
        sniff_format(path)


def test_io_bytes_pickles_never_unpickled() -> None:
    # scanning never calls an unpickler: an object whose reconstruction would raise is just scanned
    blob = io.BytesIO()
    pickle.dump(Payload(Path("/nonexistent/marker")), blob, protocol=5)
    with pytest.raises(UnsafePickle):
        scan_pickle_bytes(blob.getvalue())
