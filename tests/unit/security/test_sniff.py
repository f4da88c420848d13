"""Format sniffing from the bytes: every format we load is recognised, everything else is named and refused."""

from __future__ import annotations

import contextlib
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from service.errors import ArtifactRejected
from service.security.sniff import onnx_external_tensor, safe_zip_entries, sniff_format
from tests.helpers.onnx_models import make_mlp_onnx
from tests.unit.security.torchlike import state_dict_pickle, write_safetensors, write_torch_zip


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_each_format_recognised(tmp_path: Path) -> None:
    onnx_path = tmp_path / "blob1"
    make_mlp_onnx(onnx_path, in_dim=4, hidden=4, out=2)
    assert sniff_format(onnx_path) == "onnx"
    state = write_torch_zip(tmp_path / "blob2", state_dict_pickle({"w": 2}), {"0": b"\x00" * 8})
    assert sniff_format(state) == "torch_pickle_zip"
    assert sniff_format(write_safetensors(tmp_path / "blob3", {"w": np.ones((2, 2))})) == "safetensors"
    assert sniff_format(_write(tmp_path / "blob4", pickle.dumps({"a": 1}, protocol=2))) == "pickle"
    script = tmp_path / "blob5"
    with zipfile.ZipFile(script, "w") as archive:
        archive.writestr("m/code/__torch__.py", "def forward(self, x): return x")
        archive.writestr("m/constants.pkl", pickle.dumps(()))
        archive.writestr("m/data.pkl", pickle.dumps({}))
    assert sniff_format(script) == "torchscript"
    exported = tmp_path / "blob6"
    with zipfile.ZipFile(exported, "w") as archive:
        archive.writestr("ep/archive_format", "pt2")
        archive.writestr("ep/models/model.json", "{}")
        archive.writestr("ep/data/weights/weight_0", b"\x00" * 4)
    assert sniff_format(exported) == "torch_export"


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG image"),
        (b"\xff\xd8\xff\xe0" + bytes(100), "JPEG image"),
        (b"%PDF-1.7\n" + bytes(100), "PDF document"),
        (b"\x7fELF\x02\x01\x01" + bytes(100), "ELF executable"),
        (b"\x1f\x8b\x08\x00" + bytes(100), "gzip archive"),
        (b"<html><body>model</body></html>", "HTML"),
        (b'{"weights": [1, 2, 3]}', "JSON document"),
        (b"\x93NUMPY\x01\x00" + bytes(100), "NumPy"),
    ],
)
def test_foreign_files_named_by_what_they_look_like(tmp_path: Path, data: bytes, looks_like: str) -> None:
    with pytest.raises(ArtifactRejected, match=f"not a recognised model artifact: looks like .*{looks_like}"):
        sniff_format(_write(tmp_path / "model.onnx", data))


def test_text_and_tiny_files_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactRejected, match="not a recognised model artifact"):
        sniff_format(_write(tmp_path / "m.onnx", b"just some text, definitely not a model\n"))
    with pytest.raises(ArtifactRejected, match="truncated or empty"):
        sniff_format(_write(tmp_path / "m.pt", b"\x08\x07"))


def test_truncated_files_refused_with_the_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    make_mlp_onnx(good, in_dim=8, hidden=8, out=2)
    raw = good.read_bytes()
    for cut in (len(raw) // 3, len(raw) // 2, len(raw) - 7):
        with pytest.raises(ArtifactRejected, match="truncated or damaged ONNX"):
            sniff_format(_write(tmp_path / "cut.onnx", raw[:cut]))
    torch_zip = write_torch_zip(tmp_path / "w.pt", state_dict_pickle({"w": 2}), {"0": b"\x00" * 8})
    with pytest.raises(ArtifactRejected, match="damaged or truncated zip"):
        sniff_format(_write(tmp_path / "cut.pt", torch_zip.read_bytes()[:-30]))
    tensors = write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(4)})
    with pytest.raises(ArtifactRejected, match="truncated"):
        sniff_format(_write(tmp_path / "cut.safetensors", tensors.read_bytes()[:20]))


def test_safetensors_header_must_be_a_json_object(tmp_path: Path) -> None:
    bad = b"{not json at all}"
    with pytest.raises(ArtifactRejected, match="not valid JSON"):
        sniff_format(_write(tmp_path / "a", struct.pack("<Q", len(bad)) + bad + bytes(8)))


def test_zip_entries_that_escape_or_hide_refused(tmp_path: Path) -> None:
    for name, reason in (
        ("../../etc/cron.d/x", r"escape the archive"),
        ("/etc/passwd", "absolute path"),
        ("archive\\..\\x", "backslash"),
        ("C:/windows/x", "absolute path"),
    ):
        path = tmp_path / "evil.pt"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(name, "boom")
        with pytest.raises(ArtifactRejected, match=reason):
            sniff_format(path)
    duplicate = tmp_path / "dup.pt"
    with zipfile.ZipFile(duplicate, "w") as archive:
        archive.writestr("a/data.pkl", pickle.dumps({}))
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("a/data.pkl", pickle.dumps({"x": 1}))
    with pytest.raises(ArtifactRejected, match="appears twice"):
        safe_zip_entries(duplicate)


def test_zip_that_is_no_torch_format_refused(tmp_path: Path) -> None:
    path = tmp_path / "docs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ArtifactRejected, match="not a TorchScript"):
        sniff_format(path)


def _external_model(tmp_path: Path, *, in_constant: bool = False) -> Path:
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    if in_constant:
        nodes = [
            helper.make_node("Constant", [], ["w"], value=weight),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ]
        initializers = []
    else:
        nodes, initializers = [helper.make_node("MatMul", ["x", "w"], ["y"])], [weight]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
        convert_attribute=in_constant,  # Constant-node tensors move out too
    )
    return path


def test_onnx_external_data_found_wherever_it_hides(tmp_path: Path) -> None:
    assert onnx_external_tensor(_external_model(tmp_path)) == "w"
    (tmp_path / "sub").mkdir()
    assert onnx_external_tensor(_external_model(tmp_path / "sub", in_constant=True)) is not None
    inline = tmp_path / "inline.onnx"
    make_mlp_onnx(inline, in_dim=4, hidden=4, out=2)
    assert onnx_external_tensor(inline) is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=256))
def test_random_bytes_only_raise_the_declared_error(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "blob", data)
    with contextlib.suppress(ArtifactRejected):
        sniff_format(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 4000), noise=st.binary(max_size=16))
def test_damaged_onnx_only_raises_the_declared_error(tmp_path: Path, cut: int, noise: bytes) -> None:
    good = tmp_path / "good.onnx"
    if not good.exists():
        make_mlp_onnx(good, in_dim=8, hidden=8, out=2)
    raw = good.read_bytes()
    path = _write(tmp_path / "damaged", raw[:cut] + noise + raw[cut + len(noise) :])
    with contextlib.suppress(ArtifactRejected):
        if sniff_format(path) == "onnx":
            onnx_external_tensor(path)
