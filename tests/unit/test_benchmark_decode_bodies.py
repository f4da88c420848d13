"""Smoke test for ``benchmarks.decode_bodies``: both decoders agree on a real body and every column is timed."""

from __future__ import annotations

import pytest

from benchmarks import decode_bodies


def test_measure_times_every_decoder_on_one_body() -> None:
    timings = decode_bodies.measure(decode_bodies.infer_body(2), rounds=1, round_s=0.001)
    assert set(timings) == {"msgspec", "pydantic", "pydantic_py", "modelport"}
    assert all(us > 0 for us in timings.values())


def test_main_prints_the_machine_and_one_row_per_body(capsys: pytest.CaptureFixture[str]) -> None:
    decode_bodies.main(["--batches", "1", "--rounds", "1", "--round-s", "0.001"])
    lines = capsys.readouterr().out.splitlines()
    assert "CPUs" in lines[0] and "pydantic" in lines[0]
    assert lines[2].split()[:2] == ["1x784", "FP32"] and lines[2].count("x") == 3
