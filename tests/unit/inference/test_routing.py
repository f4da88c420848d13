"""The routing rule: split (weighted; sticky per key with no shared state), else production, else None."""

from __future__ import annotations

from collections import Counter

import pytest

from registry_db.records import ModelRouting, SplitEntry
from service.inference.routing import choose_version, describe_version, key_fraction, targets

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


def test_keys_are_dealt_per_model() -> None:
    routing = ModelRouting(splits=(SplitEntry("a", 50), SplitEntry("b", 50)))
    keys = [f"k{i}" for i in range(200)]
    one = [choose_version(routing, k, model="one") for k in keys]
    two = [choose_version(routing, k, model="two") for k in keys]
    assert one != two
    fraction = key_fraction("m", "k")
    assert 0.0 <= fraction < 1.0 and fraction == key_fraction("m", "k")


def test_key_placement_is_stable_across_releases() -> None:
    """Replicas of different releases must deal keys alike during a rolling upgrade: pinned digests."""
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"digits::user-7").digest()[:8], "big") / float(1 << 64)
    assert key_fraction("digits", "user-7") == expected


def test_description_agrees_with_the_rule_for_every_key() -> None:
    routing = ModelRouting(aliases={"production": "9"}, splits=SPLIT)
    for i in range(500):
        key = f"user-{i}"
        assert describe_version(routing, key, model="m") == choose_version(routing, key, model="m")
    assert describe_version(routing, None, model="m") == "1"  # the heaviest arm, not production
    tie = ModelRouting(splits=(SplitEntry("b", 50), SplitEntry("a", 50)))
    assert describe_version(tie, None, model="m") == "a"
    assert describe_version(ModelRouting(aliases={"production": "3"}), None, model="m") == "3"
    assert describe_version(ModelRouting(), "k", model="m") is None


def test_targets_are_the_arms_else_production() -> None:
    assert targets(ModelRouting(aliases={"production": "9"}, splits=SPLIT)) == ("1", "2")
    assert targets(ModelRouting(aliases={"production": "9"}, splits=(SplitEntry("1", 0),))) == ("9",)
    assert targets(ModelRouting(aliases={"staging": "9"})) == ()


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
