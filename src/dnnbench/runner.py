"""The study runner: every cell (model x batch size x metric group) into the results store, resumably.

A cell is identified by a digest of what it measures (model, input, group, batch size, device, threads,
runtime, precision, the group's settings) and the machine fingerprint. A cell already stored under that
identity is skipped; ``force`` re-measures. Every finished cell is committed on its own, so Ctrl-C, a
kill or a crash loses at most the cell in progress. A failing cell is stored with its status.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from dnnbench import api
from dnnbench.core.errors import DnnbenchError, InputError
from dnnbench.core.refs import parse_ref
from dnnbench.store import CellRow, open_store

METRIC_GROUPS = ("profile", "time", "memory", "power", "accuracy")
BENCH_METRICS = ("time", "memory", "power")
DEFAULT_METRICS = ("profile", "time", "memory")
QUICK = {"batch_sizes": (1, 16), "target_ci": 0.05, "max_time_per_cell": 2.0}

StudyEvent = Callable[[str, dict], None]


@dataclass(frozen=True)
class StudyPlan:
    """One cell to measure: ``group`` is "profile" or a '+'-joined set of bench metrics."""

    label: str
    ref: str
    group: str
    batch_size: int
    cell_id: str
    config: dict


@dataclass
class StudySummary:
    store: str
    fingerprint: str
    planned: int = 0
    skipped_existing: int = 0
    measured: int = 0
    failed: int = 0
    left: int = 0
    stopped: str | None = None  # why the study stopped early ("budget", "interrupted")
    unavailable: list[tuple[str, str]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


def parse_metrics(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_METRICS
    items = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in items if m not in METRIC_GROUPS]
    if bad or not items:
        raise InputError(f"unknown metric {', '.join(bad) or '(none)'}", f"metrics are {', '.join(METRIC_GROUPS)}",
                         "write e.g. --metrics profile,time,memory")
    return tuple(m for m in METRIC_GROUPS if m in items)


def parse_duration(text: str | float | None) -> float | None:
    """'30m', '2h', '90s', '1h30m' or seconds -> seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    import re

    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not parts or not any(parts.groups()):
        raise InputError(f"duration {text!r} is malformed", "durations look like 90s, 30m, 2h or 1h30m",
                         "write e.g. --budget 30m")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    total = 3600 * h + 60 * m + s
    if total <= 0:
        raise InputError(f"duration {text!r} is not positive", "a budget must allow some work", "write e.g. --budget 30m")
    return total


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def plan_cells(models: list[str], batch_sizes, metrics, device: str, threads: int, fingerprint: str,
               input_size=None, bench_config: dict | None = None, accuracy_config: dict | None = None,
               runtimes=None, precisions=None) -> tuple[list[StudyPlan], list[tuple[str, str]]]:
    """Expand models/sets into cells; unavailable set members are returned apart with their reason.

    Bench cells are planned once per (runtime, precision) that can run the model here (``api.runtime_configs``:
    ``runtimes`` None = eager, or onnxruntime for an ONNX file); the pairs that cannot are returned as
    unavailable with their reason. Runtime and precision are part of every cell's identity.
    """
    from dnnbench.core.measurements import parse_batch_sizes

    sizes = parse_batch_sizes(batch_sizes)
    entries = api.expand_models(models)
    bench_group = "+".join(m for m in BENCH_METRICS if m in metrics)
    cells, unavailable = [], []
    for e in entries:
        if e.ref is None:
            unavailable.append((e.label, e.unavailable or "unavailable"))
            continue
        # one spelling per model in the store: "resnet18" and "torchvision:resnet18" are the same cells
        e = replace(e, ref=str(parse_ref(e.ref)))
        groups = (["profile"] if "profile" in metrics else []) + ([bench_group] if bench_group else [])
        if "accuracy" in metrics:
            config = {"runtime": "eager", "precision": "fp32", "device": device, "threads": threads,
                      **(accuracy_config or {})}
            ident = {"fingerprint": fingerprint, "model": e.ref, "group": "accuracy", **config}
            cells.append(StudyPlan(e.label, e.ref, "accuracy", config["batch_size"], _digest(ident), config))
        for group in groups:
            configs = [("eager", "fp32")]
            if group != "profile":
                try:
                    configs, left = api.runtime_configs(e.ref, runtimes, precisions, device, strict=False)
                except DnnbenchError as exc:
                    configs, left = [], [("", exc.one_line())]
                unavailable.extend((f"{e.label} {label}".strip(), why) for label, why in left)
            for runtime, precision in configs:
                config = {"input_size": input_size, "runtime": runtime, "precision": precision,
                          "device": device if group != "profile" else "meta",
                          "threads": threads if group != "profile" else None}
                if group != "profile":
                    config.update(bench_config or {})
                for b in sizes:
                    ident = {"fingerprint": fingerprint, "model": e.ref, "group": group, "batch_size": b, **config}
                    cells.append(StudyPlan(e.label, e.ref, group, b, _digest(ident), config))
    return cells, unavailable


def _profile_row(plan: StudyPlan, env: dict, fingerprint: str, study_name: str | None,
                 paper_top1: dict[str, float]) -> CellRow:
    started = datetime.now(timezone.utc)
    base = dict(cell_id=plan.cell_id, fingerprint=fingerprint, environment=env, model_ref=plan.ref,
                runtime="eager", device="meta", precision="fp32", batch_size=plan.batch_size,
                metric_group="profile", config=plan.config, study=study_name, started_at=started)
    try:
        p = api.profile(plan.ref, batch_size=plan.batch_size, input_size=plan.config.get("input_size"))
    except DnnbenchError as exc:
        return CellRow(status="error", message=exc.one_line(), finished_at=datetime.now(timezone.utc), **base)
    metrics = {k: getattr(p, k) for k in ("params", "trainable_params", "weight_bytes", "buffer_bytes", "macs",
                                          "flops", "other_flops", "activation_peak_bytes", "input_bytes",
                                          "output_bytes")}
    metrics["uncounted_op_calls"] = sum(p.uncounted_ops.values())
    notes = {}
    if p.reported and p.reported.top1 is not None:
        metrics["reported_top1"] = p.reported.top1
        metrics["reported_top5"] = p.reported.top5
    else:
        notes["reported_top1"] = "unavailable: no accuracy published with these weights"
    if plan.ref in paper_top1:
        metrics["paper_top1"] = paper_top1[plan.ref]
    warnings = [f"uncounted ops: {', '.join(p.uncounted_ops)}"] if p.uncounted_ops else []
    return CellRow(status="ok", weights=p.reported.weights if p.reported else None, input_shape=p.input_shape,
                   metrics=metrics, notes=notes, warnings=warnings + list(p.notes),
                   finished_at=datetime.now(timezone.utc), **base)


def _accuracy_row(plan: StudyPlan, env: dict, fingerprint: str, study_name: str | None, device: str) -> CellRow:
    cfg = plan.config
    started = datetime.now(timezone.utc)
    base = dict(cell_id=plan.cell_id, fingerprint=fingerprint, environment=env, model_ref=plan.ref,
                runtime="eager", device=device, precision="fp32", batch_size=plan.batch_size,
                metric_group="accuracy", config=cfg, threads=cfg.get("threads"), study=study_name,
                started_at=started)
    try:
        acc = api.accuracy(plan.ref, data=cfg["data"], labels=cfg.get("labels"), weights=cfg.get("weights"),
                           limit=cfg.get("limit"), batch_size=plan.batch_size, device=device)
    except DnnbenchError as exc:
        return CellRow(status="error", message=exc.one_line(), finished_at=datetime.now(timezone.utc), **base)
    metrics = {k: getattr(acc, k) for k in ("top1", "top5", "top5_k", "top1_ci_low", "top1_ci_high", "top5_ci_low",
                                            "top5_ci_high", "images", "corrupt_images", "images_per_s", "wall_s")}
    if acc.reported and acc.reported.top1 is not None:
        metrics["reported_top1"] = acc.reported.top1
        metrics["reported_top5"] = acc.reported.top5
    return CellRow(status="ok", weights=acc.weights, metrics=metrics, warnings=list(acc.notes),
                   finished_at=datetime.now(timezone.utc), **base)


def bench_row(plan: StudyPlan, cell, env: dict, fingerprint: str, study_name: str | None,
              started: datetime) -> CellRow:
    """A bench cell (time, memory, roofline) as a store row: headline figures as metrics, raw samples kept."""
    st = cell.latency_s
    metrics: dict[str, float | None] = {}
    notes: dict[str, str] = {}

    def put(name, value, why=None):
        if value is None:
            notes[name] = why or "unavailable"
        else:
            metrics[name] = float(value)

    if cell.status == "ok" and st is not None:
        for name in ("median_s", "mean_s", "min_s", "max_s", "p90_s", "p99_s", "ci_low_s", "ci_high_s", "cv"):
            put(f"latency_{name}", getattr(st, name), st.unavailable.get(name))
        put("latency_samples", st.n)
        put("latency_per_item_s", cell.latency_per_item_s)
        put("throughput_items_per_s", cell.throughput_items_per_s)
        put("cold_start_s", cell.cold_start_s)
        mem_why = (cell.memory.unavailable if cell.memory else {}) or {}
        for name in ("peak_rss_bytes", "rss_above_baseline_bytes", "cuda_peak_allocated_bytes",
                     "cuda_peak_reserved_bytes", "cpu_activation_peak_bytes"):
            put(name, getattr(cell, name), mem_why.get(name))
        if cell.static:
            put("static_activation_peak_bytes", cell.static.activation_peak_bytes)
            put("static_weight_bytes", cell.static.weight_bytes)
            put("flops", cell.static.flops)
        if cell.roofline:
            put("achieved_flops_per_s", cell.roofline.achieved_flops_per_s,
                cell.roofline.unavailable.get("achieved_flops_per_s"))
            put("fraction_of_peak", cell.roofline.fraction_of_peak, cell.roofline.unavailable.get("fraction_of_peak"))
    info = getattr(cell, "runtime_info", None)
    if cell.status == "ok" and info is not None:
        put("prepare_s", info.prepare_s)
        if info.prepare_peak_rss_bytes is not None:
            put("prepare_peak_rss_bytes", info.prepare_peak_rss_bytes)
        eq = info.equivalence
        if eq is not None:  # every configuration but the reference (eager fp32) has one
            put("equivalence_max_abs_diff", eq.max_abs_diff, eq.unavailable.get("max_abs_diff"))
            put("equivalence_mean_abs_diff", eq.mean_abs_diff, eq.unavailable.get("mean_abs_diff"))
            put("equivalence_top1_agreement", eq.top1_agreement, eq.unavailable.get("top1_agreement"))
            put("equivalence_rows", eq.rows)
            put("equivalence_reference_max_abs", eq.reference_max_abs)  # the scale the differences compare with
            # what was compared with (a value may carry a note too): eager fp32, or an ONNX file's fp32 session
            notes.setdefault("equivalence_max_abs_diff", f"against {eq.reference} on the same input")
        if info.notes:  # how the runtime prepared the model (exporter, quantization scope, compile graphs)
            notes.setdefault("prepare_s", "; ".join(info.notes))
    if "power" in plan.config.get("metrics", []):
        e = cell.power
        if e is None:
            for name in ("power_w", "idle_power_w", "energy_per_item_j", "energy_per_item_above_idle_j"):
                notes[name] = f"unavailable: the cell ended with status {cell.status} before the power step"
        else:
            for name in ("power_w", "idle_power_w", "energy_per_item_j", "energy_per_item_above_idle_j"):
                value = getattr(e, name)
                put(name, value, e.unavailable.get(name) or e.reason)
            put("power_window_s", e.window_s, e.unavailable.get("window_s") or e.reason)
            # time per item inside the power window (energy per item = power_w x this), apart from latency
            put("power_time_per_item_s", e.time_per_item_s, e.unavailable.get("time_per_item_s") or e.reason)
            # which sensor and domains the figures cover (stored as the note of power_sensor)
            notes["power_sensor"] = f"{e.sensor} ({e.status}): {', '.join(e.domains) or e.scope}"
    samples = {}
    if cell.timing:
        samples["latency_s"] = list(cell.timing.samples_s)
        samples["warmup_s"] = list(cell.timing.warmup_s)
        if cell.timing.process_samples:  # latency_s came from these worker processes in turn, this many each
            samples["latency_process_samples"] = [float(n) for n in cell.timing.process_samples]
            samples["process_cold_start_s"] = list(cell.timing.process_cold_starts_s)
    input_shape = plan.config.get("input_shape")
    return CellRow(
        cell_id=plan.cell_id, fingerprint=fingerprint, environment=env, model_ref=plan.ref,
        runtime=plan.config.get("runtime", "eager"), device=plan.config["device"],
        precision=plan.config.get("precision", "fp32"), batch_size=plan.batch_size, metric_group=plan.group,
        status=cell.status, message=cell.message or None, config=plan.config, threads=plan.config.get("threads"),
        input_shape=input_shape, warnings=[str(w) for w in cell.warnings], metrics=metrics, notes=notes,
        samples=samples, started_at=started, finished_at=datetime.now(timezone.utc), study=study_name,
    )


def study(models, batch_sizes=None, metrics=None, device: str = "cpu", store: str | None = None,
          budget=None, force: bool = False, quick: bool = False, threads: int | None = None,
          target_ci: float | None = None, max_time_per_cell: float | None = None, input_size=None,
          name: str | None = None, on_event: StudyEvent | None = None, in_process: bool = False,
          data: str | None = None, labels: str | None = None, weights: str = "DEFAULT",
          accuracy_limit: int | None = None, accuracy_batch_size: int = 64, sensors: str = "auto",
          estimate_power_w: float | None = None, runtimes=None, precisions=None) -> StudySummary:
    """Run every missing cell of the study and store it; return what was done and what is left.

    ``quick``: batch sizes 1,16, target CI 5 %, 2 s per cell (explicit arguments win).
    ``budget``: seconds or '30m'; the study stops between cells once it is spent.
    ``data``/``labels``/``weights``/``accuracy_limit``: for the accuracy group (one cell per model).
    ``runtimes``/``precisions``: names, comma lists or "all" (default eager — onnxruntime for ONNX files — at
    fp32); bench cells are measured once per pair that can run here, the others are listed as unavailable.
    A runtime named explicitly that cannot run here is a one-line error before anything is measured.
    Cells stored with status "error" are measured again; ok, oom and skipped cells are final.
    """
    from dnnbench.host import environment

    if isinstance(models, str):
        models = [models]
    if not models:
        raise InputError("no models given", "a study needs models or a set", "write e.g. dnnbench study paper")
    metrics = parse_metrics(metrics)
    accuracy_config = None
    if "accuracy" in metrics:
        if not data:
            raise InputError("--metrics accuracy needs --data DIR", "measured accuracy needs a validation set "
                             "(reported accuracy is stored with profile cells anyway)",
                             "add --data path/to/imagenet/val, or leave accuracy out of --metrics")
        import os

        accuracy_config = {"data": os.path.abspath(data), "labels": os.path.abspath(labels) if labels else None,
                           "weights": weights, "limit": accuracy_limit, "batch_size": accuracy_batch_size}
    elif data:
        raise InputError("--data is given but accuracy is not in --metrics", "only accuracy cells read images",
                         "add accuracy to --metrics, e.g. --metrics profile,accuracy")
    budget_s = parse_duration(budget)
    preset = QUICK if quick else {}
    batch_sizes = batch_sizes or preset.get("batch_sizes") or api.DEFAULT_BATCH_SIZES
    target_ci = target_ci if target_ci is not None else preset.get("target_ci", 0.02)
    max_time_per_cell = max_time_per_cell if max_time_per_cell is not None else preset.get("max_time_per_cell", 10.0)
    if any(m in BENCH_METRICS for m in metrics):
        device = api.check_device(device)
    threads = threads or environment.default_threads()
    emit = on_event or (lambda kind, data: None)
    t0 = time.perf_counter()

    env = environment.capture(device)
    env_dict = env.to_dict()
    bench_config = {"target_ci": target_ci, "max_time_per_cell": max_time_per_cell,
                    "metrics": [m for m in metrics if m in BENCH_METRICS]}
    if "power" in metrics:
        bench_config["sensors"] = api.check_sensors(sensors, estimate_power_w)
        bench_config["estimate_power_w"] = estimate_power_w
    if any(m in BENCH_METRICS for m in metrics):
        _check_runtimes(runtimes, precisions, device)
    cells, unavailable = plan_cells(list(models), batch_sizes, metrics, device, threads, env.fingerprint,
                                    input_size, bench_config, accuracy_config, runtimes, precisions)
    from dnnbench.sources.sets import paper_reference

    paper_top1 = {r["modern_ref"]: float(r["paper_top1_percent"]) / 100 for r in paper_reference() if r["modern_ref"]}
    with open_store(store) as st:
        summary = StudySummary(st.where, env.fingerprint, planned=len(cells), unavailable=unavailable)
        emit("open", {"store": st.where, "cells": len(cells), "unavailable": unavailable})
        if force:
            st.delete_cells(c.cell_id for c in cells)
        done = st.statuses(c.cell_id for c in cells)
        # a cell that ended in "error" may have a fixable cause (weights not cached, a bug since fixed):
        # it is measured again; ok, oom and skipped cells are final for this configuration and machine
        retry = [cid for cid, status in done.items() if status == "error"]
        if retry:
            st.delete_cells(retry)
            done = {cid: status for cid, status in done.items() if status != "error"}
        todo = [c for c in cells if c.cell_id not in done]
        summary.skipped_existing = len(cells) - len(todo)
        emit("plan", {"todo": len(todo), "skipped": summary.skipped_existing})
        try:
            _run(todo, st, summary, env_dict, env.fingerprint, name, paper_top1, budget_s, t0, device, threads,
                 target_ci, max_time_per_cell, input_size, in_process, emit)
        except KeyboardInterrupt:
            summary.stopped = "interrupted"
        summary.left = summary.planned - summary.skipped_existing - summary.measured
    summary.wall_s = time.perf_counter() - t0
    emit("end", {"summary": summary})
    return summary


def _check_runtimes(runtimes, precisions, device: str) -> None:
    """One-line errors for runtimes or precisions named explicitly (not "all") that cannot run here at all."""
    from dnnbench.core.measurements import PRECISIONS, RUNTIMES, parse_choices
    from dnnbench import runtimes as rts

    parse_choices(precisions or "fp32", PRECISIONS, "--precision")
    if runtimes is None:  # the default runtime per model (eager, or onnxruntime for ONNX files)
        return
    names = parse_choices(runtimes, RUNTIMES, "--runtime")
    if "all" in [w.strip() for w in (runtimes.split(",") if isinstance(runtimes, str) else runtimes)]:
        return
    for n in names:
        avail = rts.availability(n, device)
        if not avail.ok:
            raise avail.error()


def _run(todo, st, summary, env_dict, fingerprint, name, paper_top1, budget_s, t0, device, threads,
         target_ci, max_time_per_cell, input_size, in_process, emit) -> None:
    # bench cells of one model, group, runtime and precision run in one api.bench call (an OOM skips the
    # larger batches)
    groups: dict[tuple[str, str, str, str], list[StudyPlan]] = {}
    for c in todo:
        groups.setdefault((c.ref, c.group, c.config.get("runtime", "eager"), c.config.get("precision", "fp32")),
                          []).append(c)
    for (ref, group, runtime, precision), plans in groups.items():
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            summary.stopped = "budget"
            return
        if group == "accuracy":
            for plan in plans:
                emit("start", {"plan": plan})
                _store(st, summary, _accuracy_row(plan, env_dict, fingerprint, name, device), emit, plan)
            continue
        if group == "profile":
            for plan in plans:
                if budget_s is not None and time.perf_counter() - t0 > budget_s:
                    summary.stopped = "budget"
                    return
                emit("start", {"plan": plan})
                _store(st, summary, _profile_row(plan, env_dict, fingerprint, name, paper_top1), emit, plan)
            continue
        by_batch = {p.batch_size: p for p in plans}
        started = {"t": datetime.now(timezone.utc)}

        def on_bench(kind, spec, payload, by_batch=by_batch, started=started):
            plan = by_batch.get(spec.batch_size)
            if plan is None:
                return
            if kind == "start":
                started["t"] = datetime.now(timezone.utc)
                emit("start", {"plan": plan})
            elif kind == "progress":
                emit("progress", {"plan": plan, "payload": payload})
            elif kind == "done":
                _store(st, summary, bench_row(plan, payload, env_dict, fingerprint, name, started["t"]), emit, plan)

        try:
            cfg = plans[0].config
            api.bench(ref, batch_sizes=sorted(by_batch), device=device, threads=threads, target_ci=target_ci,
                      max_time_per_cell=max_time_per_cell, in_process=in_process, input_size=input_size,
                      on_event=on_bench, sensors=cfg.get("sensors", "none"),
                      estimate_power_w=cfg.get("estimate_power_w"), runtime=runtime, precision=precision)
        except DnnbenchError as exc:
            # the model could not be prepared at all (e.g. unknown reference): every cell of it fails
            now = datetime.now(timezone.utc)
            for plan in plans:
                if st.statuses([plan.cell_id]):
                    continue
                row = CellRow(cell_id=plan.cell_id, fingerprint=fingerprint, environment=env_dict, model_ref=ref,
                              runtime=plan.config.get("runtime", "eager"), device=device,
                              precision=plan.config.get("precision", "fp32"), batch_size=plan.batch_size,
                              metric_group=group, status="error", message=exc.one_line(), config=plan.config,
                              threads=threads, started_at=now, finished_at=now, study=name)
                _store(st, summary, row, emit, plan)


def _store(st, summary: StudySummary, row: CellRow, emit, plan: StudyPlan) -> None:
    stored = st.put(row)
    if stored:
        summary.measured += 1
        summary.statuses[row.status] = summary.statuses.get(row.status, 0) + 1
        if row.status != "ok":
            summary.failed += 1
    emit("done", {"plan": plan, "row": row, "stored": stored})


def load_results(store: str | None = None):
    """The store as one tidy pandas DataFrame: a row per cell, a column per metric (units in the names)."""
    with open_store(store) as st:
        return st.frame()
