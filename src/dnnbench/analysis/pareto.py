"""Pareto fronts: the options no other option beats on every objective at once."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is at least as good as b everywhere and better somewhere (all objectives to maximise)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(points: Mapping[str, Mapping[str, float | None]], maximize: Sequence[str] = (),
                 minimize: Sequence[str] = ()) -> list[str]:
    """Labels of the non-dominated points, in input order.

    ``points``: label -> {objective: value}. A point missing any objective (None/NaN) cannot be compared
    and is left out; ties (equal on every objective) are all kept.
    """
    vecs: dict[str, tuple[float, ...]] = {}
    for label, vals in points.items():
        vec = []
        for name, sign in [(m, 1.0) for m in maximize] + [(m, -1.0) for m in minimize]:
            v = vals.get(name)
            if v is None or not math.isfinite(float(v)):
                break
            vec.append(sign * float(v))
        else:
            vecs[label] = tuple(vec)
    return [a for a, va in vecs.items() if not any(dominates(vb, va) for b, vb in vecs.items() if b != a)]
