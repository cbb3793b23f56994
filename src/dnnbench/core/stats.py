"""Pure statistics for the stopping rule, the summaries and the fits of analysis. No torch, no numpy.

Latency distributions are skewed and multi-modal, so the CI of the median comes from order statistics
(binomial ranks), never from a normal approximation of the mean. Order statistics assume independent
samples, which a machine whose speed drifts while it is measured (other load, clock changes, a shared VM)
violates: consecutive samples then share a regime and the order-statistic CI is far too narrow. The
reported CI therefore also spans a batch-means interval — the median +/- t * s / sqrt(k) of the medians of
k consecutive blocks of samples — which widens exactly when the median moves during the run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "binom_cdf", "median_ci_ranks", "median_ci", "quantile", "min_samples_for_quantile",
    "Summary", "summarize", "linear_fit", "LinearFit", "t_quantile", "block_medians", "block_ci_halfwidth",
    "BLOCKS", "MIN_BLOCK_SAMPLES", "group_medians", "R2_CONSTANT_Y", "finite_points",
    "least_squares_line",
]

BLOCKS = 10  # consecutive blocks for the batch-means CI
MIN_BLOCK_SAMPLES = 15  # fewer samples: blocks too short for a drift-aware CI (5 blocks of 3 at the least)


def _log_pmf(i: int, n: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k), summed over the smaller tail in log space (exact to float precision, any n)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    if k < n * p:  # lower tail: terms shrink as i goes down from k
        return _tail_sum(range(k, -1, -1), n, p)
    # upper tail P(X > k): terms shrink as i goes up from k + 1
    return 1.0 - _tail_sum(range(k + 1, n + 1), n, p)


def _tail_sum(indices, n: int, p: float) -> float:
    total = 0.0
    for i in indices:
        term = math.exp(_log_pmf(i, n, p))
        total += term
        if term < 1e-18 * total:
            break
    return total


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int, float] | None:
    """1-based ranks (lo, hi) of the order statistics bracketing the median, and their exact coverage.

    The interval [x_(lo), x_(hi)] covers the population median with probability
    1 - 2 P(Bin(n, 1/2) <= lo - 1) >= ``confidence`` for any continuous distribution.
    None when n is too small for such an interval (n < 6 at 95 %).
    """
    alpha = 1.0 - confidence
    if n < 1 or binom_cdf(0, n, 0.5) > alpha / 2:
        return None
    lo_rank, hi_rank = 1, (n + 1) // 2  # largest lo with P(Bin <= lo - 1) <= alpha / 2, by bisection
    while lo_rank < hi_rank:
        mid = (lo_rank + hi_rank + 1) // 2
        if binom_cdf(mid - 1, n, 0.5) <= alpha / 2:
            lo_rank = mid
        else:
            hi_rank = mid - 1
    coverage = 1.0 - 2.0 * binom_cdf(lo_rank - 1, n, 0.5)
    return lo_rank, n + 1 - lo_rank, coverage


def median_ci(sorted_xs: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free CI of the median from already sorted samples; None when too few samples."""
    ranks = median_ci_ranks(len(sorted_xs), confidence)
    if ranks is None:
        return None
    lo, hi, _ = ranks
    return sorted_xs[lo - 1], sorted_xs[hi - 1]


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Quantile of sorted samples by linear interpolation between order statistics (numpy's default)."""
    if not sorted_xs:
        raise ValueError("quantile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom, to ~1e-9.

    Bisection on the CDF, 1/2 + the integral of the density from 0 (composite Simpson, 400 panels):
    12.706 for (0.975, 1), 2.262 for (0.975, 9), tending to the normal's 1.960.
    """
    if not 0.5 < p < 1.0 or df < 1:
        raise ValueError(f"t quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf(t: float) -> float:
        panels = 400
        h = t / panels
        total = density(0.0) + density(t)
        total += 4 * math.fsum(density((2 * i - 1) * h) for i in range(1, panels // 2 + 1))
        total += 2 * math.fsum(density(2 * i * h) for i in range(1, panels // 2))
        return 0.5 + total * h / 3

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def block_medians(samples: Sequence[float], blocks: int = BLOCKS) -> list[float] | None:
    """Medians of ``min(blocks, n // 3)`` consecutive, near-equal blocks of time-ordered samples.

    None below MIN_BLOCK_SAMPLES (fewer than 5 blocks of 3).
    """
    n = len(samples)
    k = min(blocks, n // 3)
    if n < MIN_BLOCK_SAMPLES or k < 5:
        return None
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [quantile(sorted(samples[a:b]), 0.5) for a, b in zip(bounds, bounds[1:])]


def block_ci_halfwidth(samples: Sequence[float], confidence: float = 0.95, blocks: int = BLOCKS) -> float | None:
    """Batch-means half-width of the median's CI: t(k-1) * stdev(block medians) / sqrt(k), in seconds.

    Consecutive blocks absorb the correlation between neighbouring samples, so this half-width stays
    honest when the machine's speed drifts; for independent samples it is close to the order-statistic
    interval's. ``samples`` must be in the order they were taken. None with too few samples.
    """
    meds = block_medians(samples, blocks)
    return None if meds is None else _batch_means_halfwidth(meds, confidence)


def _batch_means_halfwidth(meds: list[float], confidence: float) -> float:
    k = len(meds)
    mean = math.fsum(meds) / k
    sd = math.sqrt(math.fsum((m - mean) ** 2 for m in meds) / (k - 1))
    return t_quantile(0.5 + confidence / 2, k - 1) * sd / math.sqrt(k)


@lru_cache(maxsize=64)
def min_samples_for_quantile(p: float, confidence: float = 0.99) -> int:
    """Fewest samples for which the second-largest sample bounds the ``p`` quantile from above.

    P(x_(n-1) >= q_p) = P(Bin(n, p) <= n - 2) >= ``confidence``: at least one observation lies beyond
    a bound on the quantile, so the tail was actually seen. 64 for p90 and 662 for p99 at 99 %.
    """
    n = 2
    while binom_cdf(n - 2, n, p) < confidence:
        n += 1
    return n


@dataclass(frozen=True)
class Summary:
    """Order statistics and spread of a sample; fields are in the samples' unit (seconds for latency)."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    stdev: float | None  # None with a single sample
    cv: float | None  # stdev / mean
    iqr: float
    p90: float | None  # None below min_samples_for_quantile(0.90)
    p99: float | None
    ci_low: float | None  # the hull of the two intervals below; None below the smallest n with a median CI
    ci_high: float | None
    ci_confidence: float
    ci_coverage: float | None  # exact coverage of the chosen ranks (>= ci_confidence)
    ci_order_low: float | None = None  # order-statistic CI: right for independent samples
    ci_order_high: float | None = None
    ci_blocks: int | None = None  # blocks of the batch-means CI; None with too few samples
    ci_blocks_halfwidth: float | None = None  # its half-width around the median
    ci_groups: int | None = None  # processes (groups) the samples came from, when more than one
    ci_groups_halfwidth: float | None = None  # the between-process interval's half-width around the median

    @property
    def drift_rel(self) -> float | None:
        """The batch-means half-width over the order-statistic one: about 1 for independent samples,
        well above when the median moved during the run."""
        if self.ci_blocks_halfwidth is None or self.ci_order_low is None or self.ci_order_high is None:
            return None
        order = max(self.median - self.ci_order_low, self.ci_order_high - self.median)
        return self.ci_blocks_halfwidth / order if order > 0 else None

    @property
    def ci_rel_halfwidth(self) -> float | None:
        """Largest distance from the median to a CI bound, relative to the median."""
        if self.ci_low is None or self.ci_high is None or self.median <= 0:
            return None
        return max(self.median - self.ci_low, self.ci_high - self.median) / self.median


def summarize(samples: Sequence[float], confidence: float = 0.95, tail_confidence: float = 0.99,
              groups: Sequence[int] | None = None) -> Summary:
    """Median, mean, min, p90/p99 (only with enough samples), median CI and CV of ``samples``.

    ``samples`` in the order they were taken: the CI is the hull of the order-statistic interval and the
    batch-means interval of consecutive blocks (see the module docstring). ``groups``: when the samples
    came from several processes, how many each gave, in order; with two or more, the hull also spans the
    between-process interval — the median +/- t(g-1) x stdev(process medians) / sqrt(g) — since a process
    has a speed of its own (memory layout, page placement) that no number of its own samples averages out.
    """
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("summary of no samples")
    mean = math.fsum(xs) / n
    stdev = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    ci = median_ci(xs, confidence)
    ranks = median_ci_ranks(n, confidence)
    median = quantile(xs, 0.5)
    meds = block_medians(samples)
    half = _batch_means_halfwidth(meds, confidence) if meds is not None else None
    lo, hi = ci if ci else (None, None)
    if ci and half is not None:
        lo, hi = min(lo, median - half), max(hi, median + half)
    group_meds = group_medians(samples, groups) if groups else None
    between = _batch_means_halfwidth(group_meds, confidence) if group_meds else None
    if ci and between is not None:
        lo, hi = min(lo, median - between), max(hi, median + between)
    return Summary(
        n=n,
        median=median,
        mean=mean,
        min=xs[0],
        max=xs[-1],
        stdev=stdev,
        cv=(stdev / mean) if stdev is not None and mean > 0 else None,
        iqr=quantile(xs, 0.75) - quantile(xs, 0.25),
        p90=quantile(xs, 0.90) if n >= min_samples_for_quantile(0.90, tail_confidence) else None,
        p99=quantile(xs, 0.99) if n >= min_samples_for_quantile(0.99, tail_confidence) else None,
        ci_low=lo,
        ci_high=hi,
        ci_confidence=confidence,
        ci_coverage=ranks[2] if ranks else None,
        ci_order_low=ci[0] if ci else None,
        ci_order_high=ci[1] if ci else None,
        ci_blocks=len(meds) if meds is not None else None,
        ci_blocks_halfwidth=half,
        ci_groups=len(group_meds) if group_meds else None,
        ci_groups_halfwidth=between,
    )


def group_medians(samples: Sequence[float], groups: Sequence[int]) -> list[float] | None:
    """Medians of consecutive groups of ``samples`` of the sizes ``groups`` (which must add up to
    ``len(samples)``); None with fewer than two non-empty groups."""
    if sum(groups) != len(samples):
        raise ValueError(f"group sizes {list(groups)} do not add up to {len(samples)} samples")
    meds, i = [], 0
    for g in groups:
        if g > 0:
            meds.append(quantile(sorted(samples[i:i + g]), 0.5))
        i += g
    return meds if len(meds) >= 2 else None


# R² = 1 - SS_res / SS_tot is 0/0 when y has no spread. A line through constant y fits it exactly, but it
# explains nothing (x could be anything), so 1.0 would read as "x predicts y" — the opposite of the truth
# for, say, a time that does not grow with MACs. R² is therefore None, with the reason, whenever y is
# constant, exact fit or not.
R2_CONSTANT_Y = "unavailable: y has the same value at every point, so there is no spread for x to explain"


@dataclass(frozen=True)
class LinearFit:
    """y = intercept + slope * x by ordinary least squares over ``n`` points, with its quality.

    ``r2`` is None when y is constant (``unavailable["r2"]`` says so; see R2_CONSTANT_Y). ``loo_errors``:
    label -> relative error of predicting that point from a fit of all the others ((predicted - measured)
    / measured); needs n >= 3, else empty. ``ratios``: label -> measured / fitted value (1 = on the line;
    2 = twice as slow/large as the line says).
    """

    slope: float
    intercept: float
    r2: float | None
    n: int
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    loo_errors: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def predict(self, x: float) -> float:
        return self.intercept + self.slope * x

    @property
    def ratios(self) -> dict[str, float]:
        out = {}
        for x, y, lab in zip(self.x, self.y, self.labels):
            p = self.predict(x)
            if p > 0:
                out[lab] = y / p
        return out

    @property
    def loo_median_abs_error(self) -> float | None:
        """Median |relative error| of leave-one-out predictions: the error to expect for a new model."""
        return statistics.median(abs(e) for e in self.loo_errors.values()) if self.loo_errors else None

    @property
    def loo_max_abs_error(self) -> float | None:
        return max((abs(e) for e in self.loo_errors.values()), default=None)

    def off_line(self, factor: float = 1.5) -> dict[str, float]:
        """Points at least ``factor`` times above or below the line: label -> measured / fitted."""
        return {lab: r for lab, r in sorted(self.ratios.items(), key=lambda kv: -abs(math.log(kv[1])))
                if r >= factor or r <= 1 / factor}

    def to_dict(self) -> dict:
        return {"slope": self.slope, "intercept": self.intercept, "r2": self.r2, "n": self.n,
                "loo_median_abs_error": self.loo_median_abs_error, "loo_max_abs_error": self.loo_max_abs_error,
                "loo_errors": dict(self.loo_errors), "ratios": self.ratios, "unavailable": dict(self.unavailable),
                "points": [{"label": l, "x": x, "y": y} for l, x, y in zip(self.labels, self.x, self.y)]}


def least_squares_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, intercept) by least squares; ValueError unless x has two distinct values."""
    try:
        return statistics.linear_regression(xs, ys)
    except statistics.StatisticsError as e:  # "x is constant" (or fewer than two points)
        raise ValueError(f"a line needs at least two distinct x values ({e})") from e


def finite_points(xs, ys, labels) -> tuple[list[float], list[float], list[str]]:
    """The (x, y, label) triples whose x and y are both present and finite, as three lists of floats/str."""
    xs, ys = list(xs), list(ys)
    labels = [str(i) for i in range(len(xs))] if labels is None else [str(l) for l in labels]
    if not len(xs) == len(ys) == len(labels):
        raise ValueError(f"x, y and labels differ in length ({len(xs)}, {len(ys)}, {len(labels)})")
    kept = [(float(x), float(y), l) for x, y, l in zip(xs, ys, labels)
            if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    return [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]


def linear_fit(xs: Sequence[float], ys: Sequence[float], labels: Sequence[str] | None = None) -> LinearFit:
    """Least-squares line through (xs, ys), with R² and leave-one-out relative errors.

    Points with a missing or non-finite x or y are left out; what is left needs two distinct x values,
    else ValueError (callers say "not enough data", never draw a made-up line). ``labels`` name the points
    (default "0", "1", ...).
    """
    xs, ys, labels = finite_points(xs, ys, labels)
    if len(xs) < 2:
        raise ValueError(f"a line needs at least two points, got {len(xs)}")
    slope, intercept = least_squares_line(xs, ys)
    unavailable = {}
    if len(set(ys)) == 1:  # exactly constant: SS_tot computed around a rounded mean would be noise, not 0
        r2 = None
        unavailable["r2"] = R2_CONSTANT_Y
    else:
        my = math.fsum(ys) / len(ys)
        ss_tot = math.fsum((y - my) ** 2 for y in ys)
        ss_res = math.fsum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
        r2 = 1.0 - ss_res / ss_tot
    loo: dict[str, float] = {}
    if len(xs) >= 3:
        for i, lab in enumerate(labels):
            try:
                s, c = least_squares_line(xs[:i] + xs[i + 1:], ys[:i] + ys[i + 1:])
            except ValueError:  # the others share one x: no line to predict this point from
                continue
            if ys[i] != 0:
                loo[lab] = (c + s * xs[i] - ys[i]) / ys[i]
    return LinearFit(slope=slope, intercept=intercept, r2=r2, n=len(xs), x=xs, y=ys, labels=labels,
                     loo_errors=loo, unavailable=unavailable)
