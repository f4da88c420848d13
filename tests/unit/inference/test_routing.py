"""choose_version: split (weighted; sticky per key with no shared state), else production, else None."""

from __future__ import annotations

from collections import Counter

import pytest

from registry_db.records import ModelRouting, SplitEntry
from service.inference.routing import choose_version, key_fraction, split_fingerprint

SPLIT = (SplitEntry("1", 80), SplitEntry("2", 20))


def test_production_alias_without_split_and_none_without_either() -> None:
    assert choose_version(ModelRouting(aliases={"production": "3", "staging": "4"}), None) == "3"
    assert choose_version(ModelRouting(aliases={"production": "3"}), "key") == "3"
    assert choose_version(ModelRouting(aliases={"staging": "4"}), None) is None
    assert choose_version(ModelRouting(), "key") is None


def test_split_wins_over_production_and_follows_weights() -> None:
    routing = ModelRouting(aliases={"production": "9"}, splits=SPLIT)
    assert choose_version(routing, None, rng=lambda: 0.0) == "1"
    assert choose_version(routing, None, rng=lambda: 0.7999) == "1"
    assert choose_version(routing, None, rng=lambda: 0.8) == "2"
    assert choose_version(routing, None, rng=lambda: 0.99999) == "2"


def test_sticky_keys_are_deterministic_and_weighted() -> None:
    routing = ModelRouting(splits=SPLIT)
    chosen = {f"user-{i}": choose_version(routing, f"user-{i}", model="mlp") for i in range(4000)}
    # same key, same answer, regardless of rng and of the order the replica stored the split in
    reordered = ModelRouting(splits=tuple(reversed(SPLIT)))
    for key, version in list(chosen.items())[:500]:
        assert choose_version(routing, key, model="mlp", rng=lambda: 0.999) == version
        assert choose_version(reordered, key, model="mlp") == version
    share = Counter(chosen.values())["1"] / len(chosen)
    assert 0.77 < share < 0.83


def test_keys_are_dealt_per_model_and_per_split() -> None:
    routing = ModelRouting(splits=(SplitEntry("a", 50), SplitEntry("b", 50)))
    keys = [f"k{i}" for i in range(200)]
    one = [choose_version(routing, k, model="one") for k in keys]
    two = [choose_version(routing, k, model="two") for k in keys]
    assert one != two
    assert split_fingerprint(SPLIT) == split_fingerprint(tuple(reversed(SPLIT)))
    assert split_fingerprint(SPLIT) != split_fingerprint((SplitEntry("1", 70), SplitEntry("2", 30)))
    fraction = key_fraction("m", split_fingerprint(SPLIT), "k")
    assert 0.0 <= fraction < 1.0 and fraction == key_fraction("m", split_fingerprint(SPLIT), "k")


@pytest.mark.parametrize("weights", [(0, 0), (-5, 0)])
def test_split_without_positive_weight_falls_back_to_production(weights: tuple[int, int]) -> None:
    splits = (SplitEntry("1", weights[0]), SplitEntry("2", weights[1]))
    assert choose_version(ModelRouting(aliases={"production": "1"}, splits=splits), None) == "1"


def test_zero_weight_arm_never_chosen() -> None:
    routing = ModelRouting(splits=(SplitEntry("1", 100), SplitEntry("2", 0)))
    assert {choose_version(routing, f"k{i}") for i in range(300)} == {"1"}
    assert choose_version(routing, None, rng=lambda: 0.9999999) == "1"


def test_ramping_a_split_keeps_keys_in_the_growing_arm() -> None:
    from registry_db.records import ModelRouting

    before = ModelRouting(splits=(SplitEntry("1", 90), SplitEntry("2", 10)))
    after = ModelRouting(splits=(SplitEntry("1", 80), SplitEntry("2", 20)))
    keys = [f"user-{i}" for i in range(3000)]
    treated = {k for k in keys if choose_version(before, k, model="m") == "2"}
    treated_after = {k for k in keys if choose_version(after, k, model="m") == "2"}
    assert treated and treated <= treated_after
    assert 0.17 < len(treated_after) / len(keys) < 0.23
