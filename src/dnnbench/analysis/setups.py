"""Setups side by side: the same models on every setup of the store (this machine, others, imported devices).

``compare(df)`` gives one row per model and, per setup, its time per image, memory and energy per image at
one batch size (batch 1 where measured), each value from that setup's own ok bench cell, never predicted.
Quality (top-1, or the task's metric) belongs to the weights: it is the model's figure (measured with
``dnnbench accuracy`` or published), shown once per model with its source. ``findings_per_setup`` reuses the
findings functions over each setup's slice of the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from dnnbench.analysis.tables import Setup, bench_table, col, models_table, setups

# (column of bench_table, what it is): the per-setup figures of the comparison
METRICS = (("latency_per_item_s", "time per image"), ("memory_total_bytes", "memory"),
           ("energy_per_item_j", "energy per image"))


@dataclass
class Comparison:
    """Models x setups at ``batch_size``. ``values[(model_ref, setup name)][metric]``: a float, or absent when
    that setup did not measure it (``missing`` says why, per (model_ref, setup name))."""

    setups: list[Setup]
    batch_size: int
    models: list[str]  # model_refs measured on at least two setups first, then the others
    names: dict[str, str]  # model_ref -> display name
    values: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    missing: dict[tuple[str, str], str] = field(default_factory=dict)
    quality: dict[str, tuple[float | None, str, str]] = field(default_factory=dict)  # ref -> (value, label, source)
    fits: dict[str, dict] = field(default_factory=dict)  # setup name -> ops->time fit at batch_size (linear_fit)

    def value(self, ref: str, setup: Setup, metric: str) -> float | None:
        return self.values.get((ref, setup.name), {}).get(metric)

    def shared(self) -> list[str]:
        """Models measured on two setups or more (the ones a comparison says something about)."""
        return [m for m in self.models if sum((m, s.name) in self.values for s in self.setups) >= 2]

    def to_dict(self) -> dict:
        return {"batch_size": self.batch_size, "setups": [s.to_dict() for s in self.setups],
                "rows": [{"model_ref": m, "model": self.names[m],
                          "quality": dict(zip(("value", "metric", "source"), self.quality.get(m, (None, "", "")))),
                          "setups": {s.name: self.values.get((m, s.name)) or {"missing": self.missing.get((m, s.name))}
                                     for s in self.setups}} for m in self.models],
                "fits": self.fits}


def bench_setups(df: pd.DataFrame) -> list[Setup]:
    """The setups with at least one ok bench cell."""
    return [s for s in setups(df) if s.cells > 0]


def compare(df: pd.DataFrame, batch_size: int | None = None) -> Comparison | None:
    """The comparison over every setup with ok bench cells; None with fewer than two such setups.

    ``batch_size``: default 1 when any setup measured batch 1, else the smallest batch measured."""
    from dnnbench.analysis.fit import linear_fit

    found = bench_setups(df)
    if len(found) < 2:
        return None
    tables = {s.name: bench_table(df, s) for s in found}
    if batch_size is None:
        sizes = sorted({int(b) for t in tables.values() if not t.empty for b in t["batch_size"]})
        batch_size = 1 if 1 in sizes else (sizes[0] if sizes else 1)
    models = models_table(df)
    refs: list[str] = []
    names: dict[str, str] = {}
    cmp = Comparison(found, batch_size, refs, names)
    for s in found:
        t = tables[s.name]
        at = t[t["batch_size"] == batch_size] if not t.empty else t
        for _, r in at.iterrows():
            ref = r["model_ref"]
            if ref not in names:
                refs.append(ref)
                names[ref] = str(r["model"])
            vals = {m: float(r[m]) for m, _ in METRICS if m in r.index and _finite(r[m])}
            vals["gmacs_per_item"] = float(r["gmacs_per_item"]) if _finite(r.get("gmacs_per_item")) else math.nan
            cmp.values[(ref, s.name)] = vals
        g = at[col(at, "latency_per_item_s").notna() & at["gmacs_per_item"].notna()] if not at.empty else at
        if len(g) >= 2 and g["gmacs_per_item"].nunique() >= 2:
            cmp.fits[s.name] = linear_fit(g["gmacs_per_item"], g["latency_per_item_s"], g["model"]).to_dict()
    for s in found:
        t = tables[s.name]
        for ref in refs:
            if (ref, s.name) in cmp.values:
                continue
            other = sorted(int(b) for b in t.loc[t["model_ref"] == ref, "batch_size"]) if not t.empty else []
            cmp.missing[(ref, s.name)] = (f"measured at batch {', '.join(map(str, other))} only" if other
                                          else "not measured on this setup")
    for ref in refs:
        if ref in models.index:
            r = models.loc[ref]
            metric = r.get("quality_metric") if isinstance(r.get("quality_metric"), str) else "top1"
            v = r.get("quality")
            cmp.quality[ref] = (float(v) if _finite(v) else None, metric,
                                r.get("quality_source") if isinstance(r.get("quality_source"), str) else "unknown")
    twice = {m for m in refs if sum((m, s.name) in cmp.values for s in found) >= 2}
    refs.sort(key=lambda m: (m not in twice, names[m]))
    return cmp


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def findings_per_setup(df: pd.DataFrame, found: list[Setup] | None = None) -> dict[str, list]:
    """Setup name -> the findings computed over that setup's cells alone (operations->time, accuracy->time,
    memory, power, the Pareto front, batching), each finding's key suffixed with nothing: they are grouped."""
    from dnnbench.analysis import findings as F

    out = {}
    for s in found if found is not None else bench_setups(df):
        bench = bench_table(df, s)
        out[s.name] = [F.ops_time(df, [s]), F.accuracy_time(bench, s), F.memory(bench, s), F.power(bench, s),
                       F.fronts(bench), F.batching(bench)]
    return out


__all__ = ["Comparison", "METRICS", "bench_setups", "compare", "findings_per_setup"]
