"""Static profiles and the model listing."""

from __future__ import annotations

import contextlib

from rich.table import Table

from dnnbench.cli.output import err, out
from dnnbench.core import units as u


_FIGURE_NAMES = {"box_map": "box mAP", "mask_map": "mask mAP", "kp_map": "keypoint mAP", "miou": "mIoU",
                 "pixel_acc": "pixel acc", "epe": "EPE", "top1": "top-1", "top5": "top-5"}


def profile(p, layers: bool) -> None:
    """One model's profile; with ``layers`` also its per-layer rows and per-op totals."""
    t = Table(title=f"{p.model} — batch {p.batch_size}, input {' + '.join(map(str, p.input_shape))}, {p.dtype}",
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("params", f"{p.params:,}" + (f" ({p.trainable_params:,} trainable)" if p.trainable_params != p.params else ""))
    t.add_row("weight bytes", f"{u.iec_bytes(p.weight_bytes)}" + (f" (+ {u.iec_bytes(p.buffer_bytes)} buffers)" if p.buffer_bytes else ""))
    t.add_row("MACs", f"{p.macs:,} ({u.si(p.macs, 'MAC')})")
    t.add_row("FLOPs (2 x MACs)", u.si(p.flops, "FLOP"))
    t.add_row("other FLOPs", u.si(p.other_flops, "FLOP") + "  (elementwise, norms, pooling, softmax)")
    t.add_row("activation peak", u.iec_bytes(p.activation_peak_bytes) + "  (live tensors in one forward, weights excluded)")
    t.add_row("input / output", f"{u.iec_bytes(p.input_bytes)} / {u.iec_bytes(p.output_bytes)}")
    t.add_row("uncounted ops", ", ".join(f"{k} x{v}" for k, v in p.uncounted_ops.items()) or "none")
    if p.reported and p.reported.top1 is not None:
        t.add_row("reported top-1 / top-5", f"{u.pct(p.reported.top1, 2)} / {u.pct(p.reported.top5, 2)}  ({p.reported.weights})")
    elif p.reported:  # other tasks: box mAP, mIoU, EPE ... as published with the weights
        shown = [f"{_FIGURE_NAMES.get(n, n)} {f'{v:.2f} px' if n == 'epe' else u.pct(v, 1)}"
                 for n, v in p.reported.all_figures().items()]
        if shown:
            where = f" on {p.reported.dataset}" if getattr(p.reported, "dataset", None) else ""
            t.add_row("reported", f"{', '.join(shown)}  ({p.reported.weights}{where})")
    t.add_row("counted on", {"meta": "meta tensors (no compute)", "onnx": "the ONNX graph (shape inference, no compute)"}
              .get(p.mode, "real CPU tensors"))
    out.print(t)
    for note in p.notes:
        out.print(f"note: {note}")
    if not layers:
        return
    lt = Table(title="layers (work done directly in each module)", title_justify="left")
    for col in ("layer", "type", "params", "MACs", "other FLOPs", "output", "calls"):
        lt.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for r in p.layers:
        lt.add_row(r.name, r.type, f"{r.params:,}", f"{r.macs:,}", f"{r.other_flops:,}", u.iec_bytes(r.output_bytes),
                   str(r.calls))
    out.print(lt)
    ot = Table(title="ops", title_justify="left")
    for col in ("op", "calls", "MACs", "other FLOPs"):
        ot.add_column(col, justify="left" if col == "op" else "right")
    for o in p.ops:
        ot.add_row(o.op, str(o.count), f"{o.macs:,}", f"{o.other_flops:,}")
    out.print(ot)


def profile_json(results, layers: bool) -> list[dict]:
    """The JSON of several models' profiles: one entry per model, its error instead when it failed."""
    return [{"label": r.label, "ref": r.ref, "paper_top1": r.paper_top1, "error": r.error,
             "profile": r.profile.to_dict(layers=layers) if r.profile else None} for r in results]


def profile_table(results, batch_size: int) -> None:
    """Several models' profiles, a row each."""
    t = Table(title=f"static profile at batch {batch_size} (MACs: multiply-accumulates; FLOPs = 2 x MACs)",
              title_justify="left")
    cols = ("model", "input", "params", "weights", "GMACs", "GFLOPs", "other GFLOPs", "act. peak",
            "reported top-1", "paper top-1", "note")
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "input", "note") else "right", overflow="fold")
    for r in results:
        p = r.profile
        paper = u.pct(r.paper_top1, 2) if r.paper_top1 is not None else "-"
        if p is None:
            t.add_row(r.ref or r.label, "-", "-", "-", "-", "-", "-", "-", "-", paper, r.error or "", style="dim")
            continue
        shape = p.input_shape[0][2:] if len(p.input_shape) == 1 else p.input_shape
        note = ("uncounted: " + ", ".join(p.uncounted_ops)) if p.uncounted_ops else ""
        t.add_row(p.model.removeprefix("torchvision:"), "x".join(map(str, shape)), f"{p.params / 1e6:.2f} M",
                  u.iec_bytes(p.weight_bytes), f"{p.macs / 1e9:.3f}", f"{p.flops / 1e9:.3f}",
                  f"{p.other_flops / 1e9:.3f}", u.iec_bytes(p.activation_peak_bytes),
                  u.pct(p.reported.top1, 2) if p.reported and p.reported.top1 is not None else "-", paper, note)
    out.print(t)


@contextlib.contextmanager
def progress(total: int):
    """A progress bar on stderr (only on a terminal); yields (on_start(entry), advance())."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("profiling {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("", total=total)
        yield (lambda entry: bar.update(task, description=entry.label)), (lambda: bar.advance(task))


# quality metrics as torchvision's weights meta names them, in column order, with their column titles
_METRIC_COLUMNS = {"acc@1": "top-1", "acc@5": "top-5", "box_map": "box mAP", "mask_map": "mask mAP",
                   "kp_map": "kp mAP", "miou": "mIoU", "pixel_acc": "pixel acc.", "epe": "EPE (px)"}


def _metric(metric: str, value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if metric == "epe" else u.pct(value, 2 if metric.startswith("acc") else 1)


def models(rows: list[dict]) -> None:
    """The model listing: a row per model, a column per quality metric any of them publishes (the figures of
    each model's first published dataset, named in the "dataset" column)."""
    headline = [(r.get("metrics") or {}).get(r.get("dataset"), {}) for r in rows]
    metrics = [m for m in _METRIC_COLUMNS if any(m in h for h in headline)]
    paper = any(r.get("paper_top1") is not None for r in rows)
    t = Table(title="models (published figures of the default weights; top-1 single crop, clip top-1 for video)",
              title_justify="left")
    cols = ["model", "task", "input", "params", "GMACs", *(_METRIC_COLUMNS[m] for m in metrics), "dataset",
            *(["paper top-1"] if paper else []), "note"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "task", "input", "dataset", "note") else "right",
                     overflow="fold")
    for r, h in zip(rows, headline):
        values = [_metric(m, h.get(m)) for m in metrics]
        t.add_row(r["model"].removeprefix("torchvision:"), r.get("task") or "-", r.get("input") or "-",
                  f"{r['params'] / 1e6:.2f} M" if r.get("params") else "-",
                  f"{r['macs'] / 1e9:.3f}" if r.get("macs") else "-", *values, r.get("dataset") or "-",
                  *([u.pct(r.get("paper_top1"), 2)] if paper else []),
                  f"unavailable: {r['unavailable']}" if r.get("unavailable") else "")
    out.print(t)
