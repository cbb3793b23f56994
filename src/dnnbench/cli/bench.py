"""`dnnbench bench`: latency, throughput, memory and power of one model at each batch size."""

from __future__ import annotations

import sys

import click

from dnnbench.cli.output import command, dump, err, fail
from dnnbench.cli.params import (BATCH_SIZES, DEVICE, LIMIT, MIN_SAMPLES, PROCESSES, SECONDS, TARGET_CI,
                                 form_option, format_option, threads_option)
from dnnbench.cli.render import bench as render


@command()
@click.argument("model")
@click.option("--batch-sizes", type=BATCH_SIZES, default="1,2,4,8,16,32,64", show_default=True,
              metavar="B1,B2,...", help="Batch sizes, one cell each.")
@click.option("--device", type=DEVICE, default="cpu", show_default=True, metavar="cpu|cuda", help="cpu, cuda or cuda:N.")
@threads_option()
@click.option("--target-ci", type=TARGET_CI, default=0.02, show_default=True,
              help="Stop sampling when the 95 % CI of the median is within this fraction of it.")
@click.option("--max-time-per-cell", type=SECONDS, default=10.0, show_default=True, metavar="S",
              help="Time cap of one cell in seconds (cold start and warm-up included).")
@click.option("--min-samples", type=MIN_SAMPLES, default=10, show_default=True, help="No CI-based stop before this.")
@click.option("--in-process", is_flag=True,
              help="Run all cells in this process: faster, but memory is not isolated per cell.")
@click.option("--input-size", default=None, metavar="H[,W]", help="Image size in pixels (default: native).")
@click.option("--sensors", default="auto", show_default=True, metavar="auto|none|nvml,rapl,jetson|meter:FILE",
              help="Power sensors, measured after each cell's timing (`dnnbench sensors` lists them).")
@click.option("--estimate-power", "estimate_power_w", type=float, default=None, metavar="TDP_W",
              help="When no sensor measures, report a labelled estimate from this TDP in watts.")
@click.option("--runtime", default=None, metavar="eager|compile|onnxruntime|all",
              help="What runs the model; a comma list or all compares them [default: eager; onnxruntime for onnx:].")
@click.option("--precision", default="fp32", show_default=True, metavar="fp32|fp16|bf16|int8|int8-dynamic|all",
              help="Numeric precision; a comma list or all. Non-reference runs are checked against eager fp32.")
@click.option("--calibration", default=None, metavar="DIR",
              help="int8 only: calibrate static int8 on the images in DIR (any depth, sorted), through the model's "
                   "own preprocessing [default: generated inputs, with a warning].")
@click.option("--calibration-count", type=LIMIT, default=None, metavar="N",
              help="int8 only: how many calibration images [default: the first 100 of DIR; 4 generated batches].")
@click.option("--processes", type=PROCESSES, default=None, metavar="N",
              help="Worker processes per cell, each sampling a share of the cap when calls are fast enough "
                   "[default: 5 for eager, else 1].")
@form_option()
@format_option()
def bench(model, runtime, precision, fmt, **settings):
    """Inference time, throughput and memory of MODEL at each batch size, measured on this machine.

    Each (model, batch size) cell runs in fresh worker processes: cold start apart, warm-up judged after
    the fact, then samples until the 95 % CI of the median is within --target-ci or --max-time-per-cell is
    spent. Fast cells pool several processes (--processes), since each process runs at a speed of its own.
    """
    from dnnbench import api
    from dnnbench.core.measurements import BenchConfig

    # every option but --runtime/--precision (which may list several) and --format is a BenchConfig field
    config = BenchConfig(**settings)
    # int8's calibration options: a mistake (no int8 asked for, no such folder) is one line before any cell
    folder, count = api.check_calibration(config.calibration, config.calibration_count, precision)
    config = config.with_(calibration=folder, calibration_count=count)
    configs, left_out = api.runtime_configs(model, runtime, precision, config.device)
    for label, why in left_out:
        err.print(f"left out: {label}: {why}", markup=False)
    runs = []
    for rt, prec in configs:
        with render.progress(config.max_time_per_cell) as on_event:
            calibration = {} if prec == "int8" else {"calibration": None, "calibration_count": None}
            runs.append(api.bench(model, config=config.with_(runtime=rt, precision=prec, **calibration),
                                  on_event=on_event))
        if runs[-1].interrupted:  # Ctrl-C: what finished is shown (and in the JSON), the rest is not run
            break
    if fmt == "json":
        dump(render.to_json(runs))
    else:
        render.runs(runs)
    if runs and runs[-1].interrupted:
        done = sum(len(r.cells) for r in runs)
        fail(f"interrupted: the {done} cells finished before Ctrl-C are shown above"
             f"{' (JSON: interrupted is true)' if fmt == 'json' else ''}; the cell in progress was not measured", 130)
    if not render.any_ok(runs):
        sys.exit(1)
