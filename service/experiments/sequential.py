"""Always-valid comparisons of an A/B arm against control, safe to look at after every request.

Why: people watch the stats page continuously. A fixed-horizon z-test read that way "finds" a difference between
two identical versions far more often than its nominal α (measured below: 44 % of A/A experiments at
α = 0.05). The intervals here are *confidence sequences*: with probability at least 1 - α the interval for the
difference contains the true difference **at every sample size at once**, so a verdict reached on any look, after
any number of earlier looks, is wrong with probability at most α. Because these functions are stateless (they
see only the totals that exist now), that is the whole promise: the chance that the interval *ever* excludes the
true difference, over the life of the experiment, is at most α. An interval computed now is not intersected with
earlier ones and the p-value is not the running minimum, so both can widen or rise again between looks; keep the
first verdict if you need a decision that never flips back.

Method: the mixture sequential probability ratio test (mSPRT) with a normal mixing distribution, as in Johari,
Koomen, Pekelis & Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests", Operations Research 70(3),
2022 (arXiv:1512.04922), in the two-sample form Optimizely's Stats Engine uses: the difference estimate
``d = mean_arm - mean_control`` with plug-in variance ``V = s²_c / n_c + s²_a / n_a`` behaves, in information time
``1 / V``, like a Brownian motion with drift ``θ``; mixing the likelihood ratio over ``θ ~ N(0, τ²)`` gives the
martingale::

    Λ(θ0) = sqrt(V / (V + τ²)) · exp(τ² (d - θ0)² / (2 V (V + τ²)))

and Ville's inequality bounds ``P(sup Λ(θ) >= 1/α) <= α``. Inverting it gives the interval
``d ± sqrt(V (V + τ²) / τ² · (2 ln(1/α) + ln((V + τ²) / V)))`` and the always-valid p-value ``min(1, 1 / Λ(0))``;
the interval excludes 0 exactly when the p-value is at most α. With the plug-in variance the guarantee is
asymptotic (the sample variance converges, the CLT does the rest): this is the "asymptotic confidence sequence" of
Waudby-Smith, Arnold, Wu, Howard & Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences",
Annals of Statistics 2024 (arXiv:2103.06476), Theorem 2.2, which GrowthBook uses. Three guards keep it honest
on finite samples: no interval below ``min_samples`` per arm (the CLT needs some data first); proportions use the
Laplace-smoothed rate ``(x + 1) / (n + 2)`` for their variance, so an arm with no failures yet does not claim zero
variance; and each arm's variance is floored at the pooled variance of both arms together. The floor matters for
rare rates on a small canary: an arm that by chance saw few errors also estimates a small variance for itself and
looks "better" too soon (measured: 5.7 % false positives at α = 5 % without the floor, 1.4 % with it). Under "no
difference" the pooled variance is the right one; under a real difference the floor only widens the interval.

The mixing variance τ²: the interval for a given sample size is narrowest when ``τ² = r* · V`` with ``r*`` the root
of ``r = 2 ln(1/α) + ln(1 + r)`` (8.2 at α = 0.05). So τ is set by ``planned_n``, the per-arm sample size at which
the interval should be tightest: ``τ² = r* · (s²_c + s²_a) / planned_n``. That keeps one default meaningful for
every metric and scale (an error rate near 1 % and an accuracy near 80 % have very different noise). The default
``planned_n = 3000`` gives τ ≈ 0.030 for a proportion near 0.8, the "a few points" effect an accuracy A/B is run
to find, and is close to the ~2,600 per arm a fixed-horizon test needs for 80 % power on 0.80 vs 0.83. Smaller
``planned_n`` reacts faster to large effects and slower to small ones; pass ``tau`` to fix τ in the metric's units
instead (mSPRT as published). With ``planned_n`` τ follows the variance estimate, which is what makes the
Waudby-Smith form scale-free; it settles as the estimate does.

Measured by ``tests/unit/experiments/test_sequential_simulation.py`` (2,000 experiments unless noted, batches of
100 per arm, a look after every batch, up to 20,000 per arm, α = 0.05; docs/experiments-statistics.md has more):
A/A Bernoulli(0.8): 2.4 % ever declare a difference; the fixed-horizon z-test peeked after every batch: 44 %.
A/A error rate 2 % on a 90/10 split: 1.4 %. A/A normal rewards: 2.2 %; raw lognormal latencies (1,000): 1.1 %.
Power, accuracy 0.80 vs 0.83: 66 % "better" by 4,000 per arm, 99 % by 10,000, 100 % by 20,000; median 2,800
per arm at the verdict; the interval ever missed the true 0.03 in 2.3 % of experiments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = (
    "ALPHA",
    "MIN_SAMPLES",
    "PLANNED_N",
    "Bounds",
    "Comparison",
    "Effect",
    "Verdict",
    "compare_log_means",
    "compare_means",
    "compare_proportions",
    "fixed_horizon_z_test",
    "log_moments",
    "mean_bounds",
    "optimal_mixing_ratio",
    "proportion_bounds",
    "sequential_bounds",
)

FloatArray = npt.NDArray[np.float64]
Verdict = Literal["better", "worse", "no difference yet", "not enough data"]
Effect = Literal["difference", "ratio"]

ALPHA = 0.05
"""Default error probability: the chance the interval ever misses the true difference."""
PLANNED_N = 3000
"""Default per-arm sample size at which the interval is narrowest (sets τ²; see the module docstring)."""
MIN_SAMPLES = 100
"""Default per-arm count below which no interval is given: the normal approximation needs some data first."""
_MAX_EXP = 700.0
"""Largest log-ratio turned back into a ratio; beyond it ``exp`` overflows float64."""


class Bounds(NamedTuple):
    """Vectorised result, each array broadcast from the inputs; NaN where an arm has too little data to say."""

    difference: FloatArray
    low: FloatArray
    high: FloatArray
    p_value: FloatArray


@dataclass(frozen=True, slots=True)
class Comparison:
    """One arm against control on one metric, at the totals seen now."""

    metric: str
    """What was compared: ``error_rate``, ``accuracy``, ``reward``, ``latency_ms`` (free text, echoed back)."""
    control: float | None
    """Control's estimate: a proportion, a mean, or (``effect == "ratio"``) a geometric mean."""
    arm: float | None
    """The treatment arm's estimate, same kind as ``control``."""
    difference: float | None
    """``arm - control``, or ``arm / control`` when ``effect == "ratio"``."""
    interval: tuple[float, float] | None
    """Always-valid (1 - α) confidence interval for ``difference``; None below ``min_samples``."""
    p_value: float | None
    """Always-valid p-value for "no difference" (difference 0, ratio 1); at most α exactly when the interval
    excludes it."""
    verdict: Verdict
    n_control: int
    n_arm: int
    alpha: float
    higher_is_better: bool
    effect: Effect = "difference"

    @property
    def null(self) -> float:
        """The value of ``difference`` that means "no difference"."""
        return 1.0 if self.effect == "ratio" else 0.0

    def is_worse_by(self, margin: float) -> bool:
        """True when the interval shows the arm worse than control by more than ``margin`` (a rollback guard).

        ``margin`` is in the metric's units for a difference and a fraction for a ratio (0.1: 10 % slower).
        Valid on any look, like the verdict; False while there is not enough data.
        """
        if self.interval is None:
            return False
        low, high = self.interval
        return high < self.null - margin if self.higher_is_better else low > self.null + margin

    def is_not_worse_by(self, margin: float) -> bool:
        """True when the interval rules out the arm being worse than control by more than ``margin`` (a gate).

        Non-inferiority: "accuracy no more than 1 point below control" is ``is_not_worse_by(0.01)``.
        """
        if self.interval is None:
            return False
        low, high = self.interval
        return low > self.null - margin if self.higher_is_better else high < self.null + margin

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: estimates to 6 significant digits, the p-value to 4; None where there is no figure."""
        return {
            "metric": self.metric,
            "effect": self.effect,
            "control": _sig(self.control, 6),
            "arm": _sig(self.arm, 6),
            "difference": _sig(self.difference, 6),
            "interval": None if self.interval is None else [_sig(self.interval[0], 6), _sig(self.interval[1], 6)],
            "p_value": _sig(self.p_value, 4),
            "verdict": self.verdict,
            "n_control": self.n_control,
            "n_arm": self.n_arm,
            "alpha": self.alpha,
            "higher_is_better": self.higher_is_better,
        }


def optimal_mixing_ratio(alpha: float = ALPHA) -> float:
    """``r* = τ² / V`` that makes the interval narrowest at a given ``V``: the root of ``r = 2 ln(1/α) + ln(1 + r)``.

    From differentiating the half-width² ``V (1 + 1/r) (2 ln(1/α) + ln(1 + r))`` in ``r``; the fixed-point
    iteration contracts (slope ``1 / (1 + r) < 1``), 60 steps are far past float precision. 8.21 at α = 0.05.
    """
    _check_alpha(alpha)
    c = 2.0 * math.log(1.0 / alpha)
    r = c
    for _ in range(60):
        r = c + math.log1p(r)
    return r


def sequential_bounds(difference: npt.ArrayLike, variance: npt.ArrayLike, tau2: npt.ArrayLike, alpha: float) -> Bounds:
    """The mSPRT interval and p-value for an estimate ``difference`` with variance ``variance`` (any shape, broadcast).

    ``tau2`` is the normal mixing variance in the same units squared. ``variance == 0`` (no noise at all) gives the
    point interval and a p-value of 1 or 0; ``tau2`` must be positive wherever ``variance`` is.
    """
    _check_alpha(alpha)
    d, v, t2 = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (difference, variance, tau2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = t2 / v
        half = np.sqrt(v * (1.0 + 1.0 / r) * (2.0 * math.log(1.0 / alpha) + np.log1p(r)))
        log_lr = -0.5 * np.log1p(r) + (r / (1.0 + r)) * d * d / (2.0 * v)
        p = np.exp(-np.maximum(log_lr, 0.0))
    exact = v == 0
    half = np.where(exact, 0.0, half)
    p = np.where(exact, np.where(d == 0, 1.0, 0.0), p)
    nan = np.isnan(d) | np.isnan(v)
    p = np.where(nan, np.nan, p)
    return Bounds(d, d - half, d + half, p)


def proportion_bounds(
    successes_control: npt.ArrayLike,
    n_control: npt.ArrayLike,
    successes_arm: npt.ArrayLike,
    n_arm: npt.ArrayLike,
    *,
    alpha: float = ALPHA,
    planned_n: float = PLANNED_N,
    tau: float | None = None,
) -> Bounds:
    """Vectorised :func:`compare_proportions` without the verdict: arrays of counts in, :class:`Bounds` out.

    The simulation tests call this with ``(experiments, looks)`` arrays; NaN where an arm has no trials.
    """
    xc, nc, xa, na = (np.asarray(x, dtype=np.float64) for x in (successes_control, n_control, successes_arm, n_arm))
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = xa / na - xc / nc
        pooled = _smoothed_bernoulli_variance(xc + xa, nc + na)
        var_c = np.maximum(_smoothed_bernoulli_variance(xc, nc), pooled)
        var_a = np.maximum(_smoothed_bernoulli_variance(xa, na), pooled)
        return sequential_bounds(
            diff, var_c / nc + var_a / na, _tau2(var_c, var_a, alpha=alpha, planned_n=planned_n, tau=tau), alpha
        )


def mean_bounds(
    n_control: npt.ArrayLike,
    sum_control: npt.ArrayLike,
    sumsq_control: npt.ArrayLike,
    n_arm: npt.ArrayLike,
    sum_arm: npt.ArrayLike,
    sumsq_arm: npt.ArrayLike,
    *,
    alpha: float = ALPHA,
    planned_n: float = PLANNED_N,
    tau: float | None = None,
) -> Bounds:
    """Vectorised :func:`compare_means` without the verdict; NaN where an arm has fewer than 2 observations."""
    nc, na = np.asarray(n_control, dtype=np.float64), np.asarray(n_arm, dtype=np.float64)
    mean_c, var_c = _mean_and_variance(nc, sum_control, sumsq_control)
    mean_a, var_a = _mean_and_variance(na, sum_arm, sumsq_arm)
    _, pooled = _mean_and_variance(nc + na, np.add(sum_control, sum_arm), np.add(sumsq_control, sumsq_arm))
    var_c, var_a = np.maximum(var_c, pooled), np.maximum(var_a, pooled)
    with np.errstate(divide="ignore", invalid="ignore"):
        return sequential_bounds(
            mean_a - mean_c,
            var_c / nc + var_a / na,
            _tau2(var_c, var_a, alpha=alpha, planned_n=planned_n, tau=tau),
            alpha,
        )


def compare_proportions(
    successes_control: int,
    n_control: int,
    successes_arm: int,
    n_arm: int,
    *,
    metric: str,
    higher_is_better: bool,
    alpha: float = ALPHA,
    min_samples: int = MIN_SAMPLES,
    planned_n: float = PLANNED_N,
    tau: float | None = None,
) -> Comparison:
    """Compare two rates (errors / requests, correct / labelled) from their counts; valid on every look.

    "Successes" are whatever is counted (errors for ``error_rate`` with ``higher_is_better=False``).
    """
    for x, n in ((successes_control, n_control), (successes_arm, n_arm)):
        if n < 0 or not 0 <= x <= n:
            raise ValueError(f"counts must satisfy 0 <= successes <= n, got {x} of {n}")
    _check_options(alpha, min_samples, planned_n, tau)
    control = successes_control / n_control if n_control else None
    arm = successes_arm / n_arm if n_arm else None
    bounds = None
    if min(n_control, n_arm) >= min_samples:
        bounds = proportion_bounds(
            successes_control, n_control, successes_arm, n_arm, alpha=alpha, planned_n=planned_n, tau=tau
        )
    return _comparison(metric, control, arm, bounds, n_control, n_arm, alpha, higher_is_better)


def compare_means(
    n_control: int,
    sum_control: float,
    sumsq_control: float,
    n_arm: int,
    sum_arm: float,
    sumsq_arm: float,
    *,
    metric: str,
    higher_is_better: bool,
    alpha: float = ALPHA,
    min_samples: int = MIN_SAMPLES,
    planned_n: float = PLANNED_N,
    tau: float | None = None,
) -> Comparison:
    """Compare two means (reward, latency) from count, sum and sum of squares per arm; valid on every look.

    Skewed data (latency, revenue-like rewards) is fine once ``min_samples`` is large enough for the CLT; for
    latency consider :func:`compare_log_means`, which compares the geometric means as a ratio.
    """
    _check_sums(n_control, sum_control, sumsq_control)
    _check_sums(n_arm, sum_arm, sumsq_arm)
    _check_options(alpha, min_samples, planned_n, tau)
    control = sum_control / n_control if n_control else None
    arm = sum_arm / n_arm if n_arm else None
    bounds = None
    if min(n_control, n_arm) >= min_samples:
        bounds = mean_bounds(
            n_control,
            sum_control,
            sumsq_control,
            n_arm,
            sum_arm,
            sumsq_arm,
            alpha=alpha,
            planned_n=planned_n,
            tau=tau,
        )
    return _comparison(metric, control, arm, bounds, n_control, n_arm, alpha, higher_is_better)


def compare_log_means(
    n_control: int,
    sum_log_control: float,
    sumsq_log_control: float,
    n_arm: int,
    sum_log_arm: float,
    sumsq_log_arm: float,
    *,
    metric: str = "latency_ms",
    higher_is_better: bool = False,
    alpha: float = ALPHA,
    min_samples: int = MIN_SAMPLES,
    planned_n: float = PLANNED_N,
    tau: float | None = None,
) -> Comparison:
    """Compare geometric means as a ratio ``arm / control`` from sums of ``ln(x)`` (see :func:`log_moments`).

    The test is :func:`compare_means` on the logs; its interval for the difference of mean logs is exponentiated,
    so ``difference`` 1.08 with interval (1.02, 1.15) reads "the arm's typical latency is 2-15 % higher". Logs tame
    latency's long right tail, so the CLT holds at far smaller samples than for raw milliseconds; the price is
    that a ratio of geometric means says nothing about the tail itself (compare p99 separately).
    """
    logs = compare_means(
        n_control,
        sum_log_control,
        sumsq_log_control,
        n_arm,
        sum_log_arm,
        sumsq_log_arm,
        metric=metric,
        higher_is_better=higher_is_better,
        alpha=alpha,
        min_samples=min_samples,
        planned_n=planned_n,
        tau=tau,
    )
    return Comparison(
        metric=metric,
        control=_exp(logs.control),
        arm=_exp(logs.arm),
        difference=_exp(logs.difference),
        interval=None if logs.interval is None else (_exp_clamped(logs.interval[0]), _exp_clamped(logs.interval[1])),
        p_value=logs.p_value,
        verdict=logs.verdict,
        n_control=n_control,
        n_arm=n_arm,
        alpha=alpha,
        higher_is_better=higher_is_better,
        effect="ratio",
    )


def log_moments(upper_bounds: Sequence[float], counts: Sequence[int]) -> tuple[int, float, float]:
    """``(n, Σ ln x, Σ (ln x)²)`` of a log-bucketed histogram, each observation at its bucket's geometric middle.

    ``upper_bounds`` are the ascending, positive, finite upper edges; ``counts`` are per bucket (not cumulative),
    one more than the edges: the last is the overflow bucket above the last edge. The first bucket's lower edge and
    the overflow's upper edge are extrapolated with the neighbouring bucket's ratio. Rounding to the middle adds
    about ``h² / 12`` (``h``: a bucket's width in ``ln``) to the variance, which only widens intervals, and biases
    both arms' means alike when their distributions are alike, so A/A comparisons stay valid; a real ratio is
    resolved to within a fraction of one bucket's ratio. Feed the result to :func:`compare_log_means`.
    """
    edges = np.asarray(upper_bounds, dtype=np.float64)
    weights = np.asarray(counts, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or edges[0] <= 0:
        raise ValueError("upper_bounds must be at least two positive, finite edges")
    if not np.all(np.diff(edges) > 0):
        raise ValueError("upper_bounds must be strictly ascending")
    if weights.shape != (edges.size + 1,) or np.any(weights < 0):
        raise ValueError(f"counts must be {edges.size + 1} non-negative numbers (one per bucket plus overflow)")
    log_edges = np.log(edges)
    lower = np.concatenate(([2 * log_edges[0] - log_edges[1]], log_edges))
    upper = np.concatenate((log_edges, [2 * log_edges[-1] - log_edges[-2]]))
    middles = (lower + upper) / 2
    return int(weights.sum()), float(weights @ middles), float(weights @ (middles * middles))


_erfc = np.frompyfunc(math.erfc, 1, 1)
"""math.erfc over arrays (numpy has no erfc and the core does not depend on scipy)."""


def fixed_horizon_z_test(
    successes_control: npt.ArrayLike, n_control: npt.ArrayLike, successes_arm: npt.ArrayLike, n_arm: npt.ArrayLike
) -> FloatArray:
    """The old pooled two-proportion z-test p-value (``observability/ab.py``); vectorised, NaN where an arm is empty.

    Valid only when read once, at a sample size fixed in advance. Kept so the simulation can show what it gives
    when read after every batch; do not use it for verdicts.
    """
    xc, nc, xa, na = (np.asarray(x, dtype=np.float64) for x in (successes_control, n_control, successes_arm, n_arm))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (xc + xa) / (nc + na)
        variance = pooled * (1 - pooled) * (1 / nc + 1 / na)
        z = np.abs(xa / na - xc / nc) / np.sqrt(variance)
        p = np.asarray(_erfc(z / math.sqrt(2)), dtype=np.float64)
    return np.where(variance == 0, 1.0, p)


def _smoothed_bernoulli_variance(successes: FloatArray, n: FloatArray) -> FloatArray:
    """``p̃ (1 - p̃)`` with the Laplace rate ``p̃ = (x + 1) / (n + 2)``: never 0, so 0 of n is not certainty."""
    rate = (successes + 1.0) / (n + 2.0)
    return np.asarray(rate * (1.0 - rate), dtype=np.float64)


def _mean_and_variance(n: npt.ArrayLike, total: npt.ArrayLike, sumsq: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Mean and unbiased sample variance from sufficient statistics; NaN below 2 observations, variance >= 0."""
    count, s, ss = (np.asarray(x, dtype=np.float64) for x in (n, total, sumsq))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, s / count, np.nan)
        var = np.where(count > 1, np.maximum(ss - s * mean, 0.0) / (count - 1), np.nan)
    return mean, var


def _tau2(var_c: FloatArray, var_a: FloatArray, *, alpha: float, planned_n: float, tau: float | None) -> FloatArray:
    """Mixing variance: fixed ``tau²`` if given, else narrowest at ``planned_n`` per arm (module docstring)."""
    _check_mixture(planned_n, tau)
    if tau is not None:
        return np.asarray(tau * tau, dtype=np.float64)
    return np.asarray(optimal_mixing_ratio(alpha) * (var_c + var_a) / planned_n, dtype=np.float64)


def _comparison(
    metric: str,
    control: float | None,
    arm: float | None,
    bounds: Bounds | None,
    n_control: int,
    n_arm: int,
    alpha: float,
    higher_is_better: bool,
) -> Comparison:
    """Package one look: the verdict follows from where the interval lies, and direction from the metric."""
    difference = None if control is None or arm is None else arm - control
    interval = None
    p_value = None
    verdict: Verdict = "not enough data"
    if bounds is not None:
        difference = float(bounds.difference)
        interval = (float(bounds.low), float(bounds.high))
        p_value = float(bounds.p_value)
        verdict = "no difference yet"
        if interval[0] > 0 or interval[1] < 0:
            verdict = "better" if (interval[0] > 0) == higher_is_better else "worse"
    return Comparison(
        metric=metric,
        control=control,
        arm=arm,
        difference=difference,
        interval=interval,
        p_value=p_value,
        verdict=verdict,
        n_control=n_control,
        n_arm=n_arm,
        alpha=alpha,
        higher_is_better=higher_is_better,
    )


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")


def _check_mixture(planned_n: float, tau: float | None) -> None:
    if tau is not None and not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"tau must be a positive number, got {tau}")
    if not (planned_n >= 1 and math.isfinite(planned_n)):
        raise ValueError(f"planned_n must be at least 1, got {planned_n}")


def _check_options(alpha: float, min_samples: int, planned_n: float, tau: float | None) -> None:
    """Refuse bad settings on every call, not only once both arms reach ``min_samples``."""
    _check_alpha(alpha)
    _check_mixture(planned_n, tau)
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2 (a variance needs two observations), got {min_samples}")


def _check_sums(n: int, total: float, sumsq: float) -> None:
    if n < 0 or not (math.isfinite(total) and math.isfinite(sumsq)) or sumsq < 0:
        raise ValueError(f"sufficient statistics must be n >= 0 and finite sums with sumsq >= 0, got {n}, {total}")


def _exp(log_value: float | None) -> float | None:
    return None if log_value is None else _exp_clamped(log_value)


def _exp_clamped(log_value: float) -> float:
    return math.exp(min(log_value, _MAX_EXP))


def _sig(value: float | None, digits: int) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")
