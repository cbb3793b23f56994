"""`dnnbench profile` and `dnnbench models`: static figures, no real compute."""

from __future__ import annotations

import click

from dnnbench.cli.output import command, dump
from dnnbench.cli.params import BATCH_SIZE, form_option, format_option
from dnnbench.cli.render import profile as render
from dnnbench.core.errors import InputError


@command()
@click.argument("models", nargs=-1, required=True)
@click.option("--batch-size", "-b", type=BATCH_SIZE, default=1, show_default=True, help="Batch size to count at.")
@click.option("--input-size", default=None, metavar="H[,W]",
              help="Image size in pixels (default: the model's native size from its weights metadata).")
@click.option("--layers", is_flag=True, help="Also show per-layer rows and per-op totals.")
@form_option()
@format_option()
def profile(models, batch_size, input_size, layers, form, fmt):
    """Exact params, MACs/FLOPs and memory estimate of MODELS, without running real compute.

    MODELS are references (resnet50, torchvision:vit_b_16, timm:resnet50.a1_in1k,
    python:path/to/file.py:factory) or sets (paper, torchvision, detection, ...: see `dnnbench models --help`).
    """
    from dnnbench import api
    from dnnbench.sources import sets

    if len(models) == 1 and not sets.is_set(models[0]):
        prof = api.profile(models[0], batch_size=batch_size, input_size=input_size, form=form)
        if fmt == "json":
            dump(prof.to_dict(layers=layers))
        else:
            render.profile(prof, layers)
        return
    entries = api.expand_models(list(models))
    results = []
    with render.progress(len(entries)) as (on_start, advance):
        for res in api.profile_many(list(models), batch_size, input_size, on_start=on_start, form=form):
            results.append(res)
            advance()
    if fmt == "json":
        dump(render.profile_json(results, layers))
    else:
        render.profile_table(results, batch_size)


@command()
@click.argument("pattern", required=False)
@click.option("--task", default=None, metavar="TASK",
              help="Only models of this task: classification, detection, instance_segmentation, "
                   "keypoint_detection, segmentation, video or optical_flow.")
@format_option()
def models(pattern, task, fmt):
    """List torchvision models of every task with published params, GMACs and quality (offline, from weights
    metadata): top-1 for classifiers, box/mask/keypoint mAP for detectors, mIoU and pixel accuracy for
    segmentation, clip top-1 for video, end-point error for optical flow.

    PATTERN is a substring or glob over torchvision names (e.g. 'resnet*'), or a set name (paper, torchvision,
    classification, detection, segmentation, video, optical_flow, quantized).
    """
    from dnnbench import api
    from dnnbench.core.specs import TASKS

    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}", f"tasks are {', '.join(TASKS)}", "use e.g. --task detection")
    rows = api.list_models(pattern, task)
    if not rows:
        what = " and ".join(x for x in (pattern and f"{pattern!r}", task and f"task {task}") if x)
        raise InputError(f"no model matches {what}", "the pattern matched nothing" if not task
                         else "no model of that task matches the pattern",
                         "run `dnnbench models` without a pattern to see them all")
    if fmt == "json":
        dump(rows)
    else:
        render.models(rows)
