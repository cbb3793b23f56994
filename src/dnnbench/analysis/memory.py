"""Memory over batch size: floor + slope x batch per model, and the largest batch that fits a memory.

Measured memory is ``memory_total_bytes`` (see ``tables``): the whole process's peak resident set on CPU,
the CUDA allocator's peak on GPU. The static estimate (weights + activation peak) has its own floor
(weight bytes) and slope (activation bytes per item); the ratio of the slopes says how much more than the
estimate the runtime really spends per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from dnnbench.analysis.fit import LinearFit, linear_fit
from dnnbench.analysis.tables import col


@dataclass(frozen=True)
class BatchMemoryFit:
    """One model's memory against batch size: measured = floor + slope x batch."""

    model: str
    floor_bytes: float
    slope_bytes_per_item: float
    r2: float | None
    batch_sizes: list[int]
    static_floor_bytes: float | None
    static_slope_bytes_per_item: float | None

    @property
    def slope_ratio(self) -> float | None:
        """Measured slope / estimated slope: >1 means the runtime keeps more per image than the estimate."""
        if not self.static_slope_bytes_per_item or self.static_slope_bytes_per_item <= 0:
            return None
        return self.slope_bytes_per_item / self.static_slope_bytes_per_item

    def predict(self, batch_size: int) -> float:
        return self.floor_bytes + self.slope_bytes_per_item * batch_size

    def largest_batch(self, memory_bytes: float) -> int | None:
        """Largest batch whose predicted memory is within ``memory_bytes``: 0 if not even batch 1 fits,
        None if memory does not grow with batch in these measurements (no bound can be predicted)."""
        return largest_batch(self.floor_bytes, self.slope_bytes_per_item, memory_bytes)

    def to_dict(self) -> dict:
        return {"model": self.model, "floor_bytes": self.floor_bytes, "slope_bytes_per_item": self.slope_bytes_per_item,
                "r2": self.r2, "batch_sizes": self.batch_sizes, "static_floor_bytes": self.static_floor_bytes,
                "static_slope_bytes_per_item": self.static_slope_bytes_per_item, "slope_ratio": self.slope_ratio}


def largest_batch(floor_bytes: float, slope_bytes_per_item: float, memory_bytes: float) -> int | None:
    if slope_bytes_per_item <= 0:
        return None
    n = math.floor((memory_bytes - floor_bytes) / slope_bytes_per_item)
    return max(n, 0)


def batch_fits(bench: pd.DataFrame, quantity: str = "memory_total_bytes") -> dict[str, BatchMemoryFit]:
    """Per model with at least two batch sizes measured: floor + slope of ``quantity`` over batch size."""
    out: dict[str, BatchMemoryFit] = {}
    if bench.empty or quantity not in bench.columns:
        return out
    for model, g in bench.groupby("model", sort=False):
        y = col(g, quantity)
        ok = y.notna()
        if ok.sum() < 2 or g.loc[ok, "batch_size"].nunique() < 2:
            continue
        f = linear_fit(g.loc[ok, "batch_size"].astype(float), y[ok])
        est = col(g, "memory_estimate_bytes")
        sf = linear_fit(g.loc[est.notna(), "batch_size"].astype(float), est.dropna()) if est.notna().sum() >= 2 else None
        out[model] = BatchMemoryFit(str(model), f.intercept, f.slope, f.r2, sorted(int(b) for b in g.loc[ok, "batch_size"]),
                                    sf.intercept if sf else None, sf.slope if sf else None)
    return out


def floor_vs_weights(bench: pd.DataFrame, batch_size: int = 1) -> LinearFit:
    """Across models at ``batch_size``: memory_total_bytes = floor + slope x weight bytes."""
    b = bench[bench["batch_size"] == batch_size]
    return linear_fit(col(b, "weight_bytes"), col(b, "memory_total_bytes"), b["model"])
