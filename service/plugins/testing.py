"""Conformance checks plugin authors call from their own tests (in the spirit of ``litestar.testing``).

Example, in a plugin's ``tests/``::

    from service.plugins.testing import check_backend

    def test_conformance(tmp_path):
        path = write_tiny_model(tmp_path / "m.onnx")
        engine = check_backend(OnnxBackend(), path, "onnx")
        assert engine.inputs[0].shape == (-1, 16)

Every check raises ``AssertionError`` naming what is wrong, so a failing plugin test reads like a review.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import numpy as np

from service.plugins.contract import V2_TO_NUMPY, Backend, Engine, LoadRequest, TensorSpec
from service.plugins.inspection import ArtifactFormat

__all__ = ("check_backend", "check_engine", "sample_batch")


def sample_batch(specs: tuple[TensorSpec, ...], batch: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs ``(batch, *dims)`` matching ``specs`` (other dynamic dims become 1).

    Floats are uniform in [0, 1), integers in {0, 1, 2}, BYTES are ``b"x"``.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (batch, *(1 if d < 0 else d for d in spec.shape[1:]))
        if spec.datatype == "BYTES":
            out[spec.name] = np.full(shape, b"x", dtype=np.object_)
        elif spec.datatype == "BOOL":
            out[spec.name] = rng.random(shape) > 0.5
        elif spec.datatype.startswith("FP"):
            out[spec.name] = rng.random(shape).astype(V2_TO_NUMPY[spec.datatype])
        else:
            out[spec.name] = rng.integers(0, 3, shape).astype(V2_TO_NUMPY[spec.datatype])
    return out


def _check_signature(engine: Engine) -> None:
    assert engine.inputs, "engine declares no inputs"
    assert engine.outputs, "engine declares no outputs"
    for kind, specs in (("input", engine.inputs), ("output", engine.outputs)):
        names = [spec.name for spec in specs]
        assert len(set(names)) == len(names), f"duplicate {kind} names: {names}"
        for spec in specs:
            assert isinstance(spec, TensorSpec), f"{kind} {spec!r} is not a TensorSpec"
            assert spec.datatype in V2_TO_NUMPY, f"{kind} '{spec.name}': unknown V2 datatype {spec.datatype}"
            assert spec.shape, f"{kind} '{spec.name}': no batch dimension"
            assert all(d == -1 or d > 0 for d in spec.shape), f"{kind} '{spec.name}': bad shape {spec.shape}"


def check_engine(engine: Engine, *, batches: tuple[int, ...] = (1, 3), rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Assert the engine honours the contract.

    Checks: V2 datatypes and batch-first signatures (-1 or positive dims, unique names), ``warmup()``,
    one output per declared name with the batch dim and the declared trailing dims for each batch size,
    row independence (a row's output does not depend on its batch mates), and thread safety (concurrent
    predicts agree with a serial one). Engines with a fixed batch dim are run at that size only.
    """
    _check_signature(engine)
    engine.warmup()
    fixed = engine.inputs[0].shape[0]
    sizes = (fixed,) if fixed > 0 else batches
    for size in sizes:
        outputs = engine.predict(sample_batch(engine.inputs, size, seed=size))
        for spec in engine.outputs:
            assert spec.name in outputs, f"output '{spec.name}' missing (got {sorted(outputs)})"
            value = np.asarray(outputs[spec.name])
            assert value.shape[:1] == (size,), f"output '{spec.name}': shape {value.shape}, batch dim != {size}"
            assert len(value.shape) == len(spec.shape), f"output '{spec.name}': rank {value.ndim} != {spec.shape}"
            for got, want in zip(value.shape[1:], spec.shape[1:], strict=True):
                assert want < 0 or got == want, f"output '{spec.name}': shape {value.shape} vs declared {spec.shape}"
            if spec.datatype != "BYTES":
                assert value.dtype == spec.dtype, f"output '{spec.name}': dtype {value.dtype} != {spec.datatype}"
    big = sample_batch(engine.inputs, max(sizes), seed=99)
    whole = engine.predict(big)
    if fixed <= 0:
        first = engine.predict({name: value[:1] for name, value in big.items()})
        for spec in engine.outputs:
            if np.asarray(whole[spec.name]).dtype.kind == "f":
                np.testing.assert_allclose(
                    whole[spec.name][:1],
                    first[spec.name],
                    rtol=rtol,
                    atol=atol,
                    err_msg=f"output '{spec.name}' depends on other rows of the batch",
                )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: engine.predict(big), range(8)))
    for result in results:
        for spec in engine.outputs:
            np.testing.assert_allclose(
                np.asarray(result[spec.name], dtype=np.float64),
                np.asarray(whole[spec.name], dtype=np.float64),
                rtol=rtol,
                atol=atol,
                err_msg=f"output '{spec.name}' differs under concurrent predict",
            )


def check_backend(
    backend: Backend,
    artifact_path: Path,
    fmt: ArtifactFormat,
    *,
    batches: tuple[int, ...] = (1, 3),
    **request: Any,
) -> Engine:
    """Load ``artifact_path`` as the core would and run :func:`check_engine`; returns the engine (still open).

    First the core's artifact guard, with the backend's own inspector if it has one, must agree the bytes
    are ``fmt`` and safe (as an admin upload), and ``fmt`` must be one of ``backend.formats``; then
    ``backend.load`` runs with ``request`` as extra :class:`LoadRequest` fields (``device``, ``architecture``,
    ``declared_inputs``, ...).
    """
    from service.security.artifact_guard import inspect_artifact

    assert fmt in backend.formats, f"{type(backend).__name__}.formats {backend.formats} does not list {fmt!r}"
    sniffed = inspect_artifact(artifact_path, backend, backend_name=type(backend).__name__, principal_is_admin=True)
    assert sniffed == fmt, f"the artifact guard reads this artifact as {sniffed!r}, not {fmt!r}"
    request.setdefault("device", "cpu")
    engine = backend.load(LoadRequest(artifact_path=artifact_path, artifact_format=fmt, **request))
    assert isinstance(engine, Engine), f"load() returned {type(engine).__name__}, not an Engine"
    check_engine(engine, batches=batches)
    return engine
