"""The three torch backends. Only ``pytorch`` loads bare weights; the other two carry code (admin only)."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from service.plugins import Backend, LoadRequest, TensorSpec, v2_datatype
from service.plugins.contract import ArtifactFormat

if TYPE_CHECKING:
    import torch

    from modelport_torch.engine import TorchEngine

# torch is imported inside load(): discovery instantiates every backend, and a server that only serves ONNX
# must not pay torch's import time and ~200 MB of RSS for backends it never uses.

__all__ = ("StateDictBackend", "TorchExportBackend", "TorchScriptBackend")


def _dry_run_outputs(
    module: Any, inputs: tuple[TensorSpec, ...], device: torch.device, declared: tuple[TensorSpec, ...] | None
) -> tuple[TensorSpec, ...]:
    """Output signature: the declared one, or inferred from one batch-of-1 call on zeros (batch dim -1)."""
    if declared:
        return declared
    import torch

    with torch.inference_mode():
        args = [
            torch.zeros(
                tuple(1 if d < 0 else d for d in spec.shape),
                dtype=torch.from_numpy(np.zeros(0, dtype=spec.dtype)).dtype,
                device=device,
            )
            for spec in inputs
        ]
        result = module(*args)
    tensors = (
        [result] if isinstance(result, torch.Tensor) else list(result.values() if isinstance(result, dict) else result)
    )
    names = (
        list(result.keys())
        if isinstance(result, dict)
        else (["output"] if len(tensors) == 1 else [f"output_{i}" for i in range(len(tensors))])
    )
    return tuple(
        TensorSpec(str(name), v2_datatype(np.dtype(str(t.dtype).removeprefix("torch."))), (-1, *t.shape[1:]))
        for name, t in zip(names, tensors, strict=True)
    )


def _require_inputs(request: LoadRequest, what: str) -> tuple[TensorSpec, ...]:
    if not request.declared_inputs:
        raise ValueError(f"{what} carries no tensor shapes: declare signature.inputs in the manifest")
    return request.declared_inputs


class TorchScriptBackend(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("torchscript",)
    executes_code = True
    description = "TorchScript modules (torch.jit); frozen and optimised for inference"

    def load(self, request: LoadRequest) -> TorchEngine:
        import torch

        from modelport_torch.engine import TorchEngine, configure_threads, resolve_device

        configure_threads(request.intra_op_threads, request.inter_op_threads)
        device = resolve_device(request.device)
        inputs = _require_inputs(request, "TorchScript")
        module = torch.jit.load(str(request.artifact_path), map_location=device).eval()
        with contextlib.suppress(Exception):  # some scripted modules cannot be frozen: serve them as they are
            module = torch.jit.optimize_for_inference(torch.jit.freeze(module))
        half = request.use_fp16 and device.type == "cuda"
        if half:
            module = module.half()
        outputs = _dry_run_outputs(module, inputs, device, request.declared_outputs)
        return TorchEngine(
            module, inputs=inputs, outputs=outputs, device=device, platform="pytorch_torchscript", half=half
        )


class TorchExportBackend(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("torch_export",)
    executes_code = True
    description = "torch.export programs (.pt2)"

    def load(self, request: LoadRequest) -> TorchEngine:
        import torch

        from modelport_torch.engine import TorchEngine, configure_threads, resolve_device

        configure_threads(request.intra_op_threads, request.inter_op_threads)
        device = resolve_device(request.device)
        # a buffer, since content-addressed blobs have no .pt2 suffix for torch to recognise
        program = torch.export.load(io.BytesIO(request.artifact_path.read_bytes()))
        inputs = request.declared_inputs or self._program_inputs(program)
        module = program.module()
        if device.type != "cpu":
            module = module.to(device)
        outputs = _dry_run_outputs(module, inputs, device, request.declared_outputs)
        return TorchEngine(module, inputs=inputs, outputs=outputs, device=device, platform="pytorch_export")

    @staticmethod
    def _program_inputs(program: Any) -> tuple[TensorSpec, ...]:
        specs = []
        user_inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        for index, spec in enumerate(user_inputs):
            value = placeholders[spec.arg.name].meta["val"]
            shape = tuple(int(d) if isinstance(d, int) else -1 for d in value.shape)
            dtype = np.dtype(str(value.dtype).removeprefix("torch."))
            name = "input" if len(user_inputs) == 1 else f"input_{index}"
            specs.append(TensorSpec(name, v2_datatype(dtype), (-1, *shape[1:])))
        return tuple(specs)


class StateDictBackend(Backend):
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ("safetensors", "torch_pickle_zip", "pickle")
    requires_architecture = True
    description = "state_dict (safetensors preferred; torch.load weights_only) into a registered architecture"

    def load(self, request: LoadRequest) -> TorchEngine:

        from modelport_torch.engine import TorchEngine, configure_threads, resolve_device

        configure_threads(request.intra_op_threads, request.inter_op_threads)
        if request.architecture is None:
            raise ValueError("the pytorch backend needs an architecture")
        device = resolve_device(request.device)
        module = request.architecture(**dict(request.architecture_config))
        state = self._weights(request)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"weights do not fit the architecture: {str(exc)[:1500]}") from None
        module = module.to(device).eval()
        inputs = request.declared_inputs or self._module_spec(module, "input_spec")
        outputs = request.declared_outputs or (
            (module.output_spec,) if isinstance(getattr(module, "output_spec", None), TensorSpec) else None
        )
        outputs = _dry_run_outputs(module, inputs, device, outputs)
        return TorchEngine(module, inputs=inputs, outputs=outputs, device=device, platform="pytorch_state_dict")

    @staticmethod
    def _weights(request: LoadRequest) -> dict[str, torch.Tensor]:
        import torch

        if request.artifact_format == "safetensors":
            from safetensors.torch import load_file

            return load_file(str(request.artifact_path), device="cpu")
        # the core's pickle pre-scan already refused anything but tensors and containers
        state = torch.load(str(request.artifact_path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"expected a state_dict (a mapping of tensors), got {type(state).__name__}")
        return state

    @staticmethod
    def _module_spec(module: Any, attribute: str) -> tuple[TensorSpec, ...]:
        spec = getattr(module, attribute, None)
        if isinstance(spec, TensorSpec):
            return (spec,)
        if isinstance(spec, tuple) and spec and all(isinstance(s, TensorSpec) for s in spec):
            return spec
        raise ValueError("declare signature.inputs in the manifest: the architecture does not describe its input")
