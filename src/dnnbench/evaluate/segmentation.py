"""mIoU and pixel accuracy of a semantic-segmentation model on an image folder and a mask folder.

Masks are PNGs of class indices (mode L or P; 255 = ignore) paired with the images by file stem. The model's
scores (``out`` of torchvision's dict, a tensor, or ``.logits``) are resized bilinearly to the mask's size
and arg-maxed; per image three class counts are kept (true positives, predicted, labelled pixels; numpy
``bincount``), so the dataset's confusion totals — and each bootstrap resample's — are sums of them.

torchvision's published mIoU resized the *masks* to the model's input size (nearest) instead; scoring at
the mask's own size is the usual convention and leaves the ground truth untouched, so a small difference
from the published figure is expected. Never imports ``dnnbench.sources``.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone

import torch

from dnnbench.core.accuracy import AccuracyConfig, SegmentationAccuracy, bootstrap_interval
from dnnbench.core.errors import DatasetError, DnnbenchError, InputError
from dnnbench.core.specs import LoadedModel
from dnnbench.core.version import __version__
from dnnbench.evaluate.imagedata import (IMAGENET_MEAN, IMAGENET_STD, MAX_LISTED, decode, describe_transform,
                                         is_image, timed_batches)

IGNORE = 255
MASK_MODES = ("L", "P", "I", "I;16", "1")
# A folder with images and masks side by side: (images, masks) sub-folder names, tried in order.
LAYOUTS = (("images", "masks"), ("JPEGImages", "SegmentationClass"), ("img", "ann"))


def find_folders(data_dir: str, masks: str | None) -> tuple[str, str]:
    """(image folder, mask folder): ``--data`` and ``--annotations``, or ``--data``'s images/ and masks/."""
    if not os.path.isdir(data_dir):
        raise DatasetError(f"--data {data_dir} does not exist", "no such directory", "check --data")
    if masks:
        if not os.path.isdir(masks):
            raise DatasetError(f"mask folder {masks} does not exist", "segmentation's --annotations is a folder of "
                               "PNG masks", "point --annotations at the folder of masks")
        return data_dir, masks
    for img, ann in LAYOUTS:
        if os.path.isdir(os.path.join(data_dir, img)) and os.path.isdir(os.path.join(data_dir, ann)):
            return os.path.join(data_dir, img), os.path.join(data_dir, ann)
    raise InputError("segmentation accuracy needs masks", f"no --annotations folder, and {data_dir} has none of "
                     + ", ".join(f"{i}/ + {a}/" for i, a in LAYOUTS),
                     "pass --annotations path/to/masks (PNG class indices, 255 = ignore, same stem as the image)")


def pair_files(images_dir: str, masks_dir: str, notes: list[str]) -> tuple[list[tuple[str, str]], int]:
    """(image, mask) pairs by stem with matching sizes, and how many images have no mask.

    Sizes are read from the file headers before any compute, so a mask of the wrong size stops the run at
    once, naming the file.
    """
    from PIL import Image

    with os.scandir(images_dir) as it:
        images = sorted(e.path for e in it if e.is_file() and is_image(e.name))
    with os.scandir(masks_dir) as it:
        masks = {os.path.splitext(e.name)[0]: e.path for e in it if e.is_file() and e.name.lower().endswith(".png")}
    if not images:
        raise DatasetError(f"no images in {images_dir}", "segmentation reads the images directly in --data",
                           "point --data at the folder of images")
    pairs, unpaired = [], []
    for p in images:
        m = masks.get(os.path.splitext(os.path.basename(p))[0])
        (pairs.append((p, m)) if m else unpaired.append(p))
    if not pairs:
        raise DatasetError(f"none of the {len(images)} images in {images_dir} has a mask in {masks_dir} "
                           f"(first image: {os.path.basename(images[0])}; {len(masks)} PNG masks there)",
                           "masks are paired with images by file stem (2007_000033.jpg <-> 2007_000033.png)",
                           "check that --data and --annotations belong together")
    if unpaired:
        notes.append(f"{len(unpaired)} image(s) have no mask of the same stem and are not scored "
                     f"(first: {os.path.basename(unpaired[0])})")
    unused = len(masks) - len(pairs)
    if unused:
        notes.append(f"{unused} mask(s) in {masks_dir} have no image and are not used")
    good = []
    for img, mask in pairs:
        try:
            with Image.open(img) as im:
                isize = im.size
            with Image.open(mask) as mm:
                msize, mode = mm.size, mm.mode
        except Exception:  # decoded (and counted corrupt) by the loop: one place says why
            good.append((img, mask))
            continue
        if msize != isize:
            raise DatasetError(f"mask {mask} is {msize[0]}x{msize[1]} but image {img} is {isize[0]}x{isize[1]}",
                               "a mask labels every pixel of its image",
                               "give masks of their image's size (PNG of class indices, 255 = ignore)")
        if mode not in MASK_MODES:
            raise DatasetError(f"mask {mask} is a {mode} image", "a mask holds one class index per pixel "
                               "(a grey-scale or palette PNG), not colours",
                               "convert colour masks to class indices (VOC's SegmentationClass PNGs are palette images)")
        good.append((img, mask))
    return good, len(unpaired)


class SegmentationPairs(torch.utils.data.Dataset):
    """(image tensor or None, mask (H, W) int64 or None, index, why it could not be read)."""

    def __init__(self, pairs: list[tuple[str, str]], transform):
        self.pairs, self.transform = pairs, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        img_path, mask_path = self.pairs[i]
        img, why = decode(img_path)
        if img is None:
            return None, None, i, why
        try:
            with Image.open(mask_path) as mm:
                mask = torch.from_numpy(np.array(mm, dtype=np.int64))
        except Exception as exc:
            return None, None, i, f"mask: {type(exc).__name__}: {str(exc)[:120]}"
        return self.transform(img), mask, i, None


def _keep(items):
    return items


def default_segmentation_transform():
    """The image as a tensor with ImageNet mean/std, at its own size (torchvision's preset less its resize)."""
    from torchvision import transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def scores_of(output) -> torch.Tensor:
    """The (batch, classes, h, w) scores of what a segmentation model returns."""
    if isinstance(output, dict) and "out" in output:
        output = output["out"]
    elif isinstance(output, dict) and "logits" in output:
        output = output["logits"]
    elif hasattr(output, "logits") and not isinstance(output, torch.Tensor):
        output = output.logits
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        got = type(output).__name__ + (f" of shape {list(output.shape)}" if isinstance(output, torch.Tensor) else "")
        raise InputError(f"the segmentation model returned a {got}", "mIoU needs (batch, classes, height, width) "
                         "scores (torchvision's dict['out'])", "make the model return class scores per pixel")
    return output


def image_counts(pred: torch.Tensor, gt: torch.Tensor, classes: int, mask_path: str):
    """(true positives, predicted, labelled) pixels per class of one image; 255 in ``gt`` is ignored."""
    import numpy as np

    g = gt.reshape(-1).numpy()
    p = pred.reshape(-1).numpy()
    valid = g != IGNORE
    bad = valid & ((g < 0) | (g >= classes))
    if bad.any():
        raise DatasetError(f"mask {mask_path} holds class {int(g[bad][0])}",
                           f"the model scores {classes} classes (0..{classes - 1}; 255 = ignore)",
                           "give masks of this model's class indices")
    g, p = g[valid], p[valid]
    tp = np.bincount(g[g == p], minlength=classes)
    return tp, np.bincount(p, minlength=classes), np.bincount(g, minlength=classes)


def miou_of(tp, pred, label):
    """(mIoU over classes with a non-empty union, pixel accuracy, per-class IoU or None) from class totals."""
    import numpy as np

    union = pred + label - tp
    present = union > 0
    iou = np.where(present, tp / np.maximum(union, 1), np.nan)
    miou = float(np.nanmean(iou)) if present.any() else float("nan")
    return miou, float(tp.sum() / max(label.sum(), 1)), [None if np.isnan(v) else float(v) for v in iou]


def measure_segmentation(loaded: LoadedModel, data_dir: str, config: AccuracyConfig, *, weights: str | None = None,
                         notes: list[str] | None = None, on_progress=None) -> SegmentationAccuracy:
    """mIoU and pixel accuracy of ``loaded`` on the images under ``data_dir`` and their masks."""
    import numpy as np

    from dnnbench.evaluate.imagedata import default_workers

    notes = list(notes or [])
    limit, device, seed = config.limit, config.device, config.seed
    workers = default_workers() if config.workers is None else config.workers
    images_dir, masks_dir = find_folders(data_dir, config.annotations)
    pairs, n_unpaired = pair_files(images_dir, masks_dir, notes)
    if limit is not None and limit >= len(pairs):
        notes.append(f"--limit {limit} is not below the {len(pairs)} image/mask pairs: all are evaluated")
    elif limit is not None:
        pairs = [pairs[i] for i in sorted(random.Random(seed).sample(range(len(pairs)), limit))]
        notes.append(f"--limit {limit}: a random subset of {limit} image/mask pairs (seed {seed})")
    if loaded.preprocess is not None:
        transform, preprocess_source = loaded.preprocess, loaded.preprocess_source or ""
    else:
        transform = default_segmentation_transform()
        preprocess_source = "default: ToTensor + ImageNet mean/std at the image's own size (the model defines none)"
    unresolved = getattr(transform, "unresolved", None)
    if isinstance(unresolved, DnnbenchError):
        raise unresolved
    module = loaded.module
    module.eval()
    module.to(device)
    loader = torch.utils.data.DataLoader(
        SegmentationPairs(pairs, transform), batch_size=config.batch_size, shuffle=False, num_workers=workers,
        collate_fn=_keep, prefetch_factor=4 if workers > 0 else None)
    tps, preds, labels = [], [], []
    corrupt: list[str] = []
    classes = None
    forward_s = wait_s = 0.0
    total, done = len(pairs), 0
    start = time.perf_counter()
    if on_progress:
        on_progress(0, total, 0, 0.0)
    for batch, waited_s in timed_batches(loader):
        wait_s += waited_s
        t1 = time.perf_counter()
        done += len(batch)
        corrupt.extend(pairs[b[2]][0] for b in batch if b[0] is None)
        good = [b for b in batch if b[0] is not None]
        groups: dict[tuple, list] = {}  # images of one size after preprocessing run as one batch
        for b in good:
            if not isinstance(b[0], torch.Tensor) or b[0].dim() != 3:
                raise InputError("the preprocessing transform must return a CxHxW tensor",
                                 f"it returned {type(b[0]).__name__}", "return one image tensor per PIL image")
            groups.setdefault(tuple(b[0].shape), []).append(b)
        for shape, items in groups.items():
            x = torch.stack([b[0] for b in items]).to(device)
            with torch.inference_mode():
                try:
                    scores = scores_of(module(x))
                except DnnbenchError:
                    raise
                except Exception as exc:
                    raise InputError(f"the model rejected a preprocessed image of shape {list(shape)}",
                                     f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
                                     "give the model a preprocess transform that produces its input") from exc
                classes = int(scores.shape[1])
                for s, (_, mask, i, _) in zip(scores, items):
                    if tuple(s.shape[-2:]) != tuple(mask.shape):
                        s = torch.nn.functional.interpolate(s[None], size=tuple(mask.shape), mode="bilinear",
                                                            align_corners=False)[0]
                    tp, pr, lb = image_counts(s.argmax(0).cpu(), mask, classes, pairs[i][1])
                    tps.append(tp)
                    preds.append(pr)
                    labels.append(lb)
        forward_s += time.perf_counter() - t1
        if on_progress:
            on_progress(done, total, len(tps), time.perf_counter() - start)
    wall_s = time.perf_counter() - start
    if not tps:
        raise DatasetError(f"none of the {total} image/mask pairs in {images_dir} could be decoded",
                           f"first: {corrupt[0] if corrupt else '-'}", "check that the images and masks are readable")
    if corrupt:
        notes.append(f"{len(corrupt)} image/mask pair(s) could not be decoded and were not scored (first: {corrupt[0]})")
    tp, pr, lb = np.stack(tps), np.stack(preds), np.stack(labels)
    labelled = int(lb.sum())
    if labelled == 0:
        raise DatasetError(f"the {len(tps)} masks label no pixel", "every pixel is 255 (ignore)",
                           "give masks with class indices")
    miou, pixel_acc, per_class = miou_of(tp.sum(0), pr.sum(0), lb.sum(0))
    rng = np.random.default_rng(seed)
    n = len(tps)
    weights_ = rng.multinomial(n, np.full(n, 1 / n), size=config.resamples)  # (R, n): times each image is drawn
    boot = [miou_of(w @ tp, w @ pr, w @ lb)[:2] for w in weights_]
    boot = [(m, a) for m, a in boot if m == m]  # a resample that labels no pixel has no figure
    lo, hi = bootstrap_interval([m for m, _ in boot])
    alo, ahi = bootstrap_interval([a for _, a in boot])
    present = sum(v is not None for v in per_class)
    if present < classes:
        notes.append(f"mIoU averages the {present} of {classes} classes that occur in the masks or the predictions")
    return SegmentationAccuracy(
        model=loaded.ref, weights=(loaded.weights or "as given") if weights is None else weights, task=loaded.task,
        data_dir=os.path.abspath(images_dir), masks_dir=os.path.abspath(masks_dir),
        preprocess=describe_transform(transform), preprocess_source=preprocess_source, num_outputs=classes,
        classes=present, images=n, corrupt_images=len(corrupt), unpaired_images=n_unpaired, labelled_pixels=labelled,
        miou=miou, pixel_acc=pixel_acc, miou_ci_low=lo, miou_ci_high=hi, pixel_acc_ci_low=alo,
        pixel_acc_ci_high=ahi, per_class_iou=per_class, batch_size=config.batch_size, workers=workers, device=device,
        threads=torch.get_num_threads(), wall_s=wall_s, images_per_s=n / wall_s, forward_s=forward_s,
        data_wait_s=wait_s, resamples=config.resamples, limit=limit, subset_seed=seed if limit is not None else None,
        corrupt_files=corrupt[:MAX_LISTED], reported=loaded.reported, tool_version=__version__,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"), notes=notes)
