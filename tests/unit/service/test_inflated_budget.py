"""Inflated request bytes count in the in-flight body budget (issue 12): the budget bounds what a worker holds after
decompression, not only the wire bytes. A 4 KiB gzip body that inflates to 1 MiB took 4 KiB of the budget before."""

from __future__ import annotations

import gzip
import json
import random
import threading
import zlib
from collections.abc import Iterator

import pytest

from service.api.limits import BodyBudget
from service.codecs.v2 import decompress_body
from service.errors import Overloaded
from service.settings import Settings
from tests.helpers.in_process import LoopClient, serve_in_process

MiB = 1 << 20


def _infer_body(size: int, *, noisy: bool) -> bytes:
    """A V2 infer JSON body of exactly ``size`` bytes, padded in an ignored parameter: with ``noisy`` padding
    (random hex) it compresses to about half, else to almost nothing."""
    head = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}], "parameters": {"pad": ""}}
    empty = len(json.dumps(head).encode())
    pad = (
        random.Random(size).randbytes((size - empty + 1) // 2).hex()[: size - empty] if noisy else "p" * (size - empty)
    )
    head["parameters"]["pad"] = pad  # type: ignore[index]
    body = json.dumps(head).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 17])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "gzip, gzip"])
def test_every_inflated_byte_is_reserved_once(size: int, coding: str) -> None:
    plain = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    packed = zlib.compress(plain) if coding == "deflate" else gzip.compress(plain)
    if coding == "gzip, gzip":
        packed = gzip.compress(packed)
    steps: list[int] = []
    out = decompress_body(packed, coding, max_bytes=4 * MiB, reserve=steps.append)
    assert bytes(out) == plain
    assert max(steps, default=0) <= MiB  # reserved step by step, before each step is kept
    inner = len(gzip.compress(plain)) if coding == "gzip, gzip" else 0  # the intermediate stream counts too
    assert sum(steps) == size + inner


def test_multi_member_gzip_is_reserved_across_members() -> None:
    plain = [b"a" * (MiB + 5), b"b" * 7, b"c" * (2 * MiB)]
    steps: list[int] = []
    out = decompress_body(b"".join(gzip.compress(p) for p in plain), "gzip", max_bytes=4 * MiB, reserve=steps.append)
    assert bytes(out) == b"".join(plain) and sum(steps) == sum(map(len, plain))


def test_a_refused_reservation_stops_inflation_within_one_step() -> None:
    budget = BodyBudget(2 * MiB)
    held = budget.reservation()
    bomb = gzip.compress(bytes(8 * MiB))
    with pytest.raises(Overloaded):
        decompress_body(bomb, "gzip", max_bytes=16 * MiB, reserve=held.take)
    assert held.size <= 2 * MiB and budget.used == held.size  # never more than the budget, never beyond it
    held.release()
    assert budget.used == 0


def test_a_reservation_released_while_inflating_cannot_leak() -> None:
    """An inflater still running in its thread after the request ended (cancelled) is refused, reserving nothing."""
    budget = BodyBudget(64 * MiB)
    held = budget.reservation()
    held.take(10)
    held.release()
    with pytest.raises(Overloaded):
        held.take(1)
    assert budget.used == 0


def test_concurrent_takes_from_threads_keep_the_count_exact() -> None:
    budget = BodyBudget(1 << 40)

    def work() -> None:
        for _ in range(2000):
            budget.take(3)
            budget.give(3)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.used == 0


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopClient]:
    """No models; a 1 MiB body cap and a 1 MiB in-flight budget."""
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("inflated-budget"),
        device="cpu",
        max_body_bytes=MiB,
        max_inflight_body_bytes=MiB,
        registry_poll_interval_s=60,
    )
    with serve_in_process(config) as client:
        yield client


@pytest.mark.parametrize("inline", [True, False], ids=["inflated-inline", "inflated-in-a-thread"])
def test_an_inflated_body_past_the_budget_is_503_and_the_budget_returns_to_zero(app: LoopClient, inline: bool) -> None:
    budget = app.app.inference.budget
    fits = _infer_body(MiB // 3, noisy=not inline)  # wire + inflated well under the budget
    too_big = _infer_body(MiB - 64, noisy=not inline)  # under MAX_BODY_BYTES alone; with its wire bytes past the budget
    for body in (fits, too_big):
        packed = gzip.compress(body)  # noisy: over 64 KiB compressed, so inflated in a worker thread
        assert (len(packed) <= 64 * 1024) == inline
        reply = app.request("POST", "/v2/models/absent/infer", packed, {"Content-Encoding": "gzip"})
        if body is fits:
            assert reply.status_code == 404, reply.text  # read, inflated, decoded: the model is unknown
        else:
            assert reply.status_code == 503, reply.text
            assert "inflated bodies included" in reply.json()["error"] and reply.headers["retry-after"]
        assert budget.used == 0
