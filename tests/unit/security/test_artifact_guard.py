"""The artifact chokepoint: format vs backend, code-carrying formats for admins only, caps before allocation.

Pickle-bearing formats go through a backend's own inspector: here a fake of the torch plugin's, built on the
core's scan library with the fake policy of ``torchlike`` (the real one is tested in plugins/modelport-torch).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from service.errors import ArtifactRejected
from service.plugins import (
    ArtifactFile,
    ArtifactFormat,
    ArtifactInspector,
    ArtifactLimits,
    Backend,
    Engine,
    LoadRequest,
)
from service.security.artifact_guard import inspect_artifact
from service.security.pickle_scan import UnsafePickle, scan_pickle_file, scan_torch_zip
from service.security.sniff import sniff_format
from tests.helpers.onnx_models import make_mlp_onnx
from tests.unit.security.torchlike import (
    TORCHLIKE_POLICY,
    Payload,
    legacy_torch_save,
    state_dict_pickle,
    write_safetensors,
    write_torch_zip,
)


class ScanningInspector(ArtifactInspector):
    """Sniff, then pre-scan pickles under the fake policy; records what the guard handed it."""

    def __init__(self) -> None:
        self.seen: list[ArtifactFile] = []

    def inspect(self, artifact: ArtifactFile) -> ArtifactFormat:
        self.seen.append(artifact)
        fmt = sniff_format(artifact.path)
        limits = artifact.limits
        if fmt == "pickle":
            scan_pickle_file(artifact.path, policy=TORCHLIKE_POLICY).check_caps(
                artifact.size, max_tensors=limits.max_tensors
            )
        elif fmt == "torch_pickle_zip":
            members = scan_torch_zip(artifact.path, artifact.zip_entries, policy=TORCHLIKE_POLICY)
            members.check_caps(artifact.size, max_tensors=limits.max_tensors)
        return fmt


class WeightsBackend(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("pickle", "torch_pickle_zip", "safetensors")
    inspector: ClassVar[ArtifactInspector] = ScanningInspector()

    def load(self, request: LoadRequest) -> Engine:  # pragma: no cover - the guard is under test
        raise AssertionError


class OnnxLike(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("onnx",)

    def load(self, request: LoadRequest) -> Engine:  # pragma: no cover
        raise AssertionError


class CodeBackend(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("torchscript",)
    executes_code: ClassVar[bool] = True

    def load(self, request: LoadRequest) -> Engine:  # pragma: no cover
        raise AssertionError


class UnscannedPickles(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("pickle", "torch_pickle_zip", "safetensors")

    def load(self, request: LoadRequest) -> Engine:  # pragma: no cover
        raise AssertionError


def _guard(path: Path, backend: Backend, *, admin: bool = True, limits: ArtifactLimits | None = None) -> str:
    extra = {"limits": limits} if limits else {}
    return inspect_artifact(path, backend, backend_name="b", principal_is_admin=admin, **extra)


def test_genuine_weights_pass_in_every_container(tmp_path: Path) -> None:
    zipped = write_torch_zip(tmp_path / "w.pt", state_dict_pickle({"w": 4, "b": 2}), {"0": bytes(16), "1": bytes(8)})
    assert _guard(zipped, WeightsBackend()) == "torch_pickle_zip"
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(legacy_torch_save(state_dict_pickle({"w": 2}), ["0"], [bytes(8)]))
    assert _guard(legacy, WeightsBackend()) == "pickle"
    tensors = write_safetensors(tmp_path / "w.safetensors", {"w": np.ones((3, 2)), "b": np.zeros(2)})
    assert _guard(tensors, WeightsBackend()) == "safetensors"


def test_reduce_payload_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw = tmp_path / "weights.pkl"
    raw.write_bytes(pickle.dumps({"w": Payload(marker)}, protocol=2))
    with pytest.raises(UnsafePickle, match=r"'(posix|os)\.system'"):
        _guard(raw, WeightsBackend())
    zipped = write_torch_zip(tmp_path / "model.pt", pickle.dumps(Payload(marker), protocol=2), {})
    with pytest.raises(UnsafePickle, match=r"archive/data\.pkl: refused"):
        _guard(zipped, WeightsBackend())
    assert not marker.exists()


def test_format_must_match_the_backend(tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    make_mlp_onnx(good, in_dim=4, hidden=4, out=2)
    with pytest.raises(ArtifactRejected, match="backend 'b' cannot load a onnx artifact"):
        _guard(good, WeightsBackend())
    tensors = write_safetensors(tmp_path / "model.onnx", {"w": np.ones(2)})
    with pytest.raises(ArtifactRejected, match="cannot load a safetensors artifact"):
        _guard(tensors, OnnxLike())
    png = tmp_path / "model2.onnx"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ArtifactRejected, match="looks like a PNG image"):
        _guard(png, OnnxLike())


def test_code_carrying_formats_need_an_admin(tmp_path: Path) -> None:
    path = tmp_path / "ts.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/code/__torch__.py", "def forward(self, x): return x")
        archive.writestr("m/constants.pkl", pickle.dumps(()))
        archive.writestr("m/data.pkl", pickle.dumps({}))
    with pytest.raises(ArtifactRejected, match="only admin keys"):
        _guard(path, CodeBackend(), admin=False)
    assert _guard(path, CodeBackend(), admin=True) == "torchscript"


def test_onnx_external_data_refused_by_the_core(tmp_path: Path) -> None:
    import onnx

    model = tmp_path / "m.onnx"
    make_mlp_onnx(model, in_dim=4, hidden=4, out=2)
    onnx.save_model(
        onnx.load(str(model)),
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
    )
    with pytest.raises(ArtifactRejected, match="external file"):
        _guard(tmp_path / "ext.onnx", OnnxLike())
    hostile = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    for tensor in hostile.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../../etc/passwd"
    (tmp_path / "hostile.onnx").write_bytes(hostile.SerializeToString())
    with pytest.raises(ArtifactRejected, match="external file"):
        _guard(tmp_path / "hostile.onnx", OnnxLike())


def test_pickle_storages_declaring_more_than_the_file_refused_before_allocation(tmp_path: Path) -> None:
    # 10^12 float32 elements = 4 TB declared by a file of a few hundred bytes (legacy format allocates first)
    legacy = tmp_path / "bomb.pt"
    legacy.write_bytes(legacy_torch_save(state_dict_pickle({"w": 10**12}), ["0"], [bytes(8)]))
    with pytest.raises(ArtifactRejected, match="refused before allocating"):
        _guard(legacy, WeightsBackend())
    zipped = write_torch_zip(tmp_path / "bomb.zip", state_dict_pickle({"w": 10**6}), {"0": bytes(16)})
    with pytest.raises(ArtifactRejected, match="declares 4000000 bytes but the archive holds 16"):
        _guard(zipped, WeightsBackend())
    missing = write_torch_zip(tmp_path / "missing.zip", state_dict_pickle({"w": 2}), {})
    with pytest.raises(ArtifactRejected, match="has no data record"):
        _guard(missing, WeightsBackend())


def test_tensor_count_cap(tmp_path: Path) -> None:
    many = {f"t{i}": 1 for i in range(20)}
    zipped = write_torch_zip(tmp_path / "many.pt", state_dict_pickle(many), {str(i): bytes(4) for i in range(20)})
    assert _guard(zipped, WeightsBackend(), limits=ArtifactLimits(max_tensors=20)) == "torch_pickle_zip"
    with pytest.raises(ArtifactRejected, match="20 tensors"):
        _guard(zipped, WeightsBackend(), limits=ArtifactLimits(max_tensors=19))
    tensors = write_safetensors(tmp_path / "many.safetensors", {f"t{i}": np.ones(1) for i in range(20)})
    with pytest.raises(ArtifactRejected, match="20 tensors"):
        _guard(tensors, WeightsBackend(), limits=ArtifactLimits(max_tensors=19))


def test_zip_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", state_dict_pickle({"w": 1}))
        archive.writestr("archive/data/0", bytes(80 * 1024 * 1024))  # 80 MiB of zeros deflate to ~80 KiB
    with pytest.raises(ArtifactRejected, match="zip bomb"):
        _guard(path, WeightsBackend())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}}, "points outside the file"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, r"is 12 bytes but its data span is 8"),
        ({"w": {"dtype": "EVIL", "shape": [2], "data_offsets": [0, 8]}}, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, "negative dimension"),
        ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, "no valid shape"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, "no valid data_offsets"),
        ({"w": "just a string"}, "has no description"),
        ({"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, "overlap"),
    ],
)
def test_safetensors_header_lies_refused(tmp_path: Path, override: dict[str, object], message: str) -> None:
    path = write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(2), "b": np.ones(2)}, header_override=override)
    with pytest.raises(ArtifactRejected, match=message):
        _guard(path, WeightsBackend())


def test_pickles_never_reach_a_backend_without_an_inspector(tmp_path: Path) -> None:
    zipped = write_torch_zip(tmp_path / "w.pt", state_dict_pickle({"w": 4}), {"0": bytes(16)})
    raw = tmp_path / "w.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    for path in (zipped, raw):
        with pytest.raises(ArtifactRejected, match="brings no inspector to pre-scan their pickles"):
            _guard(path, UnscannedPickles())
    tensors = write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(2)})
    assert _guard(tensors, UnscannedPickles()) == "safetensors"


def test_the_inspector_gets_vetted_zip_entries_and_the_limits(tmp_path: Path) -> None:
    inspector = ScanningInspector()

    class Recording(WeightsBackend):
        pass

    Recording.inspector = inspector
    zipped = write_torch_zip(tmp_path / "w.pt", state_dict_pickle({"w": 4}), {"0": bytes(16)})
    limits = ArtifactLimits(max_tensors=7)
    assert _guard(zipped, Recording(), limits=limits) == "torch_pickle_zip"
    seen = inspector.seen[-1]
    assert seen.limits is limits and seen.size == zipped.stat().st_size
    assert seen.zip_entries is not None and {i.filename for i in seen.zip_entries} >= {"archive/data.pkl"}
    tensors = write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(2)})
    _guard(tensors, Recording())
    assert inspector.seen[-1].zip_entries is None


class _Refusing(ArtifactInspector):
    def inspect(self, artifact: ArtifactFile) -> ArtifactFormat:
        raise ArtifactRejected("not a linear model: bad magic")


class _Crashing(ArtifactInspector):
    def inspect(self, artifact: ArtifactFile) -> ArtifactFormat:
        raise KeyError("layers")


class _Claims(ArtifactInspector):
    def __init__(self, fmt: object) -> None:
        self.fmt = fmt

    def inspect(self, artifact: ArtifactFile) -> ArtifactFormat:
        return self.fmt  # type: ignore[return-value]


def _backend_with(inspector: ArtifactInspector, formats: tuple[str, ...] = ("linear_json",)) -> Backend:
    class Custom(Backend):
        def load(self, request: LoadRequest) -> Engine:  # pragma: no cover
            raise AssertionError

    Custom.formats = formats
    Custom.inspector = inspector
    return Custom()


def test_a_plugin_inspector_names_new_formats_and_its_refusals_reach_the_uploader(tmp_path: Path) -> None:
    path = tmp_path / "model.lin"
    path.write_bytes(b"LINEAR1\n{}")
    assert _guard(path, _backend_with(_Claims("linear_json"))) == "linear_json"
    with pytest.raises(ArtifactRejected, match="^not a linear model: bad magic$"):
        _guard(path, _backend_with(_Refusing()))
    with pytest.raises(ArtifactRejected, match="backend 'b' could not inspect the artifact: KeyError: 'layers'"):
        _guard(path, _backend_with(_Crashing()))
    with pytest.raises(ArtifactRejected, match="returned None, not a format id"):
        _guard(path, _backend_with(_Claims(None)))
    with pytest.raises(ArtifactRejected, match=r"cannot load a gguf artifact \(it loads: linear_json\)"):
        _guard(path, _backend_with(_Claims("gguf")))


def test_core_checks_hold_whoever_names_the_format(tmp_path: Path) -> None:
    lying = write_safetensors(
        tmp_path / "w.bin",
        {"w": np.ones(2)},
        header_override={"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
    )
    with pytest.raises(ArtifactRejected, match="is 12 bytes but its data span is 8"):
        _guard(lying, _backend_with(_Claims("safetensors"), ("safetensors",)))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x/blob", bytes(80 * 1024 * 1024))
    never = ScanningInspector()
    with pytest.raises(ArtifactRejected, match="zip bomb"):
        _guard(bomb, _backend_with(never))
    assert never.seen == []


def test_the_guard_branches_on_no_backend_format_name() -> None:
    import ast

    from service.security import artifact_guard

    backend_formats = {"torchscript", "torch_export", "torch_pickle_zip", "pickle"}
    tree = ast.parse(Path(artifact_guard.__file__).read_text())
    named = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in backend_formats}
    assert not named, f"artifact_guard names backend formats {sorted(named)}: that decision belongs to the plugins"
