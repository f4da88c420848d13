"""Conformance checks plugin authors call from their own tests (in the spirit of ``litestar.testing``).

Example::

    from service.plugins.testing import check_engine
    engine = MyBackend().load(LoadRequest(artifact_path=path, artifact_format="onnx"))
    check_engine(engine)
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from service.plugins.contract import V2_TO_NUMPY, Engine, TensorSpec

__all__ = ("check_engine", "sample_batch")


def sample_batch(specs: tuple[TensorSpec, ...], batch: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs ``(batch, *dims)`` matching ``specs`` (dynamic dims become 1)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (batch, *(1 if d < 0 else d for d in spec.shape[1:]))
        if spec.datatype == "BYTES":
            out[spec.name] = np.full(shape, b"x", dtype=np.object_)
        elif spec.datatype == "BOOL":
            out[spec.name] = rng.random(shape) > 0.5
        elif spec.datatype.startswith(("FP",)):
            out[spec.name] = rng.random(shape).astype(V2_TO_NUMPY[spec.datatype])
        else:
            out[spec.name] = rng.integers(0, 3, shape).astype(V2_TO_NUMPY[spec.datatype])
    return out


def check_engine(engine: Engine, *, batches: tuple[int, ...] = (1, 3)) -> None:
    """Assert the engine honours the contract; raises AssertionError naming what is wrong.

    Checks: V2 datatypes and batch-first signatures, ``warmup()``, one output per declared name with the
    batch dim for each batch size, row independence (a row's output does not depend on its batch mates),
    and thread safety (concurrent predicts agree with serial ones).
    """
    for spec in (*engine.inputs, *engine.outputs):
        assert spec.datatype in V2_TO_NUMPY, f"{spec.name}: unknown V2 datatype {spec.datatype}"
        assert spec.shape and spec.shape[0] in (-1, 1) or spec.shape[0] > 0, f"{spec.name}: bad shape {spec.shape}"
    engine.warmup()
    for size in batches:
        inputs = sample_batch(engine.inputs, size, seed=size)
        outputs = engine.predict(inputs)
        for spec in engine.outputs:
            assert spec.name in outputs, f"output '{spec.name}' missing"
            assert np.asarray(outputs[spec.name]).shape[0] == size, f"output '{spec.name}': batch dim != {size}"
    big = sample_batch(engine.inputs, max(batches), seed=99)
    whole = engine.predict(big)
    first = engine.predict({k: v[:1] for k, v in big.items()})
    for spec in engine.outputs:
        if np.asarray(whole[spec.name]).dtype.kind == "f":
            np.testing.assert_allclose(
                whole[spec.name][:1],
                first[spec.name],
                rtol=1e-4,
                atol=1e-5,
                err_msg=f"output '{spec.name}' depends on other rows of the batch",
            )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: engine.predict(big), range(8)))
    for result in results:
        for spec in engine.outputs:
            if np.asarray(whole[spec.name]).dtype.kind == "f":
                np.testing.assert_allclose(
                    result[spec.name],
                    whole[spec.name],
                    rtol=1e-5,
                    atol=1e-6,
                    err_msg=f"output '{spec.name}' differs under concurrent predict",
                )
