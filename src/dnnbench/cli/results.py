"""Answers from the results store: `dnnbench export`, `pick` and `report`."""

from __future__ import annotations

import json
import sys

import click

from dnnbench.cli.output import command, dump, emit, err
from dnnbench.cli.params import format_option, store_option
from dnnbench.cli.render import pick as render_pick
from dnnbench.cli.render import study as render_study
from dnnbench.core.errors import InputError, MissingExtraError


@command()
@store_option()
@format_option(click.Choice(["csv", "json", "parquet"]), default="csv")
@click.option("--output", "-o", default=None, metavar="FILE", help="Write here instead of standard output.")
def export(store, fmt, output):
    """Export the store as one tidy table: a row per cell, a column per metric (units in column names)."""
    from dnnbench import runner

    df = runner.load_results(store)
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
        from dnnbench.api import write_output  # a path that cannot be written is one line, not a traceback
        write_output(output, lambda fh: df.to_parquet(fh, index=False))
    elif fmt == "json":
        _write_text(df.to_json(orient="records", date_format="iso", indent=2), output)
    else:
        _write_text(df.to_csv(index=False), output)
    if output:
        err.print(f"wrote {len(df)} rows to {output}")


def _write_text(text: str, output: str | None) -> None:
    if output:
        from dnnbench.api import write_output
        write_output(output, text)
    else:
        emit(text, nl=False)


@command()
@store_option()
@click.option("--batch-size", "-b", type=int, default=1, show_default=True,  # checked once, by Budget
              help="Batch size the model will run at.")
@click.option("--max-latency-ms", type=float, default=None, metavar="MS", help="Median time to run one batch.")
@click.option("--min-throughput", type=float, default=None, metavar="IMAGES/S", help="Images per second (batch / latency).")
@click.option("--max-memory-mb", type=float, default=None, metavar="MIB",
              help="Peak memory of the run in MiB (CPU: process peak RSS; GPU: CUDA peak allocated).")
@click.option("--max-artifact-mb", type=float, default=None, metavar="MIB",
              help="Size of the deployable file in MiB (state dict for eager/compile, .onnx for onnxruntime).")
@click.option("--max-energy-mj", type=float, default=None, metavar="MJ", help="Energy per image in millijoules (idle included).")
@click.option("--max-power-w", type=float, default=None, metavar="W", help="Mean power while running.")
@click.option("--min-top1", type=float, default=None, metavar="FRACTION|%", help="Top-1: 0.7 or 70 (values above 1 are percent).")
@click.option("--min-map", type=float, default=None, metavar="FRACTION|%",
              help="Box mAP@[.5:.95] of detectors: 0.3 or 30 (only detection models are candidates).")
@click.option("--min-miou", type=float, default=None, metavar="FRACTION|%",
              help="mIoU of segmentation models: 0.6 or 60 (only segmentation models are candidates).")
@click.option("--max-epe", type=float, default=None, metavar="PX",
              help="End-point error of optical flow models in pixels (only optical flow models are candidates).")
@click.option("--task", default=None, metavar="TASK",
              help="Only models of this task: classification, detection, segmentation, video, ... "
                   "[default: every task; the task --min-map/--min-miou imply].")
@click.option("--where", multiple=True, metavar="METRIC<=VALUE",
              help="Any stored metric, SI units, repeatable: --where 'latency_p90_s<=0.05'.")
@click.option("--objective", default="top1", show_default=True, metavar="METRIC",
              help="What 'best' maximises or minimises: top1 (with --task: the task's metric, e.g. box_map), "
                   "throughput_items_per_s, latency_median_s, memory_total_bytes, energy_per_item_j, ...")
@click.option("--device", default=None, metavar="cpu|cuda", help="Setup to use [default: the one with most cells].")
@click.option("--setup", default=None, metavar="any|NAME",
              help="any: rank every setup's models (answers with model and setup); NAME: one setup by its name "
                   "(as `dnnbench report` shows it) or fingerprint prefix [default: the one with most cells].")
@format_option()
def pick(store, fmt, **constraints):
    """The most accurate stored model meeting every budget, the Pareto set, and why each other model loses.

    Measured values where the cell was measured; otherwise predictions from the setup's cost model
    (time from MACs, memory from the static estimate), marked "pred" with their held-out error.
    Exit code 0: a model fits; 3: no model fits (the answer says which constraint binds); 2: bad input.
    """
    from dnnbench import api
    from dnnbench.analysis.pick import Budget

    res = api.pick(store, Budget(**constraints))  # every option but --store/--format is a Budget field
    if fmt == "json":
        dump(res.to_dict())
    else:
        render_pick.pick(res)
    if res.exit_code:
        sys.exit(res.exit_code)


@command()
@store_option()
@click.option("--out", "out_dir", default="dnnbench-report", show_default=True, metavar="DIR",
              help="Folder for report.html, figures/ (PNG and SVG) and findings.json.")
@click.option("--device", default=None, metavar="cpu|cuda", help="Setup to draw [default: the one with most cells].")
def report(store, out_dir, device):
    """Write the HTML report: findings with numbers, the paper's figures, results, environment, warnings.

    One self-contained file (figures inline, no network); prints its path on the last line.
    """
    from dnnbench import api

    res = api.report(store, out_dir, device=device)
    render_study.report(res)
    click.echo(str(res.path.resolve()))
