"""`dnnbench study`: the whole sweep into the results store, resumable."""

from __future__ import annotations

import click

from dnnbench.cli.output import command, fail
from dnnbench.cli.params import (BATCH_SIZES, LIMIT, PROCESSES, SECONDS, TARGET_CI, form_option, store_option,
                                 threads_option)
from dnnbench.cli.render import study as render


@command()
@click.argument("models", nargs=-1, required=True)
@click.option("--batch-sizes", type=BATCH_SIZES, default=None, metavar="1,2,4",
              help="Batch sizes [default: 1,2,4,8,16,32,64; with --quick 1,16].")
@click.option("--metrics", default="profile,time,memory", show_default=True,
              help="Metric groups: profile, time, memory, power, accuracy (needs --data).")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda")
@threads_option(help="Threads for inference [default: physical cores].")
@store_option(help="Results store: a SQLite path or SQLAlchemy URL "
                   "[default: $DNNBENCH_STORE or ~/.local/share/dnnbench/results.db].")
@click.option("--budget", default=None, metavar="30m", help="Stop cleanly between cells after this long.")
@click.option("--force", is_flag=True, help="Re-measure cells already in the store.")
@click.option("--quick", is_flag=True, help="A small preset for demos: batch sizes 1,16, 5 % CI, 2 s per cell.")
@click.option("--target-ci", type=TARGET_CI, default=None, help="Relative CI of the median to reach [default 0.02].")
@click.option("--max-time-per-cell", type=SECONDS, default=None, metavar="S", help="Time cap per cell [default 10].")
@click.option("--processes", type=PROCESSES, default=None, metavar="N",
              help="Worker processes per bench cell, each sampling a share of the cap when calls are fast "
                   "enough [default: 5 for eager, else 1].")
@click.option("--input-size", default=None, metavar="H[,W]", help="Image size in pixels (default: native).")
@click.option("--name", default=None, help="A label stored with every cell of this study.")
@click.option("--data", default=None, metavar="DIR", help="Validation images for the accuracy group.")
@click.option("--labels", default=None, metavar="FILE", help="Labels file for a flat --data folder.")
@click.option("--annotations", default=None, metavar="FILE|DIR",
              help="Detection: COCO annotations JSON; segmentation: the mask folder (accuracy group).")
@click.option("--weights", default="DEFAULT", show_default=True,
              help="Weights for accuracy cells: DEFAULT (local cache), a tag or a checkpoint path.")
@click.option("--limit", "accuracy_limit", type=LIMIT, default=None, help="Accuracy on a class-stratified subset of N images.")
@click.option("--sensors", default="auto", show_default=True, metavar="auto|none|nvml,rapl,jetson|meter:FILE",
              help="Power sensors for the power group.")
@click.option("--estimate-power", "estimate_power_w", type=float, default=None, metavar="TDP_W",
              help="When no sensor measures, store a labelled estimate from this TDP in watts.")
@click.option("--runtime", "runtimes", default=None, metavar="eager|compile|onnxruntime|all",
              help="Runtimes to measure, a comma list or all [default: eager; onnxruntime for onnx: models].")
@click.option("--precision", "precisions", default=None, metavar="fp32|fp16|bf16|int8|int8-dynamic|all",
              help="Precisions to measure, a comma list or all [default: fp32].")
@click.option("--calibration", default=None, metavar="DIR",
              help="int8 only: calibrate static int8 on the images in DIR (any depth, sorted), through the model's "
                   "own preprocessing [default: generated inputs, with a warning].")
@click.option("--calibration-count", type=LIMIT, default=None, metavar="N",
              help="int8 only: how many calibration images [default: the first 100 of DIR; 4 generated batches].")
@form_option()
# fleet (dnnbench[fleet]): the same study on every dnnbench node of a Ray cluster, into one store
@click.option("--cluster", default=None, metavar="HOST:PORT",
              help="Run the study on the dnnbench nodes of this Ray cluster (see `dnnbench node start`).")
@click.option("--on", "on", default="all", show_default=True, metavar="all|cpu|cuda|SETUP",
              help="With --cluster: the setups to measure on (a setup's name, node name or fingerprint).")
def study(models, store, **settings):
    """Run the whole sweep (MODELS or sets x batch sizes x metric groups) into the results store.

    Resumable: cells already stored for the same configuration and machine are skipped.
    Ctrl-C or a kill keeps every finished cell.
    """
    from dnnbench import runner

    cluster, on = settings.pop("cluster"), settings.pop("on")
    # every option but --store (and --cluster/--on) is a StudyConfig field of the same name (the click dests say so)
    config = runner.StudyConfig(**settings)
    if cluster is not None:
        from dnnbench.cli import fleet

        return fleet.run_study(models, config, store, cluster, on)
    with render.progress() as on_event:
        summary = runner.study(list(models), config, store=store, on_event=on_event)
    render.summary(summary, config.budget)
    if summary.stopped == "interrupted":
        fail(f"interrupted; {summary.measured} finished cells are stored, {summary.left} left. "
             "Run the same command again to resume.", 130)
