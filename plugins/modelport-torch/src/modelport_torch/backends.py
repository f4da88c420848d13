"""The three torch backends.

- ``torchscript``: ``torch.jit.save`` archives; carry code, so admin keys only; inputs must be declared.
- ``torch_export``: ``torch.export.save`` programs (``.pt2``); carry a graph, so admin keys only; signature
  read from the program.
- ``pytorch``: bare weights (safetensors preferred, else ``torch.save`` loaded with ``weights_only=True``
  after the pickle pre-scan of :mod:`modelport_torch.safety`) poured into an architecture from
  ``modelport.architectures``.

torch is imported inside ``load``: discovery instantiates every backend, and a server that only serves ONNX
must not pay torch's import time and ~200 MB of RSS for backends it never uses.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from modelport_torch.safety import TorchWeightsInspector, scan_weights_pickles
from service.plugins import ArtifactFormat, Backend, LoadRequest, TensorSpec

if TYPE_CHECKING:
    import torch

    from modelport_torch.engine import TorchEngine

__all__ = ("StateDictBackend", "TorchExportBackend", "TorchScriptBackend", "load_state_dict_file", "program_inputs")

_log = structlog.get_logger(__name__)
_LIST_LIMIT = 8


class TorchScriptBackend(Backend):
    """TorchScript modules: ``torch.jit.load`` on the target device, frozen and optimised when possible."""

    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("torchscript",)
    platform: ClassVar[str] = "pytorch_torchscript"
    executes_code: ClassVar[bool] = True
    description: ClassVar[str] = "TorchScript (torch.jit) modules, frozen for inference; admin uploads only"

    def load(self, request: LoadRequest) -> TorchEngine:
        """Load, freeze, optionally cast to fp16 on CUDA, and check the declared signature by a dry run.

        Runs in a worker thread. TorchScript carries no tensor shapes, so ``signature.inputs`` must be
        declared; outputs are inferred when not declared.
        """
        import torch

        from modelport_torch.engine import TorchScriptEngine, configure_threads, resolve_device

        if not request.declared_inputs:
            raise ValueError(
                "a TorchScript module carries no input shapes: declare signature.inputs in the manifest, e.g. "
                '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]}'
            )
        configure_threads(request.intra_op_threads, request.inter_op_threads)
        device = resolve_device(request.device)
        module = torch.jit.load(str(request.artifact_path), map_location=device).eval()
        try:
            module = torch.jit.optimize_for_inference(torch.jit.freeze(module))
        except Exception as exc:  # noqa: BLE001 - some scripted modules cannot be frozen: serve them unfrozen
            _log.info("torchscript_not_frozen", reason=f"{type(exc).__name__}: {str(exc)[:200]}")
        half = request.use_fp16 and device.type == "cuda"
        if half:
            module = module.half()
        return TorchScriptEngine(
            module, inputs=request.declared_inputs, outputs=request.declared_outputs, device=device, half=half
        )


class TorchExportBackend(Backend):
    """``torch.export`` programs (``.pt2``): the signature, dynamic dims included, comes from the program."""

    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("torch_export",)
    platform: ClassVar[str] = "pytorch_export"
    executes_code: ClassVar[bool] = True
    description: ClassVar[str] = "torch.export programs (.pt2); admin uploads only"

    def load(self, request: LoadRequest) -> TorchEngine:
        """Deserialise the program, read its user inputs (-1 for symbolic dims) and move it to the device.

        Declared inputs may rename the program's inputs (same count, compatible shapes).
        """
        import torch

        from modelport_torch.engine import ExportedProgramEngine, configure_threads, resolve_device

        configure_threads(request.intra_op_threads, request.inter_op_threads)
        device = resolve_device(request.device)
        # from a buffer: content-addressed blobs have no .pt2 suffix for torch to recognise
        program = torch.export.load(io.BytesIO(request.artifact_path.read_bytes()))
        inputs = program_inputs(program)
        if request.declared_inputs:
            inputs = _reconcile(request.declared_inputs, inputs)
        module = program.module()
        if device.type != "cpu":
            module = module.to(device)
        return ExportedProgramEngine(module, inputs=inputs, outputs=request.declared_outputs, device=device)


def program_inputs(program: Any) -> tuple[TensorSpec, ...]:
    """The user inputs of an ExportedProgram as TensorSpecs: names from its input specs, -1 for symbolic dims."""
    from modelport_torch.engine import v2_from_torch

    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    specs = []
    for spec in program.graph_signature.input_specs:
        if spec.kind.name != "USER_INPUT":
            continue
        value = placeholders[spec.arg.name].meta.get("val")
        if value is None or not hasattr(value, "shape"):
            raise ValueError(f"exported input '{spec.arg.name}' is not a tensor; only tensor inputs can be served")
        shape = tuple(int(d) if isinstance(d, int) else -1 for d in value.shape)
        specs.append(TensorSpec(spec.arg.name, v2_from_torch(value.dtype, what=f"input '{spec.arg.name}'"), shape))
    if not specs:
        raise ValueError("the exported program takes no tensor inputs")
    return tuple(specs)


def _reconcile(declared: tuple[TensorSpec, ...], found: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Declared names over the program's, provided count, datatype and fixed dims agree."""
    if len(declared) != len(found):
        raise ValueError(f"the signature declares {len(declared)} inputs but the program takes {len(found)}")
    for mine, theirs in zip(declared, found, strict=True):
        fixed_ok = len(mine.shape) == len(theirs.shape) and all(
            t < 0 or m == t for m, t in zip(mine.shape, theirs.shape, strict=True)
        )
        if mine.datatype != theirs.datatype or not fixed_ok:
            raise ValueError(
                f"declared input '{mine.name}' {mine.datatype} {list(mine.shape)} does not match the program's "
                f"'{theirs.name}' {theirs.datatype} {list(theirs.shape)}"
            )
    return declared


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f" and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else "")


def _fit_report(module: Any, state: Mapping[str, Any]) -> str | None:
    """Why ``state`` does not fit ``module`` exactly (missing/unexpected keys, shape mismatches), or None."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_preview(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch (weights vs architecture): {_preview(shapes)}")
    return "; ".join(problems) or None


def load_state_dict_file(path: Any, fmt: ArtifactFormat) -> dict[str, torch.Tensor]:
    """A state_dict from a safetensors file or a ``torch.save`` file, never running pickled code.

    ``torch.save`` files are pre-scanned again here (:class:`TorchWeightsInspector` already did at the
    core's guard; this keeps the function safe when used on its own, as by ``modelport convert``) and then
    read with ``torch.load(weights_only=True)``. A checkpoint of the form ``{"state_dict": {...}}`` is
    unwrapped.
    """
    from pathlib import Path

    import torch

    from service.plugins import ArtifactFile

    source = str(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        return dict(load_file(source, device="cpu"))
    if fmt not in ("torch_pickle_zip", "pickle"):
        raise ValueError(f"a state_dict cannot be read from a {fmt} artifact")
    scan_weights_pickles(ArtifactFile(Path(source), Path(source).stat().st_size), fmt)
    if fmt == "torch_pickle_zip":
        state = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    else:
        state = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and set(state) == {"state_dict"} and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state_dict (a mapping of tensor names to tensors), got {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"the state_dict holds non-tensor values under: {_preview(bad)}")
    return dict(state)


class StateDictBackend(Backend):
    """Bare weights loaded into a registered architecture, exactly (``strict=True``)."""

    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("safetensors", "torch_pickle_zip", "pickle")
    platform: ClassVar[str] = "pytorch_state_dict"
    inspector: ClassVar[TorchWeightsInspector] = TorchWeightsInspector()
    requires_architecture: ClassVar[bool] = True
    description: ClassVar[str] = "state_dict (safetensors preferred; torch.load weights_only) into an architecture"

    def load(self, request: LoadRequest) -> TorchEngine:
        """Build ``architecture(**architecture_config)``, load the weights strictly, move to the device.

        Inputs come from the manifest, else from the architecture's ``input_spec``; outputs from the
        manifest, the architecture's ``output_spec``, or a dry run.
        """
        import torch

        from modelport_torch.engine import StateDictEngine, configure_threads, resolve_device, spec_from_module

        if request.architecture is None:
            raise ValueError("the pytorch backend loads bare weights: the manifest must name an architecture")
        configure_threads(request.intra_op_threads, request.inter_op_threads)
        device = resolve_device(request.device)
        state = load_state_dict_file(request.artifact_path, request.artifact_format)  # refuse bad files first
        name = getattr(request.architecture, "__name__", "the architecture")
        try:
            module = request.architecture(**dict(request.architecture_config))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"architecture '{name}' rejects its config: {exc}") from None
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"architecture '{name}' returned {type(module).__name__}, not a torch.nn.Module")
        problem = _fit_report(module, state)
        if problem:
            raise ValueError(f"the weights do not fit architecture '{name}' with this config: {problem}")
        module.load_state_dict(state, strict=True)
        module = module.to(device).eval()
        half = request.use_fp16 and device.type == "cuda"
        if half:
            module = module.half()
        inputs = request.declared_inputs or spec_from_module(module, "input_spec")
        if not inputs:
            raise ValueError(
                f"architecture '{name}' does not describe its input (input_spec): declare signature.inputs"
            )
        outputs = request.declared_outputs or spec_from_module(module, "output_spec")
        return StateDictEngine(module, inputs=inputs, outputs=outputs, device=device, half=half)
