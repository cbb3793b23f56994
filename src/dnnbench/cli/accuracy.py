"""`dnnbench accuracy`: top-1/top-5, box mAP or mIoU measured on the user's validation images."""

from __future__ import annotations

import click

from dnnbench.cli.output import command, dump
from dnnbench.cli.params import format_option
from dnnbench.cli.render import accuracy as render
from dnnbench.core.errors import InputError


@command()
@click.argument("model")
@click.option("--data", default=None, metavar="DIR",
              help="Validation images: class folders (wnids), or a flat folder with --labels. "
                   "Without it, show the published figure only.")
@click.option("--weights", default="DEFAULT", show_default=True, metavar="DEFAULT|TAG|PATH|random",
              help="DEFAULT: the weights in the local torchvision/timm cache (a python factory's own); "
                   "a weights tag; a checkpoint file; random (to time the pipeline).")
# --limit, --batch-size and --workers are checked once, by AccuracyConfig (the same line as from the API)
@click.option("--limit", type=int, default=None, metavar="N", help="Evaluate a class-stratified subset of N images.")
@click.option("--batch-size", "-b", type=int, default=64, show_default=True)
@click.option("--workers", type=int, default=None, metavar="W",
              help="Decoding processes [default: one per CPU, at most 8; 0 decodes in this process].")
@click.option("--labels", default=None, metavar="FILE",
              help="Ground truth for a flat folder: one label per line (sorted file names) or 'FILENAME LABEL'.")
@click.option("--annotations", default=None, metavar="FILE|DIR",
              help="Detection: a COCO annotations JSON for the --data images. Segmentation: the folder of PNG "
                   "masks (class indices, 255 = ignore; default: --data's images/ and masks/).")
@click.option("--resamples", type=int, default=200, show_default=True,
              help="Bootstrap resamples of the images for the mAP / mIoU intervals.")
@click.option("--download-weights", is_flag=True, help="Allow downloading the weights if they are not cached.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit subset.")
@click.option("--runtime", default=None, metavar="R[,R...]|all",
              help="Also evaluate under these runtimes (eager, compile, onnxruntime, ...), each against eager fp32 "
                   "on the same images.")
@click.option("--precision", default=None, metavar="P[,P...]|all",
              help="Also evaluate at these precisions (fp16, bf16, int8, int8-dynamic) [default with --runtime: fp32].")
@click.option("--calibration", default=None, metavar="DIR",
              help="Static int8: calibrate on the images in DIR (not evaluated) [default: the images --limit left "
                   "out of --data].")
@click.option("--calibration-count", type=int, default=0, metavar="N", help="Static int8: calibrate on N images.")
@format_option()
def accuracy(model, data, fmt, runtime, precision, **settings):
    """Quality of MODEL measured on your validation set (--data), beside the published figure.

    By the model's task: classifiers top-1/top-5 (95 % Wilson intervals); detectors COCO box mAP@[.5:.95]
    and mAP@.5 (pycocotools, against --annotations FILE); segmentation mIoU and pixel accuracy (masks in
    --annotations DIR); these two with 95 % bootstrap intervals over images. Each model is fed through its
    own preprocessing (torchvision weights transforms, timm data config, a factory's preprocess; else a
    default the record names).
    """
    from dnnbench import api
    from dnnbench.core.accuracy import AccuracyConfig

    config = AccuracyConfig(**settings)  # every option but --data/--format is an AccuracyConfig field
    if data is None:
        rep = api.reported_accuracy(model)
        if fmt == "json":
            dump({"model": model, "reported": None if rep is None else rep.__dict__, "measured": None})
        else:
            render.published(model, rep)
        return
    if runtime is not None or precision is not None:
        with render.images_progress() as on_progress:
            results = api.accuracy_configs(model, data, runtime, precision, config, on_progress=on_progress)
        if fmt == "json":
            dump([r.to_dict() for r in results])
        else:
            configs_table(results)
        return
    if config.calibration or config.calibration_count:
        raise InputError("--calibration is for static int8 (--precision int8)", "eager fp32 is not quantized",
                         "add --precision int8, or drop --calibration")
    with render.images_progress() as on_progress:
        acc = api.accuracy(model, data, config, on_progress=on_progress)
    if fmt == "json":
        dump(acc.to_dict())
    elif hasattr(acc, "box_map"):
        render.detection(acc)
    elif hasattr(acc, "miou"):
        render.segmentation(acc)
    else:
        render.accuracy(acc)


def configs_table(results) -> None:
    """Each configuration's top-1/top-5 and, against eager fp32 on the same images, the top-1 difference in points
    with its 95 % interval, McNemar's exact p and the agreement of the top-1 classes."""
    from rich.table import Table

    from dnnbench.cli.output import out
    from dnnbench.core import units as u

    ref = results[0]
    t = Table(title=f"{ref.model} — {ref.images:,} images of {ref.data_dir}, batch {ref.batch_size}, {ref.device}",
              title_justify="left")
    for name in ("configuration", "top-1", "top-5", "Δ top-1 vs eager fp32 (95 % CI)", "McNemar p", "b / c",
                 "agreement", "time/image"):
        t.add_column(name, justify="left" if name == "configuration" else "right")
    k = "" if ref.top5_k == 5 else f" (top-{ref.top5_k})"
    for r in results:
        if not hasattr(r, "top1"):  # ConfigUnavailable
            t.add_row(r.config, r.reason, "", "", "", "", "", "")
            continue
        p = r.paired
        time_s = f"{1e3 * r.forward_per_image_s:.3g} ms" if r.forward_per_image_s is not None else "-"
        if p is None:
            t.add_row(f"{r.config} (reference)", u.pct(r.top1, 2), u.pct(r.top5, 2) + k, "-", "-", "-", "-", time_s)
        else:
            t.add_row(r.config, u.pct(r.top1, 2), u.pct(r.top5, 2) + k,
                      f"{p.delta_top1_points:+.2f} ({p.delta_ci_low_points:+.2f} to {p.delta_ci_high_points:+.2f})",
                      f"{p.p_value:.3g}", f"{p.b} / {p.c}", u.pct(p.agreement, 1), time_s)
    out.print(t)
    out.print("b: images eager fp32 gets right and the configuration wrong; c: the reverse. Δ in percentage points; "
              "time/image: the configuration's own forward passes in this run (batch "
              f"{ref.batch_size}), not a benchmark")
    for r in results:
        for note in dict.fromkeys(getattr(r, "notes", []) if r is ref else
                                  [n for n in getattr(r, "notes", []) if n not in ref.notes]):
            out.print(f"note ({r.config}): {note}" if r is not ref else f"note: {note}")
        if getattr(r, "calibration", ""):
            out.print(f"calibration ({r.config}): {r.calibration}")
