"""The answer of `dnnbench pick`: candidates with verdicts, the best, the Pareto set."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from dnnbench.cli.output import out
from dnnbench.core import units as u


def value(c, metric: str) -> str:
    """A candidate's figure; a prediction carries "pred" and its held-out error."""
    v = c.values.get(metric)
    if v is None or v.value is None:
        return "-"
    from dnnbench.analysis.tables import QUALITY_METRICS

    # a task's quality metric (box mAP, mIoU...) is a fraction, shown in %, except EPE (pixels)
    text = (u.pct(v.value) if metric in QUALITY_METRICS and metric != "epe" else u.metric(metric, v.value))
    if v.source == "predicted":
        text += " pred " + ("±?" if v.error is None else f"±{100 * v.error:.{1 if v.error < 0.01 else 0}f} %")
    return text


def _verdict(res, c):
    if res.best is not None and c is res.best:
        return Text("best", style="bold green") + (" · Pareto" if c.key in res.pareto else "")
    if c.feasible:
        return "fits" + (" · Pareto" if c.key in res.pareto else "")
    parts = []
    for v in c.violations:
        if v.excess is None:
            parts.append(f"{v.constraint.given}: {v.value.note or 'unknown'}")
        elif v.constraint.metric.endswith(("top1", "top5", "map", "map50", "miou", "pixel_acc")):  # in points
            parts.append(f"breaks {v.constraint.given} by {100 * v.excess:.1f} points")
        else:
            rel = f" ({100 * v.excess_rel:+.0f} %)" if v.excess_rel is not None else ""
            parts.append(f"breaks {v.constraint.given} by {u.metric(v.constraint.metric, v.excess)}{rel}")
    return "; ".join(parts)


def pick(res) -> None:
    where = f"on {res.setup.label}" if res.setup else "(nothing measured on a device: published figures only)"
    if res.any_setup:
        where = f"over {len(res.setups)} setups (--setup any)"
    cons = ", ".join(c.given for c in res.constraints) or "none"
    out.print(f"pick at batch {res.batch_size} {where}; objective: {res.objective}; constraints: {cons}")
    from dnnbench.analysis.tables import task_metric
    from dnnbench.core.measurements import item_unit

    task = getattr(res, "task", None)
    quality, qlabel, _ = task_metric(task)
    unit = item_unit(task)
    if task is not None:
        out.print(f"task: {task.replace('_', ' ')} (quality: {qlabel}; time and energy per {unit})")
    cols = [(qlabel, quality), ("latency", "latency_median_s"), (f"{unit}s/s", "throughput_items_per_s"),
            ("memory", "memory_total_bytes"), ("power", "power_w"), (f"energy/{unit}", "energy_per_item_j")]
    extra = [c.metric for c in res.constraints if c.metric not in {m for _, m in cols}]
    if res.objective not in {m for _, m in cols}:
        extra.append(res.objective)
    cols += [(m, m) for m in dict.fromkeys(extra)]
    t = Table(title_justify="left")
    t.add_column("model")
    if res.any_setup:
        t.add_column("setup")
    for head, _ in cols:
        t.add_column(head, justify="right")
    t.add_column("verdict")
    for c in res.candidates:
        top1 = value(c, quality)
        src = c.values.get(quality)
        if src is not None and src.source not in ("measured", "predicted"):
            top1 += f" ({src.source})"
        t.add_row(c.model, *([c.setup.name if c.setup else "-"] if res.any_setup else []), top1,
                  *[value(c, m) for _, m in cols[1:]], _verdict(res, c), style=None if c.feasible else "dim")
    out.print(t)
    if res.best is not None:
        b = res.best
        shown = [f"{label} {value(b, m)}" for label, m in ((qlabel, quality), ("latency", "latency_median_s"),
                                                           ("throughput", "throughput_items_per_s"),
                                                           ("memory", "memory_total_bytes"))
                 if b.get(m) is not None]
        on = (f" on {b.setup.name} ({b.setup.device}, {b.setup.runtime} {b.setup.precision}, machine "
              f"{b.setup.fingerprint[:12]})") if b.setup is not None else ""
        out.print(f"best: {b.model}{on} — " + ", ".join(shown))
    else:
        out.print("no model meets every constraint.")
        for bnd in res.binding[:3]:
            alone = bnd["only_obstacle_for"]
            out.print(f"  {bnd['constraint']} rejects {bnd['rejects']} model(s)"
                      + (f"; relaxing it alone would admit {', '.join(a.removeprefix('torchvision:') for a in alone)}"
                         if alone else ""))
        if res.closest:
            out.print("  closest: " + ", ".join(c.model + (f" on {c.setup.name}" if c.setup else "") for c in res.closest))
    if res.pareto:
        out.print(f"Pareto set ({', '.join(res.pareto_axes)}): "
                  + ", ".join(p.removeprefix("torchvision:") for p in res.pareto))
    if any(c.predicted for c in res.candidates) and res.cost_model is not None:
        out.print("pred: predicted by the cost model fitted on the measured models of this setup at this batch size; "
                  "± is the median leave-one-out error (? = fewer than 3 models measured, error unknown).")
    for note in res.notes:
        out.print(f"note: {note}")
