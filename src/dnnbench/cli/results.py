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
@click.argument("model", required=False)
@store_option()
@format_option(click.Choice(["csv", "json", "parquet"]), default="csv")
@click.option("--output", "-o", default=None, metavar="FILE", help="Write here instead of standard output.")
@click.option("--runtime", default=None, metavar="eager|compile|onnxruntime|executorch|openvino",
              help="With MODEL: the runtime whose deployable file to write [default: eager].")
@click.option("--precision", default="fp32", show_default=True, metavar="fp32|fp16|bf16|int8|int8-dynamic",
              help="With MODEL: the precision (int8: static, calibrated).")
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, help="With MODEL: the batch size.")
@click.option("--out", default=None, metavar="DIR",
              help="With MODEL: the folder to write [default: MODEL-RUNTIME-PRECISION-bN here].")
@click.option("--weights", default=None, metavar="TAG|FILE", help="With MODEL: weights to load [default: random].")
@click.option("--calibration", default="", metavar="DIR",
              help="With MODEL and int8: a folder of images to calibrate on [default: generated inputs].")
@click.option("--calibration-count", type=int, default=0, metavar="N", help="With --calibration: how many images.")
@click.option("--input-size", default=None, metavar="H[,W]", help="With MODEL: image size in pixels.")
def export(model, store, fmt, output, **artifact):
    """Export the store as one tidy table (a row per cell, a column per metric), or, given MODEL, write its
    deployable file for one --runtime/--precision into --out with manifest.json and a reference input/output.

    \b
    dnnbench export -o results.csv
    dnnbench export resnet18 --runtime onnxruntime --precision int8 --out resnet18-int8
    """
    # artifact: runtime, precision, batch_size, out, weights, calibration, calibration_count, input_size
    if model is not None:
        return _export_model(model, output, **artifact)
    given = [f"--{k.replace('_', '-')}" for k in ("runtime", "out", "weights", "calibration", "input_size")
             if artifact[k]]
    if given:
        raise InputError(f"{given[0]} needs a MODEL", "without MODEL, export writes the store's results table",
                         f"name the model: dnnbench export MODEL {given[0]} ...")
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


def _export_model(model, output, runtime, precision, batch_size, out, weights, calibration, calibration_count,
                  input_size) -> None:
    from dnnbench import api

    if output:
        raise InputError("--output is for the results table", "with MODEL, export writes a folder",
                         "use --out DIR")
    art = api.export_model(model, runtime, precision, batch_size=batch_size, out=out, weights=weights,
                           calibration=calibration, calibration_count=calibration_count, input_size=input_size,
                           on_progress=lambda what: err.print(what, markup=False))
    m = art.manifest
    eq = m.get("equivalence_vs_eager_fp32") or {}
    for f in m["artifact_files"]:
        err.print(f"wrote {f['file']}: {f['bytes']} bytes", markup=False)
    err.print(f"{m['model']} {m['runtime']} {m['precision']} batch {m['batch_size']} -> {art.out_dir} "
              f"({m['artifact_bytes']} bytes; manifest.json, reference input and output"
              + (f"; max |diff| vs eager fp32 {eq['max_abs_diff']:.3g}" if eq.get("max_abs_diff") is not None
                 else "") + ")", markup=False)
    for w in m["warnings"]:
        err.print(f"warning: {w['message']}", markup=False)


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
@click.option("--max-accuracy-drop", type=float, default=None, metavar="POINTS",
              help="Top-1 the setup's runtime/precision may lose against eager fp32, in percentage points, as "
                   "measured on the same images (`accuracy --runtime/--precision`); unmeasured: excluded, said.")
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
@click.option("--setup", default=None, metavar="NAME",
              help="The setup whose figures and findings lead the report: its name (as the report's "
                   "'Setups compared' and `pick` show it) or fingerprint prefix [default: the one with most cells].")
def report(store, out_dir, device, setup):
    """Write the HTML report: findings with numbers, the paper's figures, results, environment, warnings.

    One self-contained file (figures inline, no network); prints its path on the last line.
    """
    from dnnbench import api

    res = api.report(store, out_dir, device=device, setup=setup)
    render_study.report(res)
    click.echo(str(res.path.resolve()))
