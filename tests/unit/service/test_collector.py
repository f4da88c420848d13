"""The collector tuning applied once a server is ready, and undone when it stops."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

from service import collector
from service.runtime import open_runtime
from service.settings import Settings


def test_tune_freezes_what_is_alive_raises_gen0_and_release_undoes_both() -> None:
    before = gc.get_threshold()
    tuning = collector.tune(freeze=True, gen0_threshold=12_345)
    try:
        assert gc.get_freeze_count() > 1000  # at least pytest's own objects
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert tuning.frozen == gc.get_freeze_count()
    finally:
        collector.release(tuning)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_tune_can_leave_the_collector_as_it_is() -> None:
    before = gc.get_threshold()
    tuning = collector.tune(freeze=False, gen0_threshold=0)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    collector.release(tuning)
    assert gc.get_threshold() == before


def test_a_cycle_frozen_while_alive_is_collected_after_release() -> None:
    class Node:
        other: object

    node = Node()
    node.other = node
    alive = weakref.ref(node)
    tuning = collector.tune(freeze=True, gen0_threshold=0)
    del node
    gc.collect()
    assert alive() is not None  # frozen: full collections skip it, which is the point
    collector.release(tuning)
    gc.collect()
    assert alive() is None


async def test_a_started_runtime_freezes_the_start_up_heap_and_its_stop_undoes_it(
    settings_factory: Callable[..., Settings],
) -> None:
    before = gc.get_threshold()
    runtime = await open_runtime(settings_factory(gc_gen0_threshold=9_999))
    try:
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold()[0] == 9_999
    finally:
        await runtime.stop()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
