"""Server-made request ids: unguessable, unique, well-formed, and never repeated across refills."""

from __future__ import annotations

import re

from service.request_ids import RequestIds


def test_ids_are_24_hex_characters_with_the_prefix_and_never_repeat() -> None:
    ids = RequestIds("g")
    drawn = [ids.next() for _ in range(10_000)]  # ~40 refills of the pool
    assert all(re.fullmatch(r"g[0-9a-f]{24}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)
    other = RequestIds("g")
    assert not set(drawn) & {other.next() for _ in range(1_000)}  # another worker's are its own
