"""What a torch weights file may contain, and the inspector that enforces it before any torch code runs.

The core offers the pickle pre-scan as a library (``service.security.pickle_scan``) and knows no torch
names; the decisions live here: which formats are scanned (``torch_pickle_zip``, ``pickle``), and which
globals such a pickle may reference (:data:`TORCH_PICKLE_POLICY`, a subset of torch's own ``weights_only``
allow-list). Pure standard library, like the scan itself: importing this module never imports torch.
"""

from __future__ import annotations

from service.plugins import ArtifactFile, ArtifactFormat, ArtifactInspector
from service.security.pickle_scan import PicklePolicy, PickleSummary, scan_pickle_file, scan_torch_zip
from service.security.sniff import sniff_format

__all__ = ("TORCH_PICKLE_POLICY", "TorchWeightsInspector", "scan_weights_pickles")

_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}
"""Legacy typed storages torch writes into persistent ids -> bytes per element."""
_STORAGE_ITEMSIZE_BY_GLOBAL = {
    **{f"torch.{name}": size for name, size in _STORAGE_ITEMSIZE.items()},
    **{f"torch.cuda.{name}": size for name, size in _STORAGE_ITEMSIZE.items() if not name.startswith("Q")},
    "torch.storage.UntypedStorage": 1,
    "torch.storage.TypedStorage": 1,
}
_DTYPES = [
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "complex32",
    "complex64",
    "complex128",
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
]
_TENSOR_TYPES = ["Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool"]
_QSCHEMES = ["per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric"]

TORCH_PICKLE_POLICY = PicklePolicy(
    allowed_globals=frozenset(
        {
            # plain containers and scalars torch's weights_only unpickler also allows
            "collections.OrderedDict",
            "collections.Counter",
            "builtins.set",
            "builtins.bytearray",
            "builtins.complex",
            "_codecs.encode",
            # tensors and parameters
            "torch._utils._rebuild_tensor",
            "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_tensor_v3",
            "torch._utils._rebuild_parameter",
            "torch._utils._rebuild_parameter_with_state",
            "torch._utils._rebuild_qtensor",
            "torch._tensor._rebuild_from_type_v2",
            "torch.Tensor",
            "torch.nn.parameter.Parameter",
            "torch.Size",
            "torch.device",
            *_STORAGE_ITEMSIZE_BY_GLOBAL,
            *(f"torch.{name}" for name in _DTYPES),
            *(f"torch.{name}Tensor" for name in _TENSOR_TYPES),
            *(f"torch.{name}" for name in _QSCHEMES),
        }
    ),
    storage_itemsize=_STORAGE_ITEMSIZE_BY_GLOBAL,
    refusal_hint=("which is not a tensor or plain container (save a state_dict of tensors, preferably as safetensors)"),
)
"""torch's ``weights_only`` allow-list minus sparse, nested and wrapper-subclass tensors, which the
state_dicts served here do not need."""


def scan_weights_pickles(artifact: ArtifactFile, fmt: ArtifactFormat) -> PickleSummary | None:
    """Pre-scan the pickles of a ``torch.save`` file against :data:`TORCH_PICKLE_POLICY` and the caps.

    Returns None for formats without pickles (safetensors). Raises ``ArtifactRejected`` (``UnsafePickle``
    for a foreign global) naming the member and what it references.
    """
    if fmt == "torch_pickle_zip":
        summary = scan_torch_zip(
            artifact.path,
            artifact.zip_entries,
            policy=TORCH_PICKLE_POLICY,
            max_member_bytes=artifact.limits.max_pickle_member_bytes,
        )
    elif fmt == "pickle":
        summary = scan_pickle_file(artifact.path, policy=TORCH_PICKLE_POLICY)
    else:
        return None
    summary.check_caps(artifact.size, max_tensors=artifact.limits.max_tensors)
    return summary


class TorchWeightsInspector(ArtifactInspector):
    """State_dict files: the core's sniffer names the container, then every pickle in it is pre-scanned."""

    def inspect(self, artifact: ArtifactFile) -> ArtifactFormat:
        """Sniff (safetensors, ``torch.save`` zip, raw pickle, ...) and scan pickles; never unpickles."""
        fmt = sniff_format(artifact.path)
        scan_weights_pickles(artifact, fmt)
        return fmt
