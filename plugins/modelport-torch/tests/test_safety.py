"""The torch plugin's own artifact decisions: its pickle allow-list and the inspector in front of ``pytorch``.

The core knows no torch names: which formats are pre-scanned, and what their pickles may reference, is
decided here and enforced through the core's scan library.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from modelport_torch import StateDictBackend, TorchExportBackend, TorchScriptBackend
from modelport_torch.safety import TORCH_PICKLE_POLICY, TorchWeightsInspector
from service.errors import ArtifactRejected
from service.plugins import ArtifactFile, ArtifactLimits, PluginRegistry
from service.security.artifact_guard import inspect_artifact


def test_allowlist_mirrors_torch_weights_only_for_dense_tensors() -> None:
    allowed = TORCH_PICKLE_POLICY.allowed_globals
    for name in (
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch.FloatStorage",
        "torch.storage.UntypedStorage",
        "collections.OrderedDict",
        "torch.Size",
        "torch.device",
        "torch.float32",
        "torch.bfloat16",
    ):
        assert name in allowed
    assert not any(name.startswith(("os.", "builtins.eval", "subprocess")) for name in allowed)
    assert set(TORCH_PICKLE_POLICY.storage_itemsize) <= allowed


@pytest.mark.parametrize("legacy", [False, True])
def test_real_state_dicts_of_every_dtype_pass_the_inspector(tmp_path: Path, legacy: bool) -> None:
    dtypes = (torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.uint8, torch.bool)
    state = {f"t{i}": torch.zeros(3, dtype=dtype) for i, dtype in enumerate(dtypes)}
    state["param"] = torch.nn.Parameter(torch.ones(2, 2))
    path = tmp_path / "w.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    fmt = inspect_artifact(path, StateDictBackend(), backend_name="pytorch", principal_is_admin=False)
    assert fmt == ("pickle" if legacy else "torch_pickle_zip")


def test_inspector_applies_the_caps_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(2), "b": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as archive:
        entries = tuple(archive.infolist())
    inspector = TorchWeightsInspector()
    size = path.stat().st_size
    assert inspector.inspect(ArtifactFile(path, size, ArtifactLimits(max_tensors=2), entries)) == "torch_pickle_zip"
    with pytest.raises(ArtifactRejected, match="declares 2 tensors"):
        inspector.inspect(ArtifactFile(path, size, ArtifactLimits(max_tensors=1), entries))
    with pytest.raises(ArtifactRejected, match="over the limit"):
        inspector.inspect(ArtifactFile(path, size, ArtifactLimits(max_pickle_member_bytes=8), entries))


def test_every_backend_names_its_platform_and_only_pytorch_brings_an_inspector() -> None:
    registry = PluginRegistry()
    assert {name: registry.backend(name).platform for name in ("torchscript", "torch_export", "pytorch")} == {
        "torchscript": "pytorch_torchscript",
        "torch_export": "pytorch_export",
        "pytorch": "pytorch_state_dict",
    }
    assert isinstance(StateDictBackend.inspector, TorchWeightsInspector)
    assert TorchScriptBackend.inspector is None and TorchExportBackend.inspector is None
