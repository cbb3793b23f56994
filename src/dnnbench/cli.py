"""Command line: parse -> api -> render -> exit code. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dnnbench.core.version import __version__
from dnnbench.core.errors import DnnbenchError, InputError, MissingExtraError

# Piped output (files, CI logs) gets a wide table instead of rich's 80-column default.
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, markup=False)


def _fail(message: str, code: int) -> None:
    click.echo(f"dnnbench: error: {message}", err=True)
    sys.exit(code)

FORMATS = click.Choice(["table", "json"])


# ---- display helpers (display only: stored data stays in SI units) --------------------------------

def _si(value, unit: str, digits: int = 2) -> str:
    if value is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {prefix}{unit}"
    if value and abs(value) < 1:
        for scale, prefix in ((1e-3, "m"), (1e-6, "µ")):
            if abs(value) >= scale:
                return f"{value / scale:.{digits}f} {prefix}{unit}"
    return f"{value:.0f} {unit}" if float(value).is_integer() else f"{value:.{digits}f} {unit}"


def _bytes(n) -> str:
    if n is None:
        return "-"
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _dump(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


# ---- the group ---------------------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dnnbench")
def cli():
    """dnnbench: what it costs to deploy a neural network (params, MACs, memory, time, power, accuracy)."""


def _batch_size(ctx, param, value):
    if value is not None and value < 1:
        raise InputError(f"--batch-size {value} is not allowed", "a batch holds at least one item",
                         "use --batch-size 1 or more")
    return value


@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, callback=_batch_size,
              help="Batch size to count at.")
@click.option("--input-size", default=None, metavar="H[,W]",
              help="Image size in pixels (default: the model's native size from its weights metadata).")
@click.option("--layers", is_flag=True, help="Also show per-layer rows and per-op totals.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def profile(models, batch_size, input_size, layers, fmt):
    """Exact params, MACs/FLOPs and memory estimate of MODELS, without running real compute.

    MODELS are references (resnet50, torchvision:vit_b_16, timm:resnet50.a1_in1k,
    python:path/to/file.py:factory) or sets (paper, torchvision).
    """
    from dnnbench import api
    from dnnbench.sources import sets

    single = len(models) == 1 and not sets.is_set(models[0])
    if single:
        prof = api.profile(models[0], batch_size=batch_size, input_size=input_size)
        if fmt == "json":
            _dump(prof.to_dict(layers=layers))
        else:
            _render_profile(prof, layers)
        return
    entries = api.expand_models(list(models))
    results = []
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("profiling {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("", total=len(entries))
        for res in api.profile_many(list(models), batch_size, input_size,
                                    on_start=lambda e: bar.update(task, description=e.label)):
            results.append(res)
            bar.advance(task)
    if fmt == "json":
        _dump([{"label": r.label, "ref": r.ref, "paper_top1": r.paper_top1, "error": r.error,
                "profile": r.profile.to_dict(layers=layers) if r.profile else None} for r in results])
        return
    _render_profile_table(results, batch_size)


def _render_profile(p, layers: bool) -> None:
    t = Table(title=f"{p.model} — batch {p.batch_size}, input {' + '.join(map(str, p.input_shape))}, {p.dtype}",
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("params", f"{p.params:,}" + (f" ({p.trainable_params:,} trainable)" if p.trainable_params != p.params else ""))
    t.add_row("weight bytes", f"{_bytes(p.weight_bytes)}" + (f" (+ {_bytes(p.buffer_bytes)} buffers)" if p.buffer_bytes else ""))
    t.add_row("MACs", f"{p.macs:,} ({_si(p.macs, 'MAC')})")
    t.add_row("FLOPs (2 x MACs)", _si(p.flops, "FLOP"))
    t.add_row("other FLOPs", _si(p.other_flops, "FLOP") + "  (elementwise, norms, pooling, softmax)")
    t.add_row("activation peak", _bytes(p.activation_peak_bytes) + "  (live tensors in one forward, weights excluded)")
    t.add_row("input / output", f"{_bytes(p.input_bytes)} / {_bytes(p.output_bytes)}")
    t.add_row("uncounted ops", ", ".join(f"{k} x{v}" for k, v in p.uncounted_ops.items()) or "none")
    if p.reported and p.reported.top1 is not None:
        t.add_row("reported top-1 / top-5", f"{_pct(p.reported.top1)} / {_pct(p.reported.top5)}  ({p.reported.weights})")
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
        lt.add_row(r.name, r.type, f"{r.params:,}", f"{r.macs:,}", f"{r.other_flops:,}", _bytes(r.output_bytes), str(r.calls))
    out.print(lt)
    ot = Table(title="ops", title_justify="left")
    for col in ("op", "calls", "MACs", "other FLOPs"):
        ot.add_column(col, justify="left" if col == "op" else "right")
    for o in p.ops:
        ot.add_row(o.op, str(o.count), f"{o.macs:,}", f"{o.other_flops:,}")
    out.print(ot)


def _render_profile_table(results, batch_size: int) -> None:
    t = Table(title=f"static profile at batch {batch_size} (MACs: multiply-accumulates; FLOPs = 2 x MACs)",
              title_justify="left")
    cols = ("model", "input", "params", "weights", "GMACs", "GFLOPs", "other GFLOPs", "act. peak",
            "reported top-1", "paper top-1", "note")
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "input", "note") else "right", overflow="fold")
    for r in results:
        p = r.profile
        paper = _pct(r.paper_top1) if r.paper_top1 is not None else "-"
        if p is None:
            t.add_row(r.ref or r.label, "-", "-", "-", "-", "-", "-", "-", "-", paper, r.error or "", style="dim")
            continue
        shape = p.input_shape[0][2:] if len(p.input_shape) == 1 else p.input_shape
        note = ("uncounted: " + ", ".join(p.uncounted_ops)) if p.uncounted_ops else ""
        t.add_row(p.model.removeprefix("torchvision:"), "x".join(map(str, shape)), f"{p.params / 1e6:.2f} M",
                  _bytes(p.weight_bytes), f"{p.macs / 1e9:.3f}", f"{p.flops / 1e9:.3f}", f"{p.other_flops / 1e9:.3f}",
                  _bytes(p.activation_peak_bytes),
                  _pct(p.reported.top1) if p.reported and p.reported.top1 is not None else "-", paper, note)
    out.print(t)


@cli.command()
@click.argument("pattern", required=False)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def models(pattern, fmt):
    """List models with published params, GMACs and ImageNet top-1 (offline, from weights metadata).

    PATTERN is a substring or glob over torchvision names (e.g. 'resnet*'), or a set name (paper).
    """
    from dnnbench import api

    rows = api.list_models(pattern)
    if not rows:
        raise InputError(f"no model matches {pattern!r}", "the pattern matched nothing",
                         "run `dnnbench models` without a pattern to see them all")
    if fmt == "json":
        _dump(rows)
        return
    t = Table(title="models (published figures of the default weights; top-1 single crop)", title_justify="left")
    for c in ("model", "input", "params", "GMACs", "top-1", "top-5", "paper top-1", "note"):
        t.add_column(c, justify="left" if c in ("model", "input", "note") else "right")
    for r in rows:
        size = r.get("input_size")
        t.add_row(r["model"], "x".join(map(str, size)) if size else "-",
                  f"{r['params'] / 1e6:.2f} M" if r.get("params") else "-",
                  f"{r['macs'] / 1e9:.3f}" if r.get("macs") else "-",
                  _pct(r.get("top1")), _pct(r.get("top5")), _pct(r.get("paper_top1")),
                  f"unavailable: {r['unavailable']}" if r.get("unavailable") else "")
    out.print(t)



# ---- accuracy ------------------------------------------------------------------------------------

def _positive(name: str):
    def check(ctx, param, value):
        if value is not None and value < 1:
            raise InputError(f"{name} {value} is not allowed", "it must be 1 or more", f"use {name} 1 or more")
        return value
    return check


@cli.command()
@click.argument("model")
@click.option("--data", default=None, metavar="DIR",
              help="Validation images: class folders (wnids), or a flat folder with --labels. "
                   "Without it, show the published figure only.")
@click.option("--weights", default="DEFAULT", show_default=True, metavar="DEFAULT|TAG|PATH|random",
              help="DEFAULT: the weights in the local torchvision/timm cache (a python factory's own); "
                   "a weights tag; a checkpoint file; random (to time the pipeline).")
@click.option("--limit", type=int, default=None, callback=_positive("--limit"), metavar="N",
              help="Evaluate a class-stratified subset of N images.")
@click.option("--batch-size", "-b", type=int, default=64, show_default=True, callback=_positive("--batch-size"))
@click.option("--workers", type=int, default=None, metavar="W",
              help="Decoding processes [default: one per CPU, at most 8; 0 decodes in this process].")
@click.option("--labels", default=None, metavar="FILE",
              help="Ground truth for a flat folder: one label per line (sorted file names) or 'FILENAME LABEL'.")
@click.option("--download-weights", is_flag=True, help="Allow downloading the weights if they are not cached.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit subset.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def accuracy(model, data, weights, limit, batch_size, workers, labels, download_weights, device, seed, fmt):
    """Top-1/top-5 of MODEL measured on your validation set (--data), beside the published figure.

    Each model is fed through its own preprocessing (torchvision weights transforms, timm data config,
    a factory's preprocess; else resize + centre crop + ImageNet mean/std). Intervals are 95 % Wilson.
    """
    from dnnbench import api

    if data is None:
        rep = api.reported_accuracy(model)
        if fmt == "json":
            _dump({"model": model, "reported": None if rep is None else rep.__dict__, "measured": None})
            return
        out.print(f"{model}: published {_reported_line(rep)}")
        out.print("pass --data DIR to measure it on your own validation images")
        return
    with _images_progress() as on_progress:
        acc = api.accuracy(model, data, weights=weights, labels=labels, limit=limit, batch_size=batch_size,
                           workers=workers, download_weights=download_weights, device=device, seed=seed,
                           on_progress=on_progress)
    if fmt == "json":
        _dump(acc.to_dict())
        return
    _render_accuracy(acc)


def _reported_line(rep) -> str:
    if rep is None:
        return "accuracy: none (no published figure for this source)"
    if rep.top1 is None:
        return f"accuracy: none — {rep.note or 'not published'} ({rep.source}, {rep.weights})"
    return f"top-1 {_pct(rep.top1)}, top-5 {_pct(rep.top5)} ({rep.source}, {rep.weights})"


class _images_progress:
    """A rich progress bar on stderr with images/s; silent when stderr is not a terminal."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err, transient=True,
                            disable=not err.is_terminal)
        self.bar.__enter__()
        self.task = self.bar.add_task("loading model and listing images", total=None, rate="")

        def update(done, total, scored, elapsed):
            rate = f"{scored / elapsed:.1f} images/s" if elapsed > 0 and scored else ""
            self.bar.update(self.task, description="evaluating", completed=done, total=total, rate=rate)

        return update

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


def _render_accuracy(a) -> None:
    t = Table(title=f"{a.model} — measured on {a.images:,} images of {a.data_dir}", show_header=False,
              title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("top-1", f"{_pct(a.top1)}  (95 % CI {_pct(a.top1_ci_low)} – {_pct(a.top1_ci_high)}; "
                       f"{a.top1_correct:,} / {a.images:,})")
    k = "top-5" if a.top5_k == 5 else f"top-5 (top-{a.top5_k})"
    t.add_row(k, f"{_pct(a.top5)}  (95 % CI {_pct(a.top5_ci_low)} – {_pct(a.top5_ci_high)}; "
                 f"{a.top5_correct:,} / {a.images:,})")
    t.add_row("published", _reported_line(a.reported))
    t.add_row("weights", a.weights)
    t.add_row("images", f"{a.images:,} scored, {a.corrupt_images:,} corrupt (skipped), {a.classes} classes"
                        + (f", --limit {a.limit}" if a.limit else ""))
    t.add_row("data", f"{a.layout}; classes: {a.class_map}")
    t.add_row("preprocess", f"{a.preprocess}  [{a.preprocess_source}]")
    t.add_row("throughput", f"{a.images_per_s:.1f} images/s  (batch {a.batch_size}, {a.workers} workers, "
                            f"{a.threads} threads, {a.device}; waited for data {a.data_wait_s:.1f} s of {a.wall_s:.1f} s)")
    out.print(t)
    for note in a.notes:
        out.print(f"note: {note}")


@cli.command()
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda", help="cpu, cuda or cuda:N.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def runtimes(device, fmt):
    """Which runtimes (--runtime) work here and why not, and which precisions each runs on DEVICE.

    Always exits 0; `bench --runtime X` with an unavailable X is the error, with the same reason.
    """
    from dnnbench import api

    rows = api.runtimes(device)
    if fmt == "json":
        _dump(rows)
        return
    t = Table(title=f"runtimes on {device}", title_justify="left")
    for c in ("runtime", "available", "fp32", "fp16", "bf16", "int8", "why not / details"):
        t.add_column(c)
    for r in rows:
        marks = [("yes" if v["native"] else "emulated") if v["runs"] else "no" for v in r["precisions"].values()]
        info = (f"{r['reason']}. Fix: {r['fix']}" if not r["available"]
                else ", ".join(f"{k} {v}" for k, v in r["details"].items() if k != "providers"))
        t.add_row(r["name"], "yes" if r["available"] else "no", *marks, info)
    out.print(t)
    notes: dict[tuple[str, str], list[str]] = {}  # (precision, note) -> runtimes it applies to
    for r in rows:
        for p, v in r["precisions"].items():
            if v["note"] and r["available"]:
                notes.setdefault((p, v["note"]), []).append(r["name"])
    for (p, note), names in notes.items():
        out.print(f"{p} ({', '.join(names)}): {note}", markup=False)


@cli.command()
@click.argument("spec", required=False, metavar="[SENSORS]")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def sensors(spec, fmt):
    """List the power sensors: which work here, what each covers, and why the others do not.

    SENSORS (optional) checks a --sensors value instead of listing all: e.g. nvml:0, rapl,
    jetson:VDD_IN, meter:power.csv. Always exits 0 when the value is well formed, even if nothing works.
    """
    from dnnbench import api

    infos = api.sensors(spec)
    if fmt == "json":
        _dump([i.to_dict() for i in infos])
        return
    from rich.markup import escape  # reasons hold text like dnnbench[nvml] that is not markup

    t = Table(title="power sensors", title_justify="left")
    for c in ("sensor", "status", "covers", "how", "why not / fix"):
        t.add_column(c, overflow="fold")
    for i in infos:
        if i.available:
            covers = i.scope + (f" [{', '.join(i.domains)}]" if i.domains else "")
            how = i.method
            if not ("every" in how and i.update_period_s == i.sampling_period_s):
                how += f"; updates every {i.update_period_s:g} s"
            row = (i.name, "available", covers, how, "; ".join(i.notes))
        else:
            row = (i.name, "unavailable", i.scope, "-", i.reason or "")
        t.add_row(*map(escape, row))
    out.print(t)
    if not any(i.available for i in infos):
        out.print("no power sensor works here: bench reports power and energy as unavailable, never 0. "
                  "Fix a reason above, or record the machine with an external meter (--sensors meter:FILE).")


# ---- bench and machine ---------------------------------------------------------------------------

def _batch_sizes(ctx, param, value):
    from dnnbench.core.measurements import parse_batch_sizes

    return parse_batch_sizes(value)


def _threads(ctx, param, value):
    if value is not None and value < 1:
        raise InputError(f"--threads {value} is not allowed", "at least one thread must run the model",
                         "use --threads 1 or more (default: the physical cores)")
    return value


def _seconds(s) -> str:
    if s is None:
        return "-"
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


@cli.command()
@click.argument("model")
@click.option("--batch-sizes", default="1,2,4,8,16,32,64", show_default=True, callback=_batch_sizes,
              metavar="B1,B2,...", help="Batch sizes, one cell each.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda", help="cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, callback=_threads,
              help="CPU threads (torch.set_num_threads). Default: the physical cores.")
@click.option("--target-ci", type=float, default=0.02, show_default=True,
              help="Stop sampling when the 95 % CI of the median is within this fraction of it.")
@click.option("--max-time-per-cell", type=float, default=10.0, show_default=True, metavar="S",
              help="Time cap of one cell in seconds (cold start and warm-up included).")
@click.option("--min-samples", type=int, default=10, show_default=True, help="No CI-based stop before this.")
@click.option("--in-process", is_flag=True,
              help="Run all cells in this process: faster, but memory is not isolated per cell.")
@click.option("--input-size", default=None, metavar="H[,W]", help="Image size in pixels (default: native).")
@click.option("--sensors", default="auto", show_default=True, metavar="auto|none|nvml,rapl,jetson|meter:FILE",
              help="Power sensors, measured after each cell's timing (`dnnbench sensors` lists them).")
@click.option("--estimate-power", type=float, default=None, metavar="TDP_W",
              help="When no sensor measures, report a labelled estimate from this TDP in watts.")
@click.option("--runtime", default=None, metavar="eager|compile|onnxruntime|all",
              help="What runs the model; a comma list or all compares them [default: eager; onnxruntime for onnx:].")
@click.option("--precision", default="fp32", show_default=True, metavar="fp32|fp16|bf16|int8|all",
              help="Numeric precision; a comma list or all. Non-reference runs are checked against eager fp32.")
@click.option("--processes", type=int, default=None, metavar="N",
              help="Worker processes per cell, each sampling a share of the cap when calls are fast enough "
                   "[default: 5 for eager, else 1].")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def bench(model, batch_sizes, device, threads, target_ci, max_time_per_cell, min_samples, in_process, input_size,
          sensors, estimate_power, runtime, precision, processes, fmt):
    """Inference time, throughput and memory of MODEL at each batch size, measured on this machine.

    Each (model, batch size) cell runs in fresh worker processes: cold start apart, warm-up judged after
    the fact, then samples until the 95 % CI of the median is within --target-ci or --max-time-per-cell is
    spent. Fast cells pool several processes (--processes), since each process runs at a speed of its own.
    """
    from dnnbench.core.measurements import DEFAULT_PROCESSES, check_bench_options, check_device_name

    check_bench_options(threads, target_ci, max_time_per_cell, min_samples,
                        DEFAULT_PROCESSES if processes is None else processes)  # before torch is imported
    check_device_name(device)
    from dnnbench import api

    configs, left_out = api.runtime_configs(model, runtime, precision, device)
    for label, why in left_out:
        err.print(f"left out: {label}: {why}", markup=False)
    runs = []
    for rt, prec in configs:
        with _bench_progress(max_time_per_cell) as on_event:
            runs.append(api.bench(model, batch_sizes, device=device, threads=threads, target_ci=target_ci,
                                  max_time_per_cell=max_time_per_cell, in_process=in_process, input_size=input_size,
                                  min_samples=min_samples, on_event=on_event, sensors=sensors,
                                  estimate_power_w=estimate_power, runtime=rt, precision=prec,
                                  processes=processes))
    if fmt == "json":
        _dump(runs[0].to_dict() if len(runs) == 1 else [r.to_dict() for r in runs])
    else:
        for run in runs:
            _render_bench(run)
        if len(runs) > 1:
            _render_runtime_comparison(runs)
    if not any(c.status == "ok" for run in runs for c in run.cells):
        sys.exit(1)


class _bench_progress:
    """A rich progress bar per cell on stderr (only on a terminal), fed by api.bench's events."""

    def __init__(self, max_time: float):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.max_time = max_time
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[info]}"), console=err, transient=False,
                            disable=not err.is_terminal)
        self.tasks: dict[int, int] = {}

    def __enter__(self):
        self.bar.__enter__()
        return self.on_event

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def on_event(self, kind, spec, payload) -> None:
        label = f"{spec.model.removeprefix('torchvision:')} batch {spec.batch_size}"
        if not spec.is_reference:
            label += f" ({spec.runtime} {spec.precision})"
        if kind == "start":
            self.tasks[spec.batch_size] = self.bar.add_task(label, total=self.max_time, info="starting")
            return
        task = self.tasks.get(spec.batch_size)
        if kind == "progress" and task is not None:
            phase, n, elapsed, rel = payload
            info = phase + (f", {n} samples" if n else "") + (f", CI +/-{100 * rel:.1f} %" if rel is not None else "")
            self.bar.update(task, completed=min(elapsed, self.max_time), info=info)
        elif kind == "done":
            cell = payload
            if task is None:  # a skipped cell never started
                task = self.bar.add_task(label, total=self.max_time, info="")
            st = cell.latency_s
            info = cell.status + (f", median {_seconds(st.median_s)}, {st.n} samples" if st else "")
            self.bar.update(task, completed=self.max_time, info=info)


def _render_power(run) -> None:
    """Power per cell, or one line saying why it is unavailable — never a 0."""
    measured = [c for c in run.cells if c.power is not None and c.power.status != "unavailable"]
    if not measured:
        reasons = {c.power.reason for c in run.cells if c.power is not None and c.power.reason}
        out.print("power: unavailable: " + ("; ".join(sorted(reasons)) or "no cell reached the power step"),
                  soft_wrap=True)
        return
    t = Table(title="power and energy per item (after timing; idle measured before and subtracted)",
              title_justify="left")
    for col in ("batch", "sensor", "status", "power", "idle", "energy/item", "above idle/item", "window", "domains"):
        t.add_column(col, justify="left" if col in ("sensor", "status", "domains") else "right")
    for c in measured:
        e = c.power
        t.add_row(str(c.batch_size), e.sensor, e.status, _si(e.power_w, "W"), _si(e.idle_power_w, "W"),
                  _si(e.energy_per_item_j, "J"), _si(e.energy_per_item_above_idle_j, "J"),
                  _seconds(e.window_s) if e.window_s else "-", ", ".join(e.domains) or e.scope)
    out.print(t)


def _render_bench(run) -> None:
    on_gpu = run.device.startswith("cuda")
    env = run.environment
    t = Table(title=f"{run.model} on {run.device}, {run.threads} threads, {run.runtime} {run.precision} — latency per "
                    "batch (median and 95 % CI), memory measured per cell", title_justify="left")
    cols = ["batch", "status", "median", "95 % CI", "per item", "items/s", "p90", "p99", "cold start", "n"]
    cols += ["CUDA peak alloc.", "CUDA peak reserved"] if on_gpu else ["peak RSS", "RSS above base"]
    cols += ["static act.+weights", "GFLOP/s", "% of peak"]
    for c in cols:
        t.add_column(c, justify="left" if c == "status" else "right")
    for c in run.cells:
        st = c.latency_s
        static = _bytes(c.static.activation_peak_bytes + c.static.weight_bytes) if c.static else "-"
        if st is None:
            t.add_row(str(c.batch_size), c.status, *["-"] * (len(cols) - 5), static, "-", "-", style="dim")
            continue
        ci = f"+/-{100 * st.ci_rel_halfwidth:.1f} %" if st.ci_rel_halfwidth is not None else "too few samples"
        mem = ([_bytes(c.cuda_peak_allocated_bytes), _bytes(c.cuda_peak_reserved_bytes)] if on_gpu
               else [_bytes(c.peak_rss_bytes), _bytes(c.rss_above_baseline_bytes)])
        roof = c.roofline
        t.add_row(str(c.batch_size), c.status + (" !" if c.warnings else ""), _seconds(st.median_s), ci,
                  _seconds(c.latency_per_item_s), f"{c.throughput_items_per_s:,.1f}",
                  _seconds(st.p90_s) if st.p90_s is not None else "too few samples",
                  _seconds(st.p99_s) if st.p99_s is not None else "too few samples",
                  _seconds(c.cold_start_s), str(st.n), *mem, static,
                  f"{roof.achieved_flops_per_s / 1e9:.1f}" if roof and roof.achieved_flops_per_s is not None else "-",
                  _pct(roof.fraction_of_peak) if roof and roof.fraction_of_peak is not None else "-")
    out.print(t)
    _render_power(run)
    _render_runtime_lines(run)
    for c in run.cells:
        if c.status != "ok":
            out.print(f"batch {c.batch_size}: {c.status}: {c.message}")
        for w in c.warnings:
            out.print(f"batch {c.batch_size}: warning: {w}")
    for fit in (run.memory_fit, run.activation_fit):
        if fit is None:
            continue
        line = (f"memory ({fit.quantity.removesuffix('_bytes').replace('_', ' ')}): {_bytes(fit.floor_bytes)} + "
                f"{_bytes(fit.slope_bytes_per_item)} x batch (least squares over {fit.n} sizes"
                + (f", r2 {fit.r2:.3f}" if fit.r2 is not None else "") + ("" if fit.monotonic else ", NOT monotonic") + ")")
        if fit.static_slope_bytes_per_item is not None:
            line += (f"; static estimate {_bytes(fit.static_floor_bytes)} + {_bytes(fit.static_slope_bytes_per_item)}"
                     " x batch" + (f", measured/static slope {fit.slope_ratio:.2f}" if fit.slope_ratio else ""))
        out.print(line)
    if run.machine_peak is not None:
        p = run.machine_peak
        out.print(f"peak: {p.peak_flops_per_s / 1e9:.1f} GFLOP/s measured by `dnnbench machine` ({p.best_probe} probe, "
                  f"{p.measured_at})")
    else:
        out.print(f"% of peak: {run.unavailable.get('machine_peak', 'unavailable')}")
    gpu = f", {env.gpu_name}, driver {env.gpu_driver}" if on_gpu and env.gpu_name else ""
    out.print(f"machine {env.fingerprint}: {env.cpu_model}, {env.physical_cores} physical / {env.logical_cores} "
              f"logical cores{gpu}; torch {env.torch_version}; load {env.load_avg}; dnnbench {env.tool_version}, "
              f"{env.timestamp}")


def _render_runtime_lines(run) -> None:
    """The runtime's preparation and the equivalence check of each cell (none for eager fp32, the reference)."""
    ok = [c for c in run.cells if c.status == "ok" and c.runtime_info is not None]
    if not ok:
        return
    info = ok[0].runtime_info
    keys = ("exporter", "batch_axis", "providers", "conversion", "backend", "graphs", "graph_breaks", "vec_isa")
    shown = {k: info.details[k] for k in keys if k in info.details}
    if shown or info.notes:
        out.print(f"{run.runtime} {run.precision}: " + "; ".join([f"{k} {v}" for k, v in shown.items()] + info.notes),
                  markup=False)
    for c in ok:
        eq = c.equivalence
        line = f"batch {c.batch_size}: prepared in {_seconds(c.prepare_s)}"
        if eq is not None:
            diff = f"{eq.max_abs_diff:.3g}" if eq.max_abs_diff is not None else eq.unavailable.get("max_abs_diff", "-")
            agree = (f"{100 * eq.top1_agreement:.1f} % of {eq.rows} rows" if eq.top1_agreement is not None
                     else eq.unavailable.get("top1_agreement", "-"))
            line += (f"; vs {eq.reference} on the same input: max |diff| {diff} (largest |output| "
                     f"{eq.reference_max_abs:.3g}), top-1 agreement {agree}" if eq.reference_max_abs is not None
                     else f"; vs {eq.reference}: max |diff| {diff}, top-1 agreement {agree}")
        out.print(line, markup=False)


def _render_runtime_comparison(runs) -> None:
    """One table across runtimes and precisions: time, memory, cold start, preparation, equivalence."""
    t = Table(title=f"{runs[0].model} on {runs[0].device}, {runs[0].threads} threads — runtimes and precisions "
                    "side by side", title_justify="left")
    for c in ("batch", "runtime", "precision", "status", "median", "per item", "speed-up", "cold start",
              "prepare", "peak RSS", "RSS above base", "max |diff|", "top-1 agree"):
        t.add_column(c, justify="left" if c in ("runtime", "precision", "status") else "right")
    # the reference: eager fp32, or for an ONNX file its fp32 session (the runs without an equivalence check)
    ref_run = next((r for r in runs if (r.runtime, r.precision) == ("eager", "fp32")), None) or next(
        (r for r in runs if r.precision == "fp32" and not any(c.equivalence for c in r.cells)), None)
    ref = {c.batch_size: c for c in (ref_run.cells if ref_run else []) if c.status == "ok"}
    sizes = sorted({c.batch_size for r in runs for c in r.cells})
    for b in sizes:
        for r in runs:
            c = next((x for x in r.cells if x.batch_size == b), None)
            if c is None:
                continue
            st = c.latency_s
            base = ref.get(b)
            speed = (f"{base.latency_s.median_s / st.median_s:.2f}x" if st and base and base.latency_s
                     and st.median_s > 0 else "-")
            eq = c.equivalence
            t.add_row(str(b), r.runtime, r.precision, c.status, _seconds(st.median_s) if st else "-",
                      _seconds(c.latency_per_item_s), speed if c is not base else "1 (reference)",
                      _seconds(c.cold_start_s), _seconds(c.prepare_s), _bytes(c.peak_rss_bytes),
                      _bytes(c.rss_above_baseline_bytes),
                      f"{eq.max_abs_diff:.3g}" if eq and eq.max_abs_diff is not None else "-",
                      f"{100 * eq.top1_agreement:.1f} %" if eq and eq.top1_agreement is not None else "-")
    out.print(t)
    name = f"{ref_run.runtime} {ref_run.precision}" if ref_run else "the reference"
    out.print(f"speed-up: {name}'s median time over this one's (above 1: faster). max |diff| and top-1 agreement "
              f"compare the outputs with {name}'s on the same input.")


@cli.command()
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda", help="cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, callback=_threads, help="CPU threads. Default: the physical cores.")
@click.option("--cached", is_flag=True, help="Show the cached peaks of this machine without measuring.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def machine(device, threads, cached, fmt):
    """Measure this machine's peak fp32 FLOP/s (best of GEMM and convolution probes) and memory bandwidth.

    The result is cached per machine fingerprint (in $DNNBENCH_CACHE_DIR, default ~/.cache/dnnbench);
    `dnnbench bench` reads it to report achieved FLOP/s as a % of this peak.
    """
    from dnnbench.core.measurements import check_device_name

    check_device_name(device)
    from dnnbench import api
    from dnnbench.host.machine import cache_path

    if not cached:
        err.print("measuring peak FLOP/s and bandwidth (about 10 s)...")
    peaks = api.machine(device, threads, cached=cached)
    if fmt == "json":
        _dump([p.to_dict() for p in peaks])
        return
    for p in peaks:
        t = Table(title=f"{p.device}, {p.threads} threads — machine {p.fingerprint}, measured {p.measured_at}",
                  title_justify="left")
        for c in ("probe", "work per call", "best time", "rate"):
            t.add_column(c, justify="left" if c == "probe" else "right")
        for pr in p.probes:
            if pr["kind"] == "bandwidth":
                t.add_row(pr["name"], _bytes(pr["bytes"]), _seconds(pr["best_s"]), f"{pr['bytes_per_s'] / 1e9:.1f} GB/s")
            else:
                t.add_row(pr["name"], _si(pr["flops"], "FLOP"), _seconds(pr["best_s"]),
                          f"{pr['flops_per_s'] / 1e9:.1f} GFLOP/s")
        out.print(t)
        bw = f"{p.bandwidth_bytes_per_s / 1e9:.1f} GB/s" if p.bandwidth_bytes_per_s else "unavailable"
        out.print(f"peak fp32: {p.peak_flops_per_s / 1e9:.1f} GFLOP/s ({p.best_probe}); GEMM "
                  f"{p.gemm_flops_per_s / 1e9:.1f}, convolution {p.conv_flops_per_s / 1e9:.1f} GFLOP/s; copy bandwidth {bw}")
    out.print(f"cache: {cache_path(peaks[0].fingerprint)}")


# ---- study and export ---------------------------------------------------------------------------

@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--batch-sizes", default=None, metavar="1,2,4",
              help="Batch sizes [default: 1,2,4,8,16,32,64; with --quick 1,16].")
@click.option("--metrics", default="profile,time,memory", show_default=True,
              help="Metric groups: profile, time, memory, power, accuracy (needs --data).")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda")
@click.option("--threads", type=int, default=None, help="Threads for inference [default: physical cores].")
@click.option("--store", default=None, metavar="URL|PATH",
              help="Results store: a SQLite path or SQLAlchemy URL [default: $DNNBENCH_STORE or ~/.local/share/dnnbench/results.db].")
@click.option("--budget", default=None, metavar="30m", help="Stop cleanly between cells after this long.")
@click.option("--force", is_flag=True, help="Re-measure cells already in the store.")
@click.option("--quick", is_flag=True, help="A small preset for demos: batch sizes 1,16, 5 % CI, 2 s per cell.")
@click.option("--target-ci", type=float, default=None, help="Relative CI of the median to reach [default 0.02].")
@click.option("--max-time-per-cell", type=float, default=None, metavar="S", help="Time cap per cell [default 10].")
@click.option("--input-size", default=None, metavar="H[,W]", help="Image size in pixels (default: native).")
@click.option("--name", default=None, help="A label stored with every cell of this study.")
@click.option("--data", default=None, metavar="DIR", help="Validation images for the accuracy group.")
@click.option("--labels", default=None, metavar="FILE", help="Labels file for a flat --data folder.")
@click.option("--weights", default="DEFAULT", show_default=True,
              help="Weights for accuracy cells: DEFAULT (local cache), a tag or a checkpoint path.")
@click.option("--limit", type=int, default=None, help="Accuracy on a class-stratified subset of N images.")
@click.option("--sensors", default="auto", show_default=True, metavar="auto|none|nvml,rapl,jetson|meter:FILE",
              help="Power sensors for the power group.")
@click.option("--estimate-power", type=float, default=None, metavar="TDP_W",
              help="When no sensor measures, store a labelled estimate from this TDP in watts.")
@click.option("--runtime", default=None, metavar="eager|compile|onnxruntime|all",
              help="Runtimes to measure, a comma list or all [default: eager; onnxruntime for onnx: models].")
@click.option("--precision", default=None, metavar="fp32|fp16|bf16|int8|all",
              help="Precisions to measure, a comma list or all [default: fp32].")
def study(models, batch_sizes, metrics, device, store, budget, force, quick, target_ci, max_time_per_cell,
          threads, input_size, name, data, labels, weights, limit, sensors, estimate_power, runtime, precision):
    """Run the whole sweep (MODELS or sets x batch sizes x metric groups) into the results store.

    Resumable: cells already stored for the same configuration and machine are skipped.
    Ctrl-C or a kill keeps every finished cell.
    """
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from dnnbench import runner as study_mod

    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads} is not allowed", "at least one thread must run the model",
                         "use --threads 1 or more")
    sizes = None
    if batch_sizes:
        from dnnbench.core.measurements import parse_batch_sizes

        sizes = parse_batch_sizes(batch_sizes)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
    state = {"task": None}

    def on_event(kind, data):
        if kind == "open":
            err.print(f"store: {data['store']}")
            for label, why in data["unavailable"]:
                err.print(f"unavailable: {label}: {why}")
        elif kind == "plan":
            if data["skipped"]:
                err.print(f"{data['skipped']} cells already in the store for this configuration and machine: skipped"
                          " (--force re-measures them)")
            state["task"] = bar.add_task("study", total=data["todo"])
            bar.start()
        elif kind == "start" and state["task"] is not None:
            p = data["plan"]
            conf = (p.config.get("runtime", "eager"), p.config.get("precision", "fp32"))
            extra = "" if conf == ("eager", "fp32") or p.group == "profile" else f" {conf[0]} {conf[1]}"
            bar.update(state["task"], description=f"{p.label} b={p.batch_size} {p.group}{extra}")
        elif kind == "done" and state["task"] is not None:
            bar.advance(state["task"])
            row = data["row"]
            if row.status != "ok":
                err.print(f"{row.model_ref} batch {row.batch_size} {row.metric_group}: {row.status}: {row.message}")

    try:
        summary = study_mod.study(list(models), batch_sizes=sizes, metrics=metrics, device=device, store=store,
                                  budget=budget, force=force, quick=quick, threads=threads, target_ci=target_ci,
                                  max_time_per_cell=max_time_per_cell, input_size=input_size, name=name,
                                  on_event=on_event, data=data, labels=labels, weights=weights,
                                  accuracy_limit=limit, sensors=sensors, estimate_power_w=estimate_power,
                                  runtimes=runtime, precisions=precision)
    finally:
        if state["task"] is not None:  # stopping a bar that never started prints an empty line
            bar.stop()
    statuses = ", ".join(f"{v} {k}" for k, v in sorted(summary.statuses.items())) or "none"
    out.print(f"study: {summary.measured} cells measured ({statuses}), {summary.skipped_existing} already stored, "
              f"{summary.left} left, in {_seconds(summary.wall_s)}; store: {summary.store}")
    if summary.stopped == "budget":
        out.print(f"stopped: the budget {budget} is spent; {summary.left} cells left. Run the same command again to resume.")
    elif summary.stopped == "interrupted":
        _fail(f"interrupted; {summary.measured} finished cells are stored, {summary.left} left. "
              "Run the same command again to resume.", 130)


@cli.command()
@click.option("--store", default=None, metavar="URL|PATH", help="Results store [default: $DNNBENCH_STORE or the default file].")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "parquet"]), default="csv", show_default=True)
@click.option("--output", "-o", default=None, metavar="FILE", help="Write here instead of standard output.")
def export(store, fmt, output):
    """Export the store as one tidy table: a row per cell, a column per metric (units in column names)."""
    from dnnbench import runner as study_mod

    df = study_mod.load_results(store)
    if df.empty:
        raise InputError("the store holds no results", "nothing has been measured into it yet",
                         "run e.g. `dnnbench study paper --quick` first")
    for col in ("input_shape", "warnings"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: json.dumps(v) if v is not None else None)
    if fmt == "parquet":
        if not output:
            raise InputError("parquet needs --output FILE", "parquet is a binary format", "add --output results.parquet")
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("pyarrow is needed for --format parquet", "it is an optional extra",
                                    "pip install 'dnnbench[parquet]'") from exc
        df.to_parquet(output, index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", date_format="iso", indent=2)
        _write_text(text, output)
    else:
        _write_text(df.to_csv(index=False), output)
    if output:
        err.print(f"wrote {len(df)} rows to {output}")


def _write_text(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


# ---- pick and report: answers from the store -----------------------------------------------------

@cli.command()
@click.option("--store", default=None, metavar="URL|PATH", help="Results store [default: $DNNBENCH_STORE or the default file].")
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, help="Batch size the model will run at.")
@click.option("--max-latency-ms", type=float, default=None, metavar="MS", help="Median time to run one batch.")
@click.option("--min-throughput", type=float, default=None, metavar="IMAGES/S", help="Images per second (batch / latency).")
@click.option("--max-memory-mb", type=float, default=None, metavar="MIB",
              help="Peak memory of the run in MiB (CPU: process peak RSS; GPU: CUDA peak allocated).")
@click.option("--max-energy-mj", type=float, default=None, metavar="MJ", help="Energy per image in millijoules (idle included).")
@click.option("--max-power-w", type=float, default=None, metavar="W", help="Mean power while running.")
@click.option("--min-top1", type=float, default=None, metavar="FRACTION|%", help="Top-1: 0.7 or 70 (values above 1 are percent).")
@click.option("--where", multiple=True, metavar="METRIC<=VALUE",
              help="Any stored metric, SI units, repeatable: --where 'latency_p90_s<=0.05'.")
@click.option("--objective", default="top1", show_default=True, metavar="METRIC",
              help="What 'best' maximises or minimises: top1, throughput_items_per_s, latency_median_s, "
                   "memory_total_bytes, energy_per_item_j, ...")
@click.option("--device", default=None, metavar="cpu|cuda", help="Setup to use [default: the one with most cells].")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def pick(store, batch_size, max_latency_ms, min_throughput, max_memory_mb, max_energy_mj, max_power_w, min_top1,
         where, objective, device, fmt):
    """The most accurate stored model meeting every budget, the Pareto set, and why each other model loses.

    Measured values where the cell was measured; otherwise predictions from the setup's cost model
    (time from MACs, memory from the static estimate), marked "pred" with their held-out error.
    Exit code 0: a model fits; 3: no model fits (the answer says which constraint binds); 2: bad input.
    """
    from dnnbench import api

    res = api.pick(store, batch_size=batch_size, max_latency_ms=max_latency_ms, min_throughput=min_throughput,
                   max_memory_mb=max_memory_mb, max_energy_mj=max_energy_mj, max_power_w=max_power_w,
                   min_top1=min_top1, where=where, objective=objective, device=device)
    if fmt == "json":
        _dump(res.to_dict())
    else:
        _render_pick(res)
    if res.exit_code:
        sys.exit(res.exit_code)


def _pick_value(c, metric: str) -> str:
    from dnnbench.analysis import units

    v = c.values.get(metric)
    if v is None or v.value is None:
        return "-"
    text = units.metric(metric, v.value)
    if v.source == "predicted":
        text += " pred " + ("±?" if v.error is None else f"±{100 * v.error:.{1 if v.error < 0.01 else 0}f} %")
    return text


def _render_pick(res) -> None:
    from dnnbench.analysis import units

    where = f"on {res.setup.label}" if res.setup else "(nothing measured on a device: published figures only)"
    cons = ", ".join(c.given for c in res.constraints) or "none"
    out.print(f"pick at batch {res.batch_size} {where}; objective: {res.objective}; constraints: {cons}")
    cols = [("top-1", "top1"), ("latency", "latency_median_s"), ("images/s", "throughput_items_per_s"),
            ("memory", "memory_total_bytes"), ("power", "power_w"), ("energy/image", "energy_per_item_j")]
    extra = [c.metric for c in res.constraints if c.metric not in {m for _, m in cols}]
    if res.objective not in {m for _, m in cols}:
        extra.append(res.objective)
    cols += [(m, m) for m in dict.fromkeys(extra)]
    t = Table(title_justify="left")
    t.add_column("model")
    for head, _ in cols:
        t.add_column(head, justify="right")
    t.add_column("verdict")
    for c in res.candidates:
        if res.best is not None and c is res.best:
            verdict = Text("best", style="bold green") + (" · Pareto" if c.model_ref in res.pareto else "")
        elif c.feasible:
            verdict = "fits" + (" · Pareto" if c.model_ref in res.pareto else "")
        else:
            parts = []
            for v in c.violations:
                if v.excess is None:
                    parts.append(f"{v.constraint.given}: {v.value.note or 'unknown'}")
                elif v.constraint.metric.endswith(("top1", "top5")):  # accuracy falls short in points, not percent
                    parts.append(f"breaks {v.constraint.given} by {100 * v.excess:.1f} points")
                else:
                    rel = f" ({100 * v.excess_rel:+.0f} %)" if v.excess_rel is not None else ""
                    parts.append(f"breaks {v.constraint.given} by {units.metric(v.constraint.metric, v.excess)}{rel}")
            verdict = "; ".join(parts)
        top1 = _pick_value(c, "top1")
        src = c.values.get("top1")
        if src is not None and src.source not in ("measured", "predicted"):
            top1 += f" ({src.source})"
        t.add_row(c.model, top1, *[_pick_value(c, m) for _, m in cols[1:]], verdict,
                  style=None if c.feasible else "dim")
    out.print(t)
    if res.best is not None:
        b = res.best
        shown = [f"{label} {_pick_value(b, m)}" for label, m in (("top-1", "top1"), ("latency", "latency_median_s"),
                                                                  ("throughput", "throughput_items_per_s"),
                                                                  ("memory", "memory_total_bytes"))
                 if b.get(m) is not None]
        out.print(f"best: {b.model} — " + ", ".join(shown))
    else:
        out.print("no model meets every constraint.")
        for bnd in res.binding[:3]:
            alone = bnd["only_obstacle_for"]
            out.print(f"  {bnd['constraint']} rejects {bnd['rejects']} model(s)"
                      + (f"; relaxing it alone would admit {', '.join(a.removeprefix('torchvision:') for a in alone)}" if alone else ""))
        if res.closest:
            out.print("  closest: " + ", ".join(c.model for c in res.closest))
    if res.pareto:
        out.print(f"Pareto set ({', '.join(res.pareto_axes)}): " + ", ".join(p.removeprefix("torchvision:") for p in res.pareto))
    if any(c.predicted for c in res.candidates) and res.cost_model is not None:
        out.print("pred: predicted by the cost model fitted on the measured models of this setup at this batch size; "
                  "± is the median leave-one-out error (? = fewer than 3 models measured, error unknown).")
    for note in res.notes:
        out.print(f"note: {note}")


@cli.command()
@click.option("--store", default=None, metavar="URL|PATH", help="Results store [default: $DNNBENCH_STORE or the default file].")
@click.option("--out", "out_dir", default="dnnbench-report", show_default=True, metavar="DIR",
              help="Folder for report.html, figures/ (PNG and SVG) and findings.json.")
@click.option("--device", default=None, metavar="cpu|cuda", help="Setup to draw [default: the one with most cells].")
def report(store, out_dir, device):
    """Write the HTML report: findings with numbers, the paper's figures, results, environment, warnings.

    One self-contained file (figures inline, no network); prints its path on the last line.
    """
    from dnnbench import api

    res = api.report(store, out_dir, device=device)
    for f in res.findings:
        if f.available:
            err.print(Text.assemble((f.title, "bold"), f": {f.text}"), soft_wrap=True)
    missing = [f.title for f in res.figures if f.no_data]
    if missing:
        err.print(f"{len(missing)} of {len(res.figures)} figures have no data (each says why): {'; '.join(missing)}", soft_wrap=True)
    click.echo(str(res.path.resolve()))


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line per user mistake, a non-zero exit, never a traceback."""
    try:
        cli.main(args=argv, prog_name="dnnbench", standalone_mode=False)
    except DnnbenchError as exc:
        _fail(exc.one_line(), exc.exit_code)
    except click.UsageError as exc:
        hint = f" Run `{exc.ctx.command_path} --help`." if exc.ctx else ""
        _fail(f"{exc.format_message().rstrip('.')}.{hint}", 2)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted; results measured so far are kept.", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug in dnnbench, not a user mistake
        if os.environ.get("DNNBENCH_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _fail(f"internal error {type(exc).__name__}: {first}. Please report it; "
              "set DNNBENCH_DEBUG=1 to see the traceback.", 1)
