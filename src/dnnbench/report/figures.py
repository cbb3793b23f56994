"""The paper's figures, drawn from stored results with matplotlib (Agg backend: no display needed).

Each figure is a function of ``ReportData`` that either draws into a matplotlib Figure or returns
``NoData(reason)`` — then a figure that says "no data: <why and how to get it>" is drawn in its place, so
a figure is never silently blank. Every figure is titled with device, runtime, precision and date.

What a figure drew is read back from its artists before it is saved (``Plotted``: lines, scatter points,
bars, point labels and free text, in data units), so a figure can be checked by the numbers it shows, and a
"no data" panel is told apart by plotting nothing.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dnnbench.analysis import paper
from dnnbench.analysis.fit import linear_fit
from dnnbench.analysis.pareto import pareto_front
from dnnbench.analysis.tables import Setup, col, task_metric, task_title
from dnnbench.core.measurements import item_unit

STUDY = "dnnbench study MODELS --quick"
SIZE_IN = (7.6, 4.9)
DPI = 100


@dataclass
class ReportData:
    """What the figures and the HTML read: the store's frame and the views analysis derived from it."""

    df: pd.DataFrame
    setup: Setup | None
    bench: pd.DataFrame  # ok bench cells of ``setup`` (tables.bench_table)
    models: pd.DataFrame  # tables.models_table
    generated: str  # ISO date the report was made
    task: str = "classification"  # the models' task (core.specs.TASKS); figures use its quality metric

    @property
    def quality(self) -> tuple[str, str, float]:
        """(column, axis label, scale): the task's quality metric as plotted (fractions in %)."""
        metric, label, better = task_metric(self.task)
        return (metric, f"{label} (%)", 100.0) if better == "max" else (metric, label, 1.0)

    @property
    def unit(self) -> str:
        return item_unit(self.task)

    @property
    def subtitle(self) -> str:
        if self.setup is None:
            return f"static profile only (no device measured), {self.generated}"
        s = self.setup
        return f"{s.device} ({s.hardware}), {s.runtime}, {s.precision}, {s.date or self.generated}"

    def colors(self) -> dict[str, tuple]:
        import matplotlib

        names = sorted(set(self.models["model"].dropna()) | set(self.bench.get("model", pd.Series(dtype=object)).dropna()))
        cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
        return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


@dataclass(frozen=True)
class NoData:
    reason: str


@dataclass(frozen=True)
class Plotted:
    """The data a figure drew, read back from its matplotlib artists, in the axes' data units.

    Each artist is named by its gid, else its legend label. ``lines``: Line2D points (x, y) — an axhline's
    or axvline's other coordinate is in axes fractions (0 to 1); lines without points (legend entries) are
    left out. ``points``: scatter offsets (x, y). ``bars``: per bar group, (category, length) where the
    category is the tick label at the bar's centre and the length its width (barh) or height (bar).
    ``labels``: annotations (text, x, y) — each point's model name where it is drawn. ``texts``: free text.
    """

    lines: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    bars: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    labels: list[tuple[str, float, float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing plotted: a "no data" panel."""
        return not (self.lines or self.points or self.bars)

    def labelled(self) -> dict[str, tuple[float, float]]:
        """Annotation text -> where it is drawn (the last one of a text drawn twice)."""
        return {t: (x, y) for t, x, y in self.labels}


def _unique(d: dict, name: str) -> str:
    k, i = name, 2
    while k in d:
        k, i = f"{name} ({i})", i + 1
    return k


def plotted(fig) -> Plotted:
    """What ``fig`` draws, read back from its artists (see ``Plotted``)."""
    from matplotlib.container import BarContainer
    from matplotlib.text import Annotation

    out = Plotted()
    for ax in fig.axes:
        for line in ax.get_lines():
            xy = [(float(x), float(y)) for x, y in line.get_xydata()]
            if xy:
                out.lines[_unique(out.lines, line.get_gid() or line.get_label())] = xy
        for coll in ax.collections:
            xy = [(float(x), float(y)) for x, y in coll.get_offsets()]
            if xy:
                out.points[_unique(out.points, coll.get_gid() or coll.get_label())] = xy
        for cont in ax.containers:
            if not isinstance(cont, BarContainer) or not cont.patches:
                continue
            horizontal = cont.orientation == "horizontal"
            ticks = ax.get_yticklabels() if horizontal else ax.get_xticklabels()
            where = [(t.get_position()[1 if horizontal else 0], t.get_text()) for t in ticks]
            bars = []
            for r in cont.patches:
                centre = r.get_y() + r.get_height() / 2 if horizontal else r.get_x() + r.get_width() / 2
                cat = min(where, key=lambda w: abs(w[0] - centre))[1] if where else f"{centre:g}"
                bars.append((cat, float(r.get_width() if horizontal else r.get_height())))
            out.bars[_unique(out.bars, cont.get_label())] = bars
        for t in ax.texts:
            if isinstance(t, Annotation):
                out.labels.append((t.get_text(), float(t.xy[0]), float(t.xy[1])))
            else:
                out.texts.append(t.get_text())
    return out


@dataclass
class FigureOut:
    key: str
    title: str
    caption: str
    png: bytes
    no_data: str | None = None  # the reason, when the figure is a "no data" placeholder
    files: list[str] = field(default_factory=list)  # PNG and SVG paths written
    plotted: Plotted = field(default_factory=Plotted)  # what the figure drew (empty for a "no data" panel)
    task: str = "classification"  # the task whose models it draws

    @property
    def width_px(self) -> int:
        return int(SIZE_IN[0] * DPI)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _ax(title: str, data: ReportData):
    plt = _plt()
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    ax.set_title(f"{title}\n{data.subtitle}", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    return fig, ax


def _no_data_figure(title: str, reason: str, data: ReportData):
    plt = _plt()
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    ax.set_title(f"{title}\n{data.subtitle}", fontsize=10)
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no data: " + "\n".join(textwrap.wrap(reason, 70)), ha="center", va="center", fontsize=11,
            color="#444", transform=ax.transAxes, bbox={"boxstyle": "round", "fc": "#f4f4f4", "ec": "#bbb"})
    return fig


def _log(ax, which: str, ticks=None, base: float = 10) -> None:
    """Log scale with plain-number labels ("1, 4, 16", not 2^k mathtext: easier to read, much faster to draw)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    if ticks is not None:
        axis.set_major_locator(FixedLocator(sorted(set(ticks))))
    else:  # 1-2-5 steps: a range narrower than a decade still gets labels
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _label_points(ax, xs, ys, names, fontsize=7):
    for x, y, n in zip(xs, ys, names):
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=fontsize)


def _need_bench(data: ReportData, metric: str, how: str) -> NoData | None:
    if data.setup is None or data.bench.empty:
        return NoData(f"nothing was measured on a device yet: run `{STUDY}` into this store")
    if not col(data.bench, metric).notna().any():
        return NoData(how)
    return None


# ---- the figures ---------------------------------------------------------------------------------

def _no_quality(data: ReportData) -> str:
    q, label, _ = data.quality
    if q == "top1":
        return "no top-1 known: profile cells carry the published top-1; run `dnnbench study MODELS --metrics profile`"
    return (f"no {label.removesuffix(' (%)')} known for the {data.task.replace('_', ' ')} models: measure it with "
            "`dnnbench accuracy` on the task's data (or `dnnbench study ... --metrics accuracy`)")


def top1_per_model(data: ReportData, fig_ax):
    q, qlabel, scale = data.quality
    m = data.models[data.models[q].notna() | data.models["paper_top1"].notna()].copy()
    if m.empty:
        return NoData(_no_quality(data))
    m = m.sort_values(q, na_position="first")
    fig, ax = fig_ax()
    y = range(len(m))
    h = 0.38
    ax.barh([i + h / 2 for i in y], m[q] * scale, height=h, label="today (measured or published)", color="#3b75af")
    if m["paper_top1"].notna().any():
        ax.barh([i - h / 2 for i in y], m["paper_top1"] * 100, height=h, label="paper 2016", color="#e39c4b")
    ax.set_yticks(list(y), m["model"], fontsize=8)
    ax.set_xlabel("top-1 accuracy (%)" if q == "top1" else qlabel)
    lo = float(min(m[q].min(skipna=True) if m[q].notna().any() else 1,
                   m["paper_top1"].min(skipna=True) if m["paper_top1"].notna().any() else 1))
    if scale == 100:
        ax.set_xlim(max(0, lo * 100 - 10), 100)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def ball_chart(data: ReportData, fig_ax):
    q, qlabel, scale = data.quality
    m = data.models[data.models[q].notna() & data.models["macs_per_item"].notna()]
    if m.empty:
        return NoData("needs MACs and top-1: run `dnnbench study MODELS --metrics profile`" if q == "top1" else
                      f"needs MACs and a {qlabel.removesuffix(' (%)')}: " + _no_quality(data).split(": ", 1)[1])
    fig, ax = fig_ax()
    colors = data.colors()
    sizes = (m["params"].fillna(0) / 1e6).clip(lower=0.5) * 8
    gm = m["macs_per_item"] / 1e9
    ax.scatter(gm, m[q] * scale, s=sizes, c=[colors.get(n) for n in m["model"]], alpha=0.6, edgecolors="k",
               gid="models")
    _label_points(ax, gm, m[q] * scale, m["model"])
    ax.set_xlabel(f"GMACs per {data.unit} (paper's G-Ops = 2 x GMACs)")
    ax.set_ylabel("top-1 accuracy (%)" if q == "top1" else qlabel)
    ax.text(0.99, 0.02, "marker area ∝ parameters", transform=ax.transAxes, ha="right", fontsize=8, color="#555")
    return fig


def time_vs_batch(data: ReportData, fig_ax):
    nd = _need_bench(data, "latency_per_item_s", f"no time measured: run `{STUDY} --metrics time`")
    if nd:
        return nd
    fig, ax = fig_ax()
    colors = data.colors()
    for m, g in data.bench.groupby("model"):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["latency_per_item_s"] * 1e3, "o-", label=m, color=colors.get(m))
    _log(ax, "x", data.bench["batch_size"], base=2)
    _log(ax, "y")
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"time per {data.unit} (ms, median)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def power_vs_batch(data: ReportData, fig_ax):
    nd = _need_bench(data, "power_w", "no power measured: run the study with --metrics time,memory,power on a machine "
                     "with a working sensor (`dnnbench sensors` says which work)")
    if nd:
        return nd
    fig, ax = fig_ax()
    colors = data.colors()
    b = data.bench[col(data.bench, "power_w").notna()]
    for m, g in b.groupby("model"):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["power_w"], "o-", label=m, color=colors.get(m))
    idle = col(b, "idle_power_w").dropna()
    if not idle.empty:
        ax.axhline(idle.median(), ls=":", color="k", label=f"idle (median {idle.median():.3g} W)")
    _log(ax, "x", b["batch_size"], base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("power while running (W)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def memory_vs_batch(data: ReportData, fig_ax):
    nd = _need_bench(data, "memory_model_bytes", f"no memory measured: run `{STUDY} --metrics time,memory`")
    if nd:
        return nd
    fig, ax = fig_ax()
    colors = data.colors()
    for m, g in data.bench.groupby("model"):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["memory_model_bytes"] / 2**20, "o-", color=colors.get(m), label=m)
        if col(g, "memory_estimate_bytes").notna().any():
            ax.plot(g["batch_size"], g["memory_estimate_bytes"] / 2**20, "x--", color=colors.get(m), alpha=0.7,
                    gid=f"{m} (static estimate)")
    # one legend entry per model (its colour) and one per line style, instead of two per model
    ax.plot([], [], "k-", marker="o", label="measured")
    ax.plot([], [], "k--", marker="x", alpha=0.7, label="static estimate")
    _log(ax, "x", data.bench["batch_size"], base=2)
    ax.set_xlabel("batch size")
    gpu = data.setup is not None and data.setup.device.startswith("cuda")
    ax.set_ylabel("MiB (" + ("CUDA peak allocated" if gpu else "peak RSS above baseline") + ")")
    ax.legend(fontsize=7, ncol=2, loc="best")
    return fig


def memory_vs_weights(data: ReportData, fig_ax):
    nd = _need_bench(data, "memory_total_bytes", f"no memory measured: run `{STUDY} --metrics time,memory`")
    if nd:
        return nd
    b = data.bench[(data.bench["batch_size"] == 1) & col(data.bench, "memory_total_bytes").notna()
                   & col(data.bench, "weight_bytes").notna()]
    if b.empty:
        return NoData("no memory measured at batch 1: add 1 to --batch-sizes")
    fig, ax = fig_ax()
    x, y = b["weight_bytes"] / 2**20, b["memory_total_bytes"] / 2**20
    ax.scatter(x, y, c=[data.colors().get(n) for n in b["model"]], edgecolors="k", gid="models")
    _label_points(ax, x, y, b["model"])
    if len(b) >= 2 and x.nunique() >= 2:
        f = linear_fit(x, y)
        xs = [0, float(x.max()) * 1.05]
        r2 = "n/a" if f.r2 is None else f"{f.r2:.2f}"  # None: every model needed the same memory
        ax.plot(xs, [f.predict(v) for v in xs], "k--", gid="fit",
                label=f"floor {f.intercept:.0f} MiB + {f.slope:.2f} x weights (R² {r2})")
    ax.axhline(paper.MEMORY_FLOOR_BYTES / 2**20, ls=":", color="#e39c4b", label="paper's floor on the TX1 (~200 MB)")
    ax.set_xlabel("weight size (MiB)")
    gpu = data.setup is not None and data.setup.device.startswith("cuda")
    ax.set_ylabel("memory at batch 1 (MiB, " + ("CUDA peak allocated" if gpu else "process peak RSS") + ")")
    ax.set_xlim(left=0)
    ax.legend(fontsize=7)
    return fig


def _two_batches(b: pd.DataFrame, metric: str) -> list[int]:
    counts = b[col(b, metric).notna()].groupby("batch_size")["model"].nunique()
    counts = counts[counts >= 1]
    if counts.empty:
        return []
    want = [bs for bs in (1, 16) if bs in counts.index]
    if len(want) < 2:
        want = sorted({int(counts.index.min()), int(counts.index.max())})
    return want


def ops_vs_time(data: ReportData, fig_ax):
    nd = _need_bench(data, "latency_per_item_s", f"no time measured: run `{STUDY} --metrics time`")
    if nd:
        return nd
    fig, ax = fig_ax()
    for bs, marker, color in zip(_two_batches(data.bench, "latency_per_item_s"), "os", ("#3b75af", "#c44e52")):
        g = data.bench[(data.bench["batch_size"] == bs) & col(data.bench, "latency_per_item_s").notna()]
        x, y = g["gmacs_per_item"], g["latency_per_item_s"] * 1e3
        label = f"batch {bs}"
        if len(g) >= 2 and x.nunique() >= 2:
            f = linear_fit(x, y)
            xs = [0, float(x.max()) * 1.05]
            ax.plot(xs, [f.predict(v) for v in xs], "--", color=color, alpha=0.8, gid=f"batch {bs} fit")
            label += f": {f.intercept:.3g} ms + {f.slope:.3g} ms/GMAC, R² " + ("n/a" if f.r2 is None else f"{f.r2:.2f}")
        ax.scatter(x, y, marker=marker, color=color, label=label, edgecolors="k", gid=f"batch {bs}")
        _label_points(ax, x, y, g["model"], 6)
    ax.set_xlabel(f"GMACs per {data.unit}")
    ax.set_ylabel(f"time per {data.unit} (ms, median)")
    ax.set_xlim(left=0)
    ax.legend(fontsize=7)
    return fig


def ops_vs_power(data: ReportData, fig_ax):
    nd = _need_bench(data, "power_w", "no power measured: run the study with --metrics time,memory,power on a machine "
                     "with a working sensor (`dnnbench sensors`)")
    if nd:
        return nd
    fig, ax = fig_ax()
    for bs, marker, color in zip(_two_batches(data.bench, "power_w"), "os", ("#3b75af", "#c44e52")):
        g = data.bench[(data.bench["batch_size"] == bs) & col(data.bench, "power_w").notna()]
        ax.scatter(g["gmacs_per_item"], g["power_w"], marker=marker, color=color, label=f"batch {bs}", edgecolors="k")
        _label_points(ax, g["gmacs_per_item"], g["power_w"], g["model"], 6)
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("power while running (W)")
    ax.legend(fontsize=7)
    return fig


def _nice_levels(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2):
        for m in (1, 2, 5):
            v = m * 10.0 ** e
            if lo / 1.5 <= v <= hi * 1.5:
                out.append(v)
    return out[:: max(1, len(out) // 5)]


def accuracy_vs_throughput(data: ReportData, fig_ax):
    nd = _need_bench(data, "throughput_items_per_s", f"no throughput measured: run `{STUDY} --metrics time`")
    if nd:
        return nd
    q, qlabel, scale = data.quality
    b = data.bench[col(data.bench, "throughput_items_per_s").notna() & col(data.bench, q).notna()]
    if b.empty:
        return NoData("no model has both a throughput and a top-1: add --metrics profile to the study" if q == "top1"
                      else f"no model has both a throughput and a {qlabel.removesuffix(' (%)')}: "
                      + _no_quality(data).split(": ", 1)[1])
    counts = b.groupby("batch_size")["model"].nunique()
    bs = int(counts[counts == counts.max()].index.max())
    g = b[b["batch_size"] == bs]
    fig, ax = fig_ax()
    x, y = g["throughput_items_per_s"], g[q] * scale
    sizes = (g["gmacs_per_item"].fillna(0.1)).clip(lower=0.05) * 60
    ax.scatter(x, y, s=sizes, c=[data.colors().get(n) for n in g["model"]], alpha=0.6, edgecolors="k", gid="models")
    _label_points(ax, x, y, g["model"])
    front = pareto_front({m: {"t": t, "a": a} for m, t, a in zip(g["model"], x, y)}, maximize=["t", "a"])
    fr = g[g["model"].isin(front)].sort_values("throughput_items_per_s")
    ax.plot(fr["throughput_items_per_s"], fr[q] * scale, "k-", lw=0.8, alpha=0.6, label="Pareto front")
    _log(ax, "x")
    power = col(g, "power_w").dropna()
    if not power.empty:
        p = float(power.median())
        e = p / x
        for level in _nice_levels(float(e.min()), float(e.max())):
            ax.axvline(p / level, ls=":", color="#888", gid=f"{level:g} J per image")
            ax.text(p / level, ax.get_ylim()[0], f" {level * 1e3:.3g} mJ", rotation=90, fontsize=7, color="#555",
                    va="bottom")
        note = f"dotted: energy per image at the\nmedian measured power {p:.3g} W"
    else:
        note = "no power measured: iso-energy lines\nneed --metrics power and a sensor"
    ax.plot([], [], " ", label=note)
    ax.set_xlabel(f"{data.unit}s per second (batch {bs})")
    ax.set_ylabel("top-1 accuracy (%)" if q == "top1" else qlabel)
    ax.legend(fontsize=7, loc="best")
    return fig


def accuracy_density(data: ReportData, fig_ax):
    m = data.models[data.models["top1"].notna() & (data.models["params"] > 0)]
    if m.empty:
        return NoData("needs params and top-1: run `dnnbench study MODELS --metrics profile`")
    d = (m["top1"] * 100 / (m["params"] / 1e6)).sort_values()
    fig, ax = fig_ax()
    ax.barh(range(len(d)), d.values, color=[data.colors().get(m.loc[r, "model"]) for r in d.index],
            label="top-1 points per million parameters")  # names the bars for ``plotted``; no legend is drawn
    ax.set_yticks(range(len(d)), [m.loc[r, "model"] for r in d.index], fontsize=8)
    ax.set_xlabel("top-1 points per million parameters")
    return fig


def runtimes_side_by_side(data: ReportData, fig_ax):
    """Time per image of each model under every runtime and precision measured on one machine, device, threads."""
    from dnnbench.analysis.runtimes import comparisons, config_label

    comps = comparisons(data.df)
    if not comps:
        return NoData("only one runtime and precision was measured: run e.g. `dnnbench study MODELS --runtime all` "
                      "(and --precision fp32,int8) to compare them under one protocol")
    comp = comps[0]
    if data.setup is not None:
        comp = next((c for c in comps if (c.fingerprint, c.device, c.threads)
                     == (data.setup.fingerprint, data.setup.device, data.setup.threads)), comp)
    t = comp.table[(comp.table["status"] == "ok") & comp.table["latency_per_item_s"].notna()]
    sizes = sorted(t["batch_size"].unique())
    batch = 1 if 1 in sizes else sizes[0]
    t = t[t["batch_size"] == batch]
    models = sorted(t["model"].unique())
    configs = [c for c in comp.configs if ((t["runtime"] == c[0]) & (t["precision"] == c[1])).any()]
    fig, ax = fig_ax()
    ax.set_title(f"Time per image by runtime and precision, batch {batch}\n{comp.label}, "
                 f"{data.setup.date if data.setup else data.generated}", fontsize=10)
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    h = 0.8 / max(1, len(configs))
    for k, (rt, prec) in enumerate(configs):
        ys, xs, speed = [], [], []
        for i, m in enumerate(models):
            row = t[(t["model"] == m) & (t["runtime"] == rt) & (t["precision"] == prec)]
            if row.empty:
                continue
            ys.append(i + (k - (len(configs) - 1) / 2) * h)
            xs.append(float(row.iloc[0]["latency_per_item_s"]) * 1e3)
            speed.append(row.iloc[0]["speedup_vs_reference"])
        ax.barh(ys, xs, height=h * 0.9, color=cmap(k % 10), label=config_label(rt, prec))
        for y, x, sp in zip(ys, xs, speed):
            if sp == sp and (rt, prec) != ("eager", "fp32"):
                ax.annotate(f"{sp:.2g}x", (x, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.invert_yaxis()  # first model and first configuration (eager fp32) on top, in the legend's order
    ax.set_xlabel("time per image (ms, median); Nx = speed-up over eager fp32")
    ax.legend(fontsize=7, loc="best")
    return fig


def accuracy_configs_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ok accuracy cell with a (runtime, precision): its top-1 and a time per image — the bench time
    per image of the same model and configuration at its smallest batch where one is stored (``time_source``
    says so), else the forward time the evaluation itself measured. Empty unless a configuration other than
    eager fp32 has accuracy."""
    if df.empty or "metric_group" not in df.columns:
        return pd.DataFrame()
    acc = df[(df["metric_group"] == "accuracy") & (df["status"] == "ok")].copy()
    if acc.empty or "runtime" not in acc.columns:
        return pd.DataFrame()
    acc["runtime"] = acc["runtime"].fillna("eager")
    acc["precision"] = acc["precision"].fillna("fp32")
    if not ((acc["runtime"] != "eager") | (acc["precision"] != "fp32")).any():
        return pd.DataFrame()
    bench = df[(df["status"] == "ok") & (df["metric_group"] == "time")] if "latency_per_item_s" in df.columns \
        else df.iloc[0:0]
    rows = []
    for r in acc.itertuples():
        top1 = getattr(r, "top1", None)
        if top1 is None or top1 != top1:
            continue
        b = bench[(bench["model_ref"] == r.model_ref) & (bench["runtime"] == r.runtime)
                  & (bench["precision"] == r.precision)].sort_values("batch_size")
        t = float(b.iloc[0]["latency_per_item_s"]) if not b.empty else None
        source = f"bench, batch {int(b.iloc[0]['batch_size'])}" if t is not None else "the evaluation's forward time"
        if t is None:
            v = getattr(r, "accuracy_forward_per_image_s", None)
            t = float(v) if v is not None and v == v else None
        if t is None:
            continue
        rows.append({"model_ref": r.model_ref, "runtime": r.runtime, "precision": r.precision, "top1": float(top1),
                     "time_per_image_s": t, "time_source": source,
                     "delta_low": getattr(r, "top1_delta_ci_low_points", None),
                     "delta_high": getattr(r, "top1_delta_ci_high_points", None)})
    return pd.DataFrame(rows)


def accuracy_vs_time_configs(data: ReportData, fig_ax):
    """Top-1 against time per image for each model under each runtime and precision whose accuracy was measured."""
    from dnnbench.analysis.runtimes import config_label
    from dnnbench.analysis.tables import short_name

    rows = accuracy_configs_rows(data.df)
    if rows.empty:
        return NoData("no configuration other than eager fp32 has a measured accuracy: run `dnnbench study MODELS "
                      "--metrics accuracy,time --data DIR --runtime all --precision fp32,int8`")
    fig, ax = fig_ax()
    colors = data.colors()
    markers = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^", "int8-dynamic": "v"}
    for ref, g in rows.groupby("model_ref", sort=False):
        name = short_name(ref)
        g = g.sort_values("time_per_image_s")
        color = colors.get(name)
        ax.plot(g["time_per_image_s"] * 1e3, g["top1"] * 100, "-", color=color, alpha=0.4, lw=1)
        for r in g.itertuples():
            ax.scatter([r.time_per_image_s * 1e3], [r.top1 * 100], color=color, marker=markers.get(r.precision, "o"),
                       s=40, zorder=3)
            ax.annotate(f"{name} {config_label(r.runtime, r.precision)}", (r.time_per_image_s * 1e3, r.top1 * 100),
                        xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("time per image (ms, median; log)")
    ax.set_ylabel("top-1 (%)")
    return fig


FIGURES: list[tuple[str, str, Callable, str]] = [
    ("top1", "Top-1 accuracy per model", top1_per_model,
     "Today's top-1 (measured where stored, else published with the weights) beside the paper's 2016 figure."),
    ("ball", "Top-1 vs GMACs (marker area ∝ parameters)", ball_chart,
     "The paper's ball chart: accuracy against operations per image; bigger balls have more parameters."),
    ("time_batch", "Time per image vs batch size", time_vs_batch,
     "Median forward time of one batch divided by the batch size; log-log."),
    ("power_batch", "Power vs batch size", power_vs_batch,
     "Mean power over the measured window, over the sensor's domains (idle included; dotted: idle baseline)."),
    ("memory_batch", "Memory vs batch size: measured and estimated", memory_vs_batch,
     "Measured: what the model added (CPU: peak RSS above the pre-build baseline; GPU: CUDA peak allocated). "
     "Estimate: weights + activation peak from the static profile."),
    ("memory_weights", "Memory at batch 1 vs weight size", memory_vs_weights,
     "Whole-run memory at batch 1 against weight bytes, with the fitted floor and slope."),
    ("ops_time", "GMACs vs time per image", ops_vs_time,
     "Time per image against operations at two batch sizes, with the least-squares line (slope, intercept, R²)."),
    ("ops_power", "GMACs vs power", ops_vs_power, "Power while running against operations per image."),
    ("accuracy_throughput", "Top-1 vs images per second, with iso-energy lines", accuracy_vs_throughput,
     "Marker area ∝ GMACs. At a fixed power P, energy per image E = P / throughput: each dotted line is one energy "
     "budget; models left of a line spend more than that per image."),
    ("density", "Accuracy density (top-1 per million parameters)", accuracy_density,
     "How much accuracy each parameter buys."),
    ("runtimes", "Runtimes and precisions side by side", runtimes_side_by_side,
     "The same models and batch under each runtime and precision measured on one machine, device and thread "
     "count; the table \u201cRuntimes and precisions\u201d adds memory, cold start and output equivalence."),
]


ACCURACY_CONFIGS = (
    "accuracy_configs", "Top-1 vs time per image, per runtime and precision", accuracy_vs_time_configs,
    "What a runtime or precision costs in accuracy for what it gains in time: each model's configurations joined, "
    "top-1 measured on the same images for each (the store's accuracy cells give the paired delta vs eager fp32 "
    "with its 95 % CI and McNemar's p); time per image from the bench cell of that configuration at its smallest "
    "batch, else the evaluation's own forward time.")


# The figures drawn for the models of a task other than classification (their quality metric in place of top-1).
TASK_FIGURES = ("top1", "ball", "time_batch", "memory_batch", "ops_time", "accuracy_throughput")


def _task_figure(key: str, title: str, caption: str, task: str) -> tuple[str, str, str]:
    """A figure's key, title and caption for ``task``'s models (its quality metric named)."""
    metric, label, _ = task_metric(task)
    unit = item_unit(task)
    title = title.replace("Top-1 accuracy", label).replace("Top-1", label).replace("images per second",
                                                                                  f"{unit}s per second")
    title = title.replace("per image", f"per {unit}")
    caption = caption.replace("top-1", label).replace("per image", f"per {unit}")
    return f"{key}-{task}", f"{task_title(task)}: {title}", caption


def render(data: ReportData, out_dir: Path | None = None) -> list[FigureOut]:
    """Draw every figure; write PNG and SVG under ``out_dir`` when given. No figure is ever empty.

    ``data.task`` other than classification draws ``TASK_FIGURES`` for that task, keyed ``KEY-TASK``.
    """
    _plt()
    outs = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    chosen = FIGURES if data.task == "classification" else [
        (*_task_figure(k, t, c, data.task)[:2], fn, _task_figure(k, t, c, data.task)[2])
        for k, t, fn, c in FIGURES if k in TASK_FIGURES]
    if data.task == "classification" and not accuracy_configs_rows(data.df).empty:
        chosen = [*chosen, ACCURACY_CONFIGS]  # only where configurations other than eager fp32 have accuracy
    for key, title, fn, caption in chosen:
        outs.append(_save(key, title, caption, fn(data, lambda t=title: _ax(t, data)), data, out_dir))
    return outs


def _save(key: str, title: str, caption: str, res, data: ReportData, out_dir: Path | None) -> FigureOut:
    """A drawn figure (or a NoData: its "no data" panel) read back, saved as PNG (and PNG, SVG under ``out_dir``)."""
    plt = _plt()
    no_data = res.reason if isinstance(res, NoData) else None
    fig = _no_data_figure(title, no_data, data) if no_data else res
    drawn = plotted(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    files = []
    if out_dir is not None:
        for ext in ("png", "svg"):
            path = out_dir / f"{key}.{ext}"
            if ext == "png":
                path.write_bytes(buf.getvalue())
            else:
                fig.savefig(path, format="svg")
            files.append(str(path))
    plt.close(fig)
    return FigureOut(key, title, caption, buf.getvalue(), no_data, files, drawn, data.task)


# ---- setups side by side -------------------------------------------------------------------------

def _setups_ax(title: str, cmp, data: ReportData, tall: bool = False):
    plt = _plt()
    n = len(cmp.shared() or cmp.models)
    size = (SIZE_IN[0], max(SIZE_IN[1], 1.2 + 0.18 * n * len(cmp.setups))) if tall else SIZE_IN
    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    ax.set_title(f"{title}\n{len(cmp.setups)} setups, batch {cmp.batch_size}, {data.generated}", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    return fig, ax


def _setup_colors(cmp) -> dict[str, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s.name: cmap(i % 10) for i, s in enumerate(cmp.setups)}


def setups_bars(cmp, data: ReportData, metric: str, scale: float, xlabel: str, title: str, how: str):
    """Per model, one bar per setup (horizontal, log axis: setups may differ by orders of magnitude)."""
    models = cmp.shared() or cmp.models
    if not any(cmp.value(m, s, metric) is not None for m in models for s in cmp.setups):
        return NoData(how)
    fig, ax = _setups_ax(title, cmp, data, tall=True)
    colors = _setup_colors(cmp)
    h = 0.8 / len(cmp.setups)
    for k, s in enumerate(cmp.setups):
        ys, xs = [], []
        for i, m in enumerate(models):
            v = cmp.value(m, s, metric)
            if v is not None and v > 0:
                ys.append(i + (k - (len(cmp.setups) - 1) / 2) * h)
                xs.append(v * scale)
        if xs:
            ax.barh(ys, xs, height=h * 0.9, color=colors[s.name], label=s.name)
    ax.set_yticks(range(len(models)), [cmp.names[m] for m in models], fontsize=8)
    ax.invert_yaxis()
    _log(ax, "x")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7, loc="best")
    return fig


def setups_ops_time(cmp, data: ReportData):
    """Time per image against GMACs, one colour per setup, each with its least-squares line."""
    fig, ax = _setups_ax("GMACs vs time per image, per setup", cmp, data)
    colors = _setup_colors(cmp)
    drawn = False
    for s in cmp.setups:
        pts = []
        for m in cmp.models:
            v = cmp.values.get((m, s.name)) or {}
            if "latency_per_item_s" in v and math.isfinite(v.get("gmacs_per_item", math.nan)):
                pts.append((v["gmacs_per_item"], v["latency_per_item_s"] * 1e3, cmp.names[m]))
        if not pts:
            continue
        drawn = True
        x, y, names = zip(*pts)
        label = s.name
        f = cmp.fits.get(s.name)
        if f is not None:
            xs = [0.0, max(x) * 1.05]
            ax.plot(xs, [1e3 * (f["intercept"] + f["slope"] * v) for v in xs], "--", color=colors[s.name], alpha=0.8,
                    gid=f"{s.name} fit")
            label += (f": {1e3 * f['intercept']:.3g} ms + {1e3 * f['slope']:.3g} ms/GMAC, R² "
                      + ("n/a" if f.get("r2") is None else f"{f['r2']:.2f}"))
        ax.scatter(x, y, color=colors[s.name], edgecolors="k", label=label, gid=s.name)
        _label_points(ax, x, y, names, 6)
    if not drawn:
        import matplotlib.pyplot as plt

        plt.close(fig)
        return NoData("no setup has time and MACs for its models at this batch size: profile the models "
                      "(`dnnbench study MODELS --metrics profile`) into this store")
    ax.set_xlabel(f"GMACs per {data.unit}")
    ax.set_ylabel(f"time per {data.unit} (ms, median)")
    ax.set_xlim(left=0)
    ax.legend(fontsize=7)
    return fig


def render_setups(cmp, data: ReportData, out_dir: Path | None = None) -> list[FigureOut]:
    """The "Setups compared" figures of ``cmp`` (analysis.setups.Comparison): time, memory and energy per model
    across setups, and operations->time per setup with their fits."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    b = cmp.batch_size
    specs = [
        ("setups_time", "Time per image, per model and setup", "latency_per_item_s", 1e3,
         "time per image (ms, median, log)", "no setup measured time"),
        ("setups_memory", "Memory, per model and setup", "memory_total_bytes", 1 / 2**20,
         "memory total (MiB, log): CPU peak RSS of the process, GPU CUDA peak allocated",
         "no setup measured memory: run the study with --metrics time,memory"),
        ("setups_energy", "Energy per image, per model and setup", "energy_per_item_j", 1e3,
         "energy per image (mJ, log; idle included, over each sensor's own domains)",
         "no setup measured energy: run the study with --metrics time,memory,power where a sensor works "
         "(`dnnbench sensors`)"),
    ]
    outs = []
    for key, title, metric, scale, xlabel, how in specs:
        res = setups_bars(cmp, data, metric, scale, xlabel, title, how)
        caption = (f"Each setup's own measurement at batch {b} (never predicted); a missing bar: that setup did "
                   "not measure the model at this batch size (the table says why).")
        outs.append(_save(key, title, caption, res, data, out_dir))
    caption = (f"Time per image at batch {b} against operations, one colour per setup, with each setup's "
               "least-squares line (intercept, slope, R²): the slope is the setup's time per GMAC.")
    outs.append(_save("setups_ops_time", "GMACs vs time per image, per setup", caption, setups_ops_time(cmp, data),
                      data, out_dir))
    return outs
