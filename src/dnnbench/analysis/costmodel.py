"""A per-setup cost model fitted on measured cells, to predict models that were not measured.

At one batch size on one setup (machine, device, runtime, precision, threads):

- time per image = a + b x MACs per image (least squares over the measured models);
- memory = c + d x static estimate (weights + activation peak at that batch);
- energy per image = e + f x MACs per image; power = the mean of the measured models (the paper found
  power nearly independent of the architecture).

Every prediction carries the fit's leave-one-out error: the median |relative error| made when each
measured model is predicted from a fit of the others — the error to expect for a new model. With fewer
than three measured models that error cannot be estimated and is None (shown as "unknown").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dnnbench.analysis.fit import LinearFit, linear_fit, mean_with_loo, median_abs
from dnnbench.analysis.tables import col


@dataclass(frozen=True)
class Prediction:
    value: float
    error: float | None  # median |relative error| of leave-one-out predictions; None: unknown (< 3 models)
    basis: str  # what the prediction was made from, as text

    def to_dict(self) -> dict:
        return {"value": self.value, "held_out_error": self.error, "basis": self.basis}


@dataclass
class CostModel:
    batch_size: int
    time: LinearFit | None = None  # latency_per_item_s ~ macs_per_item
    memory: LinearFit | None = None  # memory_total_bytes ~ memory_estimate_bytes
    energy: LinearFit | None = None  # energy_per_item_j ~ macs_per_item
    power_w: float | None = None
    power_loo: dict[str, float] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)  # quantity -> why it cannot be predicted

    def predict_time_per_item(self, macs_per_item: float | None) -> Prediction | None:
        if self.time is None or macs_per_item is None:
            return None
        v = self.time.predict(macs_per_item)
        if v <= 0:
            return None
        return Prediction(v, self.time.loo_median_abs_error,
                          f"time per image = {self.time.intercept:.3g} s + {self.time.slope * 1e9:.3g} s/GMAC x GMACs "
                          f"(R² {_r2(self.time)}, {self.time.n} models at batch {self.batch_size})")

    def predict_memory(self, estimate_bytes: float | None) -> Prediction | None:
        if self.memory is None or estimate_bytes is None:
            return None
        v = self.memory.predict(estimate_bytes)
        if v <= 0:
            return None
        return Prediction(v, self.memory.loo_median_abs_error,
                          f"memory = {self.memory.intercept / 2**20:.0f} MiB + {self.memory.slope:.2f} x static estimate "
                          f"(R² {_r2(self.memory)}, {self.memory.n} models at batch {self.batch_size})")

    def predict_energy(self, macs_per_item: float | None) -> Prediction | None:
        if self.energy is None or macs_per_item is None:
            return None
        v = self.energy.predict(macs_per_item)
        if v <= 0:
            return None
        return Prediction(v, self.energy.loo_median_abs_error,
                          f"energy per image = {self.energy.intercept:.3g} J + {self.energy.slope * 1e9:.3g} J/GMAC x GMACs "
                          f"(R² {_r2(self.energy)}, {self.energy.n} models at batch {self.batch_size})")

    def predict_power(self) -> Prediction | None:
        if self.power_w is None:
            return None
        return Prediction(self.power_w, median_abs(self.power_loo),
                          f"mean power of the {len(self.power_loo) or 1} measured models at batch {self.batch_size}")

    def to_dict(self) -> dict:
        return {"batch_size": self.batch_size,
                "time_per_item_vs_macs": self.time.to_dict() if self.time else None,
                "memory_vs_estimate": self.memory.to_dict() if self.memory else None,
                "energy_per_item_vs_macs": self.energy.to_dict() if self.energy else None,
                "power_w": self.power_w, "power_held_out_error": median_abs(self.power_loo),
                "unavailable": dict(self.why)}


def _r2(f: LinearFit) -> str:
    return "n/a" if f.r2 is None else f"{f.r2:.2f}"


def _fit(b: pd.DataFrame, x: str, y: str, what: str, why: dict, key: str) -> LinearFit | None:
    xs, ys = col(b, x), col(b, y)
    ok = xs.notna() & ys.notna()
    if ok.sum() < 2 or xs[ok].nunique() < 2:
        why[key] = (f"{what} needs at least two models measured at batch {int(b['batch_size'].iloc[0]) if len(b) else '?'}"
                    f" (found {int(ok.sum())})")
        return None
    return linear_fit(xs[ok], ys[ok], b.loc[ok, "model"])


def fit_cost_model(bench: pd.DataFrame, batch_size: int) -> CostModel:
    """Fit the cost model on the ok bench cells (``tables.bench_table``) at ``batch_size``."""
    cm = CostModel(batch_size)
    b = bench[bench["batch_size"] == batch_size] if not bench.empty else bench
    if b.empty:
        reason = f"no model was measured at batch {batch_size} on this setup"
        cm.why = {k: reason for k in ("time", "memory", "energy", "power")}
        return cm
    cm.time = _fit(b, "macs_per_item", "latency_per_item_s", "a time fit", cm.why, "time")
    cm.memory = _fit(b, "memory_estimate_bytes", "memory_total_bytes", "a memory fit", cm.why, "memory")
    cm.energy = _fit(b, "macs_per_item", "energy_per_item_j", "an energy fit", cm.why, "energy")
    power = col(b, "power_w")
    if power.notna().any():
        cm.power_w, cm.power_loo = mean_with_loo(dict(zip(b.loc[power.notna(), "model"], power.dropna())))
    else:
        cm.why["power"] = f"no power was measured at batch {batch_size} on this setup (needs --metrics power and a sensor)"
    return cm
