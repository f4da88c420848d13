"""The plugin contract: what a backend and an engine are.

A *backend* (entry-point group ``modelport.backends``) turns one verified artifact into an *engine*
for a device. An *architecture* (group ``modelport.architectures``) is a callable
``(**config) -> torch.nn.Module`` used by backends that load bare weights (``pytorch``).

Life cycle, in the order the core calls things:

1. ``Backend()`` — once per process, when discovery registers the entry point. Must be cheap and must
   not import heavy runtimes at module import time of the *core*; importing them in the plugin is fine.
2. ``Backend.inspector.inspect(artifact)`` (or the core's sniffer when a backend brings none) — in a worker
   thread, after the sha256 check, at every registration and load; names the format or refuses the bytes.
3. ``Backend.load(request)`` — in a worker thread, once the format is one of :attr:`Backend.formats`.
   Returns an :class:`Engine`.
4. ``Engine.warmup()`` — once, in a worker thread, before the engine takes traffic.
5. ``Engine.predict(batch)`` — many times, from several worker threads at once; must be thread-safe.
6. ``Engine.close()`` — when the engine is evicted or the server stops.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgspec
import numpy as np

from service.plugins.inspection import ArtifactFormat, ArtifactInspector

__all__ = (
    "ArchitectureFactory",
    "ArtifactFormat",
    "Backend",
    "Engine",
    "LoadRequest",
    "TensorSpec",
    "V2_TO_NUMPY",
    "NUMPY_TO_V2",
    "numpy_dtype",
    "v2_datatype",
)

ArchitectureFactory = Callable[..., Any]
"""``(**config) -> torch.nn.Module``; registered under ``modelport.architectures``."""

V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_V2: dict[np.dtype[Any], str] = {dtype: name for name, dtype in V2_TO_NUMPY.items()}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype name; ``KeyError`` for unknown names."""
    return V2_TO_NUMPY[datatype]


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The V2 datatype name of a numpy dtype (bytes/str arrays are ``BYTES``)."""
    if dtype.kind in ("S", "U", "O"):
        return "BYTES"
    return NUMPY_TO_V2[np.dtype(dtype)]


class TensorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One named input or output of a model.

    ``shape`` includes the batch dimension first; ``-1`` marks a dynamic dimension. Example: an MLP over
    flattened 28x28 images has input ``TensorSpec("input", "FP32", (-1, 784))``.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype this tensor is carried in."""
        return V2_TO_NUMPY[self.datatype]


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """Everything a backend needs to build an engine; built by the core, never by clients."""

    artifact_path: Path
    """The verified artifact file (read-only; content-addressed, do not write next to it)."""
    artifact_format: ArtifactFormat
    """What the inspector (or the core's sniffer) read from the bytes; one of :attr:`Backend.formats`."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Requested device; a backend falls back to CPU (logging why) when it is not available."""
    use_fp16: bool = False
    """Half precision where the backend and device support it."""
    intra_op_threads: int = 0
    """Threads within an op (0 = runtime default)."""
    inter_op_threads: int = 0
    """Threads across ops (0 = runtime default)."""
    allow_spinning: bool = False
    """Whether idle runtime threads may busy-wait for work. Only worth it on dedicated cores: on a shared or
    quota-limited CPU, spinning threads steal the time the event loop needs."""
    architecture: ArchitectureFactory | None = None
    """Resolved from ``modelport.architectures`` for backends with ``requires_architecture``."""
    architecture_config: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``architecture``."""
    declared_inputs: tuple[TensorSpec, ...] | None = None
    """Signature from the manifest, for formats that do not carry one (state_dicts)."""
    declared_outputs: tuple[TensorSpec, ...] | None = None
    """Output signature from the manifest, if given."""


class Engine(abc.ABC):
    """One loaded model version on one device."""

    platform: ClassVar[str] = "unknown"
    """V2 ``platform`` string, e.g. ``onnxruntime_onnx`` or ``pytorch_torchscript``."""

    @property
    @abc.abstractmethod
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Input signature (batch dim first, -1 for dynamic dims)."""

    @property
    @abc.abstractmethod
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Output signature (batch dim first, -1 for dynamic dims)."""

    @property
    def device(self) -> str:
        """Where the engine actually runs (``cpu``, ``cuda:0``, ...), after any fallback."""
        return "cpu"

    def warmup(self) -> None:  # noqa: B027 - optional hook
        """Runs once before traffic, in a worker thread. Default: one predict on zeros, batch of 1."""
        batch = {}
        for spec in self.inputs:
            shape = tuple(1 if dim < 0 else dim for dim in spec.shape)
            batch[spec.name] = np.zeros(shape, dtype=spec.dtype if spec.datatype != "BYTES" else np.object_)
        self.predict(batch)

    @abc.abstractmethod
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one whole batch. Called from several threads at once.

        Args:
            inputs: one array per input name, each ``(batch, *dims)`` in the input's dtype; every array
                has the same ``batch``.

        Returns:
            one array per output name, each ``(batch, *dims)``.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's resources; runs when the engine is evicted or the server stops."""


class Backend(abc.ABC):
    """Loads artifacts of one kind into engines. Registered under ``modelport.backends``."""

    formats: ClassVar[tuple[ArtifactFormat, ...]] = ()
    """Format ids this backend accepts; the core refuses others before :meth:`load` runs."""
    platform: ClassVar[str] = "unknown"
    """V2 ``platform`` string for model metadata (``onnxruntime_onnx``, ``pytorch_torchscript``, ...), known
    without loading an engine."""
    inspector: ClassVar[ArtifactInspector | None] = None
    """Recognises and vets this backend's artifacts; None = the core's sniffer for the built-in formats,
    which refuses pickle-bearing formats (a backend loading pickles must scan them in its own inspector)."""
    executes_code: ClassVar[bool] = False
    """True when the format can carry executable code (TorchScript, .pt2): admin keys only."""
    requires_architecture: ClassVar[bool] = False
    """True when the artifact is bare weights and the manifest must name an architecture."""
    description: ClassVar[str] = ""
    """One line for ``modelport plugins``."""

    @abc.abstractmethod
    def load(self, request: LoadRequest) -> Engine:
        """Build an engine from a verified artifact. Runs in a worker thread; may take seconds.

        Raise any exception with a clear message when the artifact cannot serve; the core reports
        it to the uploader (422) or the caller (503) and keeps serving other versions.
        """
