"""Least-squares fits with their quality: slope, intercept, R², leave-one-out error, points off the line.

Pure functions over numbers (no pandas needed). A fit needs at least two distinct x values; fewer raise
``ValueError`` — callers turn that into "not enough data" text, never a made-up line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def _clean(xs, ys, labels=None) -> tuple[list[float], list[float], list[str]]:
    labels = list(labels) if labels is not None else [str(i) for i in range(len(list(xs)))]
    out = [(float(x), float(y), str(l)) for x, y, l in zip(xs, ys, labels)
           if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]


def _ols(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a line needs at least two distinct x values")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def _r2(xs, ys, slope, intercept) -> float | None:
    my = sum(ys) / len(ys)
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else None
    return 1 - ss_res / ss_tot


@dataclass(frozen=True)
class LinearFit:
    """y = intercept + slope * x over ``n`` points.

    ``loo_errors``: label -> relative error of predicting that point from a fit of all the others
    ((predicted - measured) / measured); needs n >= 3, else empty. ``ratios``: label -> measured /
    fitted value (1 = on the line; 2 = twice as slow/large as the line says).
    """

    slope: float
    intercept: float
    r2: float | None
    n: int
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    loo_errors: dict[str, float] = field(default_factory=dict)

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
        errs = sorted(abs(e) for e in self.loo_errors.values())
        if not errs:
            return None
        m = len(errs) // 2
        return errs[m] if len(errs) % 2 else (errs[m - 1] + errs[m]) / 2

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
                "loo_errors": dict(self.loo_errors), "ratios": self.ratios,
                "points": [{"label": l, "x": x, "y": y} for l, x, y in zip(self.labels, self.x, self.y)]}


def linear_fit(xs, ys, labels=None) -> LinearFit:
    """Ordinary least squares of ys on xs, with R² and leave-one-out relative errors."""
    xs, ys, labels = _clean(xs, ys, labels)
    if len(xs) < 2:
        raise ValueError(f"a line needs at least two points, got {len(xs)}")
    slope, intercept = _ols(xs, ys)
    loo: dict[str, float] = {}
    if len(xs) >= 3:
        for i, lab in enumerate(labels):
            rest_x, rest_y = xs[:i] + xs[i + 1:], ys[:i] + ys[i + 1:]
            try:
                s, c = _ols(rest_x, rest_y)
            except ValueError:
                continue
            if ys[i] != 0:
                loo[lab] = (c + s * xs[i] - ys[i]) / ys[i]
    return LinearFit(slope, intercept, _r2(xs, ys, slope, intercept), len(xs), xs, ys, labels, loo)


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
    xs, ys, labels = _clean(times, accuracies, labels)
    keep = [(x, y, l) for x, y, l in zip(xs, ys, labels) if x > 0]
    if len(keep) < 2:
        raise ValueError("a hyperbolic fit needs at least two positive times")
    f = linear_fit([1 / x for x, _, _ in keep], [y for _, y, _ in keep], [l for _, _, l in keep])
    return HyperbolicFit(ceiling=f.intercept, k=-f.slope, r2=f.r2, n=f.n, loo_median_abs_error=f.loo_median_abs_error)


def loglog_slope(xs, ys) -> float:
    """Slope of log y against log x: the exponent p of y ∝ x^p (e.g. time per image vs batch size)."""
    xs, ys, _ = _clean(xs, ys)
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        raise ValueError("a log-log slope needs two positive points")
    return _ols([p[0] for p in pts], [p[1] for p in pts])[0]


def mean_with_loo(values: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The mean of ``values`` and, per label, the relative error of the mean of the others predicting it."""
    vals = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
    if not vals:
        raise ValueError("no values")
    mean = sum(vals.values()) / len(vals)
    loo = {}
    if len(vals) >= 2:
        total = sum(vals.values())
        for k, v in vals.items():
            rest = (total - v) / (len(vals) - 1)
            if v != 0:
                loo[k] = (rest - v) / v
    return mean, loo


def median_abs(errors: dict[str, float]) -> float | None:
    errs = sorted(abs(e) for e in errors.values())
    if not errs:
        return None
    m = len(errs) // 2
    return errs[m] if len(errs) % 2 else (errs[m - 1] + errs[m]) / 2
