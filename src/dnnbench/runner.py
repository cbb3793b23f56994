"""The study runner: every cell (model x batch size x metric group) into the results store, resumably.

A cell is identified by the digest of its whole spec (``CellRecord.cell_id``: for bench cells the full
``CellSpec`` — model, batch, device, threads, timing settings and processes, isolation, sensors, runtime,
precision, input shape — and the machine fingerprint). A cell already stored is skipped; ``force``
re-measures it, replacing the stored one only when the new one is stored (one transaction), so an
interruption never loses a cell. A cell being measured by another study is claimed (a lease in the store)
and skipped here. Every finished cell is committed on its own: Ctrl-C, a kill or a crash loses at most the
cell in progress. A record that cannot be written is saved as JSON beside the store, and the user is told.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from dnnbench import api
from dnnbench.core.errors import DnnbenchError, InputError
from dnnbench.core.refs import parse_ref
from dnnbench.core.record import CellRecord, CellWarning, digest, now_iso
from dnnbench.store import open_store

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
    claimed_elsewhere: int = 0  # cells another study was measuring: skipped here
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


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study measures besides its models (see ``study``)."""

    batch_sizes: object = None
    metrics: object = None
    device: str = "cpu"
    budget: object = None
    force: bool = False
    quick: bool = False
    threads: int | None = None
    target_ci: float | None = None
    max_time_per_cell: float | None = None
    input_size: object = None
    name: str | None = None
    in_process: bool = False
    data: str | None = None
    labels: str | None = None
    annotations: str | None = None  # detection: a COCO JSON; segmentation: the mask folder
    weights: str = "DEFAULT"
    accuracy_limit: int | None = None
    accuracy_batch_size: int = 64
    sensors: str = "auto"
    estimate_power_w: float | None = None
    runtimes: object = None
    precisions: object = None
    processes: int | None = None
    form: str = "train"  # "deploy": BatchNorm folded, re-param blocks fused (profile and bench cells)
    calibration: str | None = None  # static int8: a folder of calibration images (None: generated batches)
    calibration_count: int | None = None  # static int8: how many calibration images (None: the default)


def plan_cells(models, cfg: StudyConfig, metrics, threads: int, fingerprint: str,
               accuracy_config: dict | None = None, env=None) -> tuple[list[StudyPlan], list[tuple[str, str]]]:
    """Expand models/sets into cells with their full specs; unavailable set members are returned with why.

    Bench cells are planned once per (runtime, precision) that can run the model here (``api.runtime_configs``);
    the pairs that cannot are returned as unavailable with their reason. Each bench cell's spec is the very
    ``CellSpec`` ``api.bench`` measures (``api.plan_bench``), so its identity is what was measured. ``env``: this
    machine's Environment, captured once for the whole plan (None: each bench plan captures it).
    """
    from dnnbench.core.measurements import BenchConfig, parse_batch_sizes

    sizes = parse_batch_sizes(cfg.batch_sizes)
    entries = api.expand_models(models)
    bench_group = "+".join(m for m in BENCH_METRICS if m in metrics)
    cells, unavailable = [], []
    for e in entries:
        if e.ref is None:
            unavailable.append((e.label, e.unavailable or "unavailable"))
            continue
        ref = str(parse_ref(e.ref))  # one spelling per model in the store: "resnet18" = "torchvision:resnet18"
        if "accuracy" in metrics:
            spec = {"kind": "accuracy", "model": ref, "device": cfg.device, "threads": threads, "machine": fingerprint,
                    "runtime": "eager", "precision": "fp32", **(accuracy_config or {})}
            cells.append(StudyPlan(e.label, ref, "accuracy", spec["batch_size"], digest(spec), spec))
            cells.extend(_accuracy_config_cells(e.label, ref, spec, cfg, unavailable))
        if "profile" in metrics:
            for b in sizes:
                spec = {"kind": "profile", "model": ref, "batch_size": b, "input_size": cfg.input_size,
                        "device": "meta", "runtime": "eager", "precision": "fp32", "machine": fingerprint}
                if cfg.form != "train":  # train cells keep the identity they always had
                    spec["form"] = cfg.form
                cells.append(StudyPlan(e.label, ref, "profile", b, digest(spec), spec))
        if not bench_group:
            continue
        try:
            configs, left = api.runtime_configs(ref, cfg.runtimes, cfg.precisions, cfg.device, strict=False)
        except DnnbenchError as exc:
            configs, left = [], [("", exc.one_line())]
        unavailable.extend((f"{e.label} {label}".strip(), why) for label, why in left)
        for runtime, precision in configs:
            bcfg = BenchConfig(batch_sizes=sizes, device=cfg.device, threads=threads, target_ci=cfg.target_ci,
                               max_time_per_cell=cfg.max_time_per_cell, in_process=cfg.in_process,
                               input_size=cfg.input_size, sensors=cfg.sensors if "power" in metrics else "none",
                               estimate_power_w=cfg.estimate_power_w if "power" in metrics else None,
                               runtime=runtime, precision=precision, processes=cfg.processes, form=cfg.form,
                               **(dict(calibration=cfg.calibration, calibration_count=cfg.calibration_count)
                                  if precision == "int8" else {}))
            try:
                bplan = api.plan_bench(ref, bcfg, env)
            except DnnbenchError as exc:
                unavailable.append((f"{e.label} {runtime} {precision}", exc.one_line()))
                continue
            for spec in bplan.specs:
                conf = {"runtime": runtime, "precision": precision, "bench_config": bcfg, "bench_plan": bplan,
                        "spec": spec}
                cells.append(StudyPlan(e.label, ref, bench_group, spec.batch_size, spec.cell_id, conf))
    return cells, unavailable


def _profile_record(plan: StudyPlan, env: dict, paper_top1: dict[str, float]) -> CellRecord:
    started = now_iso()
    try:
        lm = api.load_model(plan.ref, device="meta")
        p = api.profile(lm, batch_size=plan.batch_size, input_size=plan.config.get("input_size"),
                        form=plan.config.get("form", "train"))
    except DnnbenchError as exc:
        return CellRecord("profile", plan.config, "error", exc.one_line(), env, started_at=started)
    result = p.to_dict(layers=False)
    result.setdefault("task", getattr(lm, "task", None) or "classification")  # the store's task column
    if plan.ref in paper_top1:
        result["paper_top1"] = paper_top1[plan.ref]
    warnings = [CellWarning("uncounted", f"uncounted ops: {', '.join(p.uncounted_ops)}",
                            "the op has no formula: its MACs are not in the total; report it")] if p.uncounted_ops else []
    warnings += [CellWarning("profile", n) for n in p.notes]
    return CellRecord("profile", plan.config, "ok", "", env, result=result, warnings=tuple(warnings),
                      started_at=started)


def _accuracy_config_cells(label: str, ref: str, reference_spec: dict, cfg: StudyConfig,
                           unavailable: list) -> list[StudyPlan]:
    """With --runtime/--precision: one accuracy cell per other (runtime, precision) the model can run here.

    Its spec is eager fp32's with the runtime and precision (and static int8's calibration folder) in place, so the
    eager fp32 cell keeps its identity; each is evaluated beside eager fp32 on the same images (``_accuracy_record``).
    """
    if cfg.runtimes is None and cfg.precisions is None:
        return []
    try:
        configs, left = api.runtime_configs(ref, cfg.runtimes, cfg.precisions, cfg.device, strict=False)
    except DnnbenchError as exc:
        unavailable.append((f"{label} accuracy", exc.one_line()))
        return []
    unavailable.extend((f"{label} accuracy {what}", why) for what, why in left)
    out = []
    for runtime, precision in configs:
        if (runtime, precision) == ("eager", "fp32"):
            continue
        spec = {**reference_spec, "runtime": runtime, "precision": precision}
        calibration = getattr(cfg, "calibration", None)
        if precision == "int8" and calibration:
            spec["calibration"] = os.path.abspath(calibration)
            spec["calibration_count"] = getattr(cfg, "calibration_count", 0) or 0
        out.append(StudyPlan(label, ref, "accuracy", spec["batch_size"], digest(spec), spec))
    return out


def _accuracy_record(plan: StudyPlan, env: dict) -> CellRecord:
    cfg = plan.config
    started = now_iso()
    kw = dict(labels=cfg.get("labels"), weights=cfg.get("weights"), limit=cfg.get("limit"),
              batch_size=plan.batch_size, device=cfg["device"])
    try:
        if (cfg.get("runtime", "eager"), cfg.get("precision", "fp32")) != ("eager", "fp32"):
            # evaluated beside eager fp32 on the same images: the record keeps the paired comparison
            results = api.accuracy_configs(plan.ref, cfg["data"], cfg["runtime"], cfg["precision"],
                                           calibration=cfg.get("calibration"),
                                           calibration_count=cfg.get("calibration_count", 0), **kw)
            acc = next(r for r in results[1:] if (r.runtime, r.precision) == (cfg["runtime"], cfg["precision"]))
            if not hasattr(acc, "top1"):  # ConfigUnavailable: why, as the cell's message
                return CellRecord("accuracy", cfg, "error", acc.reason, env, started_at=started)
        else:
            acc = api.accuracy(plan.ref, data=cfg["data"], annotations=cfg.get("annotations"), **kw)
    except DnnbenchError as exc:
        return CellRecord("accuracy", cfg, "error", exc.one_line(), env, started_at=started)
    result = acc.to_dict()
    result.pop("per_class", None)
    return CellRecord("accuracy", cfg, "ok", "", env, result=result,
                      warnings=tuple(CellWarning("accuracy", n) for n in acc.notes), started_at=started)


@dataclass(frozen=True)
class CellDone:
    """What the "done" event reports of one cell."""

    record: CellRecord
    stored: bool
    group: str

    @property
    def model_ref(self) -> str:
        return self.record.model

    @property
    def batch_size(self) -> int:
        return self.record.batch_size

    @property
    def metric_group(self) -> str:
        return self.group

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def message(self) -> str:
        return self.record.message


def study(models, config: StudyConfig | None = None, *, store: str | None = None,
          on_event: StudyEvent | None = None, only=None, owner: str | None = None, **options) -> StudySummary:
    """Run every missing cell of the study and store it; return what was done and what is left.

    ``config``: a ``StudyConfig`` (or its fields as keyword ``options``). ``quick``: batch sizes 1,16, target
    CI 5 %, 2 s per cell (explicit settings win). ``budget``: seconds or '30m'; checked before every cell.
    ``data``/``labels``/``weights``/``accuracy_limit``: for the accuracy group (one cell per model).
    ``runtimes``/``precisions``: names, comma lists or "all" (default eager — onnxruntime for ONNX files — at
    fp32). A runtime named explicitly that cannot run here is a one-line error before anything is measured.
    Cells stored with status "error" are measured again; ok, oom and skipped cells are final.
    ``only``: measure only the planned cells with these ids (a fleet node measures one cell; an empty set plans
    and measures nothing: the "open" event's ``plans`` lists the cells). ``owner``: the claims' owner (a fleet
    study's tasks share one, so a retried task takes over its own claim); default: a new one per call.
    """
    import os
    import uuid

    from dnnbench.host import environment

    from dnnbench.core.config import with_options

    cfg = with_options(StudyConfig, config, options, "study")
    if isinstance(models, str):
        models = [models]
    if not models:
        raise InputError("no models given", "a study needs models or a set", "write e.g. dnnbench study paper")
    metrics = parse_metrics(cfg.metrics)
    accuracy_config = None
    if "accuracy" in metrics:
        if not cfg.data:
            raise InputError("--metrics accuracy needs --data DIR", "measured accuracy needs a validation set "
                             "(reported accuracy is stored with profile cells anyway)",
                             "add --data path/to/imagenet/val, or leave accuracy out of --metrics")
        accuracy_config = {"data": os.path.abspath(cfg.data), "labels": os.path.abspath(cfg.labels) if cfg.labels
                           else None, "weights": cfg.weights, "limit": cfg.accuracy_limit,
                           "batch_size": cfg.accuracy_batch_size}
        if cfg.annotations:  # only when given: the cell ids of classification studies stay as they were
            accuracy_config["annotations"] = os.path.abspath(cfg.annotations)
    elif cfg.data:
        raise InputError("--data is given but accuracy is not in --metrics", "only accuracy cells read images",
                         "add accuracy to --metrics, e.g. --metrics profile,accuracy")
    budget_s = parse_duration(cfg.budget)
    preset = QUICK if cfg.quick else {}
    cfg = replace(cfg, batch_sizes=cfg.batch_sizes or preset.get("batch_sizes") or api.DEFAULT_BATCH_SIZES,
                  target_ci=cfg.target_ci if cfg.target_ci is not None else preset.get("target_ci", 0.02),
                  max_time_per_cell=cfg.max_time_per_cell if cfg.max_time_per_cell is not None
                  else preset.get("max_time_per_cell", 10.0))
    # user mistakes (unknown model, bad --input-size or bench option) are one-line errors, never stored cells
    api.check_study_inputs(models, cfg.input_size, cfg.target_ci, cfg.max_time_per_cell, cfg.threads)
    bench_wanted = any(m in BENCH_METRICS for m in metrics)
    if bench_wanted:
        cfg = replace(cfg, device=api.check_device(cfg.device))
        if "power" in metrics:
            api.check_sensors(cfg.sensors, cfg.estimate_power_w)
        _check_runtimes(cfg.runtimes, cfg.precisions, cfg.device)
    if cfg.calibration is not None or cfg.calibration_count is not None:
        # a calibration folder is checked once here, not found missing by every int8 cell
        folder, count = api.check_calibration(cfg.calibration, cfg.calibration_count, cfg.precisions or "fp32")
        if not bench_wanted:
            raise InputError("--calibration/--calibration-count is given but no bench metric is in --metrics",
                             "only int8 bench cells (time, memory, power) calibrate",
                             "add time to --metrics, or leave the calibration options out")
        cfg = replace(cfg, calibration=folder, calibration_count=count)
    threads = cfg.threads or environment.default_threads()
    emit = on_event or (lambda kind, data: None)
    t0 = time.perf_counter()
    env = environment.capture(cfg.device)
    from dnnbench.sources.sets import paper_reference

    paper_top1 = {r["modern_ref"]: float(r["paper_top1_percent"]) / 100 for r in paper_reference() if r["modern_ref"]}
    with open_store(store) as st:
        check_writable(st)  # before anything is measured: a read-only store would lose the measurements
        cells, unavailable = plan_cells(list(models), cfg, metrics, threads, env.fingerprint, accuracy_config, env)
        summary = StudySummary(st.where, env.fingerprint, planned=len(cells), unavailable=unavailable)
        emit("open", {"store": st.where, "cells": len(cells), "unavailable": unavailable, "plans": cells})
        done = st.statuses(c.cell_id for c in cells)
        # --force re-measures stored cells; an "error" cell may have a fixable cause (weights not cached, a bug
        # since fixed): both are measured again and replace the stored cell only once the new one is stored
        todo = [c for c in cells if cfg.force or done.get(c.cell_id) in (None, "error")]
        summary.skipped_existing = len(cells) - len(todo)
        if only is not None:  # the others are left to whoever asked for these
            todo = [c for c in todo if c.cell_id in only]
        emit("plan", {"todo": len(todo), "skipped": summary.skipped_existing})
        runner = _Runner(st, summary, env.to_dict(), cfg, paper_top1, budget_s, t0, emit, owner or uuid.uuid4().hex)
        runner.start_heartbeat()
        try:
            runner.run(todo)
        except KeyboardInterrupt:
            summary.stopped = "interrupted"
        finally:
            runner.release_all()
        summary.left = summary.planned - summary.skipped_existing - summary.measured - summary.claimed_elsewhere
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



CLAIM_SLACK_S = 600.0  # a claim outlives its cell's time cap by this much (build, export, cold start)
HEARTBEAT_S = 60.0  # claims are renewed this often while the study runs, however long one cell takes


class _Runner:
    """Measures planned cells group by group, claiming them, storing each as it finishes."""

    def __init__(self, st, summary: StudySummary, env: dict, cfg: StudyConfig, paper_top1, budget_s, t0, emit,
                 owner: str):
        self.st, self.summary, self.env, self.cfg = st, summary, env, cfg
        self.paper_top1, self.budget_s, self.t0, self.emit, self.owner = paper_top1, budget_s, t0, emit, owner
        self.claimed: set[str] = set()
        self._beat: threading.Event | None = None

    def start_heartbeat(self, every_s: float = HEARTBEAT_S) -> None:
        """Renew this study's claims every ``every_s`` in a background thread, so a long cell keeps its lease."""
        stop = self._beat = threading.Event()

        def beat():
            while not stop.wait(every_s):
                try:
                    self.st.renew(self.owner, self.ttl())
                except Exception:  # the store is busy or gone: the next beat tries again, the lease expires if not
                    pass

        threading.Thread(target=beat, name="dnnbench-claims", daemon=True).start()

    def over_budget(self) -> bool:
        if self.budget_s is not None and time.perf_counter() - self.t0 > self.budget_s:
            self.summary.stopped = "budget"
            return True
        return False

    def ttl(self) -> float:
        return 4 * float(self.cfg.max_time_per_cell or 10.0) + CLAIM_SLACK_S

    def claim(self, plans: list[StudyPlan]) -> list[StudyPlan]:
        """The plans this study may measure now; those another study is measuring are skipped and said."""
        held = self.st.claim([p.cell_id for p in plans], self.owner, self.ttl())
        mine = [p for p in plans if p.cell_id not in held]
        if not self.cfg.force:  # stored by another study since this one planned: done, not measured twice
            now = self.st.statuses(p.cell_id for p in mine)
            done = {cid for cid, status in now.items() if status != "error"}
            if done:
                self.st.release(done, self.owner)
                self.summary.skipped_existing += len(done)
                for p in mine:
                    if p.cell_id in done:
                        self.emit("claimed", {"plan": p, "holder": "another study, which has stored it"})
                mine = [p for p in mine if p.cell_id not in done]
        self.claimed.update(p.cell_id for p in mine)
        for p in plans:
            if p.cell_id in held:
                self.summary.claimed_elsewhere += 1
                self.emit("claimed", {"plan": p, "holder": held[p.cell_id]})
        return mine

    def release_all(self) -> None:
        if self._beat is not None:
            self._beat.set()
        try:
            self.st.release(self.claimed, self.owner)
        except Exception:  # the store is gone (killed server): the claims expire by themselves
            pass

    def store(self, plan: StudyPlan, rec: CellRecord) -> None:
        if rec.cell_id != plan.cell_id:  # the record's spec must be the planned one, or resuming breaks
            raise AssertionError(f"bug: {plan.label} b{plan.batch_size} was planned as {plan.cell_id[:12]} "
                                 f"but measured as {rec.cell_id[:12]}")
        replace_old = True  # a planned cell is either new, an error being retried, or --force
        # a Ctrl-C or kill now waits for the commit AND its count in the summary (a signal held here lands as the
        # block ends: counted after it, the summary would say one stored cell fewer than the store holds)
        with _signals_deferred():
            try:
                stored = self.st.put(rec, study=self.cfg.name, replace=replace_old)
            except Exception as exc:  # never lose a measurement to a failed write
                path = save_unstored(rec, self.st.where, exc)
                raise StoreWriteError(f"the store at {self.st.where} refused a write",
                                      str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc)
                                      else type(exc).__name__,
                                      f"the measured cell is saved in {path}; fix the store and run the study "
                                      "again (finished cells are kept)") from exc
            self.claimed.discard(plan.cell_id)
            s = self.summary
            if stored:
                s.measured += 1
                s.statuses[rec.status] = s.statuses.get(rec.status, 0) + 1
                if rec.status != "ok":
                    s.failed += 1
        self.emit("done", {"plan": plan, "row": CellDone(rec, stored, plan.group), "stored": stored})

    def run(self, todo: list[StudyPlan]) -> None:
        # bench cells of one model, runtime and precision run in one api.run_plan call (an OOM skips the larger
        # batches); profile and accuracy cells one by one. The budget is checked before every cell.
        groups: dict[tuple, list[StudyPlan]] = {}
        for c in todo:
            groups.setdefault((c.ref, c.group, c.config.get("runtime"), c.config.get("precision")), []).append(c)
        for (ref, group, _, _), plans in groups.items():
            if self.over_budget():
                return
            plans = self.claim(plans)
            if not plans:
                continue
            if group in ("profile", "accuracy"):
                for plan in plans:
                    if self.over_budget():
                        return
                    self.emit("start", {"plan": plan})
                    rec = (_profile_record(plan, self.env, self.paper_top1) if group == "profile"
                           else _accuracy_record(plan, self.env))
                    self.store(plan, rec)
                continue
            self.bench(plans)
            if self.summary.stopped:
                return

    def bench(self, plans: list[StudyPlan]) -> None:
        from dnnbench.core.measurements import BenchCell

        by_id = {p.cell_id: p for p in plans}
        first = plans[0].config
        bplan = first["bench_plan"]
        specs = tuple(s for s in bplan.specs if s.cell_id in by_id)
        bplan = replace(bplan, specs=specs)

        def on_bench(kind, spec, payload):
            plan = by_id.get(spec.cell_id)
            if plan is None:
                return
            if kind == "start":
                self.emit("start", {"plan": plan})
            elif kind == "progress":
                self.emit("progress", {"plan": plan, "payload": payload})
            elif kind == "done":
                self.store(plan, payload.to_record())
                self.st.claim([p.cell_id for p in plans if p.cell_id in self.claimed], self.owner, self.ttl())

        try:
            run = api.run_plan(bplan, first["bench_config"], on_bench, should_stop=self.over_budget)
        except DnnbenchError as exc:
            if isinstance(exc, StoreWriteError):
                raise
            # the model could not be prepared at all: every cell of it fails
            for spec in specs:
                if spec.cell_id in self.claimed:
                    self.store(by_id[spec.cell_id], BenchCell(spec, "error", exc.one_line()).to_record())
            return
        if run.interrupted:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM while a finished cell is committed; they are delivered right after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class StoreWriteError(DnnbenchError):
    """The store refused to keep a measured cell (which was saved beside it instead)."""


def check_writable(st) -> None:
    """One-line error before anything is measured when the store cannot take writes."""
    from dnnbench import store as store_mod

    check = getattr(store_mod, "check_writable", None)
    if check is not None:
        check(st)


def save_unstored(rec: CellRecord, where: str, exc: BaseException) -> str:
    """Keep a record the store refused: appended as a JSON line to a file the user is told about."""
    import os
    import tempfile

    base = where if os.path.sep in where and not where.startswith(("postgresql", "sqlite:")) else ""
    candidates = [f"{base}.unstored.jsonl"] if base else []
    candidates += [os.path.join(os.getcwd(), "dnnbench-unstored.jsonl"),
                   os.path.join(tempfile.gettempdir(), "dnnbench-unstored.jsonl")]
    for path in candidates:
        try:
            with open(path, "a") as fh:
                fh.write(rec.to_json() + "\n")
            return path
        except OSError:
            continue
    return "(nowhere writable: the record is printed on stderr)\n" + rec.to_json()


def load_results(store: str | None = None):
    """The store as one tidy pandas DataFrame: a row per cell, a column per metric (units in the names)."""
    with open_store(store, readonly=True) as st:
        return st.frame()
