"""The one function that derives a cell's flat metric view from its record: ``metrics(record)``.

Everything that shows or ranks results reads figures through it: ``bench --format json`` (beside the
record), the store's metric columns, ``Store.frame`` (analysis, report, pick), the CLI. A figure is a
float, or absent with its reason in ``notes`` — never a silent 0 or a NaN. Names carry SI units.
Statistics (median, CI, percentiles, throughput, roofline fraction) are computed here from the raw
samples, on demand; nothing derived is ever written back into a record.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from dnnbench.core.record import CellRecord

LATENCY_FIGURES = ("median_s", "mean_s", "min_s", "max_s", "p90_s", "p99_s", "ci_low_s", "ci_high_s", "cv")
MEMORY_FIGURES = ("peak_rss_bytes", "rss_above_baseline_bytes", "cuda_peak_allocated_bytes",
                  "cuda_peak_reserved_bytes", "cpu_activation_peak_bytes", "cuda_process_used_bytes")
POWER_FIGURES = ("power_w", "idle_power_w", "energy_per_item_j", "energy_per_item_above_idle_j")
PROFILE_FIGURES = ("params", "trainable_params", "weight_bytes", "buffer_bytes", "macs", "flops", "other_flops",
                   "activation_peak_bytes", "input_bytes", "output_bytes")
ACCURACY_FIGURES = ("top1", "top5", "top5_k", "top1_ci_low", "top1_ci_high", "top5_ci_low", "top5_ci_high",
                    "images", "corrupt_images", "images_per_s", "wall_s",
                    # detection (box, mask, keypoint mAP) and segmentation (mIoU): the record holds those of its task
                    "box_map", "box_map50", "box_map_ci_low", "box_map_ci_high", "box_map50_ci_low",
                    "box_map50_ci_high", "mask_map", "mask_map50", "mask_map_ci_low", "mask_map_ci_high",
                    "mask_map50_ci_low", "mask_map50_ci_high", "kp_map", "kp_map50", "kp_map_ci_low",
                    "kp_map_ci_high", "kp_map50_ci_low", "kp_map50_ci_high", "miou", "pixel_acc", "miou_ci_low", "miou_ci_high", "pixel_acc_ci_low",
                    "pixel_acc_ci_high")


# figures a detection record carries only for instance segmentation / keypoint detection
_OTHER_TASKS_FIGURES = ("mask_map", "kp_map")


@dataclass(frozen=True)
class Metrics:
    """A cell's flat view: ``values`` (name -> finite float) and ``notes`` (name -> why it has no value, or
    what a value means when that needs saying)."""

    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> float | None:
        return self.values.get(name)

    def as_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "notes": dict(self.notes)}


class _View:
    def __init__(self):
        self.values: dict[str, float] = {}
        self.notes: dict[str, str] = {}

    def put(self, name: str, value, why: str | None = None) -> None:
        v = None
        if value is not None and not isinstance(value, bool):
            try:
                v = float(value)
            except (TypeError, ValueError):
                v = None
        if v is not None and math.isfinite(v):
            self.values[name] = v
        elif v is not None:  # NaN or infinite: say so instead of storing a NULL without a reason
            self.notes[name] = f"unavailable: the figure came out {v} ({why})" if why else \
                f"unavailable: the figure came out {v}"
        else:
            self.notes[name] = why or "unavailable"

    def note(self, name: str, text: str) -> None:
        self.notes.setdefault(name, text)


def metrics(record: CellRecord) -> Metrics:
    """The flat metric view of ``record`` (see the module docstring)."""
    v = _View()
    if record.kind == "bench":
        _bench(record, v)
    elif record.kind == "profile":
        _profile(record, v)
    elif record.kind == "accuracy":
        _accuracy(record, v)
    elif record.kind == "legacy":  # migrated from a store written before records: its figures as stored
        for name, value in (record.result.get("metrics") or {}).items():
            v.put(name, value, (record.result.get("notes") or {}).get(name))
        for name, text in (record.result.get("notes") or {}).items():
            v.note(name, text)
    return Metrics(v.values, v.notes)


def _slug(sensor: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", sensor.lower()).strip("_")


def _bench(record: CellRecord, v: _View) -> None:
    from dnnbench.core.energy import headline
    from dnnbench.core.measurements import BenchCell

    cell = BenchCell.from_record(record)
    if record.spec.get("provenance") == "imported":  # `dnnbench import`: another device's own tool measured it
        _imported(record, cell, v)
        return
    st = cell.latency_s
    ok = cell.status == "ok" and st is not None
    why_not = f"unavailable: the cell ended with status {cell.status}" + (f" ({cell.message})" if cell.message else "")
    if ok:
        for name in LATENCY_FIGURES:
            v.put(f"latency_{name}", getattr(st, name), st.unavailable.get(name))
        v.put("latency_ci_rel_halfwidth", st.ci_rel_halfwidth, st.unavailable.get("ci_low_s"))
        v.put("latency_samples", st.n)
        v.put("latency_per_item_s", cell.latency_per_item_s)
        v.put("throughput_items_per_s", cell.throughput_items_per_s)
        if cell.spec.task != "classification":  # an item is an image, a clip (video) or an image pair (flow)
            unit = cell.spec.item_unit
            v.note("latency_per_item_s", f"per {unit} ({cell.spec.task}): the batch's median / {cell.batch_size}")
            v.note("throughput_items_per_s", f"{unit}s per second ({cell.spec.task})")
        v.put("cold_start_s", cell.cold_start_s)
        mem_why = (cell.memory.unavailable if cell.memory else {}) or {}
        for name in MEMORY_FIGURES:
            if cell.memory is not None and not hasattr(cell.memory, name) and name not in mem_why:
                continue  # a figure this dnnbench's memory record does not have
            value = getattr(cell.memory, name, None) if cell.memory else None
            v.put(name, value, mem_why.get(name) or ("unavailable: no memory record" if not cell.memory else None))
    else:
        v.note("latency_median_s", why_not)
    if cell.static:
        v.put("static_activation_peak_bytes", cell.static.activation_peak_bytes)
        v.put("static_weight_bytes", cell.static.weight_bytes)
        v.put("flops", cell.static.flops)
        v.put("macs", cell.static.macs)
    elif "static" in cell.unavailable:
        v.note("flops", cell.unavailable["static"])
    roof = cell.roofline
    if roof is not None:
        v.put("achieved_flops_per_s", roof.achieved_flops_per_s, roof.unavailable.get("achieved_flops_per_s"))
        v.put("fraction_of_peak", roof.fraction_of_peak, roof.unavailable.get("fraction_of_peak"))
        if roof.peak_flops_per_s is not None:
            v.put("machine_peak_flops_per_s", roof.peak_flops_per_s)
    info = cell.runtime_info
    if ok and info is not None:
        v.put("prepare_s", info.prepare_s, "unavailable: the runtime reported no preparation time")
        if info.prepare_peak_rss_bytes is not None:
            v.put("prepare_peak_rss_bytes", info.prepare_peak_rss_bytes)
        # the deployable file's size (the app's download and storage cost): raw in runtime_info
        v.put("artifact_bytes", info.artifact_bytes, info.artifact_note or
              "unavailable: this cell was measured by a dnnbench that did not record the artifact size")
        if info.artifact_bytes is not None and info.artifact_note:
            v.note("artifact_bytes", info.artifact_note)
        # what a quantized or delegated configuration really runs: raw in runtime_info.details, said by the runtime
        for name in ("int8_macs_fraction", "delegated_macs_fraction"):
            value = info.details.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                v.put(name, float(value))
                basis = info.details.get(name.replace("_fraction", "_basis"))
                if basis:
                    v.note(name, str(basis))
            elif name == "int8_macs_fraction" and cell.spec.precision == "int8":
                v.put(name, None, f"unavailable: the {cell.spec.runtime} runtime did not say which MACs ran int8")
        eq = info.equivalence
        if eq is not None:  # every configuration but the reference (eager fp32) has one
            v.put("equivalence_max_abs_diff", eq.max_abs_diff, eq.unavailable.get("max_abs_diff"))
            v.put("equivalence_mean_abs_diff", eq.mean_abs_diff, eq.unavailable.get("mean_abs_diff"))
            v.put("equivalence_top1_agreement", eq.top1_agreement, eq.unavailable.get("top1_agreement"))
            v.put("equivalence_rows", eq.rows)
            v.put("equivalence_reference_max_abs", eq.reference_max_abs, "unavailable")
            v.note("equivalence_max_abs_diff", f"against {eq.reference} on the same input"
                   + (f"; compared {eq.compared}" if eq.compared else ""))
        if info.notes:  # how the runtime prepared the model (exporter, quantization scope, compile graphs)
            v.note("prepare_s", "; ".join(info.notes))
    if cell.spec.sensors != "none" or cell.spec.estimate_tdp_w is not None:
        _power(cell, v, why_not if not ok else None, headline)


def _imported(record: CellRecord, cell, v: _View) -> None:
    """An imported cell (``store.imported``): statistics from its samples as for a measured cell, or, where
    the device's tool printed aggregates only, those aggregates as printed (noted so); everything the tool
    does not report (memory, power, % of peak, cold start...) unavailable with the record's reason."""
    why = record.unavailable
    st = cell.latency_s
    median = None
    if st is not None:
        for name in LATENCY_FIGURES:
            v.put(f"latency_{name}", getattr(st, name), st.unavailable.get(name))
        v.put("latency_ci_rel_halfwidth", st.ci_rel_halfwidth, st.unavailable.get("ci_low_s"))
        v.put("latency_samples", st.n)
        median = st.median_s
    else:
        rep = record.result.get("reported_latency") or {}
        tool = (record.result.get("imported") or {}).get("tool", "the device's tool")
        no_samples = why.get("latency_samples", "unavailable: no per-iteration samples")
        for name in LATENCY_FIGURES:
            v.put(f"latency_{name}", rep.get(name), no_samples)
            if rep.get(name) is not None:
                v.note(f"latency_{name}", f"as printed by {tool} over {int(rep.get('count') or 0)} runs, "
                                          "not derived from samples")
        v.put("latency_ci_rel_halfwidth", None, no_samples)
        v.put("latency_samples", None, no_samples)
        median = rep.get("median_s")
    per_item_why = "unavailable: the device's tool printed no median" if median is None else None
    v.put("latency_per_item_s", median / cell.batch_size if median else None, per_item_why)
    v.put("throughput_items_per_s", cell.batch_size / median if median else None, per_item_why)
    # the tool's first run after loading (ExecuTorch's first execution, TFLite's "First inference")
    v.put("cold_start_s", (record.result.get("imported") or {}).get("cold_start_s"), why.get("cold_start_s"))
    for name in MEMORY_FIGURES:
        v.put(name, None, why.get("memory"))
    for name in POWER_FIGURES:
        v.put(name, None, why.get("power"))
    v.put("flops", None, why.get("static"))
    v.put("achieved_flops_per_s", None, why.get("static"))
    v.put("fraction_of_peak", None, why.get("machine_peak"))


def _power(cell, v: _View, why_not: str | None, headline) -> None:
    if why_not is not None and not cell.energy:
        for name in POWER_FIGURES:
            v.put(name, None, f"{why_not} before the power step")
        return
    head, why = headline(cell.energy, cell.spec.device)
    for name in POWER_FIGURES:
        if head is None:
            v.put(name, None, why or "unavailable: no power sensor record")
        else:
            v.put(name, getattr(head, name), head.unavailable.get(name) or head.reason)
    if head is not None:
        v.put("power_window_s", head.window_s, head.unavailable.get("window_s") or head.reason)
        # time per item inside the power window (energy per item = power_w x this), apart from latency
        v.put("power_time_per_item_s", head.time_per_item_s, head.unavailable.get("time_per_item_s") or head.reason)
        v.note("power_sensor", f"{head.sensor} ({head.status}): {', '.join(head.domains) or head.scope}")
    for e in cell.energy:  # every other sensor beside the headline, under its own name
        if e is head or e.status == "unavailable":
            continue
        slug = _slug(e.sensor)
        for name in ("power_w", "energy_per_item_j"):
            v.put(f"sensor_{slug}_{name}", getattr(e, name), e.unavailable.get(name) or e.reason)
        v.note(f"sensor_{slug}_power_w", f"{e.sensor} ({e.status}): {', '.join(e.domains) or e.scope}; "
                                         f"not the headline: it does not cover {cell.spec.device}"
               if head is None or e.sensor != head.sensor else e.sensor)


def _profile(record: CellRecord, v: _View) -> None:
    r = record.result
    if record.status != "ok":
        v.note("macs", f"unavailable: the profile ended with status {record.status} ({record.message})")
        return
    for name in PROFILE_FIGURES:
        v.put(name, r.get(name), record.unavailable.get(name))
    v.put("uncounted_op_calls", sum((r.get("uncounted_ops") or {}).values()))
    if not _reported(r, v):
        v.put("reported_top1", None, (r.get("reported") or {}).get("note")
              or "unavailable: no accuracy published with these weights")
    if record.result.get("paper_top1") is not None:
        v.put("paper_top1", record.result["paper_top1"])


def _accuracy(record: CellRecord, v: _View) -> None:
    r = record.result
    if record.status != "ok":
        v.note("top1", f"unavailable: the accuracy cell ended with status {record.status} ({record.message})")
        return
    for name in ACCURACY_FIGURES:
        if name in r or name in record.unavailable:
            why = record.unavailable.get(name) or (r.get("unavailable") or {}).get(name)
            if r.get(name) is None and why is None and name.startswith(_OTHER_TASKS_FIGURES):
                continue  # a plain detector's mask/keypoint mAP: not of its task, not missing
            v.put(name, r.get(name), why)
    if r.get("forward_per_image_s") is not None:
        v.put("accuracy_forward_per_image_s", r["forward_per_image_s"])
    _paired(r, v)
    _reported(r, v)


def _paired(r: dict, v: _View) -> None:
    """A configuration's accuracy against eager fp32 on the same images (``core.accuracy.PairedComparison``)."""
    p = r.get("paired")
    if not isinstance(p, dict):
        return
    v.put("top1_delta_points", p.get("delta_top1_points"))
    v.put("top1_delta_ci_low_points", p.get("delta_ci_low_points"))
    v.put("top1_delta_ci_high_points", p.get("delta_ci_high_points"))
    v.put("accuracy_drop_points", -p["delta_top1_points"] if p.get("delta_top1_points") is not None else None,
          "unavailable: no paired top-1 difference in the record")
    v.note("accuracy_drop_points", f"eager fp32's top-1 minus this configuration's, on the same {p.get('n')} images, "
                                   "in percentage points (negative: this configuration scored higher)")
    v.put("top1_mcnemar_p", p.get("p_value"))
    v.put("top1_agreement", p.get("agreement"))


def _reported(r: dict, v: _View) -> bool:
    """The figures published with the weights as ``reported_<metric>`` (top1, top5, box_map, miou, epe...:
    ``ReportedAccuracy.figures``; records older than it carry top1/top5 only); whether there were any."""
    rep = r.get("reported") or {}
    figures = {n: x for n, x in (("top1", rep.get("top1")), ("top5", rep.get("top5"))) if x is not None}
    figures.update({n: x for n, x in (rep.get("figures") or {}).items() if x is not None})
    if not figures:
        return False
    where = ", ".join(s for s in (rep.get("source"), rep.get("dataset") and f"on {rep['dataset']}") if s)
    what = f"published with {rep['weights']}" if rep.get("weights") else "published"
    for name, value in figures.items():
        v.put(f"reported_{name}", value)
        v.note(f"reported_{name}", f"{what} ({where}), not measured" if where else f"{what}, not measured")
    if "top1" in figures and "top5" not in figures:
        v.put("reported_top5", None, "unavailable: not published with these weights")
    return True
