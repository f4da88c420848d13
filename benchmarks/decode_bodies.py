"""msgspec against pydantic decoding a V2 infer body, measured in one run: why the hot path stays on msgspec.

    .venv/bin/python -m benchmarks.decode_bodies             # 1 x 784 and 64 x 784 FP32, JSON
    .venv/bin/python -m benchmarks.decode_bodies --rounds 15 --batches 1 8 64

Both sides decode the same bytes into the same typed shape (``inputs[].data: list[float]``, shape ints, optional
id and parameters): msgspec into a Struct (``benchmarks.servers._v2``), pydantic into the equivalent BaseModel
with ``model_validate_json`` (its Rust JSON parser; pydantic's fastest path). ``pydantic(py)`` decodes to Python
objects first and then runs ``model_validate``: what Litestar does with a pydantic ``data`` parameter. The last
column is modelport's own request decoder (``service.codecs.v2``: bytes to a validated numpy batch), for scale.
Rounds alternate between the decoders, so load from other processes hits all alike; each cell is the median over
rounds of the mean time per decode. Bodies are serialised the way tritonclient sends float32
(``np.float32(...).item()``). Results: ``docs/architecture.md`` ("Why msgspec on the hot path, pydantic at the
edges").
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pydantic
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from benchmarks.servers._v2 import decode_request  # noqa: E402
from benchmarks.workload import MLP_INPUT, v2_json_body  # noqa: E402
from service.codecs.v2 import decode_infer_request  # noqa: E402

_ROUND_S = 0.2
_WIDTHS = (14, 10, 10, 10, 8, 14, 8, 11)


class _PydanticInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]
    parameters: dict[str, object] | None = None


class _PydanticRequest(BaseModel):
    """The pydantic twin of ``benchmarks.servers._v2.InferRequest``."""

    inputs: list[_PydanticInput]
    id: str | None = None
    parameters: dict[str, object] | None = None
    outputs: list[dict[str, object]] | None = None


_to_python = msgspec.json.Decoder().decode


def infer_body(batch: int, features: int = 784) -> bytes:
    """A V2 JSON infer body of ``batch`` x ``features`` random FP32 values."""
    x = np.random.default_rng(batch).random((batch, features), dtype=np.float32)
    return v2_json_body(MLP_INPUT, x)


def _loops_for(fn: Callable[[], object], round_s: float) -> int:
    """Calls per round so that one round takes about ``round_s``."""
    started = time.perf_counter()
    fn()
    once = max(time.perf_counter() - started, 1e-7)
    return max(1, int(round_s / once))


def _round_us(fn: Callable[[], object], loops: int) -> float:
    started = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - started) / loops * 1e6


def measure(body: bytes, rounds: int, round_s: float = _ROUND_S) -> dict[str, float]:
    """Median µs per decode of ``body`` for each decoder, the rounds interleaved."""
    decoders: dict[str, Callable[[], object]] = {
        "msgspec": lambda: decode_request(body),
        "pydantic": lambda: _PydanticRequest.model_validate_json(body),
        "pydantic_py": lambda: _PydanticRequest.model_validate(_to_python(body)),
        "modelport": lambda: decode_infer_request(body, header_length=None),
    }
    same = _PydanticRequest.model_validate_json(body).inputs[0].data == decode_request(body).inputs[0].data
    assert same, "the two decoders disagree on the values"
    loops = {name: _loops_for(fn, round_s) for name, fn in decoders.items()}
    samples: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(rounds):
        for name, fn in decoders.items():
            samples[name].append(_round_us(fn, loops[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


def _machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown CPU",
    )
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {model}; {os.cpu_count()} CPUs ({usable} usable); "
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="instances per body (x 784 FP32)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per decoder (median reported)")
    parser.add_argument("--round-s", type=float, default=_ROUND_S, help="seconds per round and decoder")
    args = parser.parse_args(argv)
    print(_machine())
    header = ("body", "bytes", "msgspec", "pydantic", "ratio", "pydantic(py)", "ratio", "modelport")
    print("".join(f"{h:>{w}}" for h, w in zip(header, _WIDTHS, strict=True)))
    for batch in args.batches:
        data = infer_body(batch)
        us = measure(data, args.rounds, args.round_s)
        cells = (
            f"{batch}x784 FP32",
            str(len(data)),
            f"{us['msgspec']:.1f}",
            f"{us['pydantic']:.1f}",
            f"{us['pydantic'] / us['msgspec']:.2f}x",
            f"{us['pydantic_py']:.1f}",
            f"{us['pydantic_py'] / us['msgspec']:.2f}x",
            f"{us['modelport']:.1f}",
        )
        print("".join(f"{c:>{w}}" for c, w in zip(cells, _WIDTHS, strict=True)))
    print(
        "µs per decode (median of rounds). ratio = pydantic / msgspec. pydantic: model_validate_json; "
        "pydantic(py): decode to Python objects, then model_validate (how Litestar validates a pydantic body); "
        "modelport: service.codecs.v2 to a numpy batch."
    )


if __name__ == "__main__":
    main()
