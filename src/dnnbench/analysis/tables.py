"""Shape the store's tidy frame (``Store.frame()``: a row per cell) into the tables analysis works on.

Three views, all pandas DataFrames with SI units in column names:

- ``models_table``: one row per model — params, weight bytes, MACs per item, activation peak at batch 1,
  top-1 with its source (measured > published with the weights > the paper's 2016 figure), and the task's
  quality metric (``quality``, ``quality_metric``, ``quality_source``: box mAP, mIoU, EPE...: measured by
  accuracy cells > published with the weights, the ``reported_<metric>`` of profile cells).
- ``bench_table``: one row per ok bench cell of one *setup* (machine fingerprint, device, runtime,
  precision, threads) with derived columns: ``macs_per_item``, ``memory_total_bytes``,
  ``memory_model_bytes``, ``memory_estimate_bytes``, ``memory_tensors_bytes`` and the model's columns joined in.
- ``setups``: the setups in the store, the one with most bench cells first, each with a readable unique
  ``name`` (hardware · threads · runtime precision, or its study's ``--name``); ``find_setup`` resolves one.

Memory semantics (what the names mean, on every device):
``memory_total_bytes`` — what the run needed from the machine: peak resident set of the whole process on
CPU (interpreter and runtime included), peak bytes allocated by the CUDA caching allocator on GPU (the
CUDA context itself is not included). ``memory_model_bytes`` — what this model at this batch size added:
resident set above the baseline taken before the model was built on CPU, the CUDA peak on GPU.
``memory_estimate_bytes`` — the static estimate: weight bytes + activation peak of one forward.
``memory_tensors_bytes`` — what the tensors needed, measured at the allocator: weight bytes + the CPU
allocator's peak during one call (``cpu_activation_peak_bytes``) on CPU, the CUDA allocated peak on GPU; it
leaves out what the C allocator keeps after frees, which RSS holds (and which varies run to run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from dnnbench.analysis import paper
from dnnbench.analysis.errors import NoResultsError

SETUP_KEYS = ("fingerprint", "device", "runtime", "precision", "threads")
NON_BENCH_GROUPS = ("profile", "accuracy")

# Each task's quality metric (the column of the store's frame), how it is shown, and which way is better.
# Classification and video report top-1 (video: of a clip); the others their published metric.
TASK_METRICS: dict[str, tuple[str, str, str]] = {
    "classification": ("top1", "top-1", "max"),
    "detection": ("box_map", "box mAP", "max"),
    "instance_segmentation": ("mask_map", "mask mAP", "max"),
    "keypoint_detection": ("kp_map", "keypoint mAP", "max"),
    "segmentation": ("miou", "mIoU", "max"),
    "video": ("top1", "clip top-1", "max"),
    "optical_flow": ("epe", "EPE (px)", "min"),
}
TASK_ORDER = tuple(TASK_METRICS)
# quality metrics other than top-1 that accuracy cells may carry (and profile cells as reported_NAME)
QUALITY_METRICS = ("box_map", "box_map50", "mask_map", "kp_map", "miou", "pixel_acc", "epe")


def task_metric(task: str | None) -> tuple[str, str, str]:
    """(column, label, "max"|"min") of ``task``'s quality metric (unknown tasks: top-1)."""
    return TASK_METRICS.get(task or "classification", TASK_METRICS["classification"])


def task_title(task: str) -> str:
    return task.replace("_", " ").capitalize()


def tasks(df: pd.DataFrame) -> list[str]:
    """The tasks of the models in the frame, classification first, in ``TASK_ORDER`` (others after)."""
    found = set(model_tasks(df).values())
    return [t for t in TASK_ORDER if t in found] + sorted(found - set(TASK_ORDER))


def model_tasks(df: pd.DataFrame) -> dict[str, str]:
    """model_ref -> task: the task its records name (a non-classification task wins over the default)."""
    if df is None or df.empty:
        return {}
    if "task" not in df.columns:
        return {ref: "classification" for ref in dict.fromkeys(df["model_ref"])}
    out: dict[str, str] = {}
    for ref, task in zip(df["model_ref"], df["task"]):
        task = task if isinstance(task, str) and task else "classification"
        if out.get(ref) in (None, "classification"):
            out[ref] = task
    return out


def of_task(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """The rows of the frame whose model does ``task``."""
    if df.empty:
        return df
    t = model_tasks(df)
    return df[df["model_ref"].map(t) == task]


def short_name(ref: str) -> str:
    """Display name of a model reference: torchvision's prefix dropped, the rest kept."""
    return ref.removeprefix("torchvision:")


def _num(value) -> float | None:
    """A finite float, or None (NaN, None and missing all read as None)."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as floats, all-NaN when the store has no such metric (it was never measured)."""
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").astype(float)
    return pd.Series(float("nan"), index=df.index, dtype=float)


def has(df: pd.DataFrame, name: str) -> bool:
    return name in df.columns and col(df, name).notna().any()


@dataclass(frozen=True)
class Setup:
    """Where bench cells were measured: one machine, device, runtime, precision and thread count."""

    fingerprint: str
    device: str
    runtime: str
    precision: str
    threads: int | None
    cpu_model: str | None = None
    gpu_name: str | None = None
    date: str = ""  # day of the newest cell, ISO 8601
    cells: int = 0  # ok bench cells
    hostname: str | None = None
    device_name: str | None = None  # an imported device's name (its environment has no CPU model or threads)
    study: str | None = None  # the `study --name` label all its cells carry, if one (and no other setup's)
    name: str = ""  # readable and unique in its store (``setups`` sets it): see ``readable``

    @property
    def imported(self) -> bool:
        return self.fingerprint.startswith("imported:") or self.device_name is not None and not self.cpu_model

    @property
    def hardware(self) -> str:
        if self.imported and self.device_name:
            return self.device_name
        if self.device.startswith("cuda") and self.gpu_name:
            return self.gpu_name
        return self.cpu_model or "unknown CPU"

    @property
    def readable(self) -> str:
        """Hardware · threads · runtime precision, e.g. "AMD EPYC 7B13 · 2 threads · eager fp32" (threads on CPU only)."""
        parts = [self.hardware]
        if self.threads and not self.device.startswith("cuda") and not self.imported:
            parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        parts.append(f"{self.runtime} {self.precision}")
        return " · ".join(parts)

    @property
    def label(self) -> str:
        threads = f", {self.threads} thread{'s' if self.threads != 1 else ''}" if self.threads else ""
        return f"{self.device} ({self.hardware}{threads}), {self.runtime}, {self.precision}"

    def key(self) -> tuple:
        return (self.fingerprint, self.device, self.runtime, self.precision, self.threads)

    def to_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "device": self.device, "runtime": self.runtime,
                "precision": self.precision, "threads": self.threads, "hardware": self.hardware,
                "date": self.date, "cells": self.cells, "label": self.label, "name": self.name or self.readable,
                "readable": self.readable, "hostname": self.hostname, "study": self.study, "imported": self.imported}


def _bench_rows(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "metric_group" not in df.columns:
        return df.iloc[0:0]
    return df[~df["metric_group"].isin(NON_BENCH_GROUPS)]


def _text(value) -> str | None:
    """A non-empty string, or None (NaN and None from the frame read as None)."""
    return value if isinstance(value, str) and value else None


def _threads(value) -> int | None:
    v = _num(value)
    return None if v is None else int(v)


def setups(df: pd.DataFrame) -> list[Setup]:
    """Every setup with bench cells; most ok cells first, then eager fp32, then the newest."""
    bench = _bench_rows(df)
    if bench.empty:
        return []
    out = []
    keyed = bench.assign(_threads=bench["threads"].map(_threads) if "threads" in bench.columns else None)
    for key, g in keyed.groupby(["fingerprint", "device", "runtime", "precision"], dropna=False):
        # a cell without a thread count (GPU, imported) is -1 here: pandas holds None as NaN, which groupby drops
        for threads, gt in g.groupby(g["_threads"].map(lambda t: -1 if _threads(t) is None else int(t))):
            started = pd.to_datetime(gt["started_at"], errors="coerce", utc=True) if "started_at" in gt else None
            date = started.max().date().isoformat() if started is not None and started.notna().any() else ""
            studies = {v for v in gt["study"]} if "study" in gt.columns else {None}
            out.append(Setup(str(key[0]), str(key[1]), str(key[2]), str(key[3]), None if threads == -1 else int(threads),
                             _first_text(gt, "cpu_model"), _first_text(gt, "gpu_name"), date,
                             int((gt["status"] == "ok").sum()), _first_text(gt, "hostname"),
                             _first_text(gt, "device_name"),
                             _text(next(iter(studies))) if len(studies) == 1 else None))
    # on a tie the reference configuration (eager fp32) leads: runtime comparisons add setups of equal size
    return _named(sorted(out, key=lambda s: (s.cells, (s.runtime, s.precision) == ("eager", "fp32"), s.date),
                         reverse=True))


def _first_text(g: pd.DataFrame, column: str) -> str | None:
    if column not in g.columns:
        return None
    return next((v for v in g[column] if _text(v)), None)


def _named(found: list[Setup]) -> list[Setup]:
    """Each setup with a readable name unique in the list: its study's ``--name`` label when only its cells carry
    it, else ``readable``; two equal names are told apart by hostname, else by the fingerprint's first characters."""
    from collections import Counter
    from dataclasses import replace

    labels = Counter(s.study for s in found if s.study)
    names = [s.study if s.study and labels[s.study] == 1 else s.readable for s in found]
    counts, base = Counter(names), list(names)
    for i, s in enumerate(found):
        if counts[base[i]] > 1:
            same = [found[j] for j in range(len(found)) if base[j] == base[i]]
            if all(o.hostname for o in same) and len({o.hostname for o in same}) == len(same):
                names[i] = f"{base[i]} @ {s.hostname}"
            else:
                names[i] = f"{base[i]} #{s.fingerprint.removeprefix('imported:')[:8]}"
    counts = Counter(names)
    for i, s in enumerate(found):  # same machine and name, e.g. one study name over two thread counts
        if counts[names[i]] > 1:
            names[i] = f"{names[i]} ({s.device}, {s.threads or '-'} threads)"
    return [replace(s, study=s.study if s.study and labels[s.study] == 1 else None, name=n) for s, n in zip(found, names)]


def find_setup(df: pd.DataFrame, text: str, device: str | None = None) -> Setup:
    """The setup ``text`` names: its name or readable name (any case), else the one whose fingerprint starts with it.

    NoResultsError, listing the known names, when it names none or more than one."""
    found = setups(df)
    if device:
        found = [s for s in found if s.device == device or s.device.split(":")[0] == device]
    want = text.strip().casefold()
    hits = [s for s in found if want in (s.name.casefold(), s.readable.casefold())]
    if not hits and want:
        hits = [s for s in found if s.fingerprint.casefold().startswith(want)
                or s.fingerprint.removeprefix("imported:").casefold().startswith(want)]
    if len(hits) == 1:
        return hits[0]
    known = "; ".join(f"{s.name!r} ({s.fingerprint[:12]})" for s in found) or "none"
    on = f" on device {device!r}" if device else ""
    if hits:
        raise NoResultsError(f"--setup {text!r} names {len(hits)} setups{on}", f"it matches {', '.join(repr(s.name) for s in hits)}",
                             "give the whole name in quotes (or --setup any)")
    raise NoResultsError(f"--setup {text!r} names no setup in this store{on}", f"the known setups are {known}",
                         "give one of those names (quoted), a fingerprint prefix, or --setup any")


def choose_setup(df: pd.DataFrame, device: str | None = None) -> Setup | None:
    """The setup analysis and ``pick`` use: the one with most ok bench cells (on ``device`` if given).

    None when nothing was measured on a device (a profile-only store); NoResultsError when ``device`` is
    given and nothing was measured on it.
    """
    found = setups(df)
    if device:
        found = [s for s in found if s.device == device or s.device.split(":")[0] == device]
        if not found:
            have = sorted({s.device for s in setups(df)})
            raise NoResultsError(f"nothing was measured on device {device!r} in this store",
                                 f"it holds measurements on {', '.join(have)}" if have else "it holds no measurements",
                                 f"drop --device, or run e.g. `dnnbench study MODELS --quick --device {device}`")
    return found[0] if found else None


def _setup_mask(df: pd.DataFrame, setup: Setup) -> pd.Series:
    threads = df["threads"].map(_threads) if "threads" in df.columns else pd.Series(None, index=df.index)
    return ((df["fingerprint"] == setup.fingerprint) & (df["device"] == setup.device)
            & (df["runtime"] == setup.runtime) & (df["precision"] == setup.precision)
            & (threads.map(lambda t: _threads(t) == setup.threads)))


def models_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model: static figures (per item) and top-1 with its source. Index: model_ref."""
    cols = ["model", "params", "weight_bytes", "macs_per_item", "flops_per_item", "activation_peak_bytes_b1",
            "top1", "top1_source", "reported_top1", "reported_top5", "paper_top1", "measured_top1",
            "task", "quality", "quality_metric", "quality_source", *QUALITY_METRICS,
            *(f"{m}_source" for m in QUALITY_METRICS)]
    text = {"model", "top1_source", "task", "quality_metric", "quality_source", *(f"{m}_source" for m in QUALITY_METRICS)}
    if df.empty:
        return pd.DataFrame(columns=cols).rename_axis("model_ref")
    ok = df[df["status"] == "ok"]
    rows = {}
    task_of = model_tasks(df)
    for ref in dict.fromkeys(df["model_ref"]):
        mine = ok[ok["model_ref"] == ref]
        prof = mine[mine["metric_group"] == "profile"].sort_values("batch_size")
        bench = _bench_rows(mine).sort_values("batch_size")
        acc = mine[mine["metric_group"] == "accuracy"]
        if not acc.empty and "runtime" in acc.columns and "precision" in acc.columns:
            # the model's top-1 is its reference configuration's; int8 and other configurations have their own
            ref_acc = acc[(acc["runtime"].fillna("eager") == "eager") & (acc["precision"].fillna("fp32") == "fp32")]
            acc = ref_acc if not ref_acc.empty else acc.iloc[0:0]
        r = {"model": short_name(ref)}
        if not prof.empty:
            p = prof.iloc[0]
            b = float(p["batch_size"])
            r["params"] = _num(p.get("params"))
            r["weight_bytes"] = _num(p.get("weight_bytes"))
            macs = _num(p.get("macs"))
            r["macs_per_item"] = macs / b if macs is not None else None
            act1 = prof[prof["batch_size"] == 1]
            r["activation_peak_bytes_b1"] = _num(act1.iloc[0].get("activation_peak_bytes")) if not act1.empty else None
        elif not bench.empty:
            b0 = bench.iloc[0]
            flops = _num(b0.get("flops"))
            r["macs_per_item"] = flops / 2 / float(b0["batch_size"]) if flops is not None else None
            r["weight_bytes"] = _num(b0.get("static_weight_bytes"))
            act1 = bench[bench["batch_size"] == 1]
            r["activation_peak_bytes_b1"] = (_num(act1.iloc[0].get("static_activation_peak_bytes"))
                                             if not act1.empty else None)
        if r.get("macs_per_item") is not None:
            r["flops_per_item"] = 2 * r["macs_per_item"]
        for name in ("reported_top1", "reported_top5", "paper_top1"):
            vals = col(mine, name).dropna()
            r[name] = float(vals.iloc[0]) if not vals.empty else None
        if r.get("paper_top1") is None:
            r["paper_top1"] = paper.paper_top1(ref)
        measured = col(acc, "top1").dropna()
        r["measured_top1"] = float(measured.iloc[-1]) if not measured.empty else None
        for source, name in (("measured", "measured_top1"), ("published", "reported_top1"), ("paper 2016", "paper_top1")):
            if r.get(name) is not None:
                r["top1"], r["top1_source"] = r[name], source
                break
        for name in QUALITY_METRICS:  # measured on the task's data, else published with the weights
            measured = col(acc, name).dropna()
            reported = col(mine, f"reported_{name}").dropna()
            if not measured.empty:
                r[name], r[f"{name}_source"] = float(measured.iloc[-1]), "measured"
            elif not reported.empty:
                r[name], r[f"{name}_source"] = float(reported.iloc[0]), "published"
        r["task"] = task_of.get(ref, "classification")
        metric = task_metric(r["task"])[0]
        r["quality_metric"] = metric
        r["quality"], r["quality_source"] = r.get(metric), r.get(f"{metric}_source")
        rows[ref] = r
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols)
    for c in cols:
        if c not in text:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out.rename_axis("model_ref")


def bench_table(df: pd.DataFrame, setup: Setup | None, statuses: tuple[str, ...] = ("ok",)) -> pd.DataFrame:
    """Bench cells of ``setup`` (ok ones by default) with derived per-item and memory columns."""
    if setup is None or df.empty:
        return pd.DataFrame(columns=["model_ref", "model", "batch_size"])
    bench = _bench_rows(df)
    bench = bench[_setup_mask(bench, setup) & bench["status"].isin(statuses)].copy()
    if bench.empty:
        return bench.assign(model=pd.Series(dtype=object))
    # cells of one model at other input sizes are other rows (never silently one of them); the newest cell
    # wins when a (model, input, batch) was measured twice under different settings
    bench["input_key"] = bench["input_shape"].map(_input_key) if "input_shape" in bench.columns else ""
    bench = bench.sort_values("started_at").drop_duplicates(["model_ref", "input_key", "batch_size"], keep="last")
    bench = bench.sort_values(["model_ref", "input_key", "batch_size"]).reset_index(drop=True)
    gpu = setup.device.startswith("cuda")
    bench["macs_per_item"] = col(bench, "flops") / 2 / bench["batch_size"].astype(float)
    bench["memory_total_bytes"] = col(bench, "cuda_peak_allocated_bytes" if gpu else "peak_rss_bytes")
    bench["memory_model_bytes"] = col(bench, "cuda_peak_allocated_bytes" if gpu else "rss_above_baseline_bytes")
    bench["memory_estimate_bytes"] = col(bench, "static_weight_bytes") + col(bench, "static_activation_peak_bytes")
    bench["memory_tensors_bytes"] = (col(bench, "cuda_peak_allocated_bytes") if gpu else
                                     col(bench, "static_weight_bytes") + col(bench, "cpu_activation_peak_bytes"))
    models = models_table(df)
    for c in ("model", "params", "weight_bytes", "top1", "top1_source", "paper_top1", "reported_top1", "task",
              "quality", "quality_metric", "quality_source", *QUALITY_METRICS):
        bench[c] = bench["model_ref"].map(models[c]) if c in models.columns else None
    bench["model"] = bench["model"].fillna(bench["model_ref"].map(short_name))
    sizes = bench.groupby("model_ref")["input_key"].nunique()
    several = bench["model_ref"].map(sizes) > 1
    bench.loc[several, "model"] = bench.loc[several, "model"] + " @" + bench.loc[several, "input_key"]
    missing = bench["macs_per_item"].isna()
    if missing.any():
        bench.loc[missing, "macs_per_item"] = bench.loc[missing, "model_ref"].map(models["macs_per_item"])
    bench["gmacs_per_item"] = bench["macs_per_item"] / 1e9
    return bench


def profile_at(df: pd.DataFrame, model_ref: str, batch_size: int) -> dict | None:
    """The ok profile cell of ``model_ref`` at ``batch_size`` as a dict, or None."""
    if df.empty:
        return None
    p = df[(df["model_ref"] == model_ref) & (df["metric_group"] == "profile") & (df["status"] == "ok")
           & (df["batch_size"] == batch_size)]
    return None if p.empty else p.iloc[-1].to_dict()


def _input_key(shape) -> str:
    """Per-item input shape as text ("3x224x224"; several inputs joined by "+"), "" when unknown."""
    if not isinstance(shape, (list, tuple)) or not shape:
        return ""
    return "+".join("x".join(str(d) for d in s[1:]) for s in shape if isinstance(s, (list, tuple)))


def warnings_table(df: pd.DataFrame) -> list[dict]:
    """Every stored warning: model, batch, group, kind, message and remedy (structured in the record)."""
    from dnnbench.core.record import CellWarning

    out = []
    if df.empty or "warnings" not in df.columns:
        return out
    for _, r in df.iterrows():
        for w in r["warnings"] or []:
            w = CellWarning.from_dict(w)
            out.append({"model": short_name(r["model_ref"]), "batch_size": int(r["batch_size"]),
                        "group": r["metric_group"], "device": r["device"], "kind": w.kind, "message": w.message,
                        "remedy": w.remedy})
    return out


def require_results(df: pd.DataFrame, where: str) -> None:
    """Raise NoResultsError (with how to fill the store) when the frame is empty."""
    if df is None or df.empty:
        raise NoResultsError(f"the store at {where} holds no results", "nothing has been measured into it yet",
                             f"fill it first, e.g. `dnnbench study resnet18 mobilenet_v2 alexnet --quick --store {where}`")
