"""Least-squares fits with their quality: slope, intercept, R², leave-one-out error, points off the line.

Pure functions over numbers (no pandas needed). A fit needs at least two distinct x values; fewer raise
``ValueError`` — callers turn that into "not enough data" text, never a made-up line. R² is None when y is
constant (``core.stats.R2_CONSTANT_Y`` says why).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from dnnbench.core.stats import LinearFit, finite_points, least_squares_line, linear_fit


# One LinearFit for the whole project, in core so that every layer can fit a line (bench's memory fits are
# made before any analysis runs); re-exported here so analysis code has one place to import fits from.
__all__ = ["LinearFit", "linear_fit", "HyperbolicFit", "hyperbolic_fit", "loglog_slope", "mean_with_loo", "median_abs"]


@dataclass(frozen=True)
class HyperbolicFit:
    """accuracy = ceiling - k / time: ``ceiling`` is the accuracy approached as time grows without bound.

    Linear in 1/time, so fitted exactly by least squares on (1/t, accuracy). k > 0 means each further point
    of accuracy costs more time than the last (the paper's hyperbolic relation); R² on accuracy.
    """

    ceiling: float
    k: float
    r2: float | None
    n: int
    loo_median_abs_error: float | None

    def predict(self, time: float) -> float:
        return self.ceiling - self.k / time

    def time_for(self, accuracy: float) -> float | None:
        """Time the fit needs to reach ``accuracy``; None at or above the ceiling (unreachable)."""
        if self.k <= 0 or accuracy >= self.ceiling:
            return None
        return self.k / (self.ceiling - accuracy)

    def to_dict(self) -> dict:
        return {"ceiling": self.ceiling, "k": self.k, "r2": self.r2, "n": self.n,
                "loo_median_abs_error": self.loo_median_abs_error}


def hyperbolic_fit(times, accuracies, labels=None) -> HyperbolicFit:
    xs, ys, labels = finite_points(times, accuracies, labels)
    keep = [(x, y, l) for x, y, l in zip(xs, ys, labels) if x > 0]
    if len(keep) < 2:
        raise ValueError("a hyperbolic fit needs at least two positive times")
    f = linear_fit([1 / x for x, _, _ in keep], [y for _, y, _ in keep], [l for _, _, l in keep])
    return HyperbolicFit(ceiling=f.intercept, k=-f.slope, r2=f.r2, n=f.n, loo_median_abs_error=f.loo_median_abs_error)


def loglog_slope(xs, ys) -> float:
    """Slope of log y against log x: the exponent p of y ∝ x^p (e.g. time per image vs batch size)."""
    xs, ys, _ = finite_points(xs, ys, None)
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        raise ValueError("a log-log slope needs two positive points")
    return least_squares_line([p[0] for p in pts], [p[1] for p in pts])[0]


def mean_with_loo(values: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The mean of ``values`` and, per label, the relative error of the mean of the others predicting it."""
    vals = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
    if not vals:
        raise ValueError("no values")
    mean = statistics.fmean(vals.values())
    loo = {}
    if len(vals) >= 2:
        total = sum(vals.values())
        for k, v in vals.items():
            rest = (total - v) / (len(vals) - 1)
            if v != 0:
                loo[k] = (rest - v) / v
    return mean, loo


def median_abs(errors: dict[str, float]) -> float | None:
    """Median of |error| over ``errors``; None when there are none."""
    return statistics.median(abs(e) for e in errors.values()) if errors else None
