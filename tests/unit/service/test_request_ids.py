"""Server-made request ids: unguessable, unique, well-formed, time-ordered, and never repeated across refills."""

from __future__ import annotations

import re
import time

from service.request_ids import RequestIds


def test_ids_are_a_time_prefix_and_24_random_hex_characters_and_never_repeat() -> None:
    ids = RequestIds("g")
    drawn = [ids.next() for _ in range(10_000)]  # ~40 refills of the pool
    assert all(re.fullmatch(r"g[0-9a-f]{12}[0-9a-f]{24}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)
    assert len({value[13:] for value in drawn}) == len(drawn)  # the random parts alone are unique
    other = RequestIds("g")
    assert not set(drawn) & {other.next() for _ in range(1_000)}  # another worker's are its own


def test_ids_lead_with_the_milliseconds_they_were_drawn_so_later_pools_sort_later() -> None:
    ids = RequestIds()
    before = time.time_ns() // 1_000_000
    first = ids.next()
    assert before <= int(first[:12], 16) <= time.time_ns() // 1_000_000
    for _ in range(255):
        ids.next()  # the rest of the first pool
    time.sleep(0.002)
    later = ids.next()  # a new pool
    assert int(later[:12], 16) > int(first[:12], 16)
    assert later > first  # so the prediction log's index takes new keys at its end, not on random pages
