"""Command line: parse -> api -> render -> exit code. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console
from rich.table import Table

from dnnbench.core.version import __version__
from dnnbench.core.errors import DnnbenchError, InputError

# Piped output (files, CI logs) gets a wide table instead of rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)


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
    t.add_row("counted on", "meta tensors (no compute)" if p.mode == "meta" else "real CPU tensors")
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
