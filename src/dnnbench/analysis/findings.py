"""The study's findings, as numbers for this machine, beside the paper's 2016 findings.

``findings(df)`` returns a list of ``Finding``: a title, one paragraph of text with the numbers, detail
lines, the paper's statement it answers, and the data behind it (JSON-ready). A finding whose data is
missing says so and how to get it (``available=False``) instead of being left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from dnnbench.analysis import paper
from dnnbench.analysis import units as u
from dnnbench.analysis.fit import hyperbolic_fit, linear_fit, loglog_slope
from dnnbench.analysis.memory import batch_fits, floor_vs_weights
from dnnbench.analysis.pareto import pareto_front
from dnnbench.analysis.tables import (Setup, bench_table, col, model_tasks, models_table, of_task, setups, task_metric,
                                      task_title, tasks)
from dnnbench.core.measurements import item_unit

MEMORY_BUDGETS = (2**30, 4 * 2**30)  # 1 GiB and 4 GiB (the TX1 the paper used had 4 GB)
# Families whose convolutions are depthwise or grouped: few MACs per byte moved, so usually slow for their
# MACs on CPUs and GPUs. Used only to explain a point far off the ops->time line; the name says "likely".
_DEPTHWISE = re.compile(r"mobilenet|efficientnet|mnasnet|shufflenet|convnext|regnet|resnext|squeezenet|ghostnet|mixnet")


@dataclass
class Finding:
    key: str
    title: str
    text: str
    details: list[str] = field(default_factory=list)
    paper: str = ""
    data: dict = field(default_factory=dict)
    available: bool = True
    task: str = "classification"  # the task whose models it is about (core.specs.TASKS)

    def to_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "text": self.text, "details": self.details,
                "paper": self.paper, "data": self.data, "available": self.available, "task": self.task}


def _missing(key: str, title: str, why: str, paper_text: str = "") -> Finding:
    return Finding(key, title, f"Not available: {why}", paper=paper_text, available=False)


STUDY_HINT = "run `dnnbench study MODELS --quick` (e.g. resnet18 mobilenet_v2 alexnet) into this store"


def _gain(speedup: float) -> str:
    return f"{speedup:.1f}x faster per image" if speedup >= 1 else f"{1 / speedup:.1f}x slower per image"


def _signed(fmt, v) -> str:
    return ("- " if v < 0 else "+ ") + fmt(abs(v))


def _r2(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


# ---- operations -> time --------------------------------------------------------------------------

def ops_time(df: pd.DataFrame, all_setups: list[Setup]) -> Finding:
    title = "Operations predict time? (time per image vs GMACs, per device and batch size)"
    paper_text = f"Paper (TX1): {paper.FINDINGS['ops_time']}."
    fits, details = [], []
    for s in all_setups:
        b = bench_table(df, s)
        for bs, g in b.groupby("batch_size"):
            g = g[col(g, "latency_per_item_s").notna() & g["macs_per_item"].notna()]
            if g["model"].nunique() < 2:
                continue
            f = linear_fit(g["gmacs_per_item"], g["latency_per_item_s"], g["model"])
            off = f.off_line(1.5)
            fits.append({"setup": s.label, "device": s.device, "batch_size": int(bs), **f.to_dict(), "off_line": off})
            line = (f"{s.device}, batch {bs}: time per image = {u.seconds(f.intercept)} {_signed(u.seconds, f.slope)}/GMAC "
                    f"x GMACs, R² {_r2(f.r2)} over {f.n} models" + (" (two points: R² is 1 by construction)" if f.n == 2 else ""))
            if f.slope > 0:
                line += f" (marginal rate {1 / f.slope:.3g} GMAC/s)"
            if f.loo_median_abs_error is not None:
                line += f"; held-out error {u.pct(f.loo_median_abs_error, 0)}"
            if off:
                parts = []
                for m, r in off.items():
                    hint = " — depthwise/grouped convolutions (likely)" if _DEPTHWISE.search(m) and r > 1 else ""
                    parts.append(f"{m} {r:.1f}x slower than the line{hint}" if r > 1 else
                                 f"{m} {1 / r:.1f}x faster than the line")
                line += ". Off the line: " + "; ".join(parts)
            details.append(line + ".")
    if not fits:
        return _missing("ops_time", title, "needs time measured for at least two models at one batch size; " + STUDY_HINT,
                        paper_text)
    judged = [f for f in fits if f["n"] >= 3 and f["r2"] is not None]
    if not judged:
        text = (f"{len(fits)} fit(s), each over two models only: a line through two points says nothing about how well "
                "MACs predict time. Measure three models or more to judge it.")
    else:
        best = max(judged, key=lambda f: f["r2"])
        worst = min(judged, key=lambda f: f["r2"])
        slow = sorted({m for f in judged for m, r in f["off_line"].items() if r > 1})
        text = (f"{len(judged)} fit(s) over three models or more. Best: {best['device']} at batch {best['batch_size']}, "
                f"R² {_r2(best['r2'])}; worst: {worst['device']} at batch {worst['batch_size']}, R² {_r2(worst['r2'])}. "
                + ("MACs are a usable predictor of time here" if worst["r2"] >= 0.8 else
                   "MACs alone do not predict time well here")
                + (f"; slower than their MACs say: {', '.join(slow)}." if slow else "."))
    return Finding("ops_time", title, text, details, paper_text, {"fits": fits})


# ---- accuracy <-> time ---------------------------------------------------------------------------

def accuracy_time(bench: pd.DataFrame, setup: Setup | None, task: str = "classification") -> Finding:
    """The task's quality metric (top-1; box mAP for detection, mIoU for segmentation...) against time per item."""
    metric, label, better = task_metric(task)
    unit = item_unit(task)
    title = f"Accuracy vs time per {unit} (hyperbolic fit: {label} = ceiling - k / time)"
    paper_text = f"Paper (TX1): {paper.FINDINGS['accuracy_time']}."
    if better != "max":
        return _missing("accuracy_time", title, f"{label} is lower-is-better: a saturating accuracy-time fit does not "
                        "apply to it", paper_text)
    if bench.empty:
        return _missing("accuracy_time", title, "no time measured; " + STUDY_HINT, paper_text)
    g = bench[col(bench, "latency_per_item_s").notna() & col(bench, metric).notna()]
    if g.empty:
        how = ("profile cells carry the published top-1: add --metrics profile to the study" if metric == "top1" else
               "measure it with `dnnbench accuracy` on the task's data, or study models whose weights publish it")
        return _missing("accuracy_time", title, f"no model has both a time and a {label} ({how})", paper_text)
    counts = g.groupby("batch_size")["model"].nunique()
    bs = 1 if counts.get(1, 0) >= 2 else int(counts.idxmax())
    g = g[g["batch_size"] == bs]
    if g["model"].nunique() < 2:
        only = f" (only {g['model'].iloc[0]})" if g["model"].nunique() == 1 else ""
        return _missing("accuracy_time", title, f"needs at least two models with time and {label} at one batch size"
                        f"{only}: a fit through one point is not defined", paper_text)
    f = hyperbolic_fit(g["latency_per_item_s"], g[metric], g["model"])
    best = g.loc[col(g, metric).idxmax()]
    details = [f"batch {bs} on {setup.label if setup else '?'}: {label} = {u.pct(f.ceiling)} "
               f"{_signed(lambda v: f'{v:.3g}', -f.k)} s / time per {unit}, R² {_r2(f.r2)} over {f.n} models"
               + (" (two points: exact by construction)." if f.n == 2 else ".")]
    if f.k > 0:
        target = float(best[metric]) + 0.01
        need = f.time_for(target)
        details.append(f"Most accurate measured: {best['model']} at {u.pct(best[metric])} in "
                       f"{u.seconds(best['latency_per_item_s'])} per {unit}; "
                       + (f"one more point ({u.pct(target)}) would take {u.seconds(need)} per {unit} by the fit "
                          f"({need / float(best['latency_per_item_s']):.1f}x)." if need else
                          f"one more point ({u.pct(target)}) is beyond the fit's ceiling {u.pct(f.ceiling)}."))
        text = (f"Accuracy saturates with time: the fit's ceiling is {u.pct(f.ceiling)} (R² {_r2(f.r2)}, {f.n} models, batch {bs}); "
                "each further point costs more time than the last.")
    else:
        text = (f"No hyperbolic trade-off among these {f.n} models at batch {bs} (k = {f.k:.3g} <= 0): a faster model is "
                "not less accurate here.")
    return Finding("accuracy_time", title, text, details, paper_text, {"batch_size": bs, "metric": metric, **f.to_dict()})


# ---- memory --------------------------------------------------------------------------------------

def memory(bench: pd.DataFrame, setup: Setup | None) -> Finding:
    title = "Memory: floor + slope x batch, and the largest batch that fits"
    paper_text = (f"Paper (TX1): a floor of about {paper.MEMORY_FLOOR_BYTES / 1e6:.0f} MB, then linear growth with batch "
                  "size.")
    if bench.empty or not col(bench, "memory_total_bytes").notna().any():
        return _missing("memory", title, "no memory measured; " + STUDY_HINT + " with --metrics time,memory", paper_text)
    fits = batch_fits(bench)
    details, rows = [], []
    for m, f in fits.items():
        fit_text = [f"{u.mib(b)}: batch {f.largest_batch(b) if f.largest_batch(b) is not None else 'unbounded'}"
                    for b in MEMORY_BUDGETS]
        ratio = f" (static estimate {u.mib(f.static_slope_bytes_per_item, 1)}/image, x{f.slope_ratio:.1f})" if f.slope_ratio else ""
        details.append(f"{m}: {u.mib(f.floor_bytes)} + {u.mib(f.slope_bytes_per_item, 1)}/image{ratio}, R² {_r2(f.r2)}; "
                       f"largest batch in {', '.join(fit_text)}.")
        rows.append({**f.to_dict(), "largest_batch": {str(b): f.largest_batch(b) for b in MEMORY_BUDGETS}})
    text = ""
    data: dict = {"per_model": rows, "quantity": "memory_total_bytes"}
    try:
        fw = floor_vs_weights(bench, 1)
        data["batch1_vs_weights"] = fw.to_dict()
        text = (f"At batch 1, memory = {u.mib(fw.intercept)} floor + {fw.slope:.2f} x weight bytes (R² {_r2(fw.r2)}, "
                f"{fw.n} models): the floor is the runtime ({'process RSS' if setup and not setup.device.startswith('cuda') else 'allocator'}), "
                f"{fw.intercept / paper.MEMORY_FLOOR_BYTES:.1f}x the paper's ~200 MB on the TX1. ")
    except ValueError:
        text = "Batch-1 memory of fewer than two models: no floor across models. "
    if fits:
        slopes = sorted(fits.values(), key=lambda f: f.slope_bytes_per_item)
        text += (f"Per image, memory grows from {u.mib(slopes[0].slope_bytes_per_item, 1)} ({slopes[0].model}) to "
                 f"{u.mib(slopes[-1].slope_bytes_per_item, 1)} ({slopes[-1].model}).")
    else:
        text += "Memory over batch size needs two batch sizes per model (--batch-sizes 1,4,16)."
    return Finding("memory", title, text, details, paper_text, data)


# ---- power ---------------------------------------------------------------------------------------

def power(bench: pd.DataFrame, setup: Setup | None) -> Finding:
    title = "Power vs batch size and architecture"
    paper_text = (f"Paper (TX1): {paper.FINDINGS['power']} — about {paper.POWER_ABOVE_IDLE_W} W above idle once the "
                  "board is saturated.")
    p = col(bench, "power_w") if not bench.empty else pd.Series(dtype=float)
    if p.notna().sum() == 0:
        return _missing("power", title, "no power measured on this setup: run the study with --metrics time,memory,power "
                        "on a machine with a working sensor (`dnnbench sensors` says which work and how to enable them)",
                        paper_text)
    g = bench[p.notna()].copy()
    g["above_idle_w"] = col(g, "power_w") - col(g, "idle_power_w")
    by_batch = g.groupby("batch_size")["power_w"].agg(["median", "min", "max", "count"])
    details = [f"batch {bs}: median {u.watts(r['median'])} ({u.watts(r['min'])}-{u.watts(r['max'])}) over {int(r['count'])} models"
               for bs, r in by_batch.iterrows()]
    top = g[g["batch_size"] == g["batch_size"].max()]
    spread = float(top["power_w"].std(ddof=0) / top["power_w"].mean()) if len(top) > 1 else None
    lo, hi = by_batch["median"].iloc[0], by_batch["median"].iloc[-1]
    text = (f"Median power goes from {u.watts(lo)} at batch {by_batch.index[0]} to {u.watts(hi)} at batch {by_batch.index[-1]} "
            f"({(hi / lo - 1) * 100:+.0f} %)")
    if spread is not None:
        text += f"; across architectures at batch {int(top['batch_size'].iloc[0])} it varies by {u.pct(spread, 0)} (CV)"
    above = g["above_idle_w"].dropna()
    if not above.empty:
        text += f". Above idle: {u.watts(above.median())} median (paper: {paper.POWER_ABOVE_IDLE_W} W on the TX1)"
    return Finding("power", title, text + ".", details, paper_text,
                   {"by_batch": by_batch.reset_index().to_dict(orient="records"), "architecture_cv": spread})


# ---- accuracy density ----------------------------------------------------------------------------

def density(models: pd.DataFrame) -> Finding:
    title = "Accuracy density: top-1 per million parameters"
    paper_text = f"Paper: {paper.FINDINGS['density']}."
    m = models[models["top1"].notna() & models["params"].notna() & (models["params"] > 0)]
    if m.empty:
        return _missing("density", title, "needs profile cells (params) and a top-1: run `dnnbench study MODELS --metrics "
                        "profile`", paper_text)
    d = (m["top1"] * 100 / (m["params"] / 1e6)).sort_values(ascending=False)
    details = [f"{m.loc[ref, 'model']}: {v:.2f} top-1 points per M params ({u.pct(m.loc[ref, 'top1'])}, "
               f"{m.loc[ref, 'params'] / 1e6:.1f} M params)" for ref, v in d.items()]
    first, last = d.index[0], d.index[-1]
    text = (f"Densest: {m.loc[first, 'model']} ({d.iloc[0]:.2f} points/M); least dense: {m.loc[last, 'model']} "
            f"({d.iloc[-1]:.2f} points/M), {d.iloc[0] / d.iloc[-1]:.0f}x apart.")
    return Finding("density", title, text, details, paper_text,
                   {"ranking": [{"model": m.loc[r, "model"], "points_per_mparam": float(v)} for r, v in d.items()]})


# ---- Pareto fronts -------------------------------------------------------------------------------

def fronts(bench: pd.DataFrame, task: str = "classification") -> Finding:
    q, qlabel, better = task_metric(task)
    unit = item_unit(task)
    title = f"Pareto fronts: {qlabel} against time, memory and energy per {unit}"
    if bench.empty:
        return _missing("pareto", title, "no bench cells; " + STUDY_HINT)
    bs = 1 if (bench["batch_size"] == 1).any() else int(bench["batch_size"].min())
    g = bench[bench["batch_size"] == bs]
    details, data = [], {"batch_size": bs, "metric": q}
    show = u.pct if better == "max" else (lambda v: f"{v:.3g}")
    for metric, label in (("latency_per_item_s", f"time per {unit}"), ("memory_total_bytes", "memory"),
                          ("energy_per_item_j", f"energy per {unit}")):
        pts = {r["model"]: {q: r.get(q), metric: r.get(metric)} for _, r in g.iterrows()}
        usable = {k: v for k, v in pts.items() if pd.notna(v[q]) and pd.notna(v[metric])}
        if len(usable) < 1:
            details.append(f"{qlabel} vs {label}: not available (no model with both at batch {bs}).")
            continue
        front = pareto_front(usable, **({"maximize": [q], "minimize": [metric]} if better == "max"
                                        else {"minimize": [q, metric]}))
        front.sort(key=lambda k: usable[k][metric])
        data[metric] = front
        details.append(f"{qlabel} vs {label} (batch {bs}): " + " → ".join(
            f"{k} ({show(usable[k][q])}, {u.metric(metric, usable[k][metric])})" for k in front)
            + f"; dominated: {len(usable) - len(front)} of {len(usable)}.")
    text = (f"At batch {bs}, the models worth deploying for some budget are the fronts below; every other model is "
            "beaten on both axes by one of them.")
    return Finding("pareto", title, text, details, "", data)


# ---- batching and published accuracy ------------------------------------------------------------

def batching(bench: pd.DataFrame, task: str = "classification") -> Finding:
    unit = item_unit(task)
    title = f"Batching: time per {unit} from the smallest to the largest batch"
    g = bench[col(bench, "latency_per_item_s").notna()] if not bench.empty else bench
    if g.empty or g["batch_size"].nunique() < 2:
        return _missing("batching", title, "needs time at two batch sizes or more (--batch-sizes 1,4,16)")
    details, slopes = [], {}
    for m, mg in g.groupby("model"):
        if mg["batch_size"].nunique() < 2:
            continue
        mg = mg.sort_values("batch_size")
        a, b = mg.iloc[0], mg.iloc[-1]
        p = loglog_slope(mg["batch_size"], mg["latency_per_item_s"])
        slopes[m] = p
        details.append(f"{m}: {u.seconds(a['latency_per_item_s'])} at batch {a['batch_size']} → "
                       f"{u.seconds(b['latency_per_item_s'])} at batch {b['batch_size']} "
                       f"({_gain(a['latency_per_item_s'] / b['latency_per_item_s'])}; time/{unit} ∝ batch^{p:.2f}).")
    if not slopes:
        return _missing("batching", title, "no model was timed at two batch sizes")
    med = sorted(slopes.values())[len(slopes) // 2]
    text = (f"Time per {unit} scales as batch^{med:.2f} (median over {len(slopes)} models): "
            + ("batching pays on this setup." if med < -0.1 else "batching barely helps on this setup."))
    return Finding("batching", title, text, details, "Paper (TX1): time per image falls with batch size, "
                   "most for networks with large fully connected layers (AlexNet, VGG).", {"loglog_slopes": slopes})


def paper_accuracy(models: pd.DataFrame) -> Finding:
    title = "Top-1 today vs the paper's 2016 figure"
    m = models[models["paper_top1"].notna()]
    if m.empty:
        return _missing("paper_top1", title, "none of the stored models is in the paper's set (profile `paper` to compare)")
    details = []
    for ref, r in m.iterrows():
        now = r["top1"]
        details.append(f"{r['model']}: paper {u.pct(r['paper_top1'])}, now {u.pct(now)} ({r['top1_source']})"
                       + (f", {100 * (now - r['paper_top1']):+.1f} points" if pd.notna(now) else ""))
    diff = (m["top1"] - m["paper_top1"]).dropna()
    text = (f"{len(m)} models in both: median change {100 * diff.median():+.1f} points (today's weights vs the 2016 "
            "figures; torchvision retrained several networks)." if not diff.empty else f"{len(m)} models in the paper's set.")
    return Finding("paper_top1", title, text, details, "", {"diff_points": {m.loc[k, "model"]: float(v) for k, v in diff.items()}})


def findings(df: pd.DataFrame, setup: Setup | None = None) -> list[Finding]:
    """Every finding, computed from the store's frame; ``setup``: the primary setup (default: most cells).

    The paper's findings are per task: with models of more than one task in the store, operations->time,
    accuracy->time (the task's metric: box mAP for detection, mIoU for segmentation, top-1 otherwise), memory,
    the Pareto fronts and batching come once per task, each over that task's models (keys of tasks other than
    classification end in "-TASK"); power is over every model; density and the paper's top-1 are about
    classifiers. A task with a single model says why no fit exists.
    """
    all_setups = setups(df)
    setup = setup or (all_setups[0] if all_setups else None)
    found = tasks(df) or ["classification"]
    if found == ["classification"]:
        bench = bench_table(df, setup)
        models = models_table(df)
        return [ops_time(df, all_setups), accuracy_time(bench, setup), memory(bench, setup), power(bench, setup),
                density(models), fronts(bench), batching(bench), paper_accuracy(models)]
    out: list[Finding] = []
    for task in found:
        sub = of_task(df, task)
        bench = bench_table(sub, setup)
        per_task = [ops_time(sub, all_setups), accuracy_time(bench, setup, task), memory(bench, setup),
                    fronts(bench, task), batching(bench, task)]
        if task == "classification":
            models = models_table(sub)
            per_task += [density(models), paper_accuracy(models)]
        out += [_for_task(f, task, sub) for f in per_task]
    every = power(bench_table(df, setup), setup)
    every.task = "all"  # over the models of every task
    out.append(every)
    return out


def _for_task(f: Finding, task: str, sub: pd.DataFrame) -> Finding:
    """``f`` labelled with its task; a finding that needs two models says when the task has only one."""
    f.task = task
    if task != "classification":
        f.key = f"{f.key}-{task}"
    f.title = f"{task_title(task)}: {f.title}"
    n = len(model_tasks(sub))
    if not f.available and n == 1 and f.key.split("-")[0] in ("ops_time", "accuracy_time"):
        only = next(iter(model_tasks(sub)))
        f.text += (f" This store holds one {task.replace('_', ' ')} model ({only.removeprefix('torchvision:')}): a "
                   "fit across models needs two or more of the task.")
    return f
