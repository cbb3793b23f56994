"""Runtimes and precisions side by side: one model and batch size on one machine, device and thread count
under each (runtime, precision) measured — time per image and the speed-up over eager fp32, memory, cold
start and preparation, the deployable artifact's size, and the output-equivalence check against eager fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dnnbench.analysis.tables import _bench_rows, _text, _threads, col, short_name

RUNTIME_ORDER = ("eager", "compile", "onnxruntime")
PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8", "int8-dynamic")
REFERENCE = ("eager", "fp32")
COLUMNS = ["model_ref", "model", "batch_size", "runtime", "precision", "status", "message", "latency_per_item_s",
           "speedup_vs_reference", "memory_total_bytes", "memory_model_bytes", "cold_start_s", "prepare_s",
           "artifact_bytes", "equivalence_max_abs_diff", "equivalence_top1_agreement"]


def config_key(runtime: str, precision: str) -> tuple[int, int, str, str]:
    """Sort order of configurations: eager fp32 first, then by runtime and precision."""
    r = RUNTIME_ORDER.index(runtime) if runtime in RUNTIME_ORDER else len(RUNTIME_ORDER)
    p = PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)
    return (r, p, runtime, precision)


def config_label(runtime: str, precision: str) -> str:
    return f"{runtime} {precision}"


@dataclass
class Comparison:
    """The configurations measured on one machine, device and thread count, and their cells (``table``)."""

    fingerprint: str
    device: str
    threads: int | None
    hardware: str
    configs: list[tuple[str, str]]
    table: pd.DataFrame  # COLUMNS, a row per (model, batch size, configuration)

    @property
    def label(self) -> str:
        threads = f", {self.threads} thread{'s' if self.threads != 1 else ''}" if self.threads else ""
        return f"{self.device} ({self.hardware}{threads})"

    def cell(self, model_ref: str, batch_size: int, runtime: str, precision: str) -> pd.Series | None:
        t = self.table
        m = t[(t["model_ref"] == model_ref) & (t["batch_size"] == batch_size) & (t["runtime"] == runtime)
              & (t["precision"] == precision)]
        return None if m.empty else m.iloc[-1]

    def rows(self) -> list[tuple[str, str, int]]:
        """(model_ref, model, batch size) of the rows, in order."""
        t = self.table.drop_duplicates(["model_ref", "batch_size"]).sort_values(["model", "batch_size"])
        return [(r.model_ref, r.model, int(r.batch_size)) for r in t.itertuples()]


def comparisons(df: pd.DataFrame) -> list[Comparison]:
    """Every (machine, device, threads) on which more than one configuration was measured; most cells first."""
    bench = _bench_rows(df)
    if bench.empty or "runtime" not in bench.columns:
        return []
    bench = bench[bench["status"].isin(("ok", "oom", "error"))].copy()
    if bench.empty:
        return []
    bench["_threads"] = bench["threads"].map(_threads) if "threads" in bench.columns else None
    bench["_t"] = bench["_threads"].map(lambda t: -1 if t is None else t)
    out = []
    for (fp, device, t), g in bench.groupby(["fingerprint", "device", "_t"], dropna=False):
        configs = sorted({(r, p) for r, p in zip(g["runtime"], g["precision"])}, key=lambda c: config_key(*c))
        if len(configs) < 2:
            continue
        gpu = str(device).startswith("cuda")
        g = g.sort_values("started_at").drop_duplicates(["model_ref", "batch_size", "runtime", "precision"], keep="last")
        table = pd.DataFrame({
            "model_ref": g["model_ref"], "model": g["model_ref"].map(short_name),
            "batch_size": g["batch_size"].astype(int), "runtime": g["runtime"], "precision": g["precision"],
            "status": g["status"], "message": g["message"] if "message" in g else None,
            "latency_per_item_s": col(g, "latency_per_item_s"),
            "memory_total_bytes": col(g, "cuda_peak_allocated_bytes" if gpu else "peak_rss_bytes"),
            "memory_model_bytes": col(g, "cuda_peak_allocated_bytes" if gpu else "rss_above_baseline_bytes"),
            "cold_start_s": col(g, "cold_start_s"), "prepare_s": col(g, "prepare_s"),
            "artifact_bytes": col(g, "artifact_bytes"),
            "equivalence_max_abs_diff": col(g, "equivalence_max_abs_diff"),
            "equivalence_top1_agreement": col(g, "equivalence_top1_agreement"),
        })
        ref = table[(table["runtime"] == REFERENCE[0]) & (table["precision"] == REFERENCE[1])]
        ref_time = {(r.model_ref, r.batch_size): r.latency_per_item_s for r in ref.itertuples()}

        def speedup(r) -> float:  # eager fp32's time over this one's: above 1 is faster
            base = ref_time.get((r.model_ref, r.batch_size))
            if base is None or pd.isna(base) or pd.isna(r.latency_per_item_s) or r.latency_per_item_s <= 0:
                return float("nan")
            return base / r.latency_per_item_s

        table["speedup_vs_reference"] = [speedup(r) for r in table.itertuples()]
        first = g.iloc[0]
        hardware = (_text(first.get("gpu_name")) if gpu else None) or _text(first.get("cpu_model")) or "unknown CPU"
        out.append(Comparison(str(fp), str(device), None if t == -1 else int(t), hardware, configs,
                              table.reindex(columns=COLUMNS).reset_index(drop=True)))
    return sorted(out, key=lambda c: len(c.table), reverse=True)


__all__ = ["Comparison", "comparisons", "config_key", "config_label"]
