"""The sequential comparisons, look by look: edge cases, direction, invariants, and the scalar/vector agreement
the simulation test relies on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.experiments.sequential import (
    ALPHA,
    MIN_SAMPLES,
    Comparison,
    compare_log_means,
    compare_means,
    compare_proportions,
    fixed_horizon_z_test,
    log_moments,
    mean_bounds,
    optimal_mixing_ratio,
    proportion_bounds,
    sequential_bounds,
)


def _accuracy(xc: int, nc: int, xa: int, na: int, **kwargs: object) -> Comparison:
    return compare_proportions(xc, nc, xa, na, metric="accuracy", higher_is_better=True, **kwargs)  # type: ignore


def _finite(c: Comparison) -> bool:
    values = [c.control, c.arm, c.difference, c.p_value, *(c.interval or ())]
    return all(v is None or math.isfinite(v) for v in values)


def _round_trips(c: Comparison) -> None:
    d = c.as_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_no_data_at_all_is_not_enough_data_with_no_figures() -> None:
    c = _accuracy(0, 0, 0, 0)
    assert (c.control, c.arm, c.difference, c.interval, c.p_value) == (None, None, None, None, None)
    assert c.verdict == "not enough data"
    assert not c.is_worse_by(0.0) and not c.is_not_worse_by(1.0)
    _round_trips(c)


def test_below_min_samples_gives_estimates_but_no_interval() -> None:
    c = _accuracy(80, MIN_SAMPLES, 0, MIN_SAMPLES - 1)
    assert c.verdict == "not enough data" and c.interval is None and c.p_value is None
    assert c.control == 0.8 and c.arm == 0.0 and c.difference == -0.8
    assert _accuracy(80, MIN_SAMPLES, 0, MIN_SAMPLES).verdict == "worse"  # one more and the evidence counts
    assert _accuracy(8, 10, 0, 10, min_samples=10).verdict == "no difference yet"  # 10 each is little evidence


@pytest.mark.parametrize("successes", [0, 500])
def test_zero_or_all_successes_in_both_arms_is_no_difference_with_a_finite_interval(successes: int) -> None:
    c = _accuracy(successes, 500, successes, 500)
    assert c.verdict == "no difference yet" and c.difference == 0.0 and c.p_value == 1.0
    assert c.interval is not None and c.interval[0] < 0 < c.interval[1] and _finite(c)
    _round_trips(c)


def test_all_successes_against_none_is_decisive_and_finite() -> None:
    c = _accuracy(200, 200, 0, 200)
    assert c.verdict == "worse" and c.difference == -1.0 and _finite(c)
    assert c.p_value is not None and c.p_value < 1e-6
    _round_trips(c)


def test_identical_arms_have_a_symmetric_interval_around_zero() -> None:
    c = _accuracy(1600, 2000, 1600, 2000)
    assert c.interval is not None and c.interval[0] == pytest.approx(-c.interval[1])
    assert c.p_value == 1.0 and c.verdict == "no difference yet"


def test_direction_follows_the_metric() -> None:
    errors = compare_proportions(40, 2000, 10, 2000, metric="error_rate", higher_is_better=False)
    assert errors.difference == pytest.approx(-0.015) and errors.verdict == "better"
    accuracy = _accuracy(40, 2000, 10, 2000)
    assert accuracy.verdict == "worse"


def test_huge_counts_stay_finite_and_tight() -> None:
    n = 10**12
    c = _accuracy(800_000_000_000, n, 800_010_000_000, n)
    assert _finite(c) and c.interval is not None and c.interval[1] - c.interval[0] < 1e-5
    assert c.verdict == "better"  # 1e-5 on a trillion each is 17 standard errors
    m = compare_means(n, 20.0 * n, 425.0 * n, n, 20.0 * n, 425.0 * n, metric="latency_ms", higher_is_better=False)
    assert _finite(m) and m.verdict == "no difference yet" and m.interval is not None
    assert m.interval[1] == pytest.approx(-m.interval[0]) and 0 < m.interval[1] < 1e-3
    _round_trips(m)


def test_constant_means_equal_and_different() -> None:
    same = compare_means(200, 200.0, 200.0, 200, 200.0, 200.0, metric="reward", higher_is_better=True)
    assert same.interval == (0.0, 0.0) and same.p_value == 1.0 and same.verdict == "no difference yet"
    apart = compare_means(200, 200.0, 200.0, 200, 0.0, 0.0, metric="reward", higher_is_better=True)
    assert apart.verdict == "worse" and _finite(apart)  # no spread within arms, but the pooled spread is real


def test_means_from_sufficient_statistics_match_the_sample() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, 5000), rng.normal(1.3, 2.0, 5000)
    c = compare_means(
        a.size, a.sum(), float(a @ a), b.size, b.sum(), float(b @ b), metric="reward", higher_is_better=True, tau=0.2
    )
    assert c.difference is not None and c.difference == pytest.approx(b.mean() - a.mean())
    variance = max(a.var(ddof=1), b.var(ddof=1), np.concatenate([a, b]).var(ddof=1)) * 2 / 5000
    r = 0.04 / variance
    half = math.sqrt(variance * (1 + 1 / r) * (2 * math.log(1 / ALPHA) + math.log1p(r)))
    assert c.interval == pytest.approx((c.difference - half, c.difference + half), rel=1e-9)
    assert c.verdict == "better"


def test_scalar_functions_agree_with_the_vectorised_ones_the_simulation_uses() -> None:
    rng = np.random.default_rng(1)
    n = rng.integers(MIN_SAMPLES, 50_000, size=(50, 2))
    x = rng.binomial(n, 0.3)
    vector = proportion_bounds(x[:, 0], n[:, 0], x[:, 1], n[:, 1])
    for i in range(50):
        c = _accuracy(int(x[i, 0]), int(n[i, 0]), int(x[i, 1]), int(n[i, 1]))
        assert c.interval == (float(vector.low[i]), float(vector.high[i]))
        assert c.p_value == float(vector.p_value[i])
    sums, sumsq = rng.normal(size=(50, 2)) * n, rng.uniform(2, 3, size=(50, 2)) * n
    vector = mean_bounds(n[:, 0], sums[:, 0], sumsq[:, 0], n[:, 1], sums[:, 1], sumsq[:, 1])
    for i in range(50):
        m = compare_means(
            int(n[i, 0]),
            sums[i, 0],
            sumsq[i, 0],
            int(n[i, 1]),
            sums[i, 1],
            sumsq[i, 1],
            metric="r",
            higher_is_better=True,
        )
        assert m.interval == (float(vector.low[i]), float(vector.high[i]))


@settings(max_examples=300, deadline=None)
@given(
    nc=st.integers(0, 10**9),
    na=st.integers(0, 10**9),
    fc=st.floats(0, 1),
    fa=st.floats(0, 1),
    alpha=st.floats(0.001, 0.5),
)
def test_invariants_on_any_counts(nc: int, na: int, fc: float, fa: float, alpha: float) -> None:
    c = _accuracy(round(fc * nc), nc, round(fa * na), na, alpha=alpha)
    assert _finite(c)
    _round_trips(c)
    if c.interval is None:
        assert c.verdict == "not enough data"
        return
    low, high = c.interval
    assert c.difference is not None and c.p_value is not None
    assert low <= c.difference <= high and 0.0 <= c.p_value <= 1.0
    excludes = low > 0 or high < 0
    assert excludes == (c.verdict in ("better", "worse"))
    if abs(c.p_value - alpha) > 1e-9 * alpha:  # the two agree up to rounding at the boundary
        assert excludes == (c.p_value <= alpha)


@settings(max_examples=200, deadline=None)
@given(
    n=st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)),
    mean=st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)),
    spread=st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)),
)
def test_mean_invariants_on_any_sufficient_statistics(
    n: tuple[int, int], mean: tuple[float, float], spread: tuple[float, float]
) -> None:
    """Sums of real samples: ``sumsq = n (spread² + mean²)``, from a single observation to a billion."""
    stats = [(k, k * m, k * (s * s + m * m)) for k, m, s in zip(n, mean, spread, strict=True)]
    c = compare_means(*stats[0], *stats[1], metric="reward", higher_is_better=True)
    assert _finite(c)
    _round_trips(c)
    if c.interval is not None:
        assert c.difference is not None and c.p_value is not None
        assert c.interval[0] <= c.difference <= c.interval[1] and 0.0 <= c.p_value <= 1.0


def test_smaller_alpha_and_less_data_widen_the_interval() -> None:
    def width(c: Comparison) -> float:
        assert c.interval is not None
        return c.interval[1] - c.interval[0]

    assert width(_accuracy(800, 1000, 820, 1000, alpha=0.01)) > width(_accuracy(800, 1000, 820, 1000))
    assert width(_accuracy(400, 500, 410, 500)) > width(_accuracy(800, 1000, 820, 1000))


def test_the_mixing_ratio_makes_the_interval_narrowest() -> None:
    r = optimal_mixing_ratio(0.05)
    assert r == pytest.approx(2 * math.log(20) + math.log1p(r)) and r == pytest.approx(8.21, abs=0.01)
    widths = [float(sequential_bounds(0.0, 1e-4, k * r * 1e-4, 0.05).high[()]) for k in (0.8, 1.0, 1.25)]
    assert widths[1] < widths[0] and widths[1] < widths[2]


def test_planned_n_and_tau_set_the_same_mixture() -> None:
    tau = math.sqrt(optimal_mixing_ratio() * 2 * 0.16 / 3000)  # planned_n=3000 on p=0.8 (well above the pooled)
    by_plan = _accuracy(2400, 3000, 2400, 3000)
    by_tau = _accuracy(2400, 3000, 2400, 3000, tau=tau)
    assert by_plan.interval is not None and by_tau.interval is not None
    assert by_plan.interval[1] == pytest.approx(by_tau.interval[1], rel=1e-3)
    assert _accuracy(2400, 3000, 2400, 3000, tau=3 * tau).interval != by_tau.interval


@pytest.mark.parametrize(
    "call",
    [
        lambda: _accuracy(11, 10, 0, 10),
        lambda: _accuracy(-1, 10, 0, 10),
        lambda: _accuracy(0, -1, 0, 10),
        lambda: _accuracy(5, 10, 5, 10, alpha=0.0),
        lambda: _accuracy(5, 10, 5, 10, alpha=1.0),
        lambda: _accuracy(5, 10, 5, 10, min_samples=1),
        lambda: _accuracy(5, 10, 5, 10, planned_n=0),
        lambda: _accuracy(500, 1000, 500, 1000, tau=0.0),
        lambda: _accuracy(500, 1000, 500, 1000, tau=math.nan),
        lambda: compare_means(10, math.nan, 1.0, 10, 1.0, 1.0, metric="reward", higher_is_better=True),
        lambda: compare_means(10, 1.0, -1.0, 10, 1.0, 1.0, metric="reward", higher_is_better=True),
        lambda: compare_means(-1, 1.0, 1.0, 10, 1.0, 1.0, metric="reward", higher_is_better=True),
    ],
)
def test_bad_arguments_are_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_gates_and_guards_read_the_interval_in_the_metric_direction() -> None:
    close = _accuracy(8000, 10_000, 7950, 10_000)  # 0.5 points lower, interval about ±1.5 points
    assert close.verdict == "no difference yet"
    assert close.is_not_worse_by(0.03) and not close.is_not_worse_by(0.001)
    assert not close.is_worse_by(0.0)
    bad = compare_proportions(20, 10_000, 300, 10_000, metric="error_rate", higher_is_better=False)
    assert bad.is_worse_by(0.02) and not bad.is_worse_by(0.05) and not bad.is_not_worse_by(0.01)


def _two_proportion_p(xc: int, nc: int, xa: int, na: int) -> float:
    """The pooled two-proportion z-test the stats page used before (kept here as the reference)."""
    import math

    pooled = (xc + xa) / (nc + na)
    variance = pooled * (1 - pooled) * (1 / nc + 1 / na)
    if variance == 0:
        return 1.0
    return math.erfc(abs((xc / nc - xa / na) / math.sqrt(variance)) / math.sqrt(2))


def test_fixed_horizon_z_test_matches_the_old_comparison() -> None:
    for xc, nc, xa, na in ((10, 1000, 25, 1000), (0, 50, 0, 50), (500, 1000, 510, 900)):
        assert float(fixed_horizon_z_test(xc, nc, xa, na)) == pytest.approx(_two_proportion_p(xc, nc, xa, na))


def _bucketed(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """Per-bucket counts with upper edges ``edges`` (value <= edge) plus the overflow bucket."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1).tolist()


EDGES = 2.0 ** (np.arange(-8, 64) / 4)
"""Log buckets 2^(1/4) apart (19 % wide), 0.25 ms .. 55 s."""


def test_log_moments_place_observations_at_geometric_middles() -> None:
    counts = [0] * (EDGES.size + 1)
    counts[10] = 3
    n, total, sumsq = log_moments(EDGES.tolist(), counts)
    middle = (math.log(EDGES[9]) + math.log(EDGES[10])) / 2
    assert (n, total, sumsq) == (3, pytest.approx(3 * middle), pytest.approx(3 * middle * middle))
    first_and_overflow = [1] + [0] * (EDGES.size - 1) + [1]
    _, total, _ = log_moments(EDGES.tolist(), first_and_overflow)
    step = math.log(2) / 4
    assert total == pytest.approx(math.log(EDGES[0]) - step / 2 + math.log(EDGES[-1]) + step / 2)


@pytest.mark.parametrize(
    ("edges", "counts"),
    [([1.0], [0, 0]), ([0.0, 1.0], [0, 0, 0]), ([2.0, 1.0], [0, 0, 0]), ([1.0, 2.0], [0, 0]), ([1.0, 2.0], [0, -1, 0])],
)
def test_log_moments_refuse_malformed_histograms(edges: list[float], counts: list[int]) -> None:
    with pytest.raises(ValueError):
        log_moments(edges, counts)


def test_latency_ratio_from_histograms() -> None:
    """An arm exactly twice as slow lands exactly 4 buckets higher: the ratio comes back as 2, "worse"."""
    rng = np.random.default_rng(2)
    base = rng.lognormal(math.log(20.0), 0.5, 5000)
    control = log_moments(EDGES.tolist(), _bucketed(base, EDGES))
    slower = log_moments(EDGES.tolist(), _bucketed(2 * rng.lognormal(math.log(20.0), 0.5, 5000), EDGES))
    c = compare_log_means(*control, *slower)
    assert c.effect == "ratio" and c.metric == "latency_ms" and c.verdict == "worse"
    assert c.difference == pytest.approx(2.0, rel=0.05) and c.interval is not None
    assert c.difference is not None and c.interval[0] < c.difference < c.interval[1] and c.interval[0] > 1
    assert c.control == pytest.approx(20.0, rel=0.05)
    assert c.is_worse_by(0.5) and not c.is_not_worse_by(0.5)
    same = compare_log_means(*control, *log_moments(EDGES.tolist(), _bucketed(base, EDGES)))
    assert same.difference == 1.0 and same.p_value == 1.0 and same.verdict == "no difference yet"
    assert same.as_dict()["effect"] == "ratio"
    _round_trips(same)
