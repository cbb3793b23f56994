"""Pick the best model under a budget: constraints, the winner, the Pareto set, and why the rest lose.

Values come from the store: measured where the (model, batch size) cell was measured on the chosen setup,
else predicted by the setup's cost model (``costmodel``) and labelled ``predicted`` with its held-out error.
Top-1 is the measured accuracy where one was stored, else the figure published with the weights, else the
paper's 2016 figure — each labelled with its source.

Constraint semantics (SI units inside; the CLI converts):
- latency = ``latency_median_s``: the median time to run one batch of ``batch_size`` (what a caller waits);
- throughput = ``throughput_items_per_s`` = batch_size / latency;
- memory = ``memory_total_bytes`` (process peak RSS on CPU, CUDA allocator peak on GPU);
- energy = ``energy_per_item_j`` (per image, over the sensor's domains, idle included); power = ``power_w``;
- artifact = ``artifact_bytes``: the deployable file the setup's runtime and precision produce (the app's
  download and storage cost), measured in the bench cell; never predicted.

Constraints *contradict* when no model could meet them whatever was measured; those raise
``ConstraintError`` before the store is read: a budget of zero or less (latency, memory, energy, power,
throughput), top-1 above 100 %, and — with ``--where`` lower bounds — a minimum above a maximum of the same
quantity, the time family compared in one unit (time per image = latency / batch = 1 / throughput), so
``--max-latency-ms 1 --where 'throughput_items_per_s<=100'`` at batch 1 contradicts. The six budget
options alone never contradict each other: each caps a cost or floors a benefit, and a fast, small,
frugal, accurate model would meet them all (``--max-latency-ms 1`` already implies >= 1000 images/s at
batch 1, so ``--min-throughput 2000`` only tightens it). A budget nothing in the store meets (e.g.
``--min-top1`` above every model) is not a contradiction: it is answered with the binding constraint and
the closest models, exit code 3.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd

from dnnbench.analysis.costmodel import CostModel, fit_cost_model
from dnnbench.analysis.errors import ConstraintError, UnknownMetricError
from dnnbench.core.errors import check_batch_size
from dnnbench.analysis.pareto import pareto_front
from dnnbench.analysis.tables import (QUALITY_METRICS, TASK_METRICS, Setup, bench_table, choose_setup, find_setup,
                                      model_tasks, models_table, of_task, profile_at, require_results, setups,
                                      short_name, task_title, tasks)

# metric -> (better direction, unit, how to show it): the metrics pick knows how to rank and explain.
METRICS: dict[str, tuple[str, str, str]] = {
    "top1": ("max", "fraction", "top-1"),
    "latency_median_s": ("min", "s", "latency (one batch)"),
    "latency_per_item_s": ("min", "s", "time per image"),
    "throughput_items_per_s": ("max", "items/s", "throughput"),
    "memory_total_bytes": ("min", "bytes", "memory"),
    "power_w": ("min", "W", "power"),
    "energy_per_item_j": ("min", "J", "energy per image"),
    "energy_per_item_above_idle_j": ("min", "J", "energy per image above idle"),
    "params": ("min", "", "parameters"),
    "macs_per_item": ("min", "MAC", "MACs per image"),
    "weight_bytes": ("min", "bytes", "weight size"),
    "artifact_bytes": ("min", "bytes", "artifact size"),
    "box_map": ("max", "fraction", "box mAP"),
    "box_map50": ("max", "fraction", "box mAP@.5"),
    "mask_map": ("max", "fraction", "mask mAP"),
    "kp_map": ("max", "fraction", "keypoint mAP"),
    "miou": ("max", "fraction", "mIoU"),
    "pixel_acc": ("max", "fraction", "pixel accuracy"),
    "epe": ("min", "px", "EPE"),  # optical flow: end-point error in pixels, lower is better
    # eager fp32's top-1 minus the setup's configuration's, measured on the same images (`accuracy --runtime`)
    "accuracy_drop_points": ("min", "points", "top-1 drop vs eager fp32"),
}
# Quality budgets given as a fraction or a percentage, and the task whose models publish the metric.
QUALITY_BUDGETS = {"min_top1": ("top1", None), "min_map": ("box_map", "detection"), "min_miou": ("miou", "segmentation")}
# budgets on one task's metric: giving one makes only that task's models candidates
TASK_BUDGETS = {"min_map": "detection", "min_miou": "segmentation", "max_epe": "optical_flow"}
# the CLI budgets: option -> (metric, bound, scale to SI)
BUDGETS = {
    "max_latency_ms": ("latency_median_s", "<=", 1e-3),
    "min_throughput": ("throughput_items_per_s", ">=", 1.0),
    "max_memory_mb": ("memory_total_bytes", "<=", float(2**20)),  # MiB, like every memory figure dnnbench shows
    "max_energy_mj": ("energy_per_item_j", "<=", 1e-3),
    "max_power_w": ("power_w", "<=", 1.0),
    "min_top1": ("top1", ">=", 1.0),
    "min_map": ("box_map", ">=", 1.0),  # COCO box mAP@[.5:.95]
    "min_miou": ("miou", ">=", 1.0),
    "max_epe": ("epe", "<=", 1.0),  # optical flow end-point error, pixels
    "max_artifact_mb": ("artifact_bytes", "<=", float(2**20)),  # the deployable file, MiB like --max-memory-mb
    "max_accuracy_drop": ("accuracy_drop_points", "<=", 1.0),  # points of top-1 lost vs eager fp32, same images
}
PARETO_AXES = (("top1", "max"), ("latency_per_item_s", "min"), ("memory_total_bytes", "min"), ("energy_per_item_j", "min"))
PARETO_PAIRS = ("latency_per_item_s", "memory_total_bytes", "energy_per_item_j")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # "<=" or ">="
    value: float  # SI
    given: str  # as the user wrote it, e.g. "--max-latency-ms 10"

    def ok(self, v: float) -> bool:
        return v <= self.value if self.op == "<=" else v >= self.value

    def to_dict(self) -> dict:
        return {"metric": self.metric, "op": self.op, "value": self.value, "given": self.given}


@dataclass(frozen=True)
class Value:
    value: float | None
    source: str  # measured | predicted | published | paper 2016 | static | unknown
    error: float | None = None  # predicted: held-out median |relative error|; None if unknown
    note: str = ""

    def to_dict(self) -> dict:
        d = {"value": self.value, "source": self.source}
        if self.source == "predicted":
            d["held_out_error"] = self.error
        if self.note:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class Violation:
    constraint: Constraint
    value: Value
    excess: float | None  # how far past the limit, in the metric's unit (None: value unknown)

    @property
    def excess_rel(self) -> float | None:
        if self.excess is None or self.constraint.value == 0:
            return None
        return self.excess / abs(self.constraint.value)

    def to_dict(self) -> dict:
        return {"constraint": self.constraint.given, "metric": self.constraint.metric, "limit": self.constraint.value,
                "op": self.constraint.op, "value": self.value.to_dict(), "excess": self.excess,
                "excess_relative": self.excess_rel}


@dataclass
class Candidate:
    model_ref: str
    model: str
    values: dict[str, Value] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    status: str = "ok"  # measured cell status at this batch: ok, oom, error, skipped, or "not measured"
    message: str = ""
    setup: Setup | None = None  # with --setup any: the setup this (model, setup) candidate runs on

    @property
    def key(self) -> str:
        """The model_ref, and with --setup any " @ SETUP NAME": what the Pareto set and the binding lists name."""
        return self.model_ref if self.setup is None else f"{self.model_ref} @ {self.setup.name}"

    @property
    def feasible(self) -> bool:
        return not self.violations

    def get(self, metric: str) -> float | None:
        v = self.values.get(metric)
        return v.value if v else None

    @property
    def predicted(self) -> list[str]:
        return [k for k, v in self.values.items() if v.source == "predicted"]

    def to_dict(self) -> dict:
        return {"model_ref": self.model_ref, "model": self.model, "status": self.status, "message": self.message,
                "feasible": self.feasible, "values": {k: v.to_dict() for k, v in self.values.items()},
                "violations": [v.to_dict() for v in self.violations],
                **({"setup": self.setup.to_dict(), "key": self.key} if self.setup is not None else {})}


@dataclass
class PickResult:
    batch_size: int
    objective: str
    constraints: list[Constraint]
    setup: Setup | None
    candidates: list[Candidate]
    best: Candidate | None
    pareto: list[str]  # model_refs on the front of the feasible set (all models when none is feasible)
    pareto_axes: list[str]
    binding: list[dict]  # when nothing fits: per constraint, how many models it rejects, how many alone
    closest: list[Candidate]
    cost_model: CostModel | None
    notes: list[str] = field(default_factory=list)
    task: str | None = None  # the candidates' task when restricted to one (--task, or --min-map/--min-miou)
    setups: list[Setup] = field(default_factory=list)  # with --setup any: every setup evaluated (``setup``: the best's)

    @property
    def any_setup(self) -> bool:
        return bool(self.setups)

    @property
    def feasible(self) -> list[Candidate]:
        return [c for c in self.candidates if c.feasible]

    @property
    def rejected(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.feasible]

    @property
    def exit_code(self) -> int:
        """0: a model fits; 3: no model meets every constraint (a clean answer, not an error)."""
        return 0 if self.best is not None else 3

    def to_dict(self) -> dict:
        return {"batch_size": self.batch_size, "objective": self.objective,
                "constraints": [c.to_dict() for c in self.constraints],
                "setup": self.setup.to_dict() if self.setup else None,
                "best": self.best.to_dict() if self.best else None,
                "pareto": self.pareto, "pareto_axes": self.pareto_axes,
                "feasible": [c.key for c in self.feasible],
                "rejected": [c.to_dict() for c in self.rejected],
                "candidates": [c.to_dict() for c in self.candidates],
                "binding": self.binding, "closest": [c.model_ref for c in self.closest],
                "cost_model": self.cost_model.to_dict() if self.cost_model else None,
                "notes": self.notes, "exit_code": self.exit_code, "task": self.task,
                "setup_mode": "any" if self.setups else "one", "setups": [s.to_dict() for s in self.setups]}


# ---- constraints ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """What ``pick`` is asked: the batch size the model will run at, the six budgets in the CLI's units
    (ms, images/s, MiB, mJ per image, W, top-1 fraction or percent; None = no limit), ``--where`` clauses
    (SI units), the ``objective`` ranked, and the ``device`` whose setup is used (None: the one with most cells);
    ``setup``: "any" ranks every setup's candidates (model x setup), a name or fingerprint prefix picks one.

    Built means checked: an invalid or contradictory budget raises ConstraintError here, before any store
    is read (``constraints()`` gives the checked list).
    """

    batch_size: int = 1
    max_latency_ms: float | None = None
    min_throughput: float | None = None
    max_memory_mb: float | None = None
    max_energy_mj: float | None = None
    max_power_w: float | None = None
    min_top1: float | None = None
    where: tuple[str, ...] = ()
    objective: str = "top1"
    device: str | None = None
    min_map: float | None = None  # box mAP (detection), fraction or percent
    min_miou: float | None = None  # mIoU (segmentation), fraction or percent
    task: str | None = None  # only models of this task (core.specs.TASKS); None: inferred from --min-map/--min-miou
    max_epe: float | None = None  # end-point error (optical flow), pixels
    setup: str | None = None  # "any": every setup's candidates (model x setup); a setup's name or fingerprint prefix
    max_artifact_mb: float | None = None  # the deployable file's size (artifact_bytes), MiB
    max_accuracy_drop: float | None = None  # top-1 points the setup's configuration may lose vs eager fp32

    def __post_init__(self) -> None:
        # a list stays frozen as a tuple; one clause given as a string is one clause, not its characters
        where = (self.where,) if isinstance(self.where, str) else tuple(self.where)
        object.__setattr__(self, "where", where)
        self.constraints()
        if self.task is not None and self.task not in TASK_METRICS:
            raise ConstraintError(f"--task {self.task} is not known", f"tasks are {', '.join(TASK_METRICS)}",
                                  "write e.g. --task detection")
        wanted = {t for n, t in TASK_BUDGETS.items() if getattr(self, n) is not None}
        if len(wanted) > 1 or (wanted and self.task is not None and self.task not in wanted):
            given = [_opt(n) for n in TASK_BUDGETS if getattr(self, n) is not None]
            raise ConstraintError(f"{' and '.join(given)}{f' and --task {self.task}' if self.task else ''} contradict "
                                  "each other", "box mAP is a detection metric, mIoU a segmentation one and EPE an "
                                  "optical flow one: no model has two", "keep the budget of the task you deploy")

    @property
    def chosen_task(self) -> str | None:
        """The task the candidates are restricted to: ``task``, else the one --min-map/--min-miou imply."""
        if self.task is not None:
            return self.task
        return next((t for n, t in TASK_BUDGETS.items() if getattr(self, n) is not None), None)

    @property
    def chosen_objective(self) -> str:
        """``objective``; the default (top-1) becomes the chosen task's quality metric."""
        task = self.chosen_task
        if self.objective == "top1" and task is not None:
            return TASK_METRICS[task][0]
        return self.objective

    @property
    def budgets(self) -> dict[str, float | None]:
        """The six budget options by name (BUDGETS' keys), as given."""
        return {name: getattr(self, name) for name in BUDGETS}

    def constraints(self) -> list[Constraint]:
        return build_constraints(self.batch_size, self.where, **self.budgets)

    @staticmethod
    def of(budget: "Budget | None" = None, **options) -> "Budget":
        """``budget`` (default: no limits) with ``options`` (Budget's field names) replacing its values."""
        from dnnbench.core.config import with_options

        return with_options(Budget, budget, options, "pick")


_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


def check_metric(name: str, known: set[str] | None = None, what: str = "metric") -> str:
    names = set(METRICS) | (known or set())
    if name not in names:
        shown = ", ".join(sorted(METRICS))
        also = " (or any numeric column of `dnnbench export` that holds values)" if known else ""
        raise UnknownMetricError(f"unknown {what} {name!r}", f"known metrics are {shown}{also}",
                                 "check the spelling; units are SI (seconds, bytes, joules)")
    return name


def parse_where(text: str) -> Constraint:
    """'latency_p90_s<=0.02' -> Constraint (SI units; < and > are read as <= and >=)."""
    m = _WHERE.match(text)
    if not m:
        raise ConstraintError(f"constraint {text!r} is malformed", "constraints look like METRIC<=VALUE or METRIC>=VALUE",
                              "write e.g. --where 'latency_p90_s<=0.02'")
    name, op, value = m.groups()
    try:
        v = float(value)
    except ValueError:
        raise ConstraintError(f"constraint {text!r} has no number", f"{value!r} is not a number",
                              "write e.g. --where 'latency_p90_s<=0.02'") from None
    return Constraint(name, "<=" if op.startswith("<") else ">=", v, f"--where {text.strip()}")


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_constraints(batch_size: int = 1, where: tuple[str, ...] | list[str] = (), **budgets) -> list[Constraint]:
    """The CLI budgets and --where clauses as constraints; ConstraintError when invalid or contradictory."""
    check_batch_size(batch_size, error=ConstraintError)
    out: list[Constraint] = []
    for name, value in budgets.items():
        if value is None:
            continue
        if name not in BUDGETS:
            raise TypeError(f"unknown budget {name}")
        metric, op, scale = BUDGETS[name]
        value = float(value)
        if not math.isfinite(value):
            raise ConstraintError(f"{_opt(name)} {value} is not a number", "a budget is a finite number",
                                  f"give {_opt(name)} a finite value")
        if name in QUALITY_BUDGETS:
            what = METRICS[metric][2]
            if value < 0 or value > 100:
                raise ConstraintError(f"{_opt(name)} {value:g} can never be met", f"{what} lies between 0 and 1 (0 and 100 %)",
                                      "give a fraction like 0.7 or a percentage like 70")
            si = value / 100 if value > 1 else value
            out.append(Constraint(metric, op, si, f"{_opt(name)} {value:g}"))
            continue
        if name == "max_accuracy_drop":  # 0 can be met: eager fp32 itself, or a configuration that loses nothing
            if value < 0:
                raise ConstraintError(f"{_opt(name)} {value:g} is not allowed", "it is the most top-1 a configuration "
                                      "may lose against eager fp32, in percentage points",
                                      f"give {_opt(name)} 0 or more, e.g. 1 (one point)")
            out.append(Constraint(metric, op, value, f"{_opt(name)} {value:g}"))
            continue
        if value <= 0 and name == "max_epe":
            raise ConstraintError(f"{_opt(name)} {value:g} can never be met", "EPE is a mean distance in pixels: "
                                  "above 0 for any real flow model", f"give {_opt(name)} a positive value, e.g. 2")
        if value <= 0:
            raise ConstraintError(f"{_opt(name)} {value:g} can never be met",
                                  "every model takes some time, memory and energy" if op == "<=" else
                                  "a minimum throughput must be a positive rate",
                                  f"give {_opt(name)} a positive value")
        out.append(Constraint(metric, op, value * scale, f"{_opt(name)} {value:g}"))
    out.extend(parse_where(w) for w in where)
    _check_contradictions(out, batch_size)
    return out


def _check_contradictions(cons: list[Constraint], batch_size: int) -> None:
    # Bounds on the time family in one unit (seconds per image): latency/batch, 1/throughput, per-item time.
    lo: dict[str, tuple[float, Constraint]] = {}
    hi: dict[str, tuple[float, Constraint]] = {}

    def bound(key, v, c, upper):
        table = hi if upper else lo
        if key not in table or (v < table[key][0] if upper else v > table[key][0]):
            table[key] = (v, c)

    for c in cons:
        upper = c.op == "<="
        if c.metric == "latency_median_s":
            bound("time_per_item", c.value / batch_size, c, upper)
        elif c.metric == "latency_per_item_s":
            bound("time_per_item", c.value, c, upper)
        elif c.metric == "throughput_items_per_s":
            if c.value > 0:
                bound("time_per_item", 1 / c.value, c, not upper)
            elif upper:  # throughput <= 0: no model runs at zero speed
                raise ConstraintError(f"{c.given} can never be met", "every model has a positive throughput",
                                      "drop it or give a positive bound")
        elif c.metric == "top1" and upper is False and c.value > 1:
            raise ConstraintError(f"{c.given} can never be met", "top-1 is a fraction of at most 1",
                                  "give top-1 as a fraction, e.g. top1>=0.7")
        else:
            bound(c.metric, c.value, c, upper)
    for key in set(lo) & set(hi):
        (vlo, clo), (vhi, chi) = lo[key], hi[key]
        if vlo > vhi * (1 + 1e-12):
            if key == "time_per_item":
                why = (f"at batch {batch_size} (throughput = batch / latency) one needs time per image >= {vlo:.4g} s "
                       f"and the other <= {vhi:.4g} s")
            else:
                why = f"{key} would have to be >= {vlo:g} and <= {vhi:g}"
            raise ConstraintError(f"{clo.given} and {chi.given} contradict each other", why, "relax one of them")


# ---- candidates ----------------------------------------------------------------------------------

def _measured(row: pd.Series, names) -> dict[str, Value]:
    out = {}
    for name in names:
        if name in row.index:
            try:
                v = float(row[name])
            except (TypeError, ValueError):
                continue
            if math.isfinite(v):
                out[name] = Value(v, "measured")
    return out


def _candidate(ref: str, mrow: pd.Series | None, cell: pd.Series | None, df: pd.DataFrame, cm: CostModel,
               batch_size: int, numeric: list[str]) -> Candidate:
    c = Candidate(ref, short_name(ref))
    if mrow is not None:
        if pd.notna(mrow.get("top1")):
            source = str(mrow["top1_source"])
            c.values["top1"] = Value(float(mrow["top1"]), source,
                                     note=_published_note(df, ref, "top1") if source == "published" else "")
        for name in QUALITY_METRICS:  # the task's metric (box mAP, mIoU...): measured, else published
            if name in mrow.index and pd.notna(mrow.get(name)):
                source = str(mrow.get(f"{name}_source") or "measured")
                c.values[name] = Value(float(mrow[name]), source,
                                       note=_published_note(df, ref, name) if source == "published" else "")
        for name in ("params", "macs_per_item", "weight_bytes"):
            if pd.notna(mrow.get(name)):
                c.values[name] = Value(float(mrow[name]), "static")
    if cell is not None:
        c.status = str(cell["status"])
        c.message = str(cell.get("message") or "")
        if c.status == "ok":
            for k, v in _measured(cell, numeric).items():
                c.values.setdefault(k, v)
            notes = cell.get("unavailable")
            if "artifact_bytes" not in c.values and isinstance(notes, dict) and notes.get("artifact_bytes"):
                c.values["artifact_bytes"] = Value(None, "unknown", note=str(notes["artifact_bytes"]))
            return c
    else:
        c.status = "not measured"
    # predicted from the cost model: time from MACs, memory from the static estimate, energy from MACs
    macs = c.get("macs_per_item")
    t = cm.predict_time_per_item(macs)
    if t is not None:
        c.values["latency_per_item_s"] = Value(t.value, "predicted", t.error, t.basis)
        c.values["latency_median_s"] = Value(t.value * batch_size, "predicted", t.error, t.basis)
        c.values["throughput_items_per_s"] = Value(1 / t.value, "predicted", t.error, t.basis)
    prof = profile_at(df, ref, batch_size)
    est, note = None, ""
    if prof is not None and pd.notna(prof.get("weight_bytes")) and pd.notna(prof.get("activation_peak_bytes")):
        est = float(prof["weight_bytes"]) + float(prof["activation_peak_bytes"])
    elif mrow is not None and pd.notna(mrow.get("weight_bytes")) and pd.notna(mrow.get("activation_peak_bytes_b1")):
        est = float(mrow["weight_bytes"]) + float(mrow["activation_peak_bytes_b1"]) * batch_size
        note = f"; activation peak scaled from batch 1 (no profile at batch {batch_size})"
    m = cm.predict_memory(est)
    if m is not None:
        c.values["memory_total_bytes"] = Value(m.value, "predicted", m.error, m.basis + note)
    e = cm.predict_energy(macs)
    if e is not None:
        c.values["energy_per_item_j"] = Value(e.value, "predicted", e.error, e.basis)
    p = cm.predict_power()
    if p is not None:
        c.values["power_w"] = Value(p.value, "predicted", p.error, p.basis)
    return c


def _published_note(df: pd.DataFrame, ref: str, metric: str) -> str:
    """What core.view says of ``ref``'s published ``metric`` (which weights, where from), or ""."""
    if "unavailable" not in df.columns:
        return ""
    for notes in df.loc[(df["model_ref"] == ref) & (df["status"] == "ok"), "unavailable"]:
        if isinstance(notes, dict) and notes.get(f"reported_{metric}"):
            return str(notes[f"reported_{metric}"])
    return ""


def _quality_notes(cands: list[Candidate], best: Candidate | None, metric: str) -> list[str]:
    """Say where the quality figure pick ranked on comes from when it was not measured here."""
    out = []
    v = best.values.get(metric) if best is not None else None
    label = METRICS.get(metric, (0, 0, metric))[2]
    if v is not None and v.source == "published":
        out.append(f"{label} of {best.model} is the figure {v.note or 'published with its weights, not measured'} "
                   "here; to rank on your data, measure it with `dnnbench accuracy`")
    sources = {c.values[metric].source for c in cands if metric in c.values}
    if {"measured", "published"} <= sources:
        out.append(f"{label} is measured for some candidates and published for others: "
                   + ", ".join(f"{c.model} ({c.values[metric].source})" for c in cands if metric in c.values))
    return out


def _why_unknown(metric: str, cand: Candidate, cm: CostModel, setup: Setup | None, batch_size: int) -> str:
    if metric == "top1":
        return "no accuracy known (none measured or published for these weights)"
    if metric in QUALITY_METRICS:
        return (f"no {METRICS.get(metric, (0, 0, metric))[2]} known (none measured with `dnnbench accuracy` on the "
                "task's data, nor published with these weights)")
    if setup is None:
        return "nothing was measured on any device: run `dnnbench study MODELS --quick` first"
    if cand.status not in ("ok", "not measured"):
        return f"its cell at batch {batch_size} ended with {cand.status}"
    if metric == "accuracy_drop_points":
        known = cand.values.get(metric)
        return known.note if known is not None and known.note else (
            "unavailable: no setup was measured, so there is no runtime and precision whose drop to look up")
    if metric == "artifact_bytes":  # measured by serialising the model in its bench cell; nothing predicts it
        known = cand.values.get(metric)
        if known is not None and known.note:
            return known.note
        if cand.status == "not measured":
            return (f"not measured at batch {batch_size} on this setup: the artifact size comes from a bench "
                    "cell (it is not predicted)")
        return ("unavailable: its cell records no artifact size (measured by a dnnbench before artifact_bytes); "
                "bench it again to record one")
    family = {"latency_median_s": "time", "latency_per_item_s": "time", "throughput_items_per_s": "time",
              "memory_total_bytes": "memory", "energy_per_item_j": "energy", "power_w": "power"}.get(metric)
    reason = cm.why.get(family or "", "") if family else "not measured"
    return f"not measured at batch {batch_size}, and no prediction: {reason or 'no static profile for this model'}"


def _evaluate(c: Candidate, constraints: list[Constraint], cm: CostModel, setup: Setup | None, batch_size: int) -> None:
    if c.status not in ("ok", "not measured"):
        # the cell was run and failed (e.g. out of memory): that is a measurement, and it rules the model out
        fake = Constraint("status", "==", 0, f"runs at batch {batch_size}")
        c.violations.append(Violation(fake, Value(None, "measured", note=f"{c.status}: {c.message}".rstrip(": ")), None))
        return
    for con in constraints:
        v = c.values.get(con.metric)
        if v is None or v.value is None:
            c.violations.append(Violation(con, Value(None, "unknown", note=_why_unknown(con.metric, c, cm, setup, batch_size)),
                                          None))
        elif not con.ok(v.value):
            c.violations.append(Violation(con, v, v.value - con.value if con.op == "<=" else con.value - v.value))


def _sort_key(objective: str):
    direction = METRICS.get(objective, ("max",))[0]

    def key(c: Candidate):
        v = c.get(objective)
        tput = c.get("throughput_items_per_s") or 0.0
        if v is None:
            return (1, 0.0, -tput)
        return (0, -v if direction == "max" else v, -tput)

    return key


def pick(df: pd.DataFrame, budget: Budget | None = None, *, store_where: str = "the store",
         **options) -> PickResult:
    """The most ``budget.objective``-best model meeting every constraint, from the store's frame.

    ``options``: Budget's field names (batch_size, max_latency_ms, min_throughput, max_memory_mb,
    max_energy_mj, max_power_w, min_top1, where, objective, device), replacing ``budget``'s values.
    """
    budget = Budget.of(budget, **options)
    batch_size, objective, task = budget.batch_size, budget.chosen_objective, budget.chosen_task
    constraints = budget.constraints()
    require_results(df, store_where)
    chosen = (budget.setup or "").strip()
    if chosen.casefold() == "any":
        every = [s for s in setups(df) if s.cells > 0 and (not budget.device or s.device == budget.device
                                                           or s.device.split(":")[0] == budget.device)]
        if not every:
            choose_setup(df, budget.device)  # the one-line error naming the devices that were measured
        setup = every[0] if every else None
    elif chosen:
        setup, every = find_setup(df, chosen, budget.device), []
    else:
        setup, every = choose_setup(df, budget.device), []  # over every task: the same setup whatever --task says
    notes = []
    if task is not None:
        df = _restrict(df, task, budget)
        if budget.task is None:
            notes.append(f"only {task.replace('_', ' ')} models are candidates "
                         f"({', '.join(c.given for c in constraints if c.metric == TASK_METRICS[task][0])})")
    _check_quality_known(df, constraints, task)
    models = models_table(df)
    benches = {s: bench_table(df, s, statuses=("ok", "oom", "error", "skipped")) for s in (every or [setup])}
    numeric = sorted({c for b in benches.values() for c in b.columns if c not in ("threads", "batch_size")
                      and pd.api.types.is_numeric_dtype(b[c])})
    known = set(numeric) | {c for c in models.columns if c not in ("model", "top1_source")}
    known |= {metric for metric, _, _ in BUDGETS.values()}  # a budget no cell records yet is unknown per model, with why
    check_metric(objective, None, "objective")
    for con in constraints:
        check_metric(con.metric, known, "constraint metric")
    # the values each candidate carries: the ones pick ranks and explains, and any the constraints name
    shown = [m for m in dict.fromkeys([*METRICS, *(c.metric for c in constraints)]) if m in numeric]
    cands, cms = [], {}
    for s, bench_all in benches.items():
        bench_ok = bench_all[bench_all["status"] == "ok"] if not bench_all.empty else bench_all
        cm = cms[s] = fit_cost_model(bench_ok, batch_size)
        refs = list(dict.fromkeys(list(models.index) + (list(bench_all["model_ref"]) if not bench_all.empty else [])))
        cells = {}
        if not bench_all.empty:
            for _, r in bench_all[bench_all["batch_size"] == batch_size].iterrows():
                cells[r["model_ref"]] = r
        for ref in refs:
            mrow = models.loc[ref] if ref in models.index else None
            c = _candidate(ref, mrow, cells.get(ref), df, cm, batch_size, shown)
            c.setup = s if every else None
            _config_accuracy(c, df, s)
            _evaluate(c, constraints, cm, s, batch_size)
            cands.append(c)
    cands.sort(key=_sort_key(objective))
    feasible = [c for c in cands if c.feasible]
    ranked = [c for c in feasible if c.get(objective) is not None]
    best = ranked[0] if ranked else None
    if feasible and best is None:
        notes.append(f"{len(feasible)} model(s) meet the constraints but none has a known {objective}")
    notes.extend(_quality_notes(cands, best, objective))
    pool = feasible if feasible else [c for c in cands if c.status in ("ok", "not measured")]
    quality = TASK_METRICS[task][0] if task is not None else "top1"
    pareto_axes = [((quality, TASK_METRICS[task][2]) if m == "top1" and task is not None else (m, d))
                   for m, d in PARETO_AXES]
    axes = [m for m, _ in pareto_axes if pool and all(c.get(m) is not None for c in pool)]
    front = pareto_front({c.key: {m: c.get(m) for m in axes} for c in pool},
                         maximize=[m for m, d in pareto_axes if d == "max" and m in axes],
                         minimize=[m for m, d in pareto_axes if d == "min" and m in axes]) if len(axes) >= 2 else []
    binding, closest = [], []
    if best is None and constraints:
        binding = _binding(cands, constraints)
        closest = _closest(cands)
    if every:
        setup = best.setup if best is not None else setup
        notes.append(f"--setup any: {len(cands)} candidates, each model on each of {len(every)} setups "
                     f"({'; '.join(s.name for s in every)}); values are that setup's own, or predicted by its cost model")
    return PickResult(batch_size, objective, constraints, setup, cands, best, front, axes, binding, closest, cms[setup]
                      if setup in cms else next(iter(cms.values())), notes, task, every)


def _config_accuracy(c: Candidate, df: pd.DataFrame, setup: Setup | None) -> None:
    """The candidate's top-1 under the setup's runtime and precision, and its drop against eager fp32.

    From the accuracy cell of that (model, runtime, precision, device) — the one on this machine if there is one,
    else the newest: measured beside eager fp32 on the same images (``accuracy --runtime R --precision P``); its
    top-1 replaces the eager one. Eager fp32 is the reference: its drop is 0 by definition. A configuration with
    no such cell has no drop: a ``--max-accuracy-drop`` excludes it, saying so.
    """
    if setup is None:
        return
    config = f"{setup.runtime} {setup.precision}"
    if (setup.runtime, setup.precision) == ("eager", "fp32"):
        c.values["accuracy_drop_points"] = Value(0.0, "measured", note="eager fp32 is the reference: no drop by "
                                                                      "definition")
        return
    need = {"model_ref", "metric_group", "status", "runtime", "precision", "device"}
    rows = df.iloc[0:0] if not need <= set(df.columns) else df[
        (df["model_ref"] == c.model_ref) & (df["metric_group"] == "accuracy") & (df["status"] == "ok")
        & (df["runtime"] == setup.runtime) & (df["precision"] == setup.precision)
        & (df["device"].astype(str).str.split(":").str[0] == setup.device.split(":")[0])]
    if "accuracy_drop_points" in rows.columns:
        rows = rows[rows["accuracy_drop_points"].notna()]
    else:
        rows = rows.iloc[0:0]
    if rows.empty:
        c.values["accuracy_drop_points"] = Value(None, "unknown", note=(
            f"unavailable: no accuracy of {c.model} under {config} was measured against eager fp32; run "
            f"`dnnbench study {c.model_ref} --metrics accuracy --data DIR --runtime {setup.runtime} --precision "
            f"{setup.precision}`"))
        return
    here = rows[rows["fingerprint"] == setup.fingerprint] if "fingerprint" in rows.columns else rows.iloc[0:0]
    r = (here if not here.empty else rows).iloc[-1]
    elsewhere = "" if not here.empty else " (on another machine)"
    lo, hi = r.get("top1_delta_ci_low_points"), r.get("top1_delta_ci_high_points")
    ci = f", 95 % CI of the difference {lo:+.2f} to {hi:+.2f}" if pd.notna(lo) and pd.notna(hi) else ""
    p = r.get("top1_mcnemar_p")
    c.values["accuracy_drop_points"] = Value(float(r["accuracy_drop_points"]), "measured", note=(
        f"{config} vs eager fp32 on the same {int(r['images']) if pd.notna(r.get('images')) else '?'} images"
        f"{elsewhere}{ci}" + (f", McNemar p {p:.3g}" if pd.notna(p) else "")))
    if pd.notna(r.get("top1")):
        c.values["top1"] = Value(float(r["top1"]), "measured", note=f"measured under {config}{elsewhere}")


def _restrict(df: pd.DataFrame, task: str, budget: Budget) -> pd.DataFrame:
    """The frame's rows of ``task``'s models; one line when the store has none."""
    sub = of_task(df, task)
    if sub.empty:
        have = tasks(df)
        counts = {t: sum(1 for v in model_tasks(df).values() if v == t) for t in have}
        why_from = f"--task {task}" if budget.task else ", ".join(
            _opt(n) for n in TASK_BUDGETS if getattr(budget, n) is not None)
        raise ConstraintError(f"{why_from}: the store holds no {task.replace('_', ' ')} model",
                              "it holds " + ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in counts.items()),
                              f"study {task.replace('_', ' ')} models into it first, or drop {why_from}")
    return sub


def _check_quality_known(df: pd.DataFrame, constraints: list[Constraint], task: str | None) -> None:
    """A budget on a task's quality metric (box mAP, mIoU) that no candidate has: one line, not a table of unknowns.

    (A --min-top1 nothing meets stays an answer, exit 3: top-1 is known for most classifiers.)"""
    models = models_table(df)
    for con in constraints:
        if con.metric not in QUALITY_METRICS or con.metric not in models.columns:
            continue
        if models[con.metric].notna().any():
            continue
        what = METRICS.get(con.metric, (0, 0, con.metric))[2]
        kind = task_title(task).lower() if task else "stored"
        raise ConstraintError(f"{con.given}: no {kind} model in the store has a {what}",
                              f"{len(models)} candidate(s), none with {con.metric} measured (`dnnbench accuracy`) or "
                              "published with its weights",
                              f"measure {what} into the store first (`dnnbench study MODELS --metrics accuracy "
                              "--data ...`), or drop " + con.given.split(" ")[0])


def _binding(cands: list[Candidate], constraints: list[Constraint]) -> list[dict]:
    out = []
    for con in constraints:
        breaks = [c for c in cands if any(v.constraint is con for v in c.violations)]
        alone = [c for c in breaks if all(v.constraint is con for v in c.violations)]
        out.append({"constraint": con.given, "metric": con.metric, "rejects": len(breaks),
                    "only_obstacle_for": [c.key for c in alone]})
    return sorted(out, key=lambda d: (-len(d["only_obstacle_for"]), -d["rejects"]))


def _closest(cands: list[Candidate], n: int = 3) -> list[Candidate]:
    """The models nearest to fitting: fewest unknowns, then the smallest sum of relative excesses."""
    def distance(c: Candidate):
        if c.status not in ("ok", "not measured"):
            return (2, math.inf)
        unknown = sum(1 for v in c.violations if v.excess_rel is None)
        return (1 if unknown else 0, unknown, sum(v.excess_rel or 0 for v in c.violations))

    return sorted([c for c in cands if c.violations], key=distance)[:n]
