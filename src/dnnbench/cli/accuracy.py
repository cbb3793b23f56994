"""`dnnbench accuracy`: top-1/top-5, box mAP or mIoU measured on the user's validation images."""

from __future__ import annotations

import click

from dnnbench.cli.output import command, dump
from dnnbench.cli.params import format_option
from dnnbench.cli.render import accuracy as render


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
@format_option()
def accuracy(model, data, fmt, **settings):
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
